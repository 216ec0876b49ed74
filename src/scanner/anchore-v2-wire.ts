/**
 * The Anchore Enterprise API v2 wire format (test/fixtures/reference/ANCHORE-V2-API.md, the OpenAPI subset
 * anchore-enterprise-v2-subset.yaml): the `AnchoreImage` record and the `PolicyEvaluation` of the
 * policy check, read into the same ImageRecord and PolicyEvaluation as the v1 format, so that one
 * scan flow and one decision engine serve both APIs. No field of either schema is trusted to be
 * there: everything is checked, and a shape we cannot read is a protocol error, never a pass.
 */
import { ScannerProtocolError } from '../errors.js';
import type { StopReason } from '../policy/types.js';
import { PIN_DIGEST, sameImageTag, type ImageRecord, type PolicyEvaluation } from './anchore-wire.js';
import { isObject } from '../util/is-object.js';

/** Reads one `AnchoreImage` (POST /v2/images, GET /v2/images/{image_digest}). */
export function parseImageV2(body: unknown): ImageRecord {
  if (!isObject(body)) throw new ScannerProtocolError('scanner answered an image record that is not an object');
  const digest = body['image_digest'];
  const status = body['analysis_status'];
  if (typeof digest !== 'string' || typeof status !== 'string') {
    throw new ScannerProtocolError('scanner image record lacks image_digest/analysis_status');
  }
  const details = Array.isArray(body['image_detail']) ? body['image_detail'] : [];
  const fulltags = details.flatMap((d) => (isObject(d) && typeof d['full_tag'] === 'string' ? [d['full_tag']] : []));
  // The manifest list of a multi-arch tag (v1: parentDigest); kept only when well-formed.
  const parent = body['parent_digest'];
  const parentDigest = typeof parent === 'string' && PIN_DIGEST.test(parent) ? parent : undefined;
  return { imageDigest: digest, analysisStatus: status, fulltags, ...(parentDigest !== undefined ? { parentDigest } : {}) };
}

/** Error bodies are `ApiErrorResponse` `{code, error_type, message, detail}` (all optional). */
export function errorMessageV2(body: unknown): string {
  if (isObject(body) && typeof body['message'] === 'string') return body['message'];
  return typeof body === 'string' ? body : '';
}

interface ResultReading {
  readonly status: 'pass' | 'fail';
  readonly stop: StopReason[];
  readonly warn: number;
  readonly finalActionReason?: string;
  /** `evaluation_problems` of severity `error`: the policy could not be evaluated. */
  readonly problems: string[];
}

function readResult(raw: unknown, i: number): ResultReading {
  if (!isObject(raw)) throw new ScannerProtocolError(`scanner policy evaluation ${i} is not an object`);
  const status = raw['status'];
  if (status !== 'pass' && status !== 'fail') {
    throw new ScannerProtocolError(`scanner check status is ${JSON.stringify(status)}, expected pass or fail`);
  }
  const problems = (Array.isArray(raw['evaluation_problems']) ? raw['evaluation_problems'] : []).flatMap((p) =>
    isObject(p) && p['severity'] === 'error'
      ? [[p['problem_type'], p['details']].filter((x): x is string => typeof x === 'string' && x !== '').join(': ') || 'evaluation error']
      : [],
  );
  const stop: StopReason[] = [];
  let warn = 0;
  const details = raw['details'];
  const findings = isObject(details) && Array.isArray(details['findings']) ? details['findings'] : [];
  for (const f of findings) {
    if (!isObject(f)) continue;
    // Only a finding the server says is not allowlisted is a reason (a missing flag counts as not).
    if (f['allowlisted'] === true) continue;
    const action = typeof f['action'] === 'string' ? f['action'].toLowerCase() : '';
    if (action === 'stop') {
      stop.push({
        gate: typeof f['gate'] === 'string' ? f['gate'] : 'unknown',
        trigger: typeof f['trigger'] === 'string' ? f['trigger'] : 'unknown',
        output: typeof f['message'] === 'string' ? f['message'] : '',
      });
    } else if (action === 'warn') {
      warn += 1;
    }
  }
  // A pass with a stop finding, or with `final_action: stop`, contradicts itself: a scanner error, never a
  // pass (docs/THREAT-MODEL.md, I4). A fail without any reason is still a fail.
  const finalAction = typeof raw['final_action'] === 'string' ? raw['final_action'].toLowerCase() : undefined;
  if (status === 'pass' && (stop.length > 0 || finalAction === 'stop')) {
    throw new ScannerProtocolError(`scanner check says pass with ${stop.length > 0 ? `${stop.length} stop finding(s)` : 'final_action stop'}: contradictory answer`);
  }
  const reason = raw['final_action_reason'];
  return { status, stop, warn, problems, ...(typeof reason === 'string' ? { finalActionReason: reason } : {}) };
}

/**
 * Reads the `PolicyEvaluation` of GET /v2/images/{image_digest}/check for our digest and tag.
 * `image_digest` and `evaluated_tag`, when the server names them, must be ours. Every entry of
 * `evaluations` counts (as Anchore's admission controller reads it): the image fails if any fails,
 * and the reasons are the stop findings that are not allowlisted. An evaluation with a problem of
 * severity `error` (the policy could not be evaluated) is never a pass: it is a protocol error when
 * it says pass, and the problem becomes the reason when it says fail without a stop finding.
 */
export function parseCheckV2(body: unknown, digest: string, tag: string): PolicyEvaluation {
  if (!isObject(body)) throw new ScannerProtocolError('scanner check response is not an object');
  const answeredDigest = body['image_digest'];
  if (typeof answeredDigest === 'string' && answeredDigest.toLowerCase() !== digest.toLowerCase()) {
    throw new ScannerProtocolError(`scanner check response is for another image (${answeredDigest.slice(0, 80)})`);
  }
  const evaluatedTag = body['evaluated_tag'];
  if (typeof evaluatedTag === 'string' && evaluatedTag !== '' && !sameImageTag(evaluatedTag, tag)) {
    throw new ScannerProtocolError(`scanner check response evaluated another tag (${evaluatedTag.slice(0, 300)})`);
  }
  const evaluations = body['evaluations'];
  if (!Array.isArray(evaluations) || evaluations.length === 0) {
    throw new ScannerProtocolError(`scanner check response has no evaluation for ${tag}`);
  }
  const results = evaluations.map(readResult);
  const failed = results.filter((r) => r.status === 'fail');
  const problems = results.flatMap((r) => r.problems);
  const policyId = typeof body['policy_id'] === 'string' ? { policyId: body['policy_id'] } : {};
  if (failed.length === 0) {
    if (problems.length > 0) {
      throw new ScannerProtocolError(`scanner could not evaluate the policy: ${problems.join('; ').slice(0, 200)}`);
    }
    return { status: 'pass', ...policyId, stopReasons: [], warnCount: results.reduce((n, r) => n + r.warn, 0) };
  }
  const stopReasons = failed.flatMap((r) => r.stop);
  if (stopReasons.length === 0) {
    for (const p of problems) stopReasons.push({ gate: 'policy', trigger: 'evaluation_problem', output: p });
  }
  const first = failed.find((r) => r.finalActionReason !== undefined);
  return {
    status: 'fail',
    ...policyId,
    stopReasons,
    warnCount: failed.reduce((n, r) => n + r.warn, 0),
    ...(first?.finalActionReason !== undefined ? { finalActionReason: first.finalActionReason } : {}),
  };
}
