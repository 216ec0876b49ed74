/**
 * Anchore Enterprise API v2 JSON shapes (test/fixtures/reference/ANCHORE-V2-API.md and the OpenAPI subset
 * anchore-enterprise-v2-subset.yaml beside it): the ImageAnalysisRequest in; AnchoreImage,
 * PolicyEvaluation, ServiceVersion and ApiErrorResponse out. The same engine answers both APIs, so
 * an image, its lifecycle and its verdict are the same whichever API asks.
 */
import type { SimPolicy } from './data.js';
import type { CheckResult, ImageView, SubmitRequest } from './engine.js';
import { AnchoreApiError } from './errors.js';
import { parseSimImageRef } from './reference.js';
import { checkImageAnalysisRequestTypes } from './request-schemas.js';
import { badRequest, digestOf, isObject, isoSeconds, mergeDigests, tagRef } from './wire.js';

/** What `api.version` a v2 server reports in `GET /v2/version`. */
export const V2_API_VERSION = '2';

function requiredString(field: string, value: unknown): string {
  if (typeof value !== 'string' || value.trim() === '') throw badRequest(`'${field}' is a required property and must be a non-empty string`);
  return value;
}

/**
 * Parses a `POST /v2/images` body (`ImageAnalysisRequest`): `source` with exactly one of `tag`
 * (`RegistryTagSource`: `pull_string`) or `digest` (`RegistryDigestSource`: `pull_string` + `tag`);
 * `archive` and `import` are valid sources this simulator does not analyse (400). The v1 spellings
 * (`pullstring`, a top-level `tag`) are refused the way the real server refuses them: the required
 * `pull_string` / `source` is missing.
 */
export function parseAddImageBodyV2(body: unknown): SubmitRequest {
  if (!isObject(body)) throw badRequest('request body must be a JSON object (ImageAnalysisRequest)');
  checkImageAnalysisRequestTypes('v2', body);
  const annotations = body['annotations'];
  if (annotations !== undefined && !isObject(annotations)) throw badRequest("'annotations' must be an object");
  const imageType = body['image_type'];
  if (imageType !== undefined && imageType !== 'docker') throw badRequest(`image_type ${JSON.stringify(imageType)} is not supported (only "docker")`);
  const source = body['source'];
  if (!isObject(source)) throw badRequest("'source' is a required property and must be an object (ImageSource)");
  const kinds = ['tag', 'digest', 'archive', 'import'].filter((k) => source[k] !== undefined && source[k] !== null);
  if (kinds.length !== 1) throw badRequest('exactly one of source.tag, source.digest, source.archive, source.import must be set');
  const annotated = (r: { ref: SubmitRequest['ref']; digest: string | undefined }): SubmitRequest => ({
    ref: r.ref,
    digest: r.digest,
    annotations: isObject(annotations) ? annotations : undefined,
  });
  const tagSource = source['tag'];
  const digestSource = source['digest'];
  if (kinds[0] === 'tag') {
    if (!isObject(tagSource)) throw badRequest("'source.tag' must be an object (RegistryTagSource)");
    const pull = requiredString('source.tag.pull_string', tagSource['pull_string']);
    const parsed = parseSimImageRef(pull);
    if (parsed.ok && parsed.ref.digest !== undefined && parsed.ref.tag === undefined) {
      // Valid per the spec; the simulator keeps every image under a tag, so it asks for a digest source.
      throw badRequest(`source.tag.pull_string ${JSON.stringify(pull)} names no tag: this simulator needs source.digest with a tag for it`);
    }
    return annotated(tagRef('source.tag.pull_string', pull));
  }
  if (kinds[0] === 'digest') {
    if (!isObject(digestSource)) throw badRequest("'source.digest' must be an object (RegistryDigestSource)");
    const pull = requiredString('source.digest.pull_string', digestSource['pull_string']);
    const t = tagRef('source.digest.tag', requiredString('source.digest.tag', digestSource['tag']));
    if (!pull.includes('@')) throw badRequest('source.digest.pull_string must be a digest pull string (repo@sha256:...)');
    const override = digestSource['creation_timestamp_override'];
    if (override !== undefined && (typeof override !== 'string' || Number.isNaN(Date.parse(override)))) {
      throw badRequest('source.digest.creation_timestamp_override must be a date-time');
    }
    return annotated({ ref: t.ref, digest: mergeDigests(t.digest, digestOf('source.digest.pull_string', pull, t.ref)) });
  }
  throw badRequest(`source.${kinds[0] ?? '?'} is not supported by this scanner simulator`);
}

/** One `AnchoreImage`. */
export function imageRecordJsonV2(image: ImageView, account: string): Record<string, unknown> {
  return {
    image_digest: image.digest,
    parent_digest: image.digest,
    account_name: account,
    analysis_status: image.status,
    image_status: 'active',
    created_at: isoSeconds(image.createdAtMs),
    last_updated: isoSeconds(image.lastUpdatedMs),
    annotations: image.annotations,
    record_version: '1',
    analysis_status_detail: [],
    image_content: { metadata: { arch: 'amd64' } },
    image_detail: image.tags.map((t) => ({
      full_tag: t.fulltag,
      full_digest: `${t.repository}@${image.digest}`,
      registry: t.registry,
      repo: t.repo,
      tag: t.tag,
      image_digest: image.digest,
      image_id: image.imageId,
      account_name: account,
      dockerfile: null,
      created_at: isoSeconds(t.addedAtMs),
      last_updated: isoSeconds(t.addedAtMs),
      tag_detected_at: isoSeconds(t.addedAtMs),
    })),
  };
}

/** The policy document (`Policy`, format version 2) that `details.policy` carries. */
export function policyDocumentV2(policy: SimPolicy): Record<string, unknown> {
  const ruleSetId = `${policy.id}-rules`;
  const rules = [
    ...policy.stopSeverities.map((s) => ({ s, action: 'STOP' as const })),
    ...policy.warnSeverities.map((s) => ({ s, action: 'WARN' as const })),
  ].map(({ s, action }, i) => ({
    id: `${policy.id}-rule-${String(i)}`,
    gate: 'vulnerabilities',
    trigger: 'package',
    action,
    params: [
      { name: 'package_type', value: 'all' },
      { name: 'severity_comparison', value: '=' },
      { name: 'severity', value: s.toLowerCase() },
    ],
  }));
  return {
    id: policy.id,
    name: policy.name,
    version: '2',
    description: 'scanner simulator policy',
    allowlists: [],
    rule_sets: [{ id: ruleSetId, name: policy.name, version: '2', artifact_type: 'image', rules }],
    mappings: [
      {
        id: `${policy.id}-mapping`,
        name: 'default',
        registry: '*',
        repository: '*',
        image: { type: 'tag', value: '*' },
        rule_set_ids: [ruleSetId],
        allowlist_ids: [],
      },
    ],
    allowlisted_images: [],
    denylisted_images: [],
  };
}

/**
 * The `PolicyEvaluation` answer of `GET /v2/images/{image_digest}/check`: one evaluation (history is
 * not kept), its findings one per policy row (`action` lower case, never allowlisted). `details` is
 * null with `detail=false`.
 */
export function checkJsonV2(check: CheckResult, detail: boolean): Record<string, unknown> {
  const { outcome, policy } = check;
  const ruleIndex = (action: 'stop' | 'warn', severityOf: string): number => {
    const list = action === 'stop' ? policy.stopSeverities : policy.warnSeverities;
    const at = list.findIndex((s) => severityOf.startsWith(s.toUpperCase()));
    return (action === 'stop' ? 0 : policy.stopSeverities.length) + Math.max(0, at);
  };
  const findings = outcome.rows.map((r) => ({
    trigger_id: r.triggerId,
    gate: r.gate,
    trigger: r.trigger,
    message: r.checkOutput,
    action: r.action,
    policy_id: policy.id,
    recommendation: '',
    rule_id: `${policy.id}-rule-${String(ruleIndex(r.action, r.checkOutput))}`,
    allowlisted: false,
    allowlist_match: null,
    inherited_from_base: false,
  }));
  const evaluation = {
    status: outcome.status,
    final_action: outcome.finalAction,
    final_action_reason: 'policy_evaluation',
    evaluation_time: isoSeconds(check.evaluatedAtMs),
    evaluation_problems: [],
    number_of_findings: findings.length,
    image_allowlisted: false,
    image_denylisted: false,
    image_mapped_to_rule: true,
    matched_allowlisted_images_rule: null,
    matched_denylisted_images_rule: null,
    matched_mapping_rule: (policyDocumentV2(policy)['mappings'] as unknown[])[0],
    comparison_image_digest: null,
    details: detail ? { policy: policyDocumentV2(policy), policy_action: outcome.finalAction, findings, remediations: null } : null,
  };
  return { policy_id: policy.id, image_digest: check.digest, evaluated_tag: check.fulltag, evaluations: [evaluation] };
}

/** `ServiceVersion` of `GET /v2/version`. */
export function versionJsonV2(serviceVersion: string): Record<string, unknown> {
  return { service: { version: serviceVersion }, api: { version: V2_API_VERSION }, db: { schema_version: '2.0.0' } };
}

const ERROR_TYPES: Record<number, string> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  413: 'request_too_large',
  429: 'too_many_requests',
};

/** `ApiErrorResponse`: `{code, error_type, message, detail}`. */
export function errorJsonV2(code: number, message: string, detail: Record<string, unknown> = {}): Record<string, unknown> {
  return { code, error_type: ERROR_TYPES[code] ?? (code >= 500 ? 'internal_error' : 'client_error'), message, detail };
}

export function apiErrorJsonV2(err: AnchoreApiError): Record<string, unknown> {
  return errorJsonV2(err.httpcode, err.message, err.detail);
}

/**
 * The query parameters each v2 operation declares: anything else is refused with 400, as a strictly
 * validating server would, so that a client sending v1 spellings (`autosubscribe`, `policyId`,
 * `fulltag`) fails loudly instead of being silently ignored.
 */
export const V2_QUERY_PARAMETERS = {
  addImage: ['force', 'auto_subscribe'],
  listImages: ['image_id', 'history', 'full_tag', 'image_status', 'analysis_status', 'analyzed_since'],
  getImage: [],
  check: ['policy_id', 'tag', 'detail', 'history', 'interactive', 'base_digest'],
  version: [],
} as const;

/** The enumerated query parameters (list_images), with the values the spec allows. */
const V2_QUERY_ENUMS: Record<string, readonly string[]> = {
  image_status: ['all', 'active', 'deleting'],
  analysis_status: ['not_analyzed', 'analyzed', 'analyzing', 'analysis_failed'],
};

/** Refuses undeclared query parameters, non-boolean values of the boolean ones and values outside an enum. */
export function checkQueryV2(operation: keyof typeof V2_QUERY_PARAMETERS, query: URLSearchParams): void {
  const allowed: readonly string[] = V2_QUERY_PARAMETERS[operation];
  const extra = [...new Set(query.keys())].filter((k) => !allowed.includes(k));
  if (extra.length > 0) {
    throw new AnchoreApiError(400, `Extra query parameter(s) ${extra.join(', ')} not in spec`, { parameters: extra });
  }
  for (const name of ['force', 'auto_subscribe', 'history', 'detail', 'interactive']) {
    const value = query.get(name);
    if (value !== null && !/^(true|false)$/i.test(value)) {
      throw new AnchoreApiError(400, `'${value}' is not of type 'boolean' - '${name}'`, { parameter: name });
    }
  }
  for (const [name, allowedValues] of Object.entries(V2_QUERY_ENUMS)) {
    const value = query.get(name);
    if (value !== null && !allowedValues.includes(value)) {
      throw new AnchoreApiError(400, `'${value}' is not one of ${JSON.stringify(allowedValues)} - '${name}'`, { parameter: name });
    }
  }
}
