/**
 * Soak: 20 000 mixed requests (cache hits, misses, merged scans, failing and stuck images, local-rule
 * denials, ImageReviews, bad bodies) at 64 keep-alive connections against scangate as a child process,
 * while the scanner cycles through faults (500, 429, hang, malformed). Zero 5xx, zero transport
 * errors, zero unhandled rejections or internal errors in its log, RSS bounded, every scan settles.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FaultConfig, ScannerSimulator } from '@scangate/simulator';
import { admissionReview, imageReview, metricValue } from '../helpers/harness.js';
import {
  deploymentPodReview,
  FAILING_IMAGE,
  get,
  PASSING_IMAGE,
  rssBytes,
  runPool,
  spawnScangate,
  startSimulator,
  waitFor,
  type ChildScangate,
  type PoolRequest,
  assertCleanPass,
} from '../helpers/fault-harness.js';

const TOTAL = 20_000;
const CONNECTIONS = 64;
/**
 * Measured under Node 24 on the same machine: 212 MiB for 4288399, 247-257 MiB since the breaker opens
 * only when the probe confirms the scanner service fails (issue 15, I2): the faulted operations here
 * fail while /status answers, so ~1100 scans now retry within their budget instead of ~5 (the rest
 * refused by an open breaker), with their calls in flight. Still a bound on growth, not a measurement:
 * a leak growing with the 20000 requests still fails it.
 */
const RSS_LIMIT_BYTES = 300 * 1024 * 1024;
const CACHE_MAX_ENTRIES = 5000;

/** Analysis faults stay set through every phase; transport faults cycle. */
const ALWAYS: FaultConfig = { analysisFailed: ['docker.io/library/broken'], neverAnalyzed: ['docker.io/library/stuck'] };
const PHASES: readonly FaultConfig[] = [
  {},
  { status: 500, operations: ['addImage'] },
  {},
  { hang: true, operations: ['check'] },
  {},
  { status: 429, retryAfterSeconds: 0 },
  {},
  { malformed: true, operations: ['getImage', 'check'] },
];
const PHASE_MS = 1000;

type Kind = 'hit' | 'miss' | 'shared' | 'broken' | 'stuck' | 'local' | 'bad-json' | 'image-review' | 'wrong-type';
const KINDS: readonly Kind[] = ['hit', 'hit', 'hit', 'hit', 'hit', 'hit', 'hit', 'hit', 'hit', 'hit', 'miss', 'miss', 'miss', 'shared', 'broken', 'stuck', 'local', 'bad-json', 'image-review', 'wrong-type'];

function requestFor(i: number): PoolRequest {
  const kind = KINDS[i % KINDS.length] ?? 'hit';
  const review = (images: string[]): string => deploymentPodReview(images, { uid: `soak-${i}` }).body;
  switch (kind) {
    case 'hit':
      return { tag: kind, path: '/validate?timeout=2s', body: review(i % 3 === 0 ? [PASSING_IMAGE, FAILING_IMAGE] : [PASSING_IMAGE]) };
    case 'miss':
      return { tag: kind, path: '/validate?timeout=2s', body: review([`docker.io/library/soak:${i}`, PASSING_IMAGE]) };
    case 'shared':
      return { tag: kind, path: '/validate?timeout=2s', body: review([`docker.io/library/soak-shared:${Math.floor(i / 400)}`]) };
    case 'broken':
      return { tag: kind, path: '/validate?timeout=2s', body: review([`docker.io/library/broken:${i}`]) };
    case 'stuck':
      return { tag: kind, path: '/validate?timeout=1s', body: review([`docker.io/library/stuck:${i % 40}`]) };
    case 'local':
      return { tag: kind, path: '/validate?timeout=2s', body: review(i % 2 === 0 ? ['nginx', PASSING_IMAGE] : ['Not/A Reference']) };
    case 'bad-json':
      return { tag: kind, path: '/validate', body: review([PASSING_IMAGE]).slice(0, 100 + (i % 500)) };
    case 'image-review':
      return { tag: kind, path: '/image_policy?timeout=2s', body: JSON.stringify(imageReview([PASSING_IMAGE])) };
    case 'wrong-type':
      return { tag: kind, path: '/validate', body: JSON.stringify({ ...admissionReview({ containers: [PASSING_IMAGE] }).body, request: { uid: `soak-${i}`, object: { spec: { containers: 7 } }, operation: 'CREATE', resource: { group: '', resource: 'pods' } } }) };
  }
}

let sim: ScannerSimulator;
let scangate: ChildScangate;

before(async () => {
  sim = await startSimulator();
  sim.setFaults(ALWAYS);
  scangate = await spawnScangate({
    ANCHORE_CLI_URL: sim.url,
    ANCHORE_CLI_PASS: 'foobar',
    SCANNER_REQUEST_TIMEOUT_MS: '300',
    SCANNER_RETRY_BUDGET_MS: '300',
    SCANNER_POLL_INITIAL_MS: '20',
    SCANNER_POLL_MAX_MS: '100',
    DEADLINE_MARGIN_MS: '500',
    CACHE_MAX_ENTRIES: String(CACHE_MAX_ENTRIES),
    // One namespace sends every request here: this soak is about the scanner's faults, not fair sharing.
    MAX_SCANS_PER_NAMESPACE: '100000',
  });
});
after(async () => {
  await scangate.kill();
  await sim.close();
});

describe('soak', () => {
  it(`${TOTAL} mixed requests at ${CONNECTIONS} connections while the scanner misbehaves`, async () => {
    // Prime the verdicts that "hit" requests use.
    for (const image of [PASSING_IMAGE, FAILING_IMAGE]) {
      const r = await runPool({ baseUrl: scangate.url, connections: 1, count: 1, maxDurationMs: 10_000, requestTimeoutMs: 10_000, next: () => ({ path: '/validate?timeout=5s', body: deploymentPodReview([image]).body }) });
      assert.equal(r[0]?.response?.status, 200);
    }
    const pid = scangate.child.pid ?? 0;
    const rssSamples: number[] = [rssBytes(pid)];
    const sampler = setInterval(() => rssSamples.push(rssBytes(pid)), 250);
    let phase = 0;
    const faulter = setInterval(() => {
      phase = (phase + 1) % PHASES.length;
      sim.setFaults({ ...ALWAYS, ...PHASES[phase] });
    }, PHASE_MS);
    let results;
    try {
      // Every request is sent however long the machine takes: how fast is the benches' question (bench/).
      results = await runPool({ baseUrl: scangate.url, connections: CONNECTIONS, count: TOTAL, maxDurationMs: Number.POSITIVE_INFINITY, requestTimeoutMs: 30_000, next: requestFor });
    } finally {
      clearInterval(faulter);
      clearInterval(sampler);
      // A healthy scanner again, and the stuck images finally analysed, so every scan can settle.
      sim.setFaults({});
    }

    // ---- every request answered, none with a 5xx ----
    assert.equal(results.length, TOTAL, `only ${results.length} requests issued`);
    const transport = results.filter((r) => r.response === undefined);
    assert.deepEqual(transport.map((r) => r.error).slice(0, 5), [], `${transport.length} transport errors`);
    const byStatus = new Map<number, number>();
    for (const r of results) byStatus.set(r.response?.status ?? 0, (byStatus.get(r.response?.status ?? 0) ?? 0) + 1);
    const serverErrors = results.filter((r) => (r.response?.status ?? 0) >= 500);
    assert.equal(serverErrors.length, 0, `5xx answers: ${serverErrors.slice(0, 3).map((r) => r.response?.text).join(' | ')}`);

    // ---- each kind answered as it should be ----
    const counts: Record<string, number> = {};
    for (const [i, r] of results.entries()) {
      const kind = r.request.tag ?? '?';
      const res = r.response;
      assert.ok(res !== undefined);
      counts[`${kind}:${res.status}`] = (counts[`${kind}:${res.status}`] ?? 0) + 1;
      if (kind === 'bad-json' || kind === 'wrong-type') {
        assert.equal(res.status, 400, `${kind} #${i}: ${res.text.slice(0, 200)}`);
        assert.equal(res.json.code, 'SCANGATE_ERR_BAD_REQUEST');
        continue;
      }
      assert.equal(res.status, 200, `${kind} #${i}: ${res.text.slice(0, 200)}`);
      if (kind === 'image-review') {
        assert.deepEqual(res.json, { apiVersion: 'imagepolicy.k8s.io/v1alpha1', kind: 'ImageReview', status: { allowed: true } });
        continue;
      }
      const response = res.json.response;
      assert.equal(response.uid, `soak-${i}`);
      const message: string = response.status?.message ?? '';
      switch (kind) {
        case 'hit':
          if (i % 3 === 0) assert.match(message, /^Image failed policy check: docker\.io\/apache\/struts2:2\.3\.12 /);
          else assertCleanPass(response, `soak-${i}`);
          break;
        case 'broken':
          // A verdict when the scanner answered, a scanner error while it was faulted (or the open
          // circuit breaker's answer once the faults opened it).
          assert.equal(response.allowed, false);
          assert.match(message, /^(Image failed policy check: docker\.io\/library\/broken:\d+ \(container "web"\): analysis\/failed|Scanner error: |Scanner unavailable: )/);
          break;
        case 'stuck':
          assert.equal(response.allowed, false);
          assert.match(message, /^(Image scan still in progress|Scanner error|Scanner unavailable): docker\.io\/library\/stuck:\d+ /);
          break;
        case 'local':
          assert.equal(response.allowed, false);
          assert.match(message, /^(Images using latest tag are not allowed: nginx |Invalid image reference: Not\/A Reference )/);
          break;
        default:
          // miss, shared: allowed with a verdict, or denied with a scanner error while faulted.
          if (!response.allowed) assert.match(message, /^Scanner (error|unavailable): /);
      }
    }

    // The faults were felt: some misses got a scanner error rather than a verdict.
    const scannerErrors = results.filter((r) => /^Scanner error: /.test(String(r.response?.json?.response?.status?.message ?? ''))).length;
    assert.ok(scannerErrors > 0, 'no request met a scanner fault');

    // ---- the process: alive, nothing unhandled, memory bounded, every scan settles ----
    assert.equal(scangate.child.exitCode, null, 'scangate still running');
    const bad = scangate.lines.filter((l) => /unhandled|internal error/i.test(String(l['msg'])) || l['level'] === 'fatal');
    assert.deepEqual(bad.slice(0, 3), [], `${bad.length} unhandled-rejection / internal-error lines`);
    assert.equal(scangate.stderr(), '');
    const maxRss = Math.max(...rssSamples);
    assert.ok(maxRss < RSS_LIMIT_BYTES, `max RSS ${(maxRss / 2 ** 20).toFixed(0)} MiB`);
    const settled = await waitFor(async () => metricValue((await get(`${scangate.url}/metrics`)).text, 'scangate_scans_in_progress') === 0, 15_000, 200);
    assert.ok(settled, 'every background scan settles once the scanner is healthy');
    const metrics = (await get(`${scangate.url}/metrics`)).text;
    assert.ok(metricValue(metrics, 'scangate_cache_entries') <= CACHE_MAX_ENTRIES);
    // One decision line per judged request (the pipe may still be delivering the last ones).
    const reviews = results.filter((r) => r.request.tag !== 'bad-json' && r.request.tag !== 'wrong-type').length + 2;
    await waitFor(() => scangate.find('decision').length >= reviews, 10_000);
    assert.equal(scangate.find('decision').length, reviews, 'one decision line per judged request');

    process.stdout.write(
      `# soak: ${results.length} requests, ` +
        `statuses ${JSON.stringify(Object.fromEntries(byStatus))}, scanner errors ${scannerErrors}, max RSS ${(maxRss / 2 ** 20).toFixed(0)} MiB ` +
        `(start ${((rssSamples[0] ?? 0) / 2 ** 20).toFixed(0)} MiB), kinds ${JSON.stringify(counts)}\n`,
    );

    // ---- and it still stops cleanly ----
    scangate.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const exit = await Promise.race([scangate.exited, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), 30_000)))]);
    clearTimeout(timer);
    assert.deepEqual(exit, { code: 0, signal: null });
  });
});
