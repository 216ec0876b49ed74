/**
 * Two replicas wired as main.ts wires them (composeRecheck) on one injected clock and a shared fake
 * Lease API: exactly one watches pods and runs the loop; when the holder dies (its API calls fail from
 * then on), the other takes over within the lease duration plus two retry periods, and not before
 * the lease duration since the holder's last renewal.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { composeRecheck, composeScangate } from '../../src/composition.js';
import { parseConfig } from '../../src/config.js';
import type { Scanner } from '../../src/engine/scan-coordinator.js';
import { KubeApiError } from '../../src/errors.js';
import type { LeaseApi, LeaseRecord, StoredLease } from '../../src/kube/leader-election.js';
import type { PodSourceOptions } from '../../src/kube/recheck-kube.js';
import { createLogger } from '../../src/observability/logger.js';
import { syncClock } from '../helpers/manual-clock.js';

const D1 = `sha256:${'1'.repeat(64)}`;

const fakeClock = (): ReturnType<typeof syncClock> => syncClock(Date.UTC(2026, 11, 8));

const flush = async (): Promise<void> => {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
};

test('the lease holder runs the loop; when it dies the other replica takes over within the lease duration', async () => {
  const clock = fakeClock();
  let stored: StoredLease | undefined;
  let version = 0;
  const write = (record: LeaseRecord): StoredLease => (stored = { record, resourceVersion: String(++version) });
  const dead = new Set<string>();
  const leaseApiOf = (replica: string): LeaseApi => {
    const alive = (): void => {
      if (dead.has(replica)) throw new KubeApiError('lease: no answer', undefined);
    };
    return {
      get: () => Promise.resolve().then(() => (alive(), stored)),
      create: (record) => Promise.resolve().then(() => {
        alive();
        if (stored !== undefined) throw new KubeApiError('create lease: HTTP 409', 409);
        return write(record);
      }),
      update: (record, rv) => Promise.resolve().then(() => {
        alive();
        if (stored?.resourceVersion !== rv) throw new KubeApiError('update lease: HTTP 409', 409);
        return write(record);
      }),
    };
  };
  const scanner: Scanner = { scan: (reference) => Promise.resolve({ status: 'pass', digest: reference.digest ?? D1, warnings: 0 }) };
  const config = parseConfig({ INSECURE_HTTP: 'true', RECHECK_ENABLED: 'true', POD_NAMESPACE: 'scangate', LEASE_DURATION_S: '15' });
  const sources: Record<string, number> = { a: 0, b: 0 };
  const replica = (name: string) => {
    const logger = createLogger({ level: 'silent' });
    const scangate = composeScangate(config, { logger, scanner });
    return composeRecheck(scangate, {
      leaseApi: leaseApiOf(name),
      podSource: (handlers: Pick<PodSourceOptions, 'onPod' | 'onList'>) => {
        sources[name] = (sources[name] ?? 0) + 1;
        return {
          start() {
            handlers.onPod('shop/web-1', {
              namespace: 'shop',
              name: 'web-1',
              workload: { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'shop', name: 'web' },
              images: [`docker.io/library/nginx@${D1}`],
            });
            handlers.onList(new Set(['shop/web-1']));
          },
          stop() {},
          synced: true,
        };
      },
      identity: name,
      logger,
      clock,
    });
  };
  const a = replica('a');
  const b = replica('b');
  a.start();
  await flush();
  b.start();
  await flush();
  const step = async (ms: number): Promise<void> => {
    for (let t = 0; t < ms; t += 250) {
      clock.advance(250);
      await flush();
    }
  };
  await step(30_000);
  assert.equal(a.isLeader, true);
  assert.equal(b.isLeader, false);
  assert.deepEqual(sources, { a: 1, b: 0 }, 'only the holder watches pods');
  assert.equal(a.loop.running, true);
  assert.equal(b.loop.running, false);
  assert.equal(a.state.imageCount, 1);

  dead.add('a');
  const killedAt = clock.now();
  await step(10_000);
  assert.equal(a.isLeader, false, 'the dead holder stopped leading after renewDeadline (10 s)');
  assert.equal(a.loop.running, false);
  assert.equal(a.state.imageCount, 0, 'and forgot what it knew');
  // a's last renewal may be up to one retry period (2 s) before killedAt: b may not lead before
  // that renewal + 15 s. It sees the renewal at its next try (<= 2 s later) and takes over at its
  // first try 15 s after that (<= 2 s more): at most 15 + 2 x 2 s after the death.
  await step(15_000 - 10_000 - 2_000 - 250);
  assert.equal(b.isLeader, false, 'not before the lease duration');
  await step(19_500 - (15_000 - 2_000 - 250));
  assert.equal(b.isLeader, true, `b leads ${(clock.now() - killedAt) / 1000} s after a died`);
  assert.equal(b.loop.running, true);
  assert.deepEqual(sources, { a: 1, b: 1 });
  assert.equal(b.state.imageCount, 1);
  assert.equal(stored?.record.holderIdentity, 'b');
  assert.equal(stored?.record.leaseTransitions, 1);
  await Promise.all([a.stop(), b.stop()]);
  assert.equal(stored?.record.holderIdentity, '', 'b released it at stop');
});
