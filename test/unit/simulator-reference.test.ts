import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fulltagOf, normalizeFulltag, parseSimImageRef } from '@scangate/simulator/internal/reference';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('simulator image references', () => {
  const valid: Array<[string, string, string | undefined]> = [
    ['nginx', 'docker.io/library/nginx:latest', undefined],
    ['nginx:1.25.3', 'docker.io/library/nginx:1.25.3', undefined],
    ['docker.io/library/nginx:1.25.3', 'docker.io/library/nginx:1.25.3', undefined],
    ['index.docker.io/library/nginx:1', 'docker.io/library/nginx:1', undefined],
    ['bitnami/nginx:1.25.3', 'docker.io/bitnami/nginx:1.25.3', undefined],
    ['quay.io/prometheus/node-exporter:v1.7.0', 'quay.io/prometheus/node-exporter:v1.7.0', undefined],
    ['localhost:5000/scangate/demo-app:bad', 'localhost:5000/scangate/demo-app:bad', undefined],
    ['localhost/app', 'localhost/app:latest', undefined],
    [`nginx:1@${DIGEST}`, 'docker.io/library/nginx:1', DIGEST],
  ];
  for (const [input, fulltag, digest] of valid) {
    it(`parses ${input}`, () => {
      const parsed = parseSimImageRef(input);
      assert.equal(parsed.ok, true);
      assert.ok(parsed.ok);
      assert.equal(fulltagOf(parsed.ref), fulltag);
      assert.equal(parsed.ref.digest, digest);
    });
  }

  const invalid = ['', 'Nginx:1', 'nginx:', 'nginx:1 ', 'nginx@sha256:abc', 'a//b', 'nginx:-bad', `x@md5:${'a'.repeat(32)}`];
  for (const input of invalid) {
    it(`rejects ${JSON.stringify(input)}`, () => {
      const parsed = parseSimImageRef(input);
      assert.equal(parsed.ok, false);
    });
  }

  it('normalizeFulltag leaves unparseable input alone', () => {
    assert.equal(normalizeFulltag('nginx'), 'docker.io/library/nginx:latest');
    assert.equal(normalizeFulltag('NOT VALID'), 'NOT VALID');
  });

  it('never throws and is idempotent on hostile input', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (input) => {
        const parsed = parseSimImageRef(input);
        if (parsed.ok) {
          const again = parseSimImageRef(fulltagOf(parsed.ref));
          assert.ok(again.ok);
          assert.equal(fulltagOf(again.ref), fulltagOf(parsed.ref));
        }
      }),
      { numRuns: 2000 },
    );
  });
});
