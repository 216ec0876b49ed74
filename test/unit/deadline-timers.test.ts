/**
 * A request's deadline on mock timers: the answer comes when the budget is spent, not a millisecond
 * before, whatever the scan still does, and the scan goes on in the background. The integration tests
 * (test/integration/webhook.test.ts, policy-webhook.test.ts, break-glass-pinning.test.ts) check that
 * the HTTP layer hands the right budget down (`budgetMs` of the decision log line) and what the answer
 * says; how long anything takes on a real machine is the benches' business (bench/).
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import { pino } from 'pino';
import { createVerdictCache, type VerdictCache } from '../../src/cache/verdict-cache.js';
import { computeDeadline } from '../../src/engine/deadline.js';
import { createEvaluator, type Evaluation } from '../../src/engine/evaluator.js';
import { createPinner, type PinResult } from '../../src/engine/pinner.js';
import { createScanCoordinator, type ScanCoordinator, type Scanner } from '../../src/engine/scan-coordinator.js';
import { ScannerRequestTimeoutError, type ScannerError } from '../../src/errors.js';
import { createMetrics, type Metrics } from '../../src/observability/metrics.js';
import { MESSAGES, WORKLOAD_WITHOUT_VERDICT } from '../../src/policy/decision.js';
import type { ContainerImage, DecisionOptions, ScanVerdict } from '../../src/policy/types.js';
import { metricValue } from '../helpers/harness.js';

const STRUTS = 'kaizheh/apache-struts2-cve-2017-5638:2.3.12';
const FAIL: ScanVerdict = {
  status: 'fail',
  digest: `sha256:${'a'.repeat(64)}`,
  reasons: [{ gate: 'vulnerabilities', trigger: 'package', output: 'CRITICAL Vulnerability found CVE-2017-5638' }],
  cause: 'policy',
};

/**
 * A scanner on the mocked setTimeout: every scan ends `analysisMs` after it starts, or never
 * (`Infinity`), after reporting `failing` as a retryable error of each call (a scanner that is down).
 */
function timedScanner(analysisMs: number, failing?: () => ScannerError): Scanner & { readonly started: string[] } {
  const started: string[] = [];
  return {
    started,
    scan(reference, { signal, onCallResult }) {
      started.push(reference.canonical);
      return new Promise((resolve, reject) => {
        if (failing !== undefined) setTimeout(() => onCallResult(failing()), 10);
        const timer = Number.isFinite(analysisMs) ? setTimeout(() => resolve(FAIL), analysisMs) : undefined;
        signal.addEventListener('abort', () => {
          clearTimeout(timer);
          reject(signal.reason as Error);
        });
      });
    },
  };
}

interface Rig {
  readonly cache: VerdictCache;
  readonly metrics: Metrics;
  readonly coordinator: ScanCoordinator;
  evaluate(images: readonly string[], budgetMs: number, decision: Partial<DecisionOptions> & { subject?: 'pod' | 'workload' }): Promise<Evaluation>;
  pin(images: readonly string[], budgetMs: number): Promise<PinResult>;
}

/** The deadline's whole path below HTTP (evaluator, pinner, coordinator, cache), every clock the mocked Date. */
function rig(scanner: Scanner): Rig {
  const now = (): number => Date.now();
  const cache = createVerdictCache({ maxEntries: 100, passTtlMs: 60_000, failTtlMs: 60_000, now });
  const metrics = createMetrics();
  const coordinator = createScanCoordinator({
    cache,
    scanner,
    maxScanDurationMs: 60_000,
    maxConcurrentScans: 10,
    metrics,
    logger: pino({ level: 'silent' }),
    now,
  });
  const rules = { denyLatestTag: true, registryAllowlist: [] };
  const containers = (images: readonly string[]): ContainerImage[] => images.map((image, i) => ({ container: `c${String(i)}`, kind: 'container', image }));
  return {
    cache,
    metrics,
    coordinator,
    evaluate(images, budgetMs, { subject, ...decision }) {
      const evaluator = createEvaluator({
        rules,
        decision: { mode: 'enforce', rejectIfTimeout: true, ...decision },
        exemptNamespaces: [],
        coordinator,
        metrics,
        now,
      });
      return evaluator.evaluate({ images: containers(images), budgetMs, ...(subject !== undefined ? { subject } : {}) });
    },
    pin(images, budgetMs) {
      const pinner = createPinner({ rules, exemptNamespaces: [], coordinator, now });
      return pinner.pin({ targets: images.map((image, i) => ({ path: `/spec/containers/${String(i)}/image`, image })), budgetMs });
    },
  };
}

/** Moves the mocked clock by `ms`, then lets every promise that the timers settled run. */
async function tick(ms: number): Promise<void> {
  mock.timers.tick(ms);
  for (let i = 0; i < 20; i += 1) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Runs `answer` on the mocked clock: pending one millisecond before `atMs`, settled at `atMs`. */
async function answeredAt<T>(answer: Promise<T>, atMs: number): Promise<T> {
  const state = { done: false };
  answer.then(
    () => (state.done = true),
    () => (state.done = true),
  );
  await tick(atMs - 1);
  assert.equal(state.done, false, `answered before the budget of ${String(atMs)} ms was spent`);
  await tick(1);
  assert.equal(state.done, true, `no answer when the budget of ${String(atMs)} ms was spent`);
  return answer;
}

describe('the deadline on mock timers', () => {
  beforeEach(() => {
    // Not 0: lru-cache reads a start time of 0 as "no TTL".
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  });
  afterEach(() => {
    mock.timers.reset();
  });

  // The budget webhook.test.ts asks for: ?timeout=2s with DEADLINE_MARGIN_MS=500.
  const budgetMs = computeDeadline('2s', { defaultTimeoutMs: 10_000, marginMs: 500 }).budgetMs;

  test('analysis longer than the budget, REJECT_IF_TIMEOUT=true: denied when the budget is spent; the scan goes on and its verdict lands in the cache', async () => {
    assert.equal(budgetMs, 1500);
    const scanner = timedScanner(2500);
    const r = rig(scanner);
    const { decision, images } = await answeredAt(r.evaluate([STRUTS], budgetMs, { rejectIfTimeout: true }), budgetMs);
    assert.equal(decision.allowed, false);
    assert.match(decision.message, new RegExp(`^${MESSAGES.timeout}: ${STRUTS} \\(container "c0": no verdict within 1.5s; the scan continues in the background`));
    assert.deepEqual(images.map((i) => i.result), ['timeout']);
    assert.equal(metricValue(await r.metrics.registry.metrics(), 'scangate_deadline_expiries_total', { reason: 'timeout', action: 'denied' }), 1);
    // The scan outlives the request: at 2.5 s its verdict is cached for the API server's retry.
    assert.equal(r.coordinator.inFlight, 1);
    await tick(2500 - budgetMs - 1);
    assert.equal(r.coordinator.inFlight, 1);
    await tick(1);
    assert.equal(r.coordinator.inFlight, 0);
    // The API server's retry: a cache hit, answered without the clock moving.
    const retry = await r.evaluate([STRUTS], budgetMs, {});
    assert.match(retry.decision.message, new RegExp(`^${MESSAGES.policyFail}: ${STRUTS}`));
    assert.deepEqual(retry.images.map((i) => i.cache), ['hit']);
    assert.deepEqual(scanner.started, ['docker.io/kaizheh/apache-struts2-cve-2017-5638:2.3.12']);
  });

  test('analysis longer than the budget, REJECT_IF_TIMEOUT=false: admitted with a warning when the budget of a 1 s timeout is spent', async () => {
    const short = computeDeadline('1s', { defaultTimeoutMs: 10_000, marginMs: 500 }).budgetMs;
    assert.equal(short, 500);
    const r = rig(timedScanner(3000));
    const { decision, images } = await answeredAt(r.evaluate(['nginx:1.24'], short, { rejectIfTimeout: false }), short);
    assert.equal(decision.allowed, true);
    assert.match(decision.warnings[0] ?? '', /^admitted without a verdict \(REJECT_IF_TIMEOUT=false\): Image scan still in progress: nginx:1.24/);
    assert.deepEqual(images.map((i) => i.result), ['timeout']);
    r.coordinator.abortAll();
  });

  test('a workload template whose scan is not finished in time: admitted with a warning when the budget is spent (REJECT_IF_TIMEOUT=true)', async () => {
    const r = rig(timedScanner(3000));
    const { decision } = await answeredAt(r.evaluate(['nginx:1.24'], 500, { rejectIfTimeout: true, subject: 'workload' }), 500);
    assert.equal(decision.allowed, true);
    assert.match(decision.warnings[0] ?? '', new RegExp(`^${WORKLOAD_WITHOUT_VERDICT}: ${MESSAGES.timeout}: nginx:1\\.24`));
    r.coordinator.abortAll();
  });

  test('a scanner that hangs and keeps failing: a scanner error when the budget is spent, never later', async () => {
    const r = rig(timedScanner(Number.POSITIVE_INFINITY, () => new ScannerRequestTimeoutError('scanner did not answer add_image within 400 ms')));
    const deadline = computeDeadline('2s', { defaultTimeoutMs: 10_000, marginMs: 300 });
    const { decision } = await answeredAt(r.evaluate(['nginx:1.25.3'], deadline.budgetMs, { rejectIfTimeout: true }), deadline.budgetMs);
    assert.ok(deadline.budgetMs < deadline.timeoutMs);
    assert.equal(decision.allowed, false);
    assert.equal(decision.message, 'Scanner error: nginx:1.25.3 (container "c0": scanner did not answer add_image within 400 ms)');
    r.coordinator.abortAll();
  });

  test('the mutating webhook never waits past the budget: no verdict in time leaves the image unpinned', async () => {
    const r = rig(timedScanner(5000));
    const result = await answeredAt(r.pin(['nginx:1.24'], 500), 500);
    assert.deepEqual(result, { exempt: false, pins: [], unpinned: [{ image: 'nginx:1.24', reason: 'no_verdict' }] });
    r.coordinator.abortAll();
  });
});
