/**
 * Contract, v1: every simulator endpoint the client uses (and the service endpoints beside them),
 * exercised directly with edge cases through the recording proxy; every response is validated
 * against the Anchore Engine v1 document. Requests that the document allows are validated too;
 * requests it refuses must be refused by the simulator as well (a simulator that accepts what the
 * real engine would refuse hides client bugs), shown by hand-picked cases and by a property test.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import fc from 'fast-check';
import { anchoreV1Contract } from './anchore-contracts.js';
import type { ApiContract } from './openapi-contract.js';
import { assertConforms, assertRefusesWhatTheDocumentRefuses, send, SIM_AUTH, startRig, type Answer, type Rig } from './rig.js';

const NGINX = 'docker.io/library/nginx:1.25.3';
const NGINX_DIGEST = 'sha256:44cecf0471cd426e852a6465a83680eb5f3e0f78d436b62b511b15bc20ebdca5';
const STRUTS = 'docker.io/kaizheh/apache-struts2-cve-2017-5638:latest';
const STRUTS_DIGEST = 'sha256:959ee9990d5f0729566139ab13bcb6e57ddea84200f5450b59fbcbe6ee39a10a';
const UNKNOWN_DIGEST = `sha256:${'f'.repeat(64)}`;

let v1: ApiContract;
let root: ApiContract;
let rig: Rig;
let clockMs = 1_900_000_000_000;

type Sent = Answer;

function sendV1(method: string, path: string, options: Parameters<typeof send>[3] = {}): Promise<Sent> {
  return send(rig, method, path, options);
}

before(async () => {
  [v1, root] = await Promise.all([anchoreV1Contract(), anchoreV1Contract('')]);
  rig = await startRig({ now: () => clockMs });
});
after(async () => {
  await rig.close();
});
beforeEach(() => {
  rig.simulator.reset();
  rig.proxy.clear();
  clockMs += 3_600_000;
});

/** The recorded exchanges conform on both sides. */
function conformsBoth(contract: ApiContract = v1): string[] {
  return assertConforms(contract, rig.proxy.exchanges);
}

describe('contract v1: simulator endpoints, edge cases', () => {
  it('service endpoints: ping under /v1, version and health at the root', async () => {
    assert.equal((await sendV1('GET', '/')).body, 'v1');
    assert.deepEqual(conformsBoth(), ['ping 200']);
    rig.proxy.clear();
    await sendV1('GET', '/version', { atRoot: true, auth: false });
    await sendV1('GET', '/health', { atRoot: true, auth: false });
    assert.deepEqual(conformsBoth(root), ['version_check 200', 'health_check 200']);
  });

  it('POST /images: every body form the document allows, with force, autosubscribe, annotations', async () => {
    const bodies: unknown[] = [
      { tag: NGINX },
      { tag: NGINX, digest: NGINX_DIGEST },
      { tag: NGINX, digest: `docker.io/library/nginx@${NGINX_DIGEST}`, created_at: '2026-01-01T00:00:00Z' },
      { tag: 'nginx:1.25.3', image_type: 'docker', annotations: { team: 'a', ticket: 42 } },
      { source: { tag: { pullstring: STRUTS } } },
      { source: { tag: { pullstring: STRUTS, dockerfile: Buffer.from('FROM scratch\n').toString('base64') } } },
      { source: { digest: { pullstring: `docker.io/library/nginx@${NGINX_DIGEST}`, tag: NGINX, creation_timestamp_override: '2026-01-01T00:00:00Z' } } },
      { source: { digest: { pullstring: `docker.io/library/nginx@${NGINX_DIGEST}`, tag: NGINX }, tag: null } },
    ];
    for (const [i, body] of bodies.entries()) {
      const query = ['?autosubscribe=false', '?force=true', '?autosubscribe=true&force=false', ''][i % 4] ?? '';
      const got = await sendV1('POST', `/images${query}`, { body });
      assert.equal(got.status, 200, `${JSON.stringify(body)}: ${JSON.stringify(got.body)}`);
    }
    assert.deepEqual(new Set(conformsBoth()), new Set(['add_image 200']));
  });

  it('POST /images: bodies the document refuses are refused by the simulator too, with conforming error bodies', async () => {
    const refused: Array<[unknown, string | undefined]> = [
      [undefined, undefined],
      ['not json', undefined],
      [[{ tag: NGINX }], undefined],
      [{ tag: 42 }, undefined],
      [{ digest: NGINX_DIGEST }, undefined],
      [{ annotations: 'x', tag: NGINX }, undefined],
      [{ source: { tag: { pullstring: NGINX }, digest: { pullstring: `nginx@${NGINX_DIGEST}`, tag: NGINX } } }, undefined],
      [{ source: { digest: { pullstring: `nginx@${NGINX_DIGEST}` } } }, undefined],
      [{ source: { tag: {} } }, undefined],
      [{ source: { tag: { pull_string: NGINX } } }, undefined],
      [{ source: {} }, undefined],
      [{ source: { tag: { pullstring: NGINX, dockerfile: 'not base64!' } } }, undefined],
      [{ tag: NGINX, created_at: 'yesterday' }, undefined],
    ];
    for (const [body] of refused) {
      rig.proxy.clear();
      const got = await sendV1('POST', '/images?autosubscribe=false', body === undefined ? {} : { body });
      const [e] = rig.proxy.exchanges;
      assert.ok(e !== undefined);
      assert.ok(v1.checkRequest(e.request).length > 0, `the document allows ${JSON.stringify(body)}: not a refusal case`);
      assert.equal(got.status, 400, `the simulator accepted ${JSON.stringify(body)}, which the document refuses`);
      assertConforms(v1, [e], 'response');
    }
  });

  it('POST /images: any body the document refuses, the simulator refuses (property)', async () => {
    const reference = fc.constantFrom(NGINX, 'nginx', `nginx@${NGINX_DIGEST}`, NGINX_DIGEST, '', 'UPPER:1');
    const value = fc.oneof(reference, fc.integer(), fc.constant(null), fc.boolean(), fc.constant({}), fc.array(reference, { maxLength: 2 }));
    const source = fc.oneof(
      fc.record({ tag: fc.oneof(fc.record({ pullstring: value }, { requiredKeys: [] }), value) }, { requiredKeys: [] }),
      fc.record({ digest: fc.oneof(fc.record({ pullstring: value, tag: value }, { requiredKeys: [] }), value) }, { requiredKeys: [] }),
      fc.record({ tag: fc.record({ pullstring: value }), digest: fc.record({ pullstring: value, tag: value }) }, { requiredKeys: [] }),
      value,
    );
    const body = fc.record({ tag: value, digest: value, source, annotations: fc.oneof(fc.constant({}), value) }, { requiredKeys: [] });
    await assertRefusesWhatTheDocumentRefuses(rig, v1, body, (b) => sendV1('POST', '/images', { body: b }));
  });

  it('GET /images and GET /images/{imageDigest}: listed, filtered, known and unknown', async () => {
    await sendV1('POST', '/images?autosubscribe=false', { body: { tag: NGINX } });
    await sendV1('POST', '/images?autosubscribe=false', { body: { tag: STRUTS } });
    await sendV1('GET', '/images');
    await sendV1('GET', `/images?fulltag=${encodeURIComponent(NGINX)}`);
    await sendV1('GET', '/images?fulltag=docker.io/library/absent:1&history=false&image_status=all&analysis_status=analyzed');
    assert.equal((await sendV1('GET', `/images/${NGINX_DIGEST}`)).status, 200);
    assert.equal((await sendV1('GET', `/images/${UNKNOWN_DIGEST}`)).status, 404);
    assert.deepEqual(conformsBoth(), ['add_image 200', 'add_image 200', 'list_images 200', 'list_images 200', 'list_images 200', 'get_image 200', 'get_image 404']);
  });

  it('every analysis status of the lifecycle is one of the document\'s values', async () => {
    rig.simulator.setAnalysisDelayMs(1_000);
    const statuses: unknown[] = [];
    const record = async (): Promise<void> => {
      const got = await sendV1('GET', `/images/${NGINX_DIGEST}`);
      statuses.push((got.body as Array<Record<string, unknown>>)[0]?.['analysis_status']);
    };
    await sendV1('POST', '/images', { body: { tag: NGINX } });
    await record();
    clockMs += 500;
    await record();
    clockMs += 1_000;
    await record();
    rig.simulator.setFaults({ analysisFailed: ['docker.io/kaizheh/apache-struts2-cve-2017-5638'] });
    await sendV1('POST', '/images', { body: { tag: STRUTS } });
    clockMs += 1_000;
    statuses.push(((await sendV1('GET', `/images/${STRUTS_DIGEST}`)).body as Array<Record<string, unknown>>)[0]?.['analysis_status']);
    assert.deepEqual(statuses, ['not_analyzed', 'analyzing', 'analyzed', 'analysis_failed']);
    conformsBoth();
  });

  it('GET /images/{imageDigest}/check: pass, fail, detail, history, interactive, policy ids, and every 4xx', async () => {
    await sendV1('POST', '/images', { body: { tag: NGINX } });
    await sendV1('POST', '/images', { body: { tag: STRUTS } });
    const check = (digest: string, query: string): Promise<Sent> => sendV1('GET', `/images/${digest}/check?${query}`);
    assert.equal((await check(NGINX_DIGEST, `tag=${NGINX}&detail=true&history=false`)).status, 200);
    assert.equal((await check(STRUTS_DIGEST, `tag=${encodeURIComponent(STRUTS)}&detail=true&history=false`)).status, 200);
    assert.equal((await check(STRUTS_DIGEST, `tag=${STRUTS}&detail=false&history=true&interactive=true`)).status, 200);
    assert.equal((await check(STRUTS_DIGEST, `tag=${STRUTS}&policyId=scangate-strict`)).status, 200);
    assert.equal((await check(STRUTS_DIGEST, `tag=${STRUTS}&policyId=no-such-policy`)).status, 404);
    assert.equal((await check(STRUTS_DIGEST, 'tag=docker.io/library/other:1')).status, 404);
    assert.equal((await check(UNKNOWN_DIGEST, `tag=${NGINX}`)).status, 404);
    rig.simulator.setFaults({ noActivePolicy: true });
    assert.equal((await check(NGINX_DIGEST, `tag=${NGINX}`)).status, 404);
    assert.deepEqual(new Set(conformsBoth()), new Set(['add_image 200', 'get_image_policy_check 200', 'get_image_policy_check 404']));
    rig.proxy.clear();
    // Without the required tag: the document refuses the request, the simulator answers 400.
    assert.equal((await check(NGINX_DIGEST, 'detail=true')).status, 400);
    const [e] = rig.proxy.exchanges;
    assert.ok(e !== undefined && v1.checkRequest(e.request).some((p) => /required query parameter tag/.test(p)));
    assertConforms(v1, [e], 'response');
  });

  it('GET /images/{imageDigest}/check while analysing: 404 with the error body', async () => {
    rig.simulator.setAnalysisDelayMs(1_000);
    await sendV1('POST', '/images', { body: { tag: NGINX } });
    const got = await sendV1('GET', `/images/${NGINX_DIGEST}/check?tag=${NGINX}`);
    assert.equal(got.status, 404);
    assert.match(String((got.body as Record<string, unknown>)['message']), /not analyzed/);
    conformsBoth();
  });

  it('GET /images/{imageDigest}/vuln and /vuln/{vtype}', async () => {
    await sendV1('POST', '/images', { body: { tag: STRUTS } });
    assert.deepEqual((await sendV1('GET', `/images/${STRUTS_DIGEST}/vuln`)).body, ['os', 'non-os', 'all']);
    for (const vtype of ['all', 'os', 'non-os']) assert.equal((await sendV1('GET', `/images/${STRUTS_DIGEST}/vuln/${vtype}?vendor_only=false`)).status, 200);
    assert.equal((await sendV1('GET', `/images/${STRUTS_DIGEST}/vuln/bogus`)).status, 404);
    assert.equal((await sendV1('GET', `/images/${UNKNOWN_DIGEST}/vuln/all`)).status, 404);
    conformsBoth();
  });

  it('every operation without credentials: 401 with an error body', async () => {
    await sendV1('POST', '/images', { body: { tag: NGINX }, auth: false });
    await sendV1('GET', '/images', { auth: false });
    await sendV1('GET', `/images/${NGINX_DIGEST}`, { auth: false });
    await sendV1('GET', `/images/${NGINX_DIGEST}/check?tag=${NGINX}`, { auth: false });
    await sendV1('GET', `/images/${NGINX_DIGEST}/vuln/all`, { auth: false });
    const ops = assertConforms(v1, rig.proxy.exchanges, 'response');
    assert.deepEqual(ops, ['add_image 401', 'list_images 401', 'get_image 401', 'get_image_policy_check 401', 'get_image_vulnerabilities_by_type 401']);
  });

  it('injected 4xx/5xx answers carry conforming error bodies (and Retry-After when asked)', async () => {
    for (const status of [400, 403, 404, 429, 500, 502, 503, 504]) {
      rig.simulator.setFaults({ status, retryAfterSeconds: 1 });
      const res = await fetch(`${rig.url}/images/${NGINX_DIGEST}`, { headers: { authorization: SIM_AUTH } });
      await res.arrayBuffer();
      assert.equal(res.status, status);
      assert.equal(res.headers.get('retry-after'), '1');
    }
    conformsBoth();
  });
});
