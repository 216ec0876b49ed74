/**
 * Test harness: real sockets everywhere. Generates a throwaway CA + server certificate with openssl,
 * starts scangate's HTTPS webhook in-process on 127.0.0.1:0, and speaks to it with node:https.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, beforeEach } from 'node:test';
import { composeScangate, type Scangate } from '../../src/composition.js';
import { parseConfig } from '../../src/config.js';
import { startServer, type RunningServer } from '../../src/http/server.js';
import { createLogger } from '../../src/observability/logger.js';
import type { Clock } from '../../src/scanner/clock.js';
import { startScannerSimulator, type ScannerSimulator } from '@scangate/simulator';

export interface TlsFiles {
  readonly dir: string;
  readonly caPem: string;
  readonly certFile: string;
  readonly keyFile: string;
}

let tlsFiles: TlsFiles | undefined;

/** A CA and a server certificate for 127.0.0.1/localhost, made once per test process. */
export function makeTlsFiles(): TlsFiles {
  if (tlsFiles !== undefined) return tlsFiles;
  const dir = mkdtempSync(join(tmpdir(), 'scangate-tls-'));
  const run = (args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  };
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=scangate-test-ca']);
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1']);
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'san.ext']);
  tlsFiles = {
    dir,
    caPem: readFileSync(join(dir, 'ca.crt'), 'utf8'),
    certFile: join(dir, 'server.crt'),
    keyFile: join(dir, 'server.key'),
  };
  return tlsFiles;
}

/** Collects pino's JSON lines so tests can assert on the log. */
export class LogCapture extends Writable {
  readonly lines: Array<Record<string, unknown>> = [];
  readonly raw: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: (error?: Error | null) => void): void {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim() === '') continue;
      this.raw.push(line);
      this.lines.push(JSON.parse(line) as Record<string, unknown>);
    }
    done();
  }
  find(msg: string): Array<Record<string, unknown>> {
    return this.lines.filter((l) => l['msg'] === msg);
  }
}

export interface Webhook {
  readonly url: string;
  readonly scangate: Scangate;
  readonly logs: LogCapture;
  readonly tls: TlsFiles;
  close(): Promise<void>;
}

/** Starts scangate's HTTPS webhook on 127.0.0.1:0 with env-style settings (as main.ts would). */
export async function startWebhook(env: Record<string, string>, opts: { scannerClock?: Clock } = {}): Promise<Webhook> {
  const tls = makeTlsFiles();
  const config = parseConfig(
    { LOG_LEVEL: 'info', TLS_CERT_FILE: tls.certFile, TLS_KEY_FILE: tls.keyFile, HOST: '127.0.0.1', PORT: '0', ...env },
    {},
    (p) => readFileSync(p, 'utf8'),
  );
  const logs = new LogCapture();
  const logger = createLogger({ level: config.logLevel, destination: logs });
  const scangate = composeScangate(config, { logger, ...(opts.scannerClock !== undefined ? { scannerClock: opts.scannerClock } : {}) });
  const running: RunningServer = await startServer(scangate.app, {
    host: '127.0.0.1',
    port: 0,
    tls: {
      certFile: config.server.tlsCertFile ?? tls.certFile,
      keyFile: config.server.tlsKeyFile ?? tls.keyFile,
      reloadIntervalMs: config.server.certReloadIntervalMs,
    },
    logger,
    maxConnections: config.server.maxConnections,
    ...scangate.connectionEvents,
  });
  scangate.state.ready = true;
  return {
    url: running.url,
    scangate,
    logs,
    tls,
    close: async () => {
      scangate.state.ready = false;
      await running.close(2000);
      scangate.close();
      await scangate.coordinator.idle();
    },
  };
}

export interface WebhookFixture {
  /** The file's scanner simulator (user admin, password foobar), reset before each test. */
  readonly sim: ScannerSimulator;
  /** Starts a webhook against it with `env` over the fixture's settings; closed after the file's tests. */
  readonly webhook: (env?: Record<string, string>) => Promise<Webhook>;
}

/**
 * The hooks of a test file that starts webhooks against one scanner simulator: the simulator is
 * started before the file's tests and reset before each; every webhook and the simulator are closed
 * after them. `settings` apply to every webhook (a test's own win).
 */
export function useWebhookFixture(settings: Record<string, string> = {}): WebhookFixture {
  let sim: ScannerSimulator | undefined;
  const webhooks: Webhook[] = [];
  before(async () => {
    sim = await startScannerSimulator({ user: 'admin', password: 'foobar' });
  });
  after(async () => {
    for (const w of webhooks) await w.close();
    await sim?.close();
  });
  beforeEach(() => sim?.reset());
  const fixture: WebhookFixture = {
    get sim() {
      if (sim === undefined) throw new Error('the simulator starts in the before hook');
      return sim;
    },
    webhook: async (env = {}) => {
      const w = await startWebhook({ ANCHORE_CLI_URL: fixture.sim.url, ANCHORE_CLI_USER: 'admin', ANCHORE_CLI_PASS: 'foobar', ...settings, ...env });
      webhooks.push(w);
      return w;
    },
  };
  return fixture;
}

export interface HttpResult {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  /** Parsed JSON body, or undefined when the body is not JSON. */
  readonly json: any;
}

const agents = new Map<string, https.Agent>();

/** Reads a whole answer: its status, headers and text, and the text parsed when it is JSON. */
export function readResult(res: IncomingMessage): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
    });
    res.on('error', reject);
  });
}

/** One HTTPS request to the webhook, verifying its certificate against the test CA. */
export function request(
  url: string,
  opts: { method?: string; body?: unknown; rawBody?: string | Buffer; ca?: string; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<HttpResult> {
  const ca = opts.ca ?? makeTlsFiles().caPem;
  let agent = agents.get(ca);
  if (agent === undefined) {
    agent = new https.Agent({ keepAlive: true, ca });
    agents.set(ca, agent);
  }
  const payload = opts.rawBody ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: opts.method ?? (payload === undefined ? 'GET' : 'POST'),
        agent,
        headers: { 'content-type': 'application/json', ...(opts.headers ?? {}) },
        timeout: opts.timeoutMs ?? 60_000,
      },
      (res) => {
        readResult(res).then(resolve, reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    if (payload !== undefined) req.end(payload);
    else req.end();
  });
}

let uidCounter = 0;

export interface PodSpecInput {
  readonly containers?: Array<string | { name: string; image: string }>;
  readonly initContainers?: Array<string | { name: string; image: string }>;
  readonly ephemeralContainers?: Array<string | { name: string; image: string }>;
}

function toContainers(list: PodSpecInput['containers'], prefix: string): Array<{ name: string; image: string }> | undefined {
  return list?.map((c, i) => (typeof c === 'string' ? { name: `${prefix}${i}`, image: c } : c));
}

/** A pod CREATE AdmissionReview as kube-apiserver sends it. */
export function admissionReview(
  spec: PodSpecInput,
  opts: { apiVersion?: string; namespace?: string; uid?: string; operation?: string; subResource?: string; oldSpec?: PodSpecInput } = {},
): { uid: string; body: Record<string, unknown> } {
  const uid = opts.uid ?? `uid-${process.pid}-${++uidCounter}`;
  const namespace = opts.namespace ?? 'default';
  const podSpec = (s: PodSpecInput): Record<string, unknown> => ({
    containers: toContainers(s.containers, 'c') ?? [],
    ...(s.initContainers !== undefined ? { initContainers: toContainers(s.initContainers, 'init') } : {}),
    ...(s.ephemeralContainers !== undefined ? { ephemeralContainers: toContainers(s.ephemeralContainers, 'debug') } : {}),
  });
  return {
    uid,
    body: {
      apiVersion: opts.apiVersion ?? 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid,
        kind: { group: '', version: 'v1', kind: 'Pod' },
        resource: { group: '', version: 'v1', resource: 'pods' },
        ...(opts.subResource !== undefined ? { subResource: opts.subResource } : {}),
        requestKind: { group: '', version: 'v1', kind: 'Pod' },
        namespace,
        operation: opts.operation ?? 'CREATE',
        userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' },
        object: {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { generateName: 'web-7d4b9c-', namespace },
          spec: podSpec(spec),
        },
        ...(opts.oldSpec !== undefined ? { oldObject: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web' }, spec: podSpec(opts.oldSpec) } } : {}),
        dryRun: false,
      },
    },
  };
}

/** An ImageReview as the ImagePolicyWebhook admission plugin sends it. */
export function imageReview(images: string[], namespace = 'default'): Record<string, unknown> {
  return {
    apiVersion: 'imagepolicy.k8s.io/v1alpha1',
    kind: 'ImageReview',
    spec: { containers: images.map((image) => ({ image })), annotations: {}, namespace },
  };
}

/** Reads one sample of a Prometheus metric from the text exposition ("name{a="b"} 3"). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const ok = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
    if (ok) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}
