/**
 * scangate's HTTPS webhook against the scanner simulator, over real sockets on 127.0.0.1. No test here
 * times the answer: that the budget each request is given (`budgetMs` of its decision line) is kept to
 * the millisecond is tested on mock timers (test/unit/deadline-timers.test.ts, retry-after.test.ts).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MESSAGES } from '../../src/policy/decision.js';
import { waitFor } from '../helpers/fault-harness.js';
import { admissionReview, imageReview, metricValue, request, useWebhookFixture, type Webhook } from '../helpers/harness.js';

const STRUTS = 'kaizheh/apache-struts2-cve-2017-5638:2.3.12';
const FAST = { SCANNER_POLL_INITIAL_MS: '20', SCANNER_POLL_MAX_MS: '100' };

const fixture = useWebhookFixture(FAST);
const { webhook } = fixture;

async function validate(w: Webhook, spec: Parameters<typeof admissionReview>[0], opts: Parameters<typeof admissionReview>[1] & { timeout?: string } = {}) {
  const { uid, body } = admissionReview(spec, opts);
  const res = await request(`${w.url}/validate${opts.timeout !== undefined ? `?timeout=${opts.timeout}` : ''}`, { body });
  return { uid, res };
}

/** The waiting budget the webhook gave its n-th decision (the request's timeout minus DEADLINE_MARGIN_MS). */
function budgetOf(w: Webhook, n = 0): unknown {
  return w.logs.find('decision')[n]?.['budgetMs'];
}

describe('verdicts', () => {
  test('a clean image is admitted; uid and version echoed', async () => {
    const w = await webhook();
    const { uid, res } = await validate(w, { containers: ['nginx:1.25.3'] });
    assert.equal(res.status, 200);
    const digest = (w.logs.find('decision')[0]?.['images'] as Array<{ digest?: string }>)[0]?.digest;
    assert.match(digest ?? '', /^sha256:[0-9a-f]{64}$/);
    // Every decision carries audit annotations: the verdict and the scanned digest of each image.
    assert.deepEqual(res.json, {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: { uid, allowed: true, auditAnnotations: { decision: 'allowed', images: `nginx:1.25.3=pass@${digest ?? ''}` } },
    });
    const [line] = w.logs.find('decision');
    assert.equal(line?.['uid'], uid);
    assert.equal(line?.['allowed'], true);
    assert.deepEqual(line?.['cache'], { hit: 0, miss: 1, shared: 0 });
    assert.equal(line?.['pod'], 'web-7d4b9c-');
  });

  test('a vulnerable image is denied with the stop reasons from the check detail', async () => {
    const w = await webhook();
    const { uid, res } = await validate(w, { containers: [STRUTS] });
    assert.equal(res.json.response.uid, uid);
    assert.equal(res.json.response.allowed, false);
    assert.equal(res.json.response.status.code, 403);
    const message: string = res.json.response.status.message;
    // The findings in scangate's words (THREAT-MODEL I4), not the scanner's text.
    assert.ok(message.startsWith(`${MESSAGES.policyFail}: ${STRUTS} (container "c0"): vulnerabilities/package: CRITICAL CVE-2017-5638 in struts2-core-2.3.12.jar`), message);
    assert.doesNotMatch(message, /Vulnerability found|https:|\/usr\/local/);
    assert.match(message, /CVE-2017-5638/);
    assert.ok(message.length <= 1000);
  });

  test('the second request for an image is a cache hit (no scanner call)', async () => {
    const w = await webhook();
    await validate(w, { containers: ['nginx:1.25.3'] });
    const calls = fixture.sim.stats().total;
    const { res } = await validate(w, { containers: ['nginx:1.25.3'] });
    assert.equal(res.json.response.allowed, true);
    assert.equal(fixture.sim.stats().total, calls);
    assert.deepEqual(w.logs.find('decision')[1]?.['cache'], { hit: 1, miss: 0, shared: 0 });
  });

  test('multi-container pod with one bad init container: denied and the init container is named', async () => {
    const w = await webhook();
    const { res } = await validate(w, {
      initContainers: [{ name: 'fetch-config', image: STRUTS }],
      containers: [{ name: 'web', image: 'nginx:1.25.3' }, { name: 'sidecar', image: 'bitnami/nginx:1.25' }],
    });
    assert.equal(res.json.response.allowed, false);
    assert.match(res.json.response.status.message, new RegExp(`^${MESSAGES.policyFail}: ${STRUTS} \\(init container "fetch-config"\\)`));
    assert.doesNotMatch(res.json.response.status.message, /nginx/);
  });

  test('latest tag and registry rules are applied before any scan, to every container', async () => {
    const w = await webhook({ REGISTRY_ALLOWLIST: 'docker.io,quay.io' });
    const { res } = await validate(w, {
      containers: [{ name: 'a', image: 'nginx' }, { name: 'b', image: 'ghcr.io/x/y:1' }],
      ephemeralContainers: [{ name: 'dbg', image: 'busybox:latest' }],
    });
    assert.equal(
      res.json.response.status.message,
      `${MESSAGES.latestTag}: nginx (container "a"), busybox:latest (ephemeral container "dbg"). ${MESSAGES.registry}: ghcr.io/x/y:1 (container "b": registry ghcr.io)`,
    );
    assert.equal(fixture.sim.stats().addImage, 0);
  });

  test('exempt namespaces are admitted untouched', async () => {
    const w = await webhook();
    const { res } = await validate(w, { containers: ['nginx'] }, { namespace: 'kube-system' });
    assert.equal(res.json.response.allowed, true);
    assert.equal(w.logs.find('decision')[0]?.['result'], 'exempt');
  });

  test('warn mode admits with AdmissionReview warnings', async () => {
    const w = await webhook({ MODE: 'warn' });
    const { res } = await validate(w, { containers: [STRUTS] });
    assert.equal(res.json.response.allowed, true);
    assert.match(res.json.response.warnings[0], new RegExp(`^${MESSAGES.policyFail}: ${STRUTS}`));
  });
});

describe('deadline and REJECT_IF_TIMEOUT', () => {
  test('analysis shorter than the deadline: the verdict arrives in the same request', async () => {
    const w = await webhook();
    fixture.sim.setAnalysisDelayMs(600);
    const { res } = await validate(w, { containers: ['bitnami/nginx:1.25'] }, { timeout: '5s' });
    assert.equal(res.json.response.allowed, true);
  });

  test('analysis longer than the deadline, REJECT_IF_TIMEOUT=true: denied in time; the background verdict lands in the cache', async () => {
    const w = await webhook({ DEADLINE_MARGIN_MS: '500' });
    fixture.sim.setAnalysisDelayMs(2500);
    const { res } = await validate(w, { containers: [STRUTS] }, { timeout: '2s' });
    assert.equal(res.json.response.allowed, false);
    assert.match(res.json.response.status.message, new RegExp(`^${MESSAGES.timeout}: ${STRUTS} \\(container "c0": no verdict within 1.5s; the scan continues in the background`));
    assert.equal(budgetOf(w), 1500);
    await w.scangate.coordinator.idle();
    const retry = await validate(w, { containers: [STRUTS] }, { timeout: '2s' });
    assert.match(retry.res.json.response.status.message, new RegExp(`^${MESSAGES.policyFail}: ${STRUTS}`));
    assert.deepEqual(w.logs.find('decision')[1]?.['cache'], { hit: 1, miss: 0, shared: 0 });
    const metrics = (await request(`${w.url}/metrics`)).text;
    assert.equal(metricValue(metrics, 'scangate_deadline_expiries_total', { reason: 'timeout', action: 'denied' }), 1);
    assert.equal(fixture.sim.stats().addImage, 1);
  });

  test('analysis longer than the deadline, REJECT_IF_TIMEOUT=false: admitted with a warning and logged', async () => {
    const w = await webhook({ REJECT_IF_TIMEOUT: 'false', DEADLINE_MARGIN_MS: '500' });
    fixture.sim.setAnalysisDelayMs(3000);
    const { res } = await validate(w, { containers: ['nginx:1.24'] }, { timeout: '1s' });
    assert.equal(res.json.response.allowed, true);
    assert.match(res.json.response.warnings[0], /^admitted without a verdict \(REJECT_IF_TIMEOUT=false\): Image scan still in progress: nginx:1.24/);
    assert.equal(budgetOf(w), 500);
    const line = w.logs.find('decision')[0];
    assert.equal(line?.['allowed'], true);
    assert.equal((line?.['images'] as Array<{ result: string }>)[0]?.result, 'timeout');
  });

  test('50 concurrent requests for one new image make exactly one POST /images', async () => {
    // One namespace sends all 50: this test is about scan merging, not the per-namespace bound of
    // waiting requests (2 x MAX_SCANS_PER_NAMESPACE, tested in admission-core.test.ts).
    const w = await webhook({ MAX_SCANS_PER_NAMESPACE: '100' });
    // The analysis is held until all 50 have joined the scan, not for a delay a loaded machine may outrun.
    fixture.sim.setFaults({ neverAnalyzed: ['quay.io/acme/api'] });
    const pending = Promise.all(Array.from({ length: 50 }, () => validate(w, { containers: ['quay.io/acme/api:7.1'] }, { timeout: '10s' })));
    assert.ok(await waitFor(async () => metricValue(await w.scangate.metrics.registry.metrics(), 'scangate_cache_lookups_total', { result: 'shared' }) === 49, 8000));
    fixture.sim.setFaults({});
    const results = await pending;
    for (const { res } of results) assert.equal(res.json.response.allowed, true);
    assert.equal(fixture.sim.stats().addImage, 1);
    const caches = w.logs.find('decision').map((l) => l['cache'] as { miss: number; shared: number });
    assert.equal(caches.filter((c) => c.miss === 1).length, 1);
    assert.equal(caches.filter((c) => c.shared === 1).length, 49);
  });

  test('one scan is shared across the ValidatingAdmissionWebhook and ImagePolicyWebhook paths', async () => {
    const w = await webhook();
    fixture.sim.setFaults({ neverAnalyzed: ['bitnami/nginx'] });
    const both = Promise.all([
      validate(w, { containers: ['bitnami/nginx:1.26'] }, { timeout: '10s' }),
      request(`${w.url}/image_policy`, { body: imageReview(['docker.io/bitnami/nginx:1.26']) }),
    ]);
    assert.ok(await waitFor(async () => metricValue(await w.scangate.metrics.registry.metrics(), 'scangate_cache_lookups_total', { result: 'shared' }) === 1, 8000));
    fixture.sim.setFaults({});
    const [a, b] = await both;
    assert.equal(a.res.json.response.allowed, true);
    assert.equal(b.json.status.allowed, true);
    assert.equal(fixture.sim.stats().addImage, 1);
  });
});

describe('scanner faults', () => {
  const faultEnv = { SCANNER_REQUEST_TIMEOUT_MS: '400', SCANNER_RETRY_BUDGET_MS: '600', DEADLINE_MARGIN_MS: '300' };

  test('scanner down: a scanner error, denied (REJECT_IF_TIMEOUT=true) or admitted (false), never cached', async () => {
    for (const reject of ['true', 'false']) {
      // v1 pinned: in auto mode the first call is the version probe (test/integration/scanner-api.test.ts).
      const w = await webhook({ ...faultEnv, ANCHORE_CLI_URL: 'http://127.0.0.1:1/v1', ANCHORE_API_VERSION: 'v1', REJECT_IF_TIMEOUT: reject });
      const { res } = await validate(w, { containers: ['nginx:1.25.3'] }, { timeout: '2s' });
      assert.equal(budgetOf(w), 1700);
      if (reject === 'true') {
        assert.equal(res.json.response.allowed, false);
        assert.match(res.json.response.status.message, /^Scanner error: nginx:1.25.3 \(container "c0": scanner unreachable \(ECONNREFUSED\)\)$/);
      } else {
        assert.equal(res.json.response.allowed, true);
        assert.match(res.json.response.warnings[0], /Scanner error: nginx:1.25.3/);
      }
      await w.scangate.coordinator.idle();
      assert.equal(w.scangate.cache.size, 0);
      const metrics = (await request(`${w.url}/metrics`)).text;
      assert.equal(metricValue(metrics, 'scangate_deadline_expiries_total', { reason: 'scanner_error', action: reject === 'true' ? 'denied' : 'admitted' }), 1);
      assert.ok(metricValue(metrics, 'scangate_scanner_calls_total', { operation: 'add_image', outcome: 'network_error' }) >= 1);
    }
  });

  test('401: reported as a credentials problem, without the password', async () => {
    const w = await webhook({ ...faultEnv, ANCHORE_CLI_PASS: 'wrong-password-42' });
    const { res } = await validate(w, { containers: ['nginx:1.25.3'] }, { timeout: '2s' });
    assert.match(res.json.response.status.message, /^Scanner error: nginx:1.25.3 \(container "c0": scanner rejected the credentials \(HTTP 401\)/);
    assert.ok(!res.text.includes('wrong-password-42'));
    assert.ok(!w.logs.raw.some((l) => l.includes('wrong-password-42')));
    assert.equal(w.logs.lines.filter((l) => /rejected the credentials/.test(String(l['msg']))).length, 1);
  });

  test('5xx then recovery: retried within the deadline and admitted', async () => {
    const w = await webhook({ SCANNER_RETRY_BUDGET_MS: '5000' });
    fixture.sim.setFaults({ status: 503, retryAfterSeconds: 0, times: 2 });
    const { res } = await validate(w, { containers: ['nginx:1.25.3'] }, { timeout: '5s' });
    assert.equal(res.json.response.allowed, true);
    assert.equal(fixture.sim.stats().addImage, 3);
  });

  test('429 then recovery: backs off and gets the verdict', async () => {
    // How long it backs off (the Retry-After) is tested on mock timers: test/unit/retry-after.test.ts.
    const w = await webhook({ SCANNER_RETRY_BUDGET_MS: '5000' });
    fixture.sim.setFaults({ status: 429, retryAfterSeconds: 1, times: 1 });
    const { res } = await validate(w, { containers: [STRUTS] }, { timeout: '5s' });
    assert.match(res.json.response.status.message, /^Image failed policy check/);
    assert.equal(fixture.sim.stats().addImage, 2);
    const metrics = (await request(`${w.url}/metrics`)).text;
    assert.equal(metricValue(metrics, 'scangate_scanner_calls_total', { operation: 'add_image', outcome: 'rate_limited' }), 1);
  });

  test('malformed JSON and wrong shapes are protocol errors', async () => {
    for (const fault of [{ malformed: true }, { wrongShape: true }]) {
      fixture.sim.reset();
      const w = await webhook(faultEnv);
      fixture.sim.setFaults(fault);
      const { res } = await validate(w, { containers: ['nginx:1.25.3'] }, { timeout: '2s' });
      assert.equal(res.json.response.allowed, false);
      assert.match(res.json.response.status.message, /^Scanner error: nginx:1.25.3 \(container "c0": scanner (answered add_image with malformed JSON|answered an image list that is not an array)\)$/);
    }
  });

  test('a hanging scanner: the answer still lands before the API server timeout', async () => {
    const w = await webhook(faultEnv);
    fixture.sim.setFaults({ hang: true });
    const { res } = await validate(w, { containers: ['nginx:1.25.3'] }, { timeout: '2s' });
    assert.equal(budgetOf(w), 1700);
    assert.equal(res.json.response.allowed, false);
    assert.match(res.json.response.status.message, /^Scanner error: nginx:1.25.3 \(container "c0": scanner did not answer add_image within 400 ms\)$/);
  });

  test('analysis_failed is a failed scan, not a pass', async () => {
    const w = await webhook();
    fixture.sim.setFaults({ analysisFailed: ['docker.io/library/nginx'] });
    const { res } = await validate(w, { containers: ['nginx:1.25.3'] }, { timeout: '5s' });
    assert.equal(res.json.response.status.message, `${MESSAGES.policyFail}: nginx:1.25.3 (container "c0"): analysis/failed: the scanner could not analyse the image`);
  });
});

describe('other ways in and bad bodies', () => {
  test('v1beta1 AdmissionReview is answered in v1beta1', async () => {
    const w = await webhook();
    const { uid, res } = await validate(w, { containers: [STRUTS] }, { apiVersion: 'admission.k8s.io/v1beta1' });
    assert.equal(res.json.apiVersion, 'admission.k8s.io/v1beta1');
    assert.equal(res.json.response.uid, uid);
    assert.equal(res.json.response.allowed, false);
  });

  test('POST / is an alias of /validate', async () => {
    const w = await webhook();
    const { uid, body } = admissionReview({ containers: ['nginx'] });
    const res = await request(`${w.url}/`, { body });
    assert.equal(res.json.response.uid, uid);
    assert.match(res.json.response.status.message, /^Images using latest tag are not allowed/);
  });

  test('ImageReview: status.allowed and status.reason', async () => {
    const w = await webhook();
    const denied = await request(`${w.url}/image_policy`, { body: imageReview(['nginx', STRUTS]) });
    assert.equal(denied.status, 200);
    assert.equal(denied.json.apiVersion, 'imagepolicy.k8s.io/v1alpha1');
    assert.equal(denied.json.kind, 'ImageReview');
    assert.equal(denied.json.status.allowed, false);
    assert.match(denied.json.status.reason, new RegExp(`^${MESSAGES.latestTag}: nginx \\(container "#1"\\)\\. ${MESSAGES.policyFail}: ${STRUTS} \\(container "#2"\\)`));
    const allowed = await request(`${w.url}/image_policy`, { body: imageReview(['nginx:1.25.3']) });
    assert.deepEqual(allowed.json, { apiVersion: 'imagepolicy.k8s.io/v1alpha1', kind: 'ImageReview', status: { allowed: true } });
  });

  test('objects other than pod creations are allowed untouched', async () => {
    const w = await webhook();
    const { uid, body } = admissionReview({ containers: ['nginx'] }, { operation: 'DELETE' });
    const res = await request(`${w.url}/validate`, { body });
    assert.deepEqual(res.json.response, { uid, allowed: true });
    assert.equal(w.logs.find('decision').length, 0);
  });

  test('malformed bodies are a 400 with a clear message; oversize bodies a 413', async () => {
    const w = await webhook({ MAX_BODY_BYTES: '2048' });
    const cases: Array<[string | Buffer, number, RegExp]> = [
      ['{"apiVersion":', 400, /not valid JSON/],
      ['', 400, /empty/],
      ['{"kind":"Pod"}', 400, /kind must be AdmissionReview/],
      [JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: {} }), 400, /uid is missing/],
      [JSON.stringify({ pad: 'x'.repeat(4000) }), 413, /larger than 2048 bytes/],
      ['['.repeat(2000), 400, /not valid JSON/],
    ];
    for (const [rawBody, status, message] of cases) {
      const res = await request(`${w.url}/validate`, { rawBody });
      assert.equal(res.status, status, `${String(rawBody).slice(0, 30)} -> ${res.text}`);
      assert.match(res.json.message, message);
    }
    const wrongMethod = await request(`${w.url}/validate`, { method: 'GET' });
    assert.equal(wrongMethod.status, 405);
  });

  test('health, readiness and metrics', async () => {
    const w = await webhook();
    assert.equal((await request(`${w.url}/healthz`)).status, 200);
    assert.equal((await request(`${w.url}/readyz`)).status, 200);
    w.scangate.state.ready = false;
    assert.equal((await request(`${w.url}/readyz`)).status, 503);
    w.scangate.state.ready = true;
    await validate(w, { containers: ['nginx'] });
    const metrics = await request(`${w.url}/metrics`);
    assert.match(metrics.headers['content-type'] as string, /text\/plain/);
    assert.equal(metricValue(metrics.text, 'scangate_decisions_total', { endpoint: 'validate', result: 'denied' }), 1);
    assert.match(metrics.text, /scangate_decision_duration_seconds_bucket/);
  });
});
