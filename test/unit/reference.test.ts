import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseImageReference } from '../../src/reference/parse-reference.js';

interface ConformanceCase {
  input: string;
  valid: boolean;
  domain?: string;
  path?: string;
  name?: string;
  tag?: string;
  digest?: string;
  string?: string;
  familiar?: string;
}

// In the repository (sources: test/fixtures/SOURCES.md); this file runs from dist/test/unit.
const conformanceFile = new URL('../../../test/fixtures/conformance/image-references.json', import.meta.url);
const cases = (JSON.parse(readFileSync(conformanceFile, 'utf8')) as { cases: ConformanceCase[] }).cases;

test('conformance: a port-like tag on a Docker Hub name is a tag (192.168.0.1:80)', () => {
  const result = parseImageReference('192.168.0.1:80');
  assert.ok(result.valid);
  assert.equal(result.reference.path, 'library/192.168.0.1');
  assert.equal(result.reference.tag, '80');
});

test('a first component that is not a valid host falls back into the path, with no domain (as in Go)', () => {
  const result = parseImageReference('a_0.0/a:1');
  assert.ok(result.valid);
  assert.deepEqual(
    { domain: result.reference.domain, path: result.reference.path, name: result.reference.name, canonical: result.reference.canonical },
    { domain: '', path: 'a_0.0/a', name: 'a_0.0/a', canonical: 'a_0.0/a:1' },
  );
});

test('conformance: agrees with distribution/reference on all of its own test cases', () => {
  assert.ok(cases.length >= 70, `expected the full table, got ${cases.length} cases`);
  for (const c of cases) {
    const result = parseImageReference(c.input);
    assert.equal(result.valid, c.valid, `validity of ${JSON.stringify(c.input)}`);
    if (!result.valid) continue;
    const r = result.reference;
    if (c.domain !== undefined) assert.equal(r.domain, c.domain, `domain of ${c.input}`);
    if (c.path !== undefined) assert.equal(r.path, c.path, `path of ${c.input}`);
    if (c.name !== undefined) assert.equal(r.name, c.name, `name of ${c.input}`);
    // Fields are present only where the upstream test asserts them.
    if ('tag' in c) assert.equal(r.tag, c.tag, `tag of ${c.input}`);
    if ('digest' in c) assert.equal(r.digest, c.digest, `digest of ${c.input}`);
    if (c.string !== undefined) assert.equal(r.canonical, c.string, `string of ${c.input}`);
    if (c.familiar !== undefined) assert.equal(r.familiar, c.familiar, `familiar of ${c.input}`);
  }
});

const digest = `sha256:${'a'.repeat(64)}`;
const table: Array<[string, { domain: string; path: string; tag?: string; digest?: string; canonical: string; impliedLatest: boolean }]> = [
  ['nginx', { domain: 'docker.io', path: 'library/nginx', canonical: 'docker.io/library/nginx:latest', impliedLatest: true }],
  ['nginx:1.25.3', { domain: 'docker.io', path: 'library/nginx', tag: '1.25.3', canonical: 'docker.io/library/nginx:1.25.3', impliedLatest: false }],
  ['bitnami/nginx', { domain: 'docker.io', path: 'bitnami/nginx', canonical: 'docker.io/bitnami/nginx:latest', impliedLatest: true }],
  ['index.docker.io/nginx:1', { domain: 'docker.io', path: 'library/nginx', tag: '1', canonical: 'docker.io/library/nginx:1', impliedLatest: false }],
  ['localhost:5000/a', { domain: 'localhost:5000', path: 'a', canonical: 'localhost:5000/a:latest', impliedLatest: true }],
  ['localhost/a:1', { domain: 'localhost', path: 'a', tag: '1', canonical: 'localhost/a:1', impliedLatest: false }],
  [`host.io/a/b:tag@${digest}`, { domain: 'host.io', path: 'a/b', tag: 'tag', digest, canonical: `host.io/a/b:tag@${digest}`, impliedLatest: false }],
  [`nginx@${digest}`, { domain: 'docker.io', path: 'library/nginx', digest, canonical: `docker.io/library/nginx@${digest}`, impliedLatest: false }],
  ['Registry.Example.com:443/team/app:v2', { domain: 'Registry.Example.com:443', path: 'team/app', tag: 'v2', canonical: 'Registry.Example.com:443/team/app:v2', impliedLatest: false }],
  ['[::1]:5000/app:1', { domain: '[::1]:5000', path: 'app', tag: '1', canonical: '[::1]:5000/app:1', impliedLatest: false }],
];

for (const [input, want] of table) {
  test(`parses ${input}`, () => {
    const result = parseImageReference(input);
    assert.ok(result.valid, `expected ${input} to be valid`);
    const r = result.reference;
    assert.deepEqual(
      { domain: r.domain, path: r.path, tag: r.tag, digest: r.digest, canonical: r.canonical, impliedLatest: r.impliedLatest, name: r.name },
      { tag: undefined, digest: undefined, ...want, name: `${want.domain}/${want.path}` },
    );
  });
}

const invalid: Array<[string, RegExp]> = [
  ['', /empty/],
  ['Nginx', /lowercase/],
  ['docker.io/Library/nginx', /lowercase/],
  ['nginx@sha256:abc', /invalid reference format/],
  [`nginx@sha256:${'A'.repeat(64)}`, /digest/],
  [`nginx@md5:${'a'.repeat(32)}`, /unsupported digest algorithm/],
  [`nginx@sha256:${'a'.repeat(63)}`, /invalid reference format|digest/],
  ['a'.repeat(64), /64-byte hexadecimal/],
  [`${'a/'.repeat(127)}abc`, /more than 255 characters/],
  ['nginx:', /invalid reference format/],
  ['nginx:-bad', /invalid reference format/],
  [`nginx:${'t'.repeat(129)}`, /invalid reference format/],
  ['https://github.com/docker/docker', /invalid reference format/],
  ['ngi nx', /invalid reference format/],
];

for (const [input, error] of invalid) {
  test(`rejects ${JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input)}`, () => {
    const result = parseImageReference(input);
    assert.equal(result.valid, false);
    assert.ok(!result.valid && error.test(result.error), `error for ${input}: ${!result.valid ? result.error : ''}`);
  });
}
