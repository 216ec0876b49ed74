/** A JSON object (not null, not an array): what every decoder of foreign JSON narrows to first. */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
