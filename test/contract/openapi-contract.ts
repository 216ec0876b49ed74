/**
 * An API contract built from an official Swagger 2.0 or OpenAPI 3.0 document: it matches a recorded
 * HTTP exchange to the document's operation (method + path template) and lists everything in it that
 * the document does not allow, on both sides:
 *
 * - request: the path matches a template and the method is an operation of it; path parameters
 *   against their schema (and sent without needless percent-encoding: `sha256:…`, not `sha256%3A…`);
 *   required query/header parameters present, no query parameter the operation does not declare,
 *   each value against its schema (booleans are `true`/`false`, ...); the body against the request
 *   schema with a declared content type, and no body on an operation that takes none;
 * - response: the status is documented for the operation (or `default`), the body is JSON of a
 *   declared media type and valid against that status's schema.
 *
 * Schemas are validated by Ajv (JSON Schema draft-07, strict mode, every format checked by
 * ajv-formats) after a mechanical conversion of the dialect: Swagger 2 `definitions` and OpenAPI 3
 * `components.schemas` become one schema with `definitions`; `nullable` / `x-nullable` become a
 * `null` type; `$ref` siblings are dropped, as both dialects ignore them; annotation-only keywords
 * (`example`, `xml`, `externalDocs`, `discriminator`, `x-*`) are removed. Any keyword or format the
 * conversion does not know makes Ajv throw at compile time, so a spec that changes shape fails loudly
 * instead of being validated loosely.
 *
 * What the official documents leave out but a real server does (statuses every Anchore server
 * answers, constraints written only in a description) is added by the caller through
 * `ContractOptions`, each with the reason, so every deviation from the document is named.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsPlugin from 'ajv-formats';
import { parse as parseYaml } from 'yaml';

// ajv-formats is CommonJS (`module.exports = plugin; exports.default = plugin`): under nodenext the
// default import is typed as the module object, whose `default` is the plugin.
const addFormats = addFormatsPlugin.default;

type Json = Record<string, unknown>;
export type Dialect = 'swagger-2.0' | 'openapi-3.0';
export type Headers = Record<string, string | readonly string[] | undefined>;

export interface RecordedRequest {
  readonly method: string;
  /** The request target exactly as sent on the wire: raw path and query. */
  readonly url: string;
  readonly headers: Headers;
  readonly body: Buffer;
}

export interface RecordedResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Buffer;
}

export interface HttpExchange {
  readonly request: RecordedRequest;
  readonly response: RecordedResponse;
}

export interface ContractOptions {
  /** Names the contract in every problem, e.g. "Anchore Engine v1". */
  readonly name: string;
  /** The parsed document (YAML or JSON). */
  readonly document: unknown;
  /** Where the API is served; default: Swagger 2 `basePath`, OpenAPI 3 the path of `servers[0].url`. */
  readonly mountPath?: string;
  /** Formats the document uses that are not JSON Schema / OpenAPI formats: name -> why it is an annotation. */
  readonly annotationFormats?: Readonly<Record<string, string>>;
  /** Statuses a real server answers on every operation although the document does not list them. */
  readonly undocumentedStatuses?: { readonly statuses: readonly number[]; readonly schema: string; readonly reason: string };
  /** Stricter patterns for path parameters the document leaves as a bare string. */
  readonly pathParameterPatterns?: Readonly<Record<string, { readonly pattern: RegExp; readonly reason: string }>>;
  /** Constraints the document states only in prose, added to a named schema with `allOf`. */
  readonly refinements?: Readonly<Record<string, { readonly schema: Json; readonly reason: string }>>;
}

export interface OperationInfo {
  readonly operationId: string;
  readonly method: string;
  readonly template: string;
}

export type MatchResult =
  | { readonly ok: true; readonly operation: OperationInfo; readonly rawPathParams: Readonly<Record<string, string>> }
  | { readonly ok: false; readonly problem: string };

export interface ApiContract {
  readonly name: string;
  readonly dialect: Dialect;
  readonly mountPath: string;
  readonly operations: readonly OperationInfo[];
  /** The names of the document's schemas (`definitions` or `components.schemas`). */
  readonly schemaNames: readonly string[];
  match(method: string, url: string): MatchResult;
  checkRequest(request: RecordedRequest): string[];
  checkResponse(exchange: HttpExchange): string[];
  /** Both sides of the exchange. */
  check(exchange: HttpExchange): string[];
  /** Validates a value against one of the document's schemas by name (refinements included). */
  validateSchema(name: string, value: unknown): string[];
  /** Compiles every schema of the document now (they are compiled on first use); throws on the first that fails. */
  compileAll(): void;
}

/** Validates a value; the problems, each prefixed with `where`, or []. */
type SchemaCheck = (value: unknown, where: string) => string[];

interface ParameterSpec {
  readonly name: string;
  readonly in: 'path' | 'query' | 'header' | 'cookie';
  readonly required: boolean;
  /** For arrays: how the values are sent (`csv`, `multi`, ... ; OpenAPI 3 form+explode = multi). */
  readonly arrayFormat: 'csv' | 'ssv' | 'tsv' | 'pipes' | 'multi';
  readonly schema: Json;
  readonly validate: SchemaCheck;
}

interface BodySpec {
  readonly required: boolean;
  readonly mediaTypes: readonly string[];
  readonly validate: SchemaCheck | undefined;
}

interface ResponseSpec {
  readonly mediaTypes: readonly string[];
  readonly validate: SchemaCheck | undefined;
  readonly note?: string;
}

interface Operation extends OperationInfo {
  readonly regex: RegExp;
  readonly paramNames: readonly string[];
  readonly literalLength: number;
  readonly parameters: readonly ParameterSpec[];
  readonly body: BodySpec | undefined;
  readonly responses: ReadonlyMap<string, ResponseSpec>;
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
/** Keywords of OpenAPI / Swagger schemas that carry no validation meaning. */
const ANNOTATION_KEYWORDS = new Set(['example', 'xml', 'externalDocs', 'discriminator', 'nullable']);
/** Characters RFC 3986 allows as they are in a path segment (pchar minus pct-encoded). */
const PCHAR = /^[A-Za-z0-9\-._~!$&'()*+,;=:@]$/;
const MAX_PROBLEMS_PER_CHECK = 25;

function isJson(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function slug(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, '-');
}

function headerValue(headers: Headers, name: string): string | undefined {
  const wanted = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== wanted || value === undefined) continue;
    return typeof value === 'string' ? value : value.join(', ');
  }
  return undefined;
}

/** `application/json; charset=utf-8` -> `application/json`. */
function mediaTypeOf(contentType: string | undefined): string | undefined {
  if (contentType === undefined) return undefined;
  const type = contentType.split(';')[0]?.trim().toLowerCase();
  return type === '' ? undefined : type;
}

function mediaTypeAllowed(actual: string, declared: readonly string[]): boolean {
  return declared.some((d) => {
    const want = d.toLowerCase();
    if (want === '*/*' || want === actual) return true;
    return want.endsWith('/*') && actual.startsWith(want.slice(0, -1));
  });
}

function isJsonMediaType(type: string): boolean {
  return type === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(type) || type === '*/*';
}

export function formatAjvErrors(errors: readonly ErrorObject[] | null | undefined, where: string): string[] {
  return (errors ?? []).map((e) => {
    const at = `${where}${e.instancePath === '' ? '' : e.instancePath}`;
    const params = e.params as Record<string, unknown>;
    let extra = '';
    if (e.keyword === 'additionalProperties') extra = ` (${String(params['additionalProperty'])})`;
    else if (e.keyword === 'enum') extra = ` (${JSON.stringify(params['allowedValues'])})`;
    return `${at}: ${e.message ?? e.keyword}${extra}`;
  });
}

/** Parses a YAML or JSON document text. */
export function parseDocument(text: string): unknown {
  return parseYaml(text, { uniqueKeys: true }) as unknown;
}

/** Builds the contract of one document; throws when the document cannot be compiled. */
export function createApiContract(options: ContractOptions): ApiContract {
  const doc = options.document;
  if (!isJson(doc)) throw new Error(`${options.name}: the document is not an object`);
  const dialect: Dialect | undefined =
    doc['swagger'] === '2.0' ? 'swagger-2.0' : typeof doc['openapi'] === 'string' && doc['openapi'].startsWith('3.0.') ? 'openapi-3.0' : undefined;
  if (dialect === undefined) throw new Error(`${options.name}: neither "swagger: 2.0" nor "openapi: 3.0.x"`);
  const rootId = `urn:scangate:contract:${slug(options.name)}`;
  const schemaPrefix = dialect === 'swagger-2.0' ? '#/definitions/' : '#/components/schemas/';
  const rawSchemas: unknown =
    dialect === 'swagger-2.0' ? doc['definitions'] : isJson(doc['components']) ? doc['components']['schemas'] : undefined;
  const schemas: Json = isJson(rawSchemas) ? rawSchemas : {};

  /** Follows a local `$ref` to a non-schema object (parameter, response, request body). */
  const resolve = (value: unknown): unknown => {
    let current = value;
    for (let hops = 0; isJson(current) && typeof current['$ref'] === 'string'; hops += 1) {
      const ref = current['$ref'];
      if (hops > 16 || !ref.startsWith('#/')) throw new Error(`${options.name}: cannot resolve $ref ${ref}`);
      let target: unknown = doc;
      for (const part of ref.slice(2).split('/')) {
        const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
        target = isJson(target) ? target[key] : undefined;
      }
      if (target === undefined) throw new Error(`${options.name}: dangling $ref ${ref}`);
      current = target;
    }
    return current;
  };

  const convert = (schema: unknown, at: string): Json => {
    if (!isJson(schema)) throw new Error(`${options.name}: schema at ${at} is not an object`);
    const ref = schema['$ref'];
    if (typeof ref === 'string') {
      // Both dialects ignore the siblings of a $ref (the v1 document has a stray "$schema" beside one).
      if (!ref.startsWith(schemaPrefix)) throw new Error(`${options.name}: unsupported schema $ref ${ref} at ${at}`);
      return { $ref: `${rootId}#/definitions/${ref.slice(schemaPrefix.length)}` };
    }
    const out: Json = {};
    for (const [key, value] of Object.entries(schema)) {
      if (key.startsWith('x-') || ANNOTATION_KEYWORDS.has(key)) continue;
      switch (key) {
        case 'properties':
          if (!isJson(value)) throw new Error(`${options.name}: properties at ${at} is not an object`);
          out[key] = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, convert(v, `${at}/properties/${k}`)]));
          break;
        case 'items':
          out[key] = Array.isArray(value) ? value.map((v, i) => convert(v, `${at}/items/${String(i)}`)) : convert(value, `${at}/items`);
          break;
        case 'additionalProperties':
          out[key] = typeof value === 'boolean' ? value : convert(value, `${at}/additionalProperties`);
          break;
        case 'allOf':
        case 'anyOf':
        case 'oneOf':
          if (!Array.isArray(value)) throw new Error(`${options.name}: ${key} at ${at} is not an array`);
          out[key] = value.map((v, i) => convert(v, `${at}/${key}/${String(i)}`));
          break;
        case 'not':
          out[key] = convert(value, `${at}/not`);
          break;
        case 'exclusiveMinimum':
        case 'exclusiveMaximum': {
          // Draft-04 booleans (both dialects) become draft-07 numbers.
          if (typeof value === 'boolean') {
            const bound = key === 'exclusiveMinimum' ? 'minimum' : 'maximum';
            if (value && typeof schema[bound] === 'number') out[key] = schema[bound];
          } else {
            out[key] = value;
          }
          break;
        }
        case 'minimum':
        case 'maximum':
          if (schema[key === 'minimum' ? 'exclusiveMinimum' : 'exclusiveMaximum'] !== true) out[key] = value;
          break;
        default:
          out[key] = value;
      }
    }
    const nullable = schema['nullable'] === true || (dialect === 'swagger-2.0' && schema['x-nullable'] === true);
    if (!nullable) return out;
    if (typeof out['type'] === 'string') {
      out['type'] = [out['type'], 'null'];
      if (Array.isArray(out['enum']) && !out['enum'].includes(null)) out['enum'] = [...(out['enum'] as unknown[]), null];
      return out;
    }
    return { anyOf: [out, { type: 'null' }] };
  };

  const definitions: Json = {};
  for (const [name, schema] of Object.entries(schemas)) {
    const converted = convert(schema, `${schemaPrefix}${name}`);
    const refinement = options.refinements?.[name];
    definitions[name] = refinement === undefined ? converted : { allOf: [converted, refinement.schema] };
  }
  for (const name of Object.keys(options.refinements ?? {})) {
    if (!(name in definitions)) throw new Error(`${options.name}: refinement of unknown schema ${name}`);
  }

  const ajv = new Ajv({
    allErrors: true,
    // Unknown keywords and unknown formats are errors. Type/required strictness is off: the documents
    // put `properties` on schemas without `type: object` and `required` names without a property.
    strict: true,
    strictTypes: false,
    strictRequired: false,
    strictTuples: false,
    validateFormats: true,
    // The documents' patterns are written for Python's re, the servers' engine: identity escapes such
    // as `\:` (v1 WhitelistItem.expires_on) and `[a-z0-9-_.*]` are ECMA-262 only without the u flag.
    unicodeRegExp: false,
  });
  addFormats(ajv);
  for (const format of Object.keys(options.annotationFormats ?? {})) ajv.addFormat(format, true);
  ajv.addSchema({ $id: rootId, definitions });
  // Compiling all of a large document (v1 has 112 operations) takes seconds; each schema is compiled
  // on its first use, and compileAll() forces every one (the document test does).
  const pending: SchemaCheck[] = [];
  const compile = (schema: Json, at = 'schema'): SchemaCheck => {
    let fn: ValidateFunction | undefined;
    const check: SchemaCheck = (value, where) => {
      if (fn === undefined) {
        try {
          fn = ajv.compile(schema);
        } catch (error) {
          throw new Error(`${options.name}: cannot compile ${at}: ${(error as Error).message}`, { cause: error });
        }
      }
      return fn(value) ? [] : formatAjvErrors(fn.errors, where);
    };
    pending.push(check);
    return check;
  };
  const named = new Map<string, SchemaCheck>();
  const namedValidator = (name: string): SchemaCheck => {
    let fn = named.get(name);
    if (fn === undefined) {
      if (!(name in definitions)) throw new Error(`${options.name}: no schema named ${name}`);
      fn = compile({ $ref: `${rootId}#/definitions/${name}` }, `schema ${name}`);
      named.set(name, fn);
    }
    return fn;
  };

  const docConsumes = Array.isArray(doc['consumes']) ? (doc['consumes'] as string[]) : ['application/json'];
  const docProduces = Array.isArray(doc['produces']) ? (doc['produces'] as string[]) : ['application/json'];

  const parameterOf = (raw: unknown, at: string): ParameterSpec | { body: BodySpec } => {
    const p = resolve(raw);
    if (!isJson(p) || typeof p['name'] !== 'string' || typeof p['in'] !== 'string') throw new Error(`${options.name}: bad parameter at ${at}`);
    const name = p['name'];
    if (p['in'] === 'body') {
      return { body: { required: p['required'] === true, mediaTypes: [], validate: compile(convert(p['schema'], `${at}/schema`), at) } };
    }
    if (p['in'] === 'formData') {
      // Form fields (multipart uploads) are not validated: no endpoint scangate calls takes them.
      return { body: { required: p['required'] === true, mediaTypes: [], validate: undefined } };
    }
    const location = p['in'] as ParameterSpec['in'];
    let schema: Json;
    let arrayFormat: ParameterSpec['arrayFormat'];
    if (dialect === 'swagger-2.0') {
      // A Swagger 2 parameter carries its schema keywords inline, beside the parameter's own fields.
      const PARAMETER_FIELDS = new Set(['name', 'in', 'required', 'description', 'collectionFormat', 'allowEmptyValue']);
      schema = convert(Object.fromEntries(Object.entries(p).filter(([k]) => !PARAMETER_FIELDS.has(k))), at);
      const collectionFormat = p['collectionFormat'];
      arrayFormat = (typeof collectionFormat === 'string' ? collectionFormat : 'csv') as ParameterSpec['arrayFormat'];
    } else {
      schema = convert(p['schema'] ?? {}, `${at}/schema`);
      const style = typeof p['style'] === 'string' ? p['style'] : location === 'query' || location === 'cookie' ? 'form' : 'simple';
      const explode = typeof p['explode'] === 'boolean' ? p['explode'] : style === 'form';
      arrayFormat = style === 'form' && explode ? 'multi' : style === 'spaceDelimited' ? 'ssv' : style === 'pipeDelimited' ? 'pipes' : 'csv';
    }
    const extra = location === 'path' ? options.pathParameterPatterns?.[name] : undefined;
    if (extra !== undefined) schema = { allOf: [schema, { type: 'string', pattern: extra.pattern.source }] };
    return { name, in: location, required: p['required'] === true || location === 'path', arrayFormat, schema, validate: compile(schema, at) };
  };

  const responsesOf = (raw: unknown, produces: readonly string[], at: string): Map<string, ResponseSpec> => {
    const map = new Map<string, ResponseSpec>();
    if (!isJson(raw)) throw new Error(`${options.name}: ${at} has no responses`);
    for (const [code, value] of Object.entries(raw)) {
      const r = resolve(value);
      if (!isJson(r)) throw new Error(`${options.name}: bad response ${code} at ${at}`);
      if (dialect === 'swagger-2.0') {
        // `type: file` is a download, not JSON.
        const schema = isJson(r['schema']) && r['schema']['type'] !== 'file' ? r['schema'] : undefined;
        map.set(code, { mediaTypes: produces, validate: schema === undefined ? undefined : compile(convert(schema, `${at}/${code}/schema`), `${at} ${code}`) });
      } else {
        const content = isJson(r['content']) ? r['content'] : {};
        const types = Object.keys(content);
        const json = types.find((t) => isJsonMediaType(t.toLowerCase()));
        const media = json === undefined ? undefined : content[json];
        const schema = isJson(media) ? media['schema'] : undefined;
        map.set(code, { mediaTypes: types, validate: schema === undefined ? undefined : compile(convert(schema, `${at}/${code}/content/${String(json)}/schema`), `${at} ${code}`) });
      }
    }
    return map;
  };

  const operations: Operation[] = [];
  const paths = isJson(doc['paths']) ? doc['paths'] : {};
  for (const [template, rawItem] of Object.entries(paths)) {
    const item = resolve(rawItem);
    if (!isJson(item)) continue;
    const shared = Array.isArray(item['parameters']) ? (item['parameters'] as unknown[]) : [];
    const paramNames: string[] = [];
    const pattern = template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{([^}]+)\}/g, (_m, name: string) => {
      paramNames.push(name);
      return '([^/]+)';
    });
    const regex = new RegExp(`^${pattern === '/' ? '/' : pattern}$`);
    const literalLength = template.replace(/\{[^}]+\}/g, '').length;
    for (const method of METHODS) {
      const op = item[method];
      if (!isJson(op)) continue;
      const at = `${method.toUpperCase()} ${template}`;
      const operationId = typeof op['operationId'] === 'string' ? op['operationId'] : at;
      const own = Array.isArray(op['parameters']) ? (op['parameters'] as unknown[]) : [];
      const byKey = new Map<string, ParameterSpec>();
      let body: BodySpec | undefined;
      const consumes = Array.isArray(op['consumes']) ? (op['consumes'] as string[]) : docConsumes;
      for (const [i, raw] of [...shared, ...own].entries()) {
        const spec = parameterOf(raw, `${at} parameter ${String(i)}`);
        if ('body' in spec) body = { ...spec.body, mediaTypes: consumes };
        else byKey.set(`${spec.in}:${spec.in === 'header' ? spec.name.toLowerCase() : spec.name}`, spec); // operation wins over path item
      }
      if (dialect === 'openapi-3.0' && op['requestBody'] !== undefined) {
        const rb = resolve(op['requestBody']);
        if (!isJson(rb) || !isJson(rb['content'])) throw new Error(`${options.name}: bad requestBody at ${at}`);
        const types = Object.keys(rb['content']);
        const json = types.find((t) => isJsonMediaType(t.toLowerCase()));
        const media = json === undefined ? undefined : rb['content'][json];
        const schema = isJson(media) ? media['schema'] : undefined;
        body = { required: rb['required'] === true, mediaTypes: types, validate: schema === undefined ? undefined : compile(convert(schema, `${at} requestBody`), `${at} requestBody`) };
      }
      const produces = Array.isArray(op['produces']) ? (op['produces'] as string[]) : docProduces;
      const parameters = [...byKey.values()];
      for (const name of paramNames) {
        if (!parameters.some((p) => p.in === 'path' && p.name === name)) throw new Error(`${options.name}: ${at} does not declare path parameter ${name}`);
      }
      operations.push({
        operationId,
        method: method.toUpperCase(),
        template,
        regex,
        paramNames,
        literalLength,
        parameters,
        body,
        responses: responsesOf(op['responses'], produces, at),
      });
    }
  }

  const defaultMount = (): string => {
    if (dialect === 'swagger-2.0') return typeof doc['basePath'] === 'string' ? doc['basePath'] : '';
    const servers = doc['servers'];
    const first: unknown = Array.isArray(servers) ? servers[0] : undefined;
    const url = isJson(first) && typeof first['url'] === 'string' ? first['url'] : '';
    return /^[a-z]+:\/\//i.test(url) ? new URL(url).pathname : url;
  };
  const mountPath = (options.mountPath ?? defaultMount()).replace(/\/+$/, '');

  const undocumented = options.undocumentedStatuses;
  const undocumentedValidator = undocumented === undefined ? undefined : namedValidator(undocumented.schema);

  const matchOperation = (method: string, url: string): { op: Operation; raw: Record<string, string> } | { problem: string } => {
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (mountPath !== '' && path !== mountPath && !path.startsWith(`${mountPath}/`)) {
      return { problem: `${method} ${path}: outside the API's base path ${mountPath}` };
    }
    const rest = path.slice(mountPath.length) === '' ? '/' : path.slice(mountPath.length);
    const candidates = operations
      .filter((o) => o.regex.test(rest))
      .sort((a, b) => b.literalLength - a.literalLength);
    if (candidates.length === 0) return { problem: `${method} ${path}: no path of the ${options.name} spec matches` };
    const bestTemplate = candidates[0]?.template;
    const op = candidates.find((o) => o.method === method.toUpperCase() && o.template === bestTemplate) ??
      candidates.find((o) => o.method === method.toUpperCase());
    if (op === undefined) {
      const allowed = candidates.filter((o) => o.template === bestTemplate).map((o) => o.method);
      return { problem: `${method} ${path}: ${method} is not an operation of ${String(bestTemplate)} in the ${options.name} spec (it has ${allowed.join(', ')})` };
    }
    const values = op.regex.exec(rest)?.slice(1) ?? [];
    const raw: Record<string, string> = {};
    op.paramNames.forEach((name, i) => {
      raw[name] = values[i] ?? '';
    });
    return { op, raw };
  };

  const coerce = (values: readonly string[], p: ParameterSpec): unknown => {
    const typeOf = (schema: Json): unknown => {
      const t = schema['type'];
      if (t !== undefined) return Array.isArray(t) ? t[0] : t;
      const ref = schema['$ref'];
      if (typeof ref === 'string') {
        const target = definitions[ref.slice(`${rootId}#/definitions/`.length)];
        return isJson(target) ? typeOf(target) : undefined;
      }
      const allOf = schema['allOf'];
      if (Array.isArray(allOf)) {
        for (const s of allOf) {
          const inner = isJson(s) ? typeOf(s) : undefined;
          if (inner !== undefined) return inner;
        }
      }
      return undefined;
    };
    const scalar = (raw: string, schema: Json): unknown => {
      switch (typeOf(schema)) {
        case 'boolean':
          return raw === 'true' ? true : raw === 'false' ? false : raw;
        case 'integer':
          return /^-?\d+$/.test(raw) ? Number(raw) : raw;
        case 'number':
          return raw.trim() !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw;
        default:
          return raw;
      }
    };
    if (typeOf(p.schema) === 'array') {
      const items = isJson(p.schema['items']) ? p.schema['items'] : {};
      const separator = { csv: ',', ssv: ' ', tsv: '\t', pipes: '|', multi: undefined }[p.arrayFormat];
      const parts = separator === undefined ? values : values.flatMap((v) => v.split(separator));
      return parts.map((v) => scalar(v, items));
    }
    return scalar(values[0] ?? '', p.schema);
  };

  const checkRequest = (request: RecordedRequest): string[] => {
    const matched = matchOperation(request.method, request.url);
    if ('problem' in matched) return [`request ${matched.problem}`];
    const { op, raw } = matched;
    const label = `request ${op.method} ${op.template} (${op.operationId})`;
    const problems: string[] = [];
    const q = request.url.indexOf('?');
    const query = new URLSearchParams(q === -1 ? '' : request.url.slice(q + 1));
    for (const p of op.parameters) {
      let values: string[];
      if (p.in === 'path') {
        const rawValue = raw[p.name] ?? '';
        for (const m of rawValue.matchAll(/%([0-9A-Fa-f]{2})/g)) {
          const char = String.fromCharCode(parseInt(m[1] ?? '0', 16));
          if (PCHAR.test(char)) {
            problems.push(
              `${label}: path parameter ${p.name} is sent percent-encoded (${rawValue.slice(0, 24)}...): ` +
                `${JSON.stringify(char)} is legal in a path segment and a server or proxy need not read %${(m[1] ?? '').toUpperCase()} as it; send it unencoded`,
            );
            break;
          }
        }
        try {
          values = [decodeURIComponent(rawValue)];
        } catch {
          problems.push(`${label}: path parameter ${p.name} is not valid percent-encoding`);
          continue;
        }
      } else if (p.in === 'query') {
        values = query.getAll(p.name);
      } else if (p.in === 'header') {
        const v = headerValue(request.headers, p.name);
        values = v === undefined ? [] : [v];
      } else {
        continue;
      }
      if (values.length === 0) {
        if (p.required) problems.push(`${label}: required ${p.in} parameter ${p.name} is missing`);
        continue;
      }
      if (values.length > 1 && !(p.arrayFormat === 'multi' && p.schema['type'] === 'array')) {
        problems.push(`${label}: ${p.in} parameter ${p.name} is sent ${String(values.length)} times`);
      }
      problems.push(...p.validate(coerce(values, p), `${label}: ${p.in} parameter ${p.name}=${JSON.stringify(values.join(','))}`));
    }
    for (const name of new Set(query.keys())) {
      if (!op.parameters.some((p) => p.in === 'query' && p.name === name)) {
        problems.push(`${label}: query parameter ${name} is not declared by the operation (it has ${op.parameters.filter((p) => p.in === 'query').map((p) => p.name).join(', ') || 'none'})`);
      }
    }
    const contentType = mediaTypeOf(headerValue(request.headers, 'content-type'));
    if (op.body === undefined) {
      if (request.body.length > 0) problems.push(`${label}: sends a ${String(request.body.length)}-byte body but the operation takes none`);
    } else if (request.body.length === 0) {
      if (op.body.required) problems.push(`${label}: the required request body is missing`);
    } else if (contentType === undefined || !mediaTypeAllowed(contentType, op.body.mediaTypes)) {
      problems.push(`${label}: request content type ${String(contentType)} is not one of ${op.body.mediaTypes.join(', ')}`);
    } else if (op.body.validate !== undefined && isJsonMediaType(contentType)) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(request.body.toString('utf8'));
      } catch {
        problems.push(`${label}: the request body is not JSON`);
        return problems;
      }
      problems.push(...op.body.validate(parsed, `${label}: body`));
    }
    return problems.slice(0, MAX_PROBLEMS_PER_CHECK);
  };

  const checkResponse = (exchange: HttpExchange): string[] => {
    const matched = matchOperation(exchange.request.method, exchange.request.url);
    if ('problem' in matched) return [`response to ${matched.problem}`];
    const { op } = matched;
    const { status } = exchange.response;
    const label = `response ${String(status)} to ${op.method} ${op.template} (${op.operationId})`;
    const code = String(status);
    let spec = op.responses.get(code) ?? op.responses.get(`${code[0] ?? ''}XX`) ?? op.responses.get('default');
    if (spec === undefined && undocumented !== undefined && undocumented.statuses.includes(status)) {
      spec = { mediaTypes: ['application/json'], validate: undocumentedValidator, note: undocumented.reason };
    }
    if (spec === undefined) {
      return [`${label}: status ${code} is not documented for the operation (it documents ${[...op.responses.keys()].join(', ')})`];
    }
    if (spec.validate === undefined) return [];
    const problems: string[] = [];
    const contentType = mediaTypeOf(headerValue(exchange.response.headers, 'content-type'));
    if (contentType === undefined || !mediaTypeAllowed(contentType, spec.mediaTypes) || !isJsonMediaType(contentType)) {
      problems.push(`${label}: content type ${String(contentType)} is not a declared JSON media type (${spec.mediaTypes.join(', ')})`);
      return problems;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(exchange.response.body.toString('utf8'));
    } catch {
      problems.push(`${label}: the body is not JSON`);
      return problems;
    }
    problems.push(...spec.validate(parsed, `${label}: body`));
    return problems.slice(0, MAX_PROBLEMS_PER_CHECK);
  };

  return {
    name: options.name,
    dialect,
    mountPath,
    operations: operations.map(({ operationId, method, template }) => ({ operationId, method, template })),
    schemaNames: Object.keys(definitions),
    match(method, url) {
      const m = matchOperation(method, url);
      if ('problem' in m) return { ok: false, problem: m.problem };
      return { ok: true, operation: { operationId: m.op.operationId, method: m.op.method, template: m.op.template }, rawPathParams: m.raw };
    },
    checkRequest,
    checkResponse,
    check: (exchange) => [...checkRequest(exchange.request), ...checkResponse(exchange)],
    validateSchema: (name, value) => namedValidator(name)(value, name),
    compileAll() {
      for (const name of Object.keys(definitions)) namedValidator(name);
      for (const check of pending) check(undefined, '');
    },
  };
}
