/**
 * The benchmark harness: processes (scanner simulator, scangate, baseline) as children on 127.0.0.1,
 * throwaway TLS files, small HTTP(S) helpers, /proc readings and the machine's description.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = fileURLToPath(new URL('..', import.meta.url));
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const MAIN_JS = join(ROOT, 'dist/src/main.js');
/** The scanner simulator's entry point (its own package, simulator/; `make build` builds both). */
export const SIMULATOR_MAIN_JS = join(ROOT, 'simulator/dist/main.js');
export const SCANNER_DATA = join(BENCH_DIR, 'scanner-data.json');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A temporary directory for certificates and logs, removed by cleanup(). */
export function workDir() {
  const dir = mkdtempSync(join(os.tmpdir(), 'scangate-bench-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A CA and a server certificate for 127.0.0.1 (openssl, as the tests do). */
export function makeTls(dir) {
  const run = (args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=scangate-bench-ca']);
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1']);
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'san.ext']);
  return { ca: readFileSync(join(dir, 'ca.crt'), 'utf8'), certFile: join(dir, 'server.crt'), keyFile: join(dir, 'server.key') };
}

export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** One request; resolves { status, headers, text, json, ms }. Bounded by timeoutMs. */
export function fetchText(url, { method = 'GET', body, ca, timeoutMs = 60_000, agent } = {}) {
  const lib = url.startsWith('https:') ? https : http;
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = lib.request(url, { method, ca, agent, timeout: timeoutMs, headers: body === undefined ? {} : { 'content-type': 'application/json' } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode, headers: res.headers, text, json, ms: performance.now() - started });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms: ${method} ${url}`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Reads one sample of a Prometheus metric ("name{a="b"} 3"). */
export function metricValue(text, name, labels = {}) {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

export function rssBytes(pid) {
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? NaN) * 1024;
}

/** CPU time (user + system) of a process so far, in ms, from /proc/PID/stat. */
export function cpuMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / 100;
}

async function waitReady(url, ca, child, what, timeoutMs = 20_000) {
  const started = Date.now();
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode} before it was ready`);
    try {
      const r = await fetchText(url, { ca, timeoutMs: 1000 });
      if (r.status === 200) return;
    } catch {
      // not yet listening
    }
    if (Date.now() - started > timeoutMs) throw new Error(`${what} not ready after ${timeoutMs} ms`);
    await sleep(50);
  }
}

function startChild(args, env, logFile) {
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return {
    child,
    pid: child.pid,
    logFile,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

/**
 * The simulator's command line for the build whose scangate is `mainJs` (…/dist/src/main.js): its
 * simulator package when it has one, else (builds before the simulator left the product) `main.js
 * scanner-sim`.
 */
function simulatorCommand(mainJs) {
  if (mainJs === MAIN_JS) return [SIMULATOR_MAIN_JS];
  const own = join(dirname(mainJs), '../../simulator/dist/main.js');
  return existsSync(own) ? [own] : [mainJs, 'scanner-sim'];
}

/**
 * The scanner simulator on a free port with the bench data; admin helpers over its /_sim routes.
 * `api`: 'v1' (url `.../v1`) or 'v2' (Anchore Enterprise 5, v2 only; url is the bare origin, so
 * scangate detects the API as with its default settings). `port`: listen there instead of on a free
 * port (the breaker benchmark brings a scanner back on the port scangate was refused on). `mainJs`: the
 * simulator of another build (the cache-hit comparison runs each build against its own).
 */
export async function startSimulator(work, { analysisDelayMs = 0, api = 'v1', port: fixedPort, mainJs = MAIN_JS } = {}) {
  const port = fixedPort ?? (await freePort());
  // An earlier build's simulator (mainJs) may predate `--api`; it spoke v1 only.
  const apiArgs = mainJs === MAIN_JS || api !== 'v1' ? ['--api', api] : [];
  const proc = startChild(
    [...simulatorCommand(mainJs), '--port', String(port), '--data', SCANNER_DATA, '--analysis-delay-ms', String(analysisDelayMs), ...apiArgs],
    {},
    join(work.dir, `simulator-${api}-${port}.log`),
  );
  const base = `http://127.0.0.1:${port}`;
  await waitReady(`${base}/health`, undefined, proc.child, 'scanner simulator');
  const admin = async (method, path, body) => {
    const r = await fetchText(`${base}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
    if (r.status !== 200) throw new Error(`simulator ${method} ${path}: ${r.status} ${r.text}`);
    return r.json;
  };
  return {
    ...proc,
    api,
    url: api === 'v2' ? base : `${base}/v1`,
    stats: () => admin('GET', '/_sim/stats'),
    setFaults: (faults) => admin('PUT', '/_sim/faults', faults),
    setAnalysisDelayMs: (ms) => admin('PUT', '/_sim/analysis-delay', { ms }),
    reset: () => admin('POST', '/_sim/reset'),
  };
}

/**
 * `scangate serve` over HTTPS on a free port; its JSON log goes to a file, as a container's stdout
 * would. `nodeArgs` go before the script (e.g. --inspect for the memory benchmark); `mainJs` is another
 * build of scangate (the cache-hit comparison against an earlier commit).
 */
export async function startScangate(work, tls, env, name = 'scangate', nodeArgs = [], mainJs = MAIN_JS) {
  const port = await freePort();
  const proc = startChild(
    [...nodeArgs, mainJs, 'serve', '--host', '127.0.0.1', '--port', String(port), '--tls-cert', tls.certFile, '--tls-key', tls.keyFile],
    { ANCHORE_CLI_PASS: 'foobar', ...env },
    join(work.dir, `${name}-${port}.log`),
  );
  const url = `https://127.0.0.1:${port}`;
  await waitReady(`${url}/readyz`, tls.ca, proc.child, 'scangate');
  return { ...proc, url, metrics: async () => (await fetchText(`${url}/metrics`, { ca: tls.ca })).text };
}

/**
 * Runs a full garbage collection in a process started with --inspect=127.0.0.1:PORT, through the
 * inspector protocol (HeapProfiler.collectGarbage), so a memory reading excludes garbage.
 */
export async function collectGarbage(inspectPort) {
  const { default: WebSocket } = await import('ws');
  const list = await fetchText(`http://127.0.0.1:${inspectPort}/json/list`);
  const target = list.json?.[0]?.webSocketDebuggerUrl;
  if (target === undefined) throw new Error(`no inspector target on port ${inspectPort}`);
  const ws = new WebSocket(target);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  try {
    for (let id = 1; id <= 2; id++) {
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('collectGarbage timed out')), 30_000);
        ws.on('message', function onMessage(data) {
          if (JSON.parse(String(data)).id !== id) return;
          ws.off('message', onMessage);
          clearTimeout(timer);
          resolve();
        });
        ws.send(JSON.stringify({ id, method: 'HeapProfiler.collectGarbage' }));
      });
    }
  } finally {
    ws.close();
  }
}

/**
 * A baseline HTTPS server: baseline/server.mjs (bare node:https, the default) or
 * baseline/koa-floor.mjs (the same work through Koa and @koa/router).
 */
export async function startBaseline(work, tls, script = 'server.mjs') {
  const port = await freePort();
  const proc = startChild([join(BENCH_DIR, 'baseline', script), String(port), tls.certFile, tls.keyFile], {}, join(work.dir, `baseline-${script}-${port}.log`));
  const url = `https://127.0.0.1:${port}`;
  await waitReady(`${url}/healthz`, tls.ca, proc.child, script);
  return { ...proc, url };
}

/** What the figures were measured on. */
export function machine() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? 'unknown';
  let nproc = String(os.availableParallelism?.() ?? os.cpus().length);
  try {
    nproc = execFileSync('nproc', { encoding: 'utf8' }).trim();
  } catch {
    // keep Node's count
  }
  return {
    date: new Date().toISOString(),
    nproc,
    cpu: model,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    node: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
  };
}
