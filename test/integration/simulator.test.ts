/**
 * The scanner simulator over real sockets on 127.0.0.1:0, driven with Node's fetch the way a
 * client would drive Anchore.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runSimulatorCli, SIMULATOR_MAIN_JS, SimulatorConfigError, startScannerSimulator, type ScannerSimulator } from '@scangate/simulator';

const STRUTS = 'docker.io/kaizheh/apache-struts2-cve-2017-5638:latest';
const NGINX = 'docker.io/library/nginx:1.25.3';
const BITNAMI = 'docker.io/bitnami/nginx:1.25.3';
const PYTHON = 'docker.io/library/python:3.6';
const basic = (user: string, pass: string): string => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
const AUTH = basic('admin', 'foobar');
/** The real setTimeout, to wait for sockets while a test has mocked the timers. */
const realSetTimeout = globalThis.setTimeout;
const realDelay = (ms: number): Promise<void> =>
  new Promise((resolve) => {
    realSetTimeout(resolve, ms);
  });
/** Waits (in real time) until the simulator has counted `total` requests. */
async function arrived(sim: ScannerSimulator, total: number): Promise<void> {
  while (sim.stats().total < total) await realDelay(5);
}

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: () => unknown;
}

async function call(
  base: string,
  method: string,
  path: string,
  options: { body?: unknown; auth?: string | null; signal?: AbortSignal } = {},
): Promise<Answer> {
  const headers: Record<string, string> = {};
  const auth = options.auth === undefined ? AUTH : options.auth;
  if (auth !== null) headers['authorization'] = auth;
  let body: string | undefined;
  if (options.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
  }
  const res = await fetch(`${base}${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body } : {}),
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) as unknown };
}

type ImageRecord = { imageDigest: string; analysis_status: string; created_at: string; image_detail: Array<Record<string, string>> };

async function addImage(sim: ScannerSimulator, body: unknown, query = 'autosubscribe=false'): Promise<ImageRecord> {
  const res = await call(sim.url, 'POST', `/images?${query}`, { body });
  assert.equal(res.status, 200, res.text);
  const list = res.json() as ImageRecord[];
  assert.ok(Array.isArray(list));
  assert.equal(list.length, 1);
  return list[0] as ImageRecord;
}

function checkPath(digest: string, tag: string, extra = ''): string {
  return `/images/${digest}/check?tag=${encodeURIComponent(tag)}&detail=true&history=false${extra}`;
}

interface Evaluation {
  status: string;
  policyId: string;
  last_evaluation: string;
  detail: { result: Record<string, { result: { header: string[]; rows: unknown[][]; row_count: number; final_action: string } }> };
}

function evaluationOf(body: unknown, digest: string, tag: string): Evaluation {
  assert.ok(Array.isArray(body), 'check answer is an array');
  const byTag = (body[0] as Record<string, Record<string, Evaluation[]>>)[digest];
  assert.ok(byTag !== undefined, 'entry for the digest');
  assert.deepEqual(Object.keys(byTag), [tag]);
  const evaluation = byTag[tag]?.[0];
  assert.ok(evaluation !== undefined);
  return evaluation;
}

function tableOf(evaluation: Evaluation, imageId: string) {
  const table = evaluation.detail.result[imageId]?.result;
  assert.ok(table !== undefined, 'detail.result[imageId].result');
  return table;
}

describe('scanner simulator over HTTP', () => {
  let sim: ScannerSimulator;
  // The analysis lifecycle runs on this clock: it moves only when a test moves it.
  let clock = Date.now();
  before(async () => {
    sim = await startScannerSimulator({ now: () => clock });
  });
  after(async () => {
    await sim.close();
  });
  beforeEach(() => {
    sim.reset();
  });

  it('listens on an ephemeral port under /v1', () => {
    assert.match(sim.url, /^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    assert.ok(sim.port > 0);
    assert.equal(new URL(sim.url).port, String(sim.port));
  });

  it('requires Basic auth on v1 calls', async () => {
    for (const auth of [null, basic('admin', 'wrong'), basic('other', 'foobar'), 'Bearer abc', 'Basic !!!']) {
      const res = await call(sim.url, 'GET', '/images', { auth });
      assert.equal(res.status, 401);
      assert.deepEqual(res.json(), { message: 'Unauthorized', httpcode: 401, detail: {} });
      assert.match(res.headers.get('www-authenticate') ?? '', /^Basic/);
    }
    assert.equal((await call(sim.url, 'GET', '/images')).status, 200);
    // The ping answers without credentials, like Anchore's GET /.
    assert.equal((await call(sim.url, 'GET', '', { auth: null })).text, '"v1"');
    const stats = sim.stats();
    assert.equal(stats.unauthorized, 5);
    assert.equal(stats.listImages, 6);
    assert.equal(stats.total, 7);
  });

  it('walks not_analyzed -> analyzing -> analyzed with a delay, and checks 404 meanwhile', async () => {
    sim.setAnalysisDelayMs(300);
    const record = await addImage(sim, { tag: NGINX });
    assert.equal(record.analysis_status, 'not_analyzed');
    assert.equal(record.image_detail[0]?.['fulltag'], NGINX);
    assert.equal(record.image_detail[0]?.['fulldigest'], `docker.io/library/nginx@${record.imageDigest}`);
    assert.equal(record.image_detail[0]?.['registry'], 'docker.io');
    assert.equal(record.image_detail[0]?.['repo'], 'library/nginx');
    assert.equal(record.image_detail[0]?.['tag'], '1.25.3');
    assert.match(record.imageDigest, /^sha256:[a-f0-9]{64}$/);

    const pending = await call(sim.url, 'GET', checkPath(record.imageDigest, NGINX));
    assert.equal(pending.status, 404);
    assert.deepEqual(pending.json(), {
      message: `image is not analyzed - analysis_status: ${(pending.json() as { message: string }).message.split(': ')[1] ?? ''}`,
      httpcode: 404,
      detail: {},
    });
    assert.match((pending.json() as { message: string }).message, /^image is not analyzed - analysis_status: (not_analyzed|analyzing)$/);
    assert.equal((await call(sim.url, 'GET', `/images/${record.imageDigest}/vuln/all`)).status, 404);

    const statusAfter = async (ms: number): Promise<string> => {
      clock += ms;
      const res = await call(sim.url, 'GET', `/images/${record.imageDigest}`);
      assert.equal(res.status, 200);
      return (res.json() as ImageRecord[])[0]?.analysis_status ?? '?';
    };
    // A quarter of the delay not_analyzed, then analyzing, analyzed once the delay is over.
    assert.equal(await statusAfter(74), 'not_analyzed');
    assert.equal(await statusAfter(1), 'analyzing');
    assert.equal(await statusAfter(224), 'analyzing', 'not analyzed before the delay');
    assert.equal((await call(sim.url, 'GET', checkPath(record.imageDigest, NGINX))).status, 404);
    assert.equal(await statusAfter(1), 'analyzed');

    const check = await call(sim.url, 'GET', checkPath(record.imageDigest, NGINX));
    assert.equal(check.status, 200);
    const evaluation = evaluationOf(check.json(), record.imageDigest, NGINX);
    assert.equal(evaluation.status, 'pass');
    assert.equal(evaluation.policyId, '2c53a13c-1765-11e8-82ef-23527761d060');
    assert.match(evaluation.last_evaluation, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    const imageId = record.image_detail[0]?.['imageId'] ?? '';
    const table = tableOf(evaluation, imageId);
    assert.deepEqual(table.header, ['Image_Id', 'Repo_Tag', 'Trigger_Id', 'Gate', 'Trigger', 'Check_Output', 'Gate_Action', 'Whitelisted', 'Policy_Id']);
    assert.equal(table.final_action, 'go');
    assert.equal(table.row_count, 0);
  });

  it('fails struts2 on CVE-2017-5638 with a stop row, and lists its vulnerabilities', async () => {
    const record = await addImage(sim, { tag: STRUTS });
    assert.equal(record.analysis_status, 'analyzed');
    const res = await call(sim.url, 'GET', checkPath(record.imageDigest, STRUTS));
    assert.equal(res.status, 200);
    const evaluation = evaluationOf(res.json(), record.imageDigest, STRUTS);
    assert.equal(evaluation.status, 'fail');
    const imageId = record.image_detail[0]?.['imageId'] ?? '';
    const table = tableOf(evaluation, imageId);
    assert.equal(table.final_action, 'stop');
    assert.equal(table.row_count, table.rows.length);
    assert.deepEqual(table.rows[0], [
      imageId,
      STRUTS,
      'CVE-2017-5638+struts2-core',
      'vulnerabilities',
      'package',
      'CRITICAL Vulnerability found in non-os package type (java) - /usr/local/tomcat/webapps/ROOT/WEB-INF/lib/struts2-core-2.3.12.jar (CVE-2017-5638 - https://nvd.nist.gov/vuln/detail/CVE-2017-5638)',
      'stop',
      false,
      '2c53a13c-1765-11e8-82ef-23527761d060',
    ]);
    // Anchore Engine's own nesting is there too: detail.result.result[image_id].result.
    const result = evaluation.detail.result as unknown as Record<string, unknown>;
    assert.equal(result['image_id'], imageId);
    assert.deepEqual((result['result'] as Record<string, unknown>)[imageId], { result: table });

    const vulns = await call(sim.url, 'GET', `/images/${record.imageDigest}/vuln/all`);
    assert.equal(vulns.status, 200);
    const body = vulns.json() as { imageDigest: string; vulnerability_type: string; vulnerabilities: Array<Record<string, string>> };
    assert.equal(body.imageDigest, record.imageDigest);
    assert.equal(body.vulnerability_type, 'all');
    assert.deepEqual(
      { ...body.vulnerabilities[0] },
      {
        ...body.vulnerabilities[0],
        vuln: 'CVE-2017-5638',
        severity: 'Critical',
        package: 'struts2-core-2.3.12',
        fix: '2.3.32',
        url: 'https://nvd.nist.gov/vuln/detail/CVE-2017-5638',
      },
    );
    assert.equal((await call(sim.url, 'GET', `/images/${record.imageDigest}/vuln/os`)).status, 200);
    assert.equal((await call(sim.url, 'GET', `/images/${record.imageDigest}/vuln/bogus`)).status, 404);
  });

  it('passes bitnami/nginx with a warn row, fails python:3.6 on a High', async () => {
    const bitnami = await addImage(sim, { tag: BITNAMI });
    const b = evaluationOf((await call(sim.url, 'GET', checkPath(bitnami.imageDigest, BITNAMI))).json(), bitnami.imageDigest, BITNAMI);
    assert.equal(b.status, 'pass');
    const bTable = tableOf(b, bitnami.image_detail[0]?.['imageId'] ?? '');
    assert.equal(bTable.final_action, 'warn');
    assert.deepEqual(
      bTable.rows.map((r) => r[6]),
      ['warn'],
    );
    // A named policy that stops on Medium turns the same image into a failure.
    const strict = await call(sim.url, 'GET', checkPath(bitnami.imageDigest, BITNAMI, '&policyId=scangate-strict'));
    assert.equal(evaluationOf(strict.json(), bitnami.imageDigest, BITNAMI).status, 'fail');
    const unknownPolicy = await call(sim.url, 'GET', checkPath(bitnami.imageDigest, BITNAMI, '&policyId=nope'));
    assert.equal(unknownPolicy.status, 404);
    assert.equal((unknownPolicy.json() as { httpcode: number }).httpcode, 404);

    const python = await addImage(sim, { tag: PYTHON });
    const p = evaluationOf((await call(sim.url, 'GET', checkPath(python.imageDigest, PYTHON))).json(), python.imageDigest, PYTHON);
    assert.equal(p.status, 'fail');
    assert.ok(tableOf(p, python.image_detail[0]?.['imageId'] ?? '').rows.some((r) => String(r[5]).startsWith('HIGH ') && r[6] === 'stop'));
  });

  it('submits idempotently, by any body form, and keeps the digest given', async () => {
    sim.setAnalysisDelayMs(60_000);
    const first = await addImage(sim, { tag: NGINX });
    const again = await addImage(sim, { source: { tag: { pullstring: 'nginx:1.25.3' } } });
    assert.equal(again.imageDigest, first.imageDigest);
    assert.equal(again.created_at, first.created_at);
    assert.equal(again.image_detail.length, 1);
    assert.equal(sim.stats().byTag[NGINX]?.addImage, 2);

    const pinned = `sha256:${'5'.repeat(64)}`;
    const legacy = await addImage(sim, { tag: 'quay.io/org/app:v1', digest: pinned });
    assert.equal(legacy.imageDigest, pinned);
    const viaSource = await addImage(sim, { source: { digest: { pullstring: `quay.io/org/app@${pinned}`, tag: 'quay.io/org/app:v2' } } });
    assert.equal(viaSource.imageDigest, pinned);
    assert.deepEqual(
      viaSource.image_detail.map((d) => d['fulltag']),
      ['quay.io/org/app:v1', 'quay.io/org/app:v2'],
    );
    const listed = await call(sim.url, 'GET', `/images?fulltag=${encodeURIComponent('quay.io/org/app:v2')}`);
    assert.deepEqual(
      (listed.json() as ImageRecord[]).map((r) => r.imageDigest),
      [pinned],
    );
    assert.deepEqual((await call(sim.url, 'GET', '/images?fulltag=quay.io%2Forg%2Fapp%3Anone')).json(), []);
    assert.equal(((await call(sim.url, 'GET', '/images')).json() as unknown[]).length, 2);
    const forced = await addImage(sim, { tag: NGINX }, 'autosubscribe=false&force=true');
    assert.equal(forced.analysis_status, 'not_analyzed');
    assert.equal(sim.stats().forced, 1);
    assert.equal(sim.stats().autosubscribed, 0);
  });

  it('answers bad requests and unknown things with Anchore error bodies', async () => {
    const cases: Array<[string, string, unknown, number, RegExp]> = [
      ['POST', '/images', { digest: `sha256:${'1'.repeat(64)}` }, 400, /tag is required/],
      ['POST', '/images', '{not json', 400, /not valid JSON/],
      ['POST', '/images', { tag: 'Not A Tag' }, 400, /not a valid image reference/],
      ['GET', `/images/sha256:${'9'.repeat(64)}`, undefined, 404, /cannot locate specified image/],
      ['GET', `/images/sha256:${'9'.repeat(64)}/check?tag=nginx`, undefined, 404, /image not found/],
      ['GET', `/images/sha256:${'9'.repeat(64)}/vuln/all`, undefined, 404, /image not found/],
      ['GET', '/nothing/here', undefined, 404, /not found/],
      ['DELETE', '/images', undefined, 405, /not allowed/],
    ];
    for (const [method, path, body, status, message] of cases) {
      const res = await call(sim.url, method, path, { body });
      assert.equal(res.status, status, `${method} ${path}: ${res.text}`);
      const json = res.json() as { message: string; httpcode: number; detail: unknown };
      assert.match(json.message, message);
      assert.equal(json.httpcode, status);
      assert.equal(typeof json.detail, 'object');
    }
    const record = await addImage(sim, { tag: NGINX });
    const noTag = await call(sim.url, 'GET', `/images/${record.imageDigest}/check?detail=true`);
    assert.equal(noTag.status, 400);
    assert.match((noTag.json() as { message: string }).message, /tag/);
    const otherRepo = await call(sim.url, 'GET', checkPath(record.imageDigest, BITNAMI));
    assert.equal(otherRepo.status, 404);
    // Another tag of the same repository is evaluated (Anchore does).
    const sameRepo = await call(sim.url, 'GET', checkPath(record.imageDigest, 'docker.io/library/nginx:stable'));
    assert.equal(sameRepo.status, 200);
    evaluationOf(sameRepo.json(), record.imageDigest, 'docker.io/library/nginx:stable');
  });

  it('counts operations per tag and GET requests that carry a body', async () => {
    const record = await addImage(sim, { tag: STRUTS });
    await call(sim.url, 'GET', `/images/${record.imageDigest}`);
    await call(sim.url, 'GET', checkPath(record.imageDigest, STRUTS));
    await call(sim.url, 'GET', checkPath(record.imageDigest, 'docker.io/kaizheh/apache-struts2-cve-2017-5638'));
    await call(sim.url, 'GET', `/images/${record.imageDigest}/vuln/all`);
    // fetch refuses a GET body; axios does not, so the simulator notices one.
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${sim.url}/images`, { method: 'GET', headers: { authorization: AUTH, 'content-type': 'application/json', 'content-length': '11' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end('{"tag":"x"}');
    });
    assert.equal(status, 200);
    const stats = sim.stats();
    assert.deepEqual(stats.byTag[STRUTS], { addImage: 1, getImage: 1, check: 2 });
    assert.equal(stats.addImage, 1);
    assert.equal(stats.getImage, 1);
    assert.equal(stats.check, 2);
    assert.equal(stats.vuln, 1);
    assert.equal(stats.listImages, 1);
    assert.equal(stats.getWithBody, 1);
    assert.equal(stats.total, 6);
    assert.equal(stats.faulted, 0);
  });

  describe('faults', () => {
    it('status with Retry-After for the first `times` calls only', async () => {
      sim.setFaults({ status: 503, retryAfterSeconds: 7, times: 2 });
      for (let i = 0; i < 2; i += 1) {
        const res = await call(sim.url, 'POST', '/images', { body: { tag: NGINX } });
        assert.equal(res.status, 503);
        assert.equal(res.headers.get('retry-after'), '7');
        assert.deepEqual(res.json(), { message: 'simulated fault: Service Unavailable', httpcode: 503, detail: { simulated: true } });
      }
      await addImage(sim, { tag: NGINX });
      const stats = sim.stats();
      assert.equal(stats.faulted, 2);
      assert.equal(stats.addImage, 3);
      assert.equal(stats.byTag[NGINX]?.addImage, 3);
    });

    it('limits faults to the given operations', async () => {
      sim.setFaults({ status: 429, retryAfterSeconds: 1, operations: ['check'] });
      const record = await addImage(sim, { tag: NGINX });
      assert.equal((await call(sim.url, 'GET', `/images/${record.imageDigest}`)).status, 200);
      const res = await call(sim.url, 'GET', checkPath(record.imageDigest, NGINX));
      assert.equal(res.status, 429);
      assert.equal(res.headers.get('retry-after'), '1');
    });

    it('401 and 403 faults', async () => {
      sim.setFaults({ status: 401 });
      const unauthorized = await call(sim.url, 'GET', '/images');
      assert.equal(unauthorized.status, 401);
      assert.match(unauthorized.headers.get('www-authenticate') ?? '', /Basic/);
      sim.setFaults({ status: 403 });
      assert.equal((await call(sim.url, 'GET', '/images')).status, 403);
    });

    it('latency delays every answer', { timeout: 5000 }, async (t) => {
      sim.setFaults({ latencyMs: 200 });
      // The simulator's latency runs on the mocked setTimeout: the answer waits for the clock to move.
      t.mock.timers.enable({ apis: ['setTimeout'] });
      let answered = false;
      const answer = call(sim.url, 'GET', '/images').finally(() => {
        answered = true;
      });
      await arrived(sim, sim.stats().total + 1);
      t.mock.timers.tick(199);
      await realDelay(50);
      assert.equal(answered, false, 'answered before the latency was over');
      t.mock.timers.tick(1);
      assert.equal((await answer).status, 200);
    });

    it('hang never answers; the client times out', { timeout: 5000 }, async () => {
      sim.setFaults({ hang: true, operations: ['addImage'] });
      await assert.rejects(
        call(sim.url, 'POST', '/images', { body: { tag: NGINX }, signal: AbortSignal.timeout(200) }),
        (err: unknown) => err instanceof Error && err.name === 'TimeoutError',
      );
      assert.equal((await call(sim.url, 'GET', '/images')).status, 200);
      assert.equal(sim.stats().faulted, 1);
    });

    it('malformed answers 200 with a body that is not JSON', async () => {
      sim.setFaults({ malformed: true });
      const res = await call(sim.url, 'POST', '/images', { body: { tag: NGINX } });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /application\/json/);
      assert.throws(() => res.json(), SyntaxError);
    });

    it('wrongShape answers valid JSON of the wrong shape', async () => {
      const record = await addImage(sim, { tag: NGINX });
      sim.setFaults({ wrongShape: true });
      for (const path of ['/images', `/images/${record.imageDigest}`, checkPath(record.imageDigest, NGINX)]) {
        const res = await call(sim.url, 'GET', path);
        assert.equal(res.status, 200);
        const body = res.json();
        assert.equal(typeof body, 'object');
        assert.equal(Array.isArray(body), false, path);
      }
      const vuln = await call(sim.url, 'GET', `/images/${record.imageDigest}/vuln/all`);
      assert.equal(Array.isArray(vuln.json()), true);
    });

    it('analysisFailed, neverAnalyzed and noActivePolicy', async () => {
      sim.setFaults({ analysisFailed: ['docker.io/library/python'], neverAnalyzed: [BITNAMI], noActivePolicy: true });
      const failed = await addImage(sim, { tag: PYTHON });
      assert.equal(failed.analysis_status, 'analysis_failed');
      const failedCheck = await call(sim.url, 'GET', checkPath(failed.imageDigest, PYTHON));
      assert.equal(failedCheck.status, 404);
      assert.match(failedCheck.text, /analysis_status: analysis_failed/);

      const stuck = await addImage(sim, { tag: BITNAMI });
      assert.equal(stuck.analysis_status, 'analyzing');
      await sleep(50);
      const stuckCheck = await call(sim.url, 'GET', checkPath(stuck.imageDigest, BITNAMI));
      assert.equal(stuckCheck.status, 404);
      assert.equal((stuckCheck.json() as { message: string }).message, 'image is not analyzed - analysis_status: analyzing');

      const ok = await addImage(sim, { tag: NGINX });
      const noPolicy = await call(sim.url, 'GET', checkPath(ok.imageDigest, NGINX));
      assert.equal(noPolicy.status, 404);
      assert.deepEqual(noPolicy.json(), { message: 'user has no active policy to evaluate: admin', httpcode: 404, detail: {} });
    });

    it('refuses an invalid fault config', () => {
      assert.throws(() => sim.setFaults({ status: 9000 }), SimulatorConfigError);
    });
  });

  describe('admin endpoints', () => {
    const admin = (method: string, path: string, body?: unknown) => call(new URL(sim.url).origin, method, path, { body, auth: null });

    it('PUT /_sim/faults sets, GET reads, invalid configs get 400', async () => {
      const put = await admin('PUT', '/_sim/faults', { status: 500, times: 1 });
      assert.equal(put.status, 200);
      assert.deepEqual(put.json(), { status: 500, times: 1 });
      assert.deepEqual((await admin('GET', '/_sim/faults')).json(), { status: 500, times: 1 });
      assert.equal((await call(sim.url, 'GET', '/images')).status, 500);
      assert.equal((await call(sim.url, 'GET', '/images')).status, 200);
      const bad = await admin('PUT', '/_sim/faults', { status: 'x', bogus: 1 });
      assert.equal(bad.status, 400);
      assert.equal((bad.json() as { detail: { problems: string[] } }).detail.problems.length, 2);
      assert.equal((await admin('PUT', '/_sim/faults', '{oops')).status, 400);
      assert.equal((await admin('GET', '/_sim/nothing')).status, 404);
    });

    it('PUT /_sim/analysis-delay, GET /_sim/stats, POST /_sim/reset', async () => {
      assert.deepEqual((await admin('PUT', '/_sim/analysis-delay', { ms: 60_000 })).json(), { ms: 60_000 });
      assert.equal((await admin('PUT', '/_sim/analysis-delay', { ms: -1 })).status, 400);
      const record = await addImage(sim, { tag: NGINX });
      assert.equal(record.analysis_status, 'not_analyzed');
      assert.deepEqual((await admin('GET', '/_sim/analysis-delay')).json(), { ms: 60_000 });
      await admin('PUT', '/_sim/analysis-delay', { ms: 0 });
      assert.equal(((await call(sim.url, 'GET', `/images/${record.imageDigest}`)).json() as ImageRecord[])[0]?.analysis_status, 'analyzed');

      const stats = (await admin('GET', '/_sim/stats')).json() as { addImage: number; getImage: number; total: number };
      assert.equal(stats.addImage, 1);
      assert.equal(stats.getImage, 1);
      assert.equal(stats.total, 2);

      await admin('PUT', '/_sim/faults', { status: 503 });
      assert.deepEqual((await admin('POST', '/_sim/reset')).json(), { reset: true });
      assert.equal((await call(sim.url, 'GET', `/images/${record.imageDigest}`)).status, 404);
      assert.equal(sim.stats().total, 1);
      assert.deepEqual((await admin('GET', '/_sim/faults')).json(), {});
    });

    it('serves /health and /version without auth', async () => {
      assert.equal((await admin('GET', '/health')).status, 200);
      assert.equal((await admin('GET', '/version')).status, 200);
      assert.equal((await call(sim.url, 'GET', '/status', { auth: null })).status, 401);
      assert.equal((await call(sim.url, 'GET', '/status')).status, 200);
    });
  });
});

describe('scanner simulator options', () => {
  it('serves a Sysdig-style base path with token user and empty password', async () => {
    const sim = await startScannerSimulator({ basePath: '/api/scanning/v1/anchore/', user: 'token-123', password: '' });
    try {
      assert.match(sim.url, /\/api\/scanning\/v1\/anchore$/);
      assert.equal((await call(sim.url, 'GET', '/images', { auth: basic('token-123', '') })).status, 200);
      assert.equal((await call(sim.url, 'GET', '/images', { auth: basic('token-123', 'x') })).status, 401);
      assert.equal((await call(new URL(sim.url).origin, 'GET', '/v1/images', { auth: basic('token-123', '') })).status, 404);
    } finally {
      await sim.close();
    }
  });

  it('takes data, delay and faults from the options; reset() goes back to them', async () => {
    const sim = await startScannerSimulator({
      data: { repositories: { 'docker.io/library/app': { vulnerabilities: [{ vuln: 'CVE-1', severity: 'Critical', package: 'a-1' }] } } },
      analysisDelayMs: 0,
      faults: { latencyMs: 1 },
    });
    try {
      const record = await addImage(sim, { tag: 'app:1' });
      const check = await call(sim.url, 'GET', checkPath(record.imageDigest, 'docker.io/library/app:1'));
      assert.equal(evaluationOf(check.json(), record.imageDigest, 'docker.io/library/app:1').status, 'fail');
      sim.setFaults({});
      sim.setAnalysisDelayMs(10_000);
      sim.reset();
      assert.equal((await addImage(sim, { tag: 'app:1' })).analysis_status, 'analyzed');
      assert.deepEqual(
        ((await call(new URL(sim.url).origin, 'GET', '/_sim/faults', { auth: null })).json()),
        { latencyMs: 1 },
      );
    } finally {
      await sim.close();
    }
  });

  it('refuses invalid data before listening', async () => {
    await assert.rejects(
      startScannerSimulator({ data: { repositories: { nginx: {} } } }),
      (err: unknown) => err instanceof SimulatorConfigError && /docker\.io\/library\/nginx/.test(err.message),
    );
  });

  // "Promptly": close() waits for no timer (they are mocked and never move) and for no answer.
  it('close() finishes promptly with a hanging request outstanding', { timeout: 5000 }, async (t) => {
    const sim = await startScannerSimulator({ faults: { hang: true } });
    const pending = call(sim.url, 'GET', '/images');
    void pending.catch(() => undefined);
    await arrived(sim, 1);
    t.mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
    await sim.close();
    await assert.rejects(pending);
    await sim.close(); // idempotent
  });

  it('close() also ends pending latency and idle keep-alive connections', { timeout: 5000 }, async (t) => {
    const sim = await startScannerSimulator({ faults: { latencyMs: 60_000, operations: ['check'] } });
    assert.equal((await call(sim.url, 'GET', '/images')).status, 200); // leaves an idle keep-alive socket
    const pending = call(sim.url, 'GET', `/images/sha256:${'1'.repeat(64)}/check?tag=x`);
    void pending.catch(() => undefined);
    await arrived(sim, 2);
    t.mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
    await sim.close();
    await assert.rejects(pending);
  });
});

describe('scanner-sim CLI', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'scanner-sim-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('starts, logs one JSON line without the password, serves, and exits 0 on SIGTERM', async () => {
    const passFile = join(dir, 'pass');
    await writeFile(passFile, 's3cret-pass\n');
    // The package's own entry point (simulator/dist/main.js), as the demo, e2e suite and benches run it.
    const child = spawn(
      process.execPath,
      [SIMULATOR_MAIN_JS, '--port', '0', '--user', 'ci', '--pass-file', passFile, '--analysis-delay-ms', '0'],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ANCHORE_CLI_PASS: 'from-env' } },
    );
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const lines = createInterface({ input: child.stdout });
      const first = await new Promise<string>((resolve, reject) => {
        lines.once('line', resolve);
        child.once('exit', () => reject(new Error(`CLI exited early: ${stderr}`)));
      });
      stdout += first;
      const log = JSON.parse(first) as { msg: string; url: string };
      assert.equal(log.msg, 'scanner simulator listening');
      assert.match(log.url, /^http:\/\/127\.0\.0\.1:\d+\/v1$/);
      assert.doesNotMatch(first, /s3cret|from-env/);
      assert.equal((await call(log.url, 'GET', '/images', { auth: basic('ci', 's3cret-pass') })).status, 200);
      assert.equal((await call(log.url, 'GET', '/images', { auth: basic('ci', 'from-env') })).status, 401);
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      child.kill('SIGKILL');
    }
    assert.doesNotMatch(stdout + stderr, /s3cret/);
  });

  it('runs in-process until its signal aborts', async () => {
    const out: string[] = [];
    const controller = new AbortController();
    const running = runSimulatorCli(['--port', '0'], { ANCHORE_CLI_USER: 'u', ANCHORE_CLI_PASS: '' }, {
      stdout: { write: (t: string) => out.push(t) },
      signal: controller.signal,
    });
    for (let i = 0; i < 100 && out.length === 0; i += 1) await sleep(10);
    const log = JSON.parse(out[0] ?? '{}') as { url: string };
    assert.equal((await call(log.url, 'GET', '/images', { auth: basic('u', '') })).status, 200);
    controller.abort();
    assert.equal(await running, 0);
    await assert.rejects(call(log.url, 'GET', '/images', { auth: basic('u', '') }));
  });

  it('exits 2 listing every bad argument', async () => {
    const err: string[] = [];
    const io = { stderr: { write: (t: string) => err.push(t) }, stdout: { write: () => true } };
    assert.equal(await runSimulatorCli(['--bogus'], {}, io), 2);
    assert.equal(
      await runSimulatorCli(['--port', '99999', '--analysis-delay-ms', 'soon', '--data', join(dir, 'missing.json'), '--faults', '{"status":1}'], {}, io),
      2,
    );
    const text = err.join('');
    assert.match(text, /--port must be an integer/);
    assert.match(text, /--analysis-delay-ms must be an integer/);
    assert.match(text, /cannot read/);
    assert.match(text, /--faults/);
    const help: string[] = [];
    assert.equal(await runSimulatorCli(['--help'], {}, { stdout: { write: (t: string) => help.push(t) } }), 0);
    assert.match(help.join(''), /usage: scanner-sim/);
  });
});
