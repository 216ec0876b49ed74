/**
 * Where the images of a pod or of a workload's pod template sit in the object, as JSON Pointers, and
 * the JSONPatch that pins them (digest pinning, the mutating webhook). Only src/admission knows these
 * shapes.
 */
import type { AdmissionRequest, JsonPatchOperation } from './admission-review.js';

/** One container image the mutating webhook may pin. */
export interface PinTarget {
  /** JSON Pointer of the `image` field, e.g. `/spec/template/spec/containers/0/image`. */
  readonly path: string;
  readonly image: string;
}

/** Where the pod spec is, per kind (group/resource): the pod itself or its template. */
const SPEC_PATHS: Readonly<Record<string, readonly string[]>> = {
  '/pods': ['spec'],
  '/replicationcontrollers': ['spec', 'template', 'spec'],
  'apps/deployments': ['spec', 'template', 'spec'],
  'apps/statefulsets': ['spec', 'template', 'spec'],
  'apps/daemonsets': ['spec', 'template', 'spec'],
  'apps/replicasets': ['spec', 'template', 'spec'],
  'batch/jobs': ['spec', 'template', 'spec'],
  'batch/cronjobs': ['spec', 'jobTemplate', 'spec', 'template', 'spec'],
};

const FIELDS = ['initContainers', 'containers', 'ephemeralContainers'] as const;
/** A request with more container images than this is not pinned at all (the validating webhook still judges it). */
export const MAX_PIN_TARGETS = 256;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The pod spec path of a request's resource, or undefined when scangate does not pin that kind. */
export function podSpecPath(request: Pick<AdmissionRequest, 'group' | 'resource' | 'subResource'>): readonly string[] | undefined {
  if (request.subResource !== '') return undefined;
  return SPEC_PATHS[`${request.group}/${request.resource}`];
}

function specAt(object: unknown, path: readonly string[]): Record<string, unknown> | undefined {
  let node: unknown = object;
  for (const key of path) {
    if (!isObject(node)) return undefined;
    node = node[key];
  }
  return isObject(node) ? node : undefined;
}

function imagesOf(spec: Record<string, unknown> | undefined, field: string): Map<string, string> {
  const out = new Map<string, string>();
  const list = spec?.[field];
  if (!Array.isArray(list)) return out;
  for (const c of list) {
    if (isObject(c) && typeof c['name'] === 'string' && typeof c['image'] === 'string') out.set(c['name'], c['image']);
  }
  return out;
}

/**
 * The images to pin: on CREATE every container's image; on UPDATE only the images that differ from the
 * old object's container of the same name (pinning an unchanged image would roll a workload out
 * behind its owner's back). Malformed parts are skipped: the validating webhook refuses them.
 */
export function pinTargets(request: AdmissionRequest): PinTarget[] {
  const path = podSpecPath(request);
  if (path === undefined) return [];
  if (request.operation !== 'CREATE' && !(request.operation === 'UPDATE' && request.resource !== 'pods')) return [];
  const spec = specAt(request.object, path);
  if (spec === undefined) return [];
  const oldSpec = request.operation === 'UPDATE' ? specAt(request.oldObject, path) : undefined;
  const targets: PinTarget[] = [];
  for (const field of FIELDS) {
    const list = spec[field];
    if (!Array.isArray(list)) continue;
    const before = imagesOf(oldSpec, field);
    for (let i = 0; i < list.length; i++) {
      const c: unknown = list[i];
      if (!isObject(c) || typeof c['image'] !== 'string') continue;
      const image = c['image'];
      if (oldSpec !== undefined && typeof c['name'] === 'string' && before.get(c['name']) === image) continue;
      if (targets.length >= MAX_PIN_TARGETS) return [];
      targets.push({ path: `/${[...path, field, String(i), 'image'].join('/')}`, image });
    }
  }
  return targets;
}

/** The JSONPatch replacing each target's image with its pinned form. */
export function pinPatch(pins: ReadonlyArray<{ readonly path: string; readonly pinned: string }>): JsonPatchOperation[] {
  return pins.map((p) => ({ op: 'replace', path: p.path, value: p.pinned }));
}
