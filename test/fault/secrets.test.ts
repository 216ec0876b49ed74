/**
 * Secrets: with known scanner credentials configured (user and password, from env and from a file;
 * written into the URL they are refused), scangate is driven through verdicts, faults, refused
 * credentials, bad requests, the CLI and a configuration error, at LOG_LEVEL=trace. No log line, metric, denial, warning or error message may
 * contain the user, the password, or the Basic auth header built from them.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FaultConfig, ScannerSimulator } from '@scangate/simulator';
import {
  closedPort,
  deploymentPodReview,
  FAILING_IMAGE,
  get,
  MAIN_JS,
  PASSING_IMAGE,
  runPool,
  spawnScangate,
  startSimulator,
  type ChildScangate,
} from '../helpers/fault-harness.js';
import { makeTlsFiles } from '../helpers/harness.js';

const USER = `sguser${randomBytes(6).toString('hex')}`;
const PASS = `Pw-${randomBytes(12).toString('hex')}-x`;
const WRONG_PASS = `Wrong-${randomBytes(12).toString('hex')}-y`;

/** Every spelling of the credentials that could leak: raw, Basic header, URL-encoded. */
function secretForms(user: string, pass: string): string[] {
  const forms = [user, pass, Buffer.from(`${user}:${pass}`).toString('base64'), Buffer.from(pass).toString('base64').replace(/=+$/, ''), encodeURIComponent(pass)];
  return [...new Set(forms)];
}
const SECRETS = [...secretForms(USER, PASS), ...secretForms(USER, WRONG_PASS)];

function assertNoSecret(where: string, text: string): void {
  for (const secret of SECRETS) {
    const at = text.indexOf(secret);
    assert.equal(at, -1, `${where} contains a credential: ...${text.slice(Math.max(0, at - 80), at + secret.length + 20)}...`);
  }
}

let sim: ScannerSimulator;
let dir: string;

before(async () => {
  sim = await startSimulator({ user: USER, password: PASS });
  dir = mkdtempSync(join(tmpdir(), 'scangate-secrets-'));
  writeFileSync(join(dir, 'pass'), `${PASS}\n`);
  writeFileSync(join(dir, 'wrong-pass'), `${WRONG_PASS}\n`);
});
after(async () => {
  await sim.close();
});

/** Drives one scangate through verdicts, every fault, bad requests and the metrics page; returns every answer's text. */
async function drive(scangate: ChildScangate, faults: readonly FaultConfig[]): Promise<string[]> {
  const texts: string[] = [];
  let n = 0;
  const send = async (path: string, body: string): Promise<void> => {
    const [r] = await runPool({ baseUrl: scangate.url, connections: 1, count: 1, maxDurationMs: 30_000, requestTimeoutMs: 30_000, next: () => ({ path, body }) });
    assert.ok(r?.response !== undefined, `no answer: ${r?.error}`);
    texts.push(JSON.stringify(r.response.headers), r.response.text);
  };
  for (const f of faults) {
    sim.reset();
    sim.setFaults(f);
    n += 1;
    await send('/validate?timeout=2s', deploymentPodReview([PASSING_IMAGE, FAILING_IMAGE, `docker.io/library/secret-${n}:1`]).body);
    await send('/image_policy?timeout=2s', JSON.stringify({ apiVersion: 'imagepolicy.k8s.io/v1alpha1', kind: 'ImageReview', spec: { containers: [{ image: `quay.io/secret/img-${n}:1` }], namespace: 'default' } }));
  }
  await send('/validate', '{"not": "a review"');
  await send('/validate', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 7 } }));
  await send('/nope', '{}');
  for (const path of ['/metrics', '/healthz', '/readyz']) {
    const r = await get(`${scangate.url}${path}`);
    texts.push(JSON.stringify(r.headers), r.text);
  }
  return texts;
}

const ALL_FAULTS: readonly FaultConfig[] = [
  {},
  { status: 500 },
  { status: 503, retryAfterSeconds: 0 },
  { status: 429 },
  { status: 401 },
  { status: 403 },
  { status: 400 },
  { malformed: true },
  { wrongShape: true },
  { hang: true },
  { analysisFailed: ['docker.io/library/secret-12'] },
];

const FAST_SCANNER_ENV = {
  SCANNER_REQUEST_TIMEOUT_MS: '300',
  SCANNER_RETRY_BUDGET_MS: '200',
  SCANNER_POLL_INITIAL_MS: '20',
  DEADLINE_MARGIN_MS: '500',
  LOG_LEVEL: 'trace',
};

/** Runs scangate's CLI to its exit; stdout and stderr together. */
const run = (args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN_JS, ...args], { env: { PATH: process.env['PATH'] ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });

async function stopAndCheck(scangate: ChildScangate, texts: readonly string[], label: string): Promise<void> {
  scangate.child.kill('SIGTERM');
  await scangate.exited;
  assert.ok(scangate.stdout.length > 10, `${label}: the log is not empty`);
  scangate.stdout.forEach((line, i) => assertNoSecret(`${label}: log line ${i + 1}`, line));
  assertNoSecret(`${label}: stderr`, scangate.stderr());
  texts.forEach((t, i) => assertNoSecret(`${label}: answer ${i + 1}`, t));
}

describe('credentials never leak', () => {
  it('correct credentials (user from env, password from a file), every scanner fault', async () => {
    const scangate = await spawnScangate({ ...FAST_SCANNER_ENV, ANCHORE_CLI_URL: sim.url, ANCHORE_CLI_USER: USER, ANCHORE_CLI_PASS_FILE: join(dir, 'pass') });
    try {
      const texts = await drive(scangate, ALL_FAULTS);
      // The credentials did work: verdicts came back.
      assert.ok(texts.some((t) => t.includes('Image failed policy check: docker.io/apache/struts2:2.3.12')));
      await stopAndCheck(scangate, texts, 'correct credentials');
    } finally {
      await scangate.kill();
    }
  });

  // Anchore's 404 says "user has no active policy to evaluate: <user>"; on Sysdig Secure the user is
  // the API token. The scanner's own text must not carry it into denials and logs.
  it('no active policy: the scanner names the account in its error; scangate must not repeat it', async () => {
    const scangate = await spawnScangate({ ...FAST_SCANNER_ENV, ANCHORE_CLI_URL: sim.url, ANCHORE_CLI_USER: USER, ANCHORE_CLI_PASS: PASS });
    try {
      const texts = await drive(scangate, [{ noActivePolicy: true }]);
      // One "Scanner error:" sentence lists every image; each names the cause without the account.
      const denial = texts.find((t) => t.includes('"message":"Scanner error: '));
      assert.ok(denial !== undefined, `denied with a scanner error: ${texts.join('\n')}`);
      assert.match(denial, /docker\.io\/library\/secret-1:1 \(container \\"sidecar-2\\": scanner has no active policy bundle for this account/);
      await stopAndCheck(scangate, texts, 'no active policy');
    } finally {
      await scangate.kill();
    }
  });

  it('a wrong password (the scanner answers 401): the denial names the problem, not the secret', async () => {
    const scangate = await spawnScangate({ ...FAST_SCANNER_ENV, ANCHORE_CLI_URL: sim.url, ANCHORE_CLI_USER: USER, ANCHORE_CLI_PASS: WRONG_PASS });
    try {
      const texts = await drive(scangate, [{}, { status: 500 }]);
      assert.ok(texts.some((t) => t.includes('scanner rejected the credentials (HTTP 401): check ANCHORE_CLI_USER / ANCHORE_CLI_PASS')), 'the denial says what is wrong');
      assert.equal(scangate.find('scanner rejected the credentials: check ANCHORE_CLI_USER / ANCHORE_CLI_PASS').length, 1);
      await stopAndCheck(scangate, texts, 'wrong password');
    } finally {
      await scangate.kill();
    }
  });

  // Credentials written into the URL were silently ignored before (axios sends ANCHORE_CLI_USER/PASS):
  // now refused at start-up, with a message that says so and never repeats the URL.
  it('credentials written into ANCHORE_CLI_URL: refused at start-up, the URL not echoed', async () => {
    for (const base of [sim.url, `http://127.0.0.1:${await closedPort()}/v1`]) {
      for (const [user, pass] of [[USER, PASS], [USER, ''], ['', PASS]] as const) {
        const url = new URL(base);
        url.username = user;
        url.password = pass;
        const { code, out } = await run(['serve', '--insecure-http', '--port', '0'], {
          ANCHORE_CLI_URL: url.toString(),
          ANCHORE_CLI_USER: USER,
          ANCHORE_CLI_PASS: PASS,
          LOG_LEVEL: 'trace',
        });
        const label = `credentials in the URL (${base}, ${user === '' ? 'no user' : 'user'}, ${pass === '' ? 'no password' : 'password'})`;
        assert.equal(code, 2, `${label}: exit code; output: ${out.slice(0, 500)}`);
        assert.match(out, /ANCHORE_CLI_URL: must not carry credentials \(user:password@host\); set ANCHORE_CLI_USER and ANCHORE_CLI_PASS/, label);
        assert.doesNotMatch(out, /127\.0\.0\.1/, `${label}: the URL is not echoed`);
        assertNoSecret(label, out);
      }
    }
  });

  it('the CLI (scangate check) and a configuration error', async () => {
    sim.reset();
    const checks = [
      { label: 'check, right password', args: ['check', '--json', '--timeout-ms', '5000', FAILING_IMAGE], env: { ANCHORE_CLI_URL: sim.url, ANCHORE_CLI_USER: USER, ANCHORE_CLI_PASS: PASS, LOG_LEVEL: 'trace' }, code: 1 },
      { label: 'check, wrong password', args: ['check', '--json', '--timeout-ms', '3000', PASSING_IMAGE], env: { ANCHORE_CLI_URL: sim.url, ANCHORE_CLI_USER: USER, ANCHORE_CLI_PASS_FILE: join(dir, 'wrong-pass'), LOG_LEVEL: 'trace' }, code: 2 },
      {
        label: 'serve, invalid configuration',
        args: ['serve', '--port', 'not-a-port', '--tls-cert', makeTlsFiles().certFile, '--tls-key', makeTlsFiles().keyFile],
        env: { ANCHORE_CLI_URL: `http://${USER}:${PASS}@127.0.0.1:1/v1`, ANCHORE_CLI_USER: USER, ANCHORE_CLI_PASS: PASS, SCANNER_POLL_MAX_MS: '1', REJECT_IF_TIMEOUT: PASS },
        code: 2,
      },
      {
        label: 'serve, unparseable URL holding the password',
        args: ['serve', '--insecure-http', '--port', '0'],
        env: { ANCHORE_CLI_URL: `http://${USER}:${PASS}@[not a host/v1`, ANCHORE_CLI_PASS: PASS },
        code: 2,
      },
    ];
    for (const c of checks) {
      const { code, out } = await run(c.args, c.env);
      assert.equal(code, c.code, `${c.label}: exit code; output: ${out.slice(0, 500)}`);
      assert.notEqual(out, '', `${c.label}: says something`);
      assertNoSecret(c.label, out);
    }
  });
});
