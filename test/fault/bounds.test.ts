/**
 * Hostile tenants against scangate's bounds (issue 7 §2, §3, §5), over real sockets: an HTTPS webhook
 * on 127.0.0.1:0 and the scanner simulator. Each test is an attack a user with nothing more than the
 * right to create pods could make, and each fails on the code before its bound.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { startScannerSimulator, type ScannerSimulator, type SimulatorData } from '@scangate/simulator';
import { REQUEST_TIMEOUT_MS } from '../../src/http/server.js';
import { admissionReview, makeTlsFiles, metricValue, request, startWebhook, type Webhook } from '../helpers/harness.js';

const DIGEST = `sha256:${'ab'.repeat(32)}`;
const ROWS = 600;
const ROW_BYTES = 10 * 1024;

/** A repository whose image fails with ROWS stop rows of about ROW_BYTES each (package names the image's author chose). */
const DATA: SimulatorData = {
  description: 'scangate bounds suite',
  repositories: {
    'docker.io/apache/struts2': {
      vulnerabilities: [{ vuln: 'CVE-2017-5638', severity: 'Critical', package: 'struts2-core-2.3.12', packageType: 'java', fix: '2.3.32' }],
    },
    'docker.io/acme/bloated': {
      vulnerabilities: Array.from({ length: ROWS }, (_, i) => ({
        vuln: `CVE-2024-${String(10000 + i)}`,
        severity: 'Critical',
        package: `pkg${String(i)}-${'x'.repeat(ROW_BYTES)}`,
        packageType: 'java',
        fix: '1.0',
      })),
    },
  },
};

let sim: ScannerSimulator;
const webhooks: Webhook[] = [];

async function webhook(env: Record<string, string> = {}): Promise<Webhook> {
  const w = await startWebhook({ ANCHORE_CLI_URL: sim.url, ANCHORE_CLI_PASS: 'foobar', SCANNER_POLL_INITIAL_MS: '20', SCANNER_POLL_MAX_MS: '100', ...env });
  webhooks.push(w);
  return w;
}

function validate(w: Webhook, images: string[], timeout = '10s'): Promise<{ status: number; json: any; text: string }> {
  return request(`${w.url}/validate?timeout=${timeout}`, { body: admissionReview({ containers: images }).body });
}

before(async () => {
  sim = await startScannerSimulator({ user: 'admin', password: 'foobar', data: DATA });
});
after(async () => {
  for (const w of webhooks) await w.close();
  await sim.close();
});

describe('bounded by bytes wherever a tenant writes', () => {
  test('a reference longer than the grammar allows is refused, and neither the denial nor the log line holds it in full', async () => {
    const w = await webhook();
    const huge = `docker.io/acme/${'a'.repeat(200_000)}:1`;
    const res = await validate(w, [huge]);
    assert.equal(res.status, 200);
    assert.equal(res.json.response.allowed, false);
    assert.match(res.json.response.status.message, /^Invalid image reference: docker\.io\/acme\/a+… \(200017 characters\) \(container "c0": longer than the 520 characters a reference can have\)$/);
    const line = w.logs.raw.find((l) => l.includes('"msg":"decision"'));
    assert.ok(line !== undefined);
    assert.ok(line.length < 4096, `decision log line is ${line.length} bytes`);
    assert.equal(sim.stats().addImage, 0);
  });

  test('the decision log line is bounded whatever the review holds', async () => {
    const w = await webhook({ MAX_IMAGES_PER_REVIEW: '64' });
    // 64 distinct invalid references of 520 characters full of escapes: each is as long as a reference may be.
    const images = Array.from({ length: 64 }, (_, i) => `${String(i).padStart(4, '0')}${'\u009b'.repeat(516)}`);
    const res = await validate(w, images);
    assert.equal(res.json.response.allowed, false);
    const line = w.logs.raw.find((l) => l.includes('"msg":"decision"'));
    assert.ok(line !== undefined);
    assert.ok(line.length <= 32 * 1024, `decision log line is ${line.length} bytes`);
    assert.equal(w.logs.find('decision')[0]?.['imagesOmitted'], 64 - 16);
  });

  test('a verdict keeps only what a denial shows: 600 stop rows of 10 KB (a 25 MB answer) are not cached', async () => {
    const w = await webhook({ SCANNER_REQUEST_TIMEOUT_MS: '60000' });
    const image = 'docker.io/acme/bloated:1';
    const res = await validate(w, [image], '30s');
    assert.equal(res.json.response.allowed, false);
    assert.match(res.json.response.status.message, new RegExp(`^Image failed policy check: ${image} \\(container "c0"\\): vulnerabilities/package: .*; \\+${ROWS - 3} more$`));
    assert.ok(res.json.response.status.message.length <= 1000);
    const metrics = (await request(`${w.url}/metrics`)).text;
    const bytes = metricValue(metrics, 'scangate_cache_bytes');
    assert.ok(bytes > 0 && bytes < 4096, `the cached verdict counts ${bytes} bytes`);
    // And the cache hit still renders the same denial from what was kept.
    const again = await validate(w, [image]);
    assert.equal(again.json.response.status.message, res.json.response.status.message);
  });

  test('name:tag@digest is keyed and scanned as name@digest: another tag makes no scan, and no tenant tag reaches the scanner', async () => {
    sim.reset();
    const w = await webhook();
    const first = await validate(w, [`nginx:1.25.3@${DIGEST}`]);
    assert.equal(first.json.response.allowed, true, first.text);
    const second = await validate(w, [`nginx:i-am-a-tenant-tag@${DIGEST}`]);
    assert.equal(second.json.response.allowed, true, second.text);
    const third = await validate(w, [`docker.io/library/nginx@${DIGEST}`]);
    assert.equal(third.json.response.allowed, true, third.text);
    assert.equal(sim.stats().addImage, 1);
    assert.deepEqual(
      w.logs.find('decision').map((l) => (l['cache'] as Record<string, number>)['hit']),
      [0, 1, 1],
    );
    const tags = Object.keys(sim.stats().byTag);
    assert.ok(tags.length > 0);
    for (const t of tags) assert.ok(!t.includes('1.25.3') && !t.includes('i-am-a-tenant-tag'), `tag ${t} reached the scanner`);
  });
});

describe('per-request bounds', () => {
  test('a review with more images than MAX_IMAGES_PER_REVIEW is denied naming the cap, before any scan', async () => {
    sim.reset();
    const w = await webhook({ MAX_IMAGES_PER_REVIEW: '8' });
    const res = await validate(w, Array.from({ length: 9 }, (_, i) => `quay.io/acme/many${String(i)}:1`));
    assert.equal(res.json.response.allowed, false);
    assert.equal(res.json.response.status.message, 'Too many images in one review: 9 container images, the limit is 8 (MAX_IMAGES_PER_REVIEW)');
    assert.equal(sim.stats().addImage, 0);
    const ok = await validate(w, Array.from({ length: 8 }, (_, i) => `quay.io/acme/many${String(i)}:1`));
    assert.equal(ok.json.response.allowed, true, ok.text);
  });

  test('control characters and terminal escapes in an image are escaped in denials, warnings and log lines', async () => {
    const w = await webhook();
    const evil = 'nginx\u001b[2J\u001b]0;pwned\u0007\u009b31m\u202e:1';
    const res = await validate(w, [evil]);
    assert.equal(res.json.response.allowed, false);
    const message: string = res.json.response.status.message;
    // eslint-disable-next-line no-control-regex
    assert.doesNotMatch(message, /[\u0000-\u001f\u007f-\u009f\u202e]/);
    assert.ok(message.includes('nginx\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\u202e:1'), message);
    const line = w.logs.raw.find((l) => l.includes('"msg":"decision"')) ?? '';
    assert.doesNotMatch(line, /[\u007f-\u009f\u202e]/);
    const warn = await webhook({ MODE: 'warn' });
    const warned = await validate(warn, [evil]);
    assert.equal(warned.json.response.allowed, true);
    for (const w2 of warned.json.response.warnings as string[]) {
      // eslint-disable-next-line no-control-regex
      assert.doesNotMatch(w2, /[\u0000-\u001f\u007f-\u009f\u202e]/);
    }
  });

  test('?timeout= of a millisecond or two on a cache miss still gets a well-formed AdmissionReview', async () => {
    const w = await webhook();
    for (const [i, timeout] of ['1ms', '1500us', '2ms', '1ns', '0.5ms'].entries()) {
      const res = await validate(w, [`quay.io/acme/tiny${String(i)}:1`], timeout);
      assert.equal(res.status, 200, `${timeout}: ${res.text}`);
      assert.equal(res.json.kind, 'AdmissionReview');
      assert.equal(res.json.response.allowed, false);
      assert.match(res.json.response.status.message, /^Image scan still in progress: /);
    }
  });

  test('CACHE_PASS_TTL_MS=0 means "do not cache" passes', async () => {
    sim.reset();
    const w = await webhook({ CACHE_PASS_TTL_MS: '0' });
    for (let i = 0; i < 2; i++) assert.equal((await validate(w, ['quay.io/acme/ttl0:1'])).json.response.allowed, true);
    assert.equal(sim.stats().byTag['quay.io/acme/ttl0:1']?.addImage, 2);
    assert.deepEqual(w.logs.find('decision').map((l) => (l['cache'] as Record<string, number>)['miss']), [1, 1]);
  });
});

describe('fairness of scan slots', () => {
  test('one pod with many new, slow images cannot take every MAX_CONCURRENT_SCANS slot', async () => {
    sim.reset();
    sim.setAnalysisDelayMs(3000);
    try {
      const w = await webhook({ MAX_CONCURRENT_SCANS: '6', MAX_NEW_SCANS_PER_REQUEST: '4' });
      const hostile = validate(w, Array.from({ length: 10 }, (_, i) => `quay.io/acme/slow${String(i)}:1`), '2s');
      // Another tenant, meanwhile, gets a slot for its own new image.
      await new Promise((r) => setTimeout(r, 200));
      const other = await validate(w, ['quay.io/other/app:1'], '5s');
      assert.equal(other.json.response.allowed, true, other.text);
      const res = await hostile;
      assert.equal(res.json.response.allowed, false);
      const message: string = res.json.response.status.message;
      assert.match(message, /Image scan not started yet: quay\.io\/acme\/slow4:1 \(container "c4": this review already started 4 new scans \(MAX_NEW_SCANS_PER_REQUEST\); a retry starts the next ones\)/);
      assert.match(message, /^Image scan still in progress: quay\.io\/acme\/slow0:1/);
      const added = Object.entries(sim.stats().byTag).filter(([t, s]) => t.startsWith('quay.io/acme/slow') && s.addImage > 0);
      assert.equal(added.length, 4);
      assert.equal(sim.stats().byTag['quay.io/other/app:1']?.addImage, 1);
      const metrics = (await request(`${w.url}/metrics`)).text;
      assert.equal(metricValue(metrics, 'scangate_scans_deferred_total'), 6);
    } finally {
      sim.setAnalysisDelayMs(0);
    }
  });

  test('REJECT_IF_TIMEOUT=false admits the deferred images with a warning', async () => {
    sim.reset();
    sim.setAnalysisDelayMs(3000);
    try {
      const w = await webhook({ MAX_NEW_SCANS_PER_REQUEST: '1', REJECT_IF_TIMEOUT: 'false' });
      const res = await validate(w, ['quay.io/acme/late0:1', 'quay.io/acme/late1:1'], '1s');
      assert.equal(res.json.response.allowed, true);
      assert.ok((res.json.response.warnings as string[]).some((x) => x.includes('Image scan not started yet: quay.io/acme/late1:1')), res.text);
    } finally {
      sim.setAnalysisDelayMs(0);
    }
  });
});

/**
 * A TLS connection to the webhook that sends `head` and then nothing more, from `localAddress` (another
 * loopback address is another client to scangate: the attacker's pod rather than the API server).
 */
function stalledUpload(url: string, head: string, localAddress = '127.0.0.1'): Promise<{ socket: tls.TLSSocket; answer: Promise<string> }> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const tcp = net.connect({ host: '127.0.0.1', port: Number(port), localAddress });
    tcp.once('error', reject);
    const socket = tls.connect({ socket: tcp, ca: makeTlsFiles().caPem, servername: 'localhost' }, () => {
      socket.write(head);
      let text = '';
      const answer = new Promise<string>((done) => {
        socket.on('data', (c: Buffer) => (text += c.toString('utf8')));
        socket.on('close', () => done(text));
        socket.on('error', () => undefined);
      });
      resolve({ socket, answer });
    });
    socket.once('error', reject);
  });
}

describe('per-process bounds', () => {
  test('stalled uploads cannot hold more than MAX_INFLIGHT_BODY_BYTES: the next one is refused with 503 and Retry-After; cache hits go on', async () => {
    const w = await webhook({ MAX_BODY_BYTES: String(40 * 1024), MAX_INFLIGHT_BODY_BYTES: String(96 * 1024) });
    assert.equal((await validate(w, ['quay.io/acme/hit:1'])).json.response.allowed, true);
    const head = `POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${String(40 * 1024)}\r\n\r\n{"apiVersion":`;
    const stalled = [await stalledUpload(w.url, head), await stalledUpload(w.url, head)];
    try {
      await new Promise((r) => setTimeout(r, 200));
      const third = await stalledUpload(w.url, head);
      const answer = await Promise.race([third.answer, new Promise<string>((r) => setTimeout(() => r('no answer within 3 s'), 3000))]);
      third.socket.destroy();
      assert.match(answer, /^HTTP\/1\.1 503 /);
      assert.match(answer, /\r\nretry-after: 1\r\n/i);
      assert.match(answer, /MAX_INFLIGHT_BODY_BYTES/);
      // A small review still fits and is answered from the cache.
      assert.equal((await validate(w, ['quay.io/acme/hit:1'])).json.response.allowed, true);
      const metrics = (await request(`${w.url}/metrics`)).text;
      assert.equal(metricValue(metrics, 'scangate_overload_refusals_total', { reason: 'body_bytes' }), 1);
    } finally {
      for (const s of stalled) s.socket.destroy();
    }
    // Given back once those requests are gone.
    await new Promise((r) => setTimeout(r, 200));
    const later = await stalledUpload(w.url, head);
    later.socket.end('"admission.k8s.io/v1"}');
    later.socket.write('x'.repeat(40 * 1024 - 37));
    const text = await later.answer;
    assert.doesNotMatch(text, /^HTTP\/1\.1 503 /);
  });

  test('connections past MAX_CONNECTIONS are closed at once', async () => {
    const w = await webhook({ MAX_CONNECTIONS: '3' });
    const held = [await stalledUpload(w.url, ''), await stalledUpload(w.url, ''), await stalledUpload(w.url, '')];
    try {
      const closedAtOnce = await Promise.race([
        stalledUpload(w.url, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n').then(
          async (c) => (await c.answer).startsWith('HTTP/1.1 200') ? 'answered' : 'closed',
          () => 'closed',
        ),
        new Promise<string>((r) => setTimeout(() => r('still open after 3 s'), 3000)),
      ]);
      assert.equal(closedAtOnce, 'closed');
    } finally {
      for (const h of held) h.socket.destroy();
    }
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await request(`${w.url}/healthz`)).status, 200);
  });

  test('one client\'s stalled uploads do not shut out another: an upload still arriving is cut for a client holding less', async () => {
    const w = await webhook({ MAX_BODY_BYTES: String(40 * 1024), MAX_INFLIGHT_BODY_BYTES: String(96 * 1024) });
    assert.equal((await validate(w, ['quay.io/acme/hit:1'])).json.response.allowed, true);
    const head = `POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${String(40 * 1024)}\r\n\r\n{"apiVersion":`;
    // The attacker (127.0.0.2) holds 80 KiB of the 96 in two uploads it never finishes.
    const stalled = [await stalledUpload(w.url, head, '127.0.0.2'), await stalledUpload(w.url, head, '127.0.0.2')];
    try {
      await new Promise((r) => setTimeout(r, 200));
      // The API server (127.0.0.1) sends a 30 KiB review: it fits only if one of those is cut.
      const review = { ...admissionReview({ containers: ['quay.io/acme/hit:1'] }).body, padding: 'x'.repeat(30 * 1024) };
      const res = await request(`${w.url}/validate?timeout=10s`, { body: review });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.response.allowed, true);
      const cut = await Promise.race([Promise.any(stalled.map((s) => s.answer.then(() => 'cut'))), new Promise<string>((r) => setTimeout(() => r('none cut within 3 s'), 3000))]);
      assert.equal(cut, 'cut');
      const metrics = (await request(`${w.url}/metrics`)).text;
      assert.equal(metricValue(metrics, 'scangate_overload_refusals_total', { reason: 'body_bytes_preempted' }), 1);
      assert.equal(metricValue(metrics, 'scangate_overload_refusals_total', { reason: 'body_bytes' }), 0);
      assert.deepEqual(w.logs.find('upload cut to make room for a client holding less (MAX_INFLIGHT_BODY_BYTES)').map((l) => l['peer']), ['127.0.0.2']);
    } finally {
      for (const s of stalled) s.socket.destroy();
    }
  });

  test('one client holding every connection does not shut out another: one of its connections is closed for it', async () => {
    const w = await webhook({ MAX_CONNECTIONS: '3' });
    const held = [await stalledUpload(w.url, '', '127.0.0.2'), await stalledUpload(w.url, '', '127.0.0.2'), await stalledUpload(w.url, '', '127.0.0.2')];
    try {
      await new Promise((r) => setTimeout(r, 200));
      const res = await request(`${w.url}/healthz`, { timeoutMs: 5000 });
      assert.equal(res.status, 200);
      const closed = await Promise.race([Promise.any(held.map((h) => h.answer.then(() => 'closed'))), new Promise<string>((r) => setTimeout(() => r('none closed'), 3000))]);
      assert.equal(closed, 'closed');
      const metrics = (await request(`${w.url}/metrics`)).text;
      assert.equal(metricValue(metrics, 'scangate_overload_refusals_total', { reason: 'connections_preempted' }), 1);
      // The attacker's own next connection finds no one holding more than it: closed at once.
      const again = await stalledUpload(w.url, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', '127.0.0.2').then(
        async (c) => ((await c.answer).startsWith('HTTP/1.1 200') ? 'answered' : 'closed'),
        () => 'closed',
      );
      assert.equal(again, 'closed');
    } finally {
      for (const h of held) h.socket.destroy();
    }
  });

  test('a connection whose request has fully arrived is never cut for another client, however many it holds', async () => {
    const w = await webhook({ MAX_CONNECTIONS: '3' });
    sim.setAnalysisDelayMs(60_000);
    const held: Array<{ socket: tls.TLSSocket; answer: Promise<string> }> = [];
    try {
      // The attacker's three reviews are complete and wait for scans (answered at their 2 s timeout).
      for (let i = 0; i < 3; i++) {
        const body = JSON.stringify(admissionReview({ containers: [`quay.io/acme/slow${String(i)}:1`] }).body);
        held.push(await stalledUpload(w.url, `POST /validate?timeout=2s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${String(Buffer.byteLength(body))}\r\n\r\n${body}`, '127.0.0.2'));
      }
      await new Promise((r) => setTimeout(r, 300));
      const newcomer = await stalledUpload(w.url, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n').then(
        async (c) => ((await c.answer).startsWith('HTTP/1.1 200') ? 'answered' : 'closed'),
        () => 'closed',
      );
      assert.equal(newcomer, 'closed');
      for (const h of held) assert.match(await h.answer, /^HTTP\/1\.1 200 [\s\S]*Image scan still in progress/);
    } finally {
      sim.setAnalysisDelayMs(0);
      for (const h of held) h.socket.destroy();
    }
  });

  // Node enforces the bound (server.requestTimeout = REQUEST_TIMEOUT_MS, checked every second: it
  // cannot run on mock timers); the test's own timeout is a guard between the 15 s and the 60 s of before.
  test('an upload that stalls is cut off by the request timeout (15 s), not the 60 s of before', { timeout: 40_000 }, async () => {
    assert.equal(REQUEST_TIMEOUT_MS, 15_000);
    const w = await webhook();
    const { answer } = await stalledUpload(w.url, 'POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"a":');
    assert.match(await answer, /^HTTP\/1\.1 4\d\d [\s\S]*Connection: close/);
  });
});
