/**
 * Where the official Anchore API documents are: `shared/reference/` beside the repository (CI puts a
 * read-only copy of shared/ next to its clone) or beside one of its parent folders (a git worktree
 * under `wt/NAME`). `SCANGATE_SHARED_DIR` overrides the search. Missing documents are an error,
 * never a skipped test: a contract suite that silently validates nothing would pass forever.
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

/** `shared/reference/` holding both specs; throws, listing every folder tried, when there is none. */
export function referenceDir(env: NodeJS.ProcessEnv = process.env, root: string = repoRoot()): string {
  const tried: string[] = [];
  const holdsSpecs = (dir: string): boolean => {
    tried.push(dir);
    return existsSync(join(dir, V1_SPEC_FILE)) && existsSync(join(dir, V2_SPEC_FILE));
  };
  const override = env['SCANGATE_SHARED_DIR'];
  if (override !== undefined && override !== '') {
    const dir = join(resolve(override), 'reference');
    if (holdsSpecs(dir)) return dir;
    throw new Error(`contract tests: SCANGATE_SHARED_DIR=${override} has no reference/${V1_SPEC_FILE} and reference/${V2_SPEC_FILE}`);
  }
  for (let dir = dirname(root); ; dir = dirname(dir)) {
    const candidate = join(dir, 'shared', 'reference');
    if (holdsSpecs(candidate)) return candidate;
    if (dirname(dir) === dir) break;
  }
  throw new Error(
    `contract tests: the official Anchore specs (${V1_SPEC_FILE}, ${V2_SPEC_FILE}) were not found; ` +
      `tried ${tried.join(', ')}. Put shared/ beside the repository or set SCANGATE_SHARED_DIR.`,
  );
}

export function readSpecText(file: string): string {
  return readFileSync(join(referenceDir(), file), 'utf8');
}
