/**
 * The contract can fail: drift of every kind the contract suites guard against, fed to the
 * validator, is reported (and the same exchanges put right pass, so each case tests one thing).
 * Hand-made exchanges for precision, then the simulator's own wrong-shape and malformed faults
 * through the recording proxy, so the whole pipeline is shown to catch a drifting server.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { anchoreV1Contract, anchoreV2Contract } from './anchore-contracts.js';
import type { ApiContract, HttpExchange } from './openapi-contract.js';
import { contractProblems, startRig, type Rig } from './rig.js';

const D = `sha256:${'0123456789abcdef'.repeat(4)}`;
const JSON_HEADERS = { 'content-type': 'application/json' };

function exchange(
  method: string,
  url: string,
  status: number,
  responseBody: unknown,
  request: { body?: unknown; headers?: Record<string, string> } = {},
  responseHeaders: Record<string, string> = JSON_HEADERS,
): HttpExchange {
  const requestBody = request.body === undefined ? Buffer.alloc(0) : Buffer.from(typeof request.body === 'string' ? request.body : JSON.stringify(request.body));
  return {
    request: {
      method,
      url,
      headers: { ...(request.body !== undefined ? JSON_HEADERS : {}), authorization: 'Basic YWRtaW46Zm9vYmFy', ...request.headers },
      body: requestBody,
    },
    response: {
      status,
      headers: responseHeaders,
      body: Buffer.from(typeof responseBody === 'string' ? responseBody : JSON.stringify(responseBody)),
    },
  };
}

function v1Image(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    imageDigest: D,
    analysis_status: 'analyzed',
    image_status: 'active',
    created_at: '2026-11-22T10:00:00Z',
    last_updated: '2026-11-22T10:00:00Z',
    annotations: {},
    image_detail: [{ fulltag: 'docker.io/library/nginx:1.25.3', imageDigest: D, dockerfile: null, created_at: '2026-11-22T10:00:00Z' }],
    ...overrides,
  };
}

function v2Image(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    image_digest: D,
    analysis_status: 'analyzed',
    image_status: 'active',
    created_at: '2026-11-22T10:00:00Z',
    analysis_status_detail: null,
    image_detail: [{ full_tag: 'docker.io/library/nginx:1.25.3', image_digest: D, dockerfile: null }],
    ...overrides,
  };
}

/** ANCHORE-V2-API.md section 6, the failing image. */
function v2Evaluation(overrides: Record<string, unknown> = {}, finding: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    policy_id: 'pol-1',
    image_digest: D,
    evaluated_tag: 'reg.example.com/shop/api:1.4.0',
    evaluations: [
      {
        status: 'fail',
        final_action: 'stop',
        final_action_reason: 'policy_evaluation',
        evaluation_time: '2025-06-02T10:15:00Z',
        evaluation_problems: [],
        number_of_findings: 1,
        image_allowlisted: false,
        image_denylisted: false,
        image_mapped_to_rule: true,
        matched_mapping_rule: null,
        details: {
          policy: { id: 'pol-1', name: 'Default', version: '2', rule_sets: [], mappings: [] },
          policy_action: 'stop',
          findings: [
            {
              trigger_id: 'CVE-2021-44228+log4j-core-2.14.1.jar',
              gate: 'vulnerabilities',
              trigger: 'package',
              message: 'CRITICAL Vulnerability found in non-os package type (java) - log4j-core-2.14.1.jar (CVE-2021-44228)',
              action: 'stop',
              policy_id: 'pol-1',
              recommendation: '',
              rule_id: 'rule-1',
              allowlisted: false,
              allowlist_match: null,
              inherited_from_base: false,
              ...finding,
            },
          ],
        },
        ...overrides,
      },
    ],
  };
}

/** Asserts one problem at least, each matching `pattern`. */
function assertCaught(contract: ApiContract, e: HttpExchange, pattern: RegExp): void {
  const problems = contract.check(e);
  assert.ok(problems.length > 0, `not caught: ${e.request.method} ${e.request.url} -> ${String(e.response.status)}`);
  assert.ok(problems.some((p) => pattern.test(p)), `caught, but not as ${String(pattern)}:\n${problems.join('\n')}`);
}

function assertClean(contract: ApiContract, e: HttpExchange): void {
  assert.deepEqual(contract.check(e), []);
}

let v1: ApiContract;
let v2: ApiContract;
before(async () => {
  [v1, v2] = await Promise.all([anchoreV1Contract(), anchoreV2Contract()]);
});

describe('contract validator: v1 drift is caught', () => {
  const add = (body: unknown, status = 200, response: unknown = [v1Image()], url = '/v1/images?autosubscribe=false'): HttpExchange =>
    exchange('POST', url, status, response, { body });

  it('controls: the right exchanges pass', () => {
    assertClean(v1, add({ tag: 'docker.io/library/nginx:1.25.3' }));
    assertClean(v1, add({ tag: 'docker.io/library/nginx:1.25.3', digest: D }));
    assertClean(v1, add({ source: { digest: { pullstring: `docker.io/library/nginx@${D}`, tag: 'docker.io/library/nginx:1.25.3' } } }));
    assertClean(v1, exchange('GET', `/v1/images/${D}`, 200, [v1Image({ image_detail: [] })]));
    assertClean(v1, exchange('GET', `/v1/images/${D}/check?tag=docker.io/library/nginx:1.25.3&detail=true&history=false`, 404, { message: 'image is not analyzed', httpcode: 404, detail: {} }));
  });

  it('response: an object where the spec has an array (AnchoreImageList)', () => {
    assertCaught(v1, exchange('GET', `/v1/images/${D}`, 200, v1Image()), /body: must be array/);
  });

  it('response: an analysis_status outside the enum, a date that is not date-time, a wrongly typed field', () => {
    assertCaught(v1, exchange('GET', `/v1/images/${D}`, 200, [v1Image({ analysis_status: 'done' })]), /analysis_status: must be equal to one of the allowed values/);
    assertCaught(v1, exchange('GET', `/v1/images/${D}`, 200, [v1Image({ created_at: '22/11/2026' })]), /created_at: must match format "date-time"/);
    assertCaught(v1, exchange('GET', `/v1/images/${D}`, 200, [v1Image({ imageDigest: 42 })]), /imageDigest: must be string/);
    assertCaught(v1, exchange('GET', `/v1/images/${D}`, 200, [v1Image({ annotations: null })]), /annotations: must be object/);
  });

  it('response: a status the operation does not document, a non-JSON body, a wrong content type', () => {
    assertCaught(v1, exchange('GET', `/v1/images/${D}`, 418, { message: 'teapot' }), /status 418 is not documented/);
    assertCaught(v1, exchange('POST', '/v1/images', 201, [v1Image()], { body: { tag: 'nginx:1' } }), /status 201 is not documented/);
    assertCaught(v1, exchange('GET', `/v1/images/${D}`, 200, '{"imageDigest": "sha256:<trunc'), /body is not JSON/);
    assertCaught(v1, exchange('GET', `/v1/images/${D}`, 200, [v1Image()], {}, { 'content-type': 'text/html' }), /content type text\/html/);
    assertCaught(v1, exchange('GET', `/v1/images/${D}`, 404, { message: 42 }), /message: must be string/);
  });

  it('request: a body the spec refuses', () => {
    assertCaught(v1, add({ tag: 42 }), /body\/tag: must be string/);
    assertCaught(v1, add({ digest: D }), /body: must match a schema in anyOf/);
    assertCaught(v1, add(undefined), /required request body is missing/);
    assertCaught(v1, add('tag=nginx'), /not JSON/);
    assertCaught(v1, add({ source: { tag: { pullstring: 'nginx:1' }, digest: { pullstring: `nginx@${D}`, tag: 'nginx:1' } } }), /must match exactly one schema in oneOf/);
    assertCaught(v1, add({ source: { digest: { pullstring: `nginx@${D}` } } }), /must have required property 'tag'/);
    assertCaught(v1, add({ source: { tag: { pull_string: 'nginx:1' } } }), /must have required property 'pullstring'/);
    const form = exchange('POST', '/v1/images', 200, [v1Image()], { body: '{}', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assertCaught(v1, form, /content type application\/x-www-form-urlencoded is not one of application\/json/);
  });

  it('request: parameters the spec refuses', () => {
    assertCaught(v1, add({ tag: 'nginx:1' }, 200, [v1Image()], '/v1/images?autosubscribe=no'), /query parameter autosubscribe="no": must be boolean/);
    assertCaught(v1, add({ tag: 'nginx:1' }, 200, [v1Image()], '/v1/images?auto_subscribe=false'), /query parameter auto_subscribe is not declared/);
    assertCaught(v1, add({ tag: 'nginx:1' }, 200, [v1Image()], '/v1/images?force=true&force=false'), /force is sent 2 times/);
    assertCaught(v1, exchange('GET', `/v1/images/${D}/check?detail=true`, 200, []), /required query parameter tag is missing/);
    assertCaught(v1, exchange('GET', `/v1/images/${D}/check?tag=nginx:1&policy_id=x`, 200, []), /policy_id is not declared/);
  });

  it('request: the digest percent-encoded, not a digest, a GET with a body, a method or path the spec lacks', () => {
    assertCaught(v1, exchange('GET', `/v1/images/${D.replace(':', '%3A')}`, 200, [v1Image()]), /imageDigest is sent percent-encoded .*":"/);
    assertCaught(v1, exchange('GET', `/v1/images/${D.replace(':', '%3a')}/check?tag=nginx:1`, 200, []), /percent-encoded/);
    assertCaught(v1, exchange('GET', '/v1/images/nginx:1.25.3', 200, [v1Image()]), /imageDigest="nginx:1.25.3": must match pattern/);
    assertCaught(v1, exchange('GET', `/v1/images/${D}`, 200, [v1Image()], { body: { tag: 'x' } }), /takes none/);
    assertCaught(v1, exchange('PUT', `/v1/images/${D}`, 200, [v1Image()]), /PUT is not an operation of \/images\/\{imageDigest\}/);
    assertCaught(v1, exchange('GET', `/v1/image/${D}`, 200, [v1Image()]), /no path of the Anchore Engine v1 spec matches/);
    assertCaught(v1, exchange('GET', `/images/${D}`, 200, [v1Image()]), /outside the API's base path \/v1/);
  });
});

describe('contract validator: v2 drift is caught', () => {
  const get = (body: unknown, status = 200): HttpExchange => exchange('GET', `/v2/images/${D}`, status, body);
  const check = (body: unknown, query = 'tag=reg.example.com/shop/api:1.4.0'): HttpExchange => exchange('GET', `/v2/images/${D}/check?${query}`, 200, body);

  it('controls: the right exchanges pass (the worked examples of ANCHORE-V2-API.md)', () => {
    assertClean(v2, get(v2Image()));
    assertClean(v2, check(v2Evaluation()));
    assertClean(v2, check(v2Evaluation({ status: 'pass', final_action: 'go', number_of_findings: 0, details: null })));
    assertClean(v2, exchange('POST', '/v2/images?auto_subscribe=false', 200, v2Image(), { body: { source: { tag: { pull_string: 'nginx:1.25.3' } } } }));
    assertClean(v2, exchange('GET', '/v2/version', 200, { service: { version: '5.21.0' }, api: { version: '2' }, db: { schema_version: '5210' } }));
    assertClean(v2, exchange('GET', '/v2/images?full_tag=nginx:1.25.3', 200, { items: [v2Image()] }));
  });

  it('response: a v1 shape on a v2 endpoint (array of images; images without the items wrapper)', () => {
    assertCaught(v2, get([v2Image()]), /body: must be object/);
    assertCaught(v2, exchange('GET', '/v2/images', 200, [v2Image()]), /body: must be object/);
    assertCaught(v2, exchange('GET', '/v2/images', 200, { items: v2Image() }), /items: must be array/);
  });

  it('response: a null that is not nullable, an enum and a format broken', () => {
    assertCaught(v2, get(v2Image({ image_digest: null })), /image_digest: must be string/);
    assertCaught(v2, get(v2Image({ image_status: 'deleting' })), /image_status: must be equal to one of the allowed values/);
    assertCaught(v2, get(v2Image({ last_updated: 'yesterday' })), /last_updated: must match format "date-time"/);
  });

  it('response: a policy evaluation missing a required field, with a wrong finding, or an extra policy property', () => {
    const noStatus = v2Evaluation();
    delete ((noStatus['evaluations'] as Array<Record<string, unknown>>)[0] ?? {})['status'];
    assertCaught(v2, check(noStatus), /must have required property 'status'/);
    assertCaught(v2, check(v2Evaluation({ final_action: 'fail' })), /final_action: must be equal to one of the allowed values/);
    assertCaught(v2, check(v2Evaluation({}, { allowlisted: 'false' })), /allowlisted: must be boolean/);
    assertCaught(v2, check(v2Evaluation({}, { action: 'STOP' })), /action: must be equal to one of the allowed values/);
    const extra = v2Evaluation({ details: { policy: { id: 'p', name: 'n', version: '2', rule_sets: [], mappings: [], bundle: true }, policy_action: 'go', findings: [] } });
    assertCaught(v2, check(extra), /must NOT have additional properties \(bundle\)/);
    assertCaught(v2, check(v2Evaluation({ details: { policy_action: 'go', findings: [] } })), /must have required property 'policy'/);
  });

  it('response: statuses the spec does not document (201, 418); 401 only with an error body', () => {
    assertCaught(v2, get(v2Image(), 201), /status 201 is not documented/);
    assertCaught(v2, get({ message: 'teapot' }, 418), /status 418 is not documented/);
    assertClean(v2, get({ code: 401, message: 'Unauthorized', detail: {} }, 401));
    assertCaught(v2, get({ code: '401', message: 'Unauthorized' }, 401), /code: must be integer/);
    assertCaught(v2, exchange('GET', `/v2/images/${D}`, 200, v2Image(), {}, { 'content-type': 'text/plain' }), /content type text\/plain/);
  });

  it('request: v1 spellings sent to v2 (pullstring, autosubscribe, policyId, fulltag, top-level tag)', () => {
    const add = (body: unknown, query = 'auto_subscribe=false'): HttpExchange => exchange('POST', `/v2/images?${query}`, 200, v2Image(), { body });
    assertCaught(v2, add({ source: { tag: { pullstring: 'nginx:1.25.3' } } }), /must have required property 'pull_string'/);
    assertCaught(v2, add({ source: { tag: { pull_string: 'nginx:1' } } }, 'autosubscribe=false'), /autosubscribe is not declared/);
    assertCaught(v2, add({ source: {} }), /must match exactly one schema in oneOf/);
    assertCaught(v2, add({ source: { digest: { pull_string: `nginx@${D}` } } }), /must have required property 'tag'/);
    assertCaught(v2, add(undefined), /required request body is missing/);
    assertCaught(v2, check(v2Evaluation(), 'tag=x&policyId=p'), /policyId is not declared/);
    assertCaught(v2, check(v2Evaluation(), 'detail=true'), /required query parameter tag is missing/);
    assertCaught(v2, exchange('GET', '/v2/images?fulltag=nginx:1', 200, { items: [] }), /fulltag is not declared/);
    assertCaught(v2, exchange('GET', '/v2/images?image_status=gone', 200, { items: [] }), /image_status="gone": must be equal to one of the allowed values/);
  });

  it('request: the digest percent-encoded or not a sha256 digest (the spec\'s own pattern)', () => {
    assertCaught(v2, exchange('GET', `/v2/images/${D.replace(':', '%3A')}`, 200, v2Image()), /image_digest is sent percent-encoded/);
    assertCaught(v2, exchange('GET', `/v2/images/sha256:${'A'.repeat(63)}`, 200, v2Image()), /image_digest=.*must match pattern/);
    assertCaught(v2, exchange('GET', '/v1/images', 200, { items: [] }), /outside the API's base path \/v2/);
  });
});

describe('contract validator: a drifting simulator is caught through the recording proxy', () => {
  let rig: Rig;
  before(async () => {
    rig = await startRig();
  });
  after(async () => {
    await rig.close();
  });

  it('wrongShape and malformed faults on every v1 operation fail the contract', async () => {
    const auth = { authorization: `Basic ${Buffer.from('admin:foobar').toString('base64')}`, 'content-type': 'application/json' };
    const send = async (method: string, path: string, body?: unknown): Promise<void> => {
      const res = await fetch(`${rig.url}${path}`, { method, headers: auth, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
      await res.arrayBuffer();
    };
    const calls = async (): Promise<void> => {
      await send('POST', '/images?autosubscribe=false', { tag: 'docker.io/library/nginx:1.25.3' });
      await send('GET', '/images/sha256:44cecf0471cd426e852a6465a83680eb5f3e0f78d436b62b511b15bc20ebdca5');
      await send('GET', '/images/sha256:44cecf0471cd426e852a6465a83680eb5f3e0f78d436b62b511b15bc20ebdca5/vuln/all');
    };
    await calls();
    assert.deepEqual(contractProblems(v1, rig.proxy.exchanges), [], 'control: the simulator without faults conforms');
    for (const fault of [{ wrongShape: true }, { malformed: true }]) {
      rig.proxy.clear();
      rig.simulator.setFaults(fault);
      await calls();
      const exchanges = rig.proxy.exchanges;
      assert.equal(exchanges.length, 3);
      for (const e of exchanges) {
        assert.ok(v1.checkResponse(e).length > 0, `${JSON.stringify(fault)} not caught on ${e.request.url}`);
        assert.deepEqual(v1.checkRequest(e.request), [], 'the requests themselves conform');
      }
    }
  });
});
