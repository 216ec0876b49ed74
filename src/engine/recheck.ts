/**
 * Re-verification of running workloads (issue 16 §2, README "Re-verification"): the loop's state and
 * decisions. It knows which distinct images run and which workloads run each (fed by a pod informer,
 * kube/recheck-kube.ts), decides when each image is due (its verdict has expired, and at least every
 * RECHECK_INTERVAL_S), asks for verdicts at RECHECK_RATE per second through the same scan
 * coordinator as admission, and reports a pass -> fail transition with the workloads to warn. Pure
 * but for the clock and timers it is given.
 */
import type { Logger } from 'pino';
import type { WorkloadRef, RunningPod } from '../kube/running-pods.js';
import type { ScanOutcome, StopReason } from '../policy/types.js';

/** Last verdict of a running image: `unknown` until the first verdict (errors leave it as it was). */
export type RunningVerdict = 'pass' | 'fail' | 'unknown';

export interface RecheckTiming {
  /** RECHECK_INTERVAL_S in ms: an image is asked again at least this often. */
  readonly intervalMs: number;
  /** The verdict cache's TTLs: a verdict is asked again once it has expired (0: not cached). */
  readonly passTtlMs: number;
  readonly failTtlMs: number;
  /** After a timeout, a scanner error or a deferral, the image is asked again this much later. */
  readonly errorRetryMs: number;
}

/** An image that turned from pass to fail, and every workload that runs it. */
export interface FailedTransition {
  readonly image: string;
  readonly reasons: readonly StopReason[];
  readonly omittedReasons: number;
  readonly cause: 'policy' | 'analysis_failed';
  readonly workloads: readonly WorkloadRef[];
}

interface ImageEntry {
  /** Pods running it. */
  pods: number;
  /** Workload key -> pods of that workload running it. */
  readonly workloads: Map<string, number>;
  verdict: RunningVerdict;
  /** The last answer was an error (the verdict above is older). */
  lastError: boolean;
  /** Monotonic ms at which it is due; -Infinity: never asked. */
  dueAt: number;
  checking: boolean;
}

interface PodEntry {
  readonly workload: string;
  readonly images: readonly string[];
}

/** Counts for the running-images gauge: namespace -> verdict -> distinct images. */
export type VerdictCounts = Map<string, Record<RunningVerdict, number>>;

export interface RecheckState {
  /** A pod added or changed (the informer's add/update); `key` is `namespace/name`. */
  upsertPod(key: string, pod: RunningPod): void;
  deletePod(key: string): void;
  /** Every pod key held (a relist removes those it no longer lists). */
  podKeys(): string[];
  /** Forgets every pod and verdict (this replica stopped leading). */
  clear(): void;
  /** Images due at `now`, earliest first, at most `max`, none already being checked. */
  due(now: number, max: number): string[];
  /** Monotonic ms of the earliest due time of an image not being checked; undefined when none. */
  nextDueAt(): number | undefined;
  /** Marks `image` as being checked (it is not due again until complete()). */
  begin(image: string): void;
  /**
   * Records the outcome of a check that began at `startedAt` and ended at `now`; `cached` when it
   * was answered from the verdict cache. Returns the pass -> fail transition, if this was one.
   */
  complete(image: string, outcome: ScanOutcome, cached: boolean, now: number): FailedTransition | undefined;
  readonly podCount: number;
  readonly imageCount: number;
  /** Distinct images per namespace and verdict (an image run in two namespaces counts in each). */
  countsByNamespace(): VerdictCounts;
  /** The verdict the loop holds for an image (tests, reports). */
  verdictOf(image: string): RunningVerdict | undefined;
}

const SEP = '\u0000';

function workloadKey(w: WorkloadRef): string {
  return [w.namespace, w.apiVersion, w.kind, w.name].join(SEP);
}

function workloadFromKey(key: string): WorkloadRef {
  const [namespace = '', apiVersion = '', kind = '', name = ''] = key.split(SEP);
  return { namespace, apiVersion, kind, name };
}

/**
 * When an image is next due after an answer. A verdict answered from the cache expires within its
 * TTL, so asking again then reaches the scanner; a fresh verdict is cached for its TTL from now, so
 * it is asked again a moment after the entry expired. Never later than the interval.
 */
export function nextDue(timing: RecheckTiming, outcome: ScanOutcome, cached: boolean, now: number): number {
  if (outcome.kind !== 'verdict') return now + Math.min(timing.errorRetryMs, timing.intervalMs);
  const ttl = outcome.verdict.status === 'pass' ? timing.passTtlMs : timing.failTtlMs;
  // One second past the expiry, so the next lookup misses the entry this answer stored.
  const afterExpiry = ttl > 0 ? ttl + (cached ? 0 : 1000) : timing.intervalMs;
  return now + Math.min(timing.intervalMs, afterExpiry);
}

export function createRecheckState(opts: { readonly timing: RecheckTiming; readonly exemptNamespaces: readonly string[] }): RecheckState {
  const exempt = new Set(opts.exemptNamespaces);
  const pods = new Map<string, PodEntry>();
  const images = new Map<string, ImageEntry>();
  // One copy of each workload key string, shared by every pod and image that names it.
  const interned = new Map<string, { key: string; refs: number }>();

  const intern = (key: string): string => {
    const found = interned.get(key);
    if (found !== undefined) {
      found.refs += 1;
      return found.key;
    }
    interned.set(key, { key, refs: 1 });
    return key;
  };
  const release = (key: string): void => {
    const found = interned.get(key);
    if (found === undefined) return;
    found.refs -= 1;
    if (found.refs <= 0) interned.delete(key);
  };

  const addPodImages = (entry: PodEntry): void => {
    for (const image of entry.images) {
      let img = images.get(image);
      if (img === undefined) {
        img = { pods: 0, workloads: new Map(), verdict: 'unknown', lastError: false, dueAt: -Infinity, checking: false };
        images.set(image, img);
      }
      img.pods += 1;
      img.workloads.set(entry.workload, (img.workloads.get(entry.workload) ?? 0) + 1);
    }
  };
  const removePodImages = (entry: PodEntry): void => {
    for (const image of entry.images) {
      const img = images.get(image);
      if (img === undefined) continue;
      img.pods -= 1;
      const n = (img.workloads.get(entry.workload) ?? 1) - 1;
      if (n > 0) img.workloads.set(entry.workload, n);
      else img.workloads.delete(entry.workload);
      // An image no pod runs any more is forgotten, verdict and all (bounded by what runs).
      if (img.pods <= 0) images.delete(image);
    }
  };

  const deletePod = (key: string): void => {
    const old = pods.get(key);
    if (old === undefined) return;
    pods.delete(key);
    removePodImages(old);
    release(old.workload);
  };

  return {
    upsertPod(key, pod) {
      if (exempt.has(pod.namespace)) {
        deletePod(key);
        return;
      }
      const old = pods.get(key);
      const wkey = workloadKey(pod.workload);
      if (old !== undefined && old.workload === wkey && old.images.length === pod.images.length && old.images.every((i, n) => i === pod.images[n])) {
        return;
      }
      const entry: PodEntry = { workload: intern(wkey), images: pod.images };
      addPodImages(entry);
      pods.set(key, entry);
      if (old !== undefined) {
        removePodImages(old);
        release(old.workload);
      }
    },
    deletePod,
    podKeys() {
      return [...pods.keys()];
    },
    clear() {
      pods.clear();
      images.clear();
      interned.clear();
    },
    due(now, max) {
      const out: { image: string; at: number }[] = [];
      for (const [image, img] of images) {
        if (!img.checking && img.dueAt <= now) out.push({ image, at: img.dueAt });
      }
      out.sort((a, b) => a.at - b.at || (a.image < b.image ? -1 : 1));
      return out.slice(0, Math.max(0, max)).map((d) => d.image);
    },
    nextDueAt() {
      let earliest: number | undefined;
      for (const img of images.values()) {
        if (!img.checking && (earliest === undefined || img.dueAt < earliest)) earliest = img.dueAt;
      }
      return earliest;
    },
    begin(image) {
      const img = images.get(image);
      if (img !== undefined) img.checking = true;
    },
    complete(image, outcome, cached, now) {
      const img = images.get(image);
      // Gone while it was checked: nothing runs it any more.
      if (img === undefined) return undefined;
      img.checking = false;
      img.dueAt = nextDue(opts.timing, outcome, cached, now);
      if (outcome.kind !== 'verdict') {
        img.lastError = true;
        return undefined;
      }
      img.lastError = false;
      const before = img.verdict;
      const verdict = outcome.verdict;
      img.verdict = verdict.status;
      if (before !== 'pass' || verdict.status !== 'fail') return undefined;
      return {
        image,
        reasons: verdict.reasons,
        omittedReasons: verdict.omittedReasons ?? 0,
        cause: verdict.cause,
        workloads: [...img.workloads.keys()].sort().map(workloadFromKey),
      };
    },
    get podCount() {
      return pods.size;
    },
    get imageCount() {
      return images.size;
    },
    countsByNamespace() {
      const counts: VerdictCounts = new Map();
      for (const img of images.values()) {
        const seen = new Set<string>();
        for (const key of img.workloads.keys()) {
          const namespace = key.slice(0, key.indexOf(SEP));
          if (seen.has(namespace)) continue;
          seen.add(namespace);
          let row = counts.get(namespace);
          if (row === undefined) {
            row = { pass: 0, fail: 0, unknown: 0 };
            counts.set(namespace, row);
          }
          row[img.verdict] += 1;
        }
      }
      return counts;
    },
    verdictOf(image) {
      return images.get(image)?.verdict;
    },
  };
}

/**
 * The gauge's rows with bounded label cardinality: the `maxNamespaces` namespaces running the most
 * images keep their name, the rest are summed under `otherLabel`; three verdicts each.
 */
export function boundedCounts(counts: VerdictCounts, maxNamespaces: number, otherLabel = '_other'): VerdictCounts {
  if (counts.size <= maxNamespaces) return counts;
  const total = (r: Record<RunningVerdict, number>): number => r.pass + r.fail + r.unknown;
  const sorted = [...counts].sort((a, b) => total(b[1]) - total(a[1]) || (a[0] < b[0] ? -1 : 1));
  const out: VerdictCounts = new Map(sorted.slice(0, maxNamespaces));
  const other = { pass: 0, fail: 0, unknown: 0 };
  for (const [, r] of sorted.slice(maxNamespaces)) {
    other.pass += r.pass;
    other.fail += r.fail;
    other.unknown += r.unknown;
  }
  out.set(otherLabel, other);
  return out;
}

export interface RecheckClock {
  now(): number;
  /** Runs `fn` after `ms`; the timer must not keep the process alive. */
  setTimer(fn: () => void, ms: number): { cancel(): void };
}

export interface RecheckLoopOptions {
  readonly state: RecheckState;
  /** Asks for a verdict (the scan coordinator's lookup with the re-check budget); never rejects. */
  readonly check: (image: string) => Promise<{ readonly outcome: ScanOutcome; readonly cached: boolean }>;
  /** RECHECK_RATE: checks started per second (a token bucket, burst max(1, rate)). */
  readonly ratePerSecond: number;
  /** Checks in progress at once. */
  readonly maxInFlight: number;
  readonly onFailed: (transition: FailedTransition) => void;
  /** After every completed check (the gauge reads the state). */
  readonly onChecked?: () => void;
  readonly clock: RecheckClock;
  readonly logger: Logger;
}

export interface RecheckLoop {
  /** Starts asking (the replica took the lease). */
  start(): void;
  /** Stops starting checks (the lease was lost, or shutdown); checks in progress finish. */
  stop(): void;
  /** Re-plans at once (a pod brought a new image). */
  poke(): void;
  readonly running: boolean;
  /** Checks in progress. */
  readonly inFlight: number;
  /** Resolves when no check is in progress. */
  idle(): Promise<void>;
}

/** The loop: starts due checks as tokens and in-flight slots allow, and sleeps until the next is due. */
export function createRecheckLoop(opts: RecheckLoopOptions): RecheckLoop {
  const burst = Math.max(1, opts.ratePerSecond);
  let tokens = burst;
  let tokensAt = opts.clock.now();
  let running = false;
  let timer: { cancel(): void } | undefined;
  const inFlight = new Set<Promise<void>>();

  const refill = (now: number): void => {
    tokens = Math.min(burst, tokens + ((now - tokensAt) / 1000) * opts.ratePerSecond);
    tokensAt = now;
  };

  const schedule = (ms: number): void => {
    timer?.cancel();
    timer = opts.clock.setTimer(() => {
      timer = undefined;
      plan();
    }, Math.max(0, ms));
  };

  const runCheck = (image: string): void => {
    opts.state.begin(image);
    const p = opts
      .check(image)
      .then(
        ({ outcome, cached }) => {
          const transition = opts.state.complete(image, outcome, cached, opts.clock.now());
          if (transition !== undefined) opts.onFailed(transition);
          opts.onChecked?.();
        },
        (error: unknown) => {
          // check() never rejects; a bug here must not stop the loop.
          opts.state.complete(image, { kind: 'error', code: 'SCANGATE_ERR_INTERNAL', message: String(error) }, false, opts.clock.now());
          opts.logger.error({ image }, 're-check failed (bug)');
        },
      )
      .finally(() => {
        inFlight.delete(p);
        if (running) plan();
      });
    inFlight.add(p);
  };

  function plan(): void {
    if (!running) return;
    const now = opts.clock.now();
    refill(now);
    const slots = Math.min(Math.floor(tokens), opts.maxInFlight - inFlight.size);
    if (slots > 0) {
      for (const image of opts.state.due(now, slots)) {
        tokens -= 1;
        runCheck(image);
      }
    }
    if (inFlight.size >= opts.maxInFlight) return; // a completion plans again
    const next = opts.state.nextDueAt();
    if (next === undefined) return; // poke() when pods bring images
    const waitForToken = tokens >= 1 ? 0 : ((1 - tokens) / opts.ratePerSecond) * 1000;
    schedule(Math.max(next - now, waitForToken));
  }

  return {
    start() {
      if (running) return;
      running = true;
      plan();
    },
    stop() {
      running = false;
      timer?.cancel();
      timer = undefined;
    },
    poke() {
      // Many pods arrive at once (the informer's first list): one plan for all of them.
      if (running) schedule(0);
    },
    get running() {
      return running;
    },
    get inFlight() {
      return inFlight.size;
    },
    async idle() {
      while (inFlight.size > 0) await Promise.all([...inFlight]);
    },
  };
}
