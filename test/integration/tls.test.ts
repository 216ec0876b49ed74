/**
 * TLS on both sides: the webhook reloads its certificate when the files change; the scanner client
 * verifies the scanner's certificate (ANCHORE_CA_FILE for a private CA) unless told not to.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startScannerSimulator, type ScannerSimulator } from '@scangate/simulator';
import { admissionReview, makeTlsFiles, request, startWebhook, type Webhook } from '../helpers/harness.js';

let sim: ScannerSimulator;
let proxy: https.Server;
let proxyUrl: string;
const webhooks: Webhook[] = [];

before(async () => {
  sim = await startScannerSimulator({ user: 'admin', password: 'foobar' });
  // An HTTPS front for the simulator, with the test CA's certificate for 127.0.0.1.
  const files = makeTlsFiles();
  const target = new URL(sim.url);
  proxy = https.createServer({ cert: execFileSync('cat', [files.certFile]), key: execFileSync('cat', [files.keyFile]) }, (req, res) => {
    const upstream = http.request(
      { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  proxyUrl = `https://127.0.0.1:${(proxy.address() as AddressInfo).port}/v1`;
});

after(async () => {
  for (const w of webhooks) await w.close();
  proxy.closeAllConnections();
  await new Promise((resolve) => proxy.close(resolve));
  await sim.close();
});

async function webhook(env: Record<string, string>): Promise<Webhook> {
  const w = await startWebhook({ ANCHORE_CLI_USER: 'admin', ANCHORE_CLI_PASS: 'foobar', SCANNER_RETRY_BUDGET_MS: '0', ...env });
  webhooks.push(w);
  return w;
}

test('scanner TLS is verified by default: an unknown CA is a scanner error', async () => {
  const w = await webhook({ ANCHORE_CLI_URL: proxyUrl });
  const res = await request(`${w.url}/validate?timeout=3s`, { body: admissionReview({ containers: ['nginx:1.25.3'] }).body });
  assert.equal(res.json.response.allowed, false);
  assert.match(res.json.response.status.message, /^Scanner error: nginx:1.25.3 \(container "c0": scanner unreachable \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\)\)$/);
});

test('ANCHORE_CA_FILE trusts a private CA', async () => {
  const w = await webhook({ ANCHORE_CLI_URL: proxyUrl, ANCHORE_CA_FILE: join(makeTlsFiles().dir, 'ca.crt') });
  const res = await request(`${w.url}/validate?timeout=3s`, { body: admissionReview({ containers: ['nginx:1.25.3'] }).body });
  assert.equal(res.json.response.allowed, true, res.text);
});

test('ANCHORE_INSECURE_SKIP_TLS_VERIFY is an explicit opt-out', async () => {
  const w = await webhook({ ANCHORE_CLI_URL: proxyUrl, ANCHORE_INSECURE_SKIP_TLS_VERIFY: 'true' });
  const res = await request(`${w.url}/validate?timeout=3s`, { body: admissionReview({ containers: ['bitnami/nginx:1.25'] }).body });
  assert.equal(res.json.response.allowed, true, res.text);
});

function servedCertificate(url: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: hostname, port: Number(port), rejectUnauthorized: false }, () => {
      const fp = socket.getPeerCertificate().fingerprint256;
      socket.end();
      resolve(fp);
    });
    socket.on('error', reject);
  });
}

test('the serving certificate is reloaded when its files change', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'scangate-reload-'));
  const base = makeTlsFiles();
  copyFileSync(base.certFile, join(dir, 'tls.crt'));
  copyFileSync(base.keyFile, join(dir, 'tls.key'));
  const w = await webhook({ TLS_CERT_FILE: join(dir, 'tls.crt'), TLS_KEY_FILE: join(dir, 'tls.key'), CERT_RELOAD_INTERVAL_MS: '100' });
  const before = await servedCertificate(w.url);
  // A renewed certificate: same CA, new key.
  execFileSync('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'new.key'), '-out', join(dir, 'new.csr'), '-subj', '/CN=127.0.0.1'], { stdio: 'pipe' });
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  execFileSync('openssl', ['x509', '-req', '-in', join(dir, 'new.csr'), '-CA', join(base.dir, 'ca.crt'), '-CAkey', join(base.dir, 'ca.key'), '-CAcreateserial', '-out', join(dir, 'new.crt'), '-days', '1', '-extfile', join(dir, 'san.ext')], { stdio: 'pipe' });
  copyFileSync(join(dir, 'new.key'), join(dir, 'tls.key'));
  copyFileSync(join(dir, 'new.crt'), join(dir, 'tls.crt'));
  let after = before;
  for (let i = 0; i < 50 && after === before; i++) {
    await sleep(100);
    after = await servedCertificate(w.url);
  }
  assert.notEqual(after, before, 'certificate not reloaded within 5 s');
  assert.equal((await request(`${w.url}/healthz`, { ca: base.caPem, headers: { connection: 'close' } })).status, 200);
  assert.equal(w.logs.find('TLS certificate reloaded').length, 1);
});
