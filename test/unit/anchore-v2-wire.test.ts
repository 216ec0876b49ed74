/**
 * The Anchore Enterprise v2 wire format, table-driven: AnchoreImage records and PolicyEvaluation
 * answers (the spec's worked examples, allowlisted and warn findings, denylisted images, evaluation
 * problems, several evaluations, hostile shapes) into the same ImageRecord / PolicyEvaluation as v1.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ScannerProtocolError } from '../../src/errors.js';
import { errorMessageV2, parseCheckV2, parseImageV2 } from '../../src/scanner/anchore-v2-wire.js';
import type { PolicyEvaluation } from '../../src/scanner/anchore-wire.js';
import { createWireProtocol } from '../../src/scanner/wire-protocol.js';
import { parseScannerUrl } from '../../src/scanner/api-version.js';
import { parseImageReference } from '../../src/reference/parse-reference.js';

const D = `sha256:${'a1'.repeat(32)}`;
const TAG = 'reg.example.com/shop/api:1.4.0';

const finding = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  trigger_id: 'CVE-2021-44228+log4j-core-2.14.1.jar',
  gate: 'vulnerabilities',
  trigger: 'package',
  message: 'CRITICAL Vulnerability found in non-os package type (java) - log4j-core-2.14.1.jar (CVE-2021-44228)',
  action: 'stop',
  policy_id: 'pol-1',
  recommendation: '',
  rule_id: 'rule-1',
  allowlisted: false,
  inherited_from_base: false,
  ...over,
});

const result = (status: string, findings: unknown[], over: Record<string, unknown> = {}): Record<string, unknown> => ({
  status,
  final_action: status === 'pass' ? 'go' : 'stop',
  final_action_reason: 'policy_evaluation',
  evaluation_time: '2025-06-02T10:15:00Z',
  evaluation_problems: [],
  number_of_findings: findings.length,
  image_allowlisted: false,
  image_denylisted: false,
  image_mapped_to_rule: true,
  details: { policy: { id: 'pol-1', name: 'Default', version: '2', rule_sets: [], mappings: [] }, policy_action: status === 'pass' ? 'go' : 'stop', findings },
  ...over,
});

const evaluation = (evaluations: unknown[], over: Record<string, unknown> = {}): Record<string, unknown> => ({
  policy_id: 'pol-1',
  image_digest: D,
  evaluated_tag: TAG,
  evaluations,
  ...over,
});

const LOG4J = { gate: 'vulnerabilities', trigger: 'package', output: 'CRITICAL Vulnerability found in non-os package type (java) - log4j-core-2.14.1.jar (CVE-2021-44228)' };

describe('v2 wire: policy check', () => {
  const cases: Array<{ name: string; body: unknown; tag?: string; expected: PolicyEvaluation | RegExp }> = [
    {
      name: "the fact sheet's failing example: one stop finding",
      body: evaluation([result('fail', [finding()])]),
      expected: { status: 'fail', policyId: 'pol-1', stopReasons: [LOG4J], warnCount: 0, finalActionReason: 'policy_evaluation' },
    },
    {
      name: "the fact sheet's passing example",
      body: evaluation([result('pass', [])], { evaluated_tag: 'reg.example.com/shop/api:1.4.1' }),
      tag: 'reg.example.com/shop/api:1.4.1',
      expected: { status: 'pass', policyId: 'pol-1', stopReasons: [], warnCount: 0 },
    },
    {
      name: 'allowlisted stop findings and go findings are no reasons; warn findings are counted',
      body: evaluation([
        result('fail', [
          finding(),
          finding({ gate: 'dockerfile', trigger: 'instruction', message: 'USER root', allowlisted: true }),
          finding({ action: 'go', message: 'fine' }),
          finding({ action: 'warn', message: 'MEDIUM' }),
          finding({ action: 'STOP', gate: 'secret_scans', trigger: 'content_regex_checks', message: 'AWS key' }),
        ]),
      ]),
      expected: {
        status: 'fail',
        policyId: 'pol-1',
        stopReasons: [LOG4J, { gate: 'secret_scans', trigger: 'content_regex_checks', output: 'AWS key' }],
        warnCount: 1,
        finalActionReason: 'policy_evaluation',
      },
    },
    {
      name: 'a warn-only evaluation passes with its warnings counted',
      body: evaluation([result('pass', [finding({ action: 'warn' }), finding({ action: 'warn', allowlisted: true })])]),
      expected: { status: 'pass', policyId: 'pol-1', stopReasons: [], warnCount: 1 },
    },
    {
      name: 'a denylisted image fails without any stop finding (the reason comes from final_action_reason)',
      body: evaluation([result('fail', [], { final_action_reason: 'denylisted', image_denylisted: true })]),
      expected: { status: 'fail', policyId: 'pol-1', stopReasons: [], warnCount: 0, finalActionReason: 'denylisted' },
    },
    {
      name: 'details null (detail=false) still gives the verdict',
      body: evaluation([result('fail', [], { details: null })]),
      expected: { status: 'fail', policyId: 'pol-1', stopReasons: [], warnCount: 0, finalActionReason: 'policy_evaluation' },
    },
    {
      name: 'several evaluations: any fail fails, with the reasons of the failing ones',
      body: evaluation([result('pass', [finding({ action: 'warn' })]), result('fail', [finding()])]),
      expected: { status: 'fail', policyId: 'pol-1', stopReasons: [LOG4J], warnCount: 0, finalActionReason: 'policy_evaluation' },
    },
    {
      name: 'a fail with an evaluation error and no finding: the problem is the reason',
      body: evaluation([
        result('fail', [], { evaluation_problems: [{ severity: 'error', problem_type: 'missing_feed', details: 'vulnerability feed unavailable' }] }),
      ]),
      expected: {
        status: 'fail',
        policyId: 'pol-1',
        stopReasons: [{ gate: 'policy', trigger: 'evaluation_problem', output: 'missing_feed: vulnerability feed unavailable' }],
        warnCount: 0,
        finalActionReason: 'policy_evaluation',
      },
    },
    {
      name: 'a pass with an evaluation error is never a pass',
      body: evaluation([result('pass', [], { evaluation_problems: [{ severity: 'error', problem_type: 'bad_policy', details: 'x' }] })]),
      expected: /could not evaluate the policy: bad_policy: x/,
    },
    {
      name: 'a pass with a warn-severity problem is a pass',
      body: evaluation([result('pass', [], { evaluation_problems: [{ severity: 'warn', problem_type: 'stale_feed', details: 'x' }] })]),
      expected: { status: 'pass', policyId: 'pol-1', stopReasons: [], warnCount: 0 },
    },
    {
      name: 'Docker Hub tags are compared normalised (docker.io/nginx:1 is docker.io/library/nginx:1)',
      body: evaluation([result('pass', [])], { evaluated_tag: 'docker.io/nginx:1' }),
      tag: 'docker.io/library/nginx:1',
      expected: { status: 'pass', policyId: 'pol-1', stopReasons: [], warnCount: 0 },
    },
    { name: 'an evaluation of another digest', body: evaluation([result('pass', [])], { image_digest: `sha256:${'0'.repeat(64)}` }), expected: /for another image/ },
    { name: 'an evaluation of another tag', body: evaluation([result('pass', [])], { evaluated_tag: 'reg.example.com/shop/api:9' }), expected: /evaluated another tag/ },
    { name: 'no evaluations', body: evaluation([]), expected: /no evaluation/ },
    { name: 'evaluations missing', body: { policy_id: 'x' }, expected: /no evaluation/ },
    { name: 'a status that is neither pass nor fail', body: evaluation([result('maybe', [])]), expected: /expected pass or fail/ },
    { name: 'a status missing', body: evaluation([{ final_action: 'go' }]), expected: /expected pass or fail/ },
    { name: "v1's nested answer", body: [{ [D]: { [TAG]: [{ status: 'pass' }] } }], expected: /not an object/ },
    { name: 'an evaluation that is not an object', body: evaluation(['pass']), expected: /not an object/ },
    { name: 'null', body: null, expected: /not an object/ },
    // A contradictory answer is a scanner error (fail closed), never judged by its status alone.
    { name: 'a pass with a stop finding', body: evaluation([result('pass', [finding({ action: 'stop' })])]), expected: /says pass with 1 stop finding\(s\): contradictory/ },
    { name: 'a pass with final_action stop', body: evaluation([result('pass', [], { final_action: 'stop' })]), expected: /final_action stop: contradictory/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      if (c.expected instanceof RegExp) {
        assert.throws(() => parseCheckV2(c.body, D, c.tag ?? TAG), (e: unknown) => e instanceof ScannerProtocolError && (c.expected as RegExp).test(e.message));
      } else {
        assert.deepEqual(parseCheckV2(c.body, D, c.tag ?? TAG), c.expected);
      }
    });
  }

  it('hostile finding fields are strings or placeholders, never objects', () => {
    const parsed = parseCheckV2(evaluation([result('fail', [{ action: 'stop', gate: { x: 1 }, trigger: 7, message: ['m'] }, null, 'x'])]), D, TAG);
    assert.deepEqual(parsed.stopReasons, [{ gate: 'unknown', trigger: 'unknown', output: '' }]);
  });
});

describe('v2 wire: image record', () => {
  const cases: Array<{ name: string; body: unknown; expected: ReturnType<typeof parseImageV2> | RegExp }> = [
    {
      name: 'an AnchoreImage with two tags',
      body: {
        image_digest: D,
        analysis_status: 'analyzing',
        image_status: 'active',
        image_detail: [{ full_tag: TAG, full_digest: `reg.example.com/shop/api@${D}` }, { full_tag: 'reg.example.com/shop/api:latest' }, { fulltag: 'v1 spelling' }, null],
      },
      expected: { imageDigest: D, analysisStatus: 'analyzing', fulltags: [TAG, 'reg.example.com/shop/api:latest'] },
    },
    { name: 'no image_detail', body: { image_digest: D, analysis_status: 'analyzed' }, expected: { imageDigest: D, analysisStatus: 'analyzed', fulltags: [] } },
    { name: "v1's spelling imageDigest", body: { imageDigest: D, analysis_status: 'analyzed' }, expected: /lacks image_digest/ },
    { name: "v1's array", body: [{ image_digest: D, analysis_status: 'analyzed' }], expected: /not an object/ },
    { name: 'no analysis_status', body: { image_digest: D }, expected: /lacks image_digest\/analysis_status/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      if (c.expected instanceof RegExp) assert.throws(() => parseImageV2(c.body), c.expected);
      else assert.deepEqual(parseImageV2(c.body), c.expected);
    });
  }

  it('error bodies: ApiErrorResponse message', () => {
    assert.equal(errorMessageV2({ code: 404, error_type: 'not_found', message: 'Image not found', detail: {} }), 'Image not found');
    assert.equal(errorMessageV2('plain'), 'plain');
    assert.equal(errorMessageV2({ code: 500 }), '');
  });
});

describe('wire protocols: the requests of each API', () => {
  const endpoint = parseScannerUrl('https://anchore.example.com:8228');
  const ref = (text: string) => {
    const parsed = parseImageReference(text);
    assert.ok(parsed.valid);
    return parsed.reference;
  };

  it('v2: tag source, digest source with its tag, auto_subscribe=false, policy_id, raw digest paths', () => {
    const v2 = createWireProtocol('v2', endpoint);
    assert.deepEqual(v2.addImage(ref('nginx:1.25.3'), 'docker.io/library/nginx:1.25.3'), {
      method: 'POST',
      url: 'https://anchore.example.com:8228/v2/images',
      params: { auto_subscribe: 'false' },
      data: { source: { tag: { pull_string: 'docker.io/library/nginx:1.25.3' } } },
    });
    assert.deepEqual(v2.addImage(ref(`nginx@${D}`), 'docker.io/library/nginx:sha256-a1a1a1a1a1a1').data, {
      source: { digest: { pull_string: `docker.io/library/nginx@${D}`, tag: 'docker.io/library/nginx:sha256-a1a1a1a1a1a1' } },
    });
    assert.equal(v2.getImage(D).url, `https://anchore.example.com:8228/v2/images/${D}`);
    assert.deepEqual(v2.check(D, TAG, 'pol-1'), {
      method: 'GET',
      url: `https://anchore.example.com:8228/v2/images/${D}/check`,
      params: { tag: TAG, detail: 'true', history: 'false', policy_id: 'pol-1' },
    });
    assert.deepEqual(v2.check(D, TAG, undefined).params, { tag: TAG, detail: 'true', history: 'false' });
  });

  it('v1: the legacy body, autosubscribe=false, policyId, raw digest paths', () => {
    const v1 = createWireProtocol('v1', parseScannerUrl('https://anchore.example.com:8228/v1/'));
    assert.deepEqual(v1.addImage(ref(`nginx:1@${D}`), 'docker.io/library/nginx:1'), {
      method: 'POST',
      url: 'https://anchore.example.com:8228/v1/images',
      params: { autosubscribe: 'false' },
      data: { tag: 'docker.io/library/nginx:1', digest: D },
    });
    assert.equal(v1.getImage(D).url, `https://anchore.example.com:8228/v1/images/${D}`);
    assert.deepEqual(v1.check(D, TAG, 'pol-1').params, { tag: TAG, detail: 'true', history: 'false', policyId: 'pol-1' });
  });
});
