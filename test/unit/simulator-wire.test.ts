import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { AnchoreApiError } from '@scangate/simulator/internal/errors';
import { fulltagOf } from '@scangate/simulator/internal/reference';
import { checkJson, isoSeconds, parseAddImageBody } from '@scangate/simulator/internal/wire';
import { resolveSimulatorData } from '@scangate/simulator/internal/data';
import { evaluatePolicy } from '@scangate/simulator/internal/policy';

const D1 = `sha256:${'a'.repeat(64)}`;
const D2 = `sha256:${'b'.repeat(64)}`;

describe('simulator wire format', () => {
  const accepted: Array<[string, unknown, string, string | undefined]> = [
    ['legacy tag', { tag: 'docker.io/library/nginx:1.25.3' }, 'docker.io/library/nginx:1.25.3', undefined],
    ['legacy short tag', { tag: 'nginx' }, 'docker.io/library/nginx:latest', undefined],
    ['legacy tag + digest', { tag: 'nginx:1', digest: D1 }, 'docker.io/library/nginx:1', D1],
    ['legacy tag + digest pull string', { tag: 'nginx:1', digest: `docker.io/library/nginx@${D1}` }, 'docker.io/library/nginx:1', D1],
    ['tag with embedded digest', { tag: `nginx:1@${D1}` }, 'docker.io/library/nginx:1', D1],
    ['source.tag', { source: { tag: { pullstring: 'quay.io/a/b:v1' } } }, 'quay.io/a/b:v1', undefined],
    [
      'source.digest',
      { source: { digest: { pullstring: `localhost:5000/a@${D2}`, tag: 'localhost:5000/a:x' } } },
      'localhost:5000/a:x',
      D2,
    ],
    ['annotations', { tag: 'nginx:1', annotations: { team: 'x' } }, 'docker.io/library/nginx:1', undefined],
  ];
  for (const [name, body, fulltag, digest] of accepted) {
    it(`accepts ${name}`, () => {
      const req = parseAddImageBody(body);
      assert.equal(fulltagOf(req.ref), fulltag);
      assert.equal(req.digest, digest);
    });
  }

  const rejected: Array<[string, unknown, RegExp]> = [
    ['no body', undefined, /JSON object/],
    ['an array', [{ tag: 'nginx' }], /JSON object/],
    ['no tag', { digest: D1 }, /tag is required/],
    ['empty tag', { tag: '' }, /tag is required/],
    ['invalid tag', { tag: 'UPPER/case:1' }, /not a valid image reference/],
    ['digest-only tag', { tag: `nginx@${D1}` }, /digest reference/],
    ['bad digest', { tag: 'nginx:1', digest: 'sha256:1234' }, /neither sha256/],
    ['digest of another repository', { tag: 'nginx:1', digest: `docker.io/library/redis@${D1}` }, /same registry\/repo/],
    ['disagreeing digests', { tag: `nginx:1@${D1}`, digest: D2 }, /disagree/],
    ['two sources', { source: { tag: { pullstring: 'a:1' }, digest: { pullstring: `a@${D1}`, tag: 'a:1' } } }, /exactly one/],
    ['archive source', { source: { archive: { digest: D1 } } }, /not supported/],
    ['source.digest without a digest', { source: { digest: { pullstring: 'a:1', tag: 'a:1' } } }, /digest pull string/],
    ['bad annotations', { tag: 'nginx:1', annotations: 'x' }, /annotations/],
  ];
  for (const [name, body, message] of rejected) {
    it(`rejects ${name} with 400`, () => {
      assert.throws(
        () => parseAddImageBody(body),
        (err: unknown) => err instanceof AnchoreApiError && err.httpcode === 400 && message.test(err.message),
      );
    });
  }

  it('answers every JSON body with a request or a 400, never a crash', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (body) => {
        try {
          parseAddImageBody(body);
        } catch (err) {
          if (!(err instanceof AnchoreApiError) || err.httpcode !== 400) throw err;
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('prints timestamps without milliseconds', () => {
    assert.equal(isoSeconds(Date.UTC(2026, 10, 22, 10, 0, 0, 123)), '2026-11-22T10:00:00Z');
  });

  it('nests the check answer digest -> tag -> [evaluation], in both detail shapes', () => {
    const policy = resolveSimulatorData({}).policies[0];
    assert.ok(policy !== undefined);
    const outcome = evaluatePolicy([{ vuln: 'CVE-1', severity: 'Critical', package: 'p-1', packageType: 'dpkg' }], policy);
    const body = checkJson(
      { digest: D1, imageId: 'c'.repeat(64), fulltag: 'docker.io/library/x:1', policy, outcome, evaluatedAtMs: Date.UTC(2026, 0, 1) },
      true,
    );
    const evaluation = (body as Array<Record<string, Record<string, Array<Record<string, unknown>>>>>)[0]?.[D1]?.['docker.io/library/x:1']?.[0];
    assert.ok(evaluation !== undefined);
    assert.equal(evaluation['status'], 'fail');
    assert.equal(evaluation['policyId'], policy.id);
    assert.equal(evaluation['last_evaluation'], '2026-01-01T00:00:00Z');
    const result = (evaluation['detail'] as { result: Record<string, unknown> }).result;
    const docShape = (result['c'.repeat(64)] as { result: { rows: unknown[][]; final_action: string } }).result;
    const engineShape = (result['result'] as Record<string, { result: unknown }>)[result['image_id'] as string]?.result;
    assert.deepEqual(engineShape, docShape);
    assert.equal(docShape.final_action, 'stop');
    assert.equal(docShape.rows[0]?.[6], 'stop');
    assert.deepEqual(Object.keys(result)[0], 'c'.repeat(64));

    const bare = checkJson({ digest: D1, imageId: 'c'.repeat(64), fulltag: 'docker.io/library/x:1', policy, outcome, evaluatedAtMs: 0 }, false);
    assert.deepEqual((bare as Array<Record<string, Record<string, Array<Record<string, unknown>>>>>)[0]?.[D1]?.['docker.io/library/x:1']?.[0]?.['detail'], {});
  });
});
