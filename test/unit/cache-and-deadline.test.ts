import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createVerdictCache, verdictKey } from '../../src/cache/verdict-cache.js';
import { computeDeadline, parseGoDuration } from '../../src/engine/deadline.js';
import type { ScanVerdict } from '../../src/policy/types.js';

const pass: ScanVerdict = { status: 'pass', digest: 'sha256:1', warnings: 0 };
const fail: ScanVerdict = { status: 'fail', digest: 'sha256:2', reasons: [], cause: 'policy' };

test('cache: pass and fail verdicts expire after their own TTL (injected clock)', () => {
  let t = 1_000;
  const cache = createVerdictCache({ maxEntries: 10, passTtlMs: 60_000, failTtlMs: 5_000, now: () => t });
  cache.set('a', pass);
  cache.set('b', fail);
  t += 4_999;
  assert.deepEqual([cache.get('a'), cache.get('b')], [pass, fail]);
  t += 2;
  assert.deepEqual([cache.get('a'), cache.get('b')], [pass, undefined]);
  t += 55_000;
  assert.equal(cache.get('a'), undefined);
});

test('cache: bounded by maxEntries, least recently used goes first', () => {
  const cache = createVerdictCache({ maxEntries: 2, passTtlMs: 1000, failTtlMs: 1000, now: () => 0 });
  cache.set('a', pass);
  cache.set('b', pass);
  cache.get('a');
  cache.set('c', pass);
  assert.equal(cache.size, 2);
  assert.equal(cache.get('b'), undefined);
  assert.deepEqual(cache.get('a'), pass);
});

test('cache key: canonical reference plus policy id', () => {
  assert.equal(verdictKey('docker.io/library/nginx:1', undefined), 'docker.io/library/nginx:1');
  assert.notEqual(verdictKey('docker.io/library/nginx:1', 'p1'), verdictKey('docker.io/library/nginx:1', 'p2'));
});

test('Go durations as the API server writes them', () => {
  assert.equal(parseGoDuration('10s'), 10_000);
  assert.equal(parseGoDuration('1m30s'), 90_000);
  assert.equal(parseGoDuration('500ms'), 500);
  assert.equal(parseGoDuration('1.5s'), 1_500);
  for (const bad of ['', '10', 's', '10x', '-1s', '10 s']) assert.equal(parseGoDuration(bad), undefined, bad);
});

test('deadline: request timeout minus margin, default without one, never past 30 s, margin at most half', () => {
  const settings = { defaultTimeoutMs: 10_000, marginMs: 1_000 };
  assert.deepEqual(computeDeadline('10s', settings), { timeoutMs: 10_000, budgetMs: 9_000, source: 'request' });
  assert.deepEqual(computeDeadline(undefined, settings), { timeoutMs: 10_000, budgetMs: 9_000, source: 'default' });
  assert.deepEqual(computeDeadline('garbage', settings), { timeoutMs: 10_000, budgetMs: 9_000, source: 'default' });
  assert.deepEqual(computeDeadline('0s', settings), { timeoutMs: 10_000, budgetMs: 9_000, source: 'default' });
  assert.deepEqual(computeDeadline('45s', settings), { timeoutMs: 30_000, budgetMs: 29_000, source: 'request' });
  assert.deepEqual(computeDeadline('1s', settings), { timeoutMs: 1_000, budgetMs: 500, source: 'request' });
  assert.deepEqual(computeDeadline('1500ms', settings), { timeoutMs: 1_500, budgetMs: 750, source: 'request' });
});
