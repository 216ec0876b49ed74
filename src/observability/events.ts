/**
 * Kubernetes Events for what scangate decides (README, "Events"): an observer of the admission
 * decisions that turns each denial, warn-mode finding, break-glass use and admission without a verdict
 * into one Warning event, written in the background. Recording never delays or fails an answer:
 * `record()` is synchronous, O(1) and never throws; the API calls go through a bounded queue (count
 * and bytes), a token bucket per namespace, and repeats are aggregated into the event's `series`
 * (as client-go's events.k8s.io recorder does). Every event not written is counted in
 * `scangate_events_dropped_total{reason}`.
 *
 * This module knows what an event says, not how the API spells it: the sink (kube/event-sink.ts)
 * writes it as events.k8s.io/v1.
 */
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { DecisionRecord } from '../admission/decision-record.js';
import { KubeApiError, describeError } from '../errors.js';
import { describeReasons } from '../policy/decision.js';
import { displayImage, displayText, escapeControls } from '../policy/safe-text.js';
import type { StopReason } from '../policy/types.js';
import type { Metrics } from './metrics.js';

/** One `reason` per kind of decision (README, "Events"). */
export type EventReason = 'ImageDenied' | 'BreakGlassRefused' | 'BreakGlassUsed' | 'ImageWarned' | 'AdmittedUnverified' | 'RunningImageFailed';

/** What an event says: the sink adds the API's fields (name, reportingController, eventTime, ...). */
export interface EventIntent {
  /** The namespace the event is written to: the object's, or `default` for an object without one. */
  readonly namespace: string;
  readonly regarding: DecisionRecord['regarding'];
  readonly reason: EventReason;
  /** What scangate did to the request; `Verify` for the re-verification of what runs (engine/recheck.ts). */
  readonly action: 'Deny' | 'Admit' | 'Verify';
  /** Escaped, at most NOTE_MAX_BYTES bytes of UTF-8. */
  readonly note: string;
}

export interface EventSeries {
  /** Occurrences so far (>= 2). */
  readonly count: number;
  /** Wall-clock time of the last occurrence, ms since the epoch. */
  readonly lastObservedMs: number;
}

export interface NewEvent extends EventIntent {
  /** Wall-clock time of the first occurrence, ms since the epoch. */
  readonly eventTimeMs: number;
  /** Present when the event repeated before it could be written. */
  readonly series?: EventSeries;
}

/** Where events go. Implementations reject with KubeApiError (`status` 404: the event is gone). */
export interface EventSink {
  /** Writes a new event; resolves to its name (for later series updates). */
  create(event: NewEvent, signal: AbortSignal): Promise<{ readonly name: string }>;
  /** Updates the `series` of an event written before. */
  updateSeries(ref: { readonly namespace: string; readonly name: string }, series: EventSeries, signal: AbortSignal): Promise<void>;
}

/** Time as the recorder sees it; tests inject a fake one. */
export interface EventClock {
  /** Monotonic ms (token buckets, series windows). */
  now(): number;
  /** Wall-clock ms since the epoch (eventTime, lastObservedTime). */
  wallNow(): number;
  /** Runs `fn` after `ms`; the timer must not keep the process alive. */
  setTimer(fn: () => void, ms: number): { cancel(): void };
}

export interface EventLimits {
  /** Sustained API calls (creates and series updates) per second per namespace (EVENTS_QPS). */
  readonly namespaceQps: number;
  /** Calls a namespace may make at once after a quiet period (EVENTS_BURST). */
  readonly namespaceBurst: number;
  /** Events waiting to be written, over every namespace (EVENTS_QUEUE_MAX). */
  readonly maxQueued: number;
  /** Bytes of the events waiting to be written (EVENTS_QUEUE_MAX_BYTES). */
  readonly maxQueuedBytes: number;
  /** API calls in flight at once; 4 if absent. */
  readonly maxInFlight?: number;
  /** A repeat within this long of the last occurrence joins its series; 6 minutes if absent (client-go's). */
  readonly seriesWindowMs?: number;
  /** Events remembered for aggregation; 4096 if absent. */
  readonly maxSeries?: number;
  /** Bound of each API call; 5000 ms if absent. */
  readonly requestTimeoutMs?: number;
  /** Bound of close(): what is not written by then is dropped (reason shutdown); 5000 ms if absent. */
  readonly closeTimeoutMs?: number;
}

export type EventDropReason = 'queue_full' | 'rate_limited' | 'api_error' | 'shutdown' | 'error';

export interface EventRecorder {
  /** Observer of one decision: synchronous, never throws, never waits for the API. */
  record(record: DecisionRecord): void;
  /** An event that is not about a decision (a running image that now fails); the same bounds, never throws. */
  recordIntent(intent: EventIntent): void;
  /** Stops taking records and writes what is queued, within closeTimeoutMs; never rejects. */
  close(): Promise<void>;
}

export interface EventRecorderOptions {
  readonly sink: EventSink;
  readonly limits: EventLimits;
  readonly metrics: Pick<Metrics, 'eventsDropped' | 'eventsWritten'>;
  readonly logger: Logger;
  readonly clock?: EventClock;
}

/** The API's limit of `note` (events.k8s.io/v1; 1 KiB, counted in bytes by the API server). */
export const NOTE_MAX_BYTES = 1024;
/** Characters of a break-glass user or reason quoted in a note when no warning carries them. */
const NOTE_MAX_FIELD_CHARS = 200;
/** Longest object name kept in `regarding` (a Kubernetes name has at most 253 characters). */
const MAX_NAME_CHARS = 253;
/** At most one warn line per this long about failed API calls (the rest are counted in it). */
const LOG_INTERVAL_MS = 10_000;
/** Namespaces whose token buckets are remembered (least recently used forgotten: full again). */
const MAX_BUCKETS = 10_000;

const ADMITTED_WITHOUT_VERDICT = new Set(['timeout', 'deferred', 'scanner-error']);

/** `text` cut to at most `maxBytes` bytes of UTF-8, on a character boundary, ending with `…` when cut. */
export function cutUtf8(text: string, maxBytes: number): string {
  if (text.length * 3 <= maxBytes || Buffer.byteLength(text) <= maxBytes) return text;
  const budget = maxBytes - 3; // '…' is 3 bytes
  let bytes = 0;
  let end = 0;
  for (const ch of text) {
    const code = ch.codePointAt(0) ?? 0;
    const size = code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
    if (bytes + size > budget) break;
    bytes += size;
    end += ch.length;
  }
  return `${text.slice(0, end)}…`;
}

/** Tenant or scanner-derived text as a note holds it: escaped by the project's one escaper, cut to the API's limit. */
function noteText(text: string): string {
  return cutUtf8(escapeControls(text), NOTE_MAX_BYTES);
}

/**
 * The event a decision makes, or undefined: allowed, exempt and dry-run decisions make none, nor
 * does an admission the mutating entry answered (it never decides).
 */
export function eventOf(record: DecisionRecord): EventIntent | undefined {
  if (record.dryRun || record.endpoint === 'mutate') return undefined;
  let reason: EventReason;
  let text: string;
  switch (record.result) {
    case 'allowed':
    case 'exempt':
      return undefined;
    case 'denied':
      reason = record.breakGlass?.outcome === 'refused' ? 'BreakGlassRefused' : 'ImageDenied';
      text = record.message !== '' ? record.message : 'denied by scangate';
      break;
    case 'glass':
      reason = 'BreakGlassUsed';
      text =
        record.warnings.length > 0
          ? record.warnings.join('; ')
          : `Break-glass used by "${displayText(record.breakGlass?.user ?? '(unknown user)', NOTE_MAX_FIELD_CHARS)}" (reason: "${displayText(record.breakGlass?.reason ?? '', NOTE_MAX_FIELD_CHARS)}")`;
      break;
    case 'warned':
      reason = 'ImageWarned';
      text = record.warnings.length > 0 ? record.warnings.join('; ') : 'admitted with findings (warn mode)';
      break;
    case 'unverified': {
      reason = 'AdmittedUnverified';
      const missing = record.images.filter((i) => ADMITTED_WITHOUT_VERDICT.has(i.result)).map((i) => `${i.image} (${i.result})`);
      text =
        record.warnings.length > 0
          ? record.warnings.join('; ')
          : `admitted without a verdict${missing.length > 0 ? `: ${missing.join(', ')}` : ''}`;
      break;
    }
  }
  const r = record.regarding;
  // A refused CREATE never made the object: its uid names nothing, and would differ on every retry
  // (a GitOps controller re-applying), which must join one series instead.
  const uid = record.operation === 'CREATE' && record.result === 'denied' ? undefined : r.uid;
  const regarding = {
    apiVersion: r.apiVersion,
    kind: r.kind,
    ...(r.namespace !== undefined && r.namespace !== '' ? { namespace: displayText(r.namespace, MAX_NAME_CHARS) } : {}),
    name: displayText(r.name, MAX_NAME_CHARS),
    ...(uid !== undefined && uid !== '' ? { uid: displayText(uid, MAX_NAME_CHARS) } : {}),
  };
  return {
    // An event about an object without a namespace may only live in `default` (API validation).
    namespace: regarding.namespace ?? 'default',
    regarding,
    reason,
    action: reason === 'ImageDenied' || reason === 'BreakGlassRefused' ? 'Deny' : 'Admit',
    note: noteText(text),
  };
}

/** A running image that turned from pass to fail, and the workloads that run it (engine/recheck.ts). */
export interface RunningImageFailure {
  readonly image: string;
  readonly reasons: readonly StopReason[];
  readonly omittedReasons: number;
  readonly cause: 'policy' | 'analysis_failed';
  readonly workloads: readonly { readonly apiVersion: string; readonly kind: string; readonly namespace: string; readonly name: string }[];
}

/**
 * One RunningImageFailed event per workload that runs an image that now fails (README,
 * "Re-verification"): which image, the findings, and what will be refused. Findings are shortened as
 * in denials; at most `maxEvents` workloads (the loop logs how many more).
 */
export function runningImageEvents(failure: RunningImageFailure, maxEvents: number): EventIntent[] {
  const findings =
    failure.cause === 'analysis_failed'
      ? 'the scanner could not analyse it'
      : describeReasons(failure.reasons, failure.omittedReasons, 5, 200) || 'policy check failed';
  return failure.workloads.slice(0, maxEvents).map((w) => {
    const text =
      `Running image ${displayImage(failure.image)} now fails policy: ${findings}. ` +
      `It keeps running, but this ${w.kind}'s next rollout, scale-up or rescheduling will be refused.`;
    return {
      namespace: w.namespace,
      regarding: { apiVersion: w.apiVersion, kind: w.kind, namespace: displayText(w.namespace, MAX_NAME_CHARS), name: displayText(w.name, MAX_NAME_CHARS) },
      reason: 'RunningImageFailed',
      action: 'Verify',
      note: noteText(text),
    };
  });
}

/** Bytes an event holds while queued (its texts in UTF-8, plus the objects around them). */
function queuedBytes(intent: EventIntent): number {
  const r = intent.regarding;
  return (
    512 +
    Buffer.byteLength(intent.note) +
    Buffer.byteLength(intent.namespace) +
    Buffer.byteLength(r.name) +
    (r.namespace?.length ?? 0) +
    (r.uid?.length ?? 0) +
    r.kind.length +
    r.apiVersion.length
  );
}

/** One event and its repeats. */
interface Entry {
  readonly key: string;
  readonly intent: EventIntent;
  readonly bytes: number;
  readonly firstWallMs: number;
  /** Set once the API created it. */
  name?: string | undefined;
  count: number;
  /** The count the API holds. */
  written: number;
  lastSeen: number;
  lastWallMs: number;
  /** queued: in the queue; sending: a call in flight; waiting: a series update waits for a token; idle: nothing to do. */
  state: 'queued' | 'sending' | 'waiting' | 'idle';
}

interface Bucket {
  tokens: number;
  at: number;
}

const realClock: EventClock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimer: (fn, ms) => {
    const timer = setTimeout(fn, ms);
    timer.unref();
    return {
      cancel: () => {
        clearTimeout(timer);
      },
    };
  },
};

export function createEventRecorder(opts: EventRecorderOptions): EventRecorder {
  const clock = opts.clock ?? realClock;
  const limits = opts.limits;
  const maxInFlight = limits.maxInFlight ?? 4;
  const seriesWindowMs = limits.seriesWindowMs ?? 6 * 60_000;
  const requestTimeoutMs = limits.requestTimeoutMs ?? 5000;
  const closeTimeoutMs = limits.closeTimeoutMs ?? 5000;
  const series = new LRUCache<string, Entry>({ max: limits.maxSeries ?? 4096 });
  const buckets = new LRUCache<string, Bucket>({ max: MAX_BUCKETS });
  const queue: Entry[] = [];
  let queuedBytesTotal = 0;
  const waiting = new Set<Entry>();
  const inFlight = new Set<AbortController>();
  let retryTimer: { cancel(): void } | undefined;
  let closed = false;
  /** Set when close() gave up: nothing more is sent. */
  let stopped = false;
  let idleWaiters: Array<() => void> = [];
  let failuresSinceLog = 0;
  let lastLogAt = -Infinity;

  const drop = (reason: EventDropReason, n = 1): void => {
    opts.metrics.eventsDropped.inc({ reason }, n);
  };

  /** Takes a token of the namespace's bucket (refilled at namespaceQps up to namespaceBurst). */
  const takeToken = (namespace: string): boolean => {
    const now = clock.now();
    let bucket = buckets.get(namespace);
    if (bucket === undefined) {
      bucket = { tokens: limits.namespaceBurst, at: now };
      buckets.set(namespace, bucket);
    } else {
      bucket.tokens = Math.min(limits.namespaceBurst, bucket.tokens + ((now - bucket.at) / 1000) * limits.namespaceQps);
      bucket.at = now;
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  };

  const enqueue = (entry: Entry): void => {
    entry.state = 'queued';
    queue.push(entry);
    queuedBytesTotal += entry.bytes;
  };

  const logFailure = (entry: Entry, operation: 'create' | 'series', error: unknown): void => {
    failuresSinceLog += 1;
    const now = clock.now();
    if (now - lastLogAt < LOG_INTERVAL_MS) return;
    lastLogAt = now;
    // The status and our own code only: the API server's answer may quote the note (tenant text).
    const { code } = describeError(error);
    opts.logger.warn(
      {
        operation,
        namespace: entry.intent.namespace,
        reason: entry.intent.reason,
        status: error instanceof KubeApiError ? error.status : undefined,
        code,
        failures: failuresSinceLog,
      },
      'event not written',
    );
    failuresSinceLog = 0;
  };

  /** A series update is due (the count grew past what the API holds): now, or when a token comes. */
  const seriesDue = (entry: Entry): void => {
    if (entry.state !== 'idle' || entry.count <= entry.written) return;
    if (closed || takeToken(entry.intent.namespace)) {
      enqueue(entry);
      return;
    }
    entry.state = 'waiting';
    waiting.add(entry);
    armRetry();
  };

  const armRetry = (): void => {
    if (retryTimer !== undefined || waiting.size === 0) return;
    retryTimer = clock.setTimer(
      () => {
        retryTimer = undefined;
        for (const entry of [...waiting]) {
          if (!closed && !takeToken(entry.intent.namespace)) continue;
          waiting.delete(entry);
          enqueue(entry);
        }
        pump();
        armRetry();
      },
      Math.max(1, 1000 / limits.namespaceQps),
    );
  };

  const send = (entry: Entry): void => {
    entry.state = 'sending';
    const controller = new AbortController();
    inFlight.add(controller);
    const timer = clock.setTimer(() => {
      controller.abort();
    }, requestTimeoutMs);
    const count = entry.count;
    const lastObservedMs = entry.lastWallMs;
    const name = entry.name;
    const operation = name === undefined ? 'create' : 'series';
    let call: Promise<unknown>;
    try {
      call =
        name === undefined
          ? opts.sink
              .create(
                { ...entry.intent, eventTimeMs: entry.firstWallMs, ...(count >= 2 ? { series: { count, lastObservedMs } } : {}) },
                controller.signal,
              )
              .then((created) => {
                entry.name = created.name;
              })
          : opts.sink.updateSeries({ namespace: entry.intent.namespace, name }, { count, lastObservedMs }, controller.signal);
    } catch (error) {
      // A sink that throws instead of rejecting is handled as a failed call.
      call = Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    call.then(
      () => {
        entry.written = count;
        opts.metrics.eventsWritten.inc({ operation });
      },
      (error: unknown) => {
        logFailure(entry, operation, error);
        if (operation === 'series' && error instanceof KubeApiError && error.status === 404) {
          // The event expired (the API server keeps events for --event-ttl, 1 h by default): write it again.
          entry.name = undefined;
          entry.written = 0;
          return;
        }
        drop(stopped ? 'shutdown' : 'api_error');
        // Forget it: the next occurrence starts a new event instead of patching one that is not there.
        if (series.get(entry.key) === entry) series.delete(entry.key);
        entry.written = entry.count;
      },
    ).finally(() => {
      timer.cancel();
      inFlight.delete(controller);
      entry.state = 'idle';
      if (stopped) return;
      if (entry.name === undefined && entry.count > entry.written) {
        // Recreate (series update of an expired event): a create, with a token like any other.
        if (closed || takeToken(entry.intent.namespace)) enqueue(entry);
        else drop('rate_limited');
      } else {
        seriesDue(entry);
      }
      pump();
    });
  };

  const pump = (): void => {
    while (inFlight.size < maxInFlight && queue.length > 0) {
      const entry = queue.shift();
      if (entry === undefined) break;
      queuedBytesTotal -= entry.bytes;
      send(entry);
    }
    if (queue.length === 0 && inFlight.size === 0 && (closed || waiting.size === 0)) {
      const waiters = idleWaiters;
      idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  };

  const record = (intent: EventIntent | undefined): void => {
    if (intent === undefined) return;
    if (closed) {
      drop('shutdown');
      return;
    }
    const r = intent.regarding;
    const key = [intent.namespace, r.apiVersion, r.kind, r.name, r.uid ?? '', intent.reason, intent.note].join('\u0000');
    const now = clock.now();
    const known = series.get(key);
    if (known !== undefined && now - known.lastSeen <= seriesWindowMs) {
      // A repeat: counted now, written with the event's next call (one call per event at a time).
      known.count += 1;
      known.lastSeen = now;
      known.lastWallMs = clock.wallNow();
      seriesDue(known);
      pump();
      return;
    }
    const bytes = queuedBytes(intent);
    if (queue.length >= limits.maxQueued || queuedBytesTotal + bytes > limits.maxQueuedBytes) {
      drop('queue_full');
      return;
    }
    if (!takeToken(intent.namespace)) {
      drop('rate_limited');
      return;
    }
    const wall = clock.wallNow();
    const entry: Entry = { key, intent, bytes, firstWallMs: wall, count: 1, written: 0, lastSeen: now, lastWallMs: wall, state: 'idle' };
    series.set(key, entry);
    enqueue(entry);
    pump();
  };

  const guarded = (fn: () => void): void => {
    try {
      fn();
    } catch (error) {
      // A bug here must never reach the answer.
      drop('error');
      try {
        opts.logger.error({ err: describeError(error) }, 'event recorder failed (bug): decision answered, event not written');
      } catch {
        // nothing left to do
      }
    }
  };

  return {
    record(decision) {
      guarded(() => {
        record(eventOf(decision));
      });
    },
    recordIntent(intent) {
      guarded(() => {
        record(intent);
      });
    },
    close() {
      if (!closed) {
        closed = true;
        // Series updates waiting for a token go out now: the bound below caps them.
        for (const entry of waiting) enqueue(entry);
        waiting.clear();
        retryTimer?.cancel();
        retryTimer = undefined;
      }
      return new Promise<void>((resolve) => {
        let done = false;
        const timer = clock.setTimer(() => {
          if (done) return;
          done = true;
          stopped = true;
          const left = queue.length + inFlight.size;
          for (const entry of queue) entry.state = 'idle';
          // Aborted calls count themselves (their rejection, above).
          drop('shutdown', queue.length);
          queue.length = 0;
          queuedBytesTotal = 0;
          for (const controller of inFlight) controller.abort();
          if (left > 0) opts.logger.warn({ events: left }, 'events not written by the shutdown bound');
          resolve();
        }, closeTimeoutMs);
        idleWaiters.push(() => {
          if (done) return;
          done = true;
          timer.cancel();
          resolve();
        });
        pump();
      });
    },
  };
}
