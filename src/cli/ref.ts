import { parseImageReference } from '../reference/parse-reference.js';

/** `scangate ref IMAGE...`: one JSON object per image. Exit 1 when any reference is invalid. */
export function runRef(images: readonly string[], out: (line: string) => void): number {
  let status = 0;
  for (const input of images) {
    const parsed = parseImageReference(input);
    if (!parsed.valid) {
      status = 1;
      out(JSON.stringify({ input, valid: false, error: parsed.error }));
      continue;
    }
    const r = parsed.reference;
    out(
      JSON.stringify({
        input,
        valid: true,
        domain: r.domain,
        path: r.path,
        ...(r.tag !== undefined ? { tag: r.tag } : {}),
        ...(r.digest !== undefined ? { digest: r.digest } : {}),
        name: r.name,
        canonical: r.canonical,
      }),
    );
  }
  return status;
}
