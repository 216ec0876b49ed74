/**
 * Property tests (fast-check) for the image reference parser: image references come from users and
 * are hostile input. It must never throw, and its canonical and familiar forms must be fixed points:
 * parse(canonical).canonical === canonical, and the familiar form re-parses to the same canonical.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseImageReference, type ImageReference } from '../../src/reference/parse-reference.js';

const RUNS = 2000;

// ---- generators following distribution/reference's grammar (regexp.go) ----------------------------
const alnum = fc.stringMatching(/^[a-z0-9]{1,8}$/);
const separator = fc.constantFrom('.', '_', '__', '-', '--', '---');
const pathComponent = fc
  .tuple(alnum, fc.array(fc.tuple(separator, alnum), { maxLength: 2 }))
  .map(([first, rest]) => first + rest.map(([s, a]) => s + a).join(''));
const path = fc.array(pathComponent, { minLength: 1, maxLength: 4 }).map((parts) => parts.join('/'));
const hostLabel = fc.stringMatching(/^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?$/);
const port = fc.integer({ min: 1, max: 65535 }).map((p) => `:${p}`);
const domain = fc.oneof(
  fc.constantFrom('docker.io', 'index.docker.io', 'localhost', 'localhost:5000', 'quay.io', 'ghcr.io', 'registry.k8s.io', '[::1]:5000', '[2001:db8::1]', 'Registry.Example.COM:443'),
  fc.tuple(fc.array(hostLabel, { minLength: 2, maxLength: 3 }), fc.option(port, { nil: '' })).map(([labels, p]) => labels.join('.') + p),
  fc.tuple(hostLabel, port).map(([h, p]) => h + p),
);
const tag = fc.stringMatching(/^[\w][\w.-]{0,20}$/);
const hex = (n: number): fc.Arbitrary<string> => fc.stringMatching(new RegExp(`^[a-f0-9]{${n}}$`));
const digest = fc.oneof(
  { weight: 4, arbitrary: hex(64).map((h) => `sha256:${h}`) },
  { weight: 1, arbitrary: hex(96).map((h) => `sha384:${h}`) },
  { weight: 1, arbitrary: hex(128).map((h) => `sha512:${h}`) },
);

/**
 * A reference as a user may write it: optional registry, a path, optional tag, optional digest.
 * Without a registry the first path component holds no '.' or ':' (else Docker reads it as a host).
 */
const validReference = fc
  .record({
    domain: fc.option(domain, { nil: undefined }),
    path,
    tag: fc.option(tag, { nil: undefined }),
    digest: fc.option(digest, { freq: 3, nil: undefined }),
  })
  .filter(({ domain: d, path: p }) => d !== undefined || !/[.:]/.test(p.split('/')[0] ?? ''))
  .map(({ domain: d, path: p, tag: t, digest: g }) => `${d !== undefined ? `${d}/` : ''}${p}${t !== undefined ? `:${t}` : ''}${g !== undefined ? `@${g}` : ''}`);

/**
 * An independent spelling of distribution/reference's domainAndPort (regexp.go), so the tests can tell
 * whether a first component is a registry host.
 */
const validHost = /^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;

/**
 * A path whose first component holds a '.', written without a registry: Docker reads it as a host when
 * it is one, and otherwise (`a_b.c/d`) leaves it in the path with no domain.
 */
const hostLikePath = fc
  .tuple(pathComponent.filter((c) => c.includes('.')), path, fc.option(tag, { nil: undefined }))
  .map(([first, rest, t]) => `${first}/${rest}${t !== undefined ? `:${t}` : ''}`);

/** Strings over the reference alphabet, so that many are near misses of a valid reference. */
const referenceAlphabet = fc.constantFrom(...'abcxyz019ABZ._-:/@[]'.split(''), 'sha256:', 'docker.io/', 'library/', 'localhost');
const nearReference = fc.array(referenceAlphabet, { maxLength: 40 }).map((parts) => parts.join(''));

/** Random valid references with single characters mutated, inserted or deleted. */
const mutatedReference = fc
  .tuple(validReference, fc.array(fc.tuple(fc.nat(), fc.constantFrom('del', 'ins', 'rep'), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 })), { minLength: 1, maxLength: 3 }))
  .map(([ref, edits]) => {
    let s = ref;
    for (const [at, op, ch] of edits) {
      const i = s.length === 0 ? 0 : at % s.length;
      if (op === 'del') s = s.slice(0, i) + s.slice(i + 1);
      else if (op === 'ins') s = s.slice(0, i) + ch + s.slice(i);
      else s = s.slice(0, i) + ch + s.slice(i + 1);
    }
    return s;
  });

const anyString = fc.oneof(
  hostLikePath,
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.string({ unit: 'grapheme', maxLength: 100 }),
  nearReference,
  mutatedReference,
  fc.string({ unit: fc.constantFrom('a', '/', ':', '@', '.', '-', '_'), minLength: 200, maxLength: 2000 }),
);

function parseValid(input: string): ImageReference {
  const result = parseImageReference(input);
  assert.equal(result.valid, true, `expected ${JSON.stringify(input)} to parse, got ${result.valid ? '' : result.error}`);
  if (!result.valid) throw new Error('unreachable');
  return result.reference;
}

/** The invariants every successful parse must satisfy. */
function checkShape(ref: ImageReference, input: string): void {
  assert.equal(ref.input, input);
  // No domain only where the first component is not a valid host and so falls back into the path,
  // as distribution/reference does (`a_b.c/d`): then the name is the path alone.
  if (ref.domain === '') {
    assert.equal(ref.name, ref.path);
    assert.ok(!validHost.test(ref.path.split('/')[0] ?? ''), `${ref.path} has a valid host and no domain`);
  } else assert.equal(ref.name, `${ref.domain}/${ref.path}`);
  assert.notEqual(ref.domain, 'index.docker.io');
  assert.equal(ref.impliedLatest, ref.tag === undefined && ref.digest === undefined);
  const suffix = `${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
  assert.equal(ref.canonical, ref.impliedLatest ? `${ref.name}:latest` : `${ref.name}${suffix}`);
  assert.ok(ref.familiar.endsWith(suffix));
  if (ref.domain === 'docker.io') assert.ok(ref.path.includes('/'), `a Docker Hub path always has a namespace: ${ref.path}`);
}

/**
 * Docker's familiar form is ambiguous for a Docker Hub path whose first component reads as a registry
 * host (`docker.io/a.b/c` -> `a.b/c`) and for a 64-hex name (rejected as an image ID); distribution's
 * FamiliarString prints the same, so the familiar round-trip is only promised outside these cases.
 */
function familiarIsAmbiguous(ref: ImageReference): boolean {
  if (ref.domain !== 'docker.io') return false;
  const slash = ref.familiar.indexOf('/');
  const first = slash === -1 ? '' : ref.familiar.slice(0, slash);
  return (slash !== -1 && (/[.:]/.test(first) || first === 'localhost')) || /^[a-f0-9]{64}$/.test(ref.familiar);
}

/** canonical and familiar are fixed points of the parser. */
function checkRoundTrips(ref: ImageReference): void {
  const again = parseValid(ref.canonical);
  assert.equal(again.canonical, ref.canonical, 'parse(canonical).canonical === canonical');
  assert.equal(again.domain, ref.domain);
  assert.equal(again.path, ref.path);
  assert.equal(again.digest, ref.digest);
  // An implied latest becomes an explicit one: same canonical, same image pulled.
  assert.equal(again.tag, ref.tag ?? (ref.digest === undefined ? 'latest' : undefined));
  assert.equal(again.familiar, `${ref.familiar}${ref.impliedLatest ? ':latest' : ''}`);
  if (familiarIsAmbiguous(ref)) return;
  const fromFamiliar = parseValid(ref.familiar);
  assert.equal(fromFamiliar.canonical, ref.canonical, `familiar ${JSON.stringify(ref.familiar)} re-parses to the same canonical`);
  assert.equal(fromFamiliar.familiar, ref.familiar);
}

describe('parseImageReference: properties', () => {
  it('never throws, on any string, and answers a well-formed result', () => {
    fc.assert(
      fc.property(anyString, (input) => {
        const result = parseImageReference(input);
        if (result.valid) checkShape(result.reference, input);
        else {
          assert.equal(result.input, input);
          assert.equal(typeof result.error, 'string');
          assert.notEqual(result.error, '');
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('never throws on values that are not strings (untyped JSON reaching the parser)', () => {
    fc.assert(
      fc.property(fc.anything(), (value) => {
        const result = parseImageReference(value as string);
        assert.equal(typeof result.valid, 'boolean');
      }),
      { numRuns: 300 },
    );
  });

  it('accepts every reference built from the grammar', () => {
    fc.assert(
      fc.property(validReference, (input) => {
        checkShape(parseValid(input), input);
      }),
      { numRuns: RUNS },
    );
  });

  it('round-trips canonical and familiar forms of grammar-built references', () => {
    fc.assert(
      fc.property(validReference, (input) => {
        checkRoundTrips(parseValid(input));
      }),
      { numRuns: RUNS },
    );
  });

  it('round-trips canonical and familiar forms of any string that parses', () => {
    fc.assert(
      fc.property(fc.oneof(hostLikePath, nearReference, mutatedReference), (input) => {
        const result = parseImageReference(input);
        if (!result.valid) return;
        checkRoundTrips(result.reference);
      }),
      { numRuns: RUNS },
    );
  });

  it('reads a first component with a dot as a registry host when it is a valid host, else as part of a path with no registry', () => {
    fc.assert(
      fc.property(hostLikePath, (input) => {
        const result = parseImageReference(input);
        if (!result.valid) return;
        const first = input.slice(0, input.indexOf('/'));
        const isHost = validHost.test(first);
        assert.equal(result.reference.domain, isHost ? first : '', `registry of ${JSON.stringify(input)}`);
        if (!isHost) assert.ok(result.reference.path.startsWith(`${first}/`), `path of ${JSON.stringify(input)}`);
        checkRoundTrips(result.reference);
      }),
      { numRuns: RUNS },
    );
  });

  it('normalises Docker Hub spellings to one canonical form', () => {
    fc.assert(
      fc.property(pathComponent, fc.option(tag, { nil: undefined }), (name, t) => {
        const suffix = t !== undefined ? `:${t}` : '';
        const spellings = [`${name}${suffix}`, `library/${name}${suffix}`, `docker.io/${name}${suffix}`, `docker.io/library/${name}${suffix}`, `index.docker.io/library/${name}${suffix}`];
        const canonicals = new Set(spellings.map((s) => parseValid(s).canonical));
        assert.deepEqual([...canonicals], [`docker.io/library/${name}:${t ?? 'latest'}`]);
      }),
      { numRuns: 500 },
    );
  });

  it('rejects an upper-case repository path but accepts an upper-case registry host', () => {
    fc.assert(
      fc.property(path.filter((p) => /[a-z]/.test(p)), (p) => {
        assert.equal(parseImageReference(`quay.io/${p.toUpperCase()}:1`).valid, false);
        assert.equal(parseImageReference(`QUAY.io/${p}:1`).valid, true);
      }),
      { numRuns: 500 },
    );
  });
});
