/**
 * The official documents themselves: found in the repository (test/fixtures/reference), valid
 * Swagger 2.0 / OpenAPI 3.0 (checked by @seriousme/openapi-schema-validator against the specifications' own JSON schemas),
 * every schema in them compiles under the contract's strict Ajv, and they still hold the operations
 * the client uses.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  anchoreDocumentProblems,
  anchoreV1Contract,
  anchoreV2Contract,
  documentProblems,
  repairV1Document,
  V1_KNOWN_DEFECT,
} from './anchore-contracts.js';
import { parseDocument } from './openapi-contract.js';
import { readSpecText, referenceDir, repoRoot, V1_SPEC_FILE } from './spec-files.js';

describe('contract: the official Anchore documents', () => {
  it('are found in the repository (test/fixtures/reference), and a missing one fails loudly', () => {
    assert.equal(referenceDir(), join(repoRoot(), 'test', 'fixtures', 'reference'));
    assert.equal(referenceDir(repoRoot()), referenceDir());
    const empty = mkdtempSync(join(tmpdir(), 'scangate-no-fixtures-'));
    assert.throws(() => referenceDir(empty), /official Anchore specs anchore-engine-v1-swagger\.yaml, anchore-enterprise-v2-subset\.yaml are missing from .*test[/\\]fixtures[/\\]reference/);
    mkdirSync(join(empty, 'test', 'fixtures', 'reference'), { recursive: true });
    copyFileSync(join(referenceDir(), V1_SPEC_FILE), join(empty, 'test', 'fixtures', 'reference', V1_SPEC_FILE));
    assert.throws(() => referenceDir(empty), /specs anchore-enterprise-v2-subset\.yaml are missing/);
    rmSync(empty, { recursive: true, force: true });
  });

  it('are valid Swagger 2.0 and OpenAPI 3.0 documents (the v1 one after its one documented repair)', async () => {
    assert.deepEqual(await anchoreDocumentProblems(), []);
  });

  it('the v1 repair removes exactly the known defect, which the meta-schema reports, and nothing else', async () => {
    const raw = parseDocument(readSpecText(V1_SPEC_FILE));
    const before = await documentProblems(raw);
    assert.equal(before.version, '2.0');
    // If the document is ever fixed upstream, the repair is a no-op and this test says so.
    assert.ok(before.problems.length > 0, 'the v1 document no longer has the known defect: drop repairV1Document');
    for (const problem of before.problems) assert.ok(problem.startsWith(V1_KNOWN_DEFECT.pointer), problem);
    assert.equal(repairV1Document(raw), true);
    assert.deepEqual((await documentProblems(raw)).problems, []);
  });

  it('every schema and operation of both documents compiles under strict Ajv', async () => {
    (await anchoreV1Contract()).compileAll();
    (await anchoreV2Contract()).compileAll();
  });

  it('hold the operations the client uses, where the client sends them', async () => {
    const v1 = await anchoreV1Contract();
    const d = `sha256:${'a'.repeat(64)}`;
    const ids = (c: typeof v1, pairs: Array<[string, string]>): string[] =>
      pairs.map(([method, url]) => {
        const m = c.match(method, url);
        return m.ok ? m.operation.operationId : m.problem;
      });
    assert.deepEqual(
      ids(v1, [
        ['POST', '/v1/images'],
        ['GET', '/v1/images'],
        ['GET', `/v1/images/${d}`],
        ['GET', `/v1/images/${d}/check`],
        ['GET', `/v1/images/${d}/vuln/all`],
        ['GET', '/v1/'],
      ]),
      ['add_image', 'list_images', 'get_image', 'get_image_policy_check', 'get_image_vulnerabilities_by_type', 'ping'],
    );
    assert.deepEqual(ids(await anchoreV1Contract(''), [['GET', '/version'], ['GET', '/health']]), ['version_check', 'health_check']);
    const v2 = await anchoreV2Contract();
    assert.equal(v2.mountPath, '/v2');
    assert.deepEqual(
      ids(v2, [
        ['GET', '/v2/version'],
        ['POST', '/v2/images'],
        ['GET', '/v2/images'],
        ['GET', `/v2/images/${d}`],
        ['GET', `/v2/images/${d}/check`],
      ]),
      ['version_check', 'add_image', 'list_images', 'get_image', 'get_image_policy_check_by_digest'],
    );
  });
});
