/**
 * The event recorder (observability/events.ts) on an injected clock with a fake sink: what a decision
 * becomes, aggregation into a series, the rate limit per namespace, the queue's bounds, escaping of
 * hostile text, dry runs, and that recording never throws or waits.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DecisionRecord } from '../../src/admission/decision-record.js';
import { parseConfig } from '../../src/config.js';
import { KubeApiError } from '../../src/errors.js';
import {
  NOTE_MAX_BYTES,
  createEventRecorder,
  cutUtf8,
  eventOf,
  type EventLimits,
  type EventSeries,
  type EventSink,
  type NewEvent,
} from '../../src/observability/events.js';
import { createLogger } from '../../src/observability/logger.js';
import { createMetrics, type Metrics } from '../../src/observability/metrics.js';
import { LogCapture } from '../helpers/harness.js';
import { syncClock } from '../helpers/manual-clock.js';

const WALL0 = Date.UTC(2026, 11, 7, 23, 0, 0);

const fakeClock = (): ReturnType<typeof syncClock> => syncClock(WALL0);

interface Call {
  readonly op: 'create' | 'series';
  readonly event?: NewEvent;
  readonly ref?: { namespace: string; name: string };
  readonly series?: EventSeries;
  readonly signal: AbortSignal;
  resolve(): void;
  reject(error: Error): void;
}

/** A sink that records every call; calls settle when the test says (or at once with `auto`). */
function fakeSink(auto = true): EventSink & { calls: Call[] } {
  const calls: Call[] = [];
  let n = 0;
  const pending = <T>(push: (resolve: () => void, reject: (e: Error) => void) => void, value: () => T): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      push(() => {
        resolve(value());
      }, reject);
    });
  return {
    calls,
    create(event, signal) {
      const name = `event-${++n}`;
      return pending(
        (resolve, reject) => {
          calls.push({ op: 'create', event, signal, resolve, reject });
          if (auto) resolve();
        },
        () => ({ name }),
      );
    },
    updateSeries(ref, series, signal) {
      return pending(
        (resolve, reject) => {
          calls.push({ op: 'series', ref: { ...ref }, series, signal, resolve, reject });
          if (auto) resolve();
        },
        () => undefined,
      );
    },
  };
}

/** Lets settled promises run their callbacks. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

async function counter(metrics: Metrics, name: 'eventsDropped' | 'eventsWritten', label: string): Promise<number> {
  const values = (await metrics[name].get()).values;
  return values.filter((v) => Object.values(v.labels).includes(label)).reduce((sum, v) => sum + v.value, 0);
}

const LIMITS: EventLimits = { namespaceQps: 1, namespaceBurst: 100, maxQueued: 100, maxQueuedBytes: 1024 * 1024 };

function setup(opts: { sink?: EventSink & { calls: Call[] }; limits?: Partial<EventLimits> } = {}) {
  const clock = fakeClock();
  const sink = opts.sink ?? fakeSink();
  const metrics = createMetrics();
  const logs = new LogCapture();
  const recorder = createEventRecorder({ sink, clock, limits: { ...LIMITS, ...opts.limits }, metrics, logger: createLogger({ level: 'debug', destination: logs }) });
  return { clock, sink, metrics, logs, recorder };
}

const STRUTS_DENIAL =
  'Image failed policy check: kaizheh/apache-struts2-cve-2017-5638:2.3.12 (deployment "struts" container "web"): vulnerabilities/package: CRITICAL Vulnerability found in package struts2-core-2.3.12 - CVE-2017-5638';

function denial(over: Partial<DecisionRecord> = {}): DecisionRecord {
  return {
    endpoint: 'validate',
    result: 'denied',
    mode: 'enforce',
    dryRun: false,
    operation: 'CREATE',
    regarding: { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'shop', name: 'struts', uid: '7f1e-uid' },
    user: 'alice',
    message: STRUTS_DENIAL,
    warnings: [],
    images: [{ image: 'kaizheh/apache-struts2-cve-2017-5638:2.3.12', result: 'fail' }],
    budgetMs: 9000,
    durationMs: 1,
    ...over,
  };
}

describe('what a decision becomes', () => {
  test('a denial: a Warning about the object asked for, with the denial message as note', () => {
    assert.deepEqual(eventOf(denial()), {
      namespace: 'shop',
      // No uid: the refused object was never created (and each retry of the CREATE has a new one).
      regarding: { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'shop', name: 'struts' },
      reason: 'ImageDenied',
      action: 'Deny',
      note: STRUTS_DENIAL,
    });
  });

  test('one reason per kind of decision; allowed, exempt, dry-run and mutate decisions make none', () => {
    const glassWarning = 'Break-glass used by "alice" (reason: "INC-42"): admitted despite: Image failed policy check: x';
    const table: Array<[Partial<DecisionRecord>, string | undefined, string | undefined]> = [
      [{}, 'ImageDenied', STRUTS_DENIAL],
      [{ breakGlass: { outcome: 'refused', user: 'mallory', reason: 'why not' }, message: 'Break-glass not permitted: user "mallory" ...' }, 'BreakGlassRefused', 'Break-glass not permitted: user "mallory" ...'],
      [{ result: 'glass', message: '', warnings: [glassWarning], breakGlass: { outcome: 'admitted', user: 'alice', reason: 'INC-42' } }, 'BreakGlassUsed', glassWarning],
      [{ result: 'warned', mode: 'warn', message: '', warnings: ['Image failed policy check: a', 'Images using latest tag are not allowed: b'] }, 'ImageWarned', 'Image failed policy check: a; Images using latest tag are not allowed: b'],
      [
        { result: 'unverified', message: '', warnings: ['Image scan still in progress: img (container "c": ...)'], images: [{ image: 'img', result: 'timeout' }] },
        'AdmittedUnverified',
        'Image scan still in progress: img (container "c": ...)',
      ],
      [{ result: 'unverified', message: '', warnings: [], images: [{ image: 'img:1', result: 'deferred' }, { image: 'ok:1', result: 'pass' }] }, 'AdmittedUnverified', 'admitted without a verdict: img:1 (deferred)'],
      [{ result: 'allowed', message: '' }, undefined, undefined],
      [{ result: 'exempt', message: '' }, undefined, undefined],
      [{ dryRun: true }, undefined, undefined],
      [{ dryRun: true, result: 'glass' }, undefined, undefined],
      [{ endpoint: 'mutate', result: 'warned' }, undefined, undefined],
    ];
    for (const [over, reason, note] of table) {
      const event = eventOf(denial(over));
      assert.equal(event?.reason, reason, JSON.stringify(over));
      assert.equal(event?.note, note, JSON.stringify(over));
      if (event !== undefined) assert.equal(event.action, reason === 'ImageDenied' || reason === 'BreakGlassRefused' ? 'Deny' : 'Admit');
    }
  });

  test('the uid is kept for an object that exists (an UPDATE refused, any admission), so kubectl describe finds the event', () => {
    assert.equal(eventOf(denial({ operation: 'UPDATE' }))?.regarding.uid, '7f1e-uid');
    assert.equal(eventOf(denial({ result: 'warned', warnings: ['w'] }))?.regarding.uid, '7f1e-uid');
  });

  test('retries of a refused CREATE (each with a new uid) join one series', async () => {
    const { sink, recorder } = setup();
    for (const uid of ['u1', 'u2', 'u3']) recorder.record(denial({ regarding: { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'shop', name: 'struts', uid } }));
    await settle();
    assert.deepEqual(
      sink.calls.map((c) => [c.op, c.series?.count]),
      [
        ['create', undefined],
        ['series', 3],
      ],
    );
  });

  test('an object without a namespace: the event goes to default, the reference has no namespace; no uid when unknown', () => {
    const event = eventOf(denial({ regarding: { apiVersion: 'v1', kind: 'Pod', name: '' } }));
    assert.equal(event?.namespace, 'default');
    assert.deepEqual(event?.regarding, { apiVersion: 'v1', kind: 'Pod', name: '' });
  });

  test('hostile text is escaped with the project escaper: no control, bidi, zero-width or line characters reach the note', () => {
    const hostile = 'Image failed policy check: evil\u001b[31m\u202eexe.txt\u200b\nforged line\u2028\u0007';
    const glass = eventOf(
      denial({ result: 'glass', message: '', warnings: [], breakGlass: { outcome: 'admitted', user: 'eve\u001b]0;pwn\u0007', reason: 'fix\u202e\r\nX-Forged: 1' } }),
    );
    for (const event of [eventOf(denial({ message: hostile })), glass]) {
      assert.ok(event !== undefined);
      // eslint-disable-next-line no-control-regex
      assert.doesNotMatch(event.note, /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u2069]/);
    }
    assert.equal(eventOf(denial({ message: hostile }))?.note, 'Image failed policy check: evil\\x1b[31m\\u202eexe.txt\\u200b\\x0aforged line\\u2028\\x07');
    assert.match(glass?.note ?? '', /^Break-glass used by "eve\\x1b\]0;pwn\\x07" \(reason: "fix\\u202e\\x0d\\x0aX-Forged: 1"\)$/);
    // A hostile object name is escaped in the reference too.
    const named = eventOf(denial({ regarding: { apiVersion: 'v1', kind: 'Pod', namespace: 'shop', name: 'web\u001b[2J' } }));
    assert.equal(named?.regarding.name, 'web\\x1b[2J');
  });

  test('the note is cut to the API limit of 1 KiB counted in bytes, on a character boundary', () => {
    for (const unit of ['a', 'é', '語', '😀', 'a😀']) {
      const note = eventOf(denial({ message: `Image failed policy check: ${unit.repeat(3000)}` }))?.note ?? '';
      assert.ok(Buffer.byteLength(note) <= NOTE_MAX_BYTES, `${unit}: ${Buffer.byteLength(note)} bytes`);
      assert.ok(Buffer.byteLength(note) > NOTE_MAX_BYTES - 8, `${unit}: cut no shorter than needed`);
      assert.ok(note.endsWith('…'));
      assert.doesNotMatch(note, /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/, `${unit}: no lone surrogate`);
    }
    assert.equal(cutUtf8('short', 1024), 'short');
    assert.equal(cutUtf8('x'.repeat(1024), 1024), 'x'.repeat(1024));
    assert.equal(cutUtf8('x'.repeat(1025), 1024), `${'x'.repeat(1021)}…`);
  });
});

describe('recording', () => {
  test('a denial is written once with its first time; allowed and dry-run decisions write nothing', async () => {
    const { sink, metrics, recorder, clock } = setup();
    clock.advance(1500);
    recorder.record(denial({ result: 'allowed', message: '' }));
    recorder.record(denial({ dryRun: true }));
    recorder.record(denial());
    await settle();
    assert.equal(sink.calls.length, 1);
    const call = sink.calls[0];
    assert.equal(call?.op, 'create');
    assert.deepEqual(call?.event, { ...eventOf(denial()), eventTimeMs: WALL0 + 1500 });
    assert.equal(await counter(metrics, 'eventsWritten', 'create'), 1);
  });

  test('repeats are aggregated into a series: counted while the create is in flight, one PATCH with the count', async () => {
    const sink = fakeSink(false);
    const { recorder, clock, metrics } = setup({ sink });
    recorder.record(denial());
    for (let i = 0; i < 4; i++) {
      clock.advance(1000);
      recorder.record(denial());
    }
    await settle();
    assert.equal(sink.calls.length, 1, 'one call per event at a time');
    sink.calls[0]?.resolve();
    await settle();
    assert.equal(sink.calls.length, 2);
    assert.deepEqual({ op: sink.calls[1]?.op, ref: sink.calls[1]?.ref, series: sink.calls[1]?.series }, {
      op: 'series',
      ref: { namespace: 'shop', name: 'event-1' },
      series: { count: 5, lastObservedMs: WALL0 + 4000 },
    });
    sink.calls[1]?.resolve();
    clock.advance(2000);
    recorder.record(denial());
    await settle();
    assert.deepEqual(sink.calls[2]?.series, { count: 6, lastObservedMs: WALL0 + 6000 });
    sink.calls[2]?.resolve();
    await settle();
    assert.equal(await counter(metrics, 'eventsWritten', 'series'), 2);
  });

  test('repeats of an event still queued are written with the create, as a series', async () => {
    const sink = fakeSink(false);
    const { recorder, clock } = setup({ sink, limits: { maxInFlight: 1 } });
    recorder.record(denial({ regarding: { apiVersion: 'v1', kind: 'Pod', namespace: 'shop', name: 'first' } }));
    recorder.record(denial());
    clock.advance(10);
    recorder.record(denial());
    recorder.record(denial());
    sink.calls[0]?.resolve();
    await settle();
    assert.deepEqual(sink.calls[1]?.event?.series, { count: 3, lastObservedMs: WALL0 + 10 });
    assert.equal(sink.calls[1]?.event?.eventTimeMs, WALL0);
  });

  test('a different object, reason or note is a different event; a repeat after the series window starts a new one', async () => {
    const { sink, recorder, clock } = setup({ limits: { seriesWindowMs: 60_000 } });
    recorder.record(denial());
    recorder.record(denial({ regarding: { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'shop', name: 'other' } }));
    recorder.record(denial({ message: 'Images using latest tag are not allowed: x' }));
    recorder.record(denial({ breakGlass: { outcome: 'refused', user: 'm', reason: '' } }));
    await settle();
    assert.deepEqual(
      sink.calls.map((c) => c.op),
      ['create', 'create', 'create', 'create'],
    );
    clock.advance(60_001);
    recorder.record(denial());
    await settle();
    assert.equal(sink.calls[4]?.op, 'create');
    assert.equal(sink.calls[4]?.event?.series, undefined);
  });

  test('rate limit per namespace: past the burst a namespace drops new events (counted); other namespaces are not affected; tokens come back with time', async () => {
    const { sink, recorder, clock, metrics } = setup({ limits: { namespaceQps: 2, namespaceBurst: 3 } });
    const pod = (namespace: string, name: string): DecisionRecord => denial({ regarding: { apiVersion: 'v1', kind: 'Pod', namespace, name } });
    for (let i = 0; i < 5; i++) recorder.record(pod('noisy', `p${i}`));
    recorder.record(pod('quiet', 'q0'));
    await settle();
    assert.deepEqual(
      sink.calls.map((c) => `${c.event?.namespace ?? ''}/${c.event?.regarding.name ?? ''}`),
      ['noisy/p0', 'noisy/p1', 'noisy/p2', 'quiet/q0'],
    );
    assert.equal(await counter(metrics, 'eventsDropped', 'rate_limited'), 2);
    clock.advance(499);
    recorder.record(pod('noisy', 'p5'));
    clock.advance(1);
    recorder.record(pod('noisy', 'p6'));
    await settle();
    assert.equal(sink.calls.at(-1)?.event?.regarding.name, 'p6');
    assert.equal(await counter(metrics, 'eventsDropped', 'rate_limited'), 3);
  });

  test('a series update waits for its namespace token instead of being dropped', async () => {
    const { sink, recorder, clock, metrics } = setup({ limits: { namespaceQps: 1, namespaceBurst: 1 } });
    recorder.record(denial());
    await settle();
    recorder.record(denial());
    recorder.record(denial());
    await settle();
    assert.equal(sink.calls.length, 1);
    clock.advance(1000);
    await settle();
    assert.equal(sink.calls.length, 2);
    assert.deepEqual(sink.calls[1]?.series, { count: 3, lastObservedMs: WALL0 });
    assert.equal(await counter(metrics, 'eventsDropped', 'rate_limited'), 0);
  });

  test('queue bounded in count: past EVENTS_QUEUE_MAX waiting events a new one is dropped (counted)', async () => {
    const sink = fakeSink(false);
    const { recorder, metrics } = setup({ sink, limits: { maxInFlight: 1, maxQueued: 2 } });
    for (let i = 0; i < 5; i++) recorder.record(denial({ regarding: { apiVersion: 'v1', kind: 'Pod', namespace: `ns${i}`, name: 'p' } }));
    await settle();
    assert.equal(sink.calls.length, 1, 'one in flight');
    assert.equal(await counter(metrics, 'eventsDropped', 'queue_full'), 2);
    for (let i = 0; i < 3; i++) {
      sink.calls[i]?.resolve();
      await settle();
    }
    assert.deepEqual(
      sink.calls.map((c) => c.event?.namespace),
      ['ns0', 'ns1', 'ns2'],
    );
  });

  test('queue bounded in bytes: long notes fill EVENTS_QUEUE_MAX_BYTES before the count', async () => {
    const sink = fakeSink(false);
    const { recorder, metrics } = setup({ sink, limits: { maxInFlight: 1, maxQueued: 1000, maxQueuedBytes: 4000 } });
    const long = `Image failed policy check: ${'x'.repeat(2000)}`;
    for (let i = 0; i < 6; i++) recorder.record(denial({ message: `${long}${i}`, regarding: { apiVersion: 'v1', kind: 'Pod', namespace: `ns${i}`, name: 'p' } }));
    await settle();
    // One in flight (out of the queue), then 1.5 KB each against 4000 bytes: two queued, three dropped.
    assert.equal(await counter(metrics, 'eventsDropped', 'queue_full'), 3);
  });

  test('never throws, never waits: a sink that throws, rejects or hangs; a record that explodes', async () => {
    const throwing: EventSink = {
      create() {
        throw new Error('boom');
      },
      updateSeries() {
        throw new Error('boom');
      },
    };
    const t = setup({ sink: Object.assign(throwing, { calls: [] }) });
    assert.doesNotThrow(() => {
      t.recorder.record(denial());
    });
    await settle();
    assert.equal(await counter(t.metrics, 'eventsDropped', 'api_error'), 1);

    const hostile = new Proxy(denial(), {
      get(target, key) {
        if (key === 'message') throw new Error('hostile getter');
        return Reflect.get(target, key) as unknown;
      },
    });
    assert.doesNotThrow(() => {
      t.recorder.record(hostile);
    });
    assert.equal(await counter(t.metrics, 'eventsDropped', 'error'), 1);

    const hanging = fakeSink(false);
    const h = setup({ sink: hanging });
    // Synchronous: 1000 records return while no call has settled (no await in between).
    for (let i = 0; i < 1000; i++) h.recorder.record(denial({ regarding: { apiVersion: 'v1', kind: 'Pod', namespace: `n${i % 50}`, name: `p${i}` } }));
    assert.equal(hanging.calls.length, 4, 'at most maxInFlight calls');
    assert.equal(await counter(h.metrics, 'eventsDropped', 'rate_limited'), 0);
  });

  test('an API failure is counted and logged with its status only, never the note; the next occurrence writes a new event', async () => {
    const sink = fakeSink(false);
    const { recorder, metrics, logs } = setup({ sink });
    recorder.record(denial({ message: 'Image failed policy check: tenant-secret-text' }));
    await settle();
    sink.calls[0]?.reject(new KubeApiError('create event: HTTP 422', 422));
    await settle();
    assert.equal(await counter(metrics, 'eventsDropped', 'api_error'), 1);
    const [line] = logs.find('event not written');
    assert.equal(line?.['status'], 422);
    assert.equal(line?.['code'], 'SCANGATE_ERR_KUBE_API');
    assert.ok(!logs.raw.join('\n').includes('tenant-secret-text'));
    recorder.record(denial({ message: 'Image failed policy check: tenant-secret-text' }));
    await settle();
    assert.equal(sink.calls[1]?.op, 'create');
  });

  test('a series update of an event the API no longer has (404: expired) writes it again, with the series', async () => {
    const sink = fakeSink(false);
    const { recorder, clock } = setup({ sink });
    recorder.record(denial());
    await settle();
    sink.calls[0]?.resolve();
    await settle();
    clock.advance(5);
    recorder.record(denial());
    await settle();
    assert.equal(sink.calls[1]?.op, 'series');
    sink.calls[1]?.reject(new KubeApiError('update event series: HTTP 404', 404));
    await settle();
    assert.equal(sink.calls[2]?.op, 'create');
    assert.deepEqual(sink.calls[2]?.event?.series, { count: 2, lastObservedMs: WALL0 + 5 });
  });

  test('each call is bounded: its signal aborts after requestTimeoutMs on the injected clock', async () => {
    const sink = fakeSink(false);
    const { recorder, clock } = setup({ sink, limits: { requestTimeoutMs: 3000 } });
    recorder.record(denial());
    await settle();
    const signal = sink.calls[0]?.signal;
    clock.advance(2999);
    assert.equal(signal?.aborted, false);
    clock.advance(1);
    assert.equal(signal?.aborted, true);
  });

  test('close() writes what is queued, then resolves; later records are dropped (shutdown)', async () => {
    const sink = fakeSink(false);
    const { recorder, metrics } = setup({ sink, limits: { maxInFlight: 1 } });
    recorder.record(denial());
    recorder.record(denial({ message: 'Image failed policy check: other' }));
    let closed = false;
    void recorder.close().then(() => {
      closed = true;
    });
    recorder.record(denial({ message: 'Image failed policy check: late' }));
    await settle();
    assert.equal(closed, false);
    sink.calls[0]?.resolve();
    await settle();
    sink.calls[1]?.resolve();
    await settle();
    assert.equal(closed, true);
    assert.equal(sink.calls.length, 2);
    assert.equal(await counter(metrics, 'eventsDropped', 'shutdown'), 1);
  });

  test('close() is bounded: what the API has not taken by closeTimeoutMs is dropped and counted, calls aborted', async () => {
    const sink = fakeSink(false);
    const { recorder, metrics, clock } = setup({ sink, limits: { maxInFlight: 1, closeTimeoutMs: 2000 } });
    for (let i = 0; i < 3; i++) recorder.record(denial({ regarding: { apiVersion: 'v1', kind: 'Pod', namespace: 'shop', name: `p${i}` } }));
    let closed = false;
    void recorder.close().then(() => {
      closed = true;
    });
    await settle();
    clock.advance(1999);
    await settle();
    assert.equal(closed, false);
    clock.advance(1);
    await settle();
    assert.equal(closed, true);
    assert.equal(sink.calls[0]?.signal.aborted, true);
    sink.calls[0]?.reject(new KubeApiError('create event: timed out', undefined));
    await settle();
    assert.equal(sink.calls.length, 1, 'nothing sent after the bound');
    assert.equal(await counter(metrics, 'eventsDropped', 'shutdown'), 3);
  });
});

describe('settings', () => {
  test('defaults and bounds of EVENTS_*', () => {
    const base = { INSECURE_HTTP: 'true' };
    assert.deepEqual(parseConfig(base).events, { enabled: 'auto', namespaceQps: 1, namespaceBurst: 25, maxQueued: 1000, maxQueuedBytes: 4 * 1024 * 1024 });
    const set = parseConfig({ ...base, EVENTS_ENABLED: 'false', EVENTS_QPS: '0.2', EVENTS_BURST: '5', EVENTS_QUEUE_MAX: '10', EVENTS_QUEUE_MAX_BYTES: '65536', POD_NAME: 'scangate-7d9' });
    assert.deepEqual(set.events, { enabled: false, namespaceQps: 0.2, namespaceBurst: 5, maxQueued: 10, maxQueuedBytes: 65536 });
    assert.equal(set.podName, 'scangate-7d9');
    assert.equal(parseConfig({ ...base, EVENTS_ENABLED: 'true' }).events.enabled, true);
    assert.throws(
      () => parseConfig({ ...base, EVENTS_ENABLED: 'maybe', EVENTS_QPS: '0', EVENTS_QUEUE_MAX_BYTES: '10' }),
      (error: Error) =>
        error.message.includes('EVENTS_ENABLED: expected auto, true or false') &&
        error.message.includes('EVENTS_QPS: expected a number from 0.001 to 10000, got "0"') &&
        error.message.includes('EVENTS_QUEUE_MAX_BYTES'),
    );
  });
});
