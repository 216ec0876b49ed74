import { LRUCache } from 'lru-cache';
import type { ScanVerdict } from '../policy/types.js';

export interface VerdictCacheOptions {
  readonly maxEntries: number;
  /** Bound of the whole cache in bytes of heap (verdictEntryBytes of every entry); 32 MiB if absent. */
  readonly maxBytes?: number;
  readonly passTtlMs: number;
  readonly failTtlMs: number;
  /** Injected clock (milliseconds, monotonic); tests pass a fake one. */
  readonly now?: () => number;
}

export interface VerdictCache {
  get(key: string): ScanVerdict | undefined;
  /**
   * Stores a verdict with the TTL of its status; a TTL of 0 means "do not cache" verdicts of that
   * status. Errors and timeouts are never verdicts. `maxTtlMs` shortens the TTL (a copy of another
   * entry lives no longer than it).
   */
  set(key: string, verdict: ScanVerdict, maxTtlMs?: number): void;
  /** How long the entry under `key` still lives, ms (0 when absent). */
  remainingTtl(key: string): number;
  readonly size: number;
  /** Bytes held, as verdictEntryBytes counts them. */
  readonly bytes: number;
  clear(): void;
}

/**
 * Heap an entry costs, in bytes: the strings it holds (UTF-16, two bytes a character) plus the objects
 * around them and lru-cache's own slot. An estimate that errs high, checked against the heap in bench/
 * ("memory") and documented in README and docs/SECURITY.md; lru-cache's sizeCalculation, so that the
 * cache is bounded by bytes and not only by count.
 */
export function verdictEntryBytes(key: string, verdict: ScanVerdict): number {
  let chars = key.length + verdict.digest.length + (verdict.pinDigest?.length ?? 0) + (verdict.policyId?.length ?? 0);
  let objects = 1;
  if (verdict.status === 'fail') {
    for (const r of verdict.reasons) chars += r.gate.length + r.trigger.length + r.output.length;
    objects += 1 + verdict.reasons.length;
  }
  return 2 * chars + 64 * objects + 160;
}

/** Cache key: the canonical reference plus the policy it was judged against. */
export function verdictKey(canonical: string, policyId: string | undefined): string {
  return policyId === undefined || policyId === '' ? canonical : `${canonical}#policy=${policyId}`;
}

/**
 * Bounded LRU of scanner verdicts. A pass and a fail live for different times (see README): a fail is
 * kept briefly, so that a fixed image or a new policy exception is seen within minutes, and a pass
 * for longer, bounded by how far behind the scanner's vulnerability feeds the decision may be.
 */
export function createVerdictCache(opts: VerdictCacheOptions): VerdictCache {
  const cache = new LRUCache<string, ScanVerdict>({
    max: opts.maxEntries,
    maxSize: opts.maxBytes ?? 32 * 1024 * 1024,
    sizeCalculation: (verdict, key) => verdictEntryBytes(key, verdict),
    ttl: Math.max(opts.passTtlMs, opts.failTtlMs),
    // Check expiry against the clock on every read, so an injected clock is exact.
    ttlResolution: 0,
    ...(opts.now !== undefined ? { perf: { now: opts.now } } : {}),
  });
  return {
    get: (key) => cache.get(key),
    set: (key, verdict, maxTtlMs) => {
      const ttl = Math.min(verdict.status === 'pass' ? opts.passTtlMs : opts.failTtlMs, maxTtlMs ?? Number.POSITIVE_INFINITY);
      // lru-cache reads a TTL of 0 as "never expires": for us it means "never stored".
      if (!(ttl > 0)) return;
      cache.set(key, verdict, { ttl });
    },
    remainingTtl: (key) => (cache.has(key) ? cache.getRemainingTTL(key) : 0),
    get size() {
      return cache.size;
    },
    get bytes() {
      return cache.calculatedSize;
    },
    clear: () => {
      cache.clear();
    },
  };
}
