/**
 * The Anchore API contracts, from the official documents in test/fixtures/reference/ read at test time:
 * Anchore Engine v1 (Swagger 2.0, anchore-engine-v1-swagger.yaml) and Anchore Enterprise v2
 * (OpenAPI 3.0 subset, anchore-enterprise-v2-subset.yaml). Each document is first checked to be a
 * valid Swagger 2.0 / OpenAPI 3.0 document by @seriousme/openapi-schema-validator; then the contract
 * is compiled (openapi-contract.ts).
 *
 * Every place where a contract is stricter or wider than the document is listed below with its
 * reason. Nothing else is adjusted.
 */
import { Validator } from '@seriousme/openapi-schema-validator';
import { createApiContract, parseDocument, type ApiContract } from './openapi-contract.js';
import { readSpecText, V1_SPEC_FILE, V2_SPEC_FILE } from './spec-files.js';

type Json = Record<string, unknown>;

function isJson(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The one structural defect of the v1 document, and how it is worked around. */
export const V1_KNOWN_DEFECT = {
  pointer: '/definitions/ImportPackage/properties/locations/items',
  reason:
    'the v1 document puts "$schema: http://json-schema.org/draft-04/schema#" beside a $ref in ' +
    'ImportPackage.properties.locations.items; Swagger 2.0 schema objects have no $schema keyword, so ' +
    'the document fails its meta-schema there. Swagger 2.0 ignores the siblings of a $ref, so the key is ' +
    'dropped before validation (the definition is not used by any endpoint scangate calls).',
} as const;

/** Removes the known `$schema` sibling (see V1_KNOWN_DEFECT); returns whether it was there. */
export function repairV1Document(doc: unknown): boolean {
  const defs = isJson(doc) ? doc['definitions'] : undefined;
  const pkg = isJson(defs) ? defs['ImportPackage'] : undefined;
  const props = isJson(pkg) ? pkg['properties'] : undefined;
  const locations = isJson(props) ? props['locations'] : undefined;
  const items = isJson(locations) ? locations['items'] : undefined;
  if (!isJson(items) || !('$schema' in items)) return false;
  delete items['$schema'];
  return true;
}

/** Validates a document against the Swagger 2.0 / OpenAPI 3.0 meta-schema; the errors, or []. */
export async function documentProblems(doc: unknown): Promise<{ version: string; problems: string[] }> {
  const validator = new Validator();
  const result = await validator.validate(structuredClone(doc) as Record<string, unknown>);
  const errors = result.errors;
  const problems = result.valid
    ? []
    : typeof errors === 'string'
      ? [errors]
      : (errors ?? []).map((e) => `${e.instancePath || '/'}: ${e.message ?? e.keyword}`);
  return { version: validator.version, problems };
}

/** Every Anchore error body has this shape (ANCHORE-API.md "Errors", ANCHORE-V2-API.md §5). */
const ERROR_SCHEMA = 'ApiErrorResponse';

/**
 * A tag source, or a digest source, or an archive, or an import: exactly one, and not null. Both
 * documents say so only in ImageSource's description ("Only one may be set in any given request").
 */
const EXACTLY_ONE_SOURCE: Json = {
  oneOf: ['tag', 'digest', 'archive', 'import'].map((k) => ({ required: [k], properties: { [k]: { type: 'object' } } })),
};

export interface AnchoreDocuments {
  readonly v1: unknown;
  readonly v2: unknown;
}

let loaded: Promise<AnchoreDocuments> | undefined;

/**
 * Reads both documents once per process (the v1 one with its known defect repaired). Their
 * meta-validation takes seconds, so it is done once, by spec-documents.test.ts, not by every suite.
 */
export function loadAnchoreDocuments(): Promise<AnchoreDocuments> {
  loaded ??= Promise.resolve().then(() => {
    const v1 = parseDocument(readSpecText(V1_SPEC_FILE));
    repairV1Document(v1);
    const v2 = parseDocument(readSpecText(V2_SPEC_FILE));
    return { v1, v2 };
  });
  return loaded;
}

/** Both documents against the Swagger 2.0 / OpenAPI 3.0 meta-schemas: every problem, or []. */
export async function anchoreDocumentProblems(): Promise<string[]> {
  const { v1, v2 } = await loadAnchoreDocuments();
  const [c1, c2] = await Promise.all([documentProblems(v1), documentProblems(v2)]);
  return [
    ...(c1.version === '2.0' ? c1.problems : [`not a Swagger 2.0 document (${c1.version})`]).map((p) => `${V1_SPEC_FILE}: ${p}`),
    ...(c2.version.startsWith('3.0') ? c2.problems : [`not an OpenAPI 3.0 document (${c2.version})`]).map((p) => `${V2_SPEC_FILE}: ${p}`),
  ];
}

/**
 * Anchore Engine v1 as Anchore Engine, Enterprise <= 4.9 and Sysdig Secure serve it.
 * `mountPath`: where the API is served ('/v1' as anchore-cli's ANCHORE_CLI_URL; '' for the
 * server-root `/version` and `/health`).
 */
export async function anchoreV1Contract(mountPath = '/v1'): Promise<ApiContract> {
  const { v1 } = await loadAnchoreDocuments();
  return createApiContract({
    name: 'Anchore Engine v1',
    document: v1,
    annotationFormats: {
      // Connexion (the server's framework) reads `format: path` on a path parameter as "may contain
      // slashes" when it builds its route ({registry}, {servicename}); it is no value constraint.
      path: 'routing hint of the server framework on path parameters',
    },
    // The document's basePath is "/", but the engine serves its external API under /v1
    // (ANCHORE_CLI_URL=http://host:8228/v1, ANCHORE-API.md; Sysdig: /api/scanning/v1/anchore).
    mountPath,
    undocumentedStatuses: {
      statuses: [400, 401, 403, 404, 429, 502, 503, 504],
      schema: ERROR_SCHEMA,
      reason:
        'the v1 document lists only 200 and 500 for these operations, but the engine answers 400 (bad request), ' +
        '401/403 (credentials), 404 ("image is not analyzed", "no active policy", unknown image) with the same ' +
        '{message, httpcode, detail} error body (ANCHORE-API.md "Errors" and section 3); 429/502/503/504 come from the ' +
        'gateways in front of it. Their bodies are held to ApiErrorResponse.',
    },
    pathParameterPatterns: {
      imageDigest: {
        pattern: /^sha256:[a-f0-9]{64}$/,
        reason:
          'the v1 document types {imageDigest} as a bare string; the engine keys images by the manifest digest ' +
          '"sha256:<64 hex>" (its own AnalysisArchiveSource.digest pattern, and v2 declares the same pattern for ' +
          'the same parameter)',
      },
    },
    refinements: {
      ImageAnalysisRequest: {
        // "Either source, digest or tag must be present"; a digest alone is refused, the tag is required
        // with it (ANCHORE-API.md section 1).
        schema: { anyOf: [{ required: ['source'] }, { required: ['tag'] }] },
        reason: 'description of ImageAnalysisRequest; ANCHORE-API.md section 1',
      },
      ImageSource: { schema: EXACTLY_ONE_SOURCE, reason: 'description of ImageSource: "Only one may be set in any given request"' },
    },
  });
}

/** Anchore Enterprise v2 (4.9+, 5.x), served under `<endpoint>/v2` (the document's servers[0]). */
export async function anchoreV2Contract(): Promise<ApiContract> {
  const { v2 } = await loadAnchoreDocuments();
  return createApiContract({
    name: 'Anchore Enterprise v2',
    document: v2,
    annotationFormats: {
      // Connexion (the server's framework) reads `format: path` on a path parameter as "may contain
      // slashes" when it builds its route; it is no value constraint.
      path: 'routing hint of the server framework on {image_digest}',
      // Not a JSON Schema or OpenAPI format (the document writes `date-time` everywhere else); a server
      // validating with jsonschema ignores an unknown format, so it constrains nothing.
      datetime: 'misspelt "date-time" on AnalysisStatusDetail.timestamp and ?analyzed_since',
    },
    undocumentedStatuses: {
      statuses: [401, 429, 502, 503, 504],
      schema: ERROR_SCHEMA,
      reason:
        'the v2 document declares no 401 although every Anchore server refuses bad credentials with it ' +
        '(ANCHORE-V2-API.md sections 5 and 9); 429/502/503/504 come from the gateways in front of the API. ' +
        'Their bodies are held to ApiErrorResponse.',
    },
    refinements: {
      // v2 dropped v1's top-level tag/digest fields (ANCHORE-V2-API.md section 2): without a source the
      // body names no image, though the schema lists no required property.
      ImageAnalysisRequest: { schema: { required: ['source'] }, reason: 'ANCHORE-V2-API.md section 2: source is the only way to name the image' },
      ImageSource: { schema: EXACTLY_ONE_SOURCE, reason: 'description of ImageSource: "Only one may be set in any given request"' },
    },
  });
}
