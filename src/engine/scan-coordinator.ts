import pTimeout, { TimeoutError } from 'p-timeout';
import type { Logger } from 'pino';
import type { VerdictCache } from '../cache/verdict-cache.js';
import { verdictKey } from '../cache/verdict-cache.js';
import { ERROR_CODES, ScanAbortedError, ScannerError, describeError } from '../errors.js';
import type { CacheResult, Metrics } from '../observability/metrics.js';
import type { ScanOutcome, ScanVerdict } from '../policy/types.js';
import { scanReference, type ImageReference } from '../reference/parse-reference.js';
import { slimVerdict } from './slim-verdict.js';

/** What the coordinator needs from a scanner client (see scanner/anchore-client.ts). */
export interface Scanner {
  /**
   * Submits, waits for analysis and returns the policy verdict. Rejects with a ScannerError.
   * `onCallResult` is told the outcome of every call (an error that will be retried, or undefined
   * after a success), so a waiter whose deadline expires can say "scanner error" rather than
   * "timeout" while the scanner is misbehaving.
   */
  scan(
    reference: ImageReference,
    opts: { signal: AbortSignal; onCallResult: (error: ScannerError | undefined) => void },
  ): Promise<ScanVerdict>;
}

export interface ScanCoordinatorOptions {
  readonly cache: VerdictCache;
  readonly scanner: Scanner;
  readonly policyId?: string;
  /** Bound of one background scan, whoever waits for it. */
  readonly maxScanDurationMs: number;
  /** Bound of scans running at once; past it a lookup is a scanner error (never an unbounded queue). */
  readonly maxConcurrentScans: number;
  /**
   * Bound of the scans running at once that requests of one namespace started (MAX_SCANS_PER_NAMESPACE):
   * one tenant's slow or numerous images cannot take every scan slot. Unbounded when absent.
   */
  readonly maxScansPerNamespace?: number;
  /**
   * The scanner's circuit breaker (scanner/resilience.ts): while it refuses calls, a lookup that the
   * cache cannot answer is decided at once with its error instead of starting or joining a scan.
   */
  readonly circuit?: { rejection(): ScannerError | undefined };
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly now?: () => number;
}

export interface Lookup {
  readonly source: CacheResult;
  readonly outcome: ScanOutcome;
}

type Settled = { ok: true; verdict: ScanVerdict } | { ok: false; error: ScannerError };

interface InFlight {
  readonly result: Promise<Settled>;
  /** The namespace whose request started the scan (its share is given back when the scan settles). */
  readonly namespace: string | undefined;
  lastTransientError: ScannerError | undefined;
  readonly controller: AbortController;
}

/**
 * How many new scans one request may still start (MAX_NEW_SCANS_PER_REQUEST). Joining a scan in
 * progress or a cache hit costs nothing; one object per request, shared by its lookups.
 */
export interface ScanBudget {
  readonly maxNewScans: number;
  newScansLeft: number;
  /** The namespace the request came from: its scans count against MAX_SCANS_PER_NAMESPACE. */
  readonly namespace?: string | undefined;
  /** A dry run starts no scan (it may only read the cache and join scans in progress). */
  readonly dryRun?: boolean;
}

export function createScanBudget(maxNewScans: number, namespace?: string, dryRun = false): ScanBudget {
  return { maxNewScans: dryRun ? 0 : maxNewScans, newScansLeft: dryRun ? 0 : maxNewScans, namespace, dryRun };
}

export interface ScanCoordinator {
  /**
   * Cached verdict, or joins/starts the scan and waits at most `waitMs` for it. Never rejects. A
   * digest-pinned reference is looked up and scanned as `name@digest` (see scanReference). Starting a
   * scan takes one from `budget`; with none left the outcome is `deferred`.
   */
  lookup(reference: ImageReference, waitMs: number, budget?: ScanBudget): Promise<Lookup>;
  /**
   * Stores a verdict under another reference to the same image: the digest-pinned form the mutating
   * webhook wrote (`name:tag@digest`), so the validating webhook that follows finds it (no second scan).
   */
  remember(reference: ImageReference, verdict: ScanVerdict, from?: ImageReference): void;
  /** Scans still running (for tests, metrics and shutdown). */
  readonly inFlight: number;
  /** Resolves when every background scan has settled. */
  idle(): Promise<void>;
  /** Aborts every background scan (shutdown). */
  abortAll(): void;
}

function errorOutcome(error: ScannerError): ScanOutcome {
  const { code, message } = describeError(error);
  return { kind: 'error', code, message };
}

/**
 * Verdict cache + scan merging: concurrent lookups of one image share one scan (one POST, one poll
 * loop), whichever endpoint they came from. The scan outlives the request that started it, bounded
 * by maxScanDurationMs, and its verdict lands in the cache for the API server's retry.
 */
export function createScanCoordinator(opts: ScanCoordinatorOptions): ScanCoordinator {
  const now = opts.now ?? (() => performance.now());
  const inFlight = new Map<string, InFlight>();
  // Scans in flight per namespace that started them: at most maxConcurrentScans entries.
  const byNamespace = new Map<string, number>();
  const nsKey = (namespace: string | undefined): string => namespace ?? '';

  function start(key: string, reference: ImageReference, namespace: string | undefined): InFlight {
    byNamespace.set(nsKey(namespace), (byNamespace.get(nsKey(namespace)) ?? 0) + 1);
    const controller = new AbortController();
    const timer = setTimeout(() => {
      controller.abort(new ScanAbortedError(`scan did not finish within ${opts.maxScanDurationMs} ms`));
    }, opts.maxScanDurationMs);
    timer.unref();
    const startedAt = now();
    opts.metrics.scansInProgress.inc();
    const entry: InFlight = {
      namespace,
      controller,
      lastTransientError: undefined,
      result: opts.scanner
        .scan(reference, {
          signal: controller.signal,
          onCallResult: (error) => {
            entry.lastTransientError = error;
          },
        })
        .then(
          (answer): Settled => {
            // Only what a denial can show is kept, cached or handed to the waiters.
            const verdict = slimVerdict(answer);
            opts.cache.set(key, verdict);
            return { ok: true, verdict };
          },
          (error: unknown): Settled => ({
            ok: false,
            error: error instanceof ScannerError ? error : new ScanAbortedError(describeError(error).message, { cause: error }),
          }),
        )
        .then((settled) => {
          clearTimeout(timer);
          inFlight.delete(key);
          const held = (byNamespace.get(nsKey(namespace)) ?? 1) - 1;
          if (held > 0) byNamespace.set(nsKey(namespace), held);
          else byNamespace.delete(nsKey(namespace));
          opts.metrics.scansInProgress.dec();
          const durationMs = now() - startedAt;
          const result = settled.ok ? settled.verdict.status : 'error';
          opts.metrics.scanDuration.observe({ result }, durationMs / 1000);
          opts.logger.info(
            {
              image: reference.canonical,
              verdict: result,
              durationMs: Math.round(durationMs),
              ...(settled.ok ? { digest: settled.verdict.digest } : { err: describeError(settled.error) }),
            },
            'scan finished',
          );
          return settled;
        }),
    };
    inFlight.set(key, entry);
    return entry;
  }

  async function wait(entry: InFlight, waitMs: number): Promise<ScanOutcome> {
    // No time left (a `?timeout=` of a millisecond or two): answer at once rather than ask p-timeout
    // for a zero-length wait, which it refuses.
    if (!(waitMs > 0)) return entry.lastTransientError !== undefined ? errorOutcome(entry.lastTransientError) : { kind: 'timeout', waitedMs: 0 };
    try {
      const settled = await pTimeout(entry.result, { milliseconds: Math.max(0, waitMs) });
      return settled.ok ? { kind: 'verdict', verdict: settled.verdict } : errorOutcome(settled.error);
    } catch (error) {
      if (!(error instanceof TimeoutError)) throw error;
      // The scanner has been failing while we waited: that is a scanner error, not a slow scan.
      if (entry.lastTransientError !== undefined) return errorOutcome(entry.lastTransientError);
      return { kind: 'timeout', waitedMs: Math.max(0, waitMs) };
    }
  }

  // A digest-pinned reference is keyed as name@digest (see scanReference), whoever stores or looks it up.
  const keyOf = (reference: ImageReference): string => verdictKey(scanReference(reference).canonical, opts.policyId);

  return {
    remember(reference, verdict, from) {
      // A copy of the verdict `from` was looked up with lives no longer than it: a pinned reference is
      // never admitted on a verdict older than the pass TTL.
      opts.cache.set(keyOf(reference), slimVerdict(verdict), from === undefined ? undefined : opts.cache.remainingTtl(keyOf(from)));
    },
    async lookup(written, waitMs, budget) {
      const reference = scanReference(written);
      const key = verdictKey(reference.canonical, opts.policyId);
      const cached = opts.cache.get(key);
      if (cached !== undefined) {
        opts.metrics.cacheLookups.inc({ result: 'hit' });
        return { source: 'hit', outcome: { kind: 'verdict', verdict: cached } };
      }
      const refused = opts.circuit?.rejection();
      if (refused !== undefined) {
        opts.metrics.cacheLookups.inc({ result: 'miss' });
        return { source: 'miss', outcome: errorOutcome(refused) };
      }
      let entry = inFlight.get(key);
      let source: CacheResult = 'shared';
      if (entry === undefined) {
        if (budget !== undefined && budget.newScansLeft <= 0) {
          opts.metrics.cacheLookups.inc({ result: 'miss' });
          opts.metrics.scansDeferred.inc();
          return { source: 'miss', outcome: { kind: 'deferred', maxNewScans: budget.maxNewScans, why: budget.dryRun === true ? 'dry-run' : 'request' } };
        }
        const share = opts.maxScansPerNamespace;
        if (share !== undefined && (byNamespace.get(nsKey(budget?.namespace)) ?? 0) >= share) {
          opts.metrics.cacheLookups.inc({ result: 'miss' });
          opts.metrics.scansDeferred.inc();
          return { source: 'miss', outcome: { kind: 'deferred', maxNewScans: share, why: 'namespace' } };
        }
        if (inFlight.size >= opts.maxConcurrentScans) {
          opts.metrics.cacheLookups.inc({ result: 'miss' });
          return {
            source: 'miss',
            outcome: { kind: 'error', code: ERROR_CODES.scannerBusy, message: `too many scans in progress (${opts.maxConcurrentScans})` },
          };
        }
        if (budget !== undefined) budget.newScansLeft -= 1;
        entry = start(key, reference, budget?.namespace);
        source = 'miss';
      }
      opts.metrics.cacheLookups.inc({ result: source });
      return { source, outcome: await wait(entry, waitMs) };
    },
    get inFlight() {
      return inFlight.size;
    },
    async idle() {
      await Promise.all([...inFlight.values()].map((e) => e.result));
    },
    abortAll() {
      for (const entry of inFlight.values()) entry.controller.abort(new ScanAbortedError('scangate is shutting down'));
    },
  };
}
