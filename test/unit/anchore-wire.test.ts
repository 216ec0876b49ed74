import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ScannerProtocolError } from '../../src/errors.js';
import { parseCheck, parseImageList, pickRecord, sameImageTag } from '../../src/scanner/anchore-wire.js';
import { submissionTag } from '../../src/scanner/anchore-client.js';
import { parseImageReference } from '../../src/reference/parse-reference.js';

const digest = `sha256:${'9'.repeat(64)}`;
const header = ['Image_Id', 'Repo_Tag', 'Trigger_Id', 'Gate', 'Trigger', 'Check_Output', 'Gate_Action', 'Whitelisted', 'Policy_Id'];
const rows = [
  ['img', 'docker.io/a/b:1', 't1', 'vulnerabilities', 'package', 'CRITICAL CVE-2017-5638', 'stop', false, 'p'],
  ['img', 'docker.io/a/b:1', 't2', 'vulnerabilities', 'package', 'MEDIUM CVE-1', 'warn', false, 'p'],
  ['img', 'docker.io/a/b:1', 't3', 'vulnerabilities', 'package', 'HIGH CVE-WHITELISTED', 'stop', { id: 'w1' }, 'p'],
  ['img', 'docker.io/a/b:1', 't4', 'dockerfile', 'instruction', 'USER root', 'STOP', false, 'p'],
];
const table = { header, rows, row_count: rows.length, final_action: 'stop' };

function check(detailResult: Record<string, unknown>, tagKey = 'docker.io/a/b:1', status = 'fail'): unknown {
  return [{ [digest]: { [tagKey]: [{ status, policyId: 'p', detail: { result: detailResult } }] } }];
}

const expected = {
  status: 'fail',
  policyId: 'p',
  stopReasons: [
    { gate: 'vulnerabilities', trigger: 'package', output: 'CRITICAL CVE-2017-5638' },
    { gate: 'dockerfile', trigger: 'instruction', output: 'USER root' },
  ],
  warnCount: 1,
};

test('check: the documented shape detail.result[imageId].result', () => {
  assert.deepEqual(parseCheck(check({ img: { result: table } }), digest, 'docker.io/a/b:1'), expected);
});

test("check: Anchore Engine's shape detail.result.result[image_id].result, read once even if both are sent", () => {
  const engine = { image_id: 'img', final_action: 'stop', final_action_reason: 'policy_evaluation', result: { img: { result: table } } };
  assert.deepEqual(parseCheck(check(engine), digest, 'docker.io/a/b:1'), { ...expected, finalActionReason: 'policy_evaluation' });
  const both = { ...engine, img: { result: table } };
  assert.equal(parseCheck(check(both), digest, 'docker.io/a/b:1').stopReasons.length, 2);
});

test('check: tag keys match normalised (Anchore writes docker.io/nginx), the digest is authoritative', () => {
  const clean = { header, rows: [rows[1]], row_count: 1, final_action: 'warn' };
  const body = check({ img: { result: clean } }, 'docker.io/nginx:1', 'pass');
  assert.equal(parseCheck(body, digest, 'docker.io/library/nginx:1').status, 'pass');
  assert.throws(() => parseCheck(body, `sha256:${'0'.repeat(64)}`, 'docker.io/library/nginx:1'), ScannerProtocolError);
  assert.throws(() => parseCheck({}, digest, 'x'), ScannerProtocolError);
  assert.throws(() => parseCheck(check({}, 'docker.io/a/b:1', 'maybe'), digest, 'docker.io/a/b:1'), /expected pass or fail/);
});

test('image list: records are picked by digest or by tag, never "the first one"', () => {
  const records = parseImageList([
    { imageDigest: 'sha256:other', analysis_status: 'analyzed', image_detail: [{ fulltag: 'docker.io/x/y:1' }] },
    { imageDigest: digest, analysis_status: 'analyzing', image_detail: [{ fulltag: 'docker.io/nginx:1.25.3' }] },
  ]);
  assert.equal(pickRecord(records, 'docker.io/library/nginx:1.25.3', undefined).imageDigest, digest);
  assert.equal(pickRecord(records, 'docker.io/x/y:2', digest).analysisStatus, 'analyzing');
  assert.throws(() => pickRecord(records, 'docker.io/x/y:2', undefined), /no image record/);
  assert.throws(() => parseImageList({ imageDigest: digest }), /not an array/);
  assert.throws(() => parseImageList([{ imageDigest: 1 }]), /lacks imageDigest/);
  assert.equal(sameImageTag('docker.io/nginx:1', 'index.docker.io/library/nginx:1'), true);
});

test('submission tag: the written tag, or a synthetic one naming the digest, never latest for a digest', () => {
  const tagOf = (s: string): string => {
    const r = parseImageReference(s);
    assert.ok(r.valid);
    return submissionTag(r.reference);
  };
  assert.equal(tagOf('nginx:1.25.3'), 'docker.io/library/nginx:1.25.3');
  assert.equal(tagOf(`nginx@${digest}`), 'docker.io/library/nginx:sha256-999999999999');
  assert.equal(tagOf(`nginx:1@${digest}`), 'docker.io/library/nginx:1');
});

test('image list: a digest that is not sha256:<64 hex> never reaches a request path', () => {
  const tag = 'docker.io/library/nginx:1';
  for (const bad of ['../../admin', 'sha256:abc', `sha256:${'9'.repeat(64)}/check?x=`, `sha256%3A${'9'.repeat(64)}`]) {
    const records = parseImageList([{ imageDigest: bad, analysis_status: 'analyzed', image_detail: [{ fulltag: tag }] }]);
    assert.throws(() => pickRecord(records, tag, undefined), ScannerProtocolError, bad);
  }
  const good = parseImageList([{ imageDigest: digest, analysis_status: 'analyzed', image_detail: [{ fulltag: tag }] }]);
  assert.equal(pickRecord(good, tag, undefined).imageDigest, digest);
});

test('check: a pass with a stop row, or with final_action stop, is a contradiction: a scanner error, never a pass', () => {
  assert.throws(() => parseCheck(check({ img: { result: table } }, 'docker.io/a/b:1', 'pass'), digest, 'docker.io/a/b:1'), /says pass with 2 stop row\(s\): contradictory/);
  const engine = { image_id: 'img', final_action: 'stop', result: { img: { result: { header, rows: [], row_count: 0 } } } };
  assert.throws(() => parseCheck(check(engine, 'docker.io/a/b:1', 'pass'), digest, 'docker.io/a/b:1'), /final_action stop: contradictory/);
  // Allowlisted stop rows are no reason: a pass with only those is a pass.
  const allowed = { header, rows: [rows[2]], row_count: 1 };
  assert.equal(parseCheck(check({ img: { result: allowed } }, 'docker.io/a/b:1', 'pass'), digest, 'docker.io/a/b:1').status, 'pass');
});

test('image list: a pinned manifest list digest finds the platform record under it (parentDigest), never another', () => {
  const LIST = `sha256:${'a'.repeat(64)}`;
  const PLATFORM = `sha256:${'b'.repeat(64)}`;
  const records = parseImageList([
    { imageDigest: `sha256:${'c'.repeat(64)}`, analysis_status: 'analyzed', image_detail: [{ fulltag: 'docker.io/library/nginx:1' }] },
    { imageDigest: PLATFORM, parentDigest: LIST, analysis_status: 'analyzed', image_detail: [{ fulltag: 'docker.io/library/nginx:1' }] },
  ]);
  assert.equal(pickRecord(records, 'docker.io/library/nginx:1', LIST).imageDigest, PLATFORM);
  assert.equal(pickRecord(records, 'docker.io/library/nginx:1', PLATFORM).imageDigest, PLATFORM);
  assert.throws(() => pickRecord(records, 'docker.io/library/nginx:1', `sha256:${'d'.repeat(64)}`), ScannerProtocolError);
});
