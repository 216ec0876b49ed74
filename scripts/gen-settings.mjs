#!/usr/bin/env node
// Rewrites the generated parts of README.md (the settings table) and scripts/deploy.sh (CONFIG_KEYS and
// the chart value of each) from the settings table, src/settings.ts, as compiled into dist/ (`make
// build` first; `make settings` does both). test/unit/settings-table.test.ts fails when they disagree.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { settingsMarkdown, deployShellBlock, GENERATED } = await import(join(root, 'dist/src/settings.js'));

let changed = 0;
for (const [file, block, [begin, end]] of [
  ['README.md', settingsMarkdown(), GENERATED.readme],
  ['scripts/deploy.sh', deployShellBlock(), GENERATED.deploy],
]) {
  const path = join(root, file);
  const text = readFileSync(path, 'utf8');
  const from = text.indexOf(begin);
  const to = text.indexOf(end);
  if (from < 0 || to < from) throw new Error(`${file}: markers ${begin} ... ${end} not found`);
  const next = `${text.slice(0, from + begin.length)}\n${block}\n${text.slice(to)}`;
  if (next !== text) {
    writeFileSync(path, next);
    changed += 1;
    process.stdout.write(`${file}: rewritten\n`);
  }
}
if (changed === 0) process.stdout.write('README.md and scripts/deploy.sh already agree with src/settings.ts\n');
