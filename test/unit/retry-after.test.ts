/**
 * Retry-After on mock timers: a scanner's 429 or 503 that names a delay is retried after that delay,
 * not sooner (the exponential backoff it replaces starts at a few milliseconds) and not much later.
 * Where the delay comes from (the header parsed into the error) is checked over a real socket in
 * test/integration/anchore-client.test.ts; timing figures are the benches' (bench/).
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import { pino } from 'pino';
import { ScannerRateLimitedError, ScannerUnavailableError, type ScannerError } from '../../src/errors.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { createScannerTransport } from '../../src/scanner/resilience.js';

/** Moves the mocked clock by `ms`, then lets every promise that the timers settled run. */
async function tick(ms: number): Promise<void> {
  mock.timers.tick(ms);
  for (let i = 0; i < 20; i += 1) await new Promise<void>((resolve) => setImmediate(resolve));
}

describe('Retry-After on mock timers', () => {
  beforeEach(() => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  });
  afterEach(() => {
    mock.timers.reset();
  });

  const cases: Array<[string, () => ScannerError]> = [
    ['429 with Retry-After: 1', () => new ScannerRateLimitedError('scanner rate-limited add_image (HTTP 429)', 1000)],
    ['503 with Retry-After: 1', () => new ScannerUnavailableError('scanner failed add_image (HTTP 503)', { status: 503, retryAfterMs: 1000 })],
  ];
  for (const [name, refusal] of cases) {
    test(`${name}: the call is tried again after 1 s, not before`, async () => {
      const transport = createScannerTransport({
        requestTimeoutMs: 400,
        retryInitialMs: 20,
        retryMaxMs: 100,
        retryBudgetMs: 5000,
        breakerFailures: 0,
        probeIntervalMs: 1000,
        metrics: createMetrics(),
        logger: pino({ level: 'silent' }),
        now: () => Date.now(),
      });
      let calls = 0;
      const answer = transport.call(
        'add_image',
        () => {
          calls += 1;
          return calls === 1 ? Promise.reject(refusal()) : Promise.resolve('analysed');
        },
        { signal: new AbortController().signal },
      );
      await tick(0);
      assert.equal(calls, 1);
      await tick(999);
      assert.equal(calls, 1, 'Retry-After ignored: tried again before 1 s');
      await tick(1);
      assert.equal(calls, 2, 'not tried again when the Retry-After delay was over');
      assert.equal(await answer, 'analysed');
      transport.dispose();
    });
  }
});
