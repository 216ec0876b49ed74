import type Koa from 'koa';
import type { Logger } from 'pino';
import type { ServerOptions } from './http/server.js';
import { createVerdictCache, type VerdictCache } from './cache/verdict-cache.js';
import type { DecisionRecord } from './admission/decision-record.js';
import type { Config } from './config.js';
import { createEvaluator, type Evaluator } from './engine/evaluator.js';
import { createPinner } from './engine/pinner.js';
import { createScanCoordinator, type ScanCoordinator, type Scanner } from './engine/scan-coordinator.js';
import { createApp, type AppState } from './http/app.js';
import { createEventRecorder, type EventRecorder, type EventSink } from './observability/events.js';
import { createMetrics, type Metrics } from './observability/metrics.js';
import { createAnchoreClient } from './scanner/anchore-client.js';
import { plainHttpAuthWarning } from './scanner/credentials.js';
import { createScannerTransport, type ScannerTransport } from './scanner/resilience.js';

export interface Scangate {
  readonly config: Config;
  readonly cache: VerdictCache;
  readonly coordinator: ScanCoordinator;
  readonly evaluator: Evaluator;
  readonly metrics: Metrics;
  /** Retry, timeout and the circuit breaker in front of the scanner (observe it with onStateChange). */
  readonly scannerTransport: ScannerTransport;
  readonly state: AppState;
  readonly app: Koa;
  /** What the server reports about MAX_CONNECTIONS (ServerOptions), counted and logged. */
  readonly connectionEvents: Required<Pick<ServerOptions, 'onConnectionDropped' | 'onConnectionPreempted'>>;
  /** Kubernetes Events for decisions, when an event sink was given; close() it at shutdown. */
  readonly events?: EventRecorder;
}

export interface ComposeOptions {
  readonly logger: Logger;
  /** Monotonic clock in ms; tests inject a fake one. */
  readonly now?: () => number;
  /** Replaces the Anchore client (tests of the engine alone). */
  readonly scanner?: Scanner;
  readonly defaultMetrics?: boolean;
  /** Where Kubernetes Events go (main.ts: kube/event-sink.ts when credentials are found); absent: no events. */
  readonly eventSink?: EventSink;
}

/**
 * Wires scangate's parts together from a validated config. The CLI entry (main.ts) and the tests are
 * the only callers; nothing here reads the environment, opens sockets or handles signals.
 */
export function composeScangate(config: Config, opts: ComposeOptions): Scangate {
  const cache = createVerdictCache({ ...config.cache, ...(opts.now !== undefined ? { now: opts.now } : {}) });
  const metrics = createMetrics({ defaultMetrics: opts.defaultMetrics ?? false, cacheSize: () => cache.size, cacheBytes: () => cache.bytes });
  const clock = opts.now !== undefined ? { now: opts.now } : {};
  // One breaker per scanner, whatever API version the client speaks.
  const scannerTransport = createScannerTransport({
    requestTimeoutMs: config.scanner.requestTimeoutMs,
    retryInitialMs: config.scanner.pollInitialMs,
    retryMaxMs: config.scanner.pollMaxMs,
    retryBudgetMs: config.scanner.retryBudgetMs,
    breakerFailures: config.scanner.breakerFailures,
    probeIntervalMs: config.scanner.breakerProbeIntervalMs,
    metrics,
    logger: opts.logger.child({ component: 'scanner' }),
    ...clock,
  });
  const plainHttp = opts.scanner === undefined ? plainHttpAuthWarning(config.scanner.url) : undefined;
  if (plainHttp !== undefined) opts.logger.warn({ component: 'scanner' }, plainHttp);
  const scanner =
    opts.scanner ??
    createAnchoreClient({
      // Config['scanner'] carries the client's settings under the same names.
      ...config.scanner,
      baseUrl: config.scanner.url,
      transport: scannerTransport,
      metrics,
      logger: opts.logger.child({ component: 'scanner' }),
      ...clock,
    });
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
  const events =
    opts.eventSink !== undefined
      ? createEventRecorder({ sink: opts.eventSink, limits: config.events, metrics, logger: opts.logger.child({ component: 'events' }) })
      : undefined;
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
    breakGlass: config.breakGlass,
    ...(events !== undefined ? { onDecision: (record: DecisionRecord) => { events.record(record); } } : {}),
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
  return { config, cache, coordinator, evaluator, metrics, scannerTransport, state, app, connectionEvents, ...(events !== undefined ? { events } : {}) };
}
