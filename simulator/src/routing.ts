/**
 * The plumbing every API version shares: how a route table is written and matched, what a route
 * needs from the simulator, and the small HTTP helpers (JSON answers, bounded bodies, query flags).
 * Each version's table lives in its own module (routes-v1.ts, routes-v2.ts); server.ts dispatches.
 */
import type http from 'node:http';
import type { SimulatorEngine, SubmitRequest } from './engine.js';
import { AnchoreApiError } from './errors.js';
import type { RouteOperation } from './faults.js';
import { fulltagOf } from './reference.js';

export type Api = 'v1' | 'v2';

/** The version every API reports (`GET /version`, `GET {v1}/status`, `GET {v2}/version`). */
export const SIMULATED_VERSION = '0.9.4-scangate-sim';

export const MAX_BODY_BYTES = 1024 * 1024;

/** Per-tag counters (see SimulatorStats in server.ts). */
export interface TagStats {
  addImage: number;
  getImage: number;
  check: number;
}

/** What a route may use of the simulator. Counters are read through functions: reset() replaces them. */
export interface RouteDeps {
  readonly engine: SimulatorEngine;
  /** The account name images are recorded under (the Basic auth user). */
  readonly user: string;
  /** The API base this table is served under (for 404 details). */
  readonly basePath: string;
  tagStats(fulltag: string): TagStats;
  count(counter: 'forced' | 'autosubscribed'): void;
}

/** What a matched request becomes: counted as `operation`, authenticated when `auth`, then run. */
export interface Route {
  readonly operation: RouteOperation;
  readonly auth: boolean;
  readonly run: (res: http.ServerResponse) => void;
}

/** The request as a route sees it: `params` are the `:name` segments of the path, taken as sent. */
export interface RouteRequest {
  readonly method: string;
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  readonly body: Buffer;
}

/**
 * One method of one path. `prepare` runs when the request is routed, before the fault decision and
 * authentication (per-tag counters count faulted and refused calls too); the function it returns
 * answers the request.
 */
export interface MethodRoute {
  readonly operation: RouteOperation;
  readonly auth: boolean;
  readonly prepare: (req: RouteRequest) => (res: http.ServerResponse) => void;
}

/**
 * One path of a version's table: `/images/:digest/check` relative to the API base; `/` is the base
 * itself (with or without its trailing slash). A known path asked with another method is a 405
 * counted as `otherwise`.
 */
export interface PathRoute {
  readonly path: string;
  readonly otherwise: RouteOperation;
  readonly methods: Readonly<Partial<Record<string, MethodRoute>>>;
}

/** How one API version answers: its table and the shapes of its errors and injected faults. */
export interface ApiVersion {
  readonly api: Api;
  /** Where the table is served, e.g. '/v1' ('' at the root). */
  readonly basePath: string;
  readonly routes: readonly PathRoute[];
  /** An error body in this API's own shape. */
  errorBody(status: number, message: string, detail?: Record<string, unknown>): unknown;
  /** The body of an AnchoreApiError thrown by a route. */
  apiErrorBody(err: AnchoreApiError): unknown;
  /** The `malformed` fault's body: JSON cut short. */
  readonly malformedText: string;
  /** The `wrongShape` fault's body for `operation`. */
  wrongShape(operation: RouteOperation): unknown;
}

function segmentsOf(path: string): string[] {
  return path.split('/').slice(1);
}

/**
 * The route for `method` on `rest` (the path relative to the API base): the table's entry, a 405
 * when the path is known under another method, a 404 otherwise. Both refusals need auth, as the
 * routes they stand for do.
 */
export function matchRoute(version: ApiVersion, method: string, rest: string, query: URLSearchParams, body: Buffer): Route {
  const parts = segmentsOf(rest);
  for (const entry of version.routes) {
    const params = matchPath(entry.path, rest, parts);
    if (params === undefined) continue;
    const handler = entry.methods[method];
    if (handler === undefined) {
      return {
        operation: entry.otherwise,
        auth: true,
        run: (res) => {
          sendJson(res, 405, version.errorBody(405, `method ${method} not allowed`, {}));
        },
      };
    }
    return { operation: handler.operation, auth: handler.auth, run: handler.prepare({ method, params, query, body }) };
  }
  return {
    operation: 'other',
    auth: true,
    run: (res) => {
      sendJson(res, 404, version.errorBody(404, 'not found', { path: `${version.basePath}${rest}` }));
    },
  };
}

function matchPath(pattern: string, rest: string, parts: readonly string[]): Record<string, string> | undefined {
  if (pattern === '/') return rest === '' || rest === '/' ? {} : undefined;
  const expected = segmentsOf(pattern);
  if (expected.length !== parts.length) return undefined;
  const params: Record<string, string> = {};
  for (const [i, segment] of expected.entries()) {
    const actual = parts[i] ?? '';
    if (segment.startsWith(':')) params[segment.slice(1)] = actual;
    else if (segment !== actual) return undefined;
  }
  return params;
}

/**
 * addImage in either API: counts `force` and autosubscription, parses the body before the fault
 * decision so that faulted submissions still count per tag, and hands `answer` the parsed request
 * as a function that throws the body's AnchoreApiError (the API decides what it checks first).
 */
export function prepareAddImage(
  deps: RouteDeps,
  req: RouteRequest,
  autosubscribeParameter: string,
  parse: (json: unknown) => SubmitRequest,
  answer: (res: http.ServerResponse, submitted: () => SubmitRequest, force: boolean) => void,
): (res: http.ServerResponse) => void {
  const force = queryFlag(req.query, 'force', false);
  if (force) deps.count('forced');
  if (queryFlag(req.query, autosubscribeParameter, true)) deps.count('autosubscribed');
  let parsed: SubmitRequest | AnchoreApiError;
  try {
    const json: unknown = req.body.length === 0 ? undefined : JSON.parse(req.body.toString('utf8'));
    parsed = parse(json);
  } catch (err) {
    parsed =
      err instanceof AnchoreApiError
        ? err
        : new AnchoreApiError(400, 'Could not validate request due to error: request body is not valid JSON', {
            validation_error: (err as Error).message,
          });
  }
  if (!(parsed instanceof AnchoreApiError)) deps.tagStats(fulltagOf(parsed.ref)).addImage += 1;
  const submitted = (): SubmitRequest => {
    if (parsed instanceof AnchoreApiError) throw parsed;
    return parsed;
  };
  return (res) => {
    answer(res, submitted, force);
  };
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export class BodyTooLargeError extends Error {}

export function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new BodyTooLargeError());
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      resolve(Buffer.concat(chunks));
    });
    req.on('error', reject);
  });
}

export function queryFlag(query: URLSearchParams, name: string, fallback: boolean): boolean {
  const value = query.get(name);
  if (value === null || value === '') return fallback;
  return /^(true|1|yes)$/i.test(value);
}

export function normalizeBasePath(basePath: string): string {
  const trimmed = basePath.replace(/\/+$/, '');
  if (trimmed === '') return '';
  return trimmed.startsWith('/') ? trimmed : `/${trimmed}`;
}

export function parseJsonOrText(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}
