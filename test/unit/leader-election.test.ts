/**
 * Leader election (kube/leader-election.ts) against a fake Lease API on an injected clock: one
 * holder at a time, renewal, takeover only after the lease duration of an unchanged record, stepping
 * down after renewDeadline without renewals, release on stop, and conflicts from concurrent writes.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { KubeApiError } from '../../src/errors.js';
import { createLeaderElector, type ElectionClock, type LeaseApi, type LeaseRecord, type StoredLease } from '../../src/kube/leader-election.js';
import { createLogger } from '../../src/observability/logger.js';

const WALL0 = Date.UTC(2026, 11, 8, 0, 0, 0);

function fakeClock(): ElectionClock & { advance(ms: number): void } {
  let now = 0;
  const timers: Array<{ at: number; fn: () => void; cancelled: boolean }> = [];
  return {
    now: () => now,
    wallNow: () => WALL0 + now,
    setTimer(fn, ms) {
      const timer = { at: now + ms, fn, cancelled: false };
      timers.push(timer);
      return {
        cancel: () => {
          timer.cancelled = true;
        },
      };
    },
    advance(ms) {
      now += ms;
    },
  };
}

/** One Lease as the API server keeps it: resourceVersion checked on every update, 409 on a stale one. */
function fakeLeaseApi(): LeaseApi & { stored: StoredLease | undefined; failing: Set<string>; writes: number } {
  let version = 0;
  const api = {
    stored: undefined as StoredLease | undefined,
    failing: new Set<string>(),
    writes: 0,
    get(): Promise<StoredLease | undefined> {
      if (api.failing.has('*')) return Promise.reject(new KubeApiError('get lease: no answer', undefined));
      return Promise.resolve(api.stored);
    },
    create(record: LeaseRecord): Promise<StoredLease> {
      if (api.stored !== undefined) return Promise.reject(new KubeApiError('create lease: HTTP 409', 409));
      api.writes += 1;
      api.stored = { record, resourceVersion: String(++version) };
      return Promise.resolve(api.stored);
    },
    update(record: LeaseRecord, resourceVersion: string): Promise<StoredLease> {
      if (api.failing.has(record.holderIdentity)) return Promise.reject(new KubeApiError('update lease: timed out', undefined));
      if (api.stored?.resourceVersion !== resourceVersion) return Promise.reject(new KubeApiError('update lease: HTTP 409', 409));
      api.writes += 1;
      api.stored = { record, resourceVersion: String(++version) };
      return Promise.resolve(api.stored);
    },
  };
  return api;
}

const LEASE_MS = 15_000;

function elector(api: LeaseApi, clock: ElectionClock, identity: string, log: string[]) {
  return createLeaderElector({
    api,
    identity,
    leaseDurationMs: LEASE_MS,
    renewDeadlineMs: 10_000,
    retryPeriodMs: 2_000,
    clock,
    onStartedLeading: () => log.push(`${identity} started`),
    onStoppedLeading: () => log.push(`${identity} stopped`),
    logger: createLogger({ level: 'silent' }),
  });
}

describe('leader election', () => {
  test('the first replica takes the lease and renews it; the other waits', async () => {
    const clock = fakeClock();
    const api = fakeLeaseApi();
    const log: string[] = [];
    const a = elector(api, clock, 'a', log);
    const b = elector(api, clock, 'b', log);
    assert.equal(await a.tryAcquireOrRenew(), true);
    assert.equal(await b.tryAcquireOrRenew(), false);
    assert.equal(api.stored?.record.holderIdentity, 'a');
    assert.equal(api.stored?.record.leaseDurationSeconds, 15);
    for (let i = 0; i < 20; i++) {
      clock.advance(2000);
      assert.equal(await a.tryAcquireOrRenew(), true);
      assert.equal(await b.tryAcquireOrRenew(), false, 'a renewing holder keeps it however long');
    }
    assert.equal(api.stored?.record.renewTimeMs, WALL0 + 40_000);
    assert.equal(api.stored?.record.leaseTransitions, 0);
    assert.deepEqual(log, ['a started']);
  });

  test('when the holder dies, the other takes over once the record has not changed for the lease duration, not before', async () => {
    const clock = fakeClock();
    const api = fakeLeaseApi();
    const log: string[] = [];
    const a = elector(api, clock, 'a', log);
    const b = elector(api, clock, 'b', log);
    await a.tryAcquireOrRenew();
    await b.tryAcquireOrRenew(); // b first sees a's record at 0
    // a dies (no release, no more renewals).
    clock.advance(LEASE_MS - 1);
    assert.equal(await b.tryAcquireOrRenew(), false);
    clock.advance(1);
    assert.equal(await b.tryAcquireOrRenew(), true);
    assert.equal(api.stored?.record.holderIdentity, 'b');
    assert.equal(api.stored?.record.leaseTransitions, 1);
    assert.deepEqual(log, ['a started', 'b started']);
  });

  test('takeover is measured on the taker\'s own clock, not the holder\'s renewTime (clock skew)', async () => {
    const clock = fakeClock();
    const api = fakeLeaseApi();
    // A holder whose wall clock is an hour behind: its renewTime looks long expired.
    api.stored = {
      record: { holderIdentity: 'skewed', leaseDurationSeconds: 15, acquireTimeMs: WALL0 - 3_600_000, renewTimeMs: WALL0 - 3_600_000, leaseTransitions: 0 },
      resourceVersion: 'x',
    };
    const b = elector(api, clock, 'b', []);
    assert.equal(await b.tryAcquireOrRenew(), false);
  });

  test('a leader that cannot renew steps down after renewDeadline, before anyone may take over', async () => {
    const clock = fakeClock();
    const api = fakeLeaseApi();
    const log: string[] = [];
    const a = elector(api, clock, 'a', log);
    const b = elector(api, clock, 'b', log);
    await a.tryAcquireOrRenew();
    await b.tryAcquireOrRenew();
    api.failing.add('a');
    for (let t = 2000; t < 10_000; t += 2000) {
      clock.advance(2000);
      assert.equal(await a.tryAcquireOrRenew(), true, `still leading at ${t}`);
    }
    clock.advance(2000);
    assert.equal(await a.tryAcquireOrRenew(), false, 'stepped down at 10 s');
    assert.deepEqual(log, ['a started', 'a stopped']);
    assert.equal(await b.tryAcquireOrRenew(), false, 'b must still wait: a may have been leading until 10 s');
    clock.advance(LEASE_MS - 10_000);
    assert.equal(await b.tryAcquireOrRenew(), true);
  });

  test('a leader that sees another holder (its lease was taken) stops leading at once', async () => {
    const clock = fakeClock();
    const api = fakeLeaseApi();
    const log: string[] = [];
    const a = elector(api, clock, 'a', log);
    await a.tryAcquireOrRenew();
    const stored = api.stored;
    assert.ok(stored);
    api.stored = { record: { ...stored.record, holderIdentity: 'intruder', renewTimeMs: WALL0 + 1 }, resourceVersion: 'other' };
    clock.advance(2000);
    assert.equal(await a.tryAcquireOrRenew(), false);
    assert.deepEqual(log, ['a started', 'a stopped']);
  });

  test('two replicas racing for a free lease: exactly one wins', async () => {
    const clock = fakeClock();
    const api = fakeLeaseApi();
    const a = elector(api, clock, 'a', []);
    const b = elector(api, clock, 'b', []);
    const [ra, rb] = await Promise.all([a.tryAcquireOrRenew(), b.tryAcquireOrRenew()]);
    assert.equal(Number(ra) + Number(rb), 1);
  });

  test('stop() releases the lease: the other replica takes it at its next try', async () => {
    const clock = fakeClock();
    const api = fakeLeaseApi();
    const log: string[] = [];
    const a = elector(api, clock, 'a', log);
    const b = elector(api, clock, 'b', log);
    a.start();
    await new Promise((r) => setImmediate(r));
    assert.equal(a.isLeader, true);
    await b.tryAcquireOrRenew();
    await a.stop();
    assert.equal(api.stored?.record.holderIdentity, '');
    clock.advance(2000);
    assert.equal(await b.tryAcquireOrRenew(), true);
    assert.deepEqual(log, ['a started', 'a stopped', 'b started']);
  });

  test('API errors never throw out of a round', async () => {
    const clock = fakeClock();
    const api = fakeLeaseApi();
    api.failing.add('*');
    const a = elector(api, clock, 'a', []);
    assert.equal(await a.tryAcquireOrRenew(), false);
  });
});
