/**
 * 6. Scanner outage and the circuit breaker (issue 7 §4). Two outages: (a) connection refused (a
 * closed port on 127.0.0.1) and (b) a hanging scanner (the simulator's `hang` fault). Admissions are
 * pod CREATE reviews with `?timeout=10s` of images scangate has never seen (every one a cache miss).
 *
 * - before: breaker off (SCANNER_BREAKER_FAILURES=0): what an uncached admission costs during the outage.
 * - after: breaker on (default settings): admissions until it opens, then the latency of uncached
 *   admissions while it is open, every answer checked ("Scanner unavailable: ...", allowed=false).
 * - recovery: the scanner comes back (the simulator starts on the refused port / the fault is cleared);
 *   an admission of a new image every ~50 ms until one gets the scanner's verdict. Once with the default
 *   probe interval (5 s) and once with SCANNER_BREAKER_PROBE_INTERVAL_MS=1000.
 *
 * Targets: p99 of uncached admissions while open < 50 ms; a real verdict within one probe interval of
 * the scanner's return.
 */
import https from 'node:https';
import { fetchText, freePort, metricValue, sleep, startScangate, startSimulator } from '../lib/env.mjs';
import { podReview } from '../lib/review.mjs';
import { ms, summarize, table, verdict } from '../lib/stats.mjs';

export const title = '6. Scanner outage: the circuit breaker';

const OPEN_LATENCY_TARGET_MS = 50;
const POLL_EVERY_MS = 50;
let counter = 0;
const image = (tag) => `docker.io/library/nginx:brk-${tag}-${process.pid}-${counter++}`;

/** One admission of a never-seen image; { ms, allowed, message }. */
async function admit(scangate, agent, tag) {
  const r = await fetchText(`${scangate.url}/validate?timeout=10s`, { method: 'POST', body: podReview([image(tag)]), agent, timeoutMs: 30_000 });
  if (r.status !== 200 || r.json?.response === undefined) throw new Error(`breaker: HTTP ${r.status} ${r.text.slice(0, 300)}`);
  return { ms: r.ms, allowed: r.json.response.allowed === true, message: r.json.response.status?.message ?? '' };
}

const kindOf = (a) => (a.allowed ? 'allowed' : a.message.startsWith('Scanner unavailable') ? 'Scanner unavailable' : a.message.split(':')[0]);
const tally = (answers) => {
  const t = {};
  for (const a of answers) t[kindOf(a)] = (t[kindOf(a)] ?? 0) + 1;
  return Object.entries(t).map(([k, c]) => `${c} x ${k}`).join(', ');
};

/** An outage of scanner kind `fault`: its URL, and restore() that brings it back and resolves the moment it is back. */
async function outage(work, fault) {
  if (fault === 'refused') {
    const port = await freePort();
    let sim;
    return {
      url: `http://127.0.0.1:${port}/v1`,
      restore: async () => {
        sim = await startSimulator(work, { port });
        return performance.now(); // first /health answer (polled every 50 ms)
      },
      stop: async () => sim?.stop(),
    };
  }
  const sim = await startSimulator(work);
  await sim.setFaults({ hang: true });
  return {
    url: sim.url,
    restore: async () => {
      await sim.setFaults({});
      return performance.now();
    },
    stop: () => sim.stop(),
  };
}

const ENV = { REJECT_IF_TIMEOUT: 'true' };

async function before(work, tls, fault, n) {
  const o = await outage(work, fault);
  const scangate = await startScangate(work, tls, { ...ENV, ANCHORE_CLI_URL: o.url, SCANNER_BREAKER_FAILURES: '0' }, `scangate-breaker-off-${fault}`);
  const agent = new https.Agent({ keepAlive: true, ca: tls.ca });
  try {
    const answers = await Promise.all(Array.from({ length: n }, () => admit(scangate, agent, `off-${fault}`)));
    if (answers.some((a) => a.allowed)) throw new Error(`breaker: an admission was allowed with REJECT_IF_TIMEOUT=true: ${tally(answers)}`);
    return { ...summarize(answers.map((a) => a.ms)), answers };
  } finally {
    agent.destroy();
    await scangate.stop();
    await o.stop();
  }
}

async function after(work, tls, fault, probeMs, openCount) {
  const o = await outage(work, fault);
  const scangate = await startScangate(
    work,
    tls,
    { ...ENV, ANCHORE_CLI_URL: o.url, SCANNER_BREAKER_PROBE_INTERVAL_MS: String(probeMs) },
    `scangate-breaker-${fault}-${probeMs}`,
  );
  const agent = new https.Agent({ keepAlive: true, ca: tls.ca });
  try {
    // 1. Until it opens: 4 clients, each sending admissions one after the other, until an answer says
    // "Scanner unavailable" (bounded: 60 admissions or 90 s).
    const t0 = performance.now();
    let opened;
    let sent = 0;
    const opening = [];
    const client = async () => {
      while (opened === undefined && sent < 60 && performance.now() - t0 < 90_000) {
        const k = ++sent;
        const a = await admit(scangate, agent, `open-${fault}-${probeMs}`);
        opening.push(a);
        if (opened === undefined && a.message.startsWith('Scanner unavailable')) opened = { at: performance.now() - t0, admission: k };
      }
    };
    const clients = Array.from({ length: 4 }, client);
    let clientsDone = false;
    const allClients = Promise.all(clients).then(() => {
      clientsDone = true;
    });
    // Wait for the first "Scanner unavailable" (the other clients' admissions in flight finish later).
    while (opened === undefined && !clientsDone) await Promise.race([sleep(20), allClients]);
    if (opened === undefined) throw new Error(`breaker: never opened (${fault}, ${sent} admissions: ${tally(opening)})`);
    const state = metricValue(await scangate.metrics(), 'scangate_scanner_circuit_state');

    // 2. While open: openCount uncached admissions, one after the other, on a warm keep-alive connection.
    await fetchText(`${scangate.url}/healthz`, { agent });
    const open = [];
    for (let i = 0; i < openCount; i++) open.push(await admit(scangate, agent, `while-open-${fault}-${probeMs}`));
    const bad = open.filter((a) => a.allowed || !a.message.startsWith('Scanner unavailable'));
    if (bad.length > 0) throw new Error(`breaker: ${bad.length} answers while open were not "Scanner unavailable" denials: ${tally(open)}; e.g. ${bad[0].message}`);
    await allClients;

    // 3. Recovery: the scanner comes back; a new image every ~50 ms until the scanner's verdict (bounded: 60 s).
    const back = await o.restore();
    const polls = [];
    let first;
    while (first === undefined && performance.now() - back < 60_000) {
      const sentAt = performance.now();
      const a = await admit(scangate, agent, `recover-${fault}-${probeMs}`);
      polls.push(a);
      if (a.allowed) first = { sentAt: sentAt - back, answeredAt: performance.now() - back, ms: a.ms };
      await sleep(Math.max(0, POLL_EVERY_MS - (performance.now() - sentAt)));
    }
    const stateAfter = metricValue(await scangate.metrics(), 'scangate_scanner_circuit_state');
    return { opened, opening, state, open: summarize(open.map((a) => a.ms)), first, polls, stateAfter };
  } finally {
    agent.destroy();
    await scangate.stop();
    await o.stop();
  }
}

export async function run({ work, tls, quick }) {
  const nBefore = quick ? 3 : 6;
  const nOpen = quick ? 50 : 200;
  const label = { refused: 'connection refused', hang: 'hanging scanner' };
  const rows = [];
  const recoveryRows = [];
  const met = { open: [], recovery: [] };
  for (const fault of ['refused', 'hang']) {
    const b = await before(work, tls, fault, nBefore);
    rows.push([label[fault], `before: breaker off (${nBefore} concurrent)`, '-', tally(b.answers), ms(b.p50, 0), ms(b.p99, 0), ms(b.max, 0), '-']);
    for (const probeMs of [5000, 1000]) {
      const a = await after(work, tls, fault, probeMs, nOpen);
      const okOpen = a.open.p99 < OPEN_LATENCY_TARGET_MS;
      met.open.push(okOpen);
      rows.push([
        label[fault],
        `after: breaker on, probe ${probeMs / 1000} s (${nOpen} while open)`,
        `admission ${a.opened.admission}, ${ms(a.opened.at, 0)} (state metric ${a.state})`,
        `${nOpen} x Scanner unavailable, allowed=false`,
        ms(a.open.p50),
        `**${ms(a.open.p99)}**`,
        ms(a.open.max),
        verdict(okOpen),
      ]);
      const okRec = a.first !== undefined && a.first.answeredAt <= probeMs;
      met.recovery.push(okRec);
      recoveryRows.push([
        label[fault],
        ms(probeMs, 0),
        `${a.polls.length} (${tally(a.polls)})`,
        a.first === undefined ? 'none in 60 s' : ms(a.first.sentAt, 0),
        a.first === undefined ? 'none in 60 s' : `**${ms(a.first.answeredAt, 0)}**`,
        String(a.stateAfter),
        verdict(okRec),
      ]);
    }
  }
  const extra = [
    'Recovery (time from the scanner\'s return):',
    '',
    table(['outage', 'probe interval', 'admissions sent (answers)', 'first verdict admission sent at', 'first verdict answered at', 'state metric after', 'target: <= probe interval'], recoveryRows),
  ].join('\n');
  return {
    title,
    table: table(['outage', 'run', 'opened at', 'answers', 'p50', 'p99', 'max', `target: p99 < ${OPEN_LATENCY_TARGET_MS} ms`], rows),
    extra,
    targets: [
      `p99 of uncached admissions while open < ${OPEN_LATENCY_TARGET_MS} ms: ${verdict(met.open.every(Boolean))}`,
      `a real verdict within one probe interval of the scanner's return: ${verdict(met.recovery.every(Boolean))} (${met.recovery.filter(Boolean).length} of ${met.recovery.length} runs)`,
    ],
    notes: [
      'Default settings but for the breaker\'s (SCANNER_REQUEST_TIMEOUT_MS=5000, SCANNER_RETRY_BUDGET_MS=20000, SCANNER_BREAKER_FAILURES=5, DEADLINE_MARGIN_MS=1000), REJECT_IF_TIMEOUT=true; `?timeout=10s`; a fresh scangate per row; every image new (a cache miss).',
      '"opened at": the admission (counted from the first; 4 clients send one after the other) whose answer was the first "Scanner unavailable", and the time since the first was sent.',
      'While open: admissions one after the other on one warm keep-alive HTTPS connection, times measured by the client.',
      'Recovery: "return" = the simulator\'s first /health answer on the refused port (polled every 50 ms) or the answer to PUT /_sim/faults {} that clears `hang`; then one admission of a new image every ~50 ms until one is allowed (the simulator passes nginx), which includes one scan (the simulator analyses at once here: submission, record, check).',
    ],
  };
}
