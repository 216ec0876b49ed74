/**
 * Scanner fault matrix: every way the scanner can misbehave (down, refused, 5xx, 503 + Retry-After,
 * 429, 401, slow, hang, malformed JSON, wrong shapes, analysis_failed, 404 forever, no policy), each
 * with REJECT_IF_TIMEOUT=true and false. For every cell the decision, the message, the metrics and the
 * decision log line are checked. Real sockets: the scanner simulator and scangate's HTTPS webhook.
 * No wall-clock window is asserted here: the Retry-After delay and the retry backoff are checked on a
 * manual clock (test/unit/scanner-transport.test.ts), the deadline arithmetic in
 * test/unit/cache-and-deadline.test.ts, and answer times under a hanging scanner by the bench
 * (bench/scenarios/deadline.mjs).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FaultConfig, ScannerSimulator } from '@scangate/simulator';
import { metricValue, request, startWebhook } from '../helpers/harness.js';
import { closedPort, deploymentPodReview, FAILING_IMAGE, startResettingServer, startSimulator, assertCleanPass } from '../helpers/fault-harness.js';

/** The API server's timeout for these requests (`?timeout=3s`) and what scangate may wait of it. */
const TIMEOUT_MS = 3000;
const MARGIN_MS = 500;
const BUDGET_MS = TIMEOUT_MS - MARGIN_MS;

const BASE_ENV = {
  ANCHORE_CLI_PASS: 'foobar',
  SCANNER_REQUEST_TIMEOUT_MS: '500',
  SCANNER_RETRY_BUDGET_MS: '400',
  SCANNER_POLL_INITIAL_MS: '50',
  SCANNER_POLL_MAX_MS: '200',
  DEADLINE_MARGIN_MS: String(MARGIN_MS),
};

type Expect =
  /** No verdict: the scanner failed (message detail given). */
  | { kind: 'scanner-error'; detail: string; settles: boolean }
  /** No verdict: the deadline came first while the scanner was healthy but slow. */
  | { kind: 'timeout' }
  | { kind: 'pass' }
  /** A verdict of fail: `reason` is the text after the image in the denial. */
  | { kind: 'fail'; reason: string };

interface FaultCase {
  readonly name: string;
  /** Image in the pod; unseen by default so every case starts a scan. */
  readonly image?: string;
  /** Replaces the simulator: a scanner that is down or refuses connections. */
  readonly scanner?: 'resetting' | 'refused';
  readonly faults?: (image: string) => FaultConfig;
  readonly env?: Record<string, string>;
  readonly expect: Expect;
  /** scangate_scanner_calls_total samples that must be >= the given count. */
  readonly calls: ReadonlyArray<readonly [operation: string, outcome: string, atLeast: number]>;
  /** A log line (msg) that must appear, with fields it must carry. */
  readonly logLine?: { msg: string; level: string };
  /** What differs when the scanner speaks v2 (the wire shapes; everything else is the same). */
  readonly v2?: { readonly expect: Expect };
}

const CASES: readonly FaultCase[] = [
  {
    name: 'scanner down (accepts, then resets every connection)',
    scanner: 'resetting',
    expect: { kind: 'scanner-error', detail: 'scanner unreachable (ECONNRESET)', settles: true },
    calls: [['add_image', 'network_error', 1]],
  },
  {
    name: 'connection refused',
    scanner: 'refused',
    expect: { kind: 'scanner-error', detail: 'scanner unreachable (ECONNREFUSED)', settles: true },
    calls: [['add_image', 'network_error', 1]],
  },
  {
    name: 'HTTP 500 (retried within SCANNER_RETRY_BUDGET_MS, then given up)',
    faults: () => ({ status: 500 }),
    expect: { kind: 'scanner-error', detail: 'scanner failed add_image (HTTP 500)', settles: true },
    calls: [['add_image', 'server_error', 2]],
  },
  {
    name: 'HTTP 500 for longer than the deadline (retry budget outlives the request)',
    faults: () => ({ status: 500 }),
    env: { SCANNER_RETRY_BUDGET_MS: '20000' },
    expect: { kind: 'scanner-error', detail: 'scanner failed add_image (HTTP 500)', settles: false },
    calls: [['add_image', 'server_error', 2]],
  },
  {
    name: '503 with Retry-After: 1, once (honoured, then a verdict)',
    faults: () => ({ status: 503, retryAfterSeconds: 1, times: 1 }),
    expect: { kind: 'pass' },
    calls: [
      ['add_image', 'server_error', 1],
      ['add_image', 'ok', 1],
      ['check', 'ok', 1],
    ],
  },
  {
    name: '503 with Retry-After: 1, forever',
    faults: () => ({ status: 503, retryAfterSeconds: 1 }),
    expect: { kind: 'scanner-error', detail: 'scanner failed add_image (HTTP 503)', settles: true },
    calls: [['add_image', 'server_error', 2]],
  },
  {
    name: '429 rate limited',
    faults: () => ({ status: 429, retryAfterSeconds: 0 }),
    expect: { kind: 'scanner-error', detail: 'scanner rate-limited add_image (HTTP 429)', settles: true },
    calls: [['add_image', 'rate_limited', 2]],
  },
  {
    name: '401 (credentials refused; not retried)',
    faults: () => ({ status: 401 }),
    expect: { kind: 'scanner-error', detail: 'scanner rejected the credentials (HTTP 401): check ANCHORE_CLI_USER / ANCHORE_CLI_PASS', settles: true },
    calls: [['add_image', 'auth_error', 1]],
    logLine: { msg: 'scanner rejected the credentials: check ANCHORE_CLI_USER / ANCHORE_CLI_PASS', level: 'error' },
  },
  {
    name: 'slow scanner (150 ms a call, within the deadline)',
    faults: () => ({ latencyMs: 150 }),
    expect: { kind: 'pass' },
    calls: [
      ['add_image', 'ok', 1],
      ['check', 'ok', 1],
    ],
  },
  {
    name: 'slow scanner, failing verdict (150 ms a call)',
    image: FAILING_IMAGE,
    faults: () => ({ latencyMs: 150 }),
    expect: { kind: 'fail', reason: 'vulnerabilities/package: CRITICAL CVE-2017-5638 in struts2-core-2.3.12' },
    calls: [['check', 'ok', 1]],
  },
  {
    name: 'slower than SCANNER_REQUEST_TIMEOUT_MS (800 ms a call)',
    faults: () => ({ latencyMs: 800 }),
    expect: { kind: 'scanner-error', detail: 'scanner did not answer add_image within 500 ms', settles: true },
    calls: [['add_image', 'timeout', 2]],
  },
  {
    name: 'hang (never answers)',
    faults: () => ({ hang: true }),
    expect: { kind: 'scanner-error', detail: 'scanner did not answer add_image within 500 ms', settles: true },
    calls: [['add_image', 'timeout', 2]],
  },
  {
    name: 'hang on the policy check only',
    faults: () => ({ hang: true, operations: ['check'] }),
    expect: { kind: 'scanner-error', detail: 'scanner did not answer check within 500 ms', settles: true },
    calls: [
      ['add_image', 'ok', 1],
      ['check', 'timeout', 2],
    ],
  },
  {
    name: 'malformed JSON',
    faults: () => ({ malformed: true }),
    expect: { kind: 'scanner-error', detail: 'scanner answered add_image with malformed JSON', settles: true },
    calls: [['add_image', 'protocol_error', 1]],
  },
  {
    name: 'wrong shape (object for the image list)',
    faults: () => ({ wrongShape: true }),
    expect: { kind: 'scanner-error', detail: 'scanner answered an image list that is not an array', settles: true },
    v2: { expect: { kind: 'scanner-error', detail: 'scanner answered an image record that is not an object', settles: true } },
    calls: [['add_image', 'ok', 1]],
  },
  {
    name: 'wrong shape of the policy check',
    faults: () => ({ wrongShape: true, operations: ['check'] }),
    expect: { kind: 'scanner-error', detail: 'scanner check response is not an array', settles: true },
    v2: { expect: { kind: 'scanner-error', detail: 'scanner check response is not an object', settles: true } },
    calls: [['check', 'ok', 1]],
  },
  {
    name: 'analysis_failed',
    faults: (image) => ({ analysisFailed: [image] }),
    expect: { kind: 'fail', reason: 'analysis/failed: the scanner could not analyse the image' },
    calls: [['add_image', 'ok', 1]],
  },
  {
    name: '404 forever (never analysed: polls until the deadline)',
    faults: (image) => ({ neverAnalyzed: [image] }),
    expect: { kind: 'timeout' },
    calls: [
      ['add_image', 'ok', 1],
      ['get_image', 'ok', 2],
    ],
  },
  {
    name: '404 forever on the policy check',
    faults: () => ({ status: 404, operations: ['check'] }),
    expect: { kind: 'scanner-error', detail: 'scanner cannot evaluate the image (HTTP 404: simulated fault: Not Found)', settles: true },
    calls: [['check', 'not_analyzed', 1]],
  },
  {
    name: 'no active policy',
    faults: () => ({ noActivePolicy: true }),
    expect: { kind: 'scanner-error', detail: 'scanner has no active policy bundle for this account: activate one or set ANCHORE_POLICY_ID', settles: true },
    calls: [['check', 'not_analyzed', 1]],
  },
];

let sim: ScannerSimulator;
let simV2: ScannerSimulator;
let resetting: { url: string; close(): Promise<void> };
let refusedUrl: string;
let counter = 0;

before(async () => {
  sim = await startSimulator();
  simV2 = await startSimulator({ api: 'v2' });
  resetting = await startResettingServer();
  refusedUrl = `http://127.0.0.1:${await closedPort()}/v1`;
});
after(async () => {
  await sim.close();
  await simV2.close();
  await resetting.close();
});

function containerDetail(image: string, detail: string): string {
  return `${image} (container "web": ${detail})`;
}

// The same matrix against the simulator's v1 API and its v2 API (Anchore Enterprise 5), through the
// same fault knobs, with the default ANCHORE_API_VERSION=auto (the version endpoint is never faulted).
for (const api of ['v1', 'v2'] as const)
for (const rejectIfTimeout of [true, false]) {
  describe(`scanner faults (${api}), REJECT_IF_TIMEOUT=${rejectIfTimeout}`, () => {
    for (const c of CASES) {
      it(c.name, async () => {
        counter += 1;
        const image = c.image ?? `docker.io/library/redis:fault-${counter}-${api}-${rejectIfTimeout}`;
        const scanner = api === 'v1' ? sim : simV2;
        scanner.reset();
        if (c.faults !== undefined) scanner.setFaults(c.faults(image));
        const down = c.scanner === 'resetting' ? resetting.url : c.scanner === 'refused' ? refusedUrl : undefined;
        // v2: the bare URL, as an Enterprise 5 user writes it.
        const url = down !== undefined ? (api === 'v1' ? down : down.replace(/\/v1$/, '')) : api === 'v1' ? sim.url : simV2.origin;
        // A scanner that is down cannot say which API it speaks: pinned, so the first call is add_image
        // (detection while down: test/integration/scanner-api.test.ts).
        const pinned = c.scanner !== undefined ? { ANCHORE_API_VERSION: api } : {};
        const webhook = await startWebhook({ ...BASE_ENV, ...c.env, ...pinned, ANCHORE_CLI_URL: url, REJECT_IF_TIMEOUT: String(rejectIfTimeout) });
        try {
          const { uid, body } = deploymentPodReview([image]);
          const res = await request(`${webhook.url}/validate?timeout=${TIMEOUT_MS / 1000}s`, { rawBody: body, timeoutMs: 20_000 });

          // ---- the answer ----
          assert.equal(res.status, 200, res.text);
          assert.equal(res.json.apiVersion, 'admission.k8s.io/v1');
          assert.equal(res.json.kind, 'AdmissionReview');
          const response = res.json.response;
          assert.equal(response.uid, uid);
          const e = api === 'v2' && c.v2 !== undefined ? c.v2.expect : c.expect;
          let reasons: string | undefined;
          let expectedResult: string;
          let deadline: { reason: string; action: string } | undefined;
          if (e.kind === 'pass') {
            assertCleanPass(response, uid);
            expectedResult = 'pass';
          } else if (e.kind === 'fail') {
            assert.equal(response.allowed, false);
            assert.equal(response.status.code, 403);
            assert.ok(
              String(response.status.message).startsWith(`Image failed policy check: ${image} (container "web"): ${e.reason}`),
              String(response.status.message),
            );
            reasons = response.status.message;
            expectedResult = 'fail';
          } else {
            const segment =
              e.kind === 'timeout'
                ? `Image scan still in progress: ${containerDetail(image, `no verdict within ${(BUDGET_MS / 1000).toFixed(1)}s; the scan continues in the background and a retry will use its verdict`)}`
                : `Scanner error: ${containerDetail(image, e.detail)}`;
            expectedResult = e.kind === 'timeout' ? 'timeout' : 'scanner-error';
            deadline = { reason: e.kind === 'timeout' ? 'timeout' : 'scanner_error', action: rejectIfTimeout ? 'denied' : 'admitted' };
            if (rejectIfTimeout) {
              assert.equal(response.allowed, false);
              assert.deepEqual(response.status, { code: 403, reason: 'Forbidden', message: segment });
              assert.equal(response.warnings, undefined);
              reasons = segment;
            } else {
              assert.equal(response.allowed, true);
              assert.equal(response.status, undefined);
              const warning = `admitted without a verdict (REJECT_IF_TIMEOUT=false): ${segment}`;
              assert.deepEqual(response.warnings, [warning.length <= 250 ? warning : `${warning.slice(0, 249)}…`]);
              reasons = response.warnings[0];
            }
          }

          // ---- the decision log line ----
          const decisions = webhook.logs.find('decision');
          assert.equal(decisions.length, 1);
          const line = decisions[0] ?? {};
          assert.equal(line['uid'], uid);
          assert.equal(line['level'], 'info');
          assert.equal(line['namespace'], 'shop');
          assert.equal(line['allowed'], response.allowed);
          assert.equal(line['result'], response.allowed ? 'allowed' : 'denied');
          assert.equal(line['reasons'], reasons);
          const images = line['images'] as Array<Record<string, unknown>>;
          assert.equal(images.length, 1);
          assert.equal(images[0]?.['image'], image);
          assert.equal(images[0]?.['cache'], 'miss');
          assert.equal(images[0]?.['result'], expectedResult);
          assert.deepEqual(line['cache'], { hit: 0, miss: 1, shared: 0 });
          if (c.logLine !== undefined) {
            const found = webhook.logs.find(c.logLine.msg);
            assert.equal(found.length, 1, `one "${c.logLine.msg}" line`);
            assert.equal(found[0]?.['level'], c.logLine.level);
          }
          if (e.kind === 'scanner-error' && e.settles) {
            const finished = webhook.logs.find('scan finished');
            assert.equal(finished.length, 1);
            assert.equal(finished[0]?.['verdict'], 'error');
            assert.equal(finished[0]?.['image'], image);
            assert.equal((finished[0]?.['err'] as Record<string, unknown> | undefined)?.['message'], e.detail);
          }

          // ---- the metrics ----
          const metrics = (await request(`${webhook.url}/metrics`)).text;
          const result = response.allowed ? 'allowed' : 'denied';
          assert.equal(metricValue(metrics, 'scangate_decisions_total', { endpoint: 'validate', result }), 1);
          assert.equal(metricValue(metrics, 'scangate_cache_lookups_total', { result: 'miss' }), 1);
          for (const [operation, outcome, atLeast] of c.calls) {
            const n = metricValue(metrics, 'scangate_scanner_calls_total', { operation, outcome });
            assert.ok(n >= atLeast, `scangate_scanner_calls_total{operation="${operation}",outcome="${outcome}"} = ${n}, expected >= ${atLeast}`);
          }
          for (const reason of ['timeout', 'scanner_error']) {
            for (const action of ['denied', 'admitted']) {
              const expected = deadline !== undefined && deadline.reason === reason && deadline.action === action ? 1 : 0;
              assert.equal(metricValue(metrics, 'scangate_deadline_expiries_total', { reason, action }), expected, `deadline_expiries{${reason},${action}}`);
            }
          }
          if (e.kind === 'pass' || e.kind === 'fail') assert.equal(metricValue(metrics, 'scangate_cache_entries'), 1);
          else assert.equal(metricValue(metrics, 'scangate_cache_entries'), 0, 'errors and timeouts are never cached');
        } finally {
          await webhook.close();
        }
      });
    }
  });
}
