/**
 * Instructions per request, counted by valgrind's callgrind: the same figure for the same build and
 * inputs whatever else the machine is doing, so a few per cent between two builds can be told apart
 * on a shared machine where CPU time per request varies by ±10 % from one run to the next.
 *
 * scangate runs under `valgrind --tool=callgrind --instr-atstart=no` (near full speed, nothing
 * counted), with V8's `--single-threaded` so that the optimising compiler and the GC do their work
 * on the main thread when it is due rather than on helper threads at whatever pace valgrind gives
 * them; one keep-alive connection sends `warmup` cache-hit reviews (V8 tiers the hot code up), then
 * counting is switched on (`callgrind_control --instr=on`) for `requests` more, switched off and
 * dumped. The count covers exactly those requests. V8's hash and random seeds are fixed (they are
 * per process otherwise); a count still varies by 1 to 2 % between processes, so compare medians.
 *
 * CG_NODE_ARGS adds node options: `--perf-basic-prof --interpreted-frames-native-stack` makes V8 write
 * /tmp/perf-PID.map, which names the JIT code addresses callgrind_annotate shows as `0x...`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import { fetchText, freePort, sleep, startSimulator } from './env.mjs';

export function haveCallgrind() {
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'pipe' });
    execFileSync('callgrind_control', ['--version'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

/** Instructions per request of `mainJs` answering `body` (every lookup a cache hit). */
export async function instructionsPerRequest({ work, tls, mainJs, label, body, warmup = 30_000, requests = 2000 }) {
  const sim = await startSimulator(work, { mainJs });
  const port = await freePort();
  const outFile = join(work.dir, `callgrind-${label}-${port}.out`);
  const child = spawn(
    'valgrind',
    ['--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${outFile}`, process.execPath, '--single-threaded', '--hash-seed=1', '--random-seed=1', ...(process.env.CG_NODE_ARGS ? process.env.CG_NODE_ARGS.split(' ') : []), mainJs, 'serve', '--host', '127.0.0.1', '--port', String(port), '--tls-cert', tls.certFile, '--tls-key', tls.keyFile],
    { env: { PATH: process.env.PATH, ANCHORE_CLI_URL: sim.url, ANCHORE_CLI_PASS: 'foobar' }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const url = `https://127.0.0.1:${port}`;
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: tls.ca });
  try {
    for (let i = 0; ; i++) {
      const r = await fetchText(`${url}/readyz`, { ca: tls.ca, timeoutMs: 5000 }).catch(() => undefined);
      if (r?.status === 200) break;
      if (i > 240 || child.exitCode !== null) throw new Error(`scangate under valgrind did not start: ${stderr.slice(-2000)}`);
      await sleep(500);
    }
    const post = () => fetchText(`${url}/validate?timeout=10s`, { method: 'POST', body, ca: tls.ca, agent });
    const first = await post();
    if (first.json?.response?.allowed !== true) throw new Error(`priming: ${first.text}`);
    for (let i = 0; i < warmup; i++) await post();
    execFileSync('callgrind_control', ['--instr=on', String(child.pid)], { stdio: 'pipe' });
    for (let i = 0; i < requests; i++) {
      const r = await post();
      if (r.status !== 200) throw new Error(`answer ${r.status}: ${r.text}`);
    }
    execFileSync('callgrind_control', ['--instr=off', String(child.pid)], { stdio: 'pipe' });
    execFileSync('callgrind_control', ['--dump', String(child.pid)], { stdio: 'pipe' });
  } finally {
    agent.destroy();
    child.kill('SIGTERM');
    await exited;
    await sim.stop();
  }
  let total = 0;
  const base = outFile.split('/').pop();
  for (const f of readdirSync(work.dir).filter((n) => n.startsWith(base))) {
    const m = /^totals: (\d+)/m.exec(readFileSync(join(work.dir, f), 'utf8'));
    if (m !== null) total += Number(m[1]);
  }
  if (total === 0) throw new Error(`callgrind counted nothing for ${label}`);
  return total / requests;
}
