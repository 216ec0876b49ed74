/**
 * Fault-suite harness, beside the lead's harness.ts: the scanner simulator with fixed data, scangate
 * as a child process (`node dist/src/main.js serve`) with its JSON log captured, a bounded load pool
 * over HTTPS keep-alive, and the RSS of a process. Real sockets on 127.0.0.1 only.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { startScannerSimulator, type ScannerSimulator, type SimulatorData, type SimulatorOptions } from '@scangate/simulator';
import { makeTlsFiles, readResult, type HttpResult } from './harness.js';

export { deploymentPodReview } from './pod-review.js';

/** dist/src/main.js, found from this compiled file (dist/test/helpers/fault-harness.js). */
export const MAIN_JS = fileURLToPath(new URL('../../src/main.js', import.meta.url));

export const FAILING_IMAGE = 'docker.io/apache/struts2:2.3.12';
export const PASSING_IMAGE = 'docker.io/library/nginx:1.25.3';

/** The suite's own scanner data, so it does not depend on the simulator's sample data changing under it. */
export const FAULT_DATA: SimulatorData = {
  description: 'scangate fault suite',
  repositories: {
    'docker.io/apache/struts2': {
      vulnerabilities: [
        {
          vuln: 'CVE-2017-5638',
          severity: 'Critical',
          package: 'struts2-core-2.3.12',
          packageType: 'java',
          fix: '2.3.32',
        },
      ],
    },
    'docker.io/library/nginx': { vulnerabilities: [] },
  },
};

/** A simulator on 127.0.0.1:0 with FAULT_DATA (admin/foobar unless told otherwise). */
export function startSimulator(opts: SimulatorOptions = {}): Promise<ScannerSimulator> {
  return startScannerSimulator({ data: FAULT_DATA, ...opts });
}

/** A TCP port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A "scanner" that accepts TCP connections and resets them at once (a crashed or half-up service). */
export async function startResettingServer(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.resetAndDestroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface ChildExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface ChildScangate {
  readonly url: string;
  readonly child: ChildProcess;
  /** Every stdout line that parsed as JSON (pino). */
  readonly lines: Array<Record<string, unknown>>;
  /** Every stdout line as written. */
  readonly stdout: string[];
  /** Everything written to stderr. */
  stderr(): string;
  find(msg: string): Array<Record<string, unknown>>;
  readonly exited: Promise<ChildExit>;
  /** SIGKILL if still running (test clean-up). */
  kill(): Promise<ChildExit>;
}

function collect(child: ChildProcess): { lines: Array<Record<string, unknown>>; stdout: string[]; stderr: () => string } {
  const lines: Array<Record<string, unknown>> = [];
  const stdout: string[] = [];
  let pending = '';
  let err = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf('\n')) !== -1) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (line.trim() === '') continue;
      stdout.push(line);
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not a pino line: kept in stdout only
      }
    }
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    err += chunk;
  });
  return { lines, stdout, stderr: () => err };
}

/**
 * Spawns `node dist/src/main.js serve` over HTTPS on 127.0.0.1 (ephemeral port) with the given
 * environment on top of a minimal one, and waits for its "scangate listening" line (bounded).
 */
export async function spawnScangate(env: Record<string, string>, opts: { startTimeoutMs?: number } = {}): Promise<ChildScangate> {
  const tls = makeTlsFiles();
  const child = spawn(
    process.execPath,
    [MAIN_JS, 'serve', '--host', '127.0.0.1', '--port', '0', '--tls-cert', tls.certFile, '--tls-key', tls.keyFile],
    {
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const { lines, stdout, stderr } = collect(child);
  const exited = new Promise<ChildExit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const startTimeoutMs = opts.startTimeoutMs ?? 15_000;
  const started = Date.now();
  let url: string | undefined;
  let done = false;
  void exited.then(() => {
    done = true;
  });
  while (url === undefined && !done && Date.now() - started < startTimeoutMs) {
    const listening = lines.find((l) => l['msg'] === 'scangate listening');
    if (listening !== undefined) url = String(listening['url']);
    else await new Promise((r) => setTimeout(r, 20));
  }
  if (url === undefined) {
    child.kill('SIGKILL');
    await exited;
    throw new Error(`scangate did not start within ${startTimeoutMs} ms; stderr: ${stderr().slice(0, 2000)}; stdout: ${stdout.join('\n').slice(0, 2000)}`);
  }
  return {
    url,
    child,
    lines,
    stdout,
    stderr,
    find: (msg) => lines.filter((l) => l['msg'] === msg),
    exited,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      return exited;
    },
  };
}

/** Resident set size of a process in bytes, from /proc (Linux). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (m === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

export interface PoolRequest {
  readonly path: string;
  readonly body: string;
  /** Whatever the caller wants back beside the answer (kind of request, expected uid). */
  readonly tag?: string;
}

export interface PoolResult {
  readonly request: PoolRequest;
  /** undefined when the request failed at the transport level (see error). */
  readonly response?: HttpResult;
  readonly error?: string;
  readonly durationMs: number;
  /** Date.now() when the request was written. */
  readonly sentAt: number;
}

/** One POST over a given agent; never rejects (transport errors are results). */
export function post(
  url: string,
  body: string,
  agent: https.Agent,
  timeoutMs: number,
): Promise<{ response?: HttpResult; error?: string; durationMs: number; sentAt: number }> {
  const startedAt = performance.now();
  const sentAt = Date.now();
  return new Promise((resolve) => {
    const req = https.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json' }, timeout: timeoutMs }, (res) => {
      readResult(res).then(
        (response) => resolve({ response, durationMs: performance.now() - startedAt, sentAt }),
        (e: unknown) => resolve({ error: (e as Error).message, durationMs: performance.now() - startedAt, sentAt }),
      );
    });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message, durationMs: performance.now() - startedAt, sentAt }));
    req.end(body);
  });
}

/**
 * Sends `count` requests from `next(i)` over `connections` keep-alive HTTPS connections, at most
 * `connections` in flight, and stops issuing new ones after `maxDurationMs` (bounded in count and
 * time). Returns every result in issue order.
 */
export async function runPool(opts: {
  readonly baseUrl: string;
  readonly connections: number;
  readonly count: number;
  readonly maxDurationMs: number;
  readonly requestTimeoutMs: number;
  readonly next: (i: number) => PoolRequest;
  readonly onProgress?: (done: number) => void;
  /** Stop issuing new requests once this returns true. */
  readonly stopWhen?: () => boolean;
}): Promise<PoolResult[]> {
  const agent = new https.Agent({ keepAlive: true, maxSockets: opts.connections, ca: makeTlsFiles().caPem });
  const results: PoolResult[] = new Array<PoolResult>(opts.count);
  let issued = 0;
  let done = 0;
  const startedAt = Date.now();
  const worker = async (): Promise<void> => {
    while (issued < opts.count && Date.now() - startedAt < opts.maxDurationMs && opts.stopWhen?.() !== true) {
      const i = issued++;
      const request = opts.next(i);
      const r = await post(`${opts.baseUrl}${request.path}`, request.body, agent, opts.requestTimeoutMs);
      results[i] = { request, ...r };
      done += 1;
      opts.onProgress?.(done);
    }
  };
  await Promise.all(Array.from({ length: opts.connections }, worker));
  agent.destroy();
  return results.slice(0, issued).filter((r) => r !== undefined);
}

/** Reads a whole /metrics page (or any GET) over HTTPS with the test CA. */
export function get(url: string): Promise<HttpResult> {
  const ca = makeTlsFiles().caPem;
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, timeout: 10_000 }, (res) => {
      readResult(res).then(resolve, reject);
    });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
  });
}

/** Waits until `predicate()` is true, polling every `stepMs`, at most `timeoutMs`; returns whether it became true. */
export async function waitFor(predicate: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 20): Promise<boolean> {
  const started = Date.now();
  for (;;) {
    if (await predicate()) return true;
    if (Date.now() - started >= timeoutMs) return false;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}


/**
 * Asserts a whole AdmissionResponse of a clean admission of one passing image: uid echoed, allowed, and
 * the audit annotations every decision carries (`decision`, and `images` with the scanned digest).
 */
export function assertCleanPass(response: unknown, uid: string, image?: string): void {
  const images = (response as { auditAnnotations?: { images?: unknown } } | undefined)?.auditAnnotations?.images;
  assert.equal(typeof images, 'string', `no audit annotation "images" in ${JSON.stringify(response)}`);
  assert.match(String(images), /^[^=;]+=pass@sha256:[0-9a-f]{64}$/);
  if (image !== undefined) assert.ok(String(images).startsWith(`${image}=`), String(images));
  assert.deepEqual(response, { uid, allowed: true, auditAnnotations: { decision: 'allowed', images } });
}
