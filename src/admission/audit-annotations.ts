/**
 * Kubernetes audit annotations of an admission decision (AdmissionResponse.auditAnnotations): they land
 * in the cluster's audit log under `<webhook name>/<key>`, e.g. `images.scangate.io/verdict`. Keys are
 * prefix-less qualified names (the API server drops a prefixed key once it adds the webhook's name);
 * values are bounded and escaped, since image texts and the break-glass reason are tenant text.
 */
import { displayImage } from '../policy/safe-text.js';

/** Bound of the `images` value (characters); the audit log is not the place for a whole pod spec. */
export const MAX_IMAGES_ANNOTATION = 2000;
const MAX_VALUE = 256;

export interface AuditImage {
  /** The image as display text (safe-text.ts displayImage): escaped and bounded already. */
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

/** Audit annotations ready for the wire: the JSON text of the AdmissionResponse `auditAnnotations` object. */
export interface AuditAnnotations {
  readonly json: string;
}

/** One image's `image=result@digest`, with its length as the bound counts it and its JSON-escaped text. */
interface Fragment {
  readonly result: string;
  readonly digest: string | undefined;
  readonly length: number;
  readonly json: string;
}

/** Images whose fragment is memoised, and the characters those entries hold at most (keys and texts). */
const MEMO_MAX_ENTRIES = 4096;
const MEMO_MAX_CHARS = 4 * 1024 * 1024;
/** A longer image text (a valid reference is at most 520) is escaped every time, never memoised. */
const MEMO_MAX_IMAGE_CHARS = 600;

export interface AuditAnnotator {
  /** The annotations of an admission decision. */
  of(input: AuditInput): AuditAnnotations;
  /** The annotations of the mutating webhook (which images it pinned to which digest); none without pins. */
  pins(pins: ReadonlyArray<{ readonly image: string; readonly digest: string }>): AuditAnnotations | undefined;
}

/**
 * Builds audit annotations as JSON text. A cluster runs few distinct images and a cache hit repeats
 * the same ones: each image's fragment is escaped (tenant text, then JSON) once and memoised, so an
 * answer costs a few concatenations rather than escaping the same texts on every request (bench/
 * cache-hit-compare). The memo is bounded by entries and characters and starts over when full.
 */
export function createAuditAnnotator(): AuditAnnotator {
  const memo = new Map<string, Fragment>();
  let memoChars = 0;
  const charsOf = (image: string, f: Fragment): number => image.length + f.json.length + (f.digest?.length ?? 0);
  const fragmentOf = (img: AuditImage): Fragment => {
    const known = memo.get(img.image);
    if (known !== undefined && known.result === img.result && known.digest === img.digest) return known;
    // `image` is already display text (safe-text.ts: escaped once, bounded), as every ImageReport holds it.
    const item = `${img.image}=${img.result}${img.digest !== undefined ? `@${img.digest}` : ''}`;
    const fragment: Fragment = { result: img.result, digest: img.digest, length: item.length, json: JSON.stringify(item).slice(1, -1) };
    if (img.image.length <= MEMO_MAX_IMAGE_CHARS) {
      if (known !== undefined) memoChars -= charsOf(img.image, known);
      else if (memo.size >= MEMO_MAX_ENTRIES || memoChars > MEMO_MAX_CHARS) {
        memo.clear();
        memoChars = 0;
      }
      memo.set(img.image, fragment);
      memoChars += charsOf(img.image, fragment);
    }
    return fragment;
  };
  /**
   * `image=result@digest` per image, `; `-joined, as the inside of a JSON string; bounded at
   * MAX_IMAGES_ANNOTATION characters before escaping: images past the bound are counted, not dropped silently.
   */
  const imagesJson = (images: readonly AuditImage[]): string => {
    let out = '';
    let length = 0;
    for (let i = 0; i < images.length; i++) {
      const img = images[i];
      if (img === undefined) continue;
      const fragment = fragmentOf(img);
      const sep = length === 0 ? '' : '; ';
      const more = `; +${images.length - i} more`;
      if (length + sep.length + fragment.length > MAX_IMAGES_ANNOTATION - more.length) return `${out}${more}`;
      out += sep + fragment.json;
      length += sep.length + fragment.length;
    }
    return out;
  };
  return {
    of(input) {
      let json = `{"decision":${JSON.stringify(input.decision)}`;
      if (input.images.length > 0) json += `,"images":"${imagesJson(input.images)}"`;
      const glass = input.breakGlass;
      if (glass !== undefined) {
        // Already escaped and bounded by policy/break-glass.ts (escaping twice would double backslashes).
        json += `,"break-glass":${JSON.stringify(glass.outcome)},"break-glass-user":${JSON.stringify(glass.user.slice(0, MAX_VALUE))},"break-glass-reason":${JSON.stringify(glass.reason.slice(0, MAX_VALUE))}`;
      }
      return { json: `${json}}` };
    },
    pins(pins) {
      if (pins.length === 0) return undefined;
      return { json: `{"pinned":"${imagesJson(pins.map((p) => ({ image: displayImage(p.image), result: 'pinned', digest: p.digest })))}"}` };
    },
  };
}
