/**
 * Break-glass and digest pinning through scangate's HTTPS webhook against the scanner simulator,
 * over real sockets on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { BREAK_GLASS_MESSAGES } from '../../src/policy/break-glass.js';
import { MESSAGES } from '../../src/policy/decision.js';
import { startScannerSimulator, type ScannerSimulator } from '../../src/simulator/server.js';
import { admissionReview, metricValue, request, startWebhook, type PodSpecInput, type Webhook } from '../helpers/harness.js';
import { workloadObject, workloadReview } from '../helpers/workload-review.js';

const STRUTS = 'kaizheh/apache-struts2-cve-2017-5638:2.3.12';
const FAST = { SCANNER_POLL_INITIAL_MS: '20', SCANNER_POLL_MAX_MS: '100' };
const GLASS = { BREAK_GLASS_USERS: 'alice', BREAK_GLASS_GROUPS: 'sre-oncall' };

let sim: ScannerSimulator;
const webhooks: Webhook[] = [];

async function webhook(env: Record<string, string> = {}): Promise<Webhook> {
  const w = await startWebhook({ ANCHORE_CLI_URL: sim.url, ANCHORE_CLI_USER: 'admin', ANCHORE_CLI_PASS: 'foobar', ...FAST, ...env });
  webhooks.push(w);
  return w;
}

interface Who {
  readonly username: string;
  readonly groups?: readonly string[];
}

/** A pod CREATE review sent by `who`, with the given annotations. */
function review(spec: PodSpecInput, who: Who, annotations: Record<string, string> = {}, namespace?: string): { uid: string; body: Record<string, unknown> } {
  const r = admissionReview(spec, namespace !== undefined ? { namespace } : {});
  const req = r.body['request'] as Record<string, unknown>;
  req['userInfo'] = { username: who.username, groups: who.groups ?? ['system:authenticated'] };
  const object = req['object'] as { metadata: Record<string, unknown> };
  object.metadata['annotations'] = annotations;
  return r;
}

async function post(w: Webhook, path: string, body: unknown, timeout = '10s') {
  return request(`${w.url}${path}?timeout=${timeout}`, { body });
}

before(async () => {
  sim = await startScannerSimulator({ user: 'admin', password: 'foobar' });
});
after(async () => {
  for (const w of webhooks) await w.close();
  await sim.close();
});
beforeEach(() => sim.reset());

describe('break-glass', () => {
  test('an allowed user admits a failing image: warning, audit annotations, log line, metric', async () => {
    const w = await webhook(GLASS);
    const { uid, body } = review({ containers: [STRUTS] }, { username: 'alice' }, { 'scangate.io/break-glass': 'INC-1234: payment outage\nforged line' });
    const res = await post(w, '/validate', body);
    assert.equal(res.json.response.uid, uid);
    assert.equal(res.json.response.allowed, true);
    const warning = String(res.json.response.warnings[0]);
    assert.ok(
      warning.startsWith(`${BREAK_GLASS_MESSAGES.used} by "alice" (reason: "INC-1234: payment outage\\x0aforged line"): admitted despite: ${MESSAGES.policyFail}: ${STRUTS}`),
      warning,
    );
    const audit = res.json.response.auditAnnotations as Record<string, string>;
    assert.equal(audit['decision'], 'allowed');
    assert.equal(audit['break-glass'], 'admitted');
    assert.equal(audit['break-glass-user'], 'alice');
    assert.equal(audit['break-glass-reason'], 'INC-1234: payment outage\\x0aforged line');
    assert.match(audit['images'] ?? '', new RegExp(`^${STRUTS}=fail@sha256:[0-9a-f]{64}$`));
    const [line] = w.logs.find('break-glass');
    assert.equal(line?.['user'], 'alice');
    assert.equal(line?.['via'], 'user');
    assert.equal(line?.['outcome'], 'admitted');
    assert.equal(line?.['uid'], uid);
    assert.deepEqual(line?.['bypassed'], [{ image: STRUTS, kind: 'policy-fail' }]);
    // The tenant's newline never reaches the log as a line break.
    assert.ok(w.logs.raw.every((l) => !l.startsWith('forged line')));
    const metrics = (await request(`${w.url}/metrics`)).text;
    assert.equal(metricValue(metrics, 'scangate_break_glass_total', { outcome: 'admitted' }), 1);
  });

  test('a member of an allowed group may break glass too', async () => {
    const w = await webhook(GLASS);
    const { body } = review({ containers: [STRUTS] }, { username: 'bob', groups: ['system:authenticated', 'sre-oncall'] }, { 'scangate.io/break-glass': 'INC-7' });
    const res = await post(w, '/validate', body);
    assert.equal(res.json.response.allowed, true);
    assert.equal(w.logs.find('break-glass')[0]?.['via'], 'group');
  });

  test('anyone else is denied with a message saying they may not break glass, even for a clean image', async () => {
    const w = await webhook(GLASS);
    for (const image of [STRUTS, 'nginx:1.25.3']) {
      const { body } = review({ containers: [image] }, { username: 'mallory', groups: ['system:authenticated', 'developers'] }, { 'scangate.io/break-glass': 'trust me' });
      const res = await post(w, '/validate', body);
      assert.equal(res.json.response.allowed, false, image);
      assert.match(res.json.response.status.message, new RegExp(`^${BREAK_GLASS_MESSAGES.notPermitted}: user "mallory" may not break glass`));
      assert.equal(res.json.response.auditAnnotations['break-glass'], 'refused');
      assert.equal(res.json.response.auditAnnotations['break-glass-user'], 'mallory');
    }
    const metrics = (await request(`${w.url}/metrics`)).text;
    assert.equal(metricValue(metrics, 'scangate_break_glass_total', { outcome: 'refused' }), 2);
  });

  test('nobody may break glass by default', async () => {
    const w = await webhook();
    const { body } = review({ containers: [STRUTS] }, { username: 'alice' }, { 'scangate.io/break-glass': 'INC-1' });
    const res = await post(w, '/validate', body);
    assert.equal(res.json.response.allowed, false);
    assert.match(res.json.response.status.message, new RegExp(`^${BREAK_GLASS_MESSAGES.notPermitted}`));
  });
});

/** A Deployment review sent by `who`; `glass` / `oldGlass` are its template's break-glass annotation. */
function deployment(who: Who, image: string, glass: string | undefined, old?: { image: string; glass?: string }): Record<string, unknown> {
  const withGlass = (object: Record<string, unknown>, value: string | undefined): Record<string, unknown> => {
    const template = (object['spec'] as { template: { metadata: Record<string, unknown> } }).template;
    if (value !== undefined) template.metadata['annotations'] = { 'scangate.io/break-glass': value };
    return object;
  };
  const spec = { containers: [{ name: 'web', image }] };
  const oldObject = old === undefined ? undefined : withGlass(workloadObject('Deployment', 'web', { containers: [{ name: 'web', image: old.image }] }), old.glass);
  const r = workloadReview('Deployment', 'web', spec, old === undefined ? {} : { operation: 'UPDATE', ...(oldObject !== undefined ? { oldObject } : {}) });
  const req = r.body['request'] as Record<string, unknown>;
  req['object'] = withGlass(req['object'] as Record<string, unknown>, glass);
  req['userInfo'] = { username: who.username, groups: who.groups ?? ['system:authenticated'] };
  return r.body;
}

describe('break-glass on workloads (the person\'s template earns a proof at /mutate; controllers\' pods need it)', () => {
  const CONTROLLER = { username: 'system:serviceaccount:kube-system:replicaset-controller' };

  test('an allowed user creates a Deployment whose template breaks glass; its controller-created pods are then admitted', async () => {
    const w = await webhook(GLASS);
    const res = await post(w, '/validate', deployment({ username: 'alice' }, STRUTS, 'INC-9'));
    assert.equal(res.json.response.allowed, true, JSON.stringify(res.json.response));
    assert.equal(res.json.response.auditAnnotations['break-glass'], 'admitted');
    // The mutating entry writes the proof into the template (what its controllers copy into every pod).
    const mutated = await post(w, '/mutate', deployment({ username: 'alice' }, STRUTS, 'INC-9'));
    const patch = JSON.parse(Buffer.from(String(mutated.json.response.patch), 'base64').toString('utf8')) as Array<{ op: string; path: string; value: string }>;
    assert.deepEqual(patch.map((p) => [p.op, p.path]), [['add', '/spec/template/metadata/annotations/scangate.io~1break-glass-proof']]);
    const proof = patch[0]?.value ?? '';
    const pod = await post(w, '/validate', review({ containers: [STRUTS] }, CONTROLLER, { 'scangate.io/break-glass': 'INC-9', 'scangate.io/break-glass-proof': proof }, 'shop').body);
    assert.equal(pod.json.response.allowed, true, JSON.stringify(pod.json.response));
    const line = w.logs.find('break-glass').at(-1);
    assert.equal(line?.['via'], 'proof');
    assert.equal(line?.['user'], 'alice', 'the person who broke glass, not the controller');
    assert.equal(pod.json.response.auditAnnotations['break-glass-user'], 'alice');
    // The controller's identity alone earns nothing.
    const bare = await post(w, '/validate', review({ containers: [STRUTS] }, CONTROLLER, { 'scangate.io/break-glass': 'INC-9' }, 'shop').body);
    assert.equal(bare.json.response.allowed, false);
    // Nor does mallory's Deployment: /mutate writes no proof for her.
    const hers = await post(w, '/mutate', deployment({ username: 'mallory' }, STRUTS, 'INC-9'));
    assert.equal(hers.json.response.patch, undefined);
  });

  test('anyone else: the template annotation is refused at the workload, on CREATE and when an UPDATE adds it without changing an image', async () => {
    const w = await webhook(GLASS);
    const mallory = { username: 'mallory' };
    const created = await post(w, '/validate', deployment(mallory, 'nginx:1.25.3', 'trust me'));
    assert.equal(created.json.response.allowed, false);
    assert.match(created.json.response.status.message, new RegExp(`^${BREAK_GLASS_MESSAGES.notPermitted}: user "mallory"`));
    const added = await post(w, '/validate', deployment(mallory, 'nginx:1.25.3', 'trust me', { image: 'nginx:1.25.3' }));
    assert.equal(added.json.response.allowed, false, 'adding the annotation to a vetted template is a use of it');
    // Changing the image of a template that already breaks glass is a use of it too.
    const changed = await post(w, '/validate', deployment(mallory, STRUTS, 'INC-9', { image: 'nginx:1.25.3', glass: 'INC-9' }));
    assert.equal(changed.json.response.allowed, false);
    // An UPDATE that touches neither (labels, replicas) is no use of it: allowed without a look.
    const untouched = await post(w, '/validate', deployment(mallory, STRUTS, 'INC-9', { image: STRUTS, glass: 'INC-9' }));
    assert.equal(untouched.json.response.allowed, true);
  });

  test('a pod that carries the annotation, created by an identity that is neither allowed nor a trusted controller, is refused', async () => {
    const w = await webhook(GLASS);
    const res = await post(w, '/validate', review({ containers: [STRUTS] }, { username: 'system:serviceaccount:tenant:my-operator' }, { 'scangate.io/break-glass': 'INC-9' }).body);
    assert.equal(res.json.response.allowed, false);
    assert.match(res.json.response.status.message, new RegExp(`^${BREAK_GLASS_MESSAGES.notPermitted}`));
  });
});

describe('digest pinning (/mutate)', () => {
  test('pins the scanned digest with a JSONPatch; the validating call that follows is a cache hit (no second scan)', async () => {
    const w = await webhook({ PIN_DIGESTS: 'true' });
    const { uid, body } = review({ containers: ['nginx:1.25.3', STRUTS, 'nginx'] }, { username: 'system:serviceaccount:kube-system:replicaset-controller' });
    const res = await post(w, '/mutate', body);
    assert.equal(res.json.response.uid, uid);
    assert.equal(res.json.response.allowed, true);
    assert.equal(res.json.response.patchType, 'JSONPatch');
    const patch = JSON.parse(Buffer.from(String(res.json.response.patch), 'base64').toString('utf8')) as Array<{ op: string; path: string; value: string }>;
    assert.equal(patch.length, 2);
    assert.deepEqual(patch.map((p) => [p.op, p.path]), [['replace', '/spec/containers/0/image'], ['replace', '/spec/containers/1/image']]);
    const [nginxPinned, strutsPinned] = patch.map((p) => p.value);
    assert.match(nginxPinned ?? '', /^nginx:1\.25\.3@sha256:[0-9a-f]{64}$/);
    assert.match(strutsPinned ?? '', new RegExp(`^${STRUTS}@sha256:[0-9a-f]{64}$`));
    assert.match(String(res.json.response.auditAnnotations['pinned']), /^nginx:1\.25\.3=pinned@sha256:/);
    const scansAfterMutate = sim.stats().addImage;
    assert.equal(scansAfterMutate, 2);

    // What the API server sends next: the patched pod, to the validating webhook.
    const validated = await post(w, '/validate', review({ containers: [nginxPinned ?? ''] }, { username: 'x' }).body);
    assert.equal(validated.json.response.allowed, true);
    const line = w.logs.find('decision').at(-1);
    assert.deepEqual(line?.['cache'], { hit: 1, miss: 0, shared: 0 });
    const denied = await post(w, '/validate', review({ containers: [strutsPinned ?? ''] }, { username: 'x' }).body);
    assert.match(denied.json.response.status.message, new RegExp(`^${MESSAGES.policyFail}`));
    assert.equal(sim.stats().addImage, scansAfterMutate, 'no second scan for the pinned references');
    const metrics = (await request(`${w.url}/metrics`)).text;
    assert.equal(metricValue(metrics, 'scangate_pins_total', { result: 'pinned' }), 2);
    assert.equal(metricValue(metrics, 'scangate_pins_total', { result: 'local_rule' }), 1);
  });

  test('never refuses: no verdict in time leaves the image unpinned, within the deadline', async () => {
    const w = await webhook({ PIN_DIGESTS: 'true', DEADLINE_MARGIN_MS: '500' });
    sim.setAnalysisDelayMs(5000);
    const started = performance.now();
    const res = await post(w, '/mutate', review({ containers: ['nginx:1.24'] }, { username: 'x' }).body, '1s');
    assert.ok(performance.now() - started < 1000);
    assert.equal(res.json.response.allowed, true);
    assert.equal(res.json.response.patch, undefined);
    assert.deepEqual(w.logs.find('pin')[0]?.['unpinned'], [{ image: 'nginx:1.24', reason: 'no_verdict' }]);
  });

  test('workload templates are pinned too (a Deployment: its pods inherit the pinned image)', async () => {
    const w = await webhook({ PIN_DIGESTS: 'true' });
    const res = await post(w, '/mutate', deployment({ username: 'jane' }, 'nginx:1.25.3', undefined));
    const patch = JSON.parse(Buffer.from(String(res.json.response.patch), 'base64').toString('utf8')) as Array<{ path: string; value: string }>;
    assert.equal(patch[0]?.path, '/spec/template/spec/containers/0/image');
    assert.match(patch[0]?.value ?? '', /^nginx:1\.25\.3@sha256:[0-9a-f]{64}$/);
  });

  test('off by default: /mutate answers unchanged and starts no scan', async () => {
    const w = await webhook();
    const res = await post(w, '/mutate', review({ containers: ['nginx:1.25.3'] }, { username: 'x' }).body);
    assert.equal(res.json.response.allowed, true);
    assert.equal(res.json.response.patch, undefined);
    assert.equal(sim.stats().addImage, 0);
  });
});
