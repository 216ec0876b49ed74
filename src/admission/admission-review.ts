/**
 * admission.k8s.io AdmissionReview (v1 and v1beta1): decoded into one internal model and mapped back
 * per version, as slok/kubewebhook does. Only src/admission knows Kubernetes shapes.
 */
import { BadRequestError } from '../errors.js';
import type { AuditAnnotations } from './audit-annotations.js';
import { BREAK_GLASS_ANNOTATION, type Requester } from '../policy/break-glass.js';
import { BREAK_GLASS_PROOF_ANNOTATION } from '../policy/break-glass-proof.js';
import type { ContainerImage, ContainerKind } from '../policy/types.js';
import { isObject } from '../util/is-object.js';

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
  /** request.userInfo: who asked (the API server's authenticator set it; absent in hand-written reviews). */
  readonly userInfo?: Requester;
  /** request.dryRun: nothing the answer causes may outlast it (no scan started, no event recorded). */
  readonly dryRun: boolean;
  /** request.kind: the object's group/version/kind ('' when absent). */
  readonly objectKind: { readonly group: string; readonly version: string; readonly kind: string };
}

/** One image of a pod spec, and where it sits in the object (a JSON Pointer to the image's text). */
export interface SpecImage extends ContainerImage {
  readonly pointer: string;
}

/**
 * What to judge in a request; `undefined` from imagesToJudge() means "not ours, allow untouched".
 * Pods and the pod templates of workload controllers decode into this one shape.
 */
export interface Review {
  /** `Pod`, or the workload whose pod template is judged (`Deployment`, `CronJob`, ...). */
  readonly kind: ReviewKind;
  /** metadata.name, or generateName (controller-created pods), or the request's name. */
  readonly name?: string;
  /** The images to judge: every one of a new object; those an UPDATE changes or adds. */
  readonly images: readonly SpecImage[];
  /** Every image of the pod spec (or template) as it will be: what a break-glass proof must name. */
  readonly allImages: readonly SpecImage[];
  /**
   * The break-glass annotation (policy/break-glass.ts) and proof (break-glass-proof.ts) of the pod, or
   * of the workload's pod template (what its pods will carry; never the workload's own metadata, which
   * no pod inherits), and the annotation of the old object on UPDATE.
   */
  readonly breakGlass?: { readonly value?: string; readonly previous?: string; readonly proof?: string };
  /** JSON Pointer of the metadata whose annotations the pods will carry (`/metadata`, `/spec/template/metadata`). */
  readonly metadataPointer: string;
}

export type WorkloadKind = 'Deployment' | 'StatefulSet' | 'DaemonSet' | 'ReplicaSet' | 'ReplicationController' | 'Job' | 'CronJob';
export type ReviewKind = 'Pod' | WorkloadKind;

export interface AdmissionAnswer {
  readonly allowed: boolean;
  readonly message?: string;
  readonly warnings?: readonly string[];
  /**
   * Kubernetes audit annotations (audit-annotations.ts). Keys must be prefix-less qualified names
   * (`verdict`, not `scangate.io/verdict`): the API server prefixes each with the webhook's name
   * (`images.scangate.io/verdict`) and drops a key that is then not a qualified name.
   */
  readonly auditAnnotations?: AuditAnnotations;
  /** A JSONPatch (RFC 6902) for the object (mutating webhook only). */
  readonly patch?: readonly JsonPatchOperation[];
}

export interface JsonPatchOperation {
  readonly op: 'replace' | 'add';
  readonly path: string;
  readonly value: string;
}

/** At most this many groups are kept from userInfo (a request's groups come from its authenticator). */
const MAX_GROUPS = 256;

function decodeUserInfo(value: unknown): Requester | undefined {
  if (!isObject(value)) return undefined;
  const username = typeof value['username'] === 'string' ? value['username'] : '';
  const groups = Array.isArray(value['groups']) ? value['groups'].filter((g): g is string => typeof g === 'string').slice(0, MAX_GROUPS) : [];
  return { username, groups };
}

/** A string annotation of an object's metadata (or of the object at `path` inside it), or undefined. */
export function annotationOf(object: unknown, key: string, path: readonly string[] = []): string | undefined {
  let node = object;
  for (const step of path) node = isObject(node) ? node[step] : undefined;
  if (!isObject(node)) return undefined;
  const metadata = node['metadata'];
  if (!isObject(metadata)) return undefined;
  const annotations = metadata['annotations'];
  if (!isObject(annotations)) return undefined;
  const value = annotations[key];
  return typeof value === 'string' ? value : undefined;
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
  const userInfo = decodeUserInfo(request['userInfo']);
  const kind = isObject(request['kind']) ? request['kind'] : {};
  const text = (v: unknown): string => (typeof v === 'string' ? v : '');
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
    ...(userInfo !== undefined ? { userInfo } : {}),
    dryRun: request['dryRun'] === true,
    objectKind: { group: text(kind['group']), version: text(kind['version']), kind: text(kind['kind']) },
  };
}

/** metadata.uid of an object, when it has one (the API server sets it before validating admission). */
export function objectUidOf(object: unknown): string | undefined {
  const metadata = isObject(object) ? object['metadata'] : undefined;
  const uid = isObject(metadata) ? metadata['uid'] : undefined;
  return typeof uid === 'string' && uid !== '' ? uid : undefined;
}

/** Where each workload kind keeps its pod template, by `group/resource` (matchPolicy Equivalent). */
const WORKLOADS: ReadonlyMap<string, { readonly kind: WorkloadKind; readonly templatePath: readonly string[]; readonly optional?: boolean }> = new Map([
  ['apps/deployments', { kind: 'Deployment', templatePath: ['spec', 'template'] }],
  ['apps/statefulsets', { kind: 'StatefulSet', templatePath: ['spec', 'template'] }],
  ['apps/daemonsets', { kind: 'DaemonSet', templatePath: ['spec', 'template'] }],
  ['apps/replicasets', { kind: 'ReplicaSet', templatePath: ['spec', 'template'] }],
  // A ReplicationController may have no template (it then creates no pod).
  ['/replicationcontrollers', { kind: 'ReplicationController', templatePath: ['spec', 'template'], optional: true }],
  ['batch/jobs', { kind: 'Job', templatePath: ['spec', 'template'] }],
  ['batch/cronjobs', { kind: 'CronJob', templatePath: ['spec', 'jobTemplate', 'spec', 'template'] }],
]);

const CONTAINER_LISTS: ReadonlyArray<readonly [string, ContainerKind]> = [
  ['initContainers', 'initContainer'],
  ['containers', 'container'],
  ['ephemeralContainers', 'ephemeralContainer'],
];

/**
 * The one walker of pod specs: every image a pod spec would make the kubelet pull (containers of each
 * kind, and image volumes), each with the JSON Pointer of its text under `pointer` (the spec's own).
 * Validation, break-glass proofs and pinning all read a spec through it.
 */
function imagesOfSpec(spec: Record<string, unknown>, where: string, pointer: string, workload: ContainerImage['workload']): SpecImage[] {
  const images: SpecImage[] = [];
  const extra = workload !== undefined ? { workload } : {};
  for (const [field, kind] of CONTAINER_LISTS) {
    const list = spec[field];
    if (list === undefined || list === null) continue;
    if (!Array.isArray(list)) throw new BadRequestError(`${where}.${field} must be a list`);
    list.forEach((c: unknown, i) => {
      if (!isObject(c)) throw new BadRequestError(`${where}.${field}[${i}] must be an object`);
      const image = c['image'];
      if (typeof image !== 'string') throw new BadRequestError(`${where}.${field}[${i}].image must be a string`);
      const name = typeof c['name'] === 'string' && c['name'] !== '' ? c['name'] : `${field}[${i}]`;
      images.push({ container: name, kind, image, pointer: `${pointer}/${field}/${i}/image`, ...extra });
    });
  }
  // An image volume (`volumes[].image.reference`, KEP-4639) is pulled like a container image and its
  // files can be executed from the mount: it is judged like one.
  const volumes = spec['volumes'];
  if (Array.isArray(volumes)) {
    volumes.forEach((v: unknown, i) => {
      if (!isObject(v) || !isObject(v['image'])) return;
      const reference = v['image']['reference'];
      if (typeof reference !== 'string') throw new BadRequestError(`${where}.volumes[${i}].image.reference must be a string`);
      const name = typeof v['name'] === 'string' && v['name'] !== '' ? v['name'] : `volumes[${i}]`;
      images.push({ container: name, kind: 'imageVolume', image: reference, pointer: `${pointer}/volumes/${i}/image/reference`, ...extra });
    });
  } else if (volumes !== undefined && volumes !== null) {
    throw new BadRequestError(`${where}.volumes must be a list`);
  }
  return images;
}

/**
 * The images of `after` that are not, under the same kind and name, in `before`: a changed image, a
 * container added or renamed, an image moved to another container or from an init container to a
 * regular one. When names are not unique on either side the two cannot be paired, and every image of
 * `after` is judged (the API server rejects such a pod, but scangate does not rely on it).
 */
export function changedImages<T extends ContainerImage>(after: readonly T[], before: readonly ContainerImage[] | undefined): readonly T[] {
  if (before === undefined) return after;
  const key = (c: ContainerImage): string => `${c.kind}\u0000${c.container}`;
  const old = new Map<string, string>();
  for (const c of before) {
    if (old.has(key(c))) return after;
    old.set(key(c), c.image);
  }
  const seen = new Set<string>();
  for (const c of after) {
    if (seen.has(key(c))) return after;
    seen.add(key(c));
  }
  return after.filter((c) => old.get(key(c)) !== c.image);
}

function nameOf(object: Record<string, unknown>, request: AdmissionRequest): string | undefined {
  const metadata = isObject(object['metadata']) ? object['metadata'] : {};
  const name = metadata['name'];
  if (typeof name === 'string' && name !== '') return name;
  const generateName = metadata['generateName'];
  if (typeof generateName === 'string' && generateName !== '') return generateName;
  return request.name;
}

/** The pod spec inside `object` at `path` (`['spec']` for a pod), or undefined when `optional` and absent. */
function specAt(object: unknown, what: string, path: readonly string[], optional: boolean): Record<string, unknown> | undefined {
  if (!isObject(object)) throw new BadRequestError(`request.${what} must be an object`);
  let node: Record<string, unknown> = object;
  let where = `request.${what}`;
  for (const key of [...path, 'spec']) {
    const next = node[key];
    where += `.${key}`;
    if (optional && (next === undefined || next === null)) return undefined;
    if (!isObject(next)) throw new BadRequestError(`${where} must be an object`);
    node = next;
  }
  return node;
}

/**
 * The images a request asks to run, as scangate judges them:
 * - pods CREATE: every container, init container, ephemeral container and image volume;
 * - pods UPDATE (also the `ephemeralcontainers` subresource): the images that differ from oldObject,
 *   by kind and name (changedImages); an UPDATE that changes no image gives an empty list;
 * - CREATE of a Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job or
 *   CronJob: the images of its pod template; UPDATE: those its template changes.
 * Other subresources (status, scale, ...) and operations are not ours.
 */
export function imagesToJudge(request: AdmissionRequest): Review | undefined {
  const isUpdate = request.operation === 'UPDATE';
  if (request.operation !== 'CREATE' && !isUpdate) return undefined;
  let kind: ReviewKind;
  let templatePath: readonly string[];
  let optional = false;
  if (request.group === '' && request.resource === 'pods') {
    // kubectl debug adds ephemeral containers through the subresource; nothing else of a pod's
    // subresources (status, binding, resize, ...) can change an image.
    if (request.subResource !== '' && !(isUpdate && request.subResource === 'ephemeralcontainers')) return undefined;
    kind = 'Pod';
    templatePath = [];
  } else {
    const workload = WORKLOADS.get(`${request.group}/${request.resource}`);
    if (workload === undefined || request.subResource !== '') return undefined;
    kind = workload.kind;
    templatePath = workload.templatePath;
    optional = workload.optional === true;
  }
  if (!isObject(request.object)) throw new BadRequestError(`request.object must be a ${kind} object`);
  const name = nameOf(request.object, request);
  const label = kind === 'Pod' ? undefined : { kind, ...(name !== undefined ? { name } : {}) };
  const spec = specAt(request.object, 'object', templatePath, optional);
  const specPointer = `/${[...templatePath, 'spec'].join('/')}`;
  const after = spec === undefined ? [] : imagesOfSpec(spec, `${kind === 'Pod' ? 'pod' : `${kind} template`} spec`, specPointer, label);
  let images: readonly SpecImage[] = after;
  // Without an oldObject (never sent by the API server for UPDATE) everything is judged.
  if (isUpdate && request.oldObject !== undefined && request.oldObject !== null) {
    const oldSpec = specAt(request.oldObject, 'oldObject', templatePath, true);
    images = changedImages(after, oldSpec === undefined ? [] : imagesOfSpec(oldSpec, 'oldObject spec', specPointer, label));
  }
  // Only what the pods will carry counts: the pod's own metadata, or the template's. A workload's own
  // metadata is copied into no pod, so an annotation there is nobody's break-glass.
  const value = annotationOf(request.object, BREAK_GLASS_ANNOTATION, templatePath);
  const proof = annotationOf(request.object, BREAK_GLASS_PROOF_ANNOTATION, templatePath);
  const previous = isUpdate ? annotationOf(request.oldObject, BREAK_GLASS_ANNOTATION, templatePath) : undefined;
  const breakGlass =
    value !== undefined || previous !== undefined || proof !== undefined
      ? { ...(value !== undefined ? { value } : {}), ...(previous !== undefined ? { previous } : {}), ...(proof !== undefined ? { proof } : {}) }
      : undefined;
  return {
    kind,
    ...(name !== undefined ? { name } : {}),
    images,
    allImages: after,
    ...(breakGlass !== undefined ? { breakGlass } : {}),
    metadataPointer: `/${[...templatePath, 'metadata'].join('/')}`,
  };
}

/** Maps an answer back onto the AdmissionReview version the API server sent: the JSON text of the review. */
export function encodeAdmissionResponse(request: Pick<AdmissionRequest, 'apiVersion' | 'uid'>, answer: AdmissionAnswer): string {
  const response: Record<string, unknown> = { uid: request.uid, allowed: answer.allowed };
  if (!answer.allowed) {
    response['status'] = { code: 403, reason: 'Forbidden', message: answer.message ?? 'denied by scangate' };
  }
  if (answer.warnings !== undefined && answer.warnings.length > 0) response['warnings'] = answer.warnings;
  if (answer.allowed && answer.patch !== undefined && answer.patch.length > 0) {
    response['patchType'] = 'JSONPatch';
    response['patch'] = Buffer.from(JSON.stringify(answer.patch)).toString('base64');
  }
  const text = JSON.stringify({ apiVersion: request.apiVersion, kind: 'AdmissionReview', response });
  if (answer.auditAnnotations === undefined) return text;
  // The annotations come as JSON text (escaped once per image, not on every answer): they go last into
  // the response object, with which the review's text ends (`...}}`).
  return `${text.slice(0, -2)},"auditAnnotations":${answer.auditAnnotations.json}}}`;
}
