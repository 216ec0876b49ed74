/**
 * The admission request of the benchmarks: the tests' realistic pod CREATE AdmissionReview of a
 * Deployment's pod (test/helpers/pod-review.ts, compiled by `make build`), about 3 KB with one
 * container and 6 KB with five.
 */
import { deploymentPodReview } from '../../dist/test/helpers/pod-review.js';

export function podReview(images, uid = '0f0e0d0c-7c1e-4c2b-9d1a-5e6f7a8b9c0d', namespace = 'shop') {
  return deploymentPodReview(images, { uid, namespace }).body;
}

/** Images that pass in bench/scanner-data.json (no vulnerabilities), for the cache-hit benchmark. */
export const PASSING_IMAGES = [
  'docker.io/library/nginx:1.25.3',
  'docker.io/library/redis:7.2.4',
  'docker.io/bitnami/nginx:1.25.3',
  'quay.io/prometheus/node-exporter:v1.7.0',
  'registry.k8s.io/pause:3.9',
];
