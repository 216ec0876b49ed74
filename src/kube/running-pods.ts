/**
 * What the re-verification loop (engine/recheck.ts) needs to know of a running pod, read from the
 * pod object an informer hands over: the images it runs and the workload that owns it. Only this
 * module knows the pod's shape for the loop; it reads nothing but the fields named below.
 */
import { parseImageReference, scanReference } from '../reference/parse-reference.js';

/** The fields of a v1 Pod that are read (plain JSON or client-node's V1Pod alike). */
export interface PodObject {
  readonly metadata?: {
    readonly name?: string | undefined;
    readonly namespace?: string | undefined;
    readonly uid?: string | undefined;
    readonly labels?: Readonly<Record<string, string>> | undefined;
    readonly ownerReferences?: readonly OwnerReference[] | undefined;
  } | undefined;
  readonly spec?: {
    readonly containers?: readonly { readonly name: string; readonly image?: string | undefined }[] | undefined;
    readonly initContainers?: readonly { readonly name: string; readonly image?: string | undefined }[] | undefined;
    readonly ephemeralContainers?: readonly { readonly name: string; readonly image?: string | undefined }[] | undefined;
  } | undefined;
  readonly status?: {
    readonly phase?: string | undefined;
    readonly containerStatuses?: readonly ContainerStatus[] | undefined;
    readonly initContainerStatuses?: readonly ContainerStatus[] | undefined;
    readonly ephemeralContainerStatuses?: readonly ContainerStatus[] | undefined;
  } | undefined;
}

interface OwnerReference {
  readonly apiVersion?: string | undefined;
  readonly kind?: string | undefined;
  readonly name?: string | undefined;
  readonly uid?: string | undefined;
  readonly controller?: boolean | undefined;
}

interface ContainerStatus {
  readonly name: string;
  readonly imageID?: string | undefined;
}

/** The object an event about a running image is written on. */
export interface WorkloadRef {
  readonly apiVersion: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
}

export interface RunningPod {
  readonly namespace: string;
  readonly name: string;
  readonly workload: WorkloadRef;
  /** Distinct scan references (name@digest where the kubelet reported one), sorted. */
  readonly images: readonly string[];
}

/**
 * The reference to scan for one container: the digest the kubelet resolved (`imageID`, e.g.
 * `docker.io/library/nginx@sha256:…` from containerd, `docker-pullable://nginx@sha256:…` from
 * dockershim) when it names a repository and a digest; the reference the pod spec holds otherwise
 * (not started yet, or an image ID without a repository, `sha256:…`, as for a locally built image).
 */
export function runningReference(specImage: string | undefined, imageID: string | undefined): string | undefined {
  if (imageID !== undefined && imageID !== '') {
    const stripped = imageID.replace(/^docker-pullable:\/\/|^docker:\/\//, '');
    const parsed = parseImageReference(stripped);
    if (parsed.valid && parsed.reference.digest !== undefined) return scanReference(parsed.reference).canonical;
  }
  if (specImage === undefined || specImage === '') return undefined;
  const parsed = parseImageReference(specImage);
  return parsed.valid ? scanReference(parsed.reference).canonical : undefined;
}

/** A ReplicaSet named `<deployment>-<pod-template-hash>` belongs to that Deployment. */
function deploymentOf(replicaSet: string, templateHash: string | undefined): string | undefined {
  if (templateHash === undefined || templateHash === '') return undefined;
  const suffix = `-${templateHash}`;
  return replicaSet.endsWith(suffix) && replicaSet.length > suffix.length ? replicaSet.slice(0, -suffix.length) : undefined;
}

/**
 * The workload that runs the pod, without asking the API: the pod's controller owner, and for a
 * ReplicaSet the Deployment its name and the pod's `pod-template-hash` label point at (the
 * Deployment controller names ReplicaSets so; a ReplicaSet created by hand with such a name would be
 * attributed to a Deployment of that name). A Job is reported as the Job, not its CronJob: the
 * CronJob is named only in the Job's own ownerReferences, which the pod does not carry. No owner: the
 * pod itself.
 */
export function workloadOf(pod: PodObject): WorkloadRef | undefined {
  const meta = pod.metadata;
  const namespace = meta?.namespace;
  const name = meta?.name;
  if (namespace === undefined || name === undefined) return undefined;
  const owner = meta?.ownerReferences?.find((o) => o.controller === true);
  if (owner?.kind === undefined || owner.name === undefined || owner.apiVersion === undefined) {
    return { apiVersion: 'v1', kind: 'Pod', namespace, name };
  }
  if (owner.kind === 'ReplicaSet' && owner.apiVersion === 'apps/v1') {
    const deployment = deploymentOf(owner.name, meta?.labels?.['pod-template-hash']);
    if (deployment !== undefined) return { apiVersion: 'apps/v1', kind: 'Deployment', namespace, name: deployment };
  }
  return { apiVersion: owner.apiVersion, kind: owner.kind, namespace, name: owner.name };
}

/**
 * The pod as the loop holds it, or undefined for one that runs nothing any more (Succeeded, Failed)
 * or has no name. Containers, init and ephemeral containers alike.
 */
export function runningPod(pod: PodObject): RunningPod | undefined {
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') return undefined;
  const workload = workloadOf(pod);
  if (workload === undefined) return undefined;
  const images = new Set<string>();
  const add = (
    specs: readonly { readonly name: string; readonly image?: string | undefined }[] | undefined,
    statuses: readonly ContainerStatus[] | undefined,
  ): void => {
    for (const c of specs ?? []) {
      const status = statuses?.find((s) => s.name === c.name);
      const reference = runningReference(c.image, status?.imageID);
      if (reference !== undefined) images.add(reference);
    }
  };
  add(pod.spec?.containers, pod.status?.containerStatuses);
  add(pod.spec?.initContainers, pod.status?.initContainerStatuses);
  add(pod.spec?.ephemeralContainers, pod.status?.ephemeralContainerStatuses);
  return { namespace: workload.namespace, name: pod.metadata?.name ?? '', workload, images: [...images].sort() };
}
