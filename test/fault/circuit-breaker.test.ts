/**
 * The circuit breaker in front of the scanner (scanner/resilience.ts), over real sockets: scangate's
 * HTTPS webhook in-process, the scanner simulator with its fault knobs, and a closed port for
 * connection refused. After SCANNER_BREAKER_FAILURES consecutive failures the breaker opens and
 * admissions of uncached images are decided at once ("Scanner unavailable ...", then
 * REJECT_IF_TIMEOUT); scans waiting to retry give up; a probe goes through every
 * SCANNER_BREAKER_PROBE_INTERVAL_MS and the breaker closes when the scanner answers again.
 * Metric and log line on every transition. The scanner client runs on a manual clock
 * (test/helpers/manual-clock.ts): retries, call timeouts and the probe interval move only when the
 * test moves time, so "decided at once" means decided while that clock stands still, and intervals
 * are checked in clock time; wall-clock timings are the bench's (bench/scenarios/breaker.mjs).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MESSAGES } from '../../src/policy/decision.js';
import type { ScannerSimulator } from '@scangate/simulator';
import type { CircuitTransition } from '../../src/scanner/resilience.js';
import { metricValue, request, startWebhook, type Webhook } from '../helpers/harness.js';
import { closedPort, deploymentPodReview, startSimulator } from '../helpers/fault-harness.js';
import { ManualClock, driveUntil, tick } from '../helpers/manual-clock.js';

const FAILURES = 3;
const PROBE_MS = 1500;
const ENV = {
  ANCHORE_CLI_PASS: 'foobar',
  // A fixed API keeps the call counts exact; the auto-detection case has a test of its own.
  ANCHORE_API_VERSION: 'v1',
  SCANNER_REQUEST_TIMEOUT_MS: '300',
  SCANNER_POLL_INITIAL_MS: '20',
  SCANNER_POLL_MAX_MS: '100',
  SCANNER_RETRY_BACKOFF_MS: '20',
  SCANNER_RETRY_BUDGET_MS: '20000',
  SCANNER_BREAKER_FAILURES: String(FAILURES),
  SCANNER_BREAKER_PROBE_INTERVAL_MS: String(PROBE_MS),
  DEADLINE_MARGIN_MS: '500',
};

let sim: ScannerSimulator;
let refusedUrl: string;
let n = 0;
const image = (): string => `docker.io/library/redis:breaker-${++n}`;

before(async () => {
  sim = await startSimulator();
  refusedUrl = `http://127.0.0.1:${await closedPort()}/v1`;
});
after(async () => {
  await sim.close();
});

async function admit(w: Webhook, images: readonly string[], timeout = '10s'): Promise<{ response: Record<string, any> }> {
  const { uid, body } = deploymentPodReview(images);
  const res = await request(`${w.url}/validate?timeout=${timeout}`, { rawBody: body, timeoutMs: 30_000 });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json.response.uid, uid);
  return { response: res.json.response };
}

/**
 * An admission decided while the scanner's clock stands still: nothing of it waited for a scanner
 * timer (a call timeout, a retry, a probe), and no scan was started for it.
 */
async function admitAtOnce(w: Webhook, clock: ManualClock, images: readonly string[]): Promise<Record<string, any>> {
  const before = clock.now();
  const { response } = await admit(w, images);
  assert.equal(clock.now(), before);
  assert.equal(w.scangate.coordinator.inFlight, 0, 'no scan started');
  return response;
}

async function metrics(w: Webhook): Promise<string> {
  return (await request(`${w.url}/metrics`)).text;
}

/** Drives the breaker open with one admission whose scan keeps failing; returns that answer. */
async function openBreaker(w: Webhook, clock: ManualClock): Promise<Record<string, any>> {
  const answer = admit(w, [image()], '10s');
  await driveUntil(clock, () => w.scangate.scannerTransport.state === 'open', { maxMs: 15_000 });
  return (await answer).response;
}

const UNAVAILABLE = new RegExp(
  `^${MESSAGES.scannerUnavailable}: (\\S+) \\(container "web"\\): circuit breaker open after ${FAILURES} consecutive scanner failures \\(last: ([^)]*\\)?)\\); next probe in (\\d+\\.\\d)s$`,
);

describe('circuit breaker', () => {
  it('connection refused: opens after N failures, then uncached images are denied at once without a scan', async () => {
    const clock = new ManualClock();
    const w = await startWebhook({ ...ENV, ANCHORE_CLI_URL: refusedUrl }, { scannerClock: clock });
    const transitions: CircuitTransition[] = [];
    let openedAt: number | undefined;
    w.scangate.scannerTransport.onStateChange((t) => {
      transitions.push(t);
      openedAt ??= clock.now();
    });
    try {
      const first = await openBreaker(w, clock);
      // The scan that tipped the breaker over fails with the scanner's own error (no 20 s retry budget).
      assert.match(String(first['status']?.message), /^Scanner error: docker\.io\/library\/redis:breaker-\d+ \(container "web": scanner unreachable \(ECONNREFUSED\)\)$/);
      await w.scangate.coordinator.idle();
      const before = await metrics(w);
      const callsBefore = metricValue(before, 'scangate_scanner_calls_total', { operation: 'add_image', outcome: 'network_error' });
      assert.equal(callsBefore, FAILURES, 'exactly N calls before the breaker opened');

      const denied = [];
      // At once: decided while the scanner's clock stands still (no call timeout, no retry waited).
      for (let i = 0; i < 20; i += 1) denied.push(await admitAtOnce(w, clock, [image()]));
      for (const response of denied) {
        assert.equal(response['allowed'], false);
        assert.equal(response['status'].code, 403);
        const m = UNAVAILABLE.exec(String(response['status'].message));
        assert.ok(m !== null, String(response['status'].message));
        assert.equal(m[2], 'scanner unreachable (ECONNREFUSED)');
        assert.ok(Number(m[3]) <= PROBE_MS / 1000, `next probe within the interval: ${m[3]}`);
      }
      const afterOpen = await metrics(w);
      assert.equal(metricValue(afterOpen, 'scangate_scanner_calls_total', { operation: 'add_image', outcome: 'network_error' }), callsBefore, 'no scanner call while open');
      assert.equal(metricValue(afterOpen, 'scangate_scanner_circuit_state'), 1);
      assert.equal(metricValue(afterOpen, 'scangate_scanner_circuit_transitions_total', { to: 'open' }), 1);
      assert.equal(metricValue(afterOpen, 'scangate_deadline_expiries_total', { reason: 'scanner_error', action: 'denied' }), 21);
      assert.equal(w.scangate.coordinator.inFlight, 0, 'no scan started while open');

      const opened = w.logs.find('scanner circuit opened: scanner calls refused until a probe succeeds');
      assert.equal(opened.length, 1);
      assert.equal(opened[0]?.['level'], 'warn');
      assert.equal(opened[0]?.['failures'], FAILURES);
      assert.equal(opened[0]?.['probeIntervalMs'], PROBE_MS);
      const err = opened[0]?.['err'] as Record<string, unknown>;
      assert.equal(err['code'], 'SCANGATE_ERR_SCANNER_UNAVAILABLE');
      assert.equal(err['message'], 'scanner unreachable (ECONNREFUSED)');

      // One interval after the opening, the probe fails against the closed port: half-open, then open
      // again, each logged and counted.
      assert.ok(openedAt !== undefined);
      await clock.advance(openedAt + PROBE_MS - 1 - clock.now());
      assert.equal(w.logs.find('scanner circuit half-open: probing the scanner').length, 0, 'no probe before the interval');
      await driveUntil(clock, () => w.logs.find('scanner circuit opened again: the probe failed').length >= 1, { stepMs: 1, maxMs: 100 });
      assert.ok(w.logs.find('scanner circuit half-open: probing the scanner').length >= 1);
      const m = await metrics(w);
      assert.ok(metricValue(m, 'scangate_scanner_calls_total', { operation: 'status', outcome: 'network_error' }) >= 1, 'the probe is GET /status');
      assert.ok(metricValue(m, 'scangate_scanner_circuit_transitions_total', { to: 'half_open' }) >= 1);
      assert.deepEqual(transitions.slice(0, 3), [
        { from: 'closed', to: 'open' },
        { from: 'open', to: 'half_open' },
        { from: 'half_open', to: 'open' },
      ]);
    } finally {
      await w.close();
    }
  });

  it('ANCHORE_API_VERSION=auto with the scanner refusing from the start: the detection opens it, the probe asks GET /v2/version', async () => {
    const clock = new ManualClock();
    const w = await startWebhook({ ...ENV, ANCHORE_API_VERSION: 'auto', ANCHORE_CLI_URL: refusedUrl }, { scannerClock: clock });
    try {
      await openBreaker(w, clock);
      const response = await admitAtOnce(w, clock, [image()]);
      const m = UNAVAILABLE.exec(String(response['status']?.message));
      assert.ok(m !== null, String(response['status']?.message));
      assert.equal(m[2], 'scanner unreachable (ECONNREFUSED)');
      const took = await driveUntil(clock, () => w.logs.find('scanner circuit opened again: the probe failed').length >= 1, { maxMs: PROBE_MS + 100 });
      assert.ok(took <= PROBE_MS + 10, `the probe went within one interval (${took} ms of clock time)`);
      assert.ok(metricValue(await metrics(w), 'scangate_scanner_calls_total', { operation: 'version', outcome: 'network_error' }) >= 2);
    } finally {
      await w.close();
    }
  });

  it('REJECT_IF_TIMEOUT=false: admitted at once with a warning while open', async () => {
    const clock = new ManualClock();
    const w = await startWebhook({ ...ENV, ANCHORE_CLI_URL: refusedUrl, REJECT_IF_TIMEOUT: 'false' }, { scannerClock: clock });
    try {
      await openBreaker(w, clock);
      const response = await admitAtOnce(w, clock, [image()]);
      assert.equal(response['allowed'], true);
      assert.equal(response['status'], undefined);
      const warnings = response['warnings'] as string[];
      assert.equal(warnings.length, 1);
      assert.ok(warnings[0]?.startsWith(`admitted without a verdict (REJECT_IF_TIMEOUT=false): ${MESSAGES.scannerUnavailable}: `), warnings[0]);
      assert.match(String(warnings[0]), /circuit breaker open after 3 consecutive scanner failures/);
      assert.equal(metricValue(await metrics(w), 'scangate_deadline_expiries_total', { reason: 'scanner_error', action: 'admitted' }), 2);
    } finally {
      await w.close();
    }
  });

  it('a hanging scanner: opens on timeouts, the probe keeps failing, closes within one interval of recovery', async () => {
    sim.reset();
    sim.setFaults({ hang: true });
    const clock = new ManualClock();
    const w = await startWebhook({ ...ENV, ANCHORE_CLI_URL: sim.url }, { scannerClock: clock });
    try {
      await openBreaker(w, clock);
      const opened = w.logs.find('scanner circuit opened: scanner calls refused until a probe succeeds');
      assert.equal((opened[0]?.['err'] as Record<string, unknown>)['message'], 'scanner did not answer add_image within 300 ms');
      await w.scangate.coordinator.idle();
      const posts = sim.stats().addImage;
      const response = await admitAtOnce(w, clock, [image()]);
      assert.match(String(response['status']?.message), UNAVAILABLE);
      assert.equal(sim.stats().addImage, posts, 'nothing sent to the scanner while open');

      // The probe hangs too: it times out and the breaker opens again.
      await driveUntil(clock, () => w.logs.find('scanner circuit opened again: the probe failed').length >= 1, { maxMs: PROBE_MS * 2 });
      assert.ok(metricValue(await metrics(w), 'scangate_scanner_calls_total', { operation: 'status', outcome: 'timeout' }) >= 1);

      // The scanner comes back: within one probe interval the breaker closes and verdicts flow again.
      sim.setFaults({});
      const closedAfterMs = await driveUntil(clock, () => w.scangate.scannerTransport.state === 'closed', { maxMs: PROBE_MS * 2 });
      assert.ok(closedAfterMs <= PROBE_MS + 10, `closed ${closedAfterMs} ms (clock time) after the scanner's return`);
      const closed = w.logs.find('scanner circuit closed: the scanner answers again');
      assert.equal(closed.length, 1);
      assert.equal(closed[0]?.['level'], 'info');
      assert.ok(Number(closed[0]?.['openMs']) >= PROBE_MS, String(closed[0]?.['openMs']));
      const verdict = await admit(w, [image()]);
      assert.equal(verdict.response['allowed'], true);
      assert.equal(verdict.response['status'], undefined);
      assert.equal(verdict.response['warnings'], undefined);
      const m = await metrics(w);
      assert.equal(metricValue(m, 'scangate_scanner_circuit_state'), 0);
      assert.equal(metricValue(m, 'scangate_scanner_circuit_transitions_total', { to: 'closed' }), 1);
    } finally {
      sim.setFaults({});
      await w.close();
    }
  });

  it('scans waiting to retry give up when the breaker opens (no retry storm)', async () => {
    sim.reset();
    sim.setFaults({ status: 503 });
    // A long probe interval: only the first N failures and the scans already in flight reach the scanner.
    const clock = new ManualClock();
    const w = await startWebhook(
      { ...ENV, ANCHORE_CLI_URL: sim.url, SCANNER_BREAKER_PROBE_INTERVAL_MS: '60000', SCANNER_BREAKER_FAILURES: '6' },
      { scannerClock: clock },
    );
    try {
      const pending = Promise.all(Array.from({ length: 5 }, () => admit(w, [image()], '20s')));
      await driveUntil(clock, () => w.scangate.scannerTransport.state === 'open', { maxMs: 20_000 });
      // Every scan settles as soon as the breaker opens, far inside the 20 s retry budget: without the
      // scanner's clock moving again.
      let idle = false;
      void w.scangate.coordinator.idle().then(() => {
        idle = true;
      });
      for (let i = 0; i < 50 && !idle; i += 1) await tick();
      assert.ok(idle, 'every scan settled when the breaker opened');
      const answers = await pending;
      assert.equal(w.scangate.scannerTransport.state, 'open');
      for (const { response } of answers) {
        assert.equal(response['allowed'], false);
        const message = String(response['status']?.message);
        assert.ok(
          /^Scanner error: \S+ \(container "web": scanner failed add_image \(HTTP 503\)\)$/.test(message) ||
          // Waiting to retry when the breaker opened, or arrived after it: the breaker's answer.
          /^Scanner unavailable: \S+ \(container "web"\): circuit breaker open after 6 consecutive scanner failures/.test(message),
          message,
        );
      }
      const posts = sim.stats().addImage;
      assert.ok(posts >= 6 && posts <= 10, `${posts} POSTs: the threshold plus the calls already in flight`);
      await clock.advance(20_000);
      assert.equal(sim.stats().addImage, posts, 'no retry after the breaker opened, for the whole retry budget');
    } finally {
      sim.setFaults({});
      await w.close();
    }
  });

  it("a tenant's images do not open it: POST /images failing or timing out for its registry, analyses failing or stuck; a clean image is still scanned (issue 15, I2)", async () => {
    sim.reset();
    // A short retry budget: a few attempts per scan, each failure about that scan's image.
    const w = await startWebhook({ ...ENV, ANCHORE_CLI_URL: sim.url, SCANNER_RETRY_BUDGET_MS: '100', SCAN_MAX_DURATION_MS: '1000' });
    const tenant = (repository: string): string => `docker.io/evil/${repository}:v${++n}`;
    try {
      // The scanner answers calls about no image (GET /status) all along; only the tenant's images fail.
      // Anchore cannot fetch the manifest from the tenant's registry: POST /images answers 500.
      sim.setFaults({ status: 500, operations: ['addImage'] });
      for (let i = 0; i < FAILURES * 3; i += 1) {
        const image = tenant('app');
        const { response } = await admit(w, [image], '2s');
        assert.equal(response['status']?.message, `Scanner error: ${image} (container "web": scanner failed add_image (HTTP 500))`);
      }
      // The tenant's registry stalls: POST /images takes longer than SCANNER_REQUEST_TIMEOUT_MS.
      sim.setFaults({ latencyMs: 1000, operations: ['addImage'] });
      for (let i = 0; i < FAILURES * 3; i += 1) {
        const image = tenant('app');
        const { response } = await admit(w, [image], '2s');
        assert.equal(response['status']?.message, `Scanner error: ${image} (container "web": scanner did not answer add_image within 300 ms)`);
      }
      // Analyses that end in analysis_failed or never end (the scan runs into SCAN_MAX_DURATION_MS).
      sim.setFaults({ analysisFailed: ['docker.io/evil/failing'], neverAnalyzed: ['docker.io/evil/stuck'] });
      for (let i = 0; i < FAILURES * 2; i += 1) {
        const { response } = await admit(w, [tenant(i % 2 === 0 ? 'failing' : 'stuck')], '2s');
        assert.equal(response['allowed'], false);
        assert.doesNotMatch(String(response['status']?.message), /circuit breaker/);
      }
      await w.scangate.coordinator.idle();
      assert.equal(w.scangate.scannerTransport.state, 'closed');
      assert.equal(metricValue(await metrics(w), 'scangate_scanner_circuit_transitions_total', { to: 'open' }), 0);
      // Another tenant's clean image is scanned and admitted.
      const clean = await admit(w, [image()]);
      assert.equal(clean.response['allowed'], true);
      assert.equal(clean.response['status'], undefined);
      assert.equal(clean.response['warnings'], undefined);
    } finally {
      sim.setFaults({});
      await w.close();
    }
  });

  it('4xx answers do not open it: 401 and 404 prove the scanner is up', async () => {
    sim.reset();
    sim.setFaults({ status: 401 });
    const w = await startWebhook({ ...ENV, ANCHORE_CLI_URL: sim.url });
    try {
      for (let i = 0; i < FAILURES + 2; i += 1) {
        const { response } = await admit(w, [image()]);
        assert.match(String(response['status']?.message), /^Scanner error: .*scanner rejected the credentials \(HTTP 401\)/);
      }
      sim.setFaults({ status: 404, operations: ['check'] });
      for (let i = 0; i < FAILURES + 2; i += 1) {
        const { response } = await admit(w, [image()]);
        assert.match(String(response['status']?.message), /^Scanner error: .*scanner cannot evaluate the image \(HTTP 404/);
      }
      assert.equal(w.scangate.scannerTransport.state, 'closed');
      assert.equal(metricValue(await metrics(w), 'scangate_scanner_circuit_transitions_total', { to: 'open' }), 0);
    } finally {
      sim.setFaults({});
      await w.close();
    }
  });

  it('SCANNER_BREAKER_FAILURES=0 turns it off', async () => {
    const w = await startWebhook({ ...ENV, ANCHORE_CLI_URL: refusedUrl, SCANNER_BREAKER_FAILURES: '0', SCANNER_RETRY_BUDGET_MS: '300' });
    try {
      for (let i = 0; i < 4; i += 1) {
        const { response } = await admit(w, [image()]);
        assert.match(String(response['status']?.message), /^Scanner error: .*scanner unreachable \(ECONNREFUSED\)/);
      }
      assert.equal(w.scangate.scannerTransport.state, 'closed');
    } finally {
      await w.close();
    }
  });
});
