/**
 * AdmissionReviews for the objects scangate judges besides pod creations: pod UPDATEs and the
 * workload controllers (Deployment ... CronJob), shaped as kube-apiserver sends them.
 */

export interface ContainerInput {
  readonly name: string;
  readonly image: string;
}

export interface PodSpecInput {
  readonly containers?: readonly ContainerInput[];
  readonly initContainers?: readonly ContainerInput[];
  readonly ephemeralContainers?: readonly ContainerInput[];
  readonly imageVolumes?: readonly { readonly name: string; readonly reference: string }[];
}

export function podSpec(s: PodSpecInput): Record<string, unknown> {
  return {
    containers: (s.containers ?? []).map((c) => ({ ...c, imagePullPolicy: 'IfNotPresent', resources: {} })),
    ...(s.initContainers !== undefined ? { initContainers: s.initContainers.map((c) => ({ ...c })) } : {}),
    ...(s.ephemeralContainers !== undefined ? { ephemeralContainers: s.ephemeralContainers.map((c) => ({ ...c })) } : {}),
    ...(s.imageVolumes !== undefined
      ? { volumes: [{ name: 'tmp', emptyDir: {} }, ...s.imageVolumes.map((v) => ({ name: v.name, image: { reference: v.reference, pullPolicy: 'IfNotPresent' } }))] }
      : {}),
    restartPolicy: 'Always',
    dnsPolicy: 'ClusterFirst',
  };
}

/** group, version, resource and kind of every workload scangate judges. */
export const WORKLOAD_TYPES = {
  Deployment: { group: 'apps', version: 'v1', resource: 'deployments' },
  StatefulSet: { group: 'apps', version: 'v1', resource: 'statefulsets' },
  DaemonSet: { group: 'apps', version: 'v1', resource: 'daemonsets' },
  ReplicaSet: { group: 'apps', version: 'v1', resource: 'replicasets' },
  ReplicationController: { group: '', version: 'v1', resource: 'replicationcontrollers' },
  Job: { group: 'batch', version: 'v1', resource: 'jobs' },
  CronJob: { group: 'batch', version: 'v1', resource: 'cronjobs' },
} as const;
export type WorkloadKindName = keyof typeof WORKLOAD_TYPES;

/** A workload object of `kind` whose pod template has `spec`. */
export function workloadObject(kind: WorkloadKindName, name: string, spec: PodSpecInput, extra: { replicas?: number } = {}): Record<string, unknown> {
  const t = WORKLOAD_TYPES[kind];
  const template = { metadata: { labels: { app: name } }, spec: podSpec(spec) };
  const body =
    kind === 'CronJob'
      ? { schedule: '*/5 * * * *', jobTemplate: { spec: { template } } }
      : { replicas: extra.replicas ?? 1, selector: { matchLabels: { app: name } }, template };
  return {
    apiVersion: t.group === '' ? t.version : `${t.group}/${t.version}`,
    kind,
    metadata: { name, namespace: 'shop', labels: { app: name } },
    spec: body,
  };
}

let uidCounter = 0;

export interface ReviewOptions {
  readonly operation?: 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';
  readonly oldObject?: Record<string, unknown>;
  readonly subResource?: string;
  readonly namespace?: string;
  readonly uid?: string;
}

/** An AdmissionReview v1 request for `object` of the given type. */
export function reviewOf(
  type: { group: string; version: string; resource: string },
  kind: string,
  object: Record<string, unknown> | null,
  opts: ReviewOptions = {},
): { uid: string; body: Record<string, unknown> } {
  const uid = opts.uid ?? `w-${process.pid}-${++uidCounter}`;
  const namespace = opts.namespace ?? 'shop';
  const metadata = object !== null && typeof object['metadata'] === 'object' ? (object['metadata'] as Record<string, unknown>) : {};
  return {
    uid,
    body: {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid,
        kind: { group: type.group, version: type.version, kind },
        resource: { group: type.group, version: type.version, resource: type.resource },
        ...(opts.subResource !== undefined ? { subResource: opts.subResource } : {}),
        requestKind: { group: type.group, version: type.version, kind },
        requestResource: { group: type.group, version: type.version, resource: type.resource },
        name: metadata['name'],
        namespace,
        operation: opts.operation ?? 'CREATE',
        userInfo: { username: 'jane', groups: ['system:authenticated'] },
        object,
        oldObject: opts.oldObject ?? null,
        dryRun: false,
        options: { apiVersion: 'meta.k8s.io/v1', kind: opts.operation === 'UPDATE' ? 'UpdateOptions' : 'CreateOptions' },
      },
    },
  };
}

export function workloadReview(kind: WorkloadKindName, name: string, spec: PodSpecInput, opts: ReviewOptions & { oldSpec?: PodSpecInput } = {}) {
  const oldObject = opts.oldSpec !== undefined ? workloadObject(kind, name, opts.oldSpec) : opts.oldObject;
  return reviewOf(WORKLOAD_TYPES[kind], kind, workloadObject(kind, name, spec), { ...opts, ...(oldObject !== undefined ? { oldObject } : {}) });
}

export function podObject(name: string, spec: PodSpecInput): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'shop', labels: { app: name } }, spec: podSpec(spec) };
}

/** A pod UPDATE (kubectl set image / label / patch) from `oldSpec` to `spec`. */
export function podUpdateReview(name: string, spec: PodSpecInput, oldSpec: PodSpecInput, opts: ReviewOptions = {}) {
  return reviewOf({ group: '', version: 'v1', resource: 'pods' }, 'Pod', podObject(name, spec), {
    operation: 'UPDATE',
    oldObject: podObject(name, oldSpec),
    ...opts,
  });
}
