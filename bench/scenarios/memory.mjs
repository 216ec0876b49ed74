/**
 * 5. Memory: scangate's RSS with 10k and 100k cached verdicts (CACHE_MAX_ENTRIES raised to 200k; the
 * default is 10k). The cache is filled the real way: admissions of pods with 5 unseen images each,
 * scanned against the simulator. Target: under 150 MB at 100k.
 */
import { collectGarbage, freePort, metricValue, rssBytes, sleep, startScangate, startSimulator } from '../lib/env.mjs';
import { load } from '../lib/load.mjs';
import { podReview } from '../lib/review.mjs';
import { int, mib, table, verdict } from '../lib/stats.mjs';

export const title = '5. Memory with cached verdicts';

export async function run({ work, tls, quick }) {
  const steps = quick ? [1_000, 10_000] : [10_000, 100_000];
  const sim = await startSimulator(work);
  const inspectPort = await freePort();
  const scangate = await startScangate(work, tls, { ANCHORE_CLI_URL: sim.url, CACHE_MAX_ENTRIES: '200000', CACHE_MAX_BYTES: String(512 * 1024 * 1024), MAX_CONCURRENT_SCANS: '1000' }, 'scangate-memory', [
    `--inspect=127.0.0.1:${inspectPort}`,
  ]);
  const rows = [];
  let last = { rss: NaN, rssGc: NaN };
  try {
    let counter = 0;
    const measure = async (label, entriesWanted) => {
      await sleep(2000);
      const m = await scangate.metrics();
      const row = { entries: metricValue(m, 'scangate_cache_entries'), rss: rssBytes(scangate.pid), heap: metricValue(m, 'scangate_nodejs_heap_size_used_bytes') };
      await collectGarbage(inspectPort);
      await sleep(1000);
      row.rssGc = rssBytes(scangate.pid);
      row.heapGc = metricValue(await scangate.metrics(), 'scangate_nodejs_heap_size_used_bytes');
      if (entriesWanted !== undefined && row.entries !== entriesWanted) throw new Error(`memory: ${row.entries} verdicts cached, expected ${entriesWanted}`);
      rows.push([label, int(row.entries), mib(row.rss), mib(row.heap), `**${mib(row.rssGc)}**`, mib(row.heapGc)]);
      return row;
    };
    const fill = async (verdicts) => {
      const started = Date.now();
      const r = await load({
        url: `${scangate.url}/validate?timeout=10s`,
        requests: [{ method: 'POST', setupRequest: (req) => ({ ...req, body: podReview([0, 1, 2, 3, 4].map(() => `docker.io/library/mem-${counter++}:1`)) }) }],
        connections: 16,
        amount: verdicts / 5,
      });
      if (r.ok !== verdicts / 5) throw new Error(`memory: only ${r.ok} of ${verdicts / 5} admissions answered`);
      return (Date.now() - started) / 1000;
    };
    // A few hundred requests first, so the baseline figure includes a warm process.
    await fill(500);
    const start = await measure('after start-up and 100 admissions', 500);
    let have = 500;
    for (const target of steps) {
      const seconds = await fill(target - have);
      have = target;
      last = await measure(`${int(target)} verdicts (filled in ${seconds.toFixed(0)} s)`, target);
    }
    const per1k = (a, b) => mib(((a - b) / (have - 500)) * 1000);
    rows.push(['per 1k verdicts above start', '', per1k(last.rss, start.rss), per1k(last.heap, start.heap), per1k(last.rssGc, start.rssGc), per1k(last.heapGc, start.heapGc)]);
  } finally {
    await Promise.all([scangate.stop(), sim.stop()]);
  }
  const final = steps[steps.length - 1];
  return {
    title,
    table: table(['state', 'cached verdicts', 'RSS 2 s after the fill', 'V8 heap used', 'RSS after a full GC', 'V8 heap used after GC'], rows),
    targets: [
      `RSS < 150 MB at ${int(final)} verdicts, after a full GC: ${mib(last.rssGc)} = ${(last.rssGc / 1e6).toFixed(0)} MB: ${verdict(last.rssGc < 150e6)}`,
      `the same right after the burst that filled the cache (garbage not yet collected): ${(last.rss / 1e6).toFixed(0)} MB: ${verdict(last.rss < 150e6)}`,
    ],
    notes: [
      'RSS from /proc/PID/status (VmRSS); heap from scangate_nodejs_heap_size_used_bytes. Full GC through the inspector protocol (HeapProfiler.collectGarbage; scangate runs with --inspect for this scenario only).',
      `Filled as fast as scangate takes it: 16 connections, 5 unseen images per admission (CACHE_MAX_ENTRIES=200000, CACHE_MAX_BYTES=512 MiB, MAX_CONCURRENT_SCANS=1000; the defaults are 10000 entries and 32 MiB).`,
    ],
  };
}
