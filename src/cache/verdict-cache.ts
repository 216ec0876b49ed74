import { LRUCache } from 'lru-cache';
import type { ScanVerdict } from '../policy/types.js';

export interface VerdictCacheOptions {
  readonly maxEntries: number;
  readonly passTtlMs: number;
  readonly failTtlMs: number;
  /** Injected clock (milliseconds, monotonic); tests pass a fake one. */
  readonly now?: () => number;
}

export interface VerdictCache {
  get(key: string): ScanVerdict | undefined;
  /** Stores a verdict with the TTL of its status. Errors and timeouts are never verdicts. */
  set(key: string, verdict: ScanVerdict): void;
  readonly size: number;
  clear(): void;
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
    ttl: Math.max(opts.passTtlMs, opts.failTtlMs),
    // Check expiry against the clock on every read, so an injected clock is exact.
    ttlResolution: 0,
    ...(opts.now !== undefined ? { perf: { now: opts.now } } : {}),
  });
  return {
    get: (key) => cache.get(key),
    set: (key, verdict) => {
      cache.set(key, verdict, { ttl: verdict.status === 'pass' ? opts.passTtlMs : opts.failTtlMs });
    },
    get size() {
      return cache.size;
    },
    clear: () => {
      cache.clear();
    },
  };
}
