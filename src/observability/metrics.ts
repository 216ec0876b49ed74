import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type Endpoint = 'validate' | 'image_policy' | 'cli' | 'mutate';
export type CacheResult = 'hit' | 'miss' | 'shared';
/** `version`: `GET /v2/version` (auto-detection; the breaker's probe on v2); `status`: v1 `GET /status` (the breaker's probe on v1). */
export type ScannerOperation = 'add_image' | 'get_image' | 'check' | 'version' | 'status';
export type ScannerCallOutcome =
  | 'ok'
  | 'not_analyzed'
  | 'auth_error'
  | 'rate_limited'
  | 'server_error'
  | 'client_error'
  | 'timeout'
  | 'network_error'
  | 'protocol_error';
export type DeadlineReason = 'timeout' | 'scanner_error';
/** Values of scangate_scanner_circuit_state (README's metrics table). */
export const CIRCUIT_STATE_VALUE = { closed: 0, open: 1, half_open: 2 } as const;
export type CircuitStateName = keyof typeof CIRCUIT_STATE_VALUE;

/** Every metric scangate exports, on a registry of its own (never prom-client's global one). */
export interface Metrics {
  readonly registry: Registry;
  readonly decisions: Counter<'endpoint' | 'result'>;
  readonly decisionDuration: Histogram<'endpoint'>;
  readonly scannerCalls: Counter<'operation' | 'outcome'>;
  readonly scanDuration: Histogram<'result'>;
  readonly cacheLookups: Counter<'result'>;
  readonly deadlineExpiries: Counter<'reason' | 'action'>;
  readonly scansInProgress: Gauge;
  readonly breakGlass: Counter<'outcome'>;
  readonly pins: Counter<'result'>;
  readonly scansDeferred: Counter;
  readonly overloadRefusals: Counter<'reason'>;
  /** 0 closed, 1 open, 2 half-open (CIRCUIT_STATE_VALUE). */
  readonly scannerCircuitState: Gauge;
  readonly scannerCircuitTransitions: Counter<'to'>;
  /** Kubernetes Events not written, by reason (observability/events.ts EventDropReason). */
  readonly eventsDropped: Counter<'reason'>;
  /** Kubernetes API calls that wrote an event: `operation` create (a new event) or series (a repeat's count). */
  readonly eventsWritten: Counter<'operation'>;
  /**
   * Distinct images running, by namespace and last verdict (pass, fail, unknown), set by the
   * re-verification loop's leader (engine/recheck.ts); namespaces past RECHECK_METRIC_NAMESPACES are summed as `_other`.
   */
  readonly runningImages: Gauge<'namespace' | 'verdict'>;
  /** Re-checks of running images by result (pass, fail, error). */
  readonly rechecks: Counter<'result'>;
}

export function createMetrics(opts: { defaultMetrics?: boolean; cacheSize?: () => number; cacheBytes?: () => number } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics === true) collectDefaultMetrics({ register: registry, prefix: 'scangate_' });
  const cacheSize = opts.cacheSize;
  if (cacheSize !== undefined) {
    new Gauge({
      name: 'scangate_cache_entries',
      help: 'Verdicts currently cached',
      registers: [registry],
      collect() {
        this.set(cacheSize());
      },
    });
  }
  const cacheBytes = opts.cacheBytes;
  if (cacheBytes !== undefined) {
    new Gauge({
      name: 'scangate_cache_bytes',
      help: 'Heap held by the cached verdicts, as the cache counts it (bounded by CACHE_MAX_BYTES)',
      registers: [registry],
      collect() {
        this.set(cacheBytes());
      },
    });
  }
  return {
    registry,
    decisions: new Counter({
      name: 'scangate_decisions_total',
      help: 'Admission decisions by endpoint and result',
      labelNames: ['endpoint', 'result'],
      registers: [registry],
    }),
    decisionDuration: new Histogram({
      name: 'scangate_decision_duration_seconds',
      help: 'Time from request to answer',
      labelNames: ['endpoint'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 2.5, 5, 10, 20, 30],
      registers: [registry],
    }),
    scannerCalls: new Counter({
      name: 'scangate_scanner_calls_total',
      help: 'Calls to the scanner API by operation and outcome',
      labelNames: ['operation', 'outcome'],
      registers: [registry],
    }),
    scanDuration: new Histogram({
      name: 'scangate_scan_duration_seconds',
      help: 'Duration of whole scans (submit, analysis, policy check) by result',
      labelNames: ['result'],
      buckets: [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
      registers: [registry],
    }),
    cacheLookups: new Counter({
      name: 'scangate_cache_lookups_total',
      help: 'Verdict lookups: hit (cached), miss (new scan), shared (joined a scan in progress)',
      labelNames: ['result'],
      registers: [registry],
    }),
    deadlineExpiries: new Counter({
      name: 'scangate_deadline_expiries_total',
      help: 'Requests answered without a verdict, by reason (timeout | scanner_error) and action (denied | admitted)',
      labelNames: ['reason', 'action'],
      registers: [registry],
    }),
    breakGlass: new Counter({
      name: 'scangate_break_glass_total',
      help: 'Requests carrying the break-glass annotation, by outcome (admitted | not_needed | refused | ineffective)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    pins: new Counter({
      name: 'scangate_pins_total',
      help: 'Images seen by the mutating webhook, by result (pinned | already_pinned | local_rule | no_verdict)',
      labelNames: ['result'],
      registers: [registry],
    }),
    scansInProgress: new Gauge({
      name: 'scangate_scans_in_progress',
      help: 'Background scans currently running',
      registers: [registry],
    }),
    scansDeferred: new Counter({
      name: 'scangate_scans_deferred_total',
      help: 'Images not scanned because their review had already started MAX_NEW_SCANS_PER_REQUEST new scans',
      registers: [registry],
    }),
    overloadRefusals: new Counter({
      name: 'scangate_overload_refusals_total',
      help: 'Requests refused with 503 by a per-process bound, by reason (body_bytes; connections: closed at once, never answered; body_bytes_preempted, connections_preempted: an upload or a connection of a client holding more, cut to make room for one holding less)',
      labelNames: ['reason'],
      registers: [registry],
    }),
    scannerCircuitState: new Gauge({
      name: 'scangate_scanner_circuit_state',
      help: 'Circuit breaker in front of the scanner: 0 closed (calls go through), 1 open (calls refused), 2 half-open (one probe in flight)',
      registers: [registry],
    }),
    scannerCircuitTransitions: new Counter({
      name: 'scangate_scanner_circuit_transitions_total',
      help: 'Circuit breaker state changes, by the state entered (open | half_open | closed)',
      labelNames: ['to'],
      registers: [registry],
    }),
    eventsDropped: new Counter({
      name: 'scangate_events_dropped_total',
      help: 'Kubernetes Events not written, by reason (queue_full, rate_limited, api_error, shutdown, error)',
      labelNames: ['reason'],
      registers: [registry],
    }),
    eventsWritten: new Counter({
      name: 'scangate_events_written_total',
      help: 'Kubernetes Events written, by operation (create: a new event; series: a PATCH of a repeated event\'s count)',
      labelNames: ['operation'],
      registers: [registry],
    }),
    runningImages: new Gauge({
      name: 'scangate_running_images',
      help: 'Distinct images running, by namespace and last verdict (pass, fail, unknown); reported by the replica running the re-check loop',
      labelNames: ['namespace', 'verdict'],
      registers: [registry],
    }),
    rechecks: new Counter({
      name: 'scangate_rechecks_total',
      help: 'Re-checks of running images, by result (pass, fail, error)',
      labelNames: ['result'],
      registers: [registry],
    }),
  };
}
