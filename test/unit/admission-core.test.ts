/**
 * The admission core (admission/core.ts) without HTTP: the trust model's invariants (docs/THREAT-MODEL.md)
 * decided in one place. The scanner is a fake; everything else is the composition the server runs.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { decodeAdmissionReview, type AdmissionAnswer, type AdmissionRequest } from '../../src/admission/admission-review.js';
import type { DecisionRecord } from '../../src/admission/decision-record.js';
import { composeScangate, type Scangate } from '../../src/composition.js';
import { parseConfig } from '../../src/config.js';
import type { Scanner } from '../../src/engine/scan-coordinator.js';
import { ScanAbortedError } from '../../src/errors.js';
import type { ScanVerdict } from '../../src/policy/types.js';

const STRUTS = 'kaizheh/apache-struts2-cve-2017-5638:2.3.12';
const CLEAN = 'nginx:1.25.3';
const D = (c: string): string => `sha256:${c.repeat(64)}`;
const ALICE = { username: 'alice', groups: ['system:authenticated'] };
const MALLORY = { username: 'mallory', groups: ['system:authenticated', 'shop-editors'] };
const RS_CONTROLLER = { username: 'system:serviceaccount:kube-system:replicaset-controller', groups: ['system:serviceaccounts'] };
const DEPLOY_CONTROLLER = { username: 'system:serviceaccount:kube-system:deployment-controller', groups: ['system:serviceaccounts'] };

interface FakeScanner extends Scanner {
  scans: string[];
  /** Images whose scan never ends (until aborted). */
  readonly slow: Set<string>;
}

function fakeScanner(): FakeScanner {
  const scans: string[] = [];
  const slow = new Set<string>();
  return {
    scans,
    slow,
    scan(reference, { signal }) {
      scans.push(reference.canonical);
      if ([...slow].some((s) => reference.canonical.includes(s))) {
        return new Promise<ScanVerdict>((_, reject) => {
          signal.addEventListener('abort', () => {
            reject(new ScanAbortedError('aborted'));
          });
        });
      }
      const verdict: ScanVerdict = reference.canonical.includes('struts')
        ? { status: 'fail', digest: D('f'), cause: 'policy', reasons: [{ gate: 'vulnerabilities', trigger: 'package', output: 'CRITICAL CVE-2017-5638' }] }
        : { status: 'pass', digest: D('a'), warnings: 0 };
      return Promise.resolve(verdict);
    },
  };
}

function setup(env: Record<string, string> = {}): { sg: Scangate; scanner: FakeScanner; records: DecisionRecord[]; wall: { t: number } } {
  const scanner = fakeScanner();
  const records: DecisionRecord[] = [];
  const wall = { t: 1_800_000_000_000 };
  const config = parseConfig({ TLS_CERT_FILE: '/c', TLS_KEY_FILE: '/k', BREAK_GLASS_USERS: 'alice', DEFAULT_TIMEOUT_MS: '2000', ...env });
  const sg = composeScangate(config, {
    logger: pino({ level: 'silent' }),
    scanner,
    wallClock: () => wall.t,
    observers: [{ decided: (r) => records.push(r), mutated: () => undefined, unchanged: () => undefined }],
  });
  return { sg, scanner, records, wall };
}

type Obj = Record<string, unknown>;

function template(images: string[], annotations?: Record<string, string>): Obj {
  return {
    metadata: { labels: { app: 'web' }, ...(annotations !== undefined ? { annotations } : {}) },
    spec: { containers: images.map((image, i) => ({ name: `c${i}`, image })) },
  };
}

function deployment(images: string[], annotations?: Record<string, string>, own?: Record<string, string>): Obj {
  return { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'shop', ...(own !== undefined ? { annotations: own } : {}) }, spec: { replicas: 1, template: template(images, annotations) } };
}

function replicaSet(from: Obj): Obj {
  const spec = from['spec'] as Obj;
  return { apiVersion: 'apps/v1', kind: 'ReplicaSet', metadata: { name: 'web-5d8f7', namespace: 'shop' }, spec: { replicas: 1, template: spec['template'] } };
}

/** The pod a controller makes from a template: its metadata and spec. */
function podFrom(tmpl: Obj, name = 'web-5d8f7-'): Obj {
  const meta = tmpl['metadata'] as Obj;
  return { apiVersion: 'v1', kind: 'Pod', metadata: { ...meta, generateName: name, namespace: 'shop' }, spec: tmpl['spec'] };
}

function templateOf(workload: Obj): Obj {
  return (workload['spec'] as Obj)['template'] as Obj;
}

const RESOURCES: Record<string, { group: string; resource: string }> = {
  Pod: { group: '', resource: 'pods' },
  Deployment: { group: 'apps', resource: 'deployments' },
  ReplicaSet: { group: 'apps', resource: 'replicasets' },
};

let uid = 0;
function request(object: Obj, user: { username: string; groups: string[] }, opts: { operation?: string; oldObject?: Obj; namespace?: string; dryRun?: boolean } = {}): AdmissionRequest {
  const kind = String(object['kind']);
  const r = RESOURCES[kind] ?? { group: '', resource: 'pods' };
  return decodeAdmissionReview({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: `core-${++uid}`,
      kind: { group: r.group, version: 'v1', kind },
      resource: { ...r, version: 'v1' },
      namespace: opts.namespace ?? 'shop',
      operation: opts.operation ?? 'CREATE',
      userInfo: user,
      object,
      oldObject: opts.oldObject ?? null,
      dryRun: opts.dryRun ?? false,
    },
  });
}

/** Applies an answer's JSONPatch (the operations scangate writes: replace, add) to a copy of `object`. */
function applyPatch(object: Obj, answer: AdmissionAnswer): Obj {
  const copy = structuredClone(object);
  for (const op of answer.patch ?? []) {
    const keys = op.path.split('/').slice(1).map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'));
    const last = keys.pop() ?? '';
    let node: unknown = copy;
    for (const k of keys) node = (node as Obj)[k];
    (node as Obj)[last] = op.value;
  }
  return copy;
}

/** What the cluster does with an object: the mutating entry, then the validating one. */
async function admit(sg: Scangate, object: Obj, user: { username: string; groups: string[] }, opts: Parameters<typeof request>[2] = {}): Promise<{ answer: AdmissionAnswer; stored: Obj }> {
  const mutated = await sg.core.mutate(request(object, user, opts), {});
  const stored = applyPatch(object, mutated);
  const answer = await sg.core.validate(request(stored, user, opts), { pathMode: 'enforce' });
  return { answer, stored };
}

describe('I1: a failing image runs only with a pass verdict or a named person\'s break-glass', () => {
  test('an allowed person\'s Deployment: the proof goes into the template, its controllers\' pods come in under the person\'s name', async () => {
    const { sg, records } = setup();
    const dep = await admit(sg, deployment([STRUTS], { 'scangate.io/break-glass': 'INC-42 checkout down' }), ALICE);
    assert.equal(dep.answer.allowed, true, dep.answer.message);
    const proof = ((templateOf(dep.stored)['metadata'] as Obj)['annotations'] as Record<string, string>)['scangate.io/break-glass-proof'];
    assert.ok(proof !== undefined && proof.startsWith('v1.'), 'the mutating entry wrote a proof');
    const rs = await admit(sg, replicaSet(dep.stored), DEPLOY_CONTROLLER);
    assert.equal(rs.answer.allowed, true, rs.answer.message);
    const pod = await admit(sg, podFrom(templateOf(rs.stored)), RS_CONTROLLER);
    assert.equal(pod.answer.allowed, true, pod.answer.message);
    const last = records.at(-1);
    assert.equal(last?.result, 'glass');
    assert.equal(last?.breakGlass?.user, 'alice', 'the audit names the person, not the controller');
    assert.equal(last?.breakGlassVia, 'proof');
  });

  test('a tenant\'s annotation (template or workload metadata, CREATE or metadata-only UPDATE) earns no proof: the pods are refused', async () => {
    const { sg } = setup();
    // A template whose failing image's verdict is not known yet is admitted (its pods are checked).
    const first = await admit(sg, deployment([STRUTS]), MALLORY);
    assert.equal(first.answer.allowed, false, 'the failing template is refused at apply already');
    // The annotation on the workload's own metadata, then in the template with the images unchanged.
    const own = deployment([STRUTS], undefined, { 'scangate.io/break-glass': 'trust me' });
    const annotated = deployment([STRUTS], { 'scangate.io/break-glass': 'trust me' }, { 'scangate.io/break-glass': 'trust me' });
    const update = await admit(sg, annotated, MALLORY, { operation: 'UPDATE', oldObject: own });
    assert.equal(update.answer.allowed, false, 'the workload entry refuses the annotation (feedback)');
    const stored = update.stored;
    assert.equal(((templateOf(stored)['metadata'] as Obj)['annotations'] as Record<string, string>)['scangate.io/break-glass-proof'], undefined);
    // Whatever that entry said (it fails open): the controllers' objects and pods decide alone.
    const rs = await admit(sg, replicaSet(stored), DEPLOY_CONTROLLER);
    assert.equal(rs.answer.allowed, false);
    const pod = await admit(sg, podFrom(templateOf(stored)), RS_CONTROLLER);
    assert.equal(pod.answer.allowed, false);
    assert.match(pod.answer.message ?? '', /Break-glass not permitted: user "system:serviceaccount:kube-system:replicaset-controller" may not break glass/);
    // The workload's own metadata is nobody's break-glass: its pods are judged on their images.
    const plain = await admit(sg, podFrom(templateOf(own)), RS_CONTROLLER);
    assert.equal(plain.answer.allowed, false);
    assert.match(plain.answer.message ?? '', /Image failed policy check/);
  });

  test('a proof copied, edited or forged does not carry over to another image, namespace or reason', async () => {
    const { sg } = setup();
    const dep = await admit(sg, deployment([CLEAN, STRUTS], { 'scangate.io/break-glass': 'INC-42' }), ALICE);
    const annotations = (templateOf(dep.stored)['metadata'] as Obj)['annotations'] as Record<string, string>;
    const proof = annotations['scangate.io/break-glass-proof'] ?? '';
    const withProof = (images: string[], reason = 'INC-42', p = proof): Obj => podFrom(template(images, { 'scangate.io/break-glass': reason, 'scangate.io/break-glass-proof': p }));
    // Same namespace, images and reason: what alice allowed, admitted (documented).
    assert.equal((await admit(sg, withProof([STRUTS]), MALLORY)).answer.allowed, true);
    for (const [what, pod, opts] of [
      ['another failing image', withProof(['evil/struts:1']), {}],
      ['the images plus another', withProof([STRUTS, 'evil/struts:1']), {}],
      ['another reason', withProof([STRUTS], 'INC-43'), {}],
      ['another namespace', withProof([STRUTS]), { namespace: 'other' }],
      ['a forged proof', withProof([STRUTS], 'INC-42', `${proof.slice(0, -4)}AAAA`), {}],
      ['no proof at all', podFrom(template([STRUTS], { 'scangate.io/break-glass': 'INC-42' })), {}],
    ] as const) {
      const r = await admit(sg, pod, MALLORY, opts);
      assert.equal(r.answer.allowed, false, what);
      assert.match(r.answer.message ?? '', /Break-glass not permitted/, what);
    }
  });

  test('a proof expires (BREAK_GLASS_PROOF_TTL_S): a rescheduled pod is refused; a re-apply by the person writes a new one', async () => {
    const { sg, wall } = setup({ BREAK_GLASS_PROOF_TTL_S: '3600' });
    const dep = await admit(sg, deployment([STRUTS], { 'scangate.io/break-glass': 'INC-42' }), ALICE);
    assert.equal((await admit(sg, podFrom(templateOf(dep.stored)), RS_CONTROLLER)).answer.allowed, true);
    wall.t += 3_600_000;
    const late = await admit(sg, podFrom(templateOf(dep.stored)), RS_CONTROLLER);
    assert.equal(late.answer.allowed, false);
    assert.match(late.answer.message ?? '', /proof has expired/);
    // Renewed by a use: the person writes the reason again (changed).
    const renewed = deployment([STRUTS], { ...((templateOf(dep.stored)['metadata'] as Obj)['annotations'] as Record<string, string>), 'scangate.io/break-glass': 'INC-42 still down' });
    const again = await admit(sg, renewed, ALICE, { operation: 'UPDATE', oldObject: dep.stored });
    assert.equal((await admit(sg, podFrom(templateOf(again.stored)), RS_CONTROLLER)).answer.allowed, true);
  });

  test('a person\'s unrelated edit of a template someone else annotated writes no proof in their name (confused deputy)', async () => {
    const { sg } = setup();
    // The tenant's annotated template is in the cluster (its workload entry failed open, say).
    const stored = deployment([STRUTS], { 'scangate.io/break-glass': 'trust me' });
    // Alice changes an environment variable only: the same images, the same reason.
    const edited = structuredClone(stored);
    (((templateOf(edited)['spec'] as Obj)['containers'] as Obj[])[0] as Obj)['env'] = [{ name: 'LOG_LEVEL', value: 'debug' }];
    const mutated = await sg.core.mutate(request(edited, ALICE, { operation: 'UPDATE', oldObject: stored }), {});
    assert.deepEqual(mutated.patch, []);
    const pod = await admit(sg, podFrom(templateOf(applyPatch(edited, mutated))), RS_CONTROLLER);
    assert.equal(pod.answer.allowed, false, 'no proof: the pods are refused');
    // Alice writing the reason herself is a use: a proof in her name.
    const hers = deployment([STRUTS], { 'scangate.io/break-glass': 'INC-77 checked by alice' });
    const used = await admit(sg, hers, ALICE, { operation: 'UPDATE', oldObject: stored });
    assert.equal((await admit(sg, podFrom(templateOf(used.stored)), RS_CONTROLLER)).answer.allowed, true);
  });

  test('a valid proof is kept (no new rollout) when the person applies the same template again', async () => {
    const { sg } = setup();
    const dep = await admit(sg, deployment([STRUTS], { 'scangate.io/break-glass': 'INC-42' }), ALICE);
    const again = await sg.core.mutate(request(dep.stored, ALICE, { operation: 'UPDATE', oldObject: dep.stored }), {});
    assert.deepEqual(again.patch, []);
  });
});

describe('I2: one tenant\'s requests do not take the others\' scans', () => {
  test('a namespace holds at most MAX_SCANS_PER_NAMESPACE scans; another namespace still scans', async () => {
    const { sg, scanner } = setup({ MAX_SCANS_PER_NAMESPACE: '3', MAX_NEW_SCANS_PER_REQUEST: '10', DEFAULT_TIMEOUT_MS: '1000', DEADLINE_MARGIN_MS: '900' });
    for (let i = 0; i < 6; i++) scanner.slow.add(`slow/img${i}`);
    const images = Array.from({ length: 6 }, (_, i) => `slow/img${i}:1`);
    const tenant = await sg.core.validate(request(podFrom(template(images)), MALLORY, { namespace: 'tenant' }), { pathMode: 'enforce' });
    assert.equal(tenant.allowed, false);
    assert.equal(scanner.scans.length, 3, 'three scans started, the rest deferred');
    assert.match(tenant.message ?? '', /MAX_SCANS_PER_NAMESPACE/);
    const victim = await sg.core.validate(request(podFrom(template([CLEAN])), ALICE, { namespace: 'victim' }), { pathMode: 'enforce' });
    assert.equal(victim.allowed, true, victim.message);
    sg.coordinator.abortAll();
  });

  test('a namespace\'s requests waiting for scans are bounded (2 x MAX_SCANS_PER_NAMESPACE): past it, answered at once', async () => {
    const { sg, scanner } = setup({ MAX_SCANS_PER_NAMESPACE: '2', DEFAULT_TIMEOUT_MS: '30000', DEADLINE_MARGIN_MS: '0' });
    scanner.slow.add('slow/app');
    const settled: boolean[] = [];
    const pending = Array.from({ length: 10 }, (_, i) => {
      settled[i] = false;
      return sg.core.validate(request(podFrom(template(['slow/app:1'])), MALLORY, { namespace: 'tenant' }), { pathMode: 'enforce' }).then((a) => {
        settled[i] = true;
        return a;
      });
    });
    await new Promise((r) => setImmediate(r));
    // Four waiting (the bound), six answered at once: "still in progress", denied in enforce.
    assert.equal(settled.filter((x) => !x).length, 4);
    const early = await Promise.all(pending.filter((_, i) => settled[i]));
    for (const a of early) assert.match(a.message ?? '', /Image scan still in progress/);
    // Another namespace's request still waits for its verdict (and gets it).
    const victim = await sg.core.validate(request(podFrom(template([CLEAN])), ALICE, { namespace: 'victim' }), { pathMode: 'enforce' });
    assert.equal(victim.allowed, true, victim.message);
    assert.equal(scanner.scans.filter((s) => s.includes('slow/app')).length, 1, 'one scan shared by all');
    sg.coordinator.abortAll();
    await Promise.all(pending);
  });

  test('a dry run starts no scan and records that it is one', async () => {
    const { sg, scanner, records } = setup();
    const answer = await sg.core.validate(request(podFrom(template([CLEAN])), ALICE, { dryRun: true }), { pathMode: 'enforce' });
    assert.equal(scanner.scans.length, 0);
    assert.equal(answer.allowed, false);
    assert.match(answer.message ?? '', /a dry run starts no scan/);
    assert.equal(records.at(-1)?.dryRun, true);
    // With a verdict in the cache, a dry run answers from it.
    await sg.core.validate(request(podFrom(template([CLEAN])), ALICE), { pathMode: 'enforce' });
    const cached = await sg.core.validate(request(podFrom(template([CLEAN])), ALICE, { dryRun: true }), { pathMode: 'enforce' });
    assert.equal(cached.allowed, true);
    assert.equal(scanner.scans.length, 1);
  });

  test('/mutate starts at most MAX_NEW_SCANS_PER_REQUEST scans, like the validating entries', async () => {
    const { sg, scanner } = setup({ PIN_DIGESTS: 'true', MAX_NEW_SCANS_PER_REQUEST: '2', MAX_SCANS_PER_NAMESPACE: '50' });
    const images = Array.from({ length: 8 }, (_, i) => `team/app${i}:1`);
    const answer = await sg.core.mutate(request(podFrom(template(images)), MALLORY), {});
    assert.equal(answer.allowed, true);
    assert.equal(scanner.scans.length, 2);
    assert.equal(answer.patch?.length, 2);
  });
});
