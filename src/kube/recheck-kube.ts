/**
 * The Kubernetes API side of re-verification (README, "Re-verification"): the pods running in the
 * cluster (list + watch, cluster-wide) and the coordination.k8s.io/v1 Lease of the leader election,
 * on @kubernetes/client-node with the credentials kube/event-sink.ts loads.
 *
 * Pods are listed and watched with client-node's Watch, not its makeInformer: the informer keeps
 * every pod object in its cache (10 000 pods are well over 100 MB of heap), while the loop keeps
 * only what runningPod() extracts (engine/recheck.ts measures it). Exempt namespaces and finished
 * pods are left out by the API server (field selector), so they cost nothing here.
 */
import { CoordinationV1Api, CoreV1Api, KubeConfig, V1Lease, V1LeaseSpec, V1MicroTime, V1ObjectMeta, Watch } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { describeError } from '../errors.js';
import { apiError, withSignal } from './event-sink.js';
import type { LeaseApi, LeaseRecord, StoredLease } from './leader-election.js';
import { runningPod, type PodObject, type RunningPod } from './running-pods.js';

function leaseRecord(lease: V1Lease): StoredLease {
  const spec = lease.spec;
  const ms = (t: Date | undefined): number => (t instanceof Date ? t.getTime() : 0);
  return {
    resourceVersion: lease.metadata?.resourceVersion ?? '',
    record: {
      holderIdentity: spec?.holderIdentity ?? '',
      leaseDurationSeconds: spec?.leaseDurationSeconds ?? 0,
      acquireTimeMs: ms(spec?.acquireTime),
      renewTimeMs: ms(spec?.renewTime),
      leaseTransitions: spec?.leaseTransitions ?? 0,
    },
  };
}

function leaseBody(name: string, namespace: string, record: LeaseRecord, resourceVersion?: string): V1Lease {
  return Object.assign(new V1Lease(), {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: Object.assign(new V1ObjectMeta(), { name, namespace, ...(resourceVersion !== undefined ? { resourceVersion } : {}) }),
    spec: Object.assign(new V1LeaseSpec(), {
      holderIdentity: record.holderIdentity,
      leaseDurationSeconds: record.leaseDurationSeconds,
      acquireTime: new V1MicroTime(record.acquireTimeMs),
      renewTime: new V1MicroTime(record.renewTimeMs),
      leaseTransitions: record.leaseTransitions,
    }),
  });
}

/** The Lease `name` in `namespace` (get, create, replace by resourceVersion). */
export function createKubeLeaseApi(opts: { readonly kubeConfig: KubeConfig; readonly namespace: string; readonly name: string }): LeaseApi {
  const api = opts.kubeConfig.makeApiClient(CoordinationV1Api);
  const { name, namespace } = opts;
  return {
    async get(signal) {
      try {
        return leaseRecord(await api.readNamespacedLease({ name, namespace }, withSignal(signal)));
      } catch (error) {
        const mapped = apiError('read lease', error);
        if (mapped.status === 404) return undefined;
        throw mapped;
      }
    },
    async create(record, signal) {
      try {
        return leaseRecord(await api.createNamespacedLease({ namespace, body: leaseBody(name, namespace, record) }, withSignal(signal)));
      } catch (error) {
        throw apiError('create lease', error);
      }
    },
    async update(record, resourceVersion, signal) {
      try {
        return leaseRecord(await api.replaceNamespacedLease({ name, namespace, body: leaseBody(name, namespace, record, resourceVersion) }, withSignal(signal)));
      } catch (error) {
        throw apiError('update lease', error);
      }
    },
  };
}

/** The field selector that leaves out exempt namespaces and finished pods. */
export function podFieldSelector(exemptNamespaces: readonly string[]): string {
  return [...exemptNamespaces.map((ns) => `metadata.namespace!=${ns}`), 'status.phase!=Succeeded', 'status.phase!=Failed'].join(',');
}

export interface PodSource {
  /** Lists, then watches; relists after the watch ends or expires. */
  start(): void;
  stop(): void;
  /** True once the first list has been delivered. */
  readonly synced: boolean;
}

export interface PodSourceOptions {
  readonly kubeConfig: KubeConfig;
  readonly exemptNamespaces: readonly string[];
  /** A pod that runs something (or undefined: it runs nothing any more), by `namespace/name`. */
  readonly onPod: (key: string, pod: RunningPod | undefined) => void;
  readonly onDelete: (key: string) => void;
  /** After a (re)list: every key it held (pods known before and absent now are gone). */
  readonly onList: (keys: ReadonlySet<string>) => void;
  readonly logger: Logger;
  /** Pods per list page. */
  readonly pageSize?: number;
  /** Delay before a relist after an error. */
  readonly retryMs?: number;
}

const keyOf = (pod: PodObject): string | undefined =>
  pod.metadata?.namespace !== undefined && pod.metadata.name !== undefined ? `${pod.metadata.namespace}/${pod.metadata.name}` : undefined;

export function createPodSource(opts: PodSourceOptions): PodSource {
  const core = opts.kubeConfig.makeApiClient(CoreV1Api);
  const watch = new Watch(opts.kubeConfig);
  const fieldSelector = podFieldSelector(opts.exemptNamespaces);
  const pageSize = opts.pageSize ?? 500;
  const retryMs = opts.retryMs ?? 5000;
  let stopped = true;
  let synced = false;
  let watching: AbortController | undefined;
  let timer: NodeJS.Timeout | undefined;

  // Read after an await: stop() may have run meanwhile (a function, so the linter does not narrow it).
  const isStopped = (): boolean => stopped;

  const retry = (): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      timer = undefined;
      void list();
    }, retryMs);
    timer.unref();
  };

  async function list(): Promise<void> {
    if (stopped) return;
    const keys = new Set<string>();
    let resourceVersion = '';
    try {
      let page: string | undefined;
      do {
        const result = await core.listPodForAllNamespaces({ fieldSelector, limit: pageSize, ...(page !== undefined ? { _continue: page } : {}) });
        for (const pod of result.items) {
          const key = keyOf(pod);
          if (key === undefined) continue;
          keys.add(key);
          opts.onPod(key, runningPod(pod));
        }
        page = result.metadata?._continue !== undefined && result.metadata._continue !== '' ? result.metadata._continue : undefined;
        resourceVersion = result.metadata?.resourceVersion ?? '';
      } while (page !== undefined && !isStopped());
    } catch (error) {
      opts.logger.warn({ err: describeError(apiError('list pods', error)) }, 're-check: listing pods failed; retrying');
      retry();
      return;
    }
    if (isStopped()) return;
    opts.onList(keys);
    synced = true;
    void watchFrom(resourceVersion);
  }

  async function watchFrom(resourceVersion: string): Promise<void> {
    let last = resourceVersion;
    let expired = false;
    try {
      watching = await watch.watch(
        '/api/v1/pods',
        { fieldSelector, resourceVersion: last, allowWatchBookmarks: true, timeoutSeconds: 300 },
        (type: string, object: PodObject & { metadata?: { resourceVersion?: string }; code?: number }) => {
          if (type === 'ERROR') {
            // 410 Gone: the resourceVersion is too old; relist.
            expired = true;
            return;
          }
          const rv = object.metadata?.resourceVersion;
          if (rv !== undefined) last = rv;
          if (type === 'BOOKMARK') return;
          const key = keyOf(object);
          if (key === undefined) return;
          if (type === 'DELETED') opts.onDelete(key);
          else opts.onPod(key, runningPod(object));
        },
        (error: unknown) => {
          watching = undefined;
          if (stopped) return;
          if (error !== null && error !== undefined) {
            opts.logger.warn({ err: describeError(apiError('watch pods', error)) }, 're-check: the pod watch failed; relisting');
            retry();
          } else if (expired) {
            void list();
          } else {
            // The server closed it (timeoutSeconds): watch on from where it stopped, a second later
            // so that a server closing at once cannot make a busy loop.
            timer = setTimeout(() => {
              timer = undefined;
              if (!stopped) void watchFrom(last);
            }, 1000);
            timer.unref();
          }
        },
      );
    } catch (error) {
      opts.logger.warn({ err: describeError(apiError('watch pods', error)) }, 're-check: the pod watch failed; relisting');
      retry();
    }
  }

  return {
    start() {
      if (!stopped) return;
      stopped = false;
      void list();
    },
    stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      watching?.abort();
      watching = undefined;
    },
    get synced() {
      return synced;
    },
  };
}
