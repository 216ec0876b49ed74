/** The API server never waits more than 30 s for a webhook. */
export const MAX_WEBHOOK_TIMEOUT_MS = 30_000;

const UNIT_MS: Readonly<Record<string, number>> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, µs: 0.001, ns: 0.000001 };

/**
 * Parses a Go duration (`10s`, `1m30s`, `500ms`), the format of the `?timeout=` query parameter the
 * API server adds to webhook calls. Returns milliseconds, or undefined when it is not a duration.
 */
export function parseGoDuration(text: string): number | undefined {
  if (!/^(?:\d+(?:\.\d+)?(?:h|m|s|ms|us|µs|ns))+$/.test(text)) return undefined;
  let total = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)/g)) {
    total += Number(m[1]) * (UNIT_MS[m[2] ?? ''] ?? 0);
  }
  return total;
}

export interface DeadlineSettings {
  /** Used when the request carries no timeout (ImageReview, or an old API server). */
  readonly defaultTimeoutMs: number;
  /** Kept back for the answer's way back to the API server. */
  readonly marginMs: number;
}

export interface Deadline {
  /** What the API server will wait, as it told us (or the default), capped at 30 s. */
  readonly timeoutMs: number;
  /** What scangate may spend waiting for verdicts: timeout minus the margin. */
  readonly budgetMs: number;
  readonly source: 'request' | 'default';
}

/**
 * The waiting budget of one request. The margin never eats more than half of a short timeout, so a
 * 1 s webhook still gets 500 ms to look at its cache.
 */
export function computeDeadline(timeoutParam: string | undefined, settings: DeadlineSettings): Deadline {
  const fromRequest = timeoutParam === undefined ? undefined : parseGoDuration(timeoutParam);
  const source = fromRequest !== undefined && fromRequest > 0 ? 'request' : 'default';
  const timeoutMs = Math.min(source === 'request' ? (fromRequest ?? 0) : settings.defaultTimeoutMs, MAX_WEBHOOK_TIMEOUT_MS);
  const budgetMs = Math.max(timeoutMs - settings.marginMs, Math.floor(timeoutMs / 2));
  return { timeoutMs, budgetMs, source };
}
