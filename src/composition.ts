import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type Koa from 'koa';
import type { Logger } from 'pino';
import type { ServerOptions } from './http/server.js';
import { createVerdictCache, type VerdictCache } from './cache/verdict-cache.js';
import type { Config } from './config.js';
import { createEvaluator, type Evaluator } from './engine/evaluator.js';
import { createPinner } from './engine/pinner.js';
import { createAdmissionCore, type AdmissionCore } from './admission/core.js';
import { observeAll, type DecisionObserver } from './admission/decision-record.js';
import { ConfigError } from './errors.js';
import { createApp, type AppState } from './http/app.js';
import { createDecisionLog } from './observability/decision-log.js';
import { createProofKeeper, MIN_PROOF_KEY_BYTES, type ProofKeeper } from './policy/break-glass-proof.js';
import { boundedCounts, createRecheckLoop, createRecheckState, type RecheckClock, type RecheckLoop, type RecheckState } from './engine/recheck.js';
import { createScanBudget, createScanCoordinator, type ScanCoordinator, type Scanner } from './engine/scan-coordinator.js';
import { createLeaderElector, type LeaseApi, type ElectionClock } from './kube/leader-election.js';
import type { PodSource, PodSourceOptions } from './kube/recheck-kube.js';
import { createEventRecorder, runningImageEvents, type EventRecorder, type EventSink } from './observability/events.js';
import { parseImageReference } from './reference/parse-reference.js';
import { createMetrics, type Metrics } from './observability/metrics.js';
import { createAnchoreClient, type AnchoreClient } from './scanner/anchore-client.js';
import type { Clock } from './scanner/clock.js';
import { plainHttpAuthWarning } from './scanner/credentials.js';
import type { ScannerTransport } from './scanner/resilience.js';

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
  /** The admission flow without HTTP (admission/core.ts): what `app` serves. */
  readonly core: AdmissionCore;
  readonly app: Koa;
  /** What the server reports about MAX_CONNECTIONS (ServerOptions), counted and logged. */
  readonly connectionEvents: Required<Pick<ServerOptions, 'onConnectionDropped' | 'onConnectionPreempted'>>;
  /** Aborts the background scans and closes the scanner client: nothing of scangate keeps the process alive. */
  close(): void;
  /** Kubernetes Events for decisions, when an event sink was given; close() it at shutdown. */
  readonly events?: EventRecorder;
}

export interface ComposeOptions {
  readonly logger: Logger;
  /** Monotonic clock in ms; tests inject a fake one. */
  readonly now?: () => number;
  /** Time and timers of the scanner client (retries, backoff, breaker, polling); default the system's with `now`. */
  readonly scannerClock?: Clock;
  /** Replaces the Anchore client behind the scan coordinator (tests of the engine and the core alone). */
  readonly scanner?: Scanner;
  readonly defaultMetrics?: boolean;
  /** Wall clock (ms since the epoch) of break-glass proofs' expiry; tests inject one. */
  readonly wallClock?: () => number;
  /** More observers of decisions (tests). */
  readonly observers?: readonly DecisionObserver[];
  /** Where Kubernetes Events go (main.ts: kube/event-sink.ts when credentials are found); absent: no events. */
  readonly eventSink?: EventSink;
}

/**
 * The break-glass proof key: BREAK_GLASS_KEY_FILE (the chart's Secret, the same for every replica and
 * kept across upgrades), or a random key for this process alone.
 */
function proofKeeper(config: Config, opts: ComposeOptions): ProofKeeper {
  let key: Buffer;
  if (config.breakGlass.keyFile !== undefined) {
    try {
      key = readFileSync(config.breakGlass.keyFile);
    } catch (error) {
      throw new ConfigError([`BREAK_GLASS_KEY_FILE: cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`]);
    }
    if (key.length < MIN_PROOF_KEY_BYTES) throw new ConfigError([`BREAK_GLASS_KEY_FILE: the key must have at least ${MIN_PROOF_KEY_BYTES} bytes`]);
  } else {
    key = randomBytes(32);
    if (config.breakGlass.users.length > 0 || config.breakGlass.groups.length > 0) {
      opts.logger.warn('BREAK_GLASS_KEY_FILE is not set: break-glass proofs hold only for this process (another replica, or this one restarted, refuses them)');
    }
  }
  return createProofKeeper({ key, ttlMs: config.breakGlass.proofTtlMs, ...(opts.wallClock !== undefined ? { now: opts.wallClock } : {}) });
}

/** The event recorder as an observer of the admission core: validating decisions only. */
function eventsObserver(events: EventRecorder): DecisionObserver {
  return {
    decided: (record) => {
      events.record(record);
    },
    mutated: () => undefined,
    unchanged: () => undefined,
  };
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
    scanner: opts.scanner ?? scanner,
    ...(config.scanner.policyId !== undefined ? { policyId: config.scanner.policyId } : {}),
    maxScanDurationMs: config.scanner.maxScanDurationMs,
    maxConcurrentScans: config.scanner.maxConcurrentScans,
    maxScansPerNamespace: config.scanner.maxScansPerNamespace,
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
  const core = createAdmissionCore({
    evaluator,
    modes: { defaultMode: config.decision.mode, namespaceModes: config.decision.namespaceModes, workloadMode: config.decision.workloadMode },
    breakGlass: config.breakGlass,
    proofs: proofKeeper(config, opts),
    ...(config.pinning.enabled
      ? {
          pinner: createPinner({
            rules: config.rules,
            exemptNamespaces: config.exemptNamespaces,
            coordinator,
            maxNewScansPerRequest: config.scanner.maxNewScansPerRequest,
            ...clock,
          }),
        }
      : {}),
    deadline: config.deadline,
    // Twice the namespace's scans: its requests may wait for each of them, and join others'.
    maxWaitingPerNamespace: 2 * config.scanner.maxScansPerNamespace,
    observer: observeAll([
      createDecisionLog({ logger: opts.logger, metrics }),
      ...(events !== undefined ? [eventsObserver(events)] : []),
      ...(opts.observers ?? []),
    ]),
    ...clock,
  });
  const app = createApp({
    core,
    metrics,
    logger: opts.logger,
    maxBodyBytes: config.server.maxBodyBytes,
    maxInflightBodyBytes: config.server.maxInflightBodyBytes,
    state,
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
  return { config, cache, coordinator, evaluator, metrics, scanner, scannerTransport, state, core, app, connectionEvents, close, ...(events !== undefined ? { events } : {}) };
}

/**
 * The ScanBudget namespace of re-checks: not a valid namespace name, so no tenant shares it;
 * MAX_SCANS_PER_NAMESPACE bounds re-check scans as it bounds one namespace's.
 */
export const RECHECK_BUDGET_NAMESPACE = 'scangate:recheck';
/** Events written for one image that turned to fail (one per workload); the rest are counted in the log line. */
const MAX_EVENTS_PER_TRANSITION = 100;

export interface Recheck {
  readonly state: RecheckState;
  readonly loop: RecheckLoop;
  /** Tries for the Lease; the holder watches pods and runs the loop. */
  start(): void;
  /** Stops, and releases the Lease when held. */
  stop(): Promise<void>;
  readonly isLeader: boolean;
}

export interface RecheckOptions {
  readonly leaseApi: LeaseApi;
  /** The pod list+watch (kube/recheck-kube.ts createPodSource), given everything but the credentials. */
  readonly podSource: (handlers: Pick<PodSourceOptions, 'onPod' | 'onDelete' | 'onList' | 'exemptNamespaces' | 'logger'>) => PodSource;
  /** holderIdentity: the pod name and a random suffix. */
  readonly identity: string;
  readonly logger: Logger;
  readonly clock?: ElectionClock & RecheckClock;
}

const realClock: ElectionClock & RecheckClock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimer(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return {
      cancel: () => {
        clearTimeout(t);
      },
    };
  },
};

/**
 * Re-verification of running workloads (README, "Re-verification"), wired to scangate's coordinator,
 * events and metrics: one replica (the Lease holder) watches pods and re-checks each running image
 * through the same lookup as admission, so the verdict cache is updated for admission too.
 */
export function composeRecheck(scangate: Scangate, opts: RecheckOptions): Recheck {
  const { config, coordinator, metrics } = scangate;
  const clock = opts.clock ?? realClock;
  const logger = opts.logger.child({ component: 'recheck' });
  const state = createRecheckState({
    timing: {
      intervalMs: config.recheck.intervalMs,
      passTtlMs: config.cache.passTtlMs,
      failTtlMs: config.cache.failTtlMs,
      errorRetryMs: Math.min(60_000, config.recheck.intervalMs),
    },
    exemptNamespaces: config.exemptNamespaces,
  });
  const updateGauge = (): void => {
    metrics.runningImages.reset();
    for (const [namespace, row] of boundedCounts(state.countsByNamespace(), config.recheck.metricNamespaces)) {
      for (const verdict of ['pass', 'fail', 'unknown'] as const) metrics.runningImages.set({ namespace, verdict }, row[verdict]);
    }
  };
  const loop = createRecheckLoop({
    state,
    async check(image) {
      const parsed = parseImageReference(image);
      if (!parsed.valid) return { outcome: { kind: 'error', code: 'SCANGATE_ERR_BAD_REFERENCE', message: parsed.error }, cached: false };
      // One new scan per re-check, counted against the re-check namespace (MAX_SCANS_PER_NAMESPACE
      // where the coordinator has it): admission's scans keep their slots.
      const budget = createScanBudget(1, RECHECK_BUDGET_NAMESPACE);
      const { source, outcome } = await coordinator.lookup(parsed.reference, config.scanner.maxScanDurationMs, budget);
      metrics.rechecks.inc({ result: outcome.kind === 'verdict' ? outcome.verdict.status : 'error' });
      return { outcome, cached: source === 'hit' };
    },
    ratePerSecond: config.recheck.ratePerSecond,
    maxInFlight: config.recheck.maxInFlight,
    onFailed(transition) {
      const events = runningImageEvents(transition, MAX_EVENTS_PER_TRANSITION);
      logger.warn(
        { image: transition.image, workloads: transition.workloads.length, events: scangate.events !== undefined ? events.length : 0 },
        'running image now fails policy',
      );
      for (const intent of events) scangate.events?.recordIntent(intent);
    },
    onChecked: updateGauge,
    clock,
    logger,
  });
  let pods: PodSource | undefined;
  const elector = createLeaderElector({
    api: opts.leaseApi,
    identity: opts.identity,
    leaseDurationMs: config.recheck.leaseDurationMs,
    // client-go's proportions (15 s / 10 s / 2 s).
    renewDeadlineMs: (config.recheck.leaseDurationMs * 2) / 3,
    retryPeriodMs: config.recheck.leaseDurationMs / 7.5,
    clock,
    onStartedLeading() {
      pods = opts.podSource({
        exemptNamespaces: config.exemptNamespaces,
        logger,
        onPod(key, pod) {
          if (pod === undefined) state.deletePod(key);
          else state.upsertPod(key, pod);
          loop.poke();
        },
        onDelete(key) {
          state.deletePod(key);
        },
        onList(keys) {
          // A relist: what is not listed any more is gone (verdicts of what still runs are kept).
          for (const key of state.podKeys()) if (!keys.has(key)) state.deletePod(key);
          updateGauge();
          logger.info({ pods: state.podCount, images: state.imageCount }, 're-check: pods listed');
        },
      });
      pods.start();
      loop.start();
    },
    onStoppedLeading() {
      loop.stop();
      pods?.stop();
      pods = undefined;
      // Only the leader reports running images: another replica's figures would be stale.
      state.clear();
      metrics.runningImages.reset();
    },
    logger,
  });
  return {
    state,
    loop,
    start() {
      elector.start();
    },
    async stop() {
      await elector.stop();
      loop.stop();
      pods?.stop();
      await loop.idle();
    },
    get isLeader() {
      return elector.isLeader;
    },
  };
}
