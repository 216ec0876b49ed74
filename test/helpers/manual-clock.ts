/**
 * A clock that moves only when the test says (src/scanner/clock.ts's Clock): retries, backoff, call
 * timeouts and the breaker's probe interval are checked by moving time, never by waiting for it.
 */
import type { Clock, Timer } from '../../src/scanner/clock.js';

interface Entry {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
  cancelled: boolean;
}

/** One turn of the event loop: promise chains settle and socket callbacks that are ready run. */
export function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export class ManualClock implements Clock {
  private time: number;
  private seq = 0;
  private entries: Entry[] = [];

  constructor(start = 0) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  setTimer(fn: () => void, ms: number): Timer {
    const entry: Entry = { at: this.time + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    this.entries.push(entry);
    return {
      cancel: () => {
        entry.cancelled = true;
      },
    };
  }

  /** Timers still to fire. */
  get pending(): number {
    return this.entries.filter((e) => !e.cancelled).length;
  }

  /** Clock time of the next timer, if any. */
  get nextAt(): number | undefined {
    const live = this.entries.filter((e) => !e.cancelled);
    return live.length === 0 ? undefined : Math.min(...live.map((e) => e.at));
  }

  /** Moves time forward by `ms`, firing every timer that falls due in order, letting work run between. */
  async advance(ms: number): Promise<void> {
    const end = this.time + ms;
    for (;;) {
      await tick();
      this.entries = this.entries.filter((e) => !e.cancelled);
      const due = this.entries.filter((e) => e.at <= end).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (due === undefined) break;
      this.entries = this.entries.filter((e) => e !== due);
      this.time = Math.max(this.time, due.at);
      due.fn();
    }
    this.time = end;
    await tick();
  }
}

/**
 * Moves `clock` forward `stepMs` at a time, with a few real milliseconds between steps for sockets,
 * until `done()` holds; fails after `maxMs` of clock time. Returns the clock time it took.
 */
export async function driveUntil(clock: ManualClock, done: () => boolean, { stepMs = 10, maxMs = 60_000 } = {}): Promise<number> {
  const start = clock.now();
  while (!done()) {
    if (clock.now() - start > maxMs) throw new Error(`not reached within ${maxMs} ms of clock time`);
    await clock.advance(stepMs);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  return clock.now() - start;
}

/**
 * The synchronous kind, for code whose timers only queue work (observability/events.ts, engine/recheck.ts,
 * kube/leader-election.ts: now, wallNow, setTimer): `advance` runs each timer due on the way at its own
 * time, without turning the event loop.
 */
export interface SyncClock {
  now(): number;
  /** Wall-clock ms since the epoch: `wall0` plus the time moved. */
  wallNow(): number;
  setTimer(fn: () => void, ms: number): Timer;
  advance(ms: number): void;
  /** Timers set and neither fired nor cancelled. */
  pending(): number;
}

export function syncClock(wall0 = Date.UTC(2026, 11, 8)): SyncClock {
  let now = 0;
  const timers: Array<{ at: number; fn: () => void; cancelled: boolean }> = [];
  return {
    now: () => now,
    wallNow: () => wall0 + now,
    setTimer(fn, ms) {
      const timer = { at: now + ms, fn, cancelled: false };
      timers.push(timer);
      return {
        cancel: () => {
          timer.cancelled = true;
        },
      };
    },
    advance(ms) {
      const until = now + ms;
      for (;;) {
        const due = timers.filter((t) => !t.cancelled && t.at <= until).sort((a, b) => a.at - b.at)[0];
        if (due === undefined) break;
        due.cancelled = true;
        now = due.at;
        due.fn();
      }
      now = until;
    },
    pending: () => timers.filter((t) => !t.cancelled).length,
  };
}
