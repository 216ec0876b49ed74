/**
 * The Anchore client against the scanner simulator in v1, v2 and both modes, over real sockets on
 * 127.0.0.1: API detection with the default settings (ANCHORE_API_VERSION=auto) for every way of
 * writing ANCHORE_CLI_URL, Sysdig Secure's v1-looking path, the same verdicts and denial reasons from
 * both APIs, digest-pinned references as v2 digest sources, ANCHORE_POLICY_ID, credentials, no active
 * policy, detection failure at start, and re-detection when the scanner comes back from an outage
 * speaking another API.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import type { ScannerError } from '../../src/errors.js';
import { createMetrics } from '../../src/observability/metrics.js';
import type { ScanVerdict } from '../../src/policy/types.js';
import { parseImageReference } from '../../src/reference/parse-reference.js';
import { createAnchoreClient } from '../../src/scanner/anchore-client.js';
import type { ApiVersionSetting } from '../../src/scanner/api-version.js';
import { startScannerSimulator, type ScannerSimulator, type SimulatorApi, type SimulatorData } from '@scangate/simulator';
import { LogCapture, metricValue, request, startWebhook } from '../helpers/harness.js';
import { deploymentPodReview } from '../helpers/pod-review.js';

const STRUTS = 'docker.io/apache/struts2:2.3.12';
const NGINX = 'docker.io/library/nginx:1.25.3';
const MEDIUM = 'docker.io/library/python:3.12';
const PINNED_DIGEST = `sha256:${'5e'.repeat(32)}`;

const DATA: SimulatorData = {
  policies: [
    { id: 'default-policy', name: 'Default', active: true, stopSeverities: ['Critical', 'High'], warnSeverities: ['Medium'] },
    { id: 'strict', name: 'Strict', active: false, stopSeverities: ['Critical', 'High', 'Medium'], warnSeverities: [] },
  ],
  repositories: {
    'docker.io/apache/struts2': {
      vulnerabilities: [{ vuln: 'CVE-2017-5638', severity: 'Critical', package: 'struts2-core-2.3.12', packageType: 'java', fix: '2.3.32' }],
    },
    'docker.io/library/python': { vulnerabilities: [{ vuln: 'CVE-2024-0001', severity: 'Medium', package: 'libx-1.0' }] },
    'docker.io/library/nginx': { vulnerabilities: [] },
  },
};

function ref(text: string) {
  const parsed = parseImageReference(text);
  assert.ok(parsed.valid, text);
  return parsed.reference;
}

interface Client {
  scan(image: string): Promise<ScanVerdict>;
  logs: LogCapture;
  metrics: ReturnType<typeof createMetrics>;
}

function client(baseUrl: string, opts: { apiVersion?: ApiVersionSetting; user?: string; password?: string; policyId?: string; retryBudgetMs?: number } = {}): Client {
  const logs = new LogCapture();
  const metrics = createMetrics();
  const scanner = createAnchoreClient({
    baseUrl,
    ...(opts.apiVersion !== undefined ? { apiVersion: opts.apiVersion } : {}),
    user: opts.user ?? 'admin',
    password: opts.password ?? 'foobar',
    ...(opts.policyId !== undefined ? { policyId: opts.policyId } : {}),
    insecureSkipTlsVerify: false,
    requestTimeoutMs: 2000,
    pollInitialMs: 20,
    retryBackoffMs: 20,
    pollMaxMs: 50,
    retryBudgetMs: opts.retryBudgetMs ?? 300,
    metrics,
    logger: pino({ level: 'debug' }, logs),
  });
  return {
    logs,
    metrics,
    scan: (image) => scanner.scan(ref(image), { signal: AbortSignal.timeout(10_000), onCallResult: () => undefined }),
  };
}

const sims = new Map<SimulatorApi, ScannerSimulator>();
before(async () => {
  for (const api of ['v1', 'v2', 'both'] as const) sims.set(api, await startScannerSimulator({ api, data: DATA, record: 200 }));
});
after(async () => {
  for (const sim of sims.values()) await sim.close();
});
function sim(api: SimulatorApi): ScannerSimulator {
  const s = sims.get(api);
  assert.ok(s !== undefined);
  s.reset();
  return s;
}

describe('API detection with the default settings (auto)', () => {
  const cases: Array<{ server: SimulatorApi; url: (s: ScannerSimulator) => string; expected: 'v1' | 'v2' }> = [
    { server: 'v2', url: (s) => s.origin, expected: 'v2' },
    { server: 'v2', url: (s) => `${s.origin}/v2`, expected: 'v2' },
    { server: 'v2', url: (s) => `${s.origin}/v2/`, expected: 'v2' },
    // An old `.../v1` setting against Enterprise 5: auto moves it to v2.
    { server: 'v2', url: (s) => `${s.origin}/v1`, expected: 'v2' },
    { server: 'v1', url: (s) => `${s.origin}/v1`, expected: 'v1' },
    { server: 'v1', url: (s) => `${s.origin}/v1/`, expected: 'v1' },
    { server: 'both', url: (s) => `${s.origin}/v1`, expected: 'v2' },
    { server: 'both', url: (s) => s.origin, expected: 'v2' },
  ];
  for (const c of cases) {
    it(`${c.server}-only server, ANCHORE_CLI_URL=<origin>${c.url({ origin: '' } as ScannerSimulator)} -> ${c.expected}`, async () => {
      const s = sim(c.server);
      const scanner = client(c.url(s));
      const fail = await scanner.scan(STRUTS);
      const pass = await scanner.scan(NGINX);
      assert.equal(fail.status, 'fail');
      assert.equal(pass.status, 'pass');
      const stats = s.stats();
      assert.equal(stats.byApi[c.expected === 'v1' ? 'v2' : 'v1'], 0, `no ${c.expected === 'v1' ? 'v2' : 'v1'} image calls`);
      assert.ok(stats.byApi[c.expected] >= 4, JSON.stringify(stats.byApi));
      assert.equal(stats.addImage, 2);
      assert.equal(stats.encodedDigest, 0, 'digests are sent as sha256:<hex>, unencoded');
      assert.equal(stats.autosubscribed, 0, 'registry subscriptions off');
      const detected = scanner.logs.find('scanner API detected');
      assert.equal(detected.length, 1);
      assert.equal(detected[0]?.['apiVersion'], c.expected);
      assert.equal(metricValue(await scanner.metrics.registry.metrics(), 'scangate_scanner_calls_total', { operation: 'version' }), 1);
    });
  }

  it('Sysdig Secure: https://HOST/api/scanning/v1/anchore, the API token as user and an empty password -> v1 at that path', async () => {
    const sysdig = await startScannerSimulator({ api: 'v1', data: DATA, basePath: '/api/scanning/v1/anchore', user: 'sysdig-api-token', password: '' });
    try {
      const scanner = client(`${sysdig.origin}/api/scanning/v1/anchore`, { user: 'sysdig-api-token', password: '' });
      assert.equal((await scanner.scan(STRUTS)).status, 'fail');
      assert.equal(scanner.logs.find('scanner API detected')[0]?.['apiVersion'], 'v1');
      assert.equal(sysdig.stats().unauthorized, 0);
    } finally {
      await sysdig.close();
    }
  });

  it('ANCHORE_API_VERSION=v1 / v2 never ask the version endpoint', async () => {
    const v2 = sim('v2');
    await client(v2.origin, { apiVersion: 'v2' }).scan(NGINX);
    assert.equal(v2.stats().version, 0);
    const both = sim('both');
    await client(`${both.origin}/v1`, { apiVersion: 'v1' }).scan(NGINX);
    assert.equal(both.stats().version, 0);
    assert.equal(both.stats().byApi.v2, 0);
  });

  it('a pinned API the server does not speak is a scanner error, not a verdict', async () => {
    const v2 = sim('v2');
    await assert.rejects(client(`${v2.origin}/v1`, { apiVersion: 'v1' }).scan(NGINX), /scanner refused add_image \(HTTP 404/);
  });
});

describe('v2: the same scan as v1', () => {
  it('the denial reasons (gate, trigger, message) are the same through v1 and v2', async () => {
    const messages: string[] = [];
    for (const api of ['v1', 'v2'] as const) {
      const s = sim(api);
      const webhook = await startWebhook({ ANCHORE_CLI_URL: api === 'v1' ? `${s.origin}/v1` : s.origin, ANCHORE_CLI_PASS: 'foobar' });
      try {
        const { body } = deploymentPodReview([STRUTS, NGINX]);
        const res = await request(`${webhook.url}/validate?timeout=10s`, { rawBody: body });
        assert.equal(res.json.response.allowed, false);
        messages.push(String(res.json.response.status.message));
      } finally {
        await webhook.close();
      }
    }
    assert.equal(messages[0], messages[1]);
    assert.match(messages[1] ?? '', /^Image failed policy check: docker\.io\/apache\/struts2:2\.3\.12 \(container "web"\): vulnerabilities\/package: CRITICAL CVE-2017-5638 in struts2-core-2\.3\.12/);
  });

  it('polls through the analysis (not_analyzed -> analyzing -> analyzed) and never checks before', async () => {
    const s = sim('v2');
    s.setAnalysisDelayMs(300);
    const verdict = await client(s.origin).scan(STRUTS);
    assert.equal(verdict.status, 'fail');
    const stats = s.stats();
    assert.ok(stats.getImage >= 2, `polled ${stats.getImage} times`);
    assert.equal(stats.check, 1);
    const checks = s.exchanges().filter((x) => x.operation === 'check');
    assert.equal(checks[0]?.status, 200);
  });

  it('a digest-pinned reference: a digest source filed under the synthetic tag, checked for that tag', async () => {
    const s = sim('v2');
    const verdict = await client(s.origin).scan(`nginx@${PINNED_DIGEST}`);
    assert.equal(verdict.status, 'pass');
    assert.equal(verdict.digest, PINNED_DIGEST);
    const add = s.exchanges().find((x) => x.operation === 'addImage');
    assert.deepEqual(add?.requestBody, {
      source: { digest: { pull_string: `docker.io/library/nginx@${PINNED_DIGEST}`, tag: 'docker.io/library/nginx:sha256-5e5e5e5e5e5e' } },
    });
    assert.deepEqual(add?.query, { auto_subscribe: ['false'] });
    const check = s.exchanges().find((x) => x.operation === 'check');
    assert.equal(check?.path, `/images/${PINNED_DIGEST}/check`);
    assert.match(check?.url ?? '', new RegExp(`/v2/images/${PINNED_DIGEST}/check\\?`), 'the raw URL carries sha256: unencoded');
    assert.deepEqual(check?.query['tag'], ['docker.io/library/nginx:sha256-5e5e5e5e5e5e']);
  });

  it('ANCHORE_POLICY_ID goes out as policy_id and decides the verdict', async () => {
    const s = sim('v2');
    assert.equal((await client(s.origin).scan(MEDIUM)).status, 'pass');
    s.reset();
    const strict = await client(s.origin, { policyId: 'strict' }).scan(MEDIUM);
    assert.equal(strict.status, 'fail');
    assert.equal(strict.policyId, 'strict');
    const check = s.exchanges().find((x) => x.operation === 'check');
    assert.deepEqual(check?.query['policy_id'], ['strict']);
    assert.equal(check?.query['policyId'], undefined);
  });

  it('no active policy, wrong credentials, a policy that does not exist: the same errors as v1', async () => {
    for (const api of ['v1', 'v2'] as const) {
      const s = sim(api);
      const url = api === 'v1' ? `${s.origin}/v1` : s.origin;
      s.setFaults({ noActivePolicy: true });
      await assert.rejects(client(url).scan(NGINX), /scanner has no active policy bundle for this account: activate one or set ANCHORE_POLICY_ID/);
      s.reset();
      await assert.rejects(client(url, { password: 'wrong' }).scan(NGINX), (e: ScannerError) => e.code === 'SCANGATE_ERR_SCANNER_AUTH');
      await assert.rejects(client(url, { policyId: 'nope' }).scan(NGINX), /scanner cannot evaluate the image \(HTTP 404: policy bundle not found: nope\)/);
    }
  });
});

describe('detection failures and re-detection', () => {
  it('the version endpoint failing at start: scans are scanner errors, then work once it answers (no restart)', async () => {
    const s = sim('v2');
    s.setFaults({ status: 503, operations: ['version'] });
    const scanner = client(s.origin, { retryBudgetMs: 100 });
    await assert.rejects(scanner.scan(NGINX), /scanner failed version \(HTTP 503\)/);
    assert.equal(s.stats().addImage, 0, 'nothing is submitted while the API is unknown');
    assert.equal(scanner.logs.find('scanner API version unknown: GET /v2/version failed; scans fail as scanner errors until it answers').length, 1);
    s.setFaults({});
    assert.equal((await scanner.scan(NGINX)).status, 'pass');
    assert.equal(scanner.logs.find('scanner API detected')[0]?.['apiVersion'], 'v2');
  });

  // "Never hangs": the test's timeout is the guard. How long the retries take is the transport's, on
  // its injected clock (test/fault/scanner-faults.test.ts, circuit-breaker.test.ts).
  it('a scanner that is down at start: the scan waits for detection within its retry budget, never hangs', { timeout: 10_000 }, async () => {
    const scanner = client('http://127.0.0.1:1', { retryBudgetMs: 200 });
    await assert.rejects(scanner.scan(NGINX), /scanner unreachable \(ECONNREFUSED\)/);
    const text = await scanner.metrics.registry.metrics();
    assert.ok(metricValue(text, 'scangate_scanner_calls_total', { operation: 'version', outcome: 'network_error' }) >= 1);
  });

  it('back from an outage speaking another API (Engine upgraded to Enterprise 5): asked again, and scans go on in v2', async () => {
    const v1 = sim('v1');
    const v2 = sim('v2');
    let target: ScannerSimulator | undefined = v1;
    // A stand-in for the scanner's Service: forwards to the current backend, 503 while there is none.
    const proxy = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (target === undefined) {
          res.writeHead(503, { 'content-type': 'application/json' }).end('{"message":"upgrading"}');
          return;
        }
        const up = http.request(`${target.origin}${req.url ?? '/'}`, { method: req.method, headers: req.headers }, (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        });
        up.on('error', () => res.destroy());
        up.end(Buffer.concat(chunks));
      });
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${String((proxy.address() as AddressInfo).port)}/v1`;
    try {
      const scanner = client(url, { retryBudgetMs: 100 });
      assert.equal((await scanner.scan(STRUTS)).status, 'fail');
      assert.equal(scanner.logs.find('scanner API detected')[0]?.['apiVersion'], 'v1');
      target = undefined;
      await assert.rejects(scanner.scan(NGINX), /HTTP 503/);
      target = v2;
      assert.equal((await scanner.scan(NGINX)).status, 'pass');
      const changed = scanner.logs.find('scanner API version changed');
      assert.equal(changed.length, 1);
      assert.equal(changed[0]?.['apiVersion'], 'v2');
      assert.equal(changed[0]?.['previous'], 'v1');
      assert.equal(v2.stats().byApi.v1, 0);
      assert.equal(v2.stats().addImage, 1);
    } finally {
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });
});
