/**
 * The re-verification loop's state and decisions (engine/recheck.ts) and the pod reader
 * (kube/running-pods.ts), on an injected clock: which images run and where, owner mapping, when an
 * image is due, the rate limit and in-flight bound, pass -> fail transitions, the gauge's bound, and
 * the memory of 10 000 pods running 2 000 images.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { boundedCounts, createRecheckLoop, createRecheckState, nextDue, type RecheckTiming } from '../../src/engine/recheck.js';
import { runningPod, runningReference, workloadOf, type PodObject } from '../../src/kube/running-pods.js';
import { parseConfig } from '../../src/config.js';
import { NOTE_MAX_BYTES, runningImageEvents } from '../../src/observability/events.js';
import { createLogger } from '../../src/observability/logger.js';
import type { ScanOutcome, ScanVerdict } from '../../src/policy/types.js';
import { syncClock } from '../helpers/manual-clock.js';

const D1 = `sha256:${'1'.repeat(64)}`;
const D2 = `sha256:${'2'.repeat(64)}`;

const fakeClock = (): ReturnType<typeof syncClock> => syncClock();

const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

const TIMING: RecheckTiming = { intervalMs: 3_600_000, passTtlMs: 600_000, failTtlMs: 300_000, errorRetryMs: 60_000 };
const pass: ScanVerdict = { status: 'pass', digest: D1, warnings: 0 };
const fail: ScanVerdict = { status: 'fail', digest: D1, reasons: [{ gate: 'vulnerabilities', trigger: 'package', output: 'CVE-2017-5638 critical' }], cause: 'policy' };
const verdict = (v: ScanVerdict): ScanOutcome => ({ kind: 'verdict', verdict: v });

function pod(over: {
  namespace?: string;
  name?: string;
  owner?: { kind: string; name: string; apiVersion?: string };
  hash?: string;
  containers?: Array<{ name: string; image: string; imageID?: string }>;
  init?: Array<{ name: string; image: string; imageID?: string }>;
  ephemeral?: Array<{ name: string; image: string; imageID?: string }>;
  phase?: string;
}): PodObject {
  const containers = over.containers ?? [{ name: 'app', image: 'nginx:1.25' }];
  const status = (cs: Array<{ name: string; imageID?: string }> | undefined): Array<{ name: string; imageID: string }> =>
    (cs ?? []).filter((c) => c.imageID !== undefined).map((c) => ({ name: c.name, imageID: c.imageID ?? '' }));
  return {
    metadata: {
      namespace: over.namespace ?? 'shop',
      name: over.name ?? 'web-7d4b9c8f5-abcde',
      ...(over.hash !== undefined ? { labels: { 'pod-template-hash': over.hash } } : {}),
      ...(over.owner !== undefined
        ? { ownerReferences: [{ apiVersion: over.owner.apiVersion ?? 'apps/v1', kind: over.owner.kind, name: over.owner.name, uid: 'u', controller: true }] }
        : {}),
    },
    spec: { containers, ...(over.init !== undefined ? { initContainers: over.init } : {}), ...(over.ephemeral !== undefined ? { ephemeralContainers: over.ephemeral } : {}) },
    status: {
      phase: over.phase ?? 'Running',
      containerStatuses: status(containers),
      initContainerStatuses: status(over.init),
      ephemeralContainerStatuses: status(over.ephemeral),
    },
  };
}

describe('running pods', () => {
  test('the digest the kubelet reports wins over the spec; the spec reference otherwise', () => {
    const rows: Array<[string | undefined, string | undefined, string | undefined]> = [
      ['nginx:1.25', `docker.io/library/nginx@${D1}`, `docker.io/library/nginx@${D1}`],
      ['nginx:1.25', `docker-pullable://nginx@${D1}`, `docker.io/library/nginx@${D1}`],
      // An image ID without a repository (a locally built image): the admitted reference.
      ['nginx:1.25', D2, 'docker.io/library/nginx:1.25'],
      ['nginx:1.25', undefined, 'docker.io/library/nginx:1.25'],
      ['nginx:1.25', '', 'docker.io/library/nginx:1.25'],
      // The tag next to a digest is not part of the key (as admission keys it).
      [`nginx:1.25@${D1}`, undefined, `docker.io/library/nginx@${D1}`],
      ['Not/A Valid Ref', undefined, undefined],
      [undefined, undefined, undefined],
    ];
    for (const [spec, id, expected] of rows) assert.equal(runningReference(spec, id), expected, `${spec} / ${id}`);
  });

  test('owner chain: ReplicaSet -> Deployment by the pod-template-hash suffix, others as they are, no owner -> Pod', () => {
    const rows: Array<[PodObject, { kind: string; name: string; apiVersion: string }]> = [
      [pod({ owner: { kind: 'ReplicaSet', name: 'web-7d4b9c8f5' }, hash: '7d4b9c8f5' }), { kind: 'Deployment', name: 'web', apiVersion: 'apps/v1' }],
      // No hash label, or a name that does not end with it: the ReplicaSet itself.
      [pod({ owner: { kind: 'ReplicaSet', name: 'web-7d4b9c8f5' } }), { kind: 'ReplicaSet', name: 'web-7d4b9c8f5', apiVersion: 'apps/v1' }],
      [pod({ owner: { kind: 'ReplicaSet', name: 'standalone' }, hash: '7d4b9c8f5' }), { kind: 'ReplicaSet', name: 'standalone', apiVersion: 'apps/v1' }],
      [pod({ owner: { kind: 'StatefulSet', name: 'db' } }), { kind: 'StatefulSet', name: 'db', apiVersion: 'apps/v1' }],
      [pod({ owner: { kind: 'DaemonSet', name: 'agent' } }), { kind: 'DaemonSet', name: 'agent', apiVersion: 'apps/v1' }],
      [pod({ owner: { kind: 'Job', name: 'nightly-29000000', apiVersion: 'batch/v1' } }), { kind: 'Job', name: 'nightly-29000000', apiVersion: 'batch/v1' }],
      [pod({ name: 'lonely' }), { kind: 'Pod', name: 'lonely', apiVersion: 'v1' }],
    ];
    for (const [p, expected] of rows) assert.deepEqual(workloadOf(p), { ...expected, namespace: 'shop' });
    // A non-controller owner is not the workload.
    const notController = pod({ name: 'p' });
    const withRef: PodObject = { ...notController, metadata: { ...notController.metadata, ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: 'n', controller: false }] } };
    assert.equal(workloadOf(withRef)?.kind, 'Pod');
  });

  test('containers, init and ephemeral containers, deduplicated and sorted; finished pods run nothing', () => {
    const p = runningPod(
      pod({
        containers: [
          { name: 'a', image: 'nginx:1.25', imageID: `docker.io/library/nginx@${D1}` },
          { name: 'b', image: 'nginx:1.25', imageID: `docker.io/library/nginx@${D1}` },
        ],
        init: [{ name: 'i', image: 'busybox:1' }],
        ephemeral: [{ name: 'e', image: 'alpine:3', imageID: `docker.io/library/alpine@${D2}` }],
      }),
    );
    assert.deepEqual(p?.images, [`docker.io/library/alpine@${D2}`, 'docker.io/library/busybox:1', `docker.io/library/nginx@${D1}`]);
    assert.equal(runningPod(pod({ phase: 'Succeeded' })), undefined);
    assert.equal(runningPod(pod({ phase: 'Failed' })), undefined);
  });
});

const running = (p: PodObject): NonNullable<ReturnType<typeof runningPod>> => {
  const r = runningPod(p);
  assert.ok(r);
  return r;
};

describe('recheck state', () => {
  test('images are reference-counted by pods; an image nobody runs is forgotten; exempt namespaces are skipped', () => {
    const s = createRecheckState({ timing: TIMING, exemptNamespaces: ['kube-system'] });
    const a = running(pod({ name: 'a', containers: [{ name: 'c', image: 'nginx:1' }] }));
    const b = running(pod({ name: 'b', containers: [{ name: 'c', image: 'nginx:1' }, { name: 'd', image: 'redis:7' }] }));
    s.upsertPod('shop/a', a);
    s.upsertPod('shop/b', b);
    s.upsertPod('kube-system/dns', running(pod({ namespace: 'kube-system', name: 'dns', containers: [{ name: 'c', image: 'coredns:1' }] })));
    assert.equal(s.podCount, 2);
    assert.equal(s.imageCount, 2);
    s.deletePod('shop/b');
    assert.equal(s.imageCount, 1);
    // An update that changes the image moves the pod.
    s.upsertPod('shop/a', running(pod({ name: 'a', containers: [{ name: 'c', image: 'nginx:2' }] })));
    assert.deepEqual(s.due(0, 10), ['docker.io/library/nginx:2']);
    s.deletePod('shop/a');
    assert.equal(s.imageCount, 0);
    assert.equal(s.podCount, 0);
  });

  test('due-ness: new images at once; after a fresh verdict, a second past its TTL; after a cached one, at its TTL; never past the interval; errors retried', () => {
    assert.equal(nextDue(TIMING, verdict(pass), false, 1000), 1000 + 600_000 + 1000);
    assert.equal(nextDue(TIMING, verdict(pass), true, 1000), 1000 + 600_000);
    assert.equal(nextDue(TIMING, verdict(fail), false, 0), 301_000);
    assert.equal(nextDue(TIMING, { kind: 'timeout', waitedMs: 1 }, false, 0), 60_000);
    assert.equal(nextDue(TIMING, { kind: 'deferred', maxNewScans: 1 }, false, 0), 60_000);
    assert.equal(nextDue({ ...TIMING, intervalMs: 120_000 }, verdict(pass), false, 0), 120_000);
    // A TTL of 0 (verdicts not cached): every interval.
    assert.equal(nextDue({ ...TIMING, passTtlMs: 0 }, verdict(pass), false, 0), 3_600_000);
    assert.equal(nextDue({ ...TIMING, intervalMs: 10_000 }, { kind: 'error', code: 'X', message: 'm' }, false, 0), 10_000);

    const s = createRecheckState({ timing: TIMING, exemptNamespaces: [] });
    s.upsertPod('shop/a', running(pod({ name: 'a', containers: [{ name: 'c', image: 'nginx:1' }] })));
    const image = 'docker.io/library/nginx:1';
    assert.deepEqual(s.due(0, 5), [image]);
    s.begin(image);
    assert.deepEqual(s.due(0, 5), [], 'an image being checked is not due');
    assert.equal(s.nextDueAt(), undefined);
    s.complete(image, verdict(pass), false, 5000);
    assert.deepEqual(s.due(5000 + 600_999, 5), []);
    assert.deepEqual(s.due(5000 + 601_000, 5), [image]);
  });

  test('pass -> fail is a transition naming every workload that runs the image; unknown -> fail, fail -> fail and errors are not', () => {
    const s = createRecheckState({ timing: TIMING, exemptNamespaces: [] });
    const image = `docker.io/library/struts@${D1}`;
    const c = [{ name: 'c', image: 'struts:2', imageID: image }];
    s.upsertPod('shop/web-1', running(pod({ name: 'web-1', owner: { kind: 'ReplicaSet', name: 'web-abc' }, hash: 'abc', containers: c })));
    s.upsertPod('shop/web-2', running(pod({ name: 'web-2', owner: { kind: 'ReplicaSet', name: 'web-abc' }, hash: 'abc', containers: c })));
    s.upsertPod('ops/db-0', running(pod({ namespace: 'ops', name: 'db-0', owner: { kind: 'StatefulSet', name: 'db' }, containers: c })));
    s.upsertPod('ops/bare', running(pod({ namespace: 'ops', name: 'bare', containers: c })));
    assert.equal(s.complete(image, verdict(fail), false, 0), undefined, 'unknown -> fail');
    assert.equal(s.verdictOf(image), 'fail');
    assert.equal(s.complete(image, verdict(pass), false, 1), undefined);
    assert.equal(s.complete(image, { kind: 'error', code: 'SCANGATE_ERR_SCANNER_UNAVAILABLE', message: 'down' }, false, 2), undefined);
    assert.equal(s.verdictOf(image), 'pass', 'an error keeps the last verdict');
    const t = s.complete(image, verdict(fail), false, 3);
    assert.deepEqual(t, {
      image,
      reasons: fail.status === 'fail' ? fail.reasons : [],
      omittedReasons: 0,
      cause: 'policy',
      workloads: [
        { namespace: 'ops', apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'db' },
        { namespace: 'ops', apiVersion: 'v1', kind: 'Pod', name: 'bare' },
        { namespace: 'shop', apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' },
      ],
    });
    assert.equal(s.complete(image, verdict(fail), false, 4), undefined, 'fail -> fail');
    assert.deepEqual(
      [...s.countsByNamespace()],
      [
        ['shop', { pass: 0, fail: 1, unknown: 0 }],
        ['ops', { pass: 0, fail: 1, unknown: 0 }],
      ],
    );
    // The result of a check of an image that stopped running meanwhile is dropped.
    assert.equal(s.complete('docker.io/library/gone:1', verdict(fail), false, 5), undefined);
  });

  test('the gauge keeps the namespaces running the most images and sums the rest', () => {
    const counts = new Map([
      ['a', { pass: 5, fail: 0, unknown: 0 }],
      ['b', { pass: 1, fail: 1, unknown: 0 }],
      ['c', { pass: 0, fail: 0, unknown: 1 }],
      ['d', { pass: 1, fail: 0, unknown: 0 }],
    ]);
    assert.deepEqual(
      [...boundedCounts(counts, 2)],
      [
        ['a', { pass: 5, fail: 0, unknown: 0 }],
        ['b', { pass: 1, fail: 1, unknown: 0 }],
        ['_other', { pass: 1, fail: 0, unknown: 1 }],
      ],
    );
    assert.equal(boundedCounts(counts, 4), counts);
  });

  test('memory: 10 000 pods running 2 000 distinct images stay under 64 MB of loop state', () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    gc();
    const before = process.memoryUsage().heapUsed;
    const s = createRecheckState({ timing: TIMING, exemptNamespaces: [] });
    for (let i = 0; i < 10_000; i++) {
      const ns = `team-${i % 200}`;
      const images = [0, 1, 2].map((k) => `registry.example.com/platform/service-${(i * 7 + k) % 2000}@sha256:${((i * 7 + k) % 2000).toString(16).padStart(64, '0')}`);
      s.upsertPod(`${ns}/pod-${i}`, {
        namespace: ns,
        name: `pod-${i}`,
        workload: { apiVersion: 'apps/v1', kind: 'Deployment', namespace: ns, name: `deployment-${i % 1000}` },
        images,
      });
    }
    gc();
    const bytes = process.memoryUsage().heapUsed - before;
    assert.equal(s.podCount, 10_000);
    assert.equal(s.imageCount, 2000);
    console.log(`recheck state: ${s.podCount} pods, ${s.imageCount} images, ${(bytes / 1048576).toFixed(1)} MiB of heap`);
    assert.ok(bytes < 64 * 1024 * 1024, `${bytes} bytes`);
  });
});

describe('recheck loop', () => {
  const logger = createLogger({ level: 'silent' });

  function setup(opts: { rate: number; maxInFlight: number; images: number }) {
    const clock = fakeClock();
    const state = createRecheckState({ timing: TIMING, exemptNamespaces: [] });
    for (let i = 0; i < opts.images; i++) {
      state.upsertPod(`shop/p${i}`, running(pod({ name: `p${i}`, containers: [{ name: 'c', image: `app${i}:1` }] })));
    }
    const started: Array<{ image: string; at: number; resolve: (o: ScanOutcome) => void }> = [];
    const failed: string[] = [];
    const loop = createRecheckLoop({
      state,
      check: (image) =>
        new Promise((resolve) => {
          started.push({ image, at: clock.now(), resolve: (outcome) => { resolve({ outcome, cached: false }); } });
        }),
      ratePerSecond: opts.rate,
      maxInFlight: opts.maxInFlight,
      onFailed: (t) => failed.push(t.image),
      clock,
      logger,
    });
    return { clock, state, loop, started, failed };
  }

  test('checks start at RECHECK_RATE per second, never before', async () => {
    const { clock, loop, started } = setup({ rate: 2, maxInFlight: 100, images: 10 });
    loop.start();
    // Burst of max(1, rate) = 2 at once, then one every 500 ms.
    assert.equal(started.length, 2);
    for (const s of started) s.resolve(verdict(pass));
    await flush();
    clock.advance(499);
    assert.equal(started.length, 2);
    clock.advance(1);
    assert.equal(started.length, 3);
    clock.advance(4000);
    assert.equal(started.length, 10);
    assert.deepEqual(started.map((s) => s.at), [0, 0, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000]);
    // Nothing is due again before the pass TTL.
    for (const s of started) s.resolve(verdict(pass));
    await flush();
    // The first two were answered at 0: due at 601 000; the others at 4 500: due at 605 500.
    clock.advance(600_999 - 4500);
    assert.equal(started.length, 10);
    clock.advance(1);
    assert.equal(started.length, 12, 'due again a second past the TTL');
    clock.advance(4499);
    assert.equal(started.length, 12);
    clock.advance(1);
    assert.equal(started.length, 14, 'the bucket refilled meanwhile: a burst of 2');
    clock.advance(500);
    assert.equal(started.length, 15, 'then at the rate');
    loop.stop();
  });

  test('the in-flight bound holds however many tokens there are; a completion starts the next', async () => {
    const { clock, loop, started } = setup({ rate: 1000, maxInFlight: 3, images: 10 });
    loop.start();
    assert.equal(started.length, 3);
    clock.advance(10_000);
    assert.equal(started.length, 3);
    started[0]?.resolve(verdict(pass));
    await flush();
    assert.equal(started.length, 4);
    assert.equal(loop.inFlight, 3);
    loop.stop();
  });

  test('stop() starts nothing more (the lease was lost); poke() plans for new images at once', async () => {
    const { clock, loop, started, state } = setup({ rate: 1, maxInFlight: 10, images: 1 });
    loop.start();
    assert.equal(started.length, 1);
    started[0]?.resolve(verdict(pass));
    await flush();
    state.upsertPod('shop/new', running(pod({ name: 'new', containers: [{ name: 'c', image: 'new:1' }] })));
    clock.advance(999);
    loop.poke();
    clock.advance(0);
    assert.equal(started.length, 1, 'no token yet');
    clock.advance(1);
    assert.equal(started.length, 2);
    loop.stop();
    state.upsertPod('shop/other', running(pod({ name: 'other', containers: [{ name: 'c', image: 'other:1' }] })));
    loop.poke();
    clock.advance(3_600_000);
    assert.equal(started.length, 2);
  });

  test('a pass -> fail answer reaches onFailed', async () => {
    const { clock, loop, started, failed } = setup({ rate: 10, maxInFlight: 10, images: 1 });
    loop.start();
    started[0]?.resolve(verdict(pass));
    await flush();
    clock.advance(601_000);
    assert.equal(started.length, 2);
    started[1]?.resolve(verdict(fail));
    await flush();
    assert.deepEqual(failed, ['docker.io/library/app0:1']);
    loop.stop();
  });
});

describe('running image events and settings', () => {
  test('one RunningImageFailed event per workload: image, findings, what will be refused; hostile text escaped and cut; bounded in number', () => {
    const failure = {
      image: `docker.io/library/struts@${D1}`,
      reasons: [{ gate: 'vulnerabilities', trigger: 'package', output: `CVE-2017-5638 \u001b[31mred\u001b[0m ${'x'.repeat(3000)}` }],
      omittedReasons: 4,
      cause: 'policy' as const,
      workloads: [
        { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'shop', name: 'web' },
        { apiVersion: 'v1', kind: 'Pod', namespace: 'ops', name: 'debug' },
      ],
    };
    const events = runningImageEvents(failure, 10);
    assert.equal(events.length, 2);
    const [first] = events;
    assert.ok(first);
    assert.equal(first.reason, 'RunningImageFailed');
    assert.equal(first.action, 'Verify');
    assert.equal(first.namespace, 'shop');
    assert.deepEqual(first.regarding, { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'shop', name: 'web' });
    // The findings, not the scanner's text (THREAT-MODEL I4): the escape sequence and the rest are not shown.
    assert.match(first.note, new RegExp(`^Running image docker\\.io/library/struts@${D1} now fails policy: vulnerabilities/package: CVE-2017-5638; \\+4 more\\.`));
    assert.ok(!first.note.includes('31mred'));
    assert.match(first.note, /\+4 more\. It keeps running, but this Deployment's next rollout, scale-up or rescheduling will be refused\.$/);
    assert.ok(!first.note.includes('\u001b'));
    assert.ok(Buffer.byteLength(first.note) <= NOTE_MAX_BYTES);
    assert.equal(runningImageEvents({ ...failure, workloads: Array.from({ length: 500 }, (_, i) => ({ apiVersion: 'v1', kind: 'Pod', namespace: 'ns', name: `p${i}` })) }, 100).length, 100);
    assert.match(runningImageEvents({ ...failure, cause: 'analysis_failed', reasons: [] }, 1)[0]?.note ?? '', /now fails policy: the scanner could not analyse it\./);
  });

  test('RECHECK_* settings: off by default; on needs POD_NAMESPACE (the Lease\'s); bounds checked', () => {
    const base = { INSECURE_HTTP: 'true' };
    const off = parseConfig(base);
    assert.deepEqual(off.recheck, {
      enabled: false,
      intervalMs: 3_600_000,
      ratePerSecond: 1,
      maxInFlight: 4,
      metricNamespaces: 200,
      leaseName: 'scangate-recheck',
      leaseNamespace: '',
      leaseDurationMs: 15_000,
    });
    assert.throws(() => parseConfig({ ...base, RECHECK_ENABLED: 'true' }), /RECHECK_ENABLED=true needs POD_NAMESPACE/);
    const on = parseConfig({ ...base, RECHECK_ENABLED: 'true', POD_NAMESPACE: 'scangate', RECHECK_RATE: '0.5', RECHECK_INTERVAL_S: '600' });
    assert.equal(on.recheck.leaseNamespace, 'scangate');
    assert.equal(on.recheck.ratePerSecond, 0.5);
    assert.equal(on.recheck.intervalMs, 600_000);
    assert.throws(() => parseConfig({ ...base, RECHECK_INTERVAL_S: '5', RECHECK_RATE: '0', LEASE_NAME: 'Bad_Name', LEASE_DURATION_S: '1' }), (error: Error) => {
      for (const key of ['RECHECK_INTERVAL_S', 'RECHECK_RATE', 'LEASE_NAME', 'LEASE_DURATION_S']) assert.match(error.message, new RegExp(key));
      return true;
    });
  });
});
