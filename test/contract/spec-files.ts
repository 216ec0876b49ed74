/**
 * Where the official Anchore API documents are: `test/fixtures/reference/` in the repository (their
 * sources and licences: test/fixtures/SOURCES.md), so a clone alone runs the contract suite. Missing
 * documents are an error, never a skipped test: a contract suite that silently validates nothing would
 * pass forever.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const V1_SPEC_FILE = 'anchore-engine-v1-swagger.yaml';
export const V2_SPEC_FILE = 'anchore-enterprise-v2-subset.yaml';

/** The repository root: the nearest folder above this file whose package.json names scangate. */
export function repoRoot(from: string = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      const parsed = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown };
      if (parsed.name === 'scangate') return dir;
    }
    if (dirname(dir) === dir) throw new Error(`contract tests: no scangate package.json above ${from}`);
  }
}

/** `test/fixtures/reference/` of the repository at `root`; throws, naming it, when a document is missing. */
export function referenceDir(root: string = repoRoot()): string {
  const dir = join(root, 'test', 'fixtures', 'reference');
  const missing = [V1_SPEC_FILE, V2_SPEC_FILE].filter((file) => !existsSync(join(dir, file)));
  if (missing.length > 0) {
    throw new Error(`contract tests: the official Anchore specs ${missing.join(', ')} are missing from ${dir} (see test/fixtures/SOURCES.md)`);
  }
  return dir;
}

export function readSpecText(file: string): string {
  return readFileSync(join(referenceDir(), file), 'utf8');
}
