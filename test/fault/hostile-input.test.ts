/**
 * Hostile input at the webhook (fast-check): random and mutated JSON, wrong types, deep nesting, huge
 * strings, missing fields, random bytes. Every answer must be a well-formed 4xx ({code, message}) or a
 * well-formed AdmissionReview/ImageReview echoing the uid; never a 5xx, never a crash, never an
 * unhandled rejection; and the webhook still answers a real review correctly afterwards.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { ScannerSimulator } from '@scangate/simulator';
import { admissionReview, makeTlsFiles, request, startWebhook, type HttpResult, type Webhook } from '../helpers/harness.js';
import { deploymentPodReview, FAILING_IMAGE, PASSING_IMAGE, startSimulator, assertCleanPass } from '../helpers/fault-harness.js';

const MAX_BODY_BYTES = 256 * 1024;
const RUNS = 300;

let sim: ScannerSimulator;
let webhook: Webhook;
const processErrors: unknown[] = [];
const onProcessError = (error: unknown): void => {
  processErrors.push(error);
};

before(async () => {
  sim = await startSimulator();
  webhook = await startWebhook({
    ANCHORE_CLI_URL: sim.url,
    ANCHORE_CLI_PASS: 'foobar',
    MAX_BODY_BYTES: String(MAX_BODY_BYTES),
    SCANNER_POLL_INITIAL_MS: '20',
    MAX_CONCURRENT_SCANS: '50',
    LOG_LEVEL: 'warn',
  });
  process.on('unhandledRejection', onProcessError);
  process.on('uncaughtException', onProcessError);
});
after(async () => {
  process.off('unhandledRejection', onProcessError);
  process.off('uncaughtException', onProcessError);
  await webhook.close();
  await sim.close();
});

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The uid scangate must echo, when the body is a JSON object with a string request.uid. */
function sentUid(body: unknown): string | undefined {
  if (!isObject(body) || !isObject(body['request'])) return undefined;
  const uid = body['request']['uid'];
  return typeof uid === 'string' ? uid : undefined;
}

function assertClientError(res: HttpResult, context: string): void {
  assert.ok(res.status >= 400 && res.status < 500, `${context}: status ${res.status}: ${res.text.slice(0, 300)}`);
  if (res.status === 400 && res.json === undefined) {
    // Node's own parser rejected the HTTP framing (clientError): a bare 400 is still well-formed.
    assert.equal(res.text, '', context);
    return;
  }
  assert.ok(isObject(res.json), `${context}: 4xx body is JSON: ${res.text.slice(0, 300)}`);
  assert.equal(typeof res.json.code, 'string', context);
  assert.equal(typeof res.json.message, 'string', context);
  assert.ok(!/\n\s+at /.test(res.text), `${context}: no stack trace in ${res.text.slice(0, 300)}`);
}

/** A well-formed 4xx, or a well-formed AdmissionReview that echoes the request's uid. */
function assertAdmissionAnswer(res: HttpResult, body: unknown, context: string): void {
  if (res.status !== 200) {
    assertClientError(res, context);
    return;
  }
  const json = res.json;
  assert.ok(isObject(json), `${context}: 200 body is a JSON object`);
  assert.equal(json['kind'], 'AdmissionReview', context);
  assert.ok(json['apiVersion'] === 'admission.k8s.io/v1' || json['apiVersion'] === 'admission.k8s.io/v1beta1', context);
  assert.equal(json['apiVersion'], isObject(body) ? body['apiVersion'] : undefined, `${context}: apiVersion echoed`);
  const response = json['response'];
  assert.ok(isObject(response), `${context}: response object`);
  const uid = sentUid(body);
  assert.ok(uid !== undefined && uid !== '', `${context}: 200 only for a body with a uid`);
  assert.equal(response['uid'], uid, `${context}: uid echoed`);
  assert.equal(typeof response['allowed'], 'boolean', context);
  if (response['allowed'] === false) {
    const status = response['status'];
    assert.ok(isObject(status), context);
    assert.equal(status['code'], 403, context);
    assert.equal(typeof status['message'], 'string', context);
    assert.ok((status['message'] as string).length <= 1000, `${context}: message capped`);
  }
  if (response['warnings'] !== undefined) {
    assert.ok(Array.isArray(response['warnings']) && response['warnings'].every((w) => typeof w === 'string' && w.length <= 250), context);
  }
}

function assertImageReviewAnswer(res: HttpResult, context: string): void {
  if (res.status !== 200) {
    assertClientError(res, context);
    return;
  }
  assert.ok(isObject(res.json), context);
  assert.equal(res.json['apiVersion'], 'imagepolicy.k8s.io/v1alpha1', context);
  assert.equal(res.json['kind'], 'ImageReview', context);
  const status = res.json['status'];
  assert.ok(isObject(status), context);
  assert.equal(typeof status['allowed'], 'boolean', context);
  if (status['reason'] !== undefined) assert.equal(typeof status['reason'], 'string', context);
}

async function send(path: string, rawBody: string | Buffer, headers?: Record<string, string>): Promise<HttpResult> {
  return request(`${webhook.url}${path}`, { rawBody, timeoutMs: 30_000, ...(headers !== undefined ? { headers } : {}) });
}

// ---- generators ------------------------------------------------------------------------------------
const imageLike = fc.oneof(
  fc.constantFrom(PASSING_IMAGE, FAILING_IMAGE, 'nginx', 'nginx:latest', 'quay.io/x/y@sha256:' + 'a'.repeat(64), '', ' ', 'UPPER/case:1', 'a'.repeat(300)),
  fc.string({ maxLength: 60 }),
  fc.stringMatching(/^[a-z0-9./:@_-]{1,40}$/),
);

/** A valid pod review as kube-apiserver sends it, with random images. */
const validReview = fc
  .tuple(fc.array(imageLike, { minLength: 1, maxLength: 5 }), fc.constantFrom('admission.k8s.io/v1', 'admission.k8s.io/v1beta1'))
  .map(([images, apiVersion]) => {
    const review = JSON.parse(deploymentPodReview(images).body) as Record<string, unknown>;
    review['apiVersion'] = apiVersion;
    return review;
  });

const hugeString = fc.integer({ min: 10_000, max: 200_000 }).map((n) => 'x'.repeat(n));
const deepValue = fc.integer({ min: 100, max: 1000 }).chain((depth) =>
  fc.constantFrom('array', 'object').map((kind) => {
    let v: unknown = 'leaf';
    for (let i = 0; i < depth; i++) v = kind === 'array' ? [v] : { a: v };
    return v;
  }),
);
const hostileValue = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 1, arbitrary: hugeString },
  { weight: 1, arbitrary: deepValue },
  { weight: 1, arbitrary: fc.constantFrom(null, true, 0, -1, 1e308, '', [], {}, '__proto__', { __proto__: { allowed: true } }) },
);

type Mutation = { kind: 'delete' } | { kind: 'replace'; value: unknown } | { kind: 'wrap' };

/** Every path (list of keys) inside a JSON value, down to a bounded depth. */
function pathsOf(value: unknown, prefix: Array<string | number> = [], out: Array<Array<string | number>> = []): Array<Array<string | number>> {
  if (prefix.length >= 12) return out;
  const entries: Array<[string | number, unknown]> = Array.isArray(value) ? value.map((v, i) => [i, v]) : isObject(value) ? Object.entries(value) : [];
  for (const [key, child] of entries) {
    out.push([...prefix, key]);
    pathsOf(child, [...prefix, key], out);
  }
  return out;
}

function mutate(root: Record<string, unknown>, path: Array<string | number>, m: Mutation): void {
  let parent: unknown = root;
  for (const key of path.slice(0, -1)) parent = (parent as Record<string | number, unknown>)[key];
  const last = path[path.length - 1];
  if (last === undefined || typeof parent !== 'object' || parent === null) return;
  const container = parent as Record<string | number, unknown>;
  if (m.kind === 'delete') {
    if (Array.isArray(container) && typeof last === 'number') container.splice(last, 1);
    else Reflect.deleteProperty(container, last);
  } else if (m.kind === 'replace') container[last] = structuredClone(m.value); // never share generated values between runs
  else container[last] = [container[last]];
}

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.constant<Mutation>({ kind: 'delete' }),
  fc.constant<Mutation>({ kind: 'wrap' }),
  hostileValue.map((value): Mutation => ({ kind: 'replace', value })),
);

const mutatedReview = fc.tuple(validReview, fc.array(fc.tuple(fc.nat(), mutation), { minLength: 1, maxLength: 4 })).map(([review, edits]) => {
  for (const [at, m] of edits) {
    const paths = pathsOf(review);
    const path = paths[at % Math.max(1, paths.length)];
    if (path !== undefined) mutate(review, path, m);
  }
  return review;
});

describe('hostile AdmissionReview bodies', () => {
  it('random JSON values: a 4xx or an AdmissionReview, never a 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(hostileValue, async (body) => {
        const res = await send('/validate?timeout=2s', JSON.stringify(body));
        assertAdmissionAnswer(res, body, 'random JSON');
      }),
      { numRuns: RUNS },
    );
  });

  it('valid reviews with random images: an AdmissionReview echoing the uid', async () => {
    await fc.assert(
      fc.asyncProperty(validReview, async (body) => {
        const res = await send('/validate?timeout=2s', JSON.stringify(body));
        assert.equal(res.status, 200, res.text.slice(0, 300));
        assertAdmissionAnswer(res, body, 'valid review');
      }),
      { numRuns: RUNS },
    );
  });

  it('mutated reviews (missing fields, wrong types, deep nesting, huge strings): well-formed answers', async () => {
    await fc.assert(
      fc.asyncProperty(mutatedReview, async (body) => {
        const text = JSON.stringify(body);
        const res = await send('/validate?timeout=2s', text);
        if (Buffer.byteLength(text) > MAX_BODY_BYTES) assert.equal(res.status, 413, res.text.slice(0, 200));
        assertAdmissionAnswer(res, body, 'mutated review');
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it('random bytes and truncated JSON: a 4xx', async () => {
    const valid = deploymentPodReview([PASSING_IMAGE]).body;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ minLength: 1, maxLength: 2000 }).map((b) => Buffer.from(b)),
          fc.integer({ min: 1, max: valid.length - 1 }).map((n) => Buffer.from(valid.slice(0, n))),
          fc.string({ unit: 'binary', minLength: 1, maxLength: 500 }).map((s) => Buffer.from(s)),
        ),
        async (bytes) => {
          let parsed: unknown;
          try {
            parsed = JSON.parse(bytes.toString('utf8'));
          } catch {
            parsed = undefined;
          }
          const res = await send('/validate', bytes);
          if (parsed === undefined) assertClientError(res, 'bytes');
          else assertAdmissionAnswer(res, parsed, 'bytes that happen to be JSON');
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('random ImageReview bodies: a 4xx or an ImageReview', async () => {
    const imageReviewish = fc.oneof(
      hostileValue,
      fc.record(
        {
          apiVersion: fc.oneof(fc.constant('imagepolicy.k8s.io/v1alpha1'), hostileValue),
          kind: fc.oneof(fc.constant('ImageReview'), hostileValue),
          spec: fc.oneof(
            fc.record({ containers: fc.oneof(fc.array(fc.record({ image: fc.oneof(imageLike, hostileValue) }), { maxLength: 4 }), hostileValue), namespace: fc.oneof(fc.constant('default'), hostileValue) }, { requiredKeys: [] }),
            hostileValue,
          ),
        },
        { requiredKeys: [] },
      ),
    );
    await fc.assert(
      fc.asyncProperty(imageReviewish, async (body) => {
        const res = await send('/image_policy?timeout=2s', JSON.stringify(body));
        assertImageReviewAnswer(res, 'image review');
      }),
      { numRuns: RUNS },
    );
  });
});

describe('hostile requests, one by one', () => {
  const deep = (n: number): string => '['.repeat(n) + ']'.repeat(n);
  const cases: Array<{ name: string; path: string; body: string | Buffer; status: number; headers?: Record<string, string> }> = [
    { name: 'empty body', path: '/validate', body: '', status: 400 },
    { name: 'JSON null', path: '/validate', body: 'null', status: 400 },
    { name: 'nesting 100 000 deep', path: '/validate', body: deep(100_000), status: 400 },
    {
      name: 'nesting 50 000 deep inside a valid review',
      path: '/validate',
      body: deploymentPodReview([PASSING_IMAGE]).body.replace('"status":{}', `"status":${deep(50_000)}`),
      status: 200,
    },
    { name: 'body over MAX_BODY_BYTES', path: '/validate', body: JSON.stringify({ pad: 'x'.repeat(MAX_BODY_BYTES) }), status: 413 },
    { name: 'uid of the wrong type', path: '/validate', body: JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 42 } }), status: 400 },
    { name: 'containers is a string', path: '/validate', body: JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'u', operation: 'CREATE', resource: { group: '', resource: 'pods' }, object: { spec: { containers: 'nginx' } } } }), status: 400 },
    { name: 'image is a number', path: '/validate', body: JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'u', operation: 'CREATE', resource: { group: '', resource: 'pods' }, object: { spec: { containers: [{ name: 'c', image: 7 }] } } } }), status: 400 },
    { name: '__proto__ keys', path: '/validate', body: '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","__proto__":{"request":{"uid":"x"}},"request":{"__proto__":{"uid":"p"}}}', status: 400 },
    { name: 'unknown path', path: '/nope', body: '{}', status: 404 },
    { name: 'invalid UTF-8', path: '/validate', body: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), status: 400 },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const res = await send(c.path, c.body, c.headers);
      assert.equal(res.status, c.status, res.text.slice(0, 300));
      if (c.status === 200) assertAdmissionAnswer(res, JSON.parse(c.body.toString()), c.name);
      else assertClientError(res, c.name);
    });
  }

  it('a pod with 2 000 containers of distinct unseen images: answered in time (scans bounded by MAX_CONCURRENT_SCANS)', async () => {
    const images = Array.from({ length: 2000 }, (_, i) => `docker.io/library/many:${i}`);
    const { uid, body } = admissionReview({ containers: images });
    const res = await send('/validate?timeout=3s', JSON.stringify(body));
    assert.equal(res.status, 200);
    assert.equal(res.json.response.uid, uid);
    assert.equal(typeof res.json.response.allowed, 'boolean');
    assert.ok(res.json.response.status.message.length <= 1000);
  });

  it('a lying Content-Length and a malformed request line: a bare 400, the server lives on', async () => {
    const { caPem } = makeTlsFiles();
    const port = Number(new URL(webhook.url).port);
    for (const raw of ['POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}', 'GARBAGE\r\n\r\n']) {
      const text = await new Promise<string>((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port, ca: caPem, servername: 'localhost' }, () => socket.end(raw));
        let got = '';
        socket.setEncoding('utf8');
        socket.on('data', (d: string) => (got += d));
        socket.on('end', () => resolve(got));
        socket.on('error', reject);
        socket.setTimeout(10_000, () => socket.destroy(new Error('timeout')));
      });
      assert.match(text, /^HTTP\/1\.1 400 /);
    }
    // Plain TCP garbage on the TLS port does not hurt either.
    await new Promise<void>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.end('hello\r\n\r\n'));
      s.on('close', () => resolve());
      s.on('error', () => resolve());
      s.resume();
    });
  });
});

describe('after the onslaught', () => {
  it('no 5xx was logged, no unhandled rejection, and real reviews are still judged correctly', async () => {
    assert.deepEqual(webhook.logs.find('internal error'), []);
    assert.deepEqual(processErrors, []);
    const pass = deploymentPodReview([PASSING_IMAGE]);
    const fail = deploymentPodReview([FAILING_IMAGE]);
    const a = await send('/validate?timeout=5s', pass.body);
    const b = await send('/validate?timeout=5s', fail.body);
    assertCleanPass(a.json.response, pass.uid);
    assert.equal(b.json.response.uid, fail.uid);
    assert.equal(b.json.response.allowed, false);
    assert.match(b.json.response.status.message, /^Image failed policy check: docker\.io\/apache\/struts2:2\.3\.12 \(container "web"\): .*CVE-2017-5638/);
    const health = await request(`${webhook.url}/healthz`);
    assert.equal(health.status, 200);
  });
});
