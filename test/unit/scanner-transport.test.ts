/**
 * The scanner transport (src/scanner/resilience.ts) and its breaker (circuit-breaker.ts) on a manual
 * clock: retry delays, Retry-After, call timeouts, the probe interval and giving up, each checked by
 * moving time by hand. And what opens the breaker: the scanner failing, never one tenant's images.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import {
  ScanAbortedError,
  ScannerCircuitOpenError,
  ScannerError,
  ScannerProtocolError,
  ScannerRequestError,
  ScannerRequestTimeoutError,
  ScannerUnavailableError,
} from '../../src/errors.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { backoffMs, createScannerTransport, type ScannerTransport } from '../../src/scanner/resilience.js';
import { ManualClock, tick } from '../helpers/manual-clock.js';

const refused = (): ScannerUnavailableError => new ScannerUnavailableError('scanner unreachable (ECONNREFUSED)');
const http500 = (): ScannerUnavailableError => new ScannerUnavailableError('scanner failed add_image (HTTP 500)', { status: 500 });

interface Rig {
  readonly clock: ManualClock;
  readonly transport: ScannerTransport;
  /** Answers of the probe, in order; `true` once they run out. */
  readonly probeAnswers: boolean[];
  probes: number;
}

function rig(over: { breakerFailures?: number; retryBudgetMs?: number; random?: number } = {}): Rig {
  const clock = new ManualClock(1000);
  const transport = createScannerTransport({
    requestTimeoutMs: 300,
    retryInitialMs: 100,
    retryMaxMs: 400,
    retryBudgetMs: over.retryBudgetMs ?? 10_000,
    breakerFailures: over.breakerFailures ?? 3,
    probeIntervalMs: 1500,
    metrics: createMetrics(),
    logger: pino({ level: 'silent' }),
    clock,
    random: () => over.random ?? 0,
  });
  const r: Rig = { clock, transport, probeAnswers: [], probes: 0 };
  transport.setProbe(() => ({
    operation: 'status',
    run: () => {
      r.probes += 1;
      const answer = r.probeAnswers.shift() ?? true;
      return answer ? Promise.resolve('ok') : Promise.reject(refused());
    },
  }));
  return r;
}

/** A call whose attempts fail with the given errors in turn, then answer 'ok'; counts its attempts. */
function scripted(errors: readonly (() => ScannerError)[]): { fn: () => Promise<string>; attempts: number[] } {
  const attempts: number[] = [];
  let i = 0;
  return {
    attempts,
    fn: () => {
      attempts.push(i);
      const next = errors[i++];
      return next === undefined ? Promise.resolve('ok') : Promise.reject(next());
    },
  };
}

describe('backoff', () => {
  it('doubles from the initial delay up to the cap, half jitter; Retry-After sets it', () => {
    assert.deepEqual([0, 1, 2, 3, 4].map((a) => backoffMs(a, 100, 400, 0)), [50, 100, 200, 200, 200]);
    assert.deepEqual([0, 1, 2, 3].map((a) => backoffMs(a, 100, 400, 0.999999)), [99, 199, 399, 399]);
    assert.equal(backoffMs(5, 100, 400, 0.5, 1000), 1000);
  });
});

describe('scanner transport on a manual clock', () => {
  it('retries a transient error after the backoff delay, not before', async () => {
    const r = rig();
    const call = scripted([http500]);
    const result = r.transport.call('add_image', call.fn, { signal: new AbortController().signal });
    await tick();
    assert.equal(call.attempts.length, 1);
    await r.clock.advance(49);
    assert.equal(call.attempts.length, 1, 'no retry before 50 ms (100 ms, half jitter at 0)');
    await r.clock.advance(1);
    assert.equal(await result, 'ok');
    assert.equal(call.attempts.length, 2);
    r.transport.dispose();
  });

  it('honours Retry-After: the next attempt waits exactly that long', async () => {
    const r = rig();
    const call = scripted([() => new ScannerUnavailableError('scanner failed add_image (HTTP 503)', { status: 503, retryAfterMs: 1000 })]);
    const result = r.transport.call('add_image', call.fn, { signal: new AbortController().signal });
    await r.clock.advance(999);
    assert.equal(call.attempts.length, 1, 'not retried before the Retry-After');
    await r.clock.advance(1);
    assert.equal(await result, 'ok');
    r.transport.dispose();
  });

  it('gives up when the retry budget is spent, with the last error', async () => {
    const r = rig({ retryBudgetMs: 200 });
    const call = scripted(Array.from({ length: 20 }, () => http500));
    const result = r.transport.call('add_image', call.fn, { signal: new AbortController().signal }).catch((e: unknown) => e);
    await r.clock.advance(1000);
    const error = await result;
    assert.ok(error instanceof ScannerUnavailableError && error.status === 500, String(error));
    // 0: fail, +50, +100, +200 (>= 200 ms failing): given up on the fourth failure.
    assert.equal(call.attempts.length, 4);
    r.transport.dispose();
  });

  it('a call past SCANNER_REQUEST_TIMEOUT_MS ends with a timeout error when the clock says so', async () => {
    const r = rig({ breakerFailures: 0, retryBudgetMs: 0 });
    let seen: AbortSignal | undefined;
    const result = r.transport
      .call('check', (signal) => {
        seen = signal;
        return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error)));
      }, { signal: new AbortController().signal })
      .catch((e: unknown) => e);
    await r.clock.advance(299);
    assert.equal(seen?.aborted, false);
    await r.clock.advance(1);
    const error = await result;
    assert.ok(error instanceof ScannerRequestTimeoutError);
    assert.equal(error.message, 'scanner did not answer check within 300 ms');
    r.transport.dispose();
  });

  it('a scan that is aborted stops waiting to retry at once', async () => {
    const r = rig();
    const call = scripted(Array.from({ length: 5 }, () => http500));
    const scan = new AbortController();
    const result = r.transport.call('add_image', call.fn, { signal: scan.signal }).catch((e: unknown) => e);
    await tick();
    scan.abort(new ScanAbortedError('scan did not finish within 1000 ms'));
    const error = await result;
    assert.ok(error instanceof ScanAbortedError);
    assert.equal(error.message, 'scan did not finish within 1000 ms');
    await r.clock.advance(5000);
    assert.equal(call.attempts.length, 1, 'no attempt after the abort');
    r.transport.dispose();
  });

  it('opens after N connection failures: calls refused without reaching the scanner, waiting retries give up, a probe each interval', async () => {
    const r = rig();
    const transitions: string[] = [];
    r.transport.onStateChange((t) => transitions.push(`${t.from}>${t.to}`));
    const waiting = scripted(Array.from({ length: 10 }, () => refused));
    const waitingResult = r.transport.call('get_image', waiting.fn, { signal: new AbortController().signal }).catch((e: unknown) => e);
    const tipping = scripted(Array.from({ length: 10 }, () => refused));
    const tippingResult = r.transport.call('add_image', tipping.fn, { signal: new AbortController().signal }).catch((e: unknown) => e);
    // Two failures at once, then one more after the first backoff: open.
    await r.clock.advance(50);
    assert.equal(r.transport.state, 'open');
    const opened = r.clock.now();
    // The call whose failure opened it ends with the scanner's own error; the other, waiting, with the breaker's.
    const errors = [await waitingResult, await tippingResult];
    assert.ok(errors.some((e) => e instanceof ScannerUnavailableError), String(errors));
    assert.ok(errors.some((e) => e instanceof ScannerCircuitOpenError), String(errors));
    const attemptsWhenOpened = waiting.attempts.length + tipping.attempts.length;
    assert.equal(attemptsWhenOpened, 3);

    let reached = 0;
    const refusedCall = await r.transport
      .call('add_image', () => {
        reached += 1;
        return Promise.resolve('ok');
      }, { signal: new AbortController().signal })
      .catch((e: unknown) => e);
    assert.ok(refusedCall instanceof ScannerCircuitOpenError);
    assert.equal(refusedCall.message, 'circuit breaker open after 3 consecutive scanner failures (last: scanner unreachable (ECONNREFUSED)); next probe in 1.5s');
    assert.equal(reached, 0, 'nothing reached the scanner while open');
    assert.ok(r.transport.rejection() instanceof ScannerCircuitOpenError);

    // The probe goes exactly one interval after the opening; it fails: open for another interval.
    r.probeAnswers.push(false);
    await r.clock.advance(opened + 1499 - r.clock.now());
    assert.equal(r.probes, 0);
    await r.clock.advance(1);
    assert.equal(r.probes, 1);
    assert.equal(r.transport.state, 'open');
    // The next probe answers: closed, calls go through again.
    await r.clock.advance(1500);
    assert.equal(r.probes, 2);
    assert.equal(r.transport.state, 'closed');
    assert.deepEqual(transitions, ['closed>open', 'open>half_open', 'half_open>open', 'open>half_open', 'half_open>closed']);
    assert.equal(await r.transport.call('add_image', () => Promise.resolve('back'), { signal: new AbortController().signal }), 'back');
    r.transport.dispose();
  });

  it('a success between failures starts the count again; answers (4xx, wrong shapes) never count', async () => {
    const r = rig({ retryBudgetMs: 0 });
    const once = async (error: () => ScannerError): Promise<void> => {
      await r.transport.call('add_image', () => Promise.reject(error()), { signal: new AbortController().signal }).catch(() => undefined);
    };
    await once(refused);
    await once(refused);
    await r.transport.call('add_image', () => Promise.resolve('ok'), { signal: new AbortController().signal });
    await once(refused);
    await once(refused);
    for (let i = 0; i < 10; i += 1) {
      await once(() => new ScannerRequestError('scanner refused add_image (HTTP 400)', 400));
      await once(() => new ScannerProtocolError('scanner answered an image list that is not an array'));
    }
    assert.equal(r.transport.state, 'closed');
    await once(refused);
    assert.equal(r.transport.state, 'open');
    r.transport.dispose();
  });
});

describe('what resets the count', () => {
  it('a success from memory (the API version already known) does not; its failures count', async () => {
    const r = rig({ retryBudgetMs: 0 });
    const signal = new AbortController().signal;
    for (let i = 0; i < 3; i += 1) {
      await r.transport.call('version', () => Promise.resolve('v1'), { signal, successIsAnswer: false });
      await r.transport.call('add_image', () => Promise.reject(refused()), { signal }).catch(() => undefined);
    }
    assert.equal(r.transport.state, 'open', 'three scans in a row refused: open, whatever the version lookups');
    r.transport.dispose();
  });
});

describe("the breaker opens on the scanner's failures, not on one tenant's images (issue 15, I2)", () => {
  for (const [name, failure] of [
    ['HTTP 500 on POST /images (the scanner cannot fetch the image from its registry)', http500],
    ['our call times out (a registry that stalls the scanner while it answers)', () => new ScannerRequestTimeoutError('scanner did not answer add_image within 300 ms')],
    ['an answer that cannot be read', () => new ScannerProtocolError('scanner answered add_image with malformed JSON', { unparseable: true })],
  ] as const) {
    it(`${name}: counted only when the probe (a call about no image) fails too`, async () => {
      const r = rig({ retryBudgetMs: 0 });
      const fail = (): Promise<unknown> => r.transport.call('add_image', () => Promise.reject(failure()), { signal: new AbortController().signal }).catch((e: unknown) => e);
      // A tenant's images, many times the threshold: the scanner answers the probe, the breaker stays closed.
      for (let i = 0; i < 12; i += 1) await fail();
      await r.clock.advance(0);
      assert.equal(r.transport.state, 'closed');
      assert.equal(r.probes, 4, 'one probe per threshold of suspect failures');
      assert.equal(await r.transport.call('add_image', () => Promise.resolve('clean image'), { signal: new AbortController().signal }), 'clean image');
      // The scanner itself fails (the probe too): the same failures open it.
      r.probeAnswers.push(false);
      for (let i = 0; i < 3; i += 1) await fail();
      await r.clock.advance(0);
      assert.equal(r.transport.state, 'open');
      r.transport.dispose();
    });
  }

  it('while the probe confirms, no new call goes to the scanner', async () => {
    const r = rig({ retryBudgetMs: 0 });
    let answerProbe: ((ok: boolean) => void) | undefined;
    r.transport.setProbe(() => ({
      operation: 'status',
      run: () =>
        new Promise((resolve, reject) => {
          answerProbe = (ok) => {
            if (ok) resolve('ok');
            else reject(refused());
          };
        }),
    }));
    const failing = (): Promise<unknown> =>
      r.transport.call('add_image', () => Promise.reject(http500()), { signal: new AbortController().signal }).catch((e: unknown) => e);
    await failing();
    await failing();
    // The third would open the breaker: the probe is asked, and this call waits for its answer.
    const tipping = failing();
    await tick();
    assert.ok(answerProbe !== undefined, 'the probe was asked');
    let sent = 0;
    const next = r.transport
      .call('add_image', () => {
        sent += 1;
        return Promise.resolve('ok');
      }, { signal: new AbortController().signal })
      .catch((e: unknown) => e);
    await tick();
    assert.equal(sent, 0, 'held while the probe runs');
    answerProbe(false);
    const own = await tipping;
    assert.ok(own instanceof ScannerUnavailableError && own.status === 500, `the call that tipped it ends with its own error: ${String(own)}`);
    assert.ok((await next) instanceof ScannerCircuitOpenError, 'the probe failed: refused by the open breaker');
    assert.equal(sent, 0);
    r.transport.dispose();
  });
});
