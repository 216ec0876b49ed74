/**
 * Contract, v1: the client against the simulator, every exchange validated against the official
 * Anchore Engine v1 Swagger document (the suite: client-contract.ts).
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { anchoreV1Contract, anchoreV2Contract } from './anchore-contracts.js';
import { NGINX_DIGEST, clientContractSuite } from './client-contract.js';
import { assertConforms } from './rig.js';

clientContractSuite({
  api: 'v1',
  title: 'the client against the simulator, every exchange validated',
  contract: anchoreV1Contract,
  clockStartMs: 1_800_000_000_000,
  checkOperation: 'get_image_policy_check',
  analysisStatusOf: (body) => (body as Array<{ analysis_status?: string }>)[0]?.analysis_status,
  pinnedSubmission: { name: 'tag and digest in the body', body: { tag: 'docker.io/library/nginx:sha256-44cecf0471cd', digest: NGINX_DIGEST } },
  policyParameter: 'policyId',
  extraOperations: [],
  only: (ctx) => {
    it('auto detection on a v1-only server: a valid v2 version probe, answered 404, then v1', async () => {
      const v2 = await anchoreV2Contract();
      const verdict = await ctx.scan(ctx.client({ apiVersion: 'auto' }), 'nginx:1.25.3');
      assert.equal(verdict.status, 'pass');
      const [probe, ...rest] = ctx.rig.proxy.exchanges;
      assert.equal(probe?.request.url, '/v2/version');
      // The probe is a v2 request and must be one a v2 server takes; the v1 server's 404 is no v2 answer.
      assert.deepEqual(v2.checkRequest(probe.request), []);
      assert.equal(probe.response.status, 404);
      const ops = assertConforms(ctx.contract, rest);
      ctx.noteSeen(ops);
      assert.deepEqual(ops, ['add_image 200', 'get_image_policy_check 200']);
    });
  },
});
