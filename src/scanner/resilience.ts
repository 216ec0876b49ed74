/**
 * The scanner edge's transport policy, independent of the API version (v1 and v2 clients share it):
 * per-call timeout, retry with capped exponential backoff (Retry-After honoured) within the scan's
 * retry budget, and one circuit breaker in front of the scanner. Built on cockatiel
 * (https://github.com/connor4312/cockatiel): retry(breaker(timeout(call))).
 *
 * What opens the breaker: `breakerFailures` consecutive calls that failed because the scanner is not
 * there or not working: connection refused/reset, DNS, TLS, a call past its timeout, HTTP 5xx. Not
 * counted (they prove the scanner is up and answering): 4xx (401/403, 404, 429 rate limiting, other
 * refusals), malformed answers, and calls cut short by scangate itself (scan bound, shutdown).
 *
 * While open, calls are refused at once with a ScannerCircuitOpenError and scans that are waiting to
 * retry give up at once (no retry storm). Every `probeIntervalMs` one probe (a cheap call given by the
 * API client, see setProbe) goes to the scanner: the breaker is half-open while it runs and every
 * other call is still refused; any answer of the scanner (even a 401) closes the breaker, a failure
 * opens it again for another interval.
 */
import {
  BrokenCircuitError,
  CircuitState,
  ConsecutiveBreaker,
  ExponentialBackoff,
  TimeoutStrategy,
  circuitBreaker,
  halfJitterGenerator,
  handleWhen,
  retry,
  timeout,
  type CircuitBreakerPolicy,
  type IBackoff,
  type IBackoffFactory,
  type IRetryBackoffContext,
  type TimeoutPolicy,
} from 'cockatiel';
import type { Logger } from 'pino';
import {
  ScanAbortedError,
  ScannerAuthError,
  ScannerCircuitOpenError,
  ScannerError,
  ScannerRateLimitedError,
  ScannerRequestTimeoutError,
  ScannerUnavailableError,
  describeError,
} from '../errors.js';
import { CIRCUIT_STATE_VALUE, type CircuitStateName, type Metrics, type ScannerOperation } from '../observability/metrics.js';

export type { CircuitStateName } from '../observability/metrics.js';

export interface CircuitTransition {
  readonly from: CircuitStateName;
  readonly to: CircuitStateName;
}

export interface ScannerTransportOptions {
  /** Bound of one HTTP call to the scanner. */
  readonly requestTimeoutMs: number;
  /** First retry delay; doubles (with jitter) up to retryMaxMs. */
  readonly retryInitialMs: number;
  readonly retryMaxMs: number;
  /** How long one call keeps retrying transient errors (5xx, 429, timeouts, connection) before giving up. */
  readonly retryBudgetMs: number;
  /** Consecutive failures that open the breaker; 0 disables it. */
  readonly breakerFailures: number;
  /** How long the breaker stays open before a probe goes through. */
  readonly probeIntervalMs: number;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Monotonic clock in ms (tests inject a fake one); the breaker's own timing uses real time. */
  readonly now?: () => number;
  /** "scanner rejected the credentials" is logged at most once per this interval (default 60 s). */
  readonly authLogIntervalMs?: number;
}

export interface CallOptions {
  /** The scan's signal: aborting it ends the call and any retry at once. */
  readonly signal: AbortSignal;
  /** Told every retryable failure and every success (see Scanner.scan in engine/scan-coordinator.ts). */
  readonly onCallResult?: (error: ScannerError | undefined) => void;
}

/** A call as the API client writes it: one HTTP exchange that honours `signal` and throws ScannerErrors. */
export type ScannerCall<T> = (signal: AbortSignal) => Promise<T>;

export interface ScannerProbe {
  readonly operation: ScannerOperation;
  readonly run: ScannerCall<unknown>;
}

export interface ScannerTransport {
  /** Runs one logical call: retried within the budget, through the breaker, each attempt bounded. */
  call<T>(operation: ScannerOperation, fn: ScannerCall<T>, opts: CallOptions): Promise<T>;
  /**
   * One attempt with the per-call timeout only: no retry, no breaker. For calls that have a retry
   * policy of their own (the API version detection's background probe, api-version.ts).
   */
  once<T>(operation: ScannerOperation, fn: ScannerCall<T>, signal: AbortSignal): Promise<T>;
  /** The error a call would get right now without reaching the scanner (open circuit), or undefined. */
  rejection(): ScannerCircuitOpenError | undefined;
  readonly state: CircuitStateName;
  /**
   * Observes every breaker transition; returns a function that stops observing. Issue 8's version
   * detection re-asks the scanner when `to === 'closed'` (the scanner is back from an outage).
   */
  onStateChange(listener: (transition: CircuitTransition) => void): () => void;
  /**
   * The cheap call that probes the scanner while the breaker is open (the API client's own, e.g. v1
   * GET /status), chosen at each probe: the API version may be known only later.
   */
  setProbe(probe: () => ScannerProbe): void;
  /** Stops the probe timer (shutdown, tests). */
  dispose(): void;
}

const DEFAULT_AUTH_LOG_INTERVAL_MS = 60_000;

function stateName(state: CircuitState): CircuitStateName {
  return state === CircuitState.Closed ? 'closed' : state === CircuitState.HalfOpen ? 'half_open' : 'open';
}

/** Counts towards opening the breaker: the scanner is absent or broken, not merely refusing. */
export function isOutage(error: unknown): boolean {
  return error instanceof ScannerUnavailableError || error instanceof ScannerRequestTimeoutError;
}

function hintOf(error: unknown): number | undefined {
  return error instanceof ScannerRateLimitedError || error instanceof ScannerUnavailableError ? error.retryAfterMs : undefined;
}

/** Exponential backoff with jitter, except that a Retry-After from the scanner sets that delay. */
class HintedBackoff implements IBackoffFactory<IRetryBackoffContext<unknown>> {
  constructor(private readonly inner: IBackoffFactory<IRetryBackoffContext<unknown>>) {}

  next(context: IRetryBackoffContext<unknown>): IBackoff<IRetryBackoffContext<unknown>> {
    const inner = this.inner.next(context);
    const hinted = 'error' in context.result ? hintOf(context.result.error) : undefined;
    const following = new HintedBackoff(inner);
    return { duration: hinted ?? inner.duration, next: (c) => following.next(c) };
  }
}

function abortReason(signal: AbortSignal): ScannerError {
  return signal.reason instanceof ScannerError ? signal.reason : new ScanAbortedError('scan aborted', { cause: signal.reason });
}

export function createScannerTransport(opts: ScannerTransportOptions): ScannerTransport {
  const now = opts.now ?? (() => performance.now());
  const authLogIntervalMs = opts.authLogIntervalMs ?? DEFAULT_AUTH_LOG_INTERVAL_MS;
  const enabled = opts.breakerFailures > 0;
  const breaker: CircuitBreakerPolicy = circuitBreaker(handleWhen(isOutage), {
    halfOpenAfter: opts.probeIntervalMs,
    breaker: new ConsecutiveBreaker(enabled ? opts.breakerFailures : Number.POSITIVE_INFINITY),
  });
  // Cooperative: the call's signal is aborted and axios destroys the socket; the call then throws.
  const perCall: TimeoutPolicy = timeout(opts.requestTimeoutMs, TimeoutStrategy.Cooperative);
  const lifetime = new AbortController();
  const listeners = new Set<(t: CircuitTransition) => void>();
  // Scans waiting between retries: told when the breaker opens so that they give up at once.
  const waitingRetries = new Set<(error: ScannerCircuitOpenError) => void>();
  let state: CircuitStateName = 'closed';
  let openedAt = 0;
  let nextProbeAt = 0;
  let lastOutage: ScannerError | undefined;
  let probe: (() => ScannerProbe) | undefined;
  let probeTimer: NodeJS.Timeout | undefined;
  let authFailing = false;
  let authLoggedAt = Number.NEGATIVE_INFINITY;
  opts.metrics.scannerCircuitState.set(CIRCUIT_STATE_VALUE.closed);

  const openError = (): ScannerCircuitOpenError => {
    const last = lastOutage !== undefined ? ` (last: ${lastOutage.message})` : '';
    const next =
      state === 'half_open' ? 'a probe is in progress' : `next probe in ${(Math.max(0, nextProbeAt - now()) / 1000).toFixed(1)}s`;
    return new ScannerCircuitOpenError(
      `circuit breaker open after ${opts.breakerFailures} consecutive scanner failures${last}; ${next}`,
      { cause: lastOutage },
    );
  };

  const scheduleProbe = (delayMs: number): void => {
    clearTimeout(probeTimer);
    if (probe === undefined || lifetime.signal.aborted) return;
    probeTimer = setTimeout(runProbe, delayMs);
    probeTimer.unref();
  };

  function runProbe(): void {
    if (probe === undefined || state !== 'open') return;
    const current = probe();
    breaker
      .execute(({ signal }) => attempt(current.operation, current.run, signal), lifetime.signal)
      .catch((error: unknown) => {
        // cockatiel counts Date.now(); a timer that fires a millisecond early is simply rescheduled.
        if (error instanceof BrokenCircuitError && state === 'open') scheduleProbe(20);
      });
  }

  breaker.onStateChange((next) => {
    const to = stateName(next);
    const from = state;
    if (to === from) return;
    state = to;
    opts.metrics.scannerCircuitState.set(CIRCUIT_STATE_VALUE[to]);
    opts.metrics.scannerCircuitTransitions.inc({ to });
    if (to === 'open') {
      if (from === 'closed') openedAt = now();
      nextProbeAt = now() + opts.probeIntervalMs;
      opts.logger.warn(
        {
          circuit: to,
          from,
          failures: opts.breakerFailures,
          probeIntervalMs: opts.probeIntervalMs,
          ...(lastOutage !== undefined ? { err: describeError(lastOutage) } : {}),
        },
        from === 'closed' ? 'scanner circuit opened: scanner calls refused until a probe succeeds' : 'scanner circuit opened again: the probe failed',
      );
      const error = openError();
      for (const giveUp of [...waitingRetries]) giveUp(error);
      // +1 ms: cockatiel compares Date.now() with its own opening time.
      scheduleProbe(opts.probeIntervalMs + 1);
    } else if (to === 'half_open') {
      opts.logger.info({ circuit: to, from }, 'scanner circuit half-open: probing the scanner');
    } else {
      clearTimeout(probeTimer);
      opts.logger.info({ circuit: to, from, openMs: Math.round(now() - openedAt) }, 'scanner circuit closed: the scanner answers again');
    }
    for (const listener of [...listeners]) {
      try {
        listener({ from, to });
      } catch (error) {
        opts.logger.error({ err: describeError(error) }, 'scanner circuit listener failed (bug)');
      }
    }
  });

  /** One bounded HTTP exchange; its signal aborts with a ScannerRequestTimeoutError at the timeout. */
  async function attempt<T>(operation: ScannerOperation, fn: ScannerCall<T>, signal: AbortSignal): Promise<T> {
    return perCall.execute(async ({ signal: bounded }) => {
      const controller = new AbortController();
      const onAbort = (): void => {
        controller.abort(
          signal.aborted ? signal.reason : new ScannerRequestTimeoutError(`scanner did not answer ${operation} within ${opts.requestTimeoutMs} ms`),
        );
      };
      if (bounded.aborted) onAbort();
      else bounded.addEventListener('abort', onAbort, { once: true });
      try {
        const result = await fn(controller.signal);
        authFailing = false;
        return result;
      } catch (error) {
        if (isOutage(error)) lastOutage = error as ScannerError;
        if (error instanceof ScannerAuthError) noteAuthError(operation, error);
        throw error;
      } finally {
        bounded.removeEventListener('abort', onAbort);
      }
    }, signal);
  }

  /** Logged when refusals start (again after a success), at most once per authLogIntervalMs. */
  function noteAuthError(operation: ScannerOperation, error: ScannerAuthError): void {
    if (authFailing || now() - authLoggedAt < authLogIntervalMs) return;
    authFailing = true;
    authLoggedAt = now();
    opts.logger.error({ status: error.status, operation }, 'scanner rejected the credentials: check ANCHORE_CLI_USER / ANCHORE_CLI_PASS');
  }

  /** Through the breaker; while it is open (or a probe runs) nothing reaches the scanner. */
  async function guarded<T>(operation: ScannerOperation, fn: ScannerCall<T>, signal: AbortSignal): Promise<T> {
    // With a probe registered, only the probe may half-open the breaker: an admission never waits
    // for a probe to a hanging scanner. Without one, cockatiel lets the first call after the
    // interval through as the probe.
    if (state === 'half_open' || (state === 'open' && probe !== undefined)) throw openError();
    try {
      return await breaker.execute(({ signal: s }) => attempt(operation, fn, s), signal);
    } catch (error) {
      if (error instanceof BrokenCircuitError) throw openError();
      throw error;
    }
  }

  return {
    async call<T>(operation: ScannerOperation, fn: ScannerCall<T>, { signal, onCallResult }: CallOptions): Promise<T> {
      let failingSince: number | undefined;
      // Aborted when the scan is (its bound, shutdown) or the breaker opens: stops any further retry.
      const stop = new AbortController();
      const policy = retry(
        handleWhen((error) => {
          if (!(error instanceof ScannerError) || !error.retryable || stop.signal.aborted) return false;
          failingSince ??= now();
          return now() - failingSince < opts.retryBudgetMs;
        }),
        {
          maxAttempts: Number.MAX_SAFE_INTEGER,
          backoff: new HintedBackoff(
            new ExponentialBackoff({ initialDelay: opts.retryInitialMs, maxDelay: opts.retryMaxMs, generator: halfJitterGenerator }),
          ),
        },
      ).dangerouslyUnref();
      let inCall = false;
      return new Promise<T>((resolve, reject) => {
        let settled = false;
        const finish = (): void => {
          settled = true;
          signal.removeEventListener('abort', onScanAbort);
          waitingRetries.delete(onOpen);
        };
        // cockatiel's retry delay cannot be interrupted: a scan waiting in it is answered here, and
        // the retry that wakes later finds `stop` aborted and makes no call.
        const giveUp = (error: ScannerError): void => {
          if (!stop.signal.aborted) stop.abort(error);
          if (inCall || settled) return;
          finish();
          reject(error);
        };
        const onScanAbort = (): void => {
          giveUp(abortReason(signal));
        };
        const onOpen = (error: ScannerCircuitOpenError): void => {
          giveUp(error);
        };
        if (signal.aborted) {
          reject(abortReason(signal));
          return;
        }
        signal.addEventListener('abort', onScanAbort, { once: true });
        waitingRetries.add(onOpen);
        policy
          .execute(async () => {
            if (stop.signal.aborted) throw stop.signal.reason as Error;
            inCall = true;
            try {
              const result = await guarded(operation, fn, signal);
              onCallResult?.(undefined);
              return result;
            } catch (error) {
              if (error instanceof ScannerError && error.retryable && !signal.aborted) onCallResult?.(error);
              throw error;
            } finally {
              inCall = false;
            }
          }, stop.signal)
          .then(
            (value) => {
              if (settled) return;
              finish();
              resolve(value);
            },
            (error: unknown) => {
              if (settled) return;
              finish();
              reject(error instanceof Error ? error : new ScanAbortedError(String(error)));
            },
          );
      });
    },
    once(operation, fn, signal) {
      return attempt(operation, fn, signal);
    },
    rejection() {
      if (state === 'closed' || !enabled) return undefined;
      if (state === 'open' && probe === undefined && now() >= nextProbeAt) return undefined;
      return openError();
    },
    get state() {
      return state;
    },
    onStateChange(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    setProbe(choose) {
      probe = choose;
      if (state === 'open') scheduleProbe(Math.max(0, nextProbeAt - now()) + 1);
    },
    dispose() {
      lifetime.abort(new ScanAbortedError('scanner transport disposed'));
      clearTimeout(probeTimer);
    },
  };
}
