/**
 * The scanner edge's transport policy, independent of the API version (v1 and v2 clients share it):
 * a timeout per call, retry with capped exponential backoff (Retry-After honoured) within the scan's
 * retry budget, and one circuit breaker in front of the scanner (circuit-breaker.ts). Every timer is
 * on the injected clock (clock.ts), so tests move time by hand.
 *
 * What opens the breaker is evidence that the scanner service itself is failing (issue 15, I2), never
 * one tenant's images:
 * - counted at once: the connection failed (refused, reset, DNS, TLS): nothing answered at all;
 * - counted when the scanner's own health confirms it: a 5xx, a call past our timeout, an answer that
 *   cannot be read. One image can cause these (Anchore fetches the manifest from the image's registry
 *   while it answers POST /images, so a registry a tenant slows down makes that call slow or fail).
 *   When such failures would open the breaker, its probe (v1 GET /status, v2 GET /v2/version: calls
 *   about no image) is asked first, one at a time: they count only if it fails too.
 * - never counted: an answer (4xx, 401/403, 429, a readable answer of the wrong shape), an analysis
 *   that is slow, stuck or ends in analysis_failed (those are answers), and calls cut short by
 *   scangate itself (scan bound, shutdown).
 *
 * While open, calls are refused at once with a ScannerCircuitOpenError and scans waiting to retry give
 * up at once (no retry storm). Every `probeIntervalMs` the probe goes to the scanner: the breaker is
 * half-open while it runs and every other call is still refused; any answer (even a 401) closes it, a
 * failure opens it again for another interval.
 */
import type { Logger } from 'pino';
import {
  ScanAbortedError,
  ScannerAuthError,
  ScannerCircuitOpenError,
  ScannerError,
  ScannerProtocolError,
  ScannerRateLimitedError,
  ScannerRequestTimeoutError,
  ScannerUnavailableError,
  describeError,
} from '../errors.js';
import { CIRCUIT_STATE_VALUE, type CircuitStateName, type Metrics, type ScannerOperation } from '../observability/metrics.js';
import { createCircuitBreaker, type CircuitTransition } from './circuit-breaker.js';
import { clockWith, delay, type Clock } from './clock.js';

export type { CircuitStateName } from '../observability/metrics.js';
export type { CircuitTransition } from './circuit-breaker.js';

export interface ScannerTransportOptions {
  /** Bound of one HTTP call to the scanner. */
  readonly requestTimeoutMs: number;
  /** First retry delay (SCANNER_RETRY_BACKOFF_MS); doubles (with jitter) up to retryMaxMs. */
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
  /** Time and timers (tests drive a manual clock); default the process's. */
  readonly clock?: Clock;
  /** Only "now" replaced, the system's timers kept (older tests). Ignored with `clock`. */
  readonly now?: () => number;
  /** [0, 1) for the backoff's jitter; default Math.random. */
  readonly random?: () => number;
  /** "scanner rejected the credentials" is logged at most once per this interval (default 60 s). */
  readonly authLogIntervalMs?: number;
}

export interface CallOptions {
  /** The scan's signal: aborting it ends the call and any retry at once. */
  readonly signal: AbortSignal;
  /** Told every retryable failure and every success (see Scanner.scan in engine/scan-coordinator.ts). */
  readonly onCallResult?: (error: ScannerError | undefined) => void;
  /**
   * False when a success may come from memory rather than from the scanner (the API version already
   * known): it then does not reset the breaker's count; its failures count as usual.
   */
  readonly successIsAnswer?: boolean;
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
   * Observes every breaker transition; returns a function that stops observing. The version
   * detection re-asks the scanner when `to === 'closed'` (the scanner is back from an outage).
   */
  onStateChange(listener: (transition: CircuitTransition) => void): () => void;
  /**
   * The cheap call about no image that tells whether the scanner works (the API client's own, e.g. v1
   * GET /status), chosen at each use: the API version may be known only later.
   */
  setProbe(probe: () => ScannerProbe): void;
  /** Stops the probe timer and any health check (shutdown, tests). */
  dispose(): void;
}

const DEFAULT_AUTH_LOG_INTERVAL_MS = 60_000;

/** Nothing answered: the scanner service is not there (connection refused/reset, DNS, TLS). */
function isConnectionFailure(error: unknown): boolean {
  return error instanceof ScannerUnavailableError && error.status === undefined;
}

/** Failed in a way that may be the scanner's or one image's: confirmed by the probe before it counts. */
function isSuspect(error: unknown): boolean {
  return (
    (error instanceof ScannerUnavailableError && error.status !== undefined) ||
    error instanceof ScannerRequestTimeoutError ||
    (error instanceof ScannerProtocolError && error.unparseable)
  );
}

/** Evidence (certain or to be confirmed) that the scanner service is failing. */
export function isOutage(error: unknown): boolean {
  return isConnectionFailure(error) || isSuspect(error);
}

function hintOf(error: unknown): number | undefined {
  return error instanceof ScannerRateLimitedError || error instanceof ScannerUnavailableError ? error.retryAfterMs : undefined;
}

/**
 * Delay before retry number `attempt` (0 for the first): capped exponential with half jitter
 * (between half and all of min(max, initial * 2^attempt)), unless the scanner said when (Retry-After).
 */
export function backoffMs(attempt: number, initialMs: number, maxMs: number, random: number, hintMs?: number): number {
  if (hintMs !== undefined) return hintMs;
  const ceiling = Math.min(maxMs, initialMs * 2 ** attempt);
  return Math.floor((ceiling + random * ceiling) / 2);
}

/** Resolves with `promise`, or rejects with `reason(signal)` as soon as the signal aborts. */
function until(promise: Promise<void>, signal: AbortSignal, reason: (signal: AbortSignal) => Error): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(reason(signal));
      return;
    }
    const onAbort = (): void => {
      reject(reason(signal));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    void promise.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}

/** Read again after an await (the compiler would take the value from before it). */
function aborted(signal: AbortSignal): boolean {
  return signal.aborted;
}

function abortReason(signal: AbortSignal): ScannerError {
  return signal.reason instanceof ScannerError ? signal.reason : new ScanAbortedError('scan aborted', { cause: signal.reason });
}

export function createScannerTransport(opts: ScannerTransportOptions): ScannerTransport {
  const clock = opts.clock ?? clockWith(opts.now);
  const random = opts.random ?? Math.random;
  const authLogIntervalMs = opts.authLogIntervalMs ?? DEFAULT_AUTH_LOG_INTERVAL_MS;
  const lifetime = new AbortController();
  const listeners = new Set<(t: CircuitTransition) => void>();
  // Scans waiting between retries: told when the breaker opens so that they give up at once.
  const waitingRetries = new Set<(error: ScannerCircuitOpenError) => void>();
  let lastOutage: ScannerError | undefined;
  let probe: (() => ScannerProbe) | undefined;
  let authFailing = false;
  let authLoggedAt = Number.NEGATIVE_INFINITY;
  // Suspect failures waiting for the health check in flight (at most one at a time).
  let suspects: ScannerError[] = [];
  let checking: Promise<void> | undefined;
  opts.metrics.scannerCircuitState.set(CIRCUIT_STATE_VALUE.closed);

  const breaker = createCircuitBreaker({
    threshold: opts.breakerFailures,
    probeIntervalMs: opts.probeIntervalMs,
    clock,
    onTransition: ({ from, to }) => {
      opts.metrics.scannerCircuitState.set(CIRCUIT_STATE_VALUE[to]);
      opts.metrics.scannerCircuitTransitions.inc({ to });
      if (to === 'open') {
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
      } else if (to === 'half_open') {
        opts.logger.info({ circuit: to, from }, 'scanner circuit half-open: probing the scanner');
      } else {
        opts.logger.info({ circuit: to, from, openMs: Math.round(clock.now() - breaker.openedAt) }, 'scanner circuit closed: the scanner answers again');
      }
      for (const listener of [...listeners]) {
        try {
          listener({ from, to });
        } catch (error) {
          opts.logger.error({ err: describeError(error) }, 'scanner circuit listener failed (bug)');
        }
      }
    },
  });

  function openError(): ScannerCircuitOpenError {
    const last = lastOutage !== undefined ? ` (last: ${lastOutage.message})` : '';
    const next =
      breaker.state === 'half_open'
        ? 'a probe is in progress'
        : `next probe in ${(Math.max(0, breaker.nextProbeAt - clock.now()) / 1000).toFixed(1)}s`;
    return new ScannerCircuitOpenError(`circuit breaker open after ${opts.breakerFailures} consecutive scanner failures${last}; ${next}`, {
      cause: lastOutage,
    });
  }

  /**
   * Runs the probe once (per-call timeout, no breaker): true when the scanner answered, whatever it
   * said (a 401 or a 429 is an answer); false on the failures that would count.
   */
  async function probeAnswers(): Promise<boolean> {
    if (probe === undefined) return false;
    const current = probe();
    try {
      await attempt(current.operation, current.run, lifetime.signal, 'none');
      return true;
    } catch (error) {
      if (!isOutage(error)) return !lifetime.signal.aborted;
      lastOutage = error as ScannerError;
      return false;
    }
  }
  breaker.setProbe(probeAnswers);

  /**
   * Suspect failures wait beside the count; once they would open the breaker, the probe is asked
   * (one at a time): they count if it fails too, and are forgotten if the scanner answers it.
   */
  function suspect(error: ScannerError): void {
    if (!breaker.enabled || breaker.state !== 'closed' || lifetime.signal.aborted) return;
    suspects.push(error);
    checkIfDue();
  }

  function checkIfDue(): void {
    if (checking !== undefined || suspects.length === 0 || breaker.state !== 'closed' || breaker.failures + suspects.length < opts.breakerFailures) return;
    checking = probeAnswers().then((answered) => {
      checking = undefined;
      const seen = suspects;
      suspects = [];
      if (answered) {
        // The scanner works: these failures were about the images asked for.
        breaker.success();
        return;
      }
      lastOutage = seen.at(-1) ?? lastOutage;
      breaker.failure(seen.length);
    });
  }

  function succeeded(): void {
    breaker.success();
    // Consecutive failures only: an answer in between clears the suspects too.
    if (checking === undefined) suspects = [];
  }

  /**
   * One bounded HTTP exchange; its signal aborts with a ScannerRequestTimeoutError at the timeout.
   * `counted`: which outcomes feed the breaker (none for probes and `once`, whose results are read apart).
   */
  async function attempt<T>(operation: ScannerOperation, fn: ScannerCall<T>, signal: AbortSignal, counted: 'all' | 'failures' | 'none'): Promise<T> {
    if (signal.aborted) throw abortReason(signal);
    const controller = new AbortController();
    const onAbort = (): void => {
      controller.abort(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const timer = clock.setTimer(() => {
      controller.abort(new ScannerRequestTimeoutError(`scanner did not answer ${operation} within ${opts.requestTimeoutMs} ms`));
    }, opts.requestTimeoutMs);
    try {
      const result = await fn(controller.signal);
      authFailing = false;
      if (counted === 'all') succeeded();
      return result;
    } catch (caught) {
      // The call's own timeout, whatever the HTTP layer made of the abort.
      const error = controller.signal.reason instanceof ScannerRequestTimeoutError && !aborted(signal) ? controller.signal.reason : caught;
      if (error instanceof ScannerAuthError) noteAuthError(operation, error);
      if (counted !== 'none' && !aborted(signal)) {
        if (isConnectionFailure(error)) {
          lastOutage = error as ScannerError;
          breaker.failure();
          checkIfDue();
        } else if (isSuspect(error)) suspect(error as ScannerError);
      }
      throw error;
    } finally {
      timer.cancel();
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** Logged when refusals start (again after a success), at most once per authLogIntervalMs. */
  function noteAuthError(operation: ScannerOperation, error: ScannerAuthError): void {
    if (authFailing || clock.now() - authLoggedAt < authLogIntervalMs) return;
    authFailing = true;
    authLoggedAt = clock.now();
    opts.logger.error({ status: error.status, operation }, 'scanner rejected the credentials: check ANCHORE_CLI_USER / ANCHORE_CLI_PASS');
  }

  function rejection(): ScannerCircuitOpenError | undefined {
    return breaker.state === 'closed' ? undefined : openError();
  }

  return {
    async call<T>(operation: ScannerOperation, fn: ScannerCall<T>, { signal, onCallResult, successIsAnswer = true }: CallOptions): Promise<T> {
      // Aborted when the scan is (its bound, shutdown) or the breaker opens: ends a wait between retries.
      const stop = new AbortController();
      const onScanAbort = (): void => {
        stop.abort(abortReason(signal));
      };
      const onOpen = (error: ScannerCircuitOpenError): void => {
        stop.abort(error);
      };
      if (signal.aborted) throw abortReason(signal);
      signal.addEventListener('abort', onScanAbort, { once: true });
      waitingRetries.add(onOpen);
      let failingSince: number | undefined;
      try {
        for (let retry = 0; ; retry += 1) {
          // While the probe confirms failures that would open the breaker, nothing new is sent: one
          // more call to a failing scanner is a call the breaker is there to spare.
          if (checking !== undefined) await until(checking, stop.signal, (stopped) => stopped.reason as Error);
          const refused = rejection();
          if (refused !== undefined) throw refused;
          try {
            const result = await attempt(operation, fn, signal, successIsAnswer ? 'all' : 'failures');
            onCallResult?.(undefined);
            return result;
          } catch (error) {
            const retryable = error instanceof ScannerError && error.retryable && !signal.aborted;
            if (retryable) onCallResult?.(error);
            if (!retryable) throw error;
            // Its failure may be one the probe is confirming: the answer decides whether it retries.
            if (checking !== undefined) await until(checking, signal, abortReason);
            // A call that was under way when the breaker opened ends with its own error.
            if (stop.signal.aborted) throw error;
            failingSince ??= clock.now();
            if (clock.now() - failingSince >= opts.retryBudgetMs) throw error;
            await delay(clock, backoffMs(retry, opts.retryInitialMs, opts.retryMaxMs, random(), hintOf(error)), stop.signal);
          }
        }
      } finally {
        signal.removeEventListener('abort', onScanAbort);
        waitingRetries.delete(onOpen);
      }
    },
    once(operation, fn, signal) {
      return attempt(operation, fn, signal, 'none');
    },
    rejection,
    get state() {
      return breaker.state;
    },
    onStateChange(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    setProbe(choose) {
      probe = choose;
    },
    dispose() {
      lifetime.abort(new ScanAbortedError('scanner transport disposed'));
      breaker.dispose();
    },
  };
}
