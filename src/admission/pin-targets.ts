/**
 * The images digest pinning rewrites and the JSONPatch that pins them (the mutating webhook). Which
 * images, and where they sit, come from the one pod-spec walker (admission-review.ts): the images the
 * validating webhook judges, with the same CREATE and UPDATE rules (an unchanged image is never pinned:
 * that would roll a workload out behind its owner's back).
 */
import type { JsonPatchOperation, Review } from './admission-review.js';

/** One image the mutating webhook may pin. */
export interface PinTarget {
  /** JSON Pointer of the image's text, e.g. `/spec/template/spec/containers/0/image`. */
  readonly path: string;
  readonly image: string;
}

/** A request with more images than this is not pinned at all (the validating webhook still judges it). */
export const MAX_PIN_TARGETS = 256;

/** The images of a review to pin (none past MAX_PIN_TARGETS). */
export function pinTargets(review: Pick<Review, 'images'>): PinTarget[] {
  if (review.images.length > MAX_PIN_TARGETS) return [];
  return review.images.map((i) => ({ path: i.pointer, image: i.image }));
}

/** The JSONPatch replacing each target's image with its pinned form. */
export function pinPatch(pins: ReadonlyArray<{ readonly path: string; readonly pinned: string }>): JsonPatchOperation[] {
  return pins.map((p) => ({ op: 'replace', path: p.path, value: p.pinned }));
}

/** A JSON Pointer token (RFC 6901): `~` and `/` escaped, as an annotation key needs (`scangate.io~1…`). */
export function pointerToken(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}
