/** The `scangate` binary as a user runs it: ref, check (exit codes) and configuration errors. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { startScannerSimulator, type ScannerSimulator } from '@scangate/simulator';

const MAIN = fileURLToPath(new URL('../../src/main.js', import.meta.url));
let sim: ScannerSimulator;

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { env: { PATH: process.env['PATH'] ?? '', ...env }, timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

before(async () => {
  sim = await startScannerSimulator({ user: 'admin', password: 'cli-test-pass' });
});
after(async () => {
  await sim.close();
});

test('ref prints one JSON object per image; exit 1 when one is invalid', async () => {
  const digest = `sha256:${'c'.repeat(64)}`;
  const { code, stdout } = await run(['ref', 'nginx', `host.io/a/b:tag@${digest}`, 'Foo']);
  assert.equal(code, 1);
  assert.deepEqual(stdout.trim().split('\n').map((l) => JSON.parse(l) as unknown), [
    { input: 'nginx', valid: true, domain: 'docker.io', path: 'library/nginx', name: 'docker.io/library/nginx', canonical: 'docker.io/library/nginx:latest' },
    { input: `host.io/a/b:tag@${digest}`, valid: true, domain: 'host.io', path: 'a/b', tag: 'tag', digest, name: 'host.io/a/b', canonical: `host.io/a/b:tag@${digest}` },
    { input: 'Foo', valid: false, error: 'repository name (library/Foo) must be lowercase' },
  ]);
  assert.equal((await run(['ref', 'nginx:1'])).code, 0);
});

test('check: exit 0 allowed, 1 denied, 2 when the scanner cannot give a verdict', async () => {
  const env = { ANCHORE_CLI_URL: sim.url, ANCHORE_CLI_USER: 'admin', ANCHORE_CLI_PASS: 'cli-test-pass' };
  const ok = await run(['check', 'nginx:1.25.3', 'bitnami/nginx:1.25'], env);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^IMAGE\s+RESULT\s+CACHE\s+DIGEST\nnginx:1.25.3\s+pass\s+miss\s+sha256:/);
  assert.match(ok.stdout, /\nALLOWED$/m);

  const denied = await run(['check', '--json', 'kaizheh/apache-struts2-cve-2017-5638:2.3.12'], env);
  assert.equal(denied.code, 1, denied.stderr);
  const doc = JSON.parse(denied.stdout) as { allowed: boolean; message: string; images: Array<{ result: string }> };
  assert.equal(doc.allowed, false);
  assert.match(doc.message, /^Image failed policy check: kaizheh\/apache-struts2-cve-2017-5638:2.3.12 .*CVE-2017-5638/);
  assert.equal(doc.images[0]?.result, 'fail');

  const wrong = await run(['check', 'nginx:1.25.3'], { ...env, ANCHORE_CLI_PASS: 'not-the-password' });
  assert.equal(wrong.code, 2);
  assert.match(wrong.stdout, /scanner rejected the credentials \(HTTP 401\)/);
  assert.ok(!`${wrong.stdout}${wrong.stderr}`.includes('not-the-password'));
});

test('check ends by itself (no process.exit): a scan still in flight at --timeout-ms is aborted, sockets and timers closed', async () => {
  const hanging = await startScannerSimulator({ user: 'admin', password: 'cli-test-pass' });
  hanging.setFaults({ hang: true });
  try {
    const env = { ANCHORE_CLI_URL: hanging.url, ANCHORE_CLI_USER: 'admin', ANCHORE_CLI_PASS: 'cli-test-pass', SCANNER_REQUEST_TIMEOUT_MS: '60000' };
    // The scanner never answers: at the deadline the scan is still on the wire. If anything of the
    // client kept the event loop alive, execFile's guard would kill the process (code -1).
    const result = await run(['check', '--timeout-ms', '1000', 'nginx:1.25.3'], env);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stdout, /^IMAGE\s+RESULT\s+CACHE\s+DIGEST\nnginx:1.25.3\s+timeout\s+miss/);
  } finally {
    await hanging.close();
  }
});

test('bad configuration: one message listing every problem, exit 2', async () => {
  const { code, stderr } = await run(['serve'], { REJECT_IF_TIMEOUT: 'sometimes', PORT: 'http' });
  assert.equal(code, 2);
  assert.match(stderr, /invalid configuration:/);
  assert.match(stderr, /PORT: expected a whole number/);
  assert.match(stderr, /REJECT_IF_TIMEOUT: expected true or false/);
  assert.match(stderr, /TLS_CERT_FILE and TLS_KEY_FILE/);
});

test('unknown commands print the usage', async () => {
  const { code, stderr } = await run(['frobnicate']);
  assert.equal(code, 2);
  assert.match(stderr, /unknown command: frobnicate/);
  assert.match(stderr, /usage: scangate <command>/);
});
