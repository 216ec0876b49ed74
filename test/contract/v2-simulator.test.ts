/**
 * Contract, v2: the simulator in Anchore Enterprise v2 mode (`api: 'v2'`), every endpoint of the
 * official OpenAPI subset exercised directly with edge cases through the recording proxy; every
 * response is validated against the document, and so is every request the document allows. Requests
 * it refuses (v1 spellings above all) must be refused by the simulator as well, by hand-picked cases
 * and by a property test.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import fc from 'fast-check';
import { anchoreV2Contract } from './anchore-contracts.js';
import type { ApiContract } from './openapi-contract.js';
import { assertConforms, assertRefusesWhatTheDocumentRefuses, send, SIM_AUTH, startRig, type Answer, type Rig } from './rig.js';

const NGINX = 'docker.io/library/nginx:1.25.3';
const NGINX_DIGEST = 'sha256:44cecf0471cd426e852a6465a83680eb5f3e0f78d436b62b511b15bc20ebdca5';
const STRUTS = 'docker.io/kaizheh/apache-struts2-cve-2017-5638:latest';
const STRUTS_DIGEST = 'sha256:959ee9990d5f0729566139ab13bcb6e57ddea84200f5450b59fbcbe6ee39a10a';
const UNKNOWN_DIGEST = `sha256:${'f'.repeat(64)}`;

let v2: ApiContract;
let rig: Rig;
let clockMs = 2_000_000_000_000;

function sendV2(method: string, path: string, options: Parameters<typeof send>[3] = {}): Promise<Answer> {
  return send(rig, method, path, options);
}

const tagSource = (pull: string): unknown => ({ source: { tag: { pull_string: pull } } });

before(async () => {
  v2 = await anchoreV2Contract();
  rig = await startRig({ api: 'v2', now: () => clockMs });
  assert.equal(new URL(rig.url).pathname, '/v2');
});
after(async () => {
  await rig.close();
});
beforeEach(() => {
  rig.simulator.reset();
  rig.proxy.clear();
  clockMs += 3_600_000;
});

/** Asserts the last exchange's request is refused by the document and by the simulator (400). */
function assertRefusedByBoth(got: Answer, what: string, problem?: RegExp): void {
  const e = rig.proxy.exchanges.at(-1);
  assert.ok(e !== undefined);
  const problems = v2.checkRequest(e.request);
  assert.ok(problems.length > 0, `the document allows ${what}: not a refusal case`);
  if (problem !== undefined) assert.ok(problems.some((p) => problem.test(p)), problems.join('\n'));
  assert.equal(got.status, 400, `the simulator accepted ${what}, which the document refuses: ${JSON.stringify(got.body)}`);
  assertConforms(v2, [e], 'response');
}

describe('contract v2: simulator endpoints, edge cases', () => {
  it('GET /v2/version, without credentials', async () => {
    const got = await sendV2('GET', '/version', { auth: false });
    assert.equal((got.body as { api?: { version?: string } }).api?.version, '2');
    assert.deepEqual(assertConforms(v2, rig.proxy.exchanges), ['version_check 200']);
  });

  it('POST /v2/images: tag and digest sources, annotations, image_type, force, auto_subscribe', async () => {
    const bodies: unknown[] = [
      tagSource(NGINX),
      tagSource('nginx:1.25.3'),
      { source: { tag: { pull_string: STRUTS, dockerfile: Buffer.from('FROM scratch\n').toString('base64') } }, image_type: 'docker' },
      { source: { digest: { pull_string: `docker.io/library/nginx@${NGINX_DIGEST}`, tag: NGINX } }, annotations: { team: 'a' } },
      { source: { digest: { pull_string: `docker.io/library/nginx@${NGINX_DIGEST}`, tag: 'docker.io/library/nginx:sha256-44cecf0471cd', creation_timestamp_override: '2026-01-01T00:00:00Z' } } },
      { source: { tag: { pull_string: NGINX }, digest: null, archive: null } },
    ];
    for (const [i, body] of bodies.entries()) {
      const query = ['?auto_subscribe=false', '?force=true', '?auto_subscribe=true&force=false', ''][i % 4] ?? '';
      const got = await sendV2('POST', `/images${query}`, { body });
      assert.equal(got.status, 200, `${JSON.stringify(body)}: ${JSON.stringify(got.body)}`);
      assert.equal(typeof (got.body as { image_digest?: unknown }).image_digest, 'string');
    }
    assert.deepEqual(new Set(assertConforms(v2, rig.proxy.exchanges)), new Set(['add_image 200']));
  });

  it('POST /v2/images: v1 spellings and other bodies the document refuses are refused by the simulator', async () => {
    const refused: Array<[unknown, RegExp?]> = [
      [undefined, /required request body is missing/],
      ['not json'],
      [{ tag: NGINX }],
      [{ source: { tag: { pullstring: NGINX } } }, /pull_string/],
      [{ source: { digest: { pull_string: `docker.io/library/nginx@${NGINX_DIGEST}` } } }, /'tag'/],
      [{ source: { tag: { pull_string: NGINX }, digest: { pull_string: `nginx@${NGINX_DIGEST}`, tag: NGINX } } }, /oneOf/],
      [{ source: {} }, /oneOf/],
      [{ source: null }],
      [{ source: { tag: { pull_string: 42 } } }],
      [{ source: { tag: { pull_string: NGINX, dockerfile: 'not base64!' } } }, /pattern/],
      [{ source: { digest: { pull_string: `nginx@${NGINX_DIGEST}`, tag: NGINX, creation_timestamp_override: 'Dec 1 2026' } } }, /date-time/],
      [{ source: { tag: { pull_string: NGINX } }, annotations: [] }],
      [{ source: { tag: { pull_string: NGINX } }, image_type: 7 }],
    ];
    for (const [body, problem] of refused) {
      const got = await sendV2('POST', '/images?auto_subscribe=false', body === undefined ? {} : { body });
      assertRefusedByBoth(got, JSON.stringify(body), problem);
    }
  });

  it('POST /v2/images: any body the document refuses, the simulator refuses (property)', async () => {
    const reference = fc.constantFrom(NGINX, 'nginx', `nginx@${NGINX_DIGEST}`, '', 'UPPER:1');
    const value = fc.oneof(reference, fc.integer(), fc.constant(null), fc.boolean(), fc.constant({}), fc.array(reference, { maxLength: 2 }));
    const tagSrc = fc.oneof(fc.record({ pull_string: value, pullstring: value, dockerfile: fc.constantFrom('RlJPTQ==', 'bad!') }, { requiredKeys: [] }), value);
    const digestSrc = fc.oneof(fc.record({ pull_string: value, tag: value, creation_timestamp_override: fc.constantFrom('2026-01-01T00:00:00Z', 'now') }, { requiredKeys: [] }), value);
    const source = fc.oneof(fc.record({ tag: tagSrc, digest: digestSrc, archive: fc.constant(null) }, { requiredKeys: [] }), value);
    const body = fc.record({ source, tag: value, annotations: fc.oneof(fc.constant({}), value), image_type: fc.constantFrom('docker', 3) }, { requiredKeys: [] });
    await assertRefusesWhatTheDocumentRefuses(rig, v2, body, (b) => sendV2('POST', '/images', { body: b }));
  });

  it('query parameters the document does not declare, or of the wrong type, are refused by both', async () => {
    const cases: Array<[string, string, unknown]> = [
      ['POST', '/images?autosubscribe=false', tagSource(NGINX)],
      ['POST', '/images?auto_subscribe=no', tagSource(NGINX)],
      ['GET', '/images?fulltag=nginx', undefined],
      ['GET', '/images?image_status=gone', undefined],
      ['GET', `/images/${NGINX_DIGEST}/check?tag=${NGINX}&policyId=x`, undefined],
      ['GET', `/images/${NGINX_DIGEST}/check?detail=true`, undefined],
      ['GET', `/images/${NGINX_DIGEST}/check?tag=${NGINX}&detail=yes`, undefined],
    ];
    await sendV2('POST', '/images', { body: tagSource(NGINX) });
    for (const [method, path, body] of cases) {
      const got = await sendV2(method, path, body === undefined ? {} : { body });
      assertRefusedByBoth(got, `${method} ${path}`);
    }
  });

  it('GET /v2/images and /v2/images/{image_digest}: listed, filtered, known, unknown, and a digest sent as %3A', async () => {
    await sendV2('POST', '/images', { body: tagSource(NGINX) });
    await sendV2('POST', '/images', { body: tagSource(STRUTS) });
    await sendV2('GET', '/images');
    await sendV2('GET', `/images?full_tag=${encodeURIComponent(NGINX)}&history=false&image_status=all&analysis_status=analyzed`);
    await sendV2('GET', '/images?full_tag=docker.io/library/absent:1&image_id=abc');
    assert.equal((await sendV2('GET', `/images/${NGINX_DIGEST}`)).status, 200);
    assert.equal((await sendV2('GET', `/images/${UNKNOWN_DIGEST}`)).status, 404);
    assert.deepEqual(assertConforms(v2, rig.proxy.exchanges), [
      'add_image 200',
      'add_image 200',
      'list_images 200',
      'list_images 200',
      'list_images 200',
      'get_image 200',
      'get_image 404',
    ]);
    rig.proxy.clear();
    const encoded = await sendV2('GET', `/images/${NGINX_DIGEST.replace(':', '%3A')}`);
    assertRefusedByBoth(encoded, 'the digest percent-encoded', /percent-encoded/);
  });

  it('every analysis status of the lifecycle is one of the document\'s values', async () => {
    rig.simulator.setAnalysisDelayMs(1_000);
    const statuses: unknown[] = [];
    const record = async (digest: string): Promise<void> => {
      statuses.push(((await sendV2('GET', `/images/${digest}`)).body as Record<string, unknown>)['analysis_status']);
    };
    await sendV2('POST', '/images', { body: tagSource(NGINX) });
    await record(NGINX_DIGEST);
    clockMs += 500;
    await record(NGINX_DIGEST);
    clockMs += 1_000;
    await record(NGINX_DIGEST);
    rig.simulator.setFaults({ analysisFailed: ['docker.io/kaizheh/apache-struts2-cve-2017-5638'] });
    await sendV2('POST', '/images', { body: tagSource(STRUTS) });
    clockMs += 1_000;
    await record(STRUTS_DIGEST);
    assert.deepEqual(statuses, ['not_analyzed', 'analyzing', 'analyzed', 'analysis_failed']);
    assertConforms(v2, rig.proxy.exchanges);
  });

  it('GET /v2/images/{image_digest}/check: pass, fail, detail=false, history, interactive, base_digest, policy ids, every 404', async () => {
    await sendV2('POST', '/images', { body: tagSource(NGINX) });
    await sendV2('POST', '/images', { body: tagSource(STRUTS) });
    const check = (digest: string, query: string): Promise<Answer> => sendV2('GET', `/images/${digest}/check?${query}`);
    const pass = await check(NGINX_DIGEST, `tag=${NGINX}&detail=true&history=false`);
    assert.equal((pass.body as { evaluations: Array<{ status: string }> }).evaluations[0]?.status, 'pass');
    const fail = await check(STRUTS_DIGEST, `tag=${encodeURIComponent(STRUTS)}&detail=true&history=false&interactive=true&base_digest=auto`);
    assert.equal((fail.body as { evaluations: Array<{ status: string }> }).evaluations[0]?.status, 'fail');
    assert.equal(((await check(STRUTS_DIGEST, `tag=${STRUTS}&detail=false`)).body as { evaluations: Array<{ details: unknown }> }).evaluations[0]?.details, null);
    assert.equal((await check(STRUTS_DIGEST, `tag=${STRUTS}&policy_id=scangate-strict`)).status, 200);
    assert.equal((await check(STRUTS_DIGEST, `tag=${STRUTS}&policy_id=no-such-policy`)).status, 404);
    assert.equal((await check(STRUTS_DIGEST, 'tag=docker.io/library/other:1')).status, 404);
    assert.equal((await check(UNKNOWN_DIGEST, `tag=${NGINX}`)).status, 404);
    rig.simulator.setFaults({ noActivePolicy: true });
    assert.equal((await check(NGINX_DIGEST, `tag=${NGINX}`)).status, 404);
    assert.deepEqual(new Set(assertConforms(v2, rig.proxy.exchanges)), new Set(['add_image 200', 'get_image_policy_check_by_digest 200', 'get_image_policy_check_by_digest 404']));
  });

  it('GET /v2/images/{image_digest}/check while analysing: 404 with an ApiErrorResponse', async () => {
    rig.simulator.setAnalysisDelayMs(1_000);
    await sendV2('POST', '/images', { body: tagSource(NGINX) });
    const got = await sendV2('GET', `/images/${NGINX_DIGEST}/check?tag=${NGINX}`);
    assert.equal(got.status, 404);
    assertConforms(v2, rig.proxy.exchanges);
  });

  it('every operation without credentials: 401 with an error body (version needs none)', async () => {
    await sendV2('POST', '/images', { body: tagSource(NGINX), auth: false });
    await sendV2('GET', '/images', { auth: false });
    await sendV2('GET', `/images/${NGINX_DIGEST}`, { auth: false });
    await sendV2('GET', `/images/${NGINX_DIGEST}/check?tag=${NGINX}`, { auth: false });
    assert.deepEqual(assertConforms(v2, rig.proxy.exchanges, 'response'), ['add_image 401', 'list_images 401', 'get_image 401', 'get_image_policy_check_by_digest 401']);
  });

  it('injected 4xx/5xx answers carry ApiErrorResponse bodies (and Retry-After when asked)', async () => {
    for (const status of [400, 403, 404, 429, 500, 502, 503, 504]) {
      rig.simulator.setFaults({ status, retryAfterSeconds: 2 });
      const res = await fetch(`${rig.url}/images/${NGINX_DIGEST}/check?tag=${NGINX}`, { headers: { authorization: SIM_AUTH } });
      await res.arrayBuffer();
      assert.equal(res.status, status);
      assert.equal(res.headers.get('retry-after'), '2');
    }
    assertConforms(v2, rig.proxy.exchanges);
  });
});
