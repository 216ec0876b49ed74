/**
 * imagepolicy.k8s.io/v1alpha1 ImageReview, sent by the API server's ImagePolicyWebhook admission
 * plugin. Containers carry no names, so they are numbered in the order the plugin sends them.
 */
import { BadRequestError } from '../errors.js';
import type { ContainerImage } from '../policy/types.js';
import { isObject } from '../util/is-object.js';

export const IMAGE_REVIEW_VERSION = 'imagepolicy.k8s.io/v1alpha1';

export interface ImageReviewRequest {
  readonly images: readonly ContainerImage[];
  readonly namespace?: string;
}

export function decodeImageReview(body: unknown): ImageReviewRequest {
  if (!isObject(body)) throw new BadRequestError('body must be a JSON object (an ImageReview)');
  if (body['kind'] !== 'ImageReview') throw new BadRequestError('kind must be ImageReview');
  if (body['apiVersion'] !== IMAGE_REVIEW_VERSION) throw new BadRequestError(`apiVersion must be ${IMAGE_REVIEW_VERSION}`);
  const spec = body['spec'];
  if (!isObject(spec)) throw new BadRequestError('spec must be an object');
  const containers = spec['containers'] ?? [];
  if (!Array.isArray(containers)) throw new BadRequestError('spec.containers must be a list');
  const images = containers.map((c, i): ContainerImage => {
    if (!isObject(c) || typeof c['image'] !== 'string') throw new BadRequestError(`spec.containers[${i}].image must be a string`);
    return { container: `#${i + 1}`, kind: 'container', image: c['image'] };
  });
  const namespace = spec['namespace'];
  if (namespace !== undefined && typeof namespace !== 'string') throw new BadRequestError('spec.namespace must be a string');
  return { images, ...(namespace !== undefined && namespace !== '' ? { namespace } : {}) };
}

export function encodeImageReviewResponse(answer: { allowed: boolean; reason?: string }): object {
  return {
    apiVersion: IMAGE_REVIEW_VERSION,
    kind: 'ImageReview',
    status: { allowed: answer.allowed, ...(answer.reason !== undefined && answer.reason !== '' ? { reason: answer.reason } : {}) },
  };
}
