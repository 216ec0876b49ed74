/**
 * The scanner simulator is a developer tool (simulator/, its own package): neither the webhook's build
 * output (dist/src) nor what the production image takes from the repository (the Dockerfile's build
 * context and COPY lines, scripts/build-image.sh's APP_FILES) may hold any of it. Runs on the compiled
 * tree (`make build`), as every suite does.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

/** The repository root, from this compiled file (dist/test/unit/image-contents.test.js). */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DIST_SRC = join(ROOT, 'dist/src');

/** What gives simulator code away: its package name, its command, its admin routes, its name. */
const SIMULATOR_MARK = /simulat|scanner-sim|\/_sim\//i;

function filesUnder(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name));
}

/** Every file under `path` whose repository path or content carries simulator code. */
function simulatorTraces(path: string): string[] {
  const found: string[] = [];
  for (const file of filesUnder(path)) {
    const name = relative(ROOT, file);
    if (SIMULATOR_MARK.test(name)) found.push(name);
    else if (SIMULATOR_MARK.test(readFileSync(file, 'utf8'))) found.push(`${name} (content)`);
  }
  return found;
}

describe('the scanner simulator stays out of the product', () => {
  it('the test can see what it guards: the simulator is built and marked, the webhook is built', () => {
    // Without these, the checks below could pass on an empty or unbuilt tree.
    assert.ok(existsSync(join(DIST_SRC, 'main.js')), 'dist/src/main.js: run make build');
    assert.ok(existsSync(join(ROOT, 'simulator/dist/main.js')), 'simulator/dist/main.js: run make build');
    assert.ok(simulatorTraces(join(ROOT, 'simulator/dist')).length > 0, 'the marks find the simulator build itself');
  });

  it('dist/src (the webhook build) holds no simulator file, import or route', () => {
    assert.deepEqual(simulatorTraces(DIST_SRC), []);
  });

  it("build-image.sh's /app files hold no simulator code", () => {
    const listed = execFileSync(join(ROOT, 'scripts/build-image.sh'), ['--app-files'], { encoding: 'utf8' }).trim().split('\n');
    assert.ok(listed.includes('dist/src') && listed.includes('package.json'), `unexpected list: ${listed.join(', ')}`);
    for (const path of listed) {
      assert.doesNotMatch(path, SIMULATOR_MARK);
      // The manifest names the simulator as a workspace and dev dependency, neither installed in the
      // image (build-image.sh drops both): its production fields are checked below.
      if (path === 'package.json') continue;
      assert.deepEqual(simulatorTraces(join(ROOT, path)), [], path);
    }
  });

  it("the Dockerfile's build context and copies leave the simulator out", () => {
    const allowed = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('!'));
    assert.ok(allowed.includes('!src/'), `.dockerignore lets in: ${allowed.join(' ')}`);
    assert.deepEqual(allowed.filter((line) => SIMULATOR_MARK.test(line)), []);
    const copies = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
      .split('\n')
      .filter((line) => /^\s*(COPY|ADD)\s/i.test(line));
    assert.ok(copies.some((line) => line.includes('dist/src')), 'the Dockerfile copies dist/src');
    assert.deepEqual(copies.filter((line) => SIMULATOR_MARK.test(line)), []);
  });

  it('the simulator is no production dependency of the webhook package', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
      files?: string[];
      bin?: Record<string, string>;
    };
    assert.deepEqual(Object.keys(pkg.dependencies ?? {}).filter((name) => SIMULATOR_MARK.test(name)), []);
    assert.deepEqual((pkg.files ?? []).filter((path) => SIMULATOR_MARK.test(path)), []);
    assert.deepEqual(Object.values(pkg.bin ?? {}).filter((path) => SIMULATOR_MARK.test(path)), []);
  });
});
