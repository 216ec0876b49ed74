/**
 * 8. Starvation by one tenant (issue 15, invariant I2: "nothing one tenant sends makes another tenant's
 * admissions fail, or wait more than a second longer than they would without it"). In a cluster every
 * review comes from the API server: here the victim and the attacker both connect from 127.0.0.1, and
 * only the namespace inside the review tells them apart. The scanner takes 20 s to analyse a new image,
 * so every attacking review waits for its scans until its deadline. The victim (namespace `victim`)
 * sends cache-hit reviews on 4 connections while the attacker (namespace `tenant`), in turn:
 *
 *   - nothing (the reference);
 *   - 8 connections of ~4 MiB reviews, each naming a new image: the bodies have fully arrived and wait
 *     for a slow scan (before the body budget was released at parse, eight of them held all of
 *     MAX_INFLIGHT_BODY_BYTES and every other review got 503);
 *   - 16 connections of reviews naming 10 new images each: the scan slots (MAX_SCANS_PER_NAMESPACE) and
 *     the waiting requests (twice that) of one namespace;
 *   - the same at `/mutate` with digest pinning on (it had no per-request cap nor body budget);
 *   - 64 connections of reviews naming one slow image: requests joining one scan, each holding a
 *     connection until its deadline.
 *
 * Reported per phase: the victim's p50 / p99 / max and answers other than 200, the attacker's answers.
 * Target: the victim's max within 1 s of the reference phase's, and no victim answer other than 200.
 */
import https from 'node:https';
import { fetchText, sleep, startScangate, startSimulator } from '../lib/env.mjs';
import { load } from '../lib/load.mjs';
import { PASSING_IMAGES, podReview } from '../lib/review.mjs';
import { int, ms, table, verdict } from '../lib/stats.mjs';

export const title = '8. Starvation by one tenant: the other tenants\' cache hits while it attacks (all from the API server\'s address)';

let serial = 0;
const fresh = (n) => Array.from({ length: n }, () => `docker.io/tenant/slow-${process.pid}-${++serial}:1`);

/** A tenant's pod review of `images`, padded with annotations to about `bytes`. */
function tenantReview(images, bytes = 0) {
  const review = JSON.parse(podReview(images, `t-${++serial}-7c1e-4c2b-9d1a-5e6f7a8b9c0d`, 'tenant'));
  if (bytes > 0) {
    const annotations = {};
    const chunk = '<'.repeat(60_000);
    let size = JSON.stringify(review).length;
    for (let i = 0; size + 6 * chunk.length + 40 < bytes; i++) {
      annotations[`pad.example.com/a${i}`] = chunk;
      size += 6 * chunk.length + 30;
    }
    review.request.object.metadata.annotations = annotations;
  }
  // As the API server writes it: `<` as \u003c (six bytes for one).
  return JSON.stringify(review).replace(/</g, '\\u003c');
}

/**
 * `count()` bodies' worth of tenant reviews without building each one: the review of `n` placeholder
 * images (padded to `bytes`) made once, each placeholder replaced by a new image per body, so the
 * attacker's own CPU (in this process, beside the victim's load generator) stays small.
 */
function reviewsOf(n, bytes = 0) {
  const placeholders = Array.from({ length: n }, (_, i) => `docker.io/tenant/placeholder-${i}:1`);
  const text = tenantReview(placeholders, bytes);
  return () => {
    let body = text;
    for (const [i, image] of fresh(n).entries()) body = body.replace(placeholders[i], image);
    return body;
  };
}

/** Sends a new body from `next()` back to back on `connections` keep-alive connections until `stop`; counts answers. */
function flood(url, ca, next, connections, stop) {
  const agent = new https.Agent({ keepAlive: true, maxSockets: connections, ca });
  const counts = {};
  const loop = async () => {
    while (!stop.stopped) {
      const r = await fetchText(url, { method: 'POST', body: next(), ca, agent, timeoutMs: 30_000 }).catch((e) => ({ status: `error ${e.code ?? e.message}` }));
      const key = r.status === 200 ? (r.json?.response?.allowed === true ? '200 allowed' : '200 denied') : String(r.status);
      counts[key] = (counts[key] ?? 0) + 1;
    }
  };
  const done = Promise.all(Array.from({ length: connections }, loop)).finally(() => agent.destroy());
  return { stop: async () => ((stop.stopped = true), await done, counts) };
}

export async function run({ work, tls: certs, quick }) {
  const durationS = quick ? 4 : 10;
  const sim = await startSimulator(work);
  const scangate = await startScangate(work, certs, { ANCHORE_CLI_URL: sim.url, PIN_DIGESTS: 'true' }, 'scangate-starvation', ['--max-old-space-size=384']);
  const validate = `${scangate.url}/validate?timeout=10s`;
  const mutate = `${scangate.url}/mutate?timeout=10s`;
  const victimBody = podReview(PASSING_IMAGES.slice(0, 1), '0f0e0d0c-7c1e-4c2b-9d1a-5e6f7a8b9c0d', 'victim');
  const rows = [];
  const findings = [];
  try {
    const primed = await fetchText(validate, { method: 'POST', body: victimBody, ca: certs.ca });
    if (primed.json?.response?.allowed !== true) throw new Error(`priming: ${primed.text}`);
    await sim.setAnalysisDelayMs(20_000);
    const slowOne = tenantReview(fresh(1));
    const phases = [
      ['none', () => ({ stop: async () => ({}) })],
      ['8 x ~4 MiB reviews (as the API server encodes them), each a new slow image', () => flood(validate, certs.ca, reviewsOf(1, 4 * 1024 * 1024 - 64 * 1024), 8, { stopped: false })],
      ['16 connections of reviews naming 10 new slow images', () => flood(validate, certs.ca, reviewsOf(10), 16, { stopped: false })],
      ['16 connections of /mutate reviews naming 10 new slow images (pinning)', () => flood(mutate, certs.ca, reviewsOf(10), 16, { stopped: false })],
      ['64 connections of reviews joining one slow scan', () => flood(validate, certs.ca, () => slowOne, 64, { stopped: false })],
    ];
    for (const [label, start] of phases) {
      const attack = start();
      await sleep(1000);
      const victim = await load({ url: validate, body: victimBody, connections: 4, duration: durationS });
      const attacker = await attack.stop();
      const other = Object.entries(victim.statuses).filter(([s]) => s !== '200');
      rows.push([
        label,
        int(victim.ok),
        `${ms(victim.p50, 2)} / ${ms(victim.p99, 2)} / ${ms(victim.max, 1)}`,
        other.length === 0 && victim.errors + victim.timeouts === 0 ? 'none' : `${other.map(([s, n]) => `${n} x ${s}`).join(', ')}${victim.errors ? `, ${victim.errors} errors` : ''}${victim.timeouts ? `, ${victim.timeouts} timeouts` : ''}`,
        Object.entries(attacker).map(([s, n]) => `${n} x ${s}`).join(', ') || '—',
      ]);
      findings.push({ label, max: victim.max, refused: victim.ok === 0 || other.length > 0 || victim.errors + victim.timeouts > 0 });
      await sleep(1000);
    }
  } finally {
    await Promise.all([scangate.stop(), sim.stop()]);
  }
  const reference = findings[0]?.max ?? 0;
  const attacked = findings.slice(1);
  const worst = Math.max(...attacked.map((f) => f.max));
  const refused = attacked.filter((f) => f.refused).map((f) => f.label);
  return {
    title,
    table: table(['attack (namespace tenant)', 'victim answers', 'victim p50 / p99 / max', 'victim answers not 200', "attacker's answers"], rows),
    targets: [
      `the victim's slowest answer within 1 s of the reference's (${ms(reference, 1)}): worst ${ms(worst, 1)}: ${verdict(worst <= reference + 1000)}`,
      `every victim review answered 200: ${refused.length === 0 ? 'yes' : `no, during: ${refused.join('; ')}`}: ${verdict(refused.length === 0)}`,
    ],
    notes: [
      `${durationS} s of victim load per phase (4 connections, 1-container cache-hit review, namespace victim), the attack running from 1 s before it to its end; the simulator analyses each new image in 20 s.`,
      'victim and attacker both connect from 127.0.0.1, as every review comes from the API server in a cluster.',
      'scangate with --max-old-space-size=384 as in the chart, PIN_DIGESTS=true, default settings otherwise (MAX_SCANS_PER_NAMESPACE 20, MAX_NEW_SCANS_PER_REQUEST 10, MAX_BODY_BYTES 40 MiB, MAX_INFLIGHT_BODY_BYTES 96 MiB).',
    ],
  };
}
