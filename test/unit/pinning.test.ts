import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { decodeAdmissionReview, encodeAdmissionResponse, imagesToJudge, type AdmissionRequest } from '../../src/admission/admission-review.js';
import { createAuditAnnotator } from '../../src/admission/audit-annotations.js';
import { pinPatch, pinTargets as targetsOf, type PinTarget } from '../../src/admission/pin-targets.js';

/** What /mutate pins: the images the one walker finds to judge (admission-review.ts), by JSON Pointer. */
function pinTargets(request: AdmissionRequest): PinTarget[] {
  const r = imagesToJudge(request);
  return r === undefined ? [] : targetsOf(r);
}
import { createVerdictCache } from '../../src/cache/verdict-cache.js';
import { createPinner, verdictPinDigest } from '../../src/engine/pinner.js';
import { createScanCoordinator, type Scanner } from '../../src/engine/scan-coordinator.js';
import { createMetrics } from '../../src/observability/metrics.js';
import type { ScanVerdict } from '../../src/policy/types.js';
import { parseImageReference } from '../../src/reference/parse-reference.js';
import { parseImageList, pinDigestOf as wirePinDigest } from '../../src/scanner/anchore-wire.js';

const D1 = `sha256:${'1'.repeat(64)}`;
const LIST = `sha256:${'a'.repeat(64)}`;

function review(resource: { group: string; resource: string }, object: unknown, operation = 'CREATE', oldObject?: unknown): unknown {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'u1',
      operation,
      namespace: 'default',
      kind: { group: resource.group, version: 'v1', kind: 'X' },
      resource: { ...resource, version: 'v1' },
      object,
      ...(oldObject !== undefined ? { oldObject } : {}),
      userInfo: { username: 'alice', groups: ['oncall', 7, 'system:authenticated'] },
    },
  };
}

const podSpec = (images: string[], init: string[] = []): object => ({
  containers: images.map((image, i) => ({ name: `c${i}`, image })),
  ...(init.length > 0 ? { initContainers: init.map((image, i) => ({ name: `i${i}`, image })) } : {}),
});

test('userInfo is decoded (username, string groups only)', () => {
  const r = decodeAdmissionReview(review({ group: '', resource: 'pods' }, { spec: podSpec(['a:1']) }));
  assert.deepEqual(r.userInfo, { username: 'alice', groups: ['oncall', 'system:authenticated'] });
});

test('pin targets: pods and every workload kind, by JSON Pointer, image volumes too; UPDATE only pins changed images', () => {
  const pod = decodeAdmissionReview(review({ group: '', resource: 'pods' }, { spec: podSpec(['a:1', 'b:2'], ['init:1']) }));
  assert.deepEqual(pinTargets(pod), [
    { path: '/spec/initContainers/0/image', image: 'init:1' },
    { path: '/spec/containers/0/image', image: 'a:1' },
    { path: '/spec/containers/1/image', image: 'b:2' },
  ]);
  const template = { spec: { template: { spec: podSpec(['a:1']) } } };
  for (const [group, resource] of [['apps', 'deployments'], ['apps', 'statefulsets'], ['apps', 'daemonsets'], ['apps', 'replicasets'], ['batch', 'jobs'], ['', 'replicationcontrollers']] as const) {
    const r = decodeAdmissionReview(review({ group, resource }, template));
    assert.deepEqual(pinTargets(r), [{ path: '/spec/template/spec/containers/0/image', image: 'a:1' }], resource);
  }
  const cron = decodeAdmissionReview(review({ group: 'batch', resource: 'cronjobs' }, { spec: { jobTemplate: { spec: { template: { spec: podSpec(['a:1']) } } } } }));
  assert.deepEqual(pinTargets(cron), [{ path: '/spec/jobTemplate/spec/template/spec/containers/0/image', image: 'a:1' }]);

  const before = { spec: { template: { spec: podSpec(['a:1', 'b:2']) } } };
  const after = { spec: { template: { spec: podSpec(['a:1', 'b:3']) } } };
  const update = decodeAdmissionReview(review({ group: 'apps', resource: 'deployments' }, after, 'UPDATE', before));
  assert.deepEqual(pinTargets(update), [{ path: '/spec/template/spec/containers/1/image', image: 'b:3' }]);
  // A pod's UPDATE pins the image it changes (`kubectl set image pod`), by the same rule as validation.
  assert.deepEqual(pinTargets(decodeAdmissionReview(review({ group: '', resource: 'pods' }, { spec: podSpec(['a:1', 'b:1']) }, 'UPDATE', { spec: podSpec(['a:0', 'b:1']) }))), [
    { path: '/spec/containers/0/image', image: 'a:1' },
  ]);
  // An image volume is pulled like a container image: pinned like one.
  const withVolume = { spec: { ...podSpec(['a:1']), volumes: [{ name: 'cfg', configMap: {} }, { name: 'data', image: { reference: 'data:1' } }] } };
  assert.deepEqual(pinTargets(decodeAdmissionReview(review({ group: '', resource: 'pods' }, withVolume))), [
    { path: '/spec/containers/0/image', image: 'a:1' },
    { path: '/spec/volumes/1/image/reference', image: 'data:1' },
  ]);
  assert.deepEqual(pinTargets(decodeAdmissionReview(review({ group: '', resource: 'configmaps' }, { data: {} }))), []);
  // Hostile shapes are refused by the walker (the core answers /mutate unchanged; validation refuses them).
  assert.throws(() => pinTargets(decodeAdmissionReview(review({ group: '', resource: 'pods' }, { spec: { containers: [null, { image: 5 }, 'x'] } }))), /must be an object/);
});

test('the response carries a base64 JSONPatch and patchType only when allowed with a patch', () => {
  const patch = pinPatch([{ path: '/spec/containers/0/image', pinned: `a:1@${D1}` }]);
  const pinned = createAuditAnnotator().pins([{ image: 'a:1', digest: D1 }]);
  assert.ok(pinned !== undefined);
  const res = JSON.parse(encodeAdmissionResponse({ apiVersion: 'admission.k8s.io/v1', uid: 'u1' }, { allowed: true, patch, auditAnnotations: pinned })) as {
    response: { patchType?: string; patch?: string; auditAnnotations?: Record<string, string> };
  };
  assert.equal(res.response.patchType, 'JSONPatch');
  assert.deepEqual(JSON.parse(Buffer.from(res.response.patch ?? '', 'base64').toString()), [
    { op: 'replace', path: '/spec/containers/0/image', value: `a:1@${D1}` },
  ]);
  assert.deepEqual(res.response.auditAnnotations, { pinned: `a:1=pinned@${D1}` });
  assert.equal(createAuditAnnotator().pins([]), undefined);
  const none = JSON.parse(encodeAdmissionResponse({ apiVersion: 'admission.k8s.io/v1', uid: 'u1' }, { allowed: true, patch: [] })) as { response: object };
  assert.ok(!('patchType' in none.response));
});

test('multi-arch: the scanner record names the manifest list (parentDigest): pin to it, not to the platform digest', () => {
  const [multi, single, bogus] = parseImageList([
    { imageDigest: D1, parentDigest: LIST, analysis_status: 'analyzed', image_detail: [] },
    { imageDigest: D1, parentDigest: D1, analysis_status: 'analyzed', image_detail: [] },
    { imageDigest: D1, parentDigest: 'sha256:zz; rm -rf', analysis_status: 'analyzed', image_detail: [] },
  ]);
  assert.ok(multi && single && bogus);
  assert.equal(wirePinDigest(multi), LIST);
  assert.equal(wirePinDigest(single), undefined);
  assert.equal(wirePinDigest(bogus), undefined);
  assert.equal(verdictPinDigest({ status: 'pass', digest: D1, pinDigest: LIST, warnings: 0 }), LIST);
  assert.equal(verdictPinDigest({ status: 'pass', digest: D1, warnings: 0 }), D1);
});

function setup(verdicts: Record<string, ScanVerdict | 'never'>) {
  const calls: string[] = [];
  const scanner: Scanner = {
    scan(reference) {
      calls.push(reference.canonical);
      const v = verdicts[reference.canonical];
      if (v === undefined) return Promise.reject(new Error(`unexpected scan of ${reference.canonical}`));
      if (v === 'never') return new Promise(() => undefined);
      return Promise.resolve(v);
    },
  };
  let t = 1_000;
  const cache = createVerdictCache({ maxEntries: 100, passTtlMs: 10_000, failTtlMs: 1_000, now: () => t });
  const coordinator = createScanCoordinator({
    cache,
    scanner,
    maxScanDurationMs: 60_000,
    maxConcurrentScans: 10,
    metrics: createMetrics(),
    logger: pino({ level: 'silent' }),
    now: () => t,
  });
  const pinner = createPinner({ rules: { denyLatestTag: true, registryAllowlist: [] }, exemptNamespaces: ['kube-system'], coordinator, now: () => t });
  return { calls, coordinator, pinner, advance: (ms: number) => (t += ms) };
}

test('pinner: pins verdicts (manifest list first), leaves the rest as written, and seeds the pinned reference (no second scan)', async () => {
  const { calls, coordinator, pinner } = setup({
    'docker.io/library/nginx:1.25.3': { status: 'pass', digest: D1, pinDigest: LIST, warnings: 0 },
    'docker.io/library/struts:2.3.12': { status: 'fail', digest: D1, reasons: [], cause: 'policy' },
    'docker.io/library/slow:1': 'never',
  });
  const result = await pinner.pin({
    namespace: 'default',
    budgetMs: 50,
    targets: [
      { path: '/spec/containers/0/image', image: 'nginx:1.25.3' },
      { path: '/spec/containers/1/image', image: 'nginx:1.25.3' },
      { path: '/spec/containers/2/image', image: 'struts:2.3.12' },
      { path: '/spec/containers/3/image', image: 'slow:1' },
      { path: '/spec/containers/4/image', image: 'nginx' },
      { path: '/spec/containers/5/image', image: `redis:7@${D1}` },
      { path: '/spec/containers/6/image', image: 'Bad:1' },
    ],
  });
  assert.deepEqual(
    result.pins.map((p) => [p.path, p.pinned]),
    [
      ['/spec/containers/0/image', `nginx:1.25.3@${LIST}`],
      ['/spec/containers/1/image', `nginx:1.25.3@${LIST}`],
      // A failing image is pinned too: the validating webhook denies it, or break-glass admits exactly what was judged.
      ['/spec/containers/2/image', `struts:2.3.12@${D1}`],
    ],
  );
  assert.deepEqual(
    [...result.unpinned].sort((a, b) => a.image.localeCompare(b.image)),
    [
      { image: 'Bad:1', reason: 'local_rule' },
      { image: 'nginx', reason: 'local_rule' },
      { image: `redis:7@${D1}`, reason: 'already_pinned' },
      { image: 'slow:1', reason: 'no_verdict' },
    ],
  );
  // One scan per distinct image, none for what local rules refuse or what is already pinned.
  assert.deepEqual(calls.sort(), ['docker.io/library/nginx:1.25.3', 'docker.io/library/slow:1', 'docker.io/library/struts:2.3.12']);
  // The validating webhook looks the pinned form up: a cache hit, not a second scan.
  const pinned = parseImageReference(`nginx:1.25.3@${LIST}`);
  assert.ok(pinned.valid);
  const lookup = await coordinator.lookup(pinned.reference, 10);
  assert.equal(lookup.source, 'hit');
  assert.equal(calls.length, 3);
});

test('pinner: the pinned reference lives no longer than the verdict it copies (never up to twice the pass TTL)', async () => {
  const { calls, coordinator, pinner, advance } = setup({ 'docker.io/library/nginx:1.25.3': { status: 'pass', digest: D1, pinDigest: LIST, warnings: 0 } });
  const ref = (text: string) => {
    const r = parseImageReference(text);
    assert.ok(r.valid);
    return r.reference;
  };
  await coordinator.lookup(ref('nginx:1.25.3'), 50);
  advance(9_000); // the tag's verdict has 1 s of its 10 s pass TTL left
  const result = await pinner.pin({ namespace: 'default', budgetMs: 50, targets: [{ path: '/spec/containers/0/image', image: 'nginx:1.25.3' }] });
  assert.equal(result.pins.length, 1);
  const pinned = ref(`nginx:1.25.3@${LIST}`);
  assert.equal((await coordinator.lookup(pinned, 10)).source, 'hit');
  advance(1_500);
  assert.notEqual((await coordinator.lookup(pinned, 0)).source, 'hit', 'expired with the verdict it copied');
  assert.equal(calls.length, 2);
});

test('pinner: exempt namespaces are left alone', async () => {
  const { calls, pinner } = setup({});
  const r = await pinner.pin({ namespace: 'kube-system', budgetMs: 50, targets: [{ path: '/spec/containers/0/image', image: 'a:1' }] });
  assert.equal(r.exempt, true);
  assert.deepEqual(r.pins, []);
  assert.deepEqual(calls, []);
});
