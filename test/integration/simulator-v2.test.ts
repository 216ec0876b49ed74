/**
 * The scanner simulator's Anchore Enterprise v2 API (and `api: 'both'`) over real sockets on
 * 127.0.0.1:0, driven with Node's fetch the way a v2 client drives Anchore Enterprise 5.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { runSimulatorCli, startScannerSimulator, type ScannerSimulator } from '@scangate/simulator';

const STRUTS = 'docker.io/kaizheh/apache-struts2-cve-2017-5638:2.3.12';
const NGINX = 'docker.io/library/nginx:1.25.3';
const POLICY = '2c53a13c-1765-11e8-82ef-23527761d060';
const AUTH = `Basic ${Buffer.from('admin:foobar').toString('base64')}`;

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

async function call(base: string, method: string, path: string, opts: { body?: unknown; auth?: string | null } = {}): Promise<Answer> {
  const headers: Record<string, string> = {};
  const auth = opts.auth === undefined ? AUTH : opts.auth;
  if (auth !== null) headers['authorization'] = auth;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, {
    method,
    headers,
    ...(opts.body !== undefined ? { body: typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body) } : {}),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

const tagSource = (pullString: string): unknown => ({ source: { tag: { pull_string: pullString } } });

async function add(sim: ScannerSimulator, body: unknown): Promise<any> {
  const res = await call(sim.url, 'POST', '/images?auto_subscribe=false', { body });
  assert.equal(res.status, 200, res.text);
  assert.ok(!Array.isArray(res.json), 'v2 answers one AnchoreImage, not a list');
  return res.json;
}

const checkPath = (digest: string, tag: string, extra = ''): string =>
  `/images/${digest}/check?tag=${encodeURIComponent(tag)}&detail=true&history=false${extra}`;

describe('scanner simulator, v2 API', () => {
  let sim: ScannerSimulator;
  // The analysis lifecycle runs on this clock: it moves only when a test moves it.
  let clock = Date.now();
  before(async () => {
    sim = await startScannerSimulator({ api: 'v2', record: 50, now: () => clock });
  });
  after(async () => {
    await sim.close();
  });
  beforeEach(() => {
    sim.reset();
  });

  it('serves /v2 only: url, version without credentials, ping; no v1 routes', async () => {
    assert.match(sim.url, /^http:\/\/127\.0\.0\.1:\d+\/v2$/);
    assert.deepEqual(sim.urls, { v2: sim.url });
    assert.equal(sim.api, 'v2');
    const version = await call(sim.url, 'GET', '/version', { auth: null });
    assert.equal(version.status, 200);
    assert.equal(version.json.api.version, '2');
    assert.equal(typeof version.json.service.version, 'string');
    assert.equal(typeof version.json.db.schema_version, 'string');
    assert.equal((await call(sim.url, 'GET', '/', { auth: null })).text, '"v2"');
    const v1 = await call(sim.origin, 'GET', '/v1/images');
    assert.equal(v1.status, 404);
    assert.equal(v1.json.code, 404, 'errors are ApiErrorResponse');
    assert.equal((await call(sim.origin, 'GET', '/version')).status, 404, 'no engine-style /version on a v2-only server');
    assert.equal(sim.stats().version, 1);
  });

  it('requires Basic auth and answers 401 as an ApiErrorResponse', async () => {
    for (const auth of [null, `Basic ${Buffer.from('admin:wrong').toString('base64')}`]) {
      const res = await call(sim.url, 'GET', '/images', { auth });
      assert.equal(res.status, 401);
      assert.deepEqual(res.json, { code: 401, error_type: 'unauthorized', message: 'Unauthorized', detail: {} });
    }
    assert.equal(sim.stats().unauthorized, 2);
  });

  it('walks the lifecycle: check answers 404 "not analyzed" until the analysis is over, then a PolicyEvaluation', async () => {
    sim.setAnalysisDelayMs(300);
    const image = await add(sim, tagSource(NGINX));
    assert.equal(image.analysis_status, 'not_analyzed');
    assert.match(image.image_digest, /^sha256:[a-f0-9]{64}$/);
    assert.equal(image.image_detail[0].full_tag, NGINX);
    assert.equal(image.image_detail[0].full_digest, `docker.io/library/nginx@${image.image_digest}`);
    assert.equal(image.image_detail[0].image_digest, image.image_digest);
    assert.equal(image.account_name, 'admin');
    assert.equal(image.imageDigest, undefined, 'no v1 spellings');

    const pending = await call(sim.url, 'GET', checkPath(image.image_digest, NGINX));
    assert.equal(pending.status, 404);
    assert.equal(pending.json.code, 404);
    assert.match(pending.json.message, /^image is not analyzed - analysis_status: (not_analyzed|analyzing)$/);

    clock += 299;
    assert.equal((await call(sim.url, 'GET', `/images/${image.image_digest}`)).json.analysis_status, 'analyzing');
    assert.equal((await call(sim.url, 'GET', checkPath(image.image_digest, NGINX))).status, 404);
    clock += 1;
    assert.equal((await call(sim.url, 'GET', `/images/${image.image_digest}`)).json.analysis_status, 'analyzed');
    const check = await call(sim.url, 'GET', checkPath(image.image_digest, NGINX));
    assert.equal(check.status, 200, check.text);
    assert.equal(check.json.policy_id, POLICY);
    assert.equal(check.json.image_digest, image.image_digest);
    assert.equal(check.json.evaluated_tag, NGINX);
    assert.equal(check.json.evaluations.length, 1);
    const e = check.json.evaluations[0];
    assert.equal(e.status, 'pass');
    assert.equal(e.final_action, 'go');
    assert.equal(e.final_action_reason, 'policy_evaluation');
    assert.equal(e.number_of_findings, 0);
    assert.deepEqual(e.details.findings, []);
    assert.equal(e.details.policy.id, POLICY);
    assert.equal(e.details.policy.version, '2');
  });

  it('fails struts2 with a stop finding (gate, trigger, message), and detail=false drops details', async () => {
    const image = await add(sim, tagSource(STRUTS));
    const check = await call(sim.url, 'GET', checkPath(image.image_digest, STRUTS));
    assert.equal(check.status, 200);
    const e = check.json.evaluations[0];
    assert.equal(e.status, 'fail');
    assert.equal(e.final_action, 'stop');
    assert.equal(e.details.policy_action, 'stop');
    assert.equal(e.number_of_findings, e.details.findings.length);
    assert.deepEqual(e.details.findings[0], {
      trigger_id: 'CVE-2017-5638+struts2-core',
      gate: 'vulnerabilities',
      trigger: 'package',
      message:
        'CRITICAL Vulnerability found in non-os package type (java) - /usr/local/tomcat/webapps/ROOT/WEB-INF/lib/struts2-core-2.3.12.jar (CVE-2017-5638 - https://nvd.nist.gov/vuln/detail/CVE-2017-5638)',
      action: 'stop',
      policy_id: POLICY,
      recommendation: '',
      rule_id: `${POLICY}-rule-0`,
      allowlisted: false,
      allowlist_match: null,
      inherited_from_base: false,
    });
    const brief = await call(sim.url, 'GET', `/images/${image.image_digest}/check?tag=${encodeURIComponent(STRUTS)}&detail=false`);
    assert.equal(brief.json.evaluations[0].details, null);
    assert.equal(brief.json.evaluations[0].status, 'fail');
    const strict = await call(sim.url, 'GET', checkPath(image.image_digest, STRUTS, '&policy_id=scangate-strict'));
    assert.equal(strict.json.policy_id, 'scangate-strict');
  });

  it('the same image and verdict through v1 and v2 (api: both)', async () => {
    const both = await startScannerSimulator({ api: 'both' });
    try {
      assert.deepEqual(Object.keys(both.urls).sort(), ['v1', 'v2']);
      const v2 = await call(both.urls.v2 ?? '', 'POST', '/images?auto_subscribe=false', { body: tagSource(STRUTS) });
      const v1 = await call(both.urls.v1 ?? '', 'POST', '/images?autosubscribe=false', { body: { tag: STRUTS } });
      assert.equal(v1.json[0].imageDigest, v2.json.image_digest);
      const c1 = await call(both.urls.v1 ?? '', 'GET', checkPath(v2.json.image_digest, STRUTS));
      const c2 = await call(both.urls.v2 ?? '', 'GET', checkPath(v2.json.image_digest, STRUTS));
      assert.equal(c1.json[0][v2.json.image_digest][STRUTS][0].status, c2.json.evaluations[0].status);
      const version = await call(both.origin, 'GET', '/version', { auth: null });
      assert.deepEqual(version.json.api, {}, 'the engine-style /version');
      assert.deepEqual(both.stats().byApi, { v1: 2, v2: 2 });
    } finally {
      await both.close();
    }
  });

  it('adds a digest source with its tag; lists by full_tag in {items}', async () => {
    const digest = `sha256:${'ab'.repeat(32)}`;
    const tag = 'docker.io/library/nginx:sha256-abababababab';
    const image = await add(sim, { source: { digest: { pull_string: `docker.io/library/nginx@${digest}`, tag } } });
    assert.equal(image.image_digest, digest);
    assert.equal(image.image_detail[0].full_tag, tag);
    const list = await call(sim.url, 'GET', `/images?full_tag=${encodeURIComponent(tag)}`);
    assert.equal(list.status, 200);
    assert.deepEqual((list.json as { items: Array<{ image_digest: string }> }).items.map((i) => i.image_digest), [digest]);
    assert.equal((await call(sim.url, 'GET', `/images/${digest}`)).json.image_digest, digest);
  });

  it('refuses the v1 spellings and what the spec does not allow (400, ApiErrorResponse)', async () => {
    const digest = (await add(sim, tagSource(NGINX))).image_digest as string;
    const refusals: Array<[string, string, unknown, RegExp]> = [
      ['POST', '/images?auto_subscribe=false', { tag: NGINX }, /'source' is a required property/],
      ['POST', '/images?auto_subscribe=false', { source: { tag: { pullstring: NGINX } } }, /'source.tag.pull_string' is a required property/],
      ['POST', '/images?auto_subscribe=false', { source: { digest: { pull_string: `docker.io/library/nginx@${digest}` } } }, /'source.digest.tag' is a required property/],
      ['POST', '/images?auto_subscribe=false', { source: { tag: { pull_string: NGINX }, digest: { pull_string: 'x', tag: NGINX } } }, /exactly one of/],
      ['POST', '/images?autosubscribe=false', tagSource(NGINX), /Extra query parameter\(s\) autosubscribe not in spec/],
      ['POST', '/images?auto_subscribe=no', tagSource(NGINX), /is not of type 'boolean'/],
      ['GET', `/images/${digest}/check?tag=${encodeURIComponent(NGINX)}&policyId=x`, undefined, /Extra query parameter\(s\) policyId/],
      ['GET', `/images/${digest}/check`, undefined, /'tag' is a required query parameter/],
      ['GET', `/images?fulltag=${encodeURIComponent(NGINX)}`, undefined, /Extra query parameter\(s\) fulltag/],
      ['GET', `/images/${digest.replace(':', '%3A')}`, undefined, /does not match/],
      ['GET', `/images/${digest.replace(':', '%3A')}/check?tag=${encodeURIComponent(NGINX)}`, undefined, /does not match/],
    ];
    for (const [method, path, body, message] of refusals) {
      const res = await call(sim.url, method, path, body === undefined ? {} : { body });
      assert.equal(res.status, 400, `${method} ${path}: ${res.text}`);
      assert.equal(res.json.code, 400);
      assert.equal(res.json.error_type, 'bad_request');
      assert.match(res.json.message, message, `${method} ${path}`);
    }
    assert.equal(sim.stats().encodedDigest, 2);
    assert.equal((await call(sim.url, 'GET', `/images/sha256:${'0'.repeat(64)}`)).status, 404);
  });

  it('applies the same fault knobs, in v2 shapes; the version endpoint only when named', async () => {
    sim.setFaults({ status: 503, retryAfterSeconds: 2 });
    const failed = await call(sim.url, 'POST', '/images?auto_subscribe=false', { body: tagSource(NGINX) });
    assert.equal(failed.status, 503);
    assert.equal(failed.headers.get('retry-after'), '2');
    assert.deepEqual(failed.json, { code: 503, error_type: 'internal_error', message: 'simulated fault: Service Unavailable', detail: { simulated: true } });
    assert.equal((await call(sim.url, 'GET', '/version', { auth: null })).status, 200, 'not faulted unless named');
    sim.setFaults({ status: 500, operations: ['version'] });
    assert.equal((await call(sim.url, 'GET', '/version', { auth: null })).status, 500);
    assert.equal((await call(sim.url, 'POST', '/images?auto_subscribe=false', { body: tagSource(NGINX) })).status, 200);

    sim.setFaults({ malformed: true, operations: ['addImage'] });
    const malformed = await call(sim.url, 'POST', '/images?auto_subscribe=false', { body: tagSource(NGINX) });
    assert.equal(malformed.status, 200);
    assert.equal(malformed.json, undefined);
    sim.setFaults({ wrongShape: true, operations: ['check'] });
    const digest = (await add(sim, tagSource(NGINX))).image_digest as string;
    const wrong = await call(sim.url, 'GET', checkPath(digest, NGINX));
    assert.ok(Array.isArray(wrong.json), 'an array where a PolicyEvaluation is expected');

    sim.setFaults({ noActivePolicy: true });
    const noPolicy = await call(sim.url, 'GET', checkPath(digest, NGINX));
    assert.equal(noPolicy.status, 404);
    assert.equal(noPolicy.json.message, 'user has no active policy to evaluate: admin');
    sim.setFaults({ analysisFailed: ['docker.io/library/redis'] });
    assert.equal((await add(sim, tagSource('docker.io/library/redis:7'))).analysis_status, 'analysis_failed');
  });

  it('records requests and answers, with the credentials reduced to their scheme', async () => {
    await add(sim, tagSource(NGINX));
    const exchanges = sim.exchanges();
    assert.equal(exchanges.length, 1);
    const x = exchanges[0];
    assert.ok(x !== undefined);
    assert.equal(x.api, 'v2');
    assert.equal(x.operation, 'addImage');
    assert.equal(x.method, 'POST');
    assert.equal(x.path, '/images');
    assert.deepEqual(x.query, { auto_subscribe: ['false'] });
    assert.equal(x.headers['authorization'], 'Basic');
    assert.deepEqual(x.requestBody, tagSource(NGINX));
    assert.equal(x.status, 200);
    assert.equal(x.responseHeaders['content-type'], 'application/json');
    assert.equal((x.responseBody as { image_detail: Array<{ full_tag: string }> }).image_detail[0]?.full_tag, NGINX);
    const over = await fetch(`${sim.origin}/_sim/exchanges`);
    const listed = (await over.json()) as { record: number; exchanges: unknown[] };
    assert.equal(listed.record, 50);
    assert.equal(listed.exchanges.length, 1);
    assert.ok(!JSON.stringify(listed).includes(Buffer.from('admin:foobar').toString('base64')));
  });
});

describe('scanner simulator, v1 API next to the v2 probe', () => {
  it('a v1-only server answers /v2/version with 404 and /version with an empty api', async () => {
    const sim = await startScannerSimulator({ api: 'v1' });
    try {
      assert.equal((await call(sim.origin, 'GET', '/v2/version', { auth: null })).status, 404);
      const version = await call(sim.origin, 'GET', '/version', { auth: null });
      assert.deepEqual(version.json.api, {});
    } finally {
      await sim.close();
    }
  });

  it('a percent-encoded digest names no image in v1 either (404), and is counted', async () => {
    const sim = await startScannerSimulator();
    try {
      const added = await call(sim.url, 'POST', '/images?autosubscribe=false', { body: { tag: NGINX } });
      const digest = added.json[0].imageDigest as string;
      assert.equal((await call(sim.url, 'GET', `/images/${digest}`)).status, 200);
      const encoded = await call(sim.url, 'GET', `/images/${encodeURIComponent(digest)}`);
      assert.equal(encoded.status, 404);
      assert.equal(encoded.json.message, 'cannot locate specified image');
      assert.equal(sim.stats().encodedDigest, 1);
    } finally {
      await sim.close();
    }
  });

  it('scanner-sim --api refuses an unknown API', async () => {
    let err = '';
    const code = await runSimulatorCli(['--api', 'v3', '--port', '0'], {}, { stderr: { write: (t: string) => (err += t) } });
    assert.equal(code, 2);
    assert.match(err, /--api must be one of v1, v2, both/);
  });
});
