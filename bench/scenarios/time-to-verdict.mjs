/**
 * 3. Time to verdict: the simulator's analysis takes T (0.5, 2, 8 s, and 3.5 s as an extra point);
 * scangate's answer comes at T + overhead (submission, polling back-off, policy check). Three unseen
 * images per T, concurrently, once against the simulator's v1 API and once against its v2 API (Anchore
 * Enterprise 5; scangate detects it from the bare URL). Target: overhead under 10 % of T + 300 ms.
 */
import https from 'node:https';
import { fetchText, startScangate, startSimulator } from '../lib/env.mjs';
import { podReview } from '../lib/review.mjs';
import { ms, table, verdict } from '../lib/stats.mjs';

export const title = '3. Time to verdict vs the scanner\'s analysis time';

export async function run({ work, tls }) {
  const rows = [];
  const met = [];
  for (const api of ['v1', 'v2']) {
    const sim = await startSimulator(work, { api });
    const scangate = await startScangate(work, tls, { ANCHORE_CLI_URL: sim.url });
    const agent = new https.Agent({ keepAlive: true, ca: tls.ca });
    try {
      for (const t of [500, 2000, 3500, 8000]) {
        await sim.setAnalysisDelayMs(t);
        // Warm the connections so TLS handshakes are not counted.
        await Promise.all([1, 2, 3].map(() => fetchText(`${scangate.url}/healthz`, { agent })));
        const answers = await Promise.all(
          [1, 2, 3].map(async (k) => {
            const r = await fetchText(`${scangate.url}/validate?timeout=30s`, { method: 'POST', body: podReview([`docker.io/library/ttv-${api}-${t}-${k}:1`]), agent });
            if (r.json?.response?.allowed !== true) throw new Error(`time-to-verdict: no verdict for ${api} T=${t}: ${r.text}`);
            return r.ms;
          }),
        );
        const overheads = answers.map((a) => a - t).sort((a, b) => a - b);
        const allowance = 0.1 * t + 300;
        const worst = overheads[overheads.length - 1];
        met.push(worst < allowance);
        rows.push([
          api,
          ms(t, 0),
          answers.map((a) => ms(a, 0)).join(', '),
          `${ms(overheads[1], 0)} (${((overheads[1] / t) * 100).toFixed(0)} % of T)`,
          ms(worst, 0),
          ms(allowance, 0),
          verdict(worst < allowance),
        ]);
      }
      const stats = await sim.stats();
      if (stats.byApi[api === 'v1' ? 'v2' : 'v1'] !== 0) throw new Error(`time-to-verdict: scangate spoke the wrong API to the ${api} simulator`);
    } finally {
      agent.destroy();
      await Promise.all([scangate.stop(), sim.stop()]);
    }
  }
  return {
    title,
    table: table(['API', 'analysis time T', 'answers (3 images)', 'median overhead', 'worst overhead', 'allowed: 10 % T + 300 ms', 'target'], rows),
    targets: [`overhead < 10 % of T + 300 ms: ${verdict(met.every(Boolean))}`],
    notes: [
      'Default polling settings (SCANNER_POLL_INITIAL_MS=250, SCANNER_POLL_MAX_MS=2000; the schedule is in src/scanner/anchore-client.ts): the overhead is the wait for the first poll after the analysis ends, plus the policy check.',
      'T = 3.5 s is not in the issue\'s list: an extra point between 2 and 8 s. ?timeout=30s so the deadline never cuts in.',
      'v1: ANCHORE_CLI_URL=<sim>/v1; v2: the simulator with --api v2 and ANCHORE_CLI_URL=<sim> (bare), default ANCHORE_API_VERSION=auto, so the v2 rows include nothing of the detection (done at start).',
    ],
  };
}
