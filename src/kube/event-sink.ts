/**
 * The Kubernetes API side of events: credentials (in-cluster service account, or a kubeconfig when
 * scangate runs outside the cluster) and an EventSink that writes events.k8s.io/v1 Events with
 * @kubernetes/client-node. Only this module knows the Event's wire shape.
 *
 * @kubernetes/client-node 1.x: 2.x depends on undici 8 (Node >= 22.19) and would not run on Node 20;
 * 1.4 runs on Node 20 and 24 (its node-fetch 2 transport honours an AbortSignal).
 */
import { randomBytes } from 'node:crypto';
import {
  ApiException,
  EventsV1Api,
  EventsV1Event,
  EventsV1EventSeries,
  KubeConfig,
  Observable,
  V1MicroTime,
  V1ObjectMeta,
  V1ObjectReference,
  type ConfigurationOptions,
  type ObservableMiddleware,
  type RequestContext,
  type ResponseContext,
} from '@kubernetes/client-node';
import { KubeApiError } from '../errors.js';
import { kubeCredentialSource } from './credentials.js';
import type { EventSeries, EventSink, NewEvent } from '../observability/events.js';

/** `reportingController` of every event scangate writes (a qualified name, as the API requires). */
export const REPORTING_CONTROLLER = 'scangate.io/scangate';
/** The API's bound of reportingInstance. */
const MAX_INSTANCE_CHARS = 128;

export interface KubeCredentials {
  readonly kubeConfig: KubeConfig;
  /** Where they came from, for the start-up log line (never the credentials themselves). */
  readonly source: 'kubeconfig' | 'in-cluster';
  /** The API server's URL (origin only). */
  readonly server: string;
}

/**
 * Kubernetes credentials as kubectl would find them, minus the guesses: `KUBECONFIG` when set (one
 * file, or a list merged as kubectl merges it), else the pod's service account when running in a
 * cluster, else none (no ~/.kube/config, no localhost:8080: an operator's own cluster is never written
 * to by surprise). Throws when KUBECONFIG names a file that cannot be read or has no current cluster.
 */
export function loadKubeCredentials(env: Readonly<Record<string, string | undefined>>, fileExists: (path: string) => boolean): KubeCredentials | undefined {
  const source = kubeCredentialSource(env, fileExists);
  if (source === undefined) return undefined;
  const kubeConfig = new KubeConfig();
  if (source === 'kubeconfig') {
    const files = (env['KUBECONFIG'] ?? '').split(process.platform === 'win32' ? ';' : ':').filter((f) => f !== '');
    if (files.length === 1 && files[0] !== undefined) kubeConfig.loadFromFile(files[0]);
    else kubeConfig.loadFromDefault();
  } else {
    kubeConfig.loadFromCluster();
  }
  const cluster = kubeConfig.getCurrentCluster();
  if (cluster === null) throw new Error('the kubeconfig has no current cluster');
  return { kubeConfig, source, server: URL.canParse(cluster.server) ? new URL(cluster.server).origin : '(unparseable server URL)' };
}

/** A DNS-subdomain name for an event about `objectName` (client-go names them `<object>.<hex>`). */
export function eventName(objectName: string, wallMs: number): string {
  const labels = objectName
    .toLowerCase()
    .split('.')
    .map((label) => label.replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, ''))
    .filter((label) => label !== '');
  let base = labels.join('.').slice(0, 200).replace(/[-.]+$/, '');
  if (base === '') base = 'scangate';
  return `${base}.${Math.max(0, Math.floor(wallMs)).toString(16)}${randomBytes(4).toString('hex')}`;
}

/** An instance of one of client-node's model classes (plain data classes with a no-argument constructor). */
function model<T extends object>(Type: new () => T, fields: Partial<T>): T {
  return Object.assign(new Type(), fields);
}

/** The events.k8s.io/v1 Event for `event`. */
export function eventBody(event: NewEvent, name: string, reportingInstance: string): EventsV1Event {
  const r = event.regarding;
  return model(EventsV1Event, {
    apiVersion: 'events.k8s.io/v1',
    kind: 'Event',
    metadata: model(V1ObjectMeta, { name, namespace: event.namespace }),
    eventTime: new V1MicroTime(event.eventTimeMs),
    type: 'Warning',
    reason: event.reason,
    action: event.action,
    note: event.note,
    reportingController: REPORTING_CONTROLLER,
    reportingInstance,
    regarding: model(V1ObjectReference, {
      apiVersion: r.apiVersion,
      kind: r.kind,
      name: r.name,
      ...(r.namespace !== undefined ? { namespace: r.namespace } : {}),
      ...(r.uid !== undefined ? { uid: r.uid } : {}),
    }),
    ...(event.series !== undefined
      ? { series: model(EventsV1EventSeries, { count: event.series.count, lastObservedTime: new V1MicroTime(event.series.lastObservedMs) }) }
      : {}),
  });
}

/** Options of one call: its AbortSignal (the generated client takes it only through a middleware). */
export function withSignal(signal: AbortSignal): ConfigurationOptions {
  const middleware: ObservableMiddleware = {
    pre: (request: RequestContext) => {
      request.setSignal(signal);
      return new Observable(Promise.resolve(request));
    },
    post: (response: ResponseContext) => new Observable(Promise.resolve(response)),
  };
  return { middleware: [middleware], middlewareMergeStrategy: 'append' };
}

/** client-node's errors mapped to ours, at this one boundary; the API's answer (which may quote the note) is not kept. */
export function apiError(what: string, error: unknown): KubeApiError {
  if (error instanceof ApiException) return new KubeApiError(`${what}: HTTP ${error.code}`, error.code);
  const kind = error instanceof Error && error.name === 'AbortError' ? 'timed out' : 'no answer';
  return new KubeApiError(`${what}: ${kind}`, undefined);
}

export function createKubeEventSink(opts: { readonly kubeConfig: KubeConfig; readonly reportingInstance: string }): EventSink {
  const api = opts.kubeConfig.makeApiClient(EventsV1Api);
  const instance = (opts.reportingInstance === '' ? 'scangate' : opts.reportingInstance).slice(0, MAX_INSTANCE_CHARS);
  return {
    async create(event, signal) {
      const name = eventName(event.regarding.name, event.eventTimeMs);
      try {
        await api.createNamespacedEvent({ namespace: event.namespace, body: eventBody(event, name, instance) }, withSignal(signal));
      } catch (error) {
        throw apiError('create event', error);
      }
      return { name };
    },
    async updateSeries(ref, series: EventSeries, signal) {
      // A JSON patch: `add` sets /series whether or not the event has one yet.
      const patch = [{ op: 'add', path: '/series', value: { count: series.count, lastObservedTime: new V1MicroTime(series.lastObservedMs) } }];
      try {
        await api.patchNamespacedEvent({ name: ref.name, namespace: ref.namespace, body: patch }, withSignal(signal));
      } catch (error) {
        throw apiError('update event series', error);
      }
    },
  };
}
