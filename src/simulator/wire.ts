/**
 * Anchore Engine v1 JSON shapes (test/fixtures/reference/ANCHORE-API.md and the engine's controllers):
 * request bodies in, image records, policy evaluations and vulnerability listings out.
 */
import type { SimVulnerability } from './data.js';
import type { CheckResult, ImageView, SubmitRequest, VulnerabilityType } from './engine.js';
import { AnchoreApiError } from './errors.js';
import { policyBundleOf, vulnerabilityUrl } from './policy.js';
import { DIGEST, parseSimImageRef, type SimImageRef } from './reference.js';
import { checkImageAnalysisRequestTypes } from './request-schemas.js';

/** Anchore prints UTC timestamps without milliseconds. */
export function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function badRequest(problem: string): AnchoreApiError {
  return new AnchoreApiError(400, `Could not validate request due to error: ${problem}`, { validation_error: problem });
}

export function tagRef(field: string, value: unknown): { ref: SimImageRef; digest: string | undefined } {
  if (typeof value !== 'string' || value.trim() === '') throw badRequest(`${field} is required and must be a non-empty string`);
  const parsed = parseSimImageRef(value);
  if (!parsed.ok) throw badRequest(`${field} ${JSON.stringify(value)} is not a valid image reference: ${parsed.error}`);
  if (parsed.ref.digest !== undefined && parsed.ref.tag === undefined) {
    throw badRequest(`${field} ${JSON.stringify(value)} is a digest reference; send a tag and the digest separately`);
  }
  const { digest, ...rest } = parsed.ref;
  return { ref: { ...rest, tag: rest.tag ?? 'latest' }, digest };
}

/** A digest field: `sha256:...` or `repo@sha256:...` of the same repository as the tag. */
export function digestOf(field: string, value: unknown, ref: SimImageRef): string {
  if (typeof value !== 'string') throw badRequest(`${field} must be a string`);
  if (DIGEST.test(value)) return value;
  const parsed = parseSimImageRef(value);
  if (!parsed.ok || parsed.ref.digest === undefined) {
    throw badRequest(`${field} ${JSON.stringify(value)} is neither sha256:<64 hex> nor a digest pull string`);
  }
  if (parsed.ref.repository !== ref.repository) {
    throw badRequest(`${field} ${JSON.stringify(value)} must have the same registry/repo as the tag (${ref.repository})`);
  }
  return parsed.ref.digest;
}

export function mergeDigests(embedded: string | undefined, explicit: string | undefined): string | undefined {
  if (embedded !== undefined && explicit !== undefined && embedded !== explicit) {
    throw badRequest('the digest in the tag and the digest field disagree');
  }
  return explicit ?? embedded;
}

/**
 * Parses a POST /images body: legacy `{"tag", "digest"?}`, or
 * `{"source": {"tag": {"pullstring"}}}` / `{"source": {"digest": {"pullstring", "tag"}}}`.
 */
export function parseAddImageBody(body: unknown): SubmitRequest {
  if (!isObject(body)) throw badRequest('request body must be a JSON object');
  checkImageAnalysisRequestTypes('v1', body);
  const annotations = body['annotations'];
  if (annotations !== undefined && annotations !== null && !isObject(annotations)) {
    throw badRequest('annotations must be an object');
  }
  const withAnnotations = (r: { ref: SimImageRef; digest: string | undefined }): SubmitRequest => ({
    ref: r.ref,
    digest: r.digest,
    annotations: isObject(annotations) ? annotations : undefined,
  });

  const source = body['source'];
  if (source !== undefined && source !== null) {
    if (!isObject(source)) throw badRequest('source must be an object');
    const kinds = Object.keys(source).filter((k) => source[k] !== null && source[k] !== undefined);
    if (kinds.length !== 1) throw badRequest('exactly one of source.tag, source.digest, source.archive, source.import must be set');
    const tagSource = source['tag'];
    const digestSource = source['digest'];
    if (isObject(tagSource)) {
      const t = tagRef('source.tag.pullstring', tagSource['pullstring']);
      return withAnnotations(t);
    }
    if (isObject(digestSource)) {
      const t = tagRef('source.digest.tag', digestSource['tag']);
      const pull = digestSource['pullstring'];
      if (typeof pull !== 'string' || !pull.includes('@')) {
        throw badRequest('source.digest.pullstring is required and must be a digest pull string (repo@sha256:...)');
      }
      return withAnnotations({ ref: t.ref, digest: mergeDigests(t.digest, digestOf('source.digest.pullstring', pull, t.ref)) });
    }
    throw badRequest(`source.${kinds[0] ?? '?'} is not supported by this scanner`);
  }

  const t = tagRef('tag', body['tag']);
  const digest = body['digest'];
  return withAnnotations({
    ref: t.ref,
    digest: mergeDigests(t.digest, digest === undefined || digest === null ? undefined : digestOf('digest', digest, t.ref)),
  });
}

/** One `AnchoreImage`. */
export function imageRecordJson(image: ImageView, user: string): Record<string, unknown> {
  return {
    imageDigest: image.digest,
    parentDigest: image.digest,
    userId: user,
    image_type: 'docker',
    analysis_status: image.status,
    image_status: 'active',
    created_at: isoSeconds(image.createdAtMs),
    last_updated: isoSeconds(image.lastUpdatedMs),
    analyzed_at: image.analyzedAtMs === undefined ? null : isoSeconds(image.analyzedAtMs),
    annotations: image.annotations,
    record_version: '0',
    image_content: {
      metadata: { arch: 'amd64', distro: null, distro_version: null, dockerfile_mode: null, image_size: null, layer_count: null },
    },
    image_detail: image.tags.map((t) => ({
      fulltag: t.fulltag,
      fulldigest: `${t.repository}@${image.digest}`,
      registry: t.registry,
      repo: t.repo,
      tag: t.tag,
      digest: image.digest,
      imageDigest: image.digest,
      imageId: image.imageId,
      userId: user,
      dockerfile: null,
      created_at: isoSeconds(t.addedAtMs),
      last_updated: isoSeconds(t.addedAtMs),
      tag_detected_at: isoSeconds(t.addedAtMs),
    })),
  };
}

export const CHECK_HEADER = [
  'Image_Id',
  'Repo_Tag',
  'Trigger_Id',
  'Gate',
  'Trigger',
  'Check_Output',
  'Gate_Action',
  'Whitelisted',
  'Policy_Id',
] as const;

/**
 * The `[{digest: {fulltag: [evaluation]}}]` answer of GET /images/{digest}/check.
 *
 * `detail.result` carries the table twice on purpose: under `detail.result[imageId].result`, the
 * shape ANCHORE-API.md documents, and under `detail.result.result[image_id].result` next to
 * `image_id`, `final_action` etc., the shape Anchore Engine itself returns (anchore-cli reads
 * `detail['result']['result'][image_id]['result']`). A client reading either works here.
 */
export function checkJson(check: CheckResult, detail: boolean): unknown[] {
  const { outcome, policy } = check;
  const table = {
    header: [...CHECK_HEADER],
    row_count: outcome.rows.length,
    rows: outcome.rows.map((r) => [
      check.imageId,
      check.fulltag,
      r.triggerId,
      r.gate,
      r.trigger,
      r.checkOutput,
      r.action,
      false,
      policy.id,
    ]),
    final_action: outcome.finalAction,
  };
  const evaluatedAt = Math.floor(check.evaluatedAtMs / 1000);
  const evaluation = {
    detail: detail
      ? {
          result: {
            [check.imageId]: { result: table },
            image_id: check.imageId,
            result: { [check.imageId]: { result: table } },
            tag: check.fulltag,
            final_action: outcome.finalAction,
            final_action_reason: 'policy_evaluation',
            evaluation_problems: [],
            matched_mapping_rule: { id: `${policy.id}-mapping`, name: 'default', policy_ids: [policy.id] },
            matched_whitelisted_images_rule: false,
            matched_blacklisted_images_rule: false,
            created_at: evaluatedAt,
            last_modified: evaluatedAt,
          },
          policy: policyBundleOf(policy),
        }
      : {},
    last_evaluation: isoSeconds(check.evaluatedAtMs),
    policyId: policy.id,
    status: outcome.status,
  };
  return [{ [check.digest]: { [check.fulltag]: [evaluation] } }];
}

function vulnerabilityJson(v: SimVulnerability): Record<string, unknown> {
  return {
    vuln: v.vuln,
    severity: v.severity,
    package: v.package,
    fix: v.fix ?? 'None',
    url: vulnerabilityUrl(v),
    package_name: v.packageName ?? v.package,
    package_type: v.packageType,
    package_path: v.packagePath ?? 'None',
    feed: 'vulnerabilities',
    feed_group: 'simulator',
    nvd_data: [],
    vendor_data: [],
  };
}

export function vulnerabilitiesJson(digest: string, type: VulnerabilityType, vulns: readonly SimVulnerability[]): unknown {
  return { imageDigest: digest, vulnerability_type: type, vulnerabilities: vulns.map(vulnerabilityJson) };
}

export function errorJson(httpcode: number, message: string, detail: Record<string, unknown> = {}): unknown {
  return { message, httpcode, detail };
}
