import type Koa from 'koa';
import type { Logger } from 'pino';
import type { ServerOptions } from './http/server.js';
import { createVerdictCache, type VerdictCache } from './cache/verdict-cache.js';
import type { Config } from './config.js';
import { createEvaluator, type Evaluator } from './engine/evaluator.js';
import { createPinner } from './engine/pinner.js';
import { createScanCoordinator, type ScanCoordinator } from './engine/scan-coordinator.js';
import { createApp, type AppState } from './http/app.js';
import { createMetrics, type Metrics } from './observability/metrics.js';
import { createAnchoreClient, type AnchoreClient } from './scanner/anchore-client.js';
import type { Clock } from './scanner/clock.js';
import { plainHttpAuthWarning } from './scanner/credentials.js';
import type { ScannerTransport } from './scanner/resilience.js';

const KUBE_CONTROLLERS: readonly string[] = [
  'system:kube-controller-manager',
  ...['replicaset', 'replication', 'statefulset', 'daemon-set', 'job', 'deployment', 'cronjob'].map((c) => `system:serviceaccount:kube-system:${c}-controller`),
];

export interface Scangate {
  readonly config: Config;
  readonly cache: VerdictCache;
  readonly coordinator: ScanCoordinator;
  readonly evaluator: Evaluator;
  readonly metrics: Metrics;
  /** The scanner client (its close() ends its sockets and timers). */
  readonly scanner: AnchoreClient;
  /** Retry, timeout and the circuit breaker in front of the scanner (observe it with onStateChange). */
  readonly scannerTransport: ScannerTransport;
  readonly state: AppState;
  readonly app: Koa;
  /** What the server reports about MAX_CONNECTIONS (ServerOptions), counted and logged. */
  readonly connectionEvents: Required<Pick<ServerOptions, 'onConnectionDropped' | 'onConnectionPreempted'>>;
  /** Aborts the background scans and closes the scanner client: nothing of scangate keeps the process alive. */
  close(): void;
}

export interface ComposeOptions {
  readonly logger: Logger;
  /** Monotonic clock in ms; tests inject a fake one. */
  readonly now?: () => number;
  /** Time and timers of the scanner client (retries, backoff, breaker, polling); default the system's with `now`. */
  readonly scannerClock?: Clock;
  readonly defaultMetrics?: boolean;
}

/**
 * Wires scangate's parts together from a validated config. The CLI entry (main.ts) and the tests are
 * the only callers; nothing here reads the environment, opens sockets or handles signals.
 */
export function composeScangate(config: Config, opts: ComposeOptions): Scangate {
  const cache = createVerdictCache({ ...config.cache, ...(opts.now !== undefined ? { now: opts.now } : {}) });
  const metrics = createMetrics({ defaultMetrics: opts.defaultMetrics ?? false, cacheSize: () => cache.size, cacheBytes: () => cache.bytes });
  const clock = opts.now !== undefined ? { now: opts.now } : {};
  const plainHttp = plainHttpAuthWarning(config.scanner.url);
  if (plainHttp !== undefined) opts.logger.warn({ component: 'scanner' }, plainHttp);
  // The client builds the one transport (retry, timeout, breaker) in front of this scanner.
  const scanner = createAnchoreClient({
    // Config['scanner'] carries the client's settings under the same names.
    ...config.scanner,
    baseUrl: config.scanner.url,
    metrics,
    logger: opts.logger.child({ component: 'scanner' }),
    ...(opts.scannerClock !== undefined ? { clock: opts.scannerClock } : clock),
  });
  const scannerTransport = scanner.transport;
  const coordinator = createScanCoordinator({
    cache,
    scanner,
    ...(config.scanner.policyId !== undefined ? { policyId: config.scanner.policyId } : {}),
    maxScanDurationMs: config.scanner.maxScanDurationMs,
    maxConcurrentScans: config.scanner.maxConcurrentScans,
    circuit: scannerTransport,
    metrics,
    logger: opts.logger.child({ component: 'scan' }),
    ...clock,
  });
  const evaluator = createEvaluator({
    rules: config.rules,
    decision: config.decision,
    exemptNamespaces: config.exemptNamespaces,
    maxImagesPerReview: config.maxImagesPerReview,
    maxNewScansPerRequest: config.scanner.maxNewScansPerRequest,
    coordinator,
    metrics,
    ...clock,
  });
  const state: AppState = { ready: false };
  const app = createApp({
    evaluator,
    metrics,
    logger: opts.logger,
    deadline: config.deadline,
    maxBodyBytes: config.server.maxBodyBytes,
    maxInflightBodyBytes: config.server.maxInflightBodyBytes,
    state,
    modes: { defaultMode: config.decision.mode, namespaceModes: config.decision.namespaceModes, workloadMode: config.decision.workloadMode },
    // Until the proof scangate writes into a vetted template (issue 15) replaces it, the controllers'
    // pods are trusted by identity: kube-controller-manager's own, or one per controller with
    // --use-service-account-credentials (BREAK_GLASS_CONTROLLERS is gone from the settings).
    breakGlass: { users: config.breakGlass.users, groups: config.breakGlass.groups, controllers: KUBE_CONTROLLERS },
    ...(config.pinning.enabled
      ? { pinner: createPinner({ rules: config.rules, exemptNamespaces: config.exemptNamespaces, coordinator, ...clock }) }
      : {}),
    ...clock,
  });
  // What the server (http/server.ts) reports about MAX_CONNECTIONS, for main and the test harness alike.
  const connectionEvents = {
    onConnectionDropped: (): void => {
      metrics.overloadRefusals.inc({ reason: 'connections' });
    },
    onConnectionPreempted: (peer: string): void => {
      metrics.overloadRefusals.inc({ reason: 'connections_preempted' });
      opts.logger.warn({ peer }, 'connection closed to make room for a client holding fewer (MAX_CONNECTIONS)');
    },
  };
  const close = (): void => {
    coordinator.abortAll();
    scanner.close();
  };
  return { config, cache, coordinator, evaluator, metrics, scanner, scannerTransport, state, app, connectionEvents, close };
}
