/**
 * 7. A hostile tenant next to everyone else's cache hits (issue 7, section 2: "no single request may
 * stall other tenants' cache hits past their deadline"; the heap against `--max-old-space-size=384`).
 * scangate runs as the chart runs it (384 MiB old space); a victim sends cache-hit reviews (1 container,
 * 4 connections) while an attacker, over its own connections to the same process, sends in turn:
 *
 *   - nothing (the reference);
 *   - the largest review scangate reads (a valid pod review padded to just under MAX_BODY_BYTES, 4 MiB,
 *     with annotations), back to back on 8 connections: JSON.parse of 4 MiB on the event loop;
 *   - a 64-image review (MAX_IMAGES_PER_REVIEW, every image cached) back to back on 8 connections: the
 *     longest decision and message a review can ask for;
 *   - stalled uploads: 64 connections announcing 4 MiB and sending 1 MiB, then nothing, each reopened
 *     when scangate closes it: they would hold the MAX_INFLIGHT_BODY_BYTES budget until the 15 s request
 *     timeout, but the budget is shared fairly between client addresses (src/http/fair-share.ts), so
 *     the victim's reviews cut an upload of the attacker's address to get in;
 *   - the same from the victim's own address (one NAT or proxy in front of every client): fair sharing
 *     cannot tell them apart, and the victim's 503s are the figure (the limit docs/SECURITY.md states).
 *
 * Reported per phase: the victim's p50 / p99 / max, its answers other than 200 (a 503 is the designed
 * answer while the body budget is spent), the attacker's answers, and scangate's peak heap and RSS.
 */
import https from 'node:https';
import tls from 'node:tls';
import { fetchText, metricValue, rssBytes, sleep, startScangate, startSimulator } from '../lib/env.mjs';
import { load } from '../lib/load.mjs';
import { PASSING_IMAGES, podReview } from '../lib/review.mjs';
import { int, mib, ms, table, verdict } from '../lib/stats.mjs';

export const title = '7. A hostile tenant beside cache hits: event loop and heap under attack';

const MAX_BODY = 4 * 1024 * 1024;
/** The attacker's pod: another address than the victim's (the API server's), 127.0.0.1. */
const ATTACKER = '127.0.0.2';

/** A valid pod review of `images`, padded with annotations to about `bytes`. */
function paddedReview(images, bytes) {
  const review = JSON.parse(podReview(images));
  const annotations = {};
  const chunk = 'x'.repeat(60_000);
  let size = JSON.stringify(review).length;
  for (let i = 0; size + chunk.length + 40 < bytes; i++) {
    annotations[`pad.example.com/a${i}`] = chunk;
    size += chunk.length + 30;
  }
  review.request.object.metadata.annotations = annotations;
  return JSON.stringify(review);
}

/** Sends `body` back to back on `connections` keep-alive connections (from ATTACKER) until `stop`; counts answers. */
function flood(url, ca, body, connections, stop) {
  const agent = new https.Agent({ keepAlive: true, maxSockets: connections, ca, localAddress: ATTACKER });
  const counts = {};
  const loop = async () => {
    while (!stop.stopped) {
      const r = await fetchText(url, { method: 'POST', body, ca, agent, timeoutMs: 30_000 }).catch((e) => ({ status: `error ${e.code ?? e.message}` }));
      counts[r.status] = (counts[r.status] ?? 0) + 1;
    }
  };
  const done = Promise.all(Array.from({ length: connections }, loop)).finally(() => agent.destroy());
  return { counts, done };
}

/**
 * Keeps `connections` TLS connections from `localAddress` open that announce `announced` bytes, send
 * `sent`, then stall; one that scangate closes (refused, or cut to make room for another client) is
 * opened again 50 ms later, as a persistent attacker would, until `close()`.
 */
function stall(port, ca, connections, announced, sent, localAddress) {
  const sockets = new Set();
  const statuses = {};
  let stopped = false;
  const open = () => {
    if (stopped) return;
    const socket = tls.connect({ host: '127.0.0.1', port, localAddress, ca, servername: 'localhost' });
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('data', (d) => {
      const status = /^HTTP\/1\.1 (\d+)/.exec(String(d))?.[1] ?? 'data';
      statuses[status] = (statuses[status] ?? 0) + 1;
    });
    socket.once('close', () => {
      sockets.delete(socket);
      if (!stopped) {
        statuses.reopened = (statuses.reopened ?? 0) + 1;
        setTimeout(open, 50);
      }
    });
    socket.once('secureConnect', () => {
      socket.write(`POST /validate?timeout=10s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${announced}\r\n\r\n`);
      socket.write(Buffer.alloc(sent, 0x20));
    });
  };
  for (let i = 0; i < connections; i++) open();
  return {
    statuses,
    close: () => {
      stopped = true;
      for (const s of sockets) s.destroy();
    },
  };
}

export async function run({ work, tls: certs, quick }) {
  const durationS = quick ? 4 : 10;
  const sim = await startSimulator(work);
  const scangate = await startScangate(work, certs, { ANCHORE_CLI_URL: sim.url }, 'scangate-hostile', ['--max-old-space-size=384']);
  const url = `${scangate.url}/validate?timeout=10s`;
  const victimBody = podReview(PASSING_IMAGES.slice(0, 1));
  const bigBody = paddedReview(PASSING_IMAGES.slice(0, 1), MAX_BODY - 64 * 1024);
  const manyBody = podReview(Array.from({ length: 64 }, (_, i) => PASSING_IMAGES[i % PASSING_IMAGES.length]));
  const rows = [];
  const findings = [];
  /** Phases whose attacker shares the victim's address: reported, not held to "the victim answered". */
  const sameAddress = new Set();
  try {
    for (const body of [victimBody, podReview(PASSING_IMAGES)]) {
      const primed = await fetchText(url, { method: 'POST', body, ca: certs.ca });
      if (primed.json?.response?.allowed !== true) throw new Error(`priming: ${primed.text}`);
    }
    const big = await fetchText(url, { method: 'POST', body: bigBody, ca: certs.ca });
    if (big.status !== 200) throw new Error(`the padded review (${bigBody.length} bytes) is not answered 200: ${big.status} ${big.text.slice(0, 200)}`);
    const phases = [
      ['none', async () => ({ stop: async () => ({}) })],
      [
        `largest review (${(bigBody.length / 2 ** 20).toFixed(2)} MiB) x 8 connections`,
        async () => {
          const stop = { stopped: false };
          const f = flood(url, certs.ca, bigBody, 8, stop);
          return { stop: async () => ((stop.stopped = true), await f.done, f.counts) };
        },
      ],
      [
        '64-image review x 8 connections',
        async () => {
          const stop = { stopped: false };
          const f = flood(url, certs.ca, manyBody, 8, stop);
          return { stop: async () => ((stop.stopped = true), await f.done, f.counts) };
        },
      ],
      [
        `64 stalled uploads from ${ATTACKER}, reopened when closed (4 MiB announced, 1 MiB sent)`,
        async () => {
          const s = stall(Number(new URL(scangate.url).port), certs.ca, 64, MAX_BODY, 1024 * 1024, ATTACKER);
          return { stop: async () => (s.close(), s.statuses) };
        },
      ],
      [
        // Behind one NAT or proxy every client has one address, and fair sharing cannot tell them apart.
        '64 stalled uploads from the victim\'s own address, 127.0.0.1',
        async () => {
          sameAddress.add('64 stalled uploads from the victim\'s own address, 127.0.0.1');
          const s = stall(Number(new URL(scangate.url).port), certs.ca, 64, MAX_BODY, 1024 * 1024, '127.0.0.1');
          return { stop: async () => (s.close(), s.statuses) };
        },
      ],
    ];
    for (const [label, start] of phases) {
      const attack = await start();
      let peakHeap = 0;
      let peakRss = 0;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          peakRss = Math.max(peakRss, rssBytes(scangate.pid));
          const m = await fetchText(`${scangate.url}/metrics`, { ca: certs.ca }).catch(() => undefined);
          if (m !== undefined) peakHeap = Math.max(peakHeap, metricValue(m.text, 'scangate_nodejs_heap_size_used_bytes'));
          await sleep(250);
        }
      })();
      await sleep(500);
      const victim = await load({ url, body: victimBody, connections: 4, duration: durationS });
      const attacker = await attack.stop();
      sampling = false;
      await sampler;
      const other = Object.entries(victim.statuses).filter(([s]) => s !== '200');
      rows.push([
        label,
        int(victim.ok),
        `${ms(victim.p50, 2)} / ${ms(victim.p99, 2)} / ${ms(victim.max, 1)}`,
        other.length === 0 && victim.errors + victim.timeouts === 0 ? 'none' : `${other.map(([s, n]) => `${n} x ${s}`).join(', ')}${victim.errors ? `, ${victim.errors} errors` : ''}`,
        Object.entries(attacker).map(([s, n]) => `${n} x ${s}`).join(', ') || '—',
        mib(peakHeap),
        mib(peakRss),
      ]);
      findings.push({ label, max: victim.max, p99: victim.p99, peakHeap, refused: victim.ok === 0 || other.length > 0 });
      // Let the stalled connections' budget come back before the next phase.
      await sleep(1000);
    }
  } finally {
    await Promise.all([scangate.stop(), sim.stop()]);
  }
  // A phase whose victim was refused (503: the body budget spent) is reported, not timed.
  const answered = findings.filter((f) => !f.refused);
  const worstMax = Math.max(...answered.map((f) => f.max));
  const refused = findings.filter((f) => f.refused && !sameAddress.has(f.label)).map((f) => f.label);
  const worstHeap = Math.max(...findings.map((f) => f.peakHeap));
  return {
    title,
    table: table(['attack', 'victim answers', 'victim p50 / p99 / max', 'victim answers not 200', "attacker's answers", 'peak heap used', 'peak RSS'], rows),
    targets: [
      `no victim cache hit past its deadline (9 s at timeout=10s), where the victim was answered: worst ${ms(worstMax, 1)}: ${verdict(worstMax < 9000)}`,
      `the victim answered under every attack from another address: ${refused.length === 0 ? 'yes' : `no, refused (503) during: ${refused.join('; ')}`}: ${verdict(refused.length === 0)}`,
      `heap within --max-old-space-size=384 under every attack: peak ${mib(worstHeap)}: ${verdict(worstHeap < 384 * 2 ** 20)}`,
    ],
    notes: [
      `${durationS} s of victim load per phase (autocannon, 4 connections, 1-container cache-hit review), the attack running from 0.5 s before it to its end; heap (scangate_nodejs_heap_size_used_bytes on /metrics) and RSS sampled every 250 ms.`,
      `the attacker connects from ${ATTACKER} and the victim from 127.0.0.1 (two clients to scangate), except in the last phase.`,
      'scangate started with --max-old-space-size=384 as in the chart, default settings otherwise (MAX_BODY_BYTES 4 MiB, MAX_INFLIGHT_BODY_BYTES 32 MiB, MAX_CONNECTIONS 512, request timeout 15 s).',
    ],
  };
}
