/**
 * admission.k8s.io AdmissionReview (v1 and v1beta1): decoded into one internal model and mapped back
 * per version, as slok/kubewebhook does. Only src/admission knows Kubernetes shapes.
 */
import { BadRequestError } from '../errors.js';
import type { ContainerImage, ContainerKind } from '../policy/types.js';

export const ADMISSION_VERSIONS = ['admission.k8s.io/v1', 'admission.k8s.io/v1beta1'] as const;
export type AdmissionVersion = (typeof ADMISSION_VERSIONS)[number];

export interface AdmissionRequest {
  readonly apiVersion: AdmissionVersion;
  readonly uid: string;
  readonly operation: string;
  readonly group: string;
  readonly resource: string;
  readonly subResource: string;
  readonly namespace?: string;
  readonly name?: string;
  readonly object: unknown;
  readonly oldObject: unknown;
}

/** What to judge in a request; `undefined` from podReview() means "not ours, allow untouched". */
export interface PodReview {
  readonly images: readonly ContainerImage[];
  /** metadata.name, or generateName for controller-created pods. */
  readonly podName?: string;
}

export interface AdmissionAnswer {
  readonly allowed: boolean;
  readonly message?: string;
  readonly warnings?: readonly string[];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalString(obj: Record<string, unknown>, key: string, where: string): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new BadRequestError(`${where}.${key} must be a string`);
  return v;
}

/** Decodes and validates an AdmissionReview body. Throws BadRequestError with a clear message. */
export function decodeAdmissionReview(body: unknown): AdmissionRequest {
  if (!isObject(body)) throw new BadRequestError('body must be a JSON object (an AdmissionReview)');
  const apiVersion = body['apiVersion'];
  if (body['kind'] !== 'AdmissionReview') throw new BadRequestError(`kind must be AdmissionReview, got ${JSON.stringify(body['kind'] ?? null).slice(0, 60)}`);
  if (!ADMISSION_VERSIONS.includes(apiVersion as AdmissionVersion)) {
    throw new BadRequestError(`apiVersion must be one of ${ADMISSION_VERSIONS.join(', ')}`);
  }
  const request = body['request'];
  if (!isObject(request)) throw new BadRequestError('request must be an object');
  const uid = request['uid'];
  if (typeof uid !== 'string' || uid === '') throw new BadRequestError('request.uid is missing');
  const operation = optionalString(request, 'operation', 'request') ?? '';
  const resource = isObject(request['resource']) ? request['resource'] : {};
  const namespace = optionalString(request, 'namespace', 'request');
  const name = optionalString(request, 'name', 'request');
  return {
    apiVersion: apiVersion as AdmissionVersion,
    uid,
    operation,
    group: typeof resource['group'] === 'string' ? resource['group'] : '',
    resource: typeof resource['resource'] === 'string' ? resource['resource'] : '',
    subResource: optionalString(request, 'subResource', 'request') ?? '',
    ...(namespace !== undefined ? { namespace } : {}),
    ...(name !== undefined ? { name } : {}),
    object: request['object'],
    oldObject: request['oldObject'],
  };
}

function containersOf(spec: Record<string, unknown>, field: string, kind: ContainerKind): ContainerImage[] {
  const list = spec[field];
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw new BadRequestError(`pod spec.${field} must be a list`);
  return list.map((c, i) => {
    if (!isObject(c)) throw new BadRequestError(`pod spec.${field}[${i}] must be an object`);
    const image = c['image'];
    if (typeof image !== 'string') throw new BadRequestError(`pod spec.${field}[${i}].image must be a string`);
    const name = typeof c['name'] === 'string' && c['name'] !== '' ? c['name'] : `${field}[${i}]`;
    return { container: name, kind, image };
  });
}

function podSpec(object: unknown, what: string): { spec: Record<string, unknown>; metadata: Record<string, unknown> } {
  if (!isObject(object)) throw new BadRequestError(`request.${what} must be a Pod object`);
  const spec = object['spec'];
  if (!isObject(spec)) throw new BadRequestError(`request.${what}.spec must be an object`);
  return { spec, metadata: isObject(object['metadata']) ? object['metadata'] : {} };
}

/**
 * The images a request asks to run: every container, init container and ephemeral container of a new
 * pod; for pods/ephemeralcontainers UPDATE only the ephemeral containers it adds or changes.
 */
export function podReview(request: AdmissionRequest): PodReview | undefined {
  if (request.group !== '' || request.resource !== 'pods') return undefined;
  const isCreate = request.operation === 'CREATE' && request.subResource === '';
  const isEphemeral = request.operation === 'UPDATE' && request.subResource === 'ephemeralcontainers';
  if (!isCreate && !isEphemeral) return undefined;
  const { spec, metadata } = podSpec(request.object, 'object');
  const podName =
    typeof metadata['name'] === 'string' && metadata['name'] !== ''
      ? metadata['name']
      : typeof metadata['generateName'] === 'string'
        ? metadata['generateName']
        : request.name;
  let images: ContainerImage[];
  if (isCreate) {
    images = [
      ...containersOf(spec, 'initContainers', 'initContainer'),
      ...containersOf(spec, 'containers', 'container'),
      ...containersOf(spec, 'ephemeralContainers', 'ephemeralContainer'),
    ];
  } else {
    const before = new Set<string>();
    if (isObject(request.oldObject)) {
      for (const c of containersOf(podSpec(request.oldObject, 'oldObject').spec, 'ephemeralContainers', 'ephemeralContainer')) {
        before.add(`${c.container}\u0000${c.image}`);
      }
    }
    images = containersOf(spec, 'ephemeralContainers', 'ephemeralContainer').filter((c) => !before.has(`${c.container}\u0000${c.image}`));
  }
  return { images, ...(podName !== undefined ? { podName } : {}) };
}

/** Maps an answer back onto the AdmissionReview version the API server sent. */
export function encodeAdmissionResponse(request: Pick<AdmissionRequest, 'apiVersion' | 'uid'>, answer: AdmissionAnswer): object {
  const response: Record<string, unknown> = { uid: request.uid, allowed: answer.allowed };
  if (!answer.allowed) {
    response['status'] = { code: 403, reason: 'Forbidden', message: answer.message ?? 'denied by scangate' };
  }
  if (answer.warnings !== undefined && answer.warnings.length > 0) response['warnings'] = answer.warnings;
  return { apiVersion: request.apiVersion, kind: 'AdmissionReview', response };
}
