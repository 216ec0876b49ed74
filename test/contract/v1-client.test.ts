/**
 * Contract, v1: the real Anchore client (createAnchoreClient) runs its scenarios against the real
 * scanner simulator through a recording proxy; every request the client sent and every response the
 * simulator gave is matched to its operation in the official Anchore Engine v1 Swagger document and
 * validated (path, parameters, body, status, response schema). A simulator that drifts from the real
 * API, or a client that sends what a real engine would refuse, fails here.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { ScannerAuthError, ScannerRequestError } from '../../src/errors.js';
import type { Scanner } from '../../src/engine/scan-coordinator.js';
import { createMetrics } from '../../src/observability/metrics.js';
import type { ScanVerdict } from '../../src/policy/types.js';
import { parseImageReference } from '../../src/reference/parse-reference.js';
import { createAnchoreClient, type AnchoreClientOptions } from '../../src/scanner/anchore-client.js';
import { anchoreV1Contract, anchoreV2Contract } from './anchore-contracts.js';
import type { ApiContract } from './openapi-contract.js';
import { assertConforms, startRig, type Rig } from './rig.js';

const NGINX_DIGEST = 'sha256:44cecf0471cd426e852a6465a83680eb5f3e0f78d436b62b511b15bc20ebdca5';
const STRUTS = 'kaizheh/apache-struts2-cve-2017-5638:2.3.12';
const ANALYSIS_MS = 1_000;

let contract: ApiContract;
let rig: Rig;
/** The simulator's clock: the analysis lifecycle follows it, so a test can move time. */
let clockMs = 1_800_000_000_000;
/** Every operation + status seen by the whole suite, to prove what it exercised. */
const seen = new Set<string>();

function client(overrides: Partial<AnchoreClientOptions> = {}): Scanner {
  return createAnchoreClient({
    baseUrl: rig.url,
    // The scenarios speak v1 as configured; auto detection on a v1-only server has its own test.
    apiVersion: 'v1',
    user: 'admin',
    password: 'foobar',
    insecureSkipTlsVerify: false,
    requestTimeoutMs: 2_000,
    pollInitialMs: 5,
    retryBackoffMs: 5,
    pollMaxMs: 10,
    retryBudgetMs: 2_000,
    metrics: createMetrics(),
    logger: pino({ level: 'silent' }),
    ...overrides,
  });
}

function scan(scanner: Scanner, image: string): Promise<ScanVerdict> {
  const parsed = parseImageReference(image);
  assert.ok(parsed.valid, image);
  return scanner.scan(parsed.reference, { signal: AbortSignal.timeout(10_000), onCallResult: () => undefined });
}

/** The recorded exchanges conform; returns "operationId status" per exchange. */
function conforming(): string[] {
  const ops = assertConforms(contract, rig.proxy.exchanges);
  for (const op of ops) seen.add(op);
  return ops;
}

before(async () => {
  contract = await anchoreV1Contract();
  rig = await startRig({ now: () => clockMs });
});
after(async () => {
  await rig.close();
});
beforeEach(() => {
  rig.simulator.reset();
  rig.proxy.clear();
  rig.proxy.onRequest = undefined;
  clockMs += 3_600_000;
});

describe('contract v1: the client against the simulator, every exchange validated', () => {
  it('a passing image: submit, then the policy check', async () => {
    const verdict = await scan(client(), 'nginx:1.25.3');
    assert.equal(verdict.status, 'pass');
    assert.deepEqual(conforming(), ['add_image 200', 'get_image_policy_check 200']);
  });

  it('a failing image: the check carries the stop rows', async () => {
    const verdict = await scan(client(), STRUTS);
    assert.equal(verdict.status, 'fail');
    assert.deepEqual(conforming(), ['add_image 200', 'get_image_policy_check 200']);
  });

  it('an image still analysing: polled with GET /images/{imageDigest} until analysed', async () => {
    rig.simulator.setAnalysisDelayMs(ANALYSIS_MS);
    let polls = 0;
    rig.proxy.onRequest = (req) => {
      if (req.method !== 'GET' || req.url.includes('/check')) return;
      // The first poll still sees not_analyzed, the second analyzing, the third an analysed image.
      polls += 1;
      if (polls === 2) clockMs += ANALYSIS_MS / 2;
      if (polls === 3) clockMs += ANALYSIS_MS;
    };
    const verdict = await scan(client(), 'nginx:1.25.3');
    assert.equal(verdict.status, 'pass');
    assert.deepEqual(conforming(), ['add_image 200', 'get_image 200', 'get_image 200', 'get_image 200', 'get_image_policy_check 200']);
    const statuses = rig.proxy.exchanges.map((e) => (JSON.parse(e.response.body.toString('utf8')) as Array<{ analysis_status?: string }>)[0]?.analysis_status);
    assert.deepEqual(statuses.slice(0, 4), ['not_analyzed', 'not_analyzed', 'analyzing', 'analyzed']);
  });

  it('a check that answers 404 "not analyzed" after an analysed poll: the client polls again, then checks', async () => {
    rig.simulator.setAnalysisDelayMs(ANALYSIS_MS);
    const start = clockMs;
    let checks = 0;
    rig.proxy.onRequest = (req) => {
      if (req.method !== 'GET') return;
      if (req.url.includes('/check')) checks += 1;
      // Polls see the image analysed; the first check sees it analysing again (the record went back).
      clockMs = req.url.includes('/check') && checks === 1 ? start + ANALYSIS_MS / 2 : start + ANALYSIS_MS;
    };
    const verdict = await scan(client(), 'nginx:1.25.3');
    assert.equal(verdict.status, 'pass');
    assert.deepEqual(conforming(), ['add_image 200', 'get_image 200', 'get_image_policy_check 404', 'get_image 200', 'get_image_policy_check 200']);
  });

  it('a digest-pinned reference: tag and digest in the body, the digest unencoded in every path', async () => {
    rig.simulator.setAnalysisDelayMs(ANALYSIS_MS);
    rig.proxy.onRequest = (req) => {
      if (req.method === 'GET') clockMs += ANALYSIS_MS;
    };
    const verdict = await scan(client(), `nginx@${NGINX_DIGEST}`);
    assert.equal(verdict.digest, NGINX_DIGEST);
    assert.deepEqual(conforming(), ['add_image 200', 'get_image 200', 'get_image_policy_check 200']);
    const [add, ...rest] = rig.proxy.exchanges;
    assert.deepEqual(JSON.parse(add?.request.body.toString('utf8') ?? ''), {
      tag: 'docker.io/library/nginx:sha256-44cecf0471cd',
      digest: NGINX_DIGEST,
    });
    for (const e of rest) assert.ok(e.request.url.startsWith(`/v1/images/${NGINX_DIGEST}`), `digest sent encoded or altered: ${e.request.url}`);
  });

  it('name:tag@digest and a policy id: the check names the policy (policyId=)', async () => {
    const verdict = await scan(client({ policyId: 'scangate-strict' }), `nginx:1.25.3@${NGINX_DIGEST}`);
    assert.equal(verdict.policyId, 'scangate-strict');
    assert.deepEqual(conforming(), ['add_image 200', 'get_image_policy_check 200']);
    const check = new URL(rig.proxy.exchanges[1]?.request.url ?? '', 'http://x');
    assert.equal(check.searchParams.get('policyId'), 'scangate-strict');
  });

  it('the x-anchore-account header (admin acting for an account) is a declared header', async () => {
    await scan(client({ account: 'team-a' }), 'nginx:1.25.3');
    conforming();
    assert.ok(rig.proxy.exchanges.every((e) => e.request.headers['x-anchore-account'] === 'team-a'));
  });

  it('5xx and 429 error bodies, then success: retried calls and their error answers conform', async () => {
    rig.simulator.setFaults({ status: 500, times: 1, operations: ['addImage'] });
    assert.equal((await scan(client(), 'nginx:1.25.3')).status, 'pass');
    assert.deepEqual(conforming(), ['add_image 500', 'add_image 200', 'get_image_policy_check 200']);
    for (const [status, retryAfterSeconds] of [
      [503, 0],
      [429, 0],
    ] as const) {
      rig.simulator.reset();
      rig.proxy.clear();
      rig.simulator.setFaults({ status, retryAfterSeconds, times: 1, operations: ['check'] });
      assert.equal((await scan(client(), 'nginx:1.25.3')).status, 'pass');
      assert.deepEqual(conforming(), ['add_image 200', `get_image_policy_check ${String(status)}`, 'get_image_policy_check 200']);
    }
  });

  it('a 400 refusal is not retried and its error body conforms', async () => {
    rig.simulator.setFaults({ status: 400, operations: ['addImage'] });
    await assert.rejects(scan(client(), 'nginx:1.25.3'), ScannerRequestError);
    assert.deepEqual(conforming(), ['add_image 400']);
  });

  it('no active policy: the check answers 404 and the client says so', async () => {
    rig.simulator.setFaults({ noActivePolicy: true });
    await assert.rejects(scan(client(), 'nginx:1.25.3'), /no active policy/);
    assert.deepEqual(conforming(), ['add_image 200', 'get_image_policy_check 404']);
  });

  it('wrong credentials: 401 with an error body, not retried', async () => {
    await assert.rejects(scan(client({ password: 'wrong' }), 'nginx:1.25.3'), ScannerAuthError);
    assert.deepEqual(conforming(), ['add_image 401']);
  });

  it('analysis failed: the record says analysis_failed and no check is made', async () => {
    rig.simulator.setFaults({ analysisFailed: ['docker.io/library/nginx'] });
    const verdict = await scan(client(), 'nginx:1.25.3');
    assert.equal(verdict.status, 'fail');
    assert.deepEqual(conforming(), ['add_image 200']);
  });

  it('auto detection on a v1-only server: a valid v2 version probe, answered 404, then v1', async () => {
    const v2 = await anchoreV2Contract();
    const verdict = await scan(client({ apiVersion: 'auto' }), 'nginx:1.25.3');
    assert.equal(verdict.status, 'pass');
    const [probe, ...rest] = rig.proxy.exchanges;
    assert.equal(probe?.request.url, '/v2/version');
    // The probe is a v2 request and must be one a v2 server takes; the v1 server's 404 is no v2 answer.
    assert.deepEqual(v2.checkRequest(probe.request), []);
    assert.equal(probe.response.status, 404);
    const ops = assertConforms(contract, rest);
    for (const op of ops) seen.add(op);
    assert.deepEqual(ops, ['add_image 200', 'get_image_policy_check 200']);
  });

  it('the suite exercised every v1 operation the client uses, with success and error statuses', () => {
    for (const op of [
      'add_image 200',
      'add_image 400',
      'add_image 401',
      'add_image 500',
      'get_image 200',
      'get_image_policy_check 200',
      'get_image_policy_check 404',
      'get_image_policy_check 429',
      'get_image_policy_check 503',
    ]) {
      assert.ok(seen.has(op), `not exercised: ${op} (seen: ${[...seen].join(', ')})`);
    }
  });
});
