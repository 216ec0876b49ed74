/**
 * A consecutive-failure circuit breaker on an injected clock. Closed: `threshold` failures in a row
 * (a success in between starts the count again) open it. Open: every `probeIntervalMs` the probe runs
 * (half-open while it does); an answer closes the breaker, a failure opens it for another interval.
 * What counts as a failure is the caller's decision (resilience.ts); this module only keeps the state.
 */
import type { CircuitStateName } from '../observability/metrics.js';
import type { Clock, Timer } from './clock.js';

export type { CircuitStateName } from '../observability/metrics.js';

export interface CircuitTransition {
  readonly from: CircuitStateName;
  readonly to: CircuitStateName;
}

export interface CircuitBreakerOptions {
  /** Consecutive failures that open it; 0: never opens. */
  readonly threshold: number;
  readonly probeIntervalMs: number;
  readonly clock: Clock;
  /** Told every transition, after the state has changed. */
  readonly onTransition: (transition: CircuitTransition) => void;
}

export interface CircuitBreaker {
  readonly state: CircuitStateName;
  readonly enabled: boolean;
  /** Failures counted since the last success (closed state). */
  readonly failures: number;
  /** Clock time of the next probe while open. */
  readonly nextProbeAt: number;
  /** Clock time the breaker last left `closed`. */
  readonly openedAt: number;
  /** The scanner answered: the count of failures starts again. */
  success(): void;
  /** `count` failures of the scanner service (closed state only; ignored otherwise). */
  failure(count?: number): void;
  /**
   * The call that tells whether the scanner is back (resolves true when it answered). Without one,
   * an open breaker stays open: the API client sets it when it is made.
   */
  setProbe(probe: () => Promise<boolean>): void;
  /** Stops the probe timer for good. */
  dispose(): void;
}

export function createCircuitBreaker(opts: CircuitBreakerOptions): CircuitBreaker {
  const enabled = opts.threshold > 0;
  let state: CircuitStateName = 'closed';
  let failures = 0;
  let openedAt = 0;
  let nextProbeAt = 0;
  let timer: Timer | undefined;
  let probe: (() => Promise<boolean>) | undefined;
  let disposed = false;

  const move = (to: CircuitStateName): void => {
    const from = state;
    if (from === to) return;
    state = to;
    if (from === 'closed') openedAt = opts.clock.now();
    opts.onTransition({ from, to });
  };

  const open = (): void => {
    failures = 0;
    nextProbeAt = opts.clock.now() + opts.probeIntervalMs;
    timer?.cancel();
    if (!disposed) timer = opts.clock.setTimer(runProbe, opts.probeIntervalMs);
    move('open');
  };

  function runProbe(): void {
    timer = undefined;
    if (disposed || state !== 'open') return;
    if (probe === undefined) {
      open();
      return;
    }
    move('half_open');
    probe().then(
      (answered) => {
        if (disposed || state !== 'half_open') return;
        if (answered) {
          failures = 0;
          move('closed');
        } else open();
      },
      () => {
        if (!disposed && state === 'half_open') open();
      },
    );
  }

  return {
    get state() {
      return state;
    },
    enabled,
    get failures() {
      return failures;
    },
    get nextProbeAt() {
      return nextProbeAt;
    },
    get openedAt() {
      return openedAt;
    },
    success() {
      if (state === 'closed') failures = 0;
    },
    failure(count = 1) {
      if (!enabled || state !== 'closed') return;
      failures += count;
      if (failures >= opts.threshold) open();
    },
    setProbe(next) {
      probe = next;
    },
    dispose() {
      disposed = true;
      timer?.cancel();
      timer = undefined;
    },
  };
}
