/**
 * Pod UPDATEs (issue 7 §1), workload templates (issue 10 §1) and per-namespace modes (issue 10 §2)
 * through scangate's HTTPS webhook and the scanner simulator, over real sockets on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MESSAGES, WORKLOAD_WITHOUT_VERDICT } from '../../src/policy/decision.js';
import { metricValue, request, useWebhookFixture, type Webhook } from '../helpers/harness.js';
import { podUpdateReview, workloadReview, WORKLOAD_TYPES, type WorkloadKindName } from '../helpers/workload-review.js';

const STRUTS = 'kaizheh/apache-struts2-cve-2017-5638:2.3.12';
const CLEAN = 'nginx:1.25.3';
const FAST = { SCANNER_POLL_INITIAL_MS: '20', SCANNER_POLL_MAX_MS: '100' };

const fixture = useWebhookFixture(FAST);
const { webhook } = fixture;

async function post(w: Webhook, path: string, review: { uid: string; body: Record<string, unknown> }) {
  const res = await request(`${w.url}${path}`, { body: review.body });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json.response.uid, review.uid);
  return res.json.response as { allowed: boolean; status?: { code: number; message: string }; warnings?: string[] };
}

describe('pod UPDATE', () => {
  const web = { name: 'web', image: CLEAN };

  test('kubectl set image to a failing image: denied with the policy message', async () => {
    const w = await webhook();
    const answer = await post(w, '/validate?timeout=10s', podUpdateReview('web', { containers: [{ name: 'web', image: STRUTS }] }, { containers: [web] }));
    assert.equal(answer.allowed, false);
    assert.ok(answer.status?.message.startsWith(`${MESSAGES.policyFail}: ${STRUTS} (container "web"): vulnerabilities/package`), answer.status?.message);
  });

  test('kubectl set image to an untagged image: denied by the latest-tag rule', async () => {
    const w = await webhook();
    const review = podUpdateReview('web', { initContainers: [{ name: 'setup', image: 'busybox' }], containers: [web] }, { initContainers: [{ name: 'setup', image: 'busybox:1.36' }], containers: [web] });
    const answer = await post(w, '/validate', review);
    assert.deepEqual(answer, {
      uid: review.uid,
      allowed: false,
      status: { code: 403, reason: 'Forbidden', message: `${MESSAGES.latestTag}: busybox (init container "setup")` },
      auditAnnotations: { decision: 'denied', images: 'busybox=latest-tag' },
    });
    assert.equal(fixture.sim.stats().total, 0, 'refused before any scan');
  });

  test('an UPDATE that changes no image is allowed without a scan', async () => {
    const w = await webhook();
    const review = podUpdateReview('web', { containers: [{ name: 'web', image: STRUTS }] }, { containers: [{ name: 'web', image: STRUTS }] });
    (review.body['request'] as { object: { metadata: { labels: object } } }).object.metadata.labels = { app: 'web', tier: 'front' };
    const answer = await post(w, '/validate', review);
    assert.deepEqual(answer, { uid: review.uid, allowed: true });
    assert.equal(fixture.sim.stats().total, 0, 'no scanner call');
    assert.equal(w.logs.find('decision').length, 0);
    assert.equal(metricValue((await request(`${w.url}/metrics`)).text, 'scangate_decisions_total', { endpoint: 'validate', result: 'unchanged' }), 1);
  });

  test('only the changed image is scanned; the unchanged failing one is not judged again', async () => {
    const w = await webhook();
    const answer = await post(w, '/validate', podUpdateReview('web', { containers: [{ name: 'old', image: STRUTS }, { name: 'web', image: 'nginx:1.25.4' }] }, { containers: [{ name: 'old', image: STRUTS }, web] }));
    assert.equal(answer.allowed, true, JSON.stringify(answer));
    const [line] = w.logs.find('decision');
    assert.deepEqual((line?.['images'] as Array<{ image: string }>).map((i) => i.image), ['nginx:1.25.4']);
    assert.equal(line?.['operation'], 'UPDATE');
  });
});

describe('workload templates', () => {
  test('every workload kind with the struts image is refused, naming the workload and the container', async () => {
    const w = await webhook();
    for (const kind of Object.keys(WORKLOAD_TYPES) as WorkloadKindName[]) {
      const answer = await post(w, '/validate?timeout=10s', workloadReview(kind, 'web', { containers: [{ name: 'web', image: STRUTS }] }));
      assert.equal(answer.allowed, false, kind);
      assert.ok(answer.status?.message.startsWith(`${MESSAGES.policyFail}: ${STRUTS} (${kind.toLowerCase()} "web" container "web"): vulnerabilities/package`), answer.status?.message);
    }
    assert.equal(fixture.sim.stats().addImage, 1, 'one scan, then the cache');
    const line = w.logs.find('decision')[0];
    assert.equal(line?.['kind'], 'Deployment');
    assert.equal(line?.['name'], 'web');
  });

  test('a clean template is admitted; a latest tag is refused before any scan', async () => {
    const w = await webhook();
    assert.equal((await post(w, '/validate', workloadReview('Deployment', 'nginx', { containers: [{ name: 'nginx', image: CLEAN }] }))).allowed, true);
    const latest = await post(w, '/validate', workloadReview('CronJob', 'nightly', { containers: [{ name: 'job', image: 'busybox' }] }));
    assert.equal(latest.status?.message, `${MESSAGES.latestTag}: busybox (cronjob "nightly" container "job")`);
  });

  test('a scan not finished in time never refuses a workload: admitted with a warning (REJECT_IF_TIMEOUT=true)', async () => {
    const w = await webhook({ DEADLINE_MARGIN_MS: '500' });
    fixture.sim.setAnalysisDelayMs(3000);
    const answer = await post(w, '/validate?timeout=1s', workloadReview('Deployment', 'slow', { containers: [{ name: 'web', image: 'nginx:1.24' }] }));
    // Answered when this budget is spent (on mock timers: test/unit/deadline-timers.test.ts).
    assert.equal(w.logs.find('decision')[0]?.['budgetMs'], 500);
    assert.equal(answer.allowed, true);
    assert.equal(answer.warnings?.length, 1);
    assert.match(answer.warnings?.[0] ?? '', new RegExp(`^${WORKLOAD_WITHOUT_VERDICT}: ${MESSAGES.timeout}: nginx:1\\.24 \\(deployment "slow" container "web"`));
    const metrics = (await request(`${w.url}/metrics`)).text;
    assert.equal(metricValue(metrics, 'scangate_deadline_expiries_total', { reason: 'timeout', action: 'admitted' }), 1);
    // The pod, which is the enforcement point, is still refused while the scan runs.
    const pod = await post(w, '/validate?timeout=1s', podUpdateReview('slow-1', { containers: [{ name: 'web', image: 'nginx:1.24' }] }, { containers: [] }));
    assert.equal(pod.allowed, false);
  });

  test('kubectl set image deployment/... to a failing image: refused; a scale is allowed without a scan', async () => {
    const w = await webhook();
    const old = { containers: [{ name: 'web', image: CLEAN }] };
    const setImage = await post(w, '/validate', workloadReview('Deployment', 'web', { containers: [{ name: 'web', image: STRUTS }] }, { operation: 'UPDATE', oldSpec: old }));
    assert.equal(setImage.allowed, false);
    const calls = fixture.sim.stats().total;
    const scale = await post(w, '/validate', workloadReview('Deployment', 'web', old, { operation: 'UPDATE', oldSpec: old }));
    assert.equal(scale.allowed, true);
    assert.equal(fixture.sim.stats().total, calls);
  });

  test('WORKLOAD_MODE=warn: a failing template is admitted with warnings; its pods are still refused', async () => {
    const w = await webhook({ WORKLOAD_MODE: 'warn' });
    const answer = await post(w, '/validate', workloadReview('StatefulSet', 'db', { containers: [{ name: 'db', image: STRUTS }] }));
    assert.equal(answer.allowed, true);
    assert.ok(answer.warnings?.[0]?.startsWith(`${MESSAGES.policyFail}: ${STRUTS} (statefulset "db" container "db")`));
    const pod = await post(w, '/validate', podUpdateReview('db-0', { containers: [{ name: 'db', image: STRUTS }] }, { containers: [] }));
    assert.equal(pod.allowed, false);
  });
});

describe('per-namespace mode: the path of the webhook entry', () => {
  const failing = () => workloadReview('Deployment', 'web', { containers: [{ name: 'web', image: STRUTS }] });
  const failingPod = () => podUpdateReview('p', { containers: [{ name: 'web', image: STRUTS }] }, { containers: [] });

  test('/validate/enforce denies, /validate/warn admits with warnings, /validate follows MODE', async () => {
    const w = await webhook({ MODE: 'warn' });
    for (const review of [failing, failingPod]) {
      assert.equal((await post(w, '/validate/enforce', review())).allowed, false);
      const warned = await post(w, '/validate/warn', review());
      assert.equal(warned.allowed, true);
      assert.match(warned.warnings?.[0] ?? '', new RegExp(`^${MESSAGES.policyFail}: ${STRUTS}`));
      assert.equal((await post(w, '/validate', review())).allowed, true);
    }
    const results = w.logs.find('decision').map((l) => [l['mode'], l['result']]);
    assert.deepEqual(results.slice(0, 3), [['enforce', 'denied'], ['warn', 'warned'], ['warn', 'warned']]);
  });

  test('NAMESPACE_MODES without warn: /validate/warn is enforced, and says so in the log', async () => {
    const w = await webhook({ NAMESPACE_MODES: 'enforce' });
    const answer = await post(w, '/validate/warn', failingPod());
    assert.equal(answer.allowed, false);
    assert.ok(w.logs.lines.some((l) => /mode warn is not in NAMESPACE_MODES: judged in enforce mode/.test(String(l['msg']))));
  });

  test('a mode that is not served is a 404 (the API server then fails closed)', async () => {
    const w = await webhook();
    for (const path of ['/validate/off', '/validate/audit', '/validate/warn/x']) {
      const res = await request(`${w.url}${path}`, { body: failingPod().body });
      assert.equal(res.status, 404, path);
    }
  });
});
