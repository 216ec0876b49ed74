import type { Review } from '../../src/admission/admission-review.js';

/**
 * A review as the tests compare it: what is judged (kind, name, images, break-glass), without the
 * JSON Pointers and the whole-spec list that pinning and proofs read (tested in pinning.test.ts).
 */
export function judgedShape(review: Review | undefined): Record<string, unknown> | undefined {
  if (review === undefined) return undefined;
  const shape: Record<string, unknown> = { kind: review.kind };
  if (review.name !== undefined) shape['name'] = review.name;
  shape['images'] = review.images.map((i) => {
    const image: Record<string, unknown> = { container: i.container, kind: i.kind, image: i.image };
    if (i.workload !== undefined) image['workload'] = i.workload;
    return image;
  });
  if (review.breakGlass !== undefined) shape['breakGlass'] = review.breakGlass;
  return shape;
}
