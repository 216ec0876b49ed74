/**
 * 2. Scan merging: N concurrent admissions of one unseen image (N = 1, 10, 100, 500, one connection
 * each) while the simulator takes 2 s to analyse it. Counted at the simulator: POST /images, polls
 * (GET /images/{digest}) and policy checks. Target: exactly one scan (one POST) per image. Run against the
 * simulator's v1 API and its v2 API (Anchore Enterprise 5).
 */
import { metricValue, startScangate, startSimulator } from '../lib/env.mjs';
import { load } from '../lib/load.mjs';
import { podReview } from '../lib/review.mjs';
import { ms, table, verdict } from '../lib/stats.mjs';

export const title = '2. Scan merging: concurrent admissions of one unseen image';

const ANALYSIS_MS = 2000;

export async function run({ work, tls }) {
  const rows = [];
  const scans = [];
  for (const api of ['v1', 'v2']) {
    const sim = await startSimulator(work, { analysisDelayMs: ANALYSIS_MS, api });
    const scangate = await startScangate(work, tls, { ANCHORE_CLI_URL: sim.url });
    try {
      for (const n of [1, 10, 100, 500]) {
        const image = `docker.io/library/merge-${api}-${n}:1.0`;
        const before = await scangate.metrics();
        let allowed = 0;
        const r = await load({
          url: `${scangate.url}/validate?timeout=10s`,
          requests: [{ method: 'POST', body: podReview([image]), onResponse: (status, body) => {
            if (status === 200 && JSON.parse(body).response?.allowed === true) allowed += 1;
          } }],
          connections: n,
          amount: n,
        });
        const after = await scangate.metrics();
        const delta = (result) => metricValue(after, 'scangate_cache_lookups_total', { result }) - metricValue(before, 'scangate_cache_lookups_total', { result });
        const stats = (await sim.stats()).byTag[image] ?? { addImage: 0, getImage: 0, check: 0 };
        scans.push(stats.addImage);
        rows.push([
          api,
          String(n),
          `${r.ok} / ${allowed}`,
          `${delta('miss')} / ${delta('shared')} / ${delta('hit')}`,
          `**${stats.addImage}**`,
          String(stats.getImage),
          String(stats.check),
          String(stats.addImage + stats.getImage + stats.check),
          ms(r.max, 0),
        ]);
      }
    } finally {
      await Promise.all([scangate.stop(), sim.stop()]);
    }
  }
  return {
    title,
    table: table(['API', 'N concurrent', 'answered / allowed', 'scangate lookups miss / shared / hit', 'POST /images (scans)', 'polls', 'checks', 'scanner calls', 'slowest answer'], rows),
    targets: [`exactly one scan per image: ${scans.join(', ')}: ${verdict(scans.every((s) => s === 1))}`],
    notes: [
      `Analysis takes ${ANALYSIS_MS} ms from the first POST; each admission has its own connection (N TLS handshakes at once). Late arrivals after the verdict landed count as cache hits.`,
    ],
  };
}
