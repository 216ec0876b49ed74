/**
 * The clock of the scanner transport: what time it is and "call me back in N ms". Production uses
 * the process's monotonic clock and timers; tests drive a manual one (test/helpers/manual-clock.ts)
 * so that retries, backoff and the breaker's probe interval are checked without waiting.
 */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Monotonic milliseconds. */
  now(): number;
  /** Calls `fn` once after `ms`. The timer never keeps the process alive on its own. */
  setTimer(fn: () => void, ms: number): Timer;
}

function setSystemTimer(fn: () => void, ms: number): Timer {
  const timer = setTimeout(fn, ms);
  timer.unref();
  return {
    cancel: () => {
      clearTimeout(timer);
    },
  };
}

export const systemClock: Clock = { now: () => performance.now(), setTimer: setSystemTimer };

/** The system's timers with another notion of "now" (tests that inject only `now`). */
export function clockWith(now: (() => number) | undefined): Clock {
  return now === undefined ? systemClock : { now, setTimer: setSystemTimer };
}

/** Resolves after `ms` on `clock`; rejects with the signal's reason as soon as it aborts. */
export function delay(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = (): void => {
      timer.cancel();
      reject(signal.reason as Error);
    };
    const timer = clock.setTimer(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
