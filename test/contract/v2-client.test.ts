/**
 * Contract, v2: the client (ANCHORE_API_VERSION=v2 and auto) against the simulator in v2 mode, every
 * exchange validated against the official Anchore Enterprise v2 OpenAPI document (the suite:
 * client-contract.ts).
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { anchoreV2Contract } from './anchore-contracts.js';
import { NGINX_DIGEST, clientContractSuite } from './client-contract.js';

clientContractSuite({
  api: 'v2',
  title: 'the client against the simulator in v2 mode, every exchange validated',
  contract: anchoreV2Contract,
  clockStartMs: 2_100_000_000_000,
  checkOperation: 'get_image_policy_check_by_digest',
  analysisStatusOf: (body) => (body as { analysis_status?: string }).analysis_status,
  pinnedSubmission: {
    name: 'a digest source with its tag',
    body: { source: { digest: { pull_string: `docker.io/library/nginx@${NGINX_DIGEST}`, tag: 'docker.io/library/nginx:sha256-44cecf0471cd' } } },
  },
  policyParameter: 'policy_id',
  extraOperations: ['version_check 200'],
  only: ({ client, scan, conforming }) => {
    it('auto detection: GET /v2/version (api.version "2"), then v2', async () => {
      const verdict = await scan(client({ apiVersion: 'auto' }), 'nginx:1.25.3');
      assert.equal(verdict.status, 'pass');
      assert.deepEqual(conforming(), ['version_check 200', 'add_image 200', 'get_image_policy_check_by_digest 200']);
    });
  },
});
