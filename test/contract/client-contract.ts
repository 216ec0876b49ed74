/**
 * Contract of the client, one suite for both APIs: the real Anchore client (createAnchoreClient)
 * runs its scenarios against the real scanner simulator through a recording proxy; every request the
 * client sent and every response the simulator gave is matched to its operation in the official
 * Anchore document of that API (v1 Swagger, Enterprise v2 OpenAPI) and validated (path, parameters,
 * body, status, response schema). A simulator that drifts from the real API, or a client that sends
 * what a real server would refuse, fails here. What differs between the APIs is a row of
 * {@link ClientDialect}; v1-client.test.ts and v2-client.test.ts run the suite with theirs.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import type { Scanner } from '../../src/engine/scan-coordinator.js';
import { ScannerAuthError, ScannerRequestError } from '../../src/errors.js';
import { createMetrics } from '../../src/observability/metrics.js';
import type { ScanVerdict } from '../../src/policy/types.js';
import { parseImageReference } from '../../src/reference/parse-reference.js';
import { createAnchoreClient, type AnchoreClientOptions } from '../../src/scanner/anchore-client.js';
import type { ApiContract } from './openapi-contract.js';
import { assertConforms, startRig, type Rig } from './rig.js';

export const NGINX_DIGEST = 'sha256:44cecf0471cd426e852a6465a83680eb5f3e0f78d436b62b511b15bc20ebdca5';
const STRUTS = 'kaizheh/apache-struts2-cve-2017-5638:2.3.12';
const ANALYSIS_MS = 1_000;

/** What a test of the suite (or of one API only) works with; `rig` and `contract` exist once the suite has started. */
export interface ClientContractContext {
  readonly rig: Rig;
  readonly contract: ApiContract;
  /** The client under test, speaking the dialect's API unless overridden. */
  readonly client: (overrides?: Partial<AnchoreClientOptions>) => Scanner;
  readonly scan: (scanner: Scanner, image: string) => Promise<ScanVerdict>;
  /** The recorded exchanges conform; returns "operationId status" per exchange. */
  readonly conforming: () => string[];
  /** Counts operations checked outside conforming() as exercised. */
  readonly noteSeen: (ops: readonly string[]) => void;
}

/** What differs between the APIs: one row per API version. */
export interface ClientDialect {
  readonly api: 'v1' | 'v2';
  /** The describe title, after "contract vN: ". */
  readonly title: string;
  readonly contract: () => Promise<ApiContract>;
  /** Where the simulator's clock starts (each API its own epoch). */
  readonly clockStartMs: number;
  /** The operation id of the policy check. */
  readonly checkOperation: string;
  /** The analysis status in a get_image answer's body. */
  analysisStatusOf(body: unknown): string | undefined;
  /** How a digest-pinned reference is submitted: the test's name and the add_image body. */
  readonly pinnedSubmission: { readonly name: string; readonly body: unknown };
  /** The query parameter that names a policy, as the test's name shows it too. */
  readonly policyParameter: string;
  /** Tests of this API only (auto detection), run before the coverage test. */
  readonly only: (ctx: ClientContractContext) => void;
  /** Operations the API's own tests exercise besides the shared ones. */
  readonly extraOperations: readonly string[];
}

export function clientContractSuite(dialect: ClientDialect): void {
  let contract: ApiContract;
  let rig: Rig;
  /** The simulator's clock: the analysis lifecycle follows it, so a test can move time. */
  let clockMs = dialect.clockStartMs;
  /** Every operation + status seen by the whole suite, to prove what it exercised. */
  const seen = new Set<string>();
  const check = dialect.checkOperation;

  const ctx: ClientContractContext = {
    get rig() {
      return rig;
    },
    get contract() {
      return contract;
    },
    client: (overrides = {}) =>
      createAnchoreClient({
        baseUrl: rig.url,
        // The scenarios speak the API as configured; auto detection has its own test.
        apiVersion: dialect.api,
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
      }),
    scan: (scanner, image) => {
      const parsed = parseImageReference(image);
      assert.ok(parsed.valid, image);
      return scanner.scan(parsed.reference, { signal: AbortSignal.timeout(10_000), onCallResult: () => undefined });
    },
    conforming: () => {
      const ops = assertConforms(contract, rig.proxy.exchanges);
      ctx.noteSeen(ops);
      return ops;
    },
    noteSeen: (ops) => {
      for (const op of ops) seen.add(op);
    },
  };
  const { client, scan, conforming } = ctx;

  before(async () => {
    contract = await dialect.contract();
    rig = await startRig({ ...(dialect.api === 'v2' ? { api: 'v2' } : {}), now: () => clockMs });
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

  describe(`contract ${dialect.api}: ${dialect.title}`, () => {
    it('a passing image: submit, then the policy check', async () => {
      const verdict = await scan(client(), 'nginx:1.25.3');
      assert.equal(verdict.status, 'pass');
      assert.deepEqual(conforming(), ['add_image 200', `${check} 200`]);
    });

    it('a failing image: the check carries the stop rows', async () => {
      const verdict = await scan(client(), STRUTS);
      assert.equal(verdict.status, 'fail');
      assert.deepEqual(conforming(), ['add_image 200', `${check} 200`]);
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
      assert.deepEqual(conforming(), ['add_image 200', 'get_image 200', 'get_image 200', 'get_image 200', `${check} 200`]);
      const statuses = rig.proxy.exchanges.map((e) => dialect.analysisStatusOf(JSON.parse(e.response.body.toString('utf8'))));
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
      assert.deepEqual(conforming(), ['add_image 200', 'get_image 200', `${check} 404`, 'get_image 200', `${check} 200`]);
    });

    it(`a digest-pinned reference: ${dialect.pinnedSubmission.name}, the digest unencoded in every path`, async () => {
      rig.simulator.setAnalysisDelayMs(ANALYSIS_MS);
      rig.proxy.onRequest = (req) => {
        if (req.method === 'GET') clockMs += ANALYSIS_MS;
      };
      const verdict = await scan(client(), `nginx@${NGINX_DIGEST}`);
      assert.equal(verdict.digest, NGINX_DIGEST);
      assert.deepEqual(conforming(), ['add_image 200', 'get_image 200', `${check} 200`]);
      const [add, ...rest] = rig.proxy.exchanges;
      assert.deepEqual(JSON.parse(add?.request.body.toString('utf8') ?? ''), dialect.pinnedSubmission.body);
      for (const e of rest) assert.ok(e.request.url.startsWith(`/${dialect.api}/images/${NGINX_DIGEST}`), `digest sent encoded or altered: ${e.request.url}`);
    });

    it(`name:tag@digest and a policy id: the check names the policy (${dialect.policyParameter}=)`, async () => {
      const verdict = await scan(client({ policyId: 'scangate-strict' }), `nginx:1.25.3@${NGINX_DIGEST}`);
      assert.equal(verdict.policyId, 'scangate-strict');
      assert.deepEqual(conforming(), ['add_image 200', `${check} 200`]);
      const checkUrl = new URL(rig.proxy.exchanges[1]?.request.url ?? '', 'http://x');
      assert.equal(checkUrl.searchParams.get(dialect.policyParameter), 'scangate-strict');
    });

    it('the x-anchore-account header (admin acting for an account) is a declared header', async () => {
      await scan(client({ account: 'team-a' }), 'nginx:1.25.3');
      conforming();
      assert.ok(rig.proxy.exchanges.every((e) => e.request.headers['x-anchore-account'] === 'team-a'));
    });

    it('5xx and 429 error bodies, then success: retried calls and their error answers conform', async () => {
      rig.simulator.setFaults({ status: 500, times: 1, operations: ['addImage'] });
      assert.equal((await scan(client(), 'nginx:1.25.3')).status, 'pass');
      assert.deepEqual(conforming(), ['add_image 500', 'add_image 200', `${check} 200`]);
      for (const [status, retryAfterSeconds] of [
        [503, 0],
        [429, 0],
      ] as const) {
        rig.simulator.reset();
        rig.proxy.clear();
        rig.simulator.setFaults({ status, retryAfterSeconds, times: 1, operations: ['check'] });
        assert.equal((await scan(client(), 'nginx:1.25.3')).status, 'pass');
        assert.deepEqual(conforming(), ['add_image 200', `${check} ${String(status)}`, `${check} 200`]);
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
      assert.deepEqual(conforming(), ['add_image 200', `${check} 404`]);
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

    dialect.only(ctx);

    it(`the suite exercised every ${dialect.api} operation the client uses, with success and error statuses`, () => {
      for (const op of [
        ...dialect.extraOperations,
        'add_image 200',
        'add_image 400',
        'add_image 401',
        'add_image 500',
        'get_image 200',
        `${check} 200`,
        `${check} 404`,
        `${check} 429`,
        `${check} 503`,
      ]) {
        assert.ok(seen.has(op), `not exercised: ${op} (seen: ${[...seen].join(', ')})`);
      }
    });
  });
}
