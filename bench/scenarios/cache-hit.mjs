/**
 * 1. Cache-hit admission throughput and latency over HTTPS keep-alive, scangate vs a bare HTTPS
 * baseline (baseline/server.mjs) in the same run: a Deployment's pod with 1 and 5 containers (every
 * image's verdict cached), at 1, 16 and 64 connections. Target: scangate >= 0.85 x the baseline's
 * throughput; p99 under 5 ms at 16 connections.
 */
import assert from 'node:assert/strict';
import { cpuMs, fetchText, metricValue, startBaseline, startScangate, startSimulator } from '../lib/env.mjs';
import { load } from '../lib/load.mjs';
import { PASSING_IMAGES, podReview } from '../lib/review.mjs';
import { int, ms, ratio, table, verdict } from '../lib/stats.mjs';

export const title = '1. Cache-hit admission: scangate vs a bare HTTPS baseline';

export async function run({ work, tls, quick }) {
  const durationS = quick ? 2 : 5;
  const warmupS = 1;
  const sim = await startSimulator(work);
  const scangate = await startScangate(work, tls, { ANCHORE_CLI_URL: sim.url });
  const baseline = await startBaseline(work, tls);
  const rows = [];
  const findings = [];
  const logRows = [];
  try {
    const bodies = { 1: podReview(PASSING_IMAGES.slice(0, 1)), 5: podReview(PASSING_IMAGES) };
    // Prime the verdict cache (and check what scangate answers).
    const primed = await fetchText(`${scangate.url}/validate?timeout=10s`, { method: 'POST', body: bodies[5], ca: tls.ca });
    assert.deepEqual(primed.json?.response?.allowed, true, `priming: ${primed.text}`);
    const base = await fetchText(`${baseline.url}/validate?timeout=10s`, { method: 'POST', body: bodies[5], ca: tls.ca });
    assert.deepEqual(base.json?.response?.allowed, true, `baseline: ${base.text}`);

    for (const containers of [1, 5]) {
      for (const connections of [1, 16, 64]) {
        const cell = {};
        // Alternate which server goes first, so neither always runs on a "warmer" machine.
        const order = (containers + connections) % 2 === 0 ? ['baseline', 'scangate'] : ['scangate', 'baseline'];
        for (const which of order) {
          const target = which === 'baseline' ? baseline : scangate;
          const url = `${target.url}/validate?timeout=10s`;
          await load({ url, body: bodies[containers], connections, duration: warmupS });
          const before = which === 'scangate' ? await scangate.metrics() : '';
          const cpuBefore = cpuMs(target.pid);
          const r = await load({ url, body: bodies[containers], connections, duration: durationS });
          r.cpuUsPerReq = ((cpuMs(target.pid) - cpuBefore) * 1000) / Math.max(1, r.ok);
          if (which === 'scangate') {
            const after = await scangate.metrics();
            const delta = (result) => metricValue(after, 'scangate_cache_lookups_total', { result }) - metricValue(before, 'scangate_cache_lookups_total', { result });
            assert.equal(delta('miss') + delta('shared'), 0, 'every lookup of the run is a cache hit');
            // Requests still in flight when autocannon stops are judged but not counted by it.
            assert.ok(delta('hit') >= r.ok * containers && delta('hit') <= (r.ok + connections) * containers, 'one cache hit per image per request');
          }
          assert.equal(r.non2xx + r.errors + r.timeouts, 0, `${which} ${containers}c/${connections}: non-2xx ${r.non2xx}, errors ${r.errors}, timeouts ${r.timeouts}`);
          cell[which] = r;
        }
        const s = cell.scangate;
        const b = cell.baseline;
        const throughputRatio = s.rps / b.rps;
        rows.push([
          String(containers),
          String(connections),
          int(b.rps),
          int(s.rps),
          `**${ratio(s.rps, b.rps)}**`,
          `${ms(b.p50, 3)} / ${ms(b.p99, 3)}`,
          `${ms(s.p50, 3)} / ${ms(s.p99, 3)}`,
          `${ratio(s.p50, b.p50)} / ${ratio(s.p99, b.p99)}`,
          `${int(b.cpuUsPerReq)} / ${int(s.cpuUsPerReq)}`,
        ]);
        findings.push({ containers, connections, throughputRatio, p99: s.p99 });
      }
    }
    // What the gap is made of: the framework alone (Koa + @koa/router doing the baseline's work), and
    // the same scangate without its per-request decision log line.
    const quiet = await startScangate(work, tls, { ANCHORE_CLI_URL: sim.url, LOG_LEVEL: 'warn' }, 'scangate-quiet');
    const koaFloor = await startBaseline(work, tls, 'koa-floor.mjs');
    try {
      await fetchText(`${quiet.url}/validate?timeout=10s`, { method: 'POST', body: bodies[1], ca: tls.ca });
      const servers = [
        ['baseline (bare node:https)', baseline],
        ['Koa + @koa/router, same work as the baseline (baseline/koa-floor.mjs)', koaFloor],
        ['scangate, LOG_LEVEL=warn (no decision lines)', quiet],
        ['scangate, LOG_LEVEL=info (as above)', scangate],
      ];
      for (const [label, target] of servers) {
        const url = `${target.url}/validate?timeout=10s`;
        await load({ url, body: bodies[1], connections: 16, duration: warmupS });
        const cpuBefore = cpuMs(target.pid);
        const r = await load({ url, body: bodies[1], connections: 16, duration: durationS });
        const cpu = ((cpuMs(target.pid) - cpuBefore) * 1000) / Math.max(1, r.ok);
        logRows.push([label, int(r.rps), '', `${ms(r.p50, 3)} / ${ms(r.p99, 3)}`, int(cpu)]);
      }
      const base = Number(logRows[0][1].replaceAll(',', ''));
      for (const row of logRows) row[2] = ratio(Number(row[1].replaceAll(',', '')), base);
    } finally {
      await Promise.all([quiet.stop(), koaFloor.stop()]);
    }
  } finally {
    await Promise.all([scangate.stop(), baseline.stop(), sim.stop()]);
  }
  const worst = findings.reduce((a, f) => (f.throughputRatio < a.throughputRatio ? f : a));
  const p99At16 = findings.filter((f) => f.connections === 16).map((f) => f.p99);
  return {
    title,
    table: table(
      ['containers', 'connections', 'baseline req/s', 'scangate req/s', 'throughput scangate/baseline', 'baseline p50 / p99', 'scangate p50 / p99', 'latency ratio p50 / p99', 'CPU µs/req baseline / scangate'],
      rows,
    ),
    targets: [
      `throughput >= 0.85 x baseline: worst ${worst.throughputRatio.toFixed(2)} (${worst.containers} container(s), ${worst.connections} connections): ${verdict(findings.every((f) => f.throughputRatio >= 0.85))}`,
      `p99 < 5 ms at 16 connections: ${p99At16.map((v) => ms(v, 2)).join(', ')}: ${verdict(p99At16.every((v) => v < 5))}`,
    ],
    extra: [
      'Where the gap comes from (1 container, 16 connections, same run):',
      '',
      table(['server', 'req/s', 'vs baseline', 'p50 / p99', 'CPU µs/req'], logRows),
    ].join('\n'),
    notes: [
      `${durationS} s per cell after a ${warmupS} s warm-up, autocannon in the benchmark process; every request answered 200 and every scangate lookup was a cache hit (checked on /metrics).`,
      'scangate logs one JSON decision line per request (LOG_LEVEL=info) to a file; the baseline logs nothing.',
      'CPU µs/req: user+system CPU of the server process (/proc/PID/stat) during the run, per answered request.',
    ],
  };
}
