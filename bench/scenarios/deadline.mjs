/**
 * 4. Deadline adherence with a hanging scanner (accepts every call, never answers): 16 concurrent
 * admissions of unseen images for each API-server timeout (1, 2, 5, 10 s). Every answer must land
 * before the timeout minus DEADLINE_MARGIN_MS (default 1 s; at most half of a short timeout).
 */
import { startScangate, startSimulator } from '../lib/env.mjs';
import { load } from '../lib/load.mjs';
import { podReview } from '../lib/review.mjs';
import { ms, table, verdict } from '../lib/stats.mjs';

export const title = '4. Deadline adherence with a hanging scanner';

const MARGIN_MS = 1000;
const N = 16;

export async function run({ work, tls }) {
  const sim = await startSimulator(work);
  await sim.setFaults({ hang: true });
  const rows = [];
  const met = [];
  let worstSlack = Infinity;
  try {
    for (const timeoutS of [1, 2, 5, 10]) {
      // A fresh scangate each time: hanging scans of the previous round must not fill MAX_CONCURRENT_SCANS.
      const scangate = await startScangate(work, tls, { ANCHORE_CLI_URL: sim.url }, `scangate-deadline-${timeoutS}`);
      try {
        let counter = 0;
        const messages = {};
        const r = await load({
          url: `${scangate.url}/validate?timeout=${timeoutS}s`,
          requests: [
            {
              method: 'POST',
              setupRequest: (req) => ({ ...req, body: podReview([`docker.io/library/hang-${timeoutS}-${counter++}:1`]) }),
              onResponse: (status, body) => {
                const m = status === 200 ? (JSON.parse(body).response?.status?.message ?? 'allowed').split(':')[0] : `HTTP ${status}`;
                messages[m] = (messages[m] ?? 0) + 1;
              },
            },
          ],
          connections: N,
          amount: N,
        });
        const timeoutMs = timeoutS * 1000;
        const budgetMs = Math.max(timeoutMs - MARGIN_MS, Math.floor(timeoutMs / 2));
        const slack = timeoutMs - r.max;
        worstSlack = Math.min(worstSlack, slack);
        const ok = r.ok === N && r.max < timeoutMs;
        met.push(ok);
        rows.push([
          `${timeoutS} s`,
          ms(budgetMs, 0),
          `${r.ok} / ${N}`,
          Object.entries(messages).map(([m, c]) => `${c} x ${m}`).join(', '),
          ms(r.p50, 0),
          `**${ms(r.max, 0)}**`,
          ms(r.max - budgetMs, 0),
          ms(slack, 0),
          verdict(ok),
        ]);
      } finally {
        await scangate.stop();
      }
    }
  } finally {
    await sim.stop();
  }
  return {
    title,
    table: table(['API server timeout', 'budget (timeout - margin)', 'answered', 'answers', 'p50', 'max answer', 'max - budget', 'slack to the timeout', 'target'], rows),
    targets: [`every answer before the API server's timeout: ${verdict(met.every(Boolean))}; smallest slack ${ms(worstSlack, 0)}`],
    notes: ['Default settings (DEADLINE_MARGIN_MS=1000, SCANNER_REQUEST_TIMEOUT_MS=5000, REJECT_IF_TIMEOUT=true); times measured by the client, TLS handshake included.'],
  };
}
