import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type Koa from 'koa';
import type { Logger } from 'pino';
import type { ServerOptions } from './http/server.js';
import { createVerdictCache, type VerdictCache } from './cache/verdict-cache.js';
import type { Config } from './config.js';
import { createEvaluator, type Evaluator } from './engine/evaluator.js';
import { createPinner } from './engine/pinner.js';
import { createScanCoordinator, type ScanCoordinator, type Scanner } from './engine/scan-coordinator.js';
import { createAdmissionCore, type AdmissionCore } from './admission/core.js';
import { observeAll, type DecisionObserver } from './admission/decision-record.js';
import { ConfigError } from './errors.js';
import { createApp, type AppState } from './http/app.js';
import { createDecisionLog } from './observability/decision-log.js';
import { createProofKeeper, MIN_PROOF_KEY_BYTES, type ProofKeeper } from './policy/break-glass-proof.js';
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
  /** The admission flow without HTTP (admission/core.ts): what `app` serves. */
  readonly core: AdmissionCore;
  readonly app: Koa;
  /** What the server reports about MAX_CONNECTIONS (ServerOptions), counted and logged. */
  readonly connectionEvents: Required<Pick<ServerOptions, 'onConnectionDropped' | 'onConnectionPreempted'>>;
}

export interface ComposeOptions {
  readonly logger: Logger;
  /** Monotonic clock in ms; tests inject a fake one. */
  readonly now?: () => number;
  /** Replaces the Anchore client (tests of the engine alone). */
  readonly scanner?: Scanner;
  readonly defaultMetrics?: boolean;
  /** Wall clock (ms since the epoch) of break-glass proofs' expiry; tests inject one. */
  readonly wallClock?: () => number;
  /** More observers of decisions (events: observability/events.ts). */
  readonly observers?: readonly DecisionObserver[];
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
    observer: observeAll([createDecisionLog({ logger: opts.logger, metrics }), ...(opts.observers ?? [])]),
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
  return { config, cache, coordinator, evaluator, metrics, scannerTransport, state, core, app, connectionEvents };
}
