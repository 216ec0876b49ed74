import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { createVerdictCache } from '../../src/cache/verdict-cache.js';
import { createScanCoordinator, type Scanner } from '../../src/engine/scan-coordinator.js';
import { ScannerAuthError, ScannerUnavailableError, type ScannerError } from '../../src/errors.js';
import { createMetrics } from '../../src/observability/metrics.js';
import type { ScanVerdict } from '../../src/policy/types.js';
import { parseImageReference, type ImageReference } from '../../src/reference/parse-reference.js';

function ref(image: string): ImageReference {
  const r = parseImageReference(image);
  assert.ok(r.valid);
  return r.reference;
}

/** A scanner whose scans the test settles by hand. */
function manualScanner(): Scanner & {
  calls: string[];
  settle(i: number, v: ScanVerdict | Error): void;
  report(i: number, e: ScannerError | undefined): void;
} {
  const pending: Array<{ resolve: (v: ScanVerdict) => void; reject: (e: Error) => void; onCallResult: (e: ScannerError | undefined) => void }> = [];
  const calls: string[] = [];
  return {
    calls,
    scan(reference, { onCallResult }) {
      calls.push(reference.canonical);
      return new Promise((resolve, reject) => pending.push({ resolve, reject, onCallResult }));
    },
    settle(i, v) {
      const p = pending[i];
      assert.ok(p, `no scan #${i}`);
      if (v instanceof Error) p.reject(v);
      else p.resolve(v);
    },
    report(i, e) {
      pending[i]?.onCallResult(e);
    },
  };
}

function setup(scanner: Scanner, maxConcurrentScans = 10) {
  // Not 0: lru-cache reads a start time of 0 as "no TTL".
  let t = 1_000;
  const cache = createVerdictCache({ maxEntries: 100, passTtlMs: 10_000, failTtlMs: 1_000, now: () => t });
  const metrics = createMetrics();
  const coordinator = createScanCoordinator({
    cache,
    scanner,
    maxScanDurationMs: 60_000,
    maxConcurrentScans,
    metrics,
    logger: pino({ level: 'silent' }),
    now: () => t,
  });
  return { cache, metrics, coordinator, advance: (ms: number) => (t += ms) };
}

const pass: ScanVerdict = { status: 'pass', digest: 'sha256:1', warnings: 0 };

test('concurrent lookups of one image share one scan; the verdict is cached for the next', async () => {
  const scanner = manualScanner();
  const { coordinator, metrics } = setup(scanner);
  const lookups = Array.from({ length: 50 }, () => coordinator.lookup(ref('nginx:1'), 5_000));
  assert.equal(coordinator.inFlight, 1);
  scanner.settle(0, pass);
  const results = await Promise.all(lookups);
  assert.deepEqual(scanner.calls, ['docker.io/library/nginx:1']);
  assert.equal(results.filter((r) => r.source === 'miss').length, 1);
  assert.equal(results.filter((r) => r.source === 'shared').length, 49);
  for (const r of results) assert.deepEqual(r.outcome, { kind: 'verdict', verdict: pass });
  // Another spelling of the same image is the same canonical reference: a cache hit.
  assert.deepEqual(await coordinator.lookup(ref('docker.io/library/nginx:1'), 0), { source: 'hit', outcome: { kind: 'verdict', verdict: pass } });
  assert.equal(scanner.calls.length, 1);
  const text = await metrics.registry.metrics();
  assert.match(text, /scangate_cache_lookups_total\{result="shared"\} 49/);
});

test('deadline before the verdict: timeout for the waiter, the scan goes on and fills the cache', async () => {
  const scanner = manualScanner();
  const { coordinator, cache } = setup(scanner);
  const first = await coordinator.lookup(ref('nginx:2'), 20);
  assert.deepEqual(first, { source: 'miss', outcome: { kind: 'timeout', waitedMs: 20 } });
  assert.equal(coordinator.inFlight, 1);
  scanner.settle(0, pass);
  await coordinator.idle();
  assert.deepEqual(cache.get('docker.io/library/nginx:2'), pass);
  assert.equal((await coordinator.lookup(ref('nginx:2'), 0)).source, 'hit');
});

test('while the scanner keeps failing, an expired wait is a scanner error, not a timeout', async () => {
  const scanner = manualScanner();
  const { coordinator } = setup(scanner);
  const waiting = coordinator.lookup(ref('nginx:3'), 50);
  scanner.report(0, new ScannerUnavailableError('scanner failed add_image (HTTP 503)', { status: 503 }));
  const result = await waiting;
  assert.deepEqual(result.outcome, { kind: 'error', code: 'SCANGATE_ERR_SCANNER_UNAVAILABLE', message: 'scanner failed add_image (HTTP 503)' });
  // Recovered: the next expiry is a plain timeout again.
  scanner.report(0, undefined);
  assert.equal((await coordinator.lookup(ref('nginx:3'), 10)).outcome.kind, 'timeout');
  scanner.settle(0, pass);
  await coordinator.idle();
});

test('errors are never cached: the next lookup scans again', async () => {
  const scanner = manualScanner();
  const { coordinator, cache } = setup(scanner);
  const waiting = coordinator.lookup(ref('nginx:4'), 1_000);
  scanner.settle(0, new ScannerAuthError(401));
  const result = await waiting;
  assert.equal(result.outcome.kind, 'error');
  assert.equal(result.outcome.kind === 'error' && result.outcome.code, 'SCANGATE_ERR_SCANNER_AUTH');
  assert.equal(cache.size, 0);
  const again = coordinator.lookup(ref('nginx:4'), 1_000);
  assert.equal(scanner.calls.length, 2);
  scanner.settle(1, pass);
  assert.equal((await again).source, 'miss');
});

test('fail verdicts expire sooner than pass verdicts', async () => {
  const scanner = manualScanner();
  const { coordinator, advance } = setup(scanner);
  const fail: ScanVerdict = { status: 'fail', digest: 'sha256:2', reasons: [], cause: 'policy' };
  const a = coordinator.lookup(ref('a/b:1'), 1_000);
  const b = coordinator.lookup(ref('a/c:1'), 1_000);
  scanner.settle(0, fail);
  scanner.settle(1, pass);
  await Promise.all([a, b]);
  advance(1_001);
  assert.equal((await coordinator.lookup(ref('a/c:1'), 0)).source, 'hit');
  const again = coordinator.lookup(ref('a/b:1'), 1_000);
  assert.equal(scanner.calls.length, 3);
  scanner.settle(2, fail);
  assert.equal((await again).source, 'miss');
});

test('scans in progress are bounded: past the bound a lookup is a scanner error, not a queue', async () => {
  const scanner = manualScanner();
  const { coordinator } = setup(scanner, 1);
  const first = coordinator.lookup(ref('x/a:1'), 1_000);
  const second = await coordinator.lookup(ref('x/b:1'), 1_000);
  assert.equal(second.outcome.kind === 'error' && second.outcome.code, 'SCANGATE_ERR_SCANNER_BUSY');
  scanner.settle(0, pass);
  await first;
});
