/**
 * Kubernetes audit annotations of an admission decision (AdmissionResponse.auditAnnotations): they land
 * in the cluster's audit log under `<webhook name>/<key>`, e.g. `images.scangate.io/verdict`. Keys are
 * prefix-less qualified names (the API server drops a prefixed key once it adds the webhook's name);
 * values are bounded and escaped, since image texts and the break-glass reason are tenant text.
 */
import { escapeTenantText } from '../policy/break-glass.js';

/** Bound of the `images` value (characters); the audit log is not the place for a whole pod spec. */
export const MAX_IMAGES_ANNOTATION = 2000;
const MAX_VALUE = 256;

export interface AuditImage {
  readonly image: string;
  readonly result: string;
  readonly digest?: string;
}

export interface AuditInput {
  /** allowed | denied | warned | exempt */
  readonly decision: string;
  readonly images: readonly AuditImage[];
  readonly breakGlass?: { readonly outcome: string; readonly user: string; readonly reason: string };
}

/** `image=result@digest` per image, `; `-joined, bounded: images past the bound are counted, not dropped silently. */
function imagesValue(images: readonly AuditImage[]): string {
  let out = '';
  for (let i = 0; i < images.length; i++) {
    const img = images[i];
    if (img === undefined) continue;
    const item = `${escapeTenantText(img.image, 300)}=${img.result}${img.digest !== undefined ? `@${img.digest}` : ''}`;
    const sep = out === '' ? '' : '; ';
    const more = `; +${images.length - i} more`;
    if (out.length + sep.length + item.length > MAX_IMAGES_ANNOTATION - more.length) return `${out}${more}`;
    out += sep + item;
  }
  return out;
}

export function auditAnnotationsOf(input: AuditInput): Record<string, string> {
  const out: Record<string, string> = { decision: input.decision };
  if (input.images.length > 0) out['images'] = imagesValue(input.images);
  if (input.breakGlass !== undefined) {
    out['break-glass'] = input.breakGlass.outcome;
    // Already escaped and bounded by policy/break-glass.ts (escaping twice would double backslashes).
    out['break-glass-user'] = input.breakGlass.user.slice(0, MAX_VALUE);
    out['break-glass-reason'] = input.breakGlass.reason.slice(0, MAX_VALUE);
  }
  return out;
}

/** Audit annotations of the mutating webhook: which images it pinned to which digest. */
export function pinAuditAnnotations(pins: ReadonlyArray<{ readonly image: string; readonly digest: string }>): Record<string, string> {
  if (pins.length === 0) return {};
  return { pinned: imagesValue(pins.map((p) => ({ image: p.image, result: 'pinned', digest: p.digest }))) };
}
