/**
 * An Anchore API simulator over plain node:http, for tests, benchmarks, the local demo and the
 * end-to-end cluster tests. It speaks Anchore Engine's v1 API, Anchore Enterprise's v2 API, or both
 * (`api`), from one engine: the same images, lifecycle, verdicts and faults whichever API asks. The
 * real scanner client must work unchanged against it.
 *
 * v1 routes (under `basePath`, default /v1; HTTP Basic auth on every call except the `GET {base}` ping):
 *   POST {base}/images                       addImage      (array of AnchoreImage)
 *   GET  {base}/images[?fulltag=]            listImages
 *   GET  {base}/images/{digest}              getImage
 *   GET  {base}/images/{digest}/check?tag=   check         ([{digest: {tag: [evaluation]}}])
 *   GET  {base}/images/{digest}/vuln[/{all|os|non-os}]   vuln
 *   GET  {base}/status                       service status
 * and `GET /version` (ServiceVersion with `"api": {}`, as the engine answers).
 * v2 routes (under `v2BasePath`, default /v2; Basic auth except version and ping):
 *   GET  {v2}/version                        version       (ServiceVersion, api.version "2")
 *   GET  {v2}/                               ping          ("v2")
 *   POST {v2}/images[?force&auto_subscribe]  addImage      (one AnchoreImage)
 *   GET  {v2}/images[?full_tag=]             listImages    ({"items": [...]})
 *   GET  {v2}/images/{image_digest}          getImage
 *   GET  {v2}/images/{image_digest}/check?tag=[&policy_id]   check   (PolicyEvaluation)
 * v2 refuses query parameters its spec does not declare (400), and errors are `ApiErrorResponse`
 * (`{code, error_type, message, detail}`; v1: `{message, httpcode, detail}`).
 *
 * The digest in a path is taken as sent, never percent-decoded: `sha256%3A...` is not `sha256:...`
 * (a server or proxy need not decode `%3A`), so v1 finds no such image (404) and v2 refuses it
 * against its path pattern (400).
 *
 * Admin routes (no auth, outside the API bases): `GET|PUT /_sim/faults` (a FaultConfig, see
 * faults.ts), `GET|PUT /_sim/analysis-delay` (`{"ms": N}`), `GET /_sim/stats`, `GET /_sim/exchanges`
 * (the last `record` requests with their answers), `POST /_sim/reset`; and `GET /health`.
 *
 * An API call goes: counted -> fault decision (latency, hang, status, malformed, wrongShape) ->
 * Basic auth -> route. See engine.ts for the analysis lifecycle.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { loadSampleSimulatorData, resolveSimulatorData, type SimulatorData } from './data.js';
import { SimulatorEngine, type VulnerabilityType } from './engine.js';
import { AnchoreApiError, SimulatorConfigError } from './errors.js';
import { FaultInjector, parseFaultConfig, type FaultConfig, type RouteOperation, type TransportFault } from './faults.js';
import { fulltagOf, normalizeFulltag } from './reference.js';
import { checkJson, errorJson, imageRecordJson, parseAddImageBody, vulnerabilitiesJson } from './wire.js';
import {
  apiErrorJsonV2,
  checkJsonV2,
  checkQueryV2,
  errorJsonV2,
  imageRecordJsonV2,
  parseAddImageBodyV2,
  versionJsonV2,
} from './wire-v2.js';

/** Which Anchore API the simulator serves. */
export type SimulatorApi = 'v1' | 'v2' | 'both';
export const SIMULATOR_APIS: readonly SimulatorApi[] = ['v1', 'v2', 'both'];

export interface SimulatorOptions {
  /** Default 'v1': Anchore Engine's API only. 'v2': Anchore Enterprise 5 (v2 only); 'both': 4.9.x. */
  api?: SimulatorApi | undefined;
  /** Default '127.0.0.1'. */
  host?: string | undefined;
  /** Default 0 (ephemeral). */
  port?: number | undefined;
  /** v1 API prefix. Default '/v1' (ANCHORE_CLI_URL = http://host:port/v1); '' serves it at the root. */
  basePath?: string | undefined;
  /** v2 API prefix. Default '/v2' (the spec's `servers: [{url: /v2}]`). */
  v2BasePath?: string | undefined;
  /** Keep the last N requests and answers for `exchanges()` / `GET /_sim/exchanges`. Default 0 (off). */
  record?: number | undefined;
  /** Default 'admin'. */
  user?: string | undefined;
  /** Default 'foobar'. '' is allowed (Sysdig style: the token is the user, the password is empty). */
  password?: string | undefined;
  /** Default 0: time from the first POST /images of an image until it is 'analyzed'. */
  analysisDelayMs?: number | undefined;
  /** Default: the package's scanner-data.json. Validated at start (SimulatorConfigError). */
  data?: SimulatorData | undefined;
  faults?: FaultConfig | undefined;
  logger?: { info(obj: object, msg?: string): void } | undefined;
  /** Clock for the analysis lifecycle (default Date.now); lets unit tests move time. */
  now?: (() => number) | undefined;
}

export interface TagStats {
  addImage: number;
  getImage: number;
  check: number;
}

/**
 * Counters since start or reset(). Every API request (v1 or v2, under an API base) counts in `total`,
 * in `byApi` and in its operation counter (`other` for status, ping and unknown routes), whether it
 * is then faulted, refused (401) or answered. `encodedDigest` counts requests whose digest path
 * segment was percent-encoded (`sha256%3A...`, never found). `faulted` counts calls answered by a hang/status/malformed/wrongShape fault;
 * `getWithBody` GET requests that carried a body; `forced` addImage calls with force=true;
 * `autosubscribed` addImage calls without autosubscribe=false. `byTag` is keyed by normalised
 * fulltag: addImage by the submitted tag, getImage by every tag of the image, check by `tag=`.
 */
export interface SimulatorStats {
  addImage: number;
  getImage: number;
  listImages: number;
  check: number;
  vuln: number;
  version: number;
  other: number;
  unauthorized: number;
  faulted: number;
  getWithBody: number;
  forced: number;
  autosubscribed: number;
  encodedDigest: number;
  total: number;
  byApi: { v1: number; v2: number };
  byTag: Record<string, TagStats>;
}

/** One request to an API route and its answer (`record` option), for contract tests. */
export interface SimulatorExchange {
  readonly seq: number;
  readonly api: 'v1' | 'v2';
  readonly operation: RouteOperation;
  readonly method: string;
  /** The request target as sent (path and query, percent-encoding kept). */
  readonly url: string;
  /** The path relative to the API base, e.g. `/images/sha256:...`. */
  readonly path: string;
  readonly query: Record<string, string[]>;
  /** Request headers, except that `authorization` is reduced to its scheme. */
  readonly headers: Record<string, string>;
  /** Parsed JSON when the body was JSON, the raw text otherwise, undefined without a body. */
  readonly requestBody: unknown;
  /** Undefined while unanswered (a hang). */
  status: number | undefined;
  responseHeaders: Record<string, string>;
  responseBody: unknown;
}

export interface ScannerSimulator {
  /** Base URL of the API served (v1's with 'v1' and 'both', v2's with 'v2'), e.g. http://127.0.0.1:39211/v1. */
  readonly url: string;
  /** Base URL of each API served. */
  readonly urls: { readonly v1?: string; readonly v2?: string };
  /** `http://host:port`, without any API prefix. */
  readonly origin: string;
  readonly api: SimulatorApi;
  readonly port: number;
  stats(): SimulatorStats;
  /** The recorded requests, oldest first (empty unless the `record` option is set). */
  exchanges(): SimulatorExchange[];
  /** Replaces the current fault config (throws SimulatorConfigError when invalid). */
  setFaults(faults: FaultConfig): void;
  setAnalysisDelayMs(ms: number): void;
  /** Forgets all images and counters; faults and analysis delay go back to the options. */
  reset(): void;
  /** Closes the server and destroys every open socket, hanging requests included. */
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 1024 * 1024;
const SIMULATED_VERSION = '0.9.4-scangate-sim';

function freshStats(): SimulatorStats {
  return {
    addImage: 0,
    getImage: 0,
    listImages: 0,
    check: 0,
    vuln: 0,
    version: 0,
    other: 0,
    unauthorized: 0,
    faulted: 0,
    getWithBody: 0,
    forced: 0,
    autosubscribed: 0,
    encodedDigest: 0,
    total: 0,
    byApi: { v1: 0, v2: 0 },
    byTag: {},
  };
}

function normalizeBasePath(basePath: string): string {
  const trimmed = basePath.replace(/\/+$/, '');
  if (trimmed === '') return '';
  return trimmed.startsWith('/') ? trimmed : `/${trimmed}`;
}

function digestOfSecret(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

type Api = 'v1' | 'v2';

/** An error body in the API's own shape. */
function errorBody(api: Api, status: number, message: string, detail: Record<string, unknown> = {}): unknown {
  return api === 'v2' ? errorJsonV2(status, message, detail) : errorJson(status, message, detail);
}

function sendError(
  res: http.ServerResponse,
  status: number,
  message: string,
  detail: Record<string, unknown> = {},
  headers: Record<string, string> = {},
  api: Api = 'v1',
): void {
  sendJson(res, status, errorBody(api, status, message, detail), headers);
}

class BodyTooLargeError extends Error {}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
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

interface Route {
  readonly operation: RouteOperation;
  /** Whether Basic auth is required. */
  readonly auth: boolean;
  readonly run: (ctx: RequestContext) => void;
}

interface RequestContext {
  readonly res: http.ServerResponse;
  readonly query: URLSearchParams;
  readonly body: Buffer;
}

function queryFlag(query: URLSearchParams, name: string, fallback: boolean): boolean {
  const value = query.get(name);
  if (value === null || value === '') return fallback;
  return /^(true|1|yes)$/i.test(value);
}

/** The spec's path pattern of `{image_digest}` (v2). */
const V2_DIGEST_PATTERN = /^sha256:[a-fA-F0-9]{64}$/;

function parseJsonOrText(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

class Simulator implements ScannerSimulator {
  private readonly server: http.Server;
  private readonly engine: SimulatorEngine;
  private readonly options: SimulatorOptions;
  readonly api: SimulatorApi;
  private readonly basePath: string;
  private readonly v2BasePath: string;
  private readonly userDigest: Buffer;
  private readonly passwordDigest: Buffer;
  private faults: FaultInjector;
  private counters = freshStats();
  private recorded: SimulatorExchange[] = [];
  private exchangeSeq = 0;
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private closing: Promise<void> | undefined;
  private listening: { origin: string; port: number } | undefined;

  constructor(server: http.Server, engine: SimulatorEngine, options: SimulatorOptions, basePath: string, v2BasePath: string) {
    this.server = server;
    this.engine = engine;
    this.options = options;
    this.api = options.api ?? 'v1';
    this.basePath = basePath;
    this.v2BasePath = v2BasePath;
    this.userDigest = digestOfSecret(options.user ?? 'admin');
    this.passwordDigest = digestOfSecret(options.password ?? 'foobar');
    this.faults = new FaultInjector(options.faults ?? {});
    this.engine.setFaults(this.faults);
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      this.handle(req, res).catch((err: unknown) => {
        this.options.logger?.info({ err: String(err) }, 'scanner simulator: request failed');
        sendError(res, 500, 'internal error in scanner simulator');
      });
    });
  }

  private get servesV1(): boolean {
    return this.api !== 'v2';
  }

  private get servesV2(): boolean {
    return this.api !== 'v1';
  }

  async listen(host: string, port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const actual = (this.server.address() as AddressInfo).port;
    const urlHost = host.includes(':') ? `[${host}]` : host;
    this.listening = { origin: `http://${urlHost}:${String(actual)}`, port: actual };
  }

  private get started(): { origin: string; port: number } {
    if (this.listening === undefined) throw new Error('scanner simulator is not listening');
    return this.listening;
  }

  get origin(): string {
    return this.started.origin;
  }

  get urls(): { v1?: string; v2?: string } {
    const { origin } = this.started;
    return {
      ...(this.servesV1 ? { v1: `${origin}${this.basePath}` } : {}),
      ...(this.servesV2 ? { v2: `${origin}${this.v2BasePath}` } : {}),
    };
  }

  get url(): string {
    const urls = this.urls;
    return urls.v1 ?? urls.v2 ?? this.origin;
  }

  get port(): number {
    return this.started.port;
  }

  stats(): SimulatorStats {
    return structuredClone(this.counters);
  }

  exchanges(): SimulatorExchange[] {
    return structuredClone(this.recorded);
  }

  setFaults(faults: FaultConfig): void {
    this.faults = new FaultInjector(faults);
    this.engine.setFaults(this.faults);
    this.options.logger?.info({ faults: this.faults.config }, 'scanner simulator: faults set');
  }

  setAnalysisDelayMs(ms: number): void {
    this.engine.setAnalysisDelayMs(ms);
  }

  reset(): void {
    this.engine.reset();
    this.counters = freshStats();
    this.recorded = [];
    this.faults = new FaultInjector(this.options.faults ?? {});
    this.engine.setFaults(this.faults);
    this.engine.setAnalysisDelayMs(this.options.analysisDelayMs ?? 0);
  }

  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      for (const timer of this.timers) clearTimeout(timer);
      this.timers.clear();
      this.server.close(() => {
        resolve();
      });
      this.server.closeAllConnections();
      for (const socket of this.sockets) socket.destroy();
    });
    return this.closing;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        resolve();
      }, ms);
      this.timers.add(timer);
    });
  }

  private tagStats(fulltag: string): TagStats {
    const byTag = this.counters.byTag;
    let entry = Object.hasOwn(byTag, fulltag) ? byTag[fulltag] : undefined;
    if (entry === undefined) {
      entry = { addImage: 0, getImage: 0, check: 0 };
      byTag[fulltag] = entry;
    }
    return entry;
  }

  /** Which API a path belongs to, and the path relative to that API's base. */
  private apiOf(pathname: string): { api: Api; rest: string } | undefined {
    const under = (base: string): string | undefined =>
      pathname === base || pathname.startsWith(`${base}/`) ? pathname.slice(base.length) : undefined;
    // v2 first: a v1 base of '' (the API at the root) would otherwise swallow /v2/...
    const v2 = this.servesV2 ? under(this.v2BasePath) : undefined;
    if (v2 !== undefined) return { api: 'v2', rest: v2 };
    const v1 = this.servesV1 ? under(this.basePath) : undefined;
    if (v1 !== undefined) return { api: 'v1', rest: v1 };
    return undefined;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const rawUrl = req.url ?? '/';
    const q = rawUrl.indexOf('?');
    const pathname = q === -1 ? rawUrl : rawUrl.slice(0, q);
    const query = new URLSearchParams(q === -1 ? '' : rawUrl.slice(q + 1));
    const method = req.method ?? 'GET';
    const defaultApi: Api = this.servesV1 ? 'v1' : 'v2';

    let body: Buffer;
    try {
      body = await readBody(req);
    } catch (err) {
      if (err instanceof BodyTooLargeError) {
        sendError(res, 413, 'request body too large', {}, {}, defaultApi);
        return;
      }
      throw err;
    }

    if (pathname.startsWith('/_sim/')) {
      this.admin(method, pathname, body, res);
      return;
    }
    if (pathname === '/health' && method === 'GET') {
      res.writeHead(200, { 'content-length': '0' }).end();
      return;
    }
    if (pathname === '/version' && method === 'GET' && this.servesV1) {
      // Anchore Engine's answer: an empty `api`, which is how a v1 server tells itself apart.
      sendJson(res, 200, { service: { version: SIMULATED_VERSION }, api: {}, db: { schema_version: '0.0.0' } });
      return;
    }
    const target = this.apiOf(pathname);
    if (target === undefined) {
      sendError(res, 404, 'not found', { path: pathname }, {}, defaultApi);
      return;
    }
    const { api, rest } = target;
    const route = api === 'v1' ? this.routeV1(method, rest, query, body) : this.routeV2(method, rest, query, body);
    const counters = this.counters;
    counters.total += 1;
    counters.byApi[api] += 1;
    counters[route.operation] += 1;
    if (method === 'GET' && body.length > 0) {
      counters.getWithBody += 1;
      this.options.logger?.info({ path: pathname }, 'scanner simulator: GET request with a body');
    }
    if (/^\/images\/[^/]*%/i.test(rest)) counters.encodedDigest += 1;
    this.record(api, route.operation, method, rawUrl, rest, query, req.headers, body, res);

    const decision = this.faults.decide(route.operation);
    if (decision.latencyMs > 0) {
      await this.sleep(decision.latencyMs);
      if (res.destroyed) return;
    }
    if (decision.fault !== undefined) {
      counters.faulted += 1;
      this.answerFault(api, decision.fault, route.operation, res);
      return;
    }
    if (route.auth && !this.authorized(req.headers.authorization)) {
      counters.unauthorized += 1;
      sendError(res, 401, 'Unauthorized', {}, { 'www-authenticate': 'Basic realm="Authentication required"' }, api);
      return;
    }
    try {
      route.run({ res, query, body });
    } catch (err) {
      if (err instanceof AnchoreApiError) {
        sendJson(res, err.httpcode, api === 'v2' ? apiErrorJsonV2(err) : err.toBody());
        return;
      }
      throw err;
    }
  }

  /** Keeps the request and, once written, its answer (bounded by the `record` option). */
  private record(
    api: Api,
    operation: RouteOperation,
    method: string,
    url: string,
    path: string,
    query: URLSearchParams,
    headers: http.IncomingHttpHeaders,
    body: Buffer,
    res: http.ServerResponse,
  ): void {
    const max = this.options.record ?? 0;
    if (max <= 0) return;
    const kept: Record<string, string> = {};
    for (const [name, value] of Object.entries(headers)) {
      if (value === undefined) continue;
      const text = Array.isArray(value) ? value.join(', ') : value;
      // Never the credentials: only the scheme says that some were sent.
      kept[name] = name === 'authorization' ? (text.split(/\s+/)[0] ?? '') : text;
    }
    const queryRecord: Record<string, string[]> = {};
    for (const [k, v] of query) (queryRecord[k] ??= []).push(v);
    this.exchangeSeq += 1;
    const exchange: SimulatorExchange = {
      seq: this.exchangeSeq,
      api,
      operation,
      method,
      url,
      path,
      query: queryRecord,
      headers: kept,
      requestBody: parseJsonOrText(body.toString('utf8')),
      status: undefined,
      responseHeaders: {},
      responseBody: undefined,
    };
    this.recorded.push(exchange);
    if (this.recorded.length > max) this.recorded.splice(0, this.recorded.length - max);
    // Every answer here goes through writeHead(status, headers) and one end(body).
    const writeHead = res.writeHead.bind(res) as (status: number, headers?: Record<string, unknown>) => http.ServerResponse;
    res.writeHead = ((status: number, headers?: Record<string, unknown>) => {
      for (const [name, value] of Object.entries(headers ?? {})) {
        if (typeof value === 'string' || typeof value === 'number') exchange.responseHeaders[name.toLowerCase()] = String(value);
      }
      return writeHead(status, headers);
    }) as typeof res.writeHead;
    const end = res.end.bind(res) as (chunk?: unknown, ...rest: unknown[]) => http.ServerResponse;
    const capture = (chunk?: unknown, ...rest: unknown[]): http.ServerResponse => {
      exchange.status = res.statusCode;
      const text = typeof chunk === 'string' ? chunk : Buffer.isBuffer(chunk) ? chunk.toString('utf8') : '';
      exchange.responseBody = parseJsonOrText(text);
      return end(chunk, ...rest);
    };
    res.end = capture as typeof res.end;
  }

  private authorized(header: string | undefined): boolean {
    if (header === undefined) return false;
    const match = /^Basic\s+([A-Za-z0-9+/=]*)\s*$/i.exec(header);
    if (match === null) return false;
    const decoded = Buffer.from(match[1] ?? '', 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon === -1) return false;
    const userOk = timingSafeEqual(digestOfSecret(decoded.slice(0, colon)), this.userDigest);
    const passOk = timingSafeEqual(digestOfSecret(decoded.slice(colon + 1)), this.passwordDigest);
    return userOk && passOk;
  }

  private answerFault(api: Api, fault: TransportFault, operation: RouteOperation, res: http.ServerResponse): void {
    this.options.logger?.info({ fault: fault.kind, operation, api }, 'scanner simulator: fault injected');
    switch (fault.kind) {
      case 'hang':
        // Never answered; close() destroys the socket.
        return;
      case 'status': {
        const headers: Record<string, string> = {};
        if (fault.retryAfterSeconds !== undefined) headers['retry-after'] = String(fault.retryAfterSeconds);
        if (fault.status === 401) headers['www-authenticate'] = 'Basic realm="Authentication required"';
        const text = http.STATUS_CODES[fault.status] ?? 'error';
        sendError(res, fault.status, `simulated fault: ${text}`, { simulated: true }, headers, api);
        return;
      }
      case 'malformed': {
        const text = api === 'v2' ? '{"image_digest": "sha256:<truncated' : '{"imageDigest": "sha256:<truncated';
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
        return;
      }
      case 'wrongShape':
        sendJson(
          res,
          200,
          api === 'v2' || operation === 'vuln'
            ? ['simulated wrong shape: an array where an object is expected']
            : { simulated: 'wrong shape: an object where an array is expected' },
        );
        return;
    }
  }

  private routeV1(method: string, rest: string, query: URLSearchParams, body: Buffer): Route {
    const notFound: Route = {
      operation: 'other',
      auth: true,
      run: ({ res }) => {
        sendError(res, 404, 'not found', { path: `${this.basePath}${rest}` });
      },
    };
    const notAllowed = (operation: RouteOperation): Route => ({
      operation,
      auth: true,
      run: ({ res }) => {
        sendError(res, 405, `method ${method} not allowed`, {});
      },
    });

    if (rest === '' || rest === '/') {
      if (method !== 'GET') return notAllowed('other');
      return {
        operation: 'other',
        auth: false,
        run: ({ res }) => {
          sendJson(res, 200, 'v1');
        },
      };
    }
    if (rest === '/status') {
      if (method !== 'GET') return notAllowed('other');
      const status = { available: true, busy: false, up: true, message: 'all good', version: SIMULATED_VERSION, db_version: '0.0.0', detail: {} };
      return {
        operation: 'other',
        auth: true,
        run: ({ res }) => {
          sendJson(res, 200, status);
        },
      };
    }
    const parts = rest.split('/').slice(1);
    if (parts[0] !== 'images') return notFound;

    if (parts.length === 1) {
      if (method === 'POST') return this.addImageRoute('v1', query, body);
      if (method === 'GET') {
        return {
          operation: 'listImages',
          auth: true,
          run: ({ res }) => {
            const fulltag = query.get('fulltag') ?? undefined;
            sendJson(res, 200, this.engine.listImages(fulltag === '' ? undefined : fulltag).map((v) => imageRecordJson(v, this.user)));
          },
        };
      }
      return notAllowed('other');
    }

    // As sent: `sha256%3A...` names no image (see the module comment).
    const digest = parts[1] ?? '';

    if (parts.length === 2) {
      if (method !== 'GET') return notAllowed('getImage');
      for (const tag of this.engine.tagsOf(digest)) this.tagStats(tag).getImage += 1;
      return {
        operation: 'getImage',
        auth: true,
        run: ({ res }) => {
          sendJson(res, 200, [imageRecordJson(this.engine.getImage(digest), this.user)]);
        },
      };
    }
    if (parts.length === 3 && parts[2] === 'check') {
      if (method !== 'GET') return notAllowed('check');
      const tag = query.get('tag');
      if (tag !== null && tag !== '') this.tagStats(normalizeFulltag(tag)).check += 1;
      return {
        operation: 'check',
        auth: true,
        run: ({ res }) => {
          if (tag === null || tag === '') throw new AnchoreApiError(400, "Missing query parameter 'tag'", { parameter: 'tag' });
          const policyId = query.get('policyId');
          const result = this.engine.check(digest, tag, policyId === null || policyId === '' ? undefined : policyId);
          sendJson(res, 200, checkJson(result, queryFlag(query, 'detail', true)));
        },
      };
    }
    if (parts[2] === 'vuln' && (parts.length === 3 || parts.length === 4)) {
      if (method !== 'GET') return notAllowed('vuln');
      const type = parts[3];
      return {
        operation: 'vuln',
        auth: true,
        run: ({ res }) => {
          if (type === undefined) {
            this.engine.getImage(digest);
            sendJson(res, 200, ['os', 'non-os', 'all']);
            return;
          }
          if (type !== 'all' && type !== 'os' && type !== 'non-os') {
            throw new AnchoreApiError(404, `content type (${type}) not available`, {});
          }
          const vulnType: VulnerabilityType = type;
          const found = this.engine.vulnerabilities(digest, vulnType);
          sendJson(res, 200, vulnerabilitiesJson(digest, vulnType, found.vulnerabilities));
        },
      };
    }
    return notFound;
  }

  private routeV2(method: string, rest: string, query: URLSearchParams, body: Buffer): Route {
    const notFound: Route = {
      operation: 'other',
      auth: true,
      run: ({ res }) => {
        sendError(res, 404, 'not found', { path: `${this.v2BasePath}${rest}` }, {}, 'v2');
      },
    };
    const notAllowed = (operation: RouteOperation): Route => ({
      operation,
      auth: true,
      run: ({ res }) => {
        sendError(res, 405, `method ${method} not allowed`, {}, {}, 'v2');
      },
    });

    if (rest === '' || rest === '/') {
      if (method !== 'GET') return notAllowed('other');
      return {
        operation: 'other',
        auth: false,
        run: ({ res }) => {
          sendJson(res, 200, 'v2');
        },
      };
    }
    if (rest === '/version') {
      if (method !== 'GET') return notAllowed('version');
      return {
        operation: 'version',
        // `x-anchore-authz-action: None`: Anchore's own admission controller calls it without credentials.
        auth: false,
        run: ({ res }) => {
          checkQueryV2('version', query);
          sendJson(res, 200, versionJsonV2(SIMULATED_VERSION));
        },
      };
    }
    const parts = rest.split('/').slice(1);
    if (parts[0] !== 'images') return notFound;

    if (parts.length === 1) {
      if (method === 'POST') return this.addImageRoute('v2', query, body);
      if (method === 'GET') {
        return {
          operation: 'listImages',
          auth: true,
          run: ({ res }) => {
            checkQueryV2('listImages', query);
            const fullTag = query.get('full_tag') ?? undefined;
            const items = this.engine.listImages(fullTag === '' ? undefined : fullTag).map((v) => imageRecordJsonV2(v, this.user));
            sendJson(res, 200, { items });
          },
        };
      }
      return notAllowed('other');
    }

    const digest = parts[1] ?? '';
    const checkDigest = (): void => {
      if (!V2_DIGEST_PATTERN.test(digest)) {
        throw new AnchoreApiError(400, `'${digest}' does not match '^sha256:[a-fA-F0-9]{64}$' - 'image_digest'`, { parameter: 'image_digest' });
      }
    };
    if (parts.length === 2) {
      if (method !== 'GET') return notAllowed('getImage');
      for (const tag of this.engine.tagsOf(digest)) this.tagStats(tag).getImage += 1;
      return {
        operation: 'getImage',
        auth: true,
        run: ({ res }) => {
          checkDigest();
          checkQueryV2('getImage', query);
          sendJson(res, 200, imageRecordJsonV2(this.engine.getImage(digest.toLowerCase()), this.user));
        },
      };
    }
    if (parts.length === 3 && parts[2] === 'check') {
      if (method !== 'GET') return notAllowed('check');
      const tag = query.get('tag');
      if (tag !== null && tag !== '') this.tagStats(normalizeFulltag(tag)).check += 1;
      return {
        operation: 'check',
        auth: true,
        run: ({ res }) => {
          checkDigest();
          checkQueryV2('check', query);
          if (tag === null || tag === '') throw new AnchoreApiError(400, "'tag' is a required query parameter", { parameter: 'tag' });
          const policyId = query.get('policy_id');
          const result = this.engine.check(digest.toLowerCase(), tag, policyId === null || policyId === '' ? undefined : policyId);
          sendJson(res, 200, checkJsonV2(result, queryFlag(query, 'detail', true)));
        },
      };
    }
    return notFound;
  }

  private addImageRoute(api: Api, query: URLSearchParams, body: Buffer): Route {
    const force = queryFlag(query, 'force', false);
    if (force) this.counters.forced += 1;
    if (queryFlag(query, api === 'v2' ? 'auto_subscribe' : 'autosubscribe', true)) this.counters.autosubscribed += 1;
    // Parsed before the fault decision so that faulted submissions still count per tag.
    let parsed: ReturnType<typeof parseAddImageBody> | AnchoreApiError;
    try {
      const json: unknown = body.length === 0 ? undefined : JSON.parse(body.toString('utf8'));
      parsed = api === 'v2' ? parseAddImageBodyV2(json) : parseAddImageBody(json);
    } catch (err) {
      parsed =
        err instanceof AnchoreApiError
          ? err
          : new AnchoreApiError(400, 'Could not validate request due to error: request body is not valid JSON', {
              validation_error: (err as Error).message,
            });
    }
    if (!(parsed instanceof AnchoreApiError)) this.tagStats(fulltagOf(parsed.ref)).addImage += 1;
    return {
      operation: 'addImage',
      auth: true,
      run: ({ res }) => {
        if (api === 'v2') checkQueryV2('addImage', query);
        if (parsed instanceof AnchoreApiError) throw parsed;
        const image = this.engine.submit(parsed, force);
        sendJson(res, 200, api === 'v2' ? imageRecordJsonV2(image, this.user) : [imageRecordJson(image, this.user)]);
      },
    };
  }

  private get user(): string {
    return this.options.user ?? 'admin';
  }

  private admin(method: string, pathname: string, body: Buffer, res: http.ServerResponse): void {
    const parseJson = (): unknown => {
      try {
        return JSON.parse(body.toString('utf8'));
      } catch {
        throw new SimulatorConfigError('admin request', ['body is not valid JSON']);
      }
    };
    try {
      switch (`${method} ${pathname}`) {
        case 'GET /_sim/faults':
          sendJson(res, 200, this.faults.config);
          return;
        case 'PUT /_sim/faults':
          this.setFaults(parseFaultConfig(parseJson()));
          sendJson(res, 200, this.faults.config);
          return;
        case 'GET /_sim/analysis-delay':
          sendJson(res, 200, { ms: this.engine.analysisDelayMs });
          return;
        case 'PUT /_sim/analysis-delay': {
          const raw = parseJson();
          const ms = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>)['ms'] : undefined;
          if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
            throw new SimulatorConfigError('analysis delay', ['expected {"ms": <number >= 0>}']);
          }
          this.setAnalysisDelayMs(ms);
          sendJson(res, 200, { ms });
          return;
        }
        case 'GET /_sim/stats':
          sendJson(res, 200, this.stats());
          return;
        case 'GET /_sim/exchanges':
          sendJson(res, 200, { record: this.options.record ?? 0, exchanges: this.recorded });
          return;
        case 'POST /_sim/reset':
          this.reset();
          sendJson(res, 200, { reset: true });
          return;
        default:
          sendError(res, 404, 'unknown simulator admin route', { path: pathname, method });
      }
    } catch (err) {
      if (err instanceof SimulatorConfigError) {
        sendJson(res, 400, { message: err.message, httpcode: 400, detail: { problems: err.problems } });
        return;
      }
      throw err;
    }
  }
}

/** Starts a simulator; resolves once it listens. Throws SimulatorConfigError for bad data/faults. */
export async function startScannerSimulator(opts: SimulatorOptions = {}): Promise<ScannerSimulator> {
  const data = resolveSimulatorData(opts.data ?? (await loadSampleSimulatorData()));
  const password = opts.password ?? 'foobar';
  const user = opts.user ?? 'admin';
  const api = opts.api ?? 'v1';
  if (!SIMULATOR_APIS.includes(api)) throw new SimulatorConfigError('simulator options', [`api must be one of ${SIMULATOR_APIS.join(', ')}`]);
  const record = opts.record ?? 0;
  if (!Number.isSafeInteger(record) || record < 0) throw new SimulatorConfigError('simulator options', ['record must be a whole number >= 0']);
  const engine = new SimulatorEngine({
    data,
    analysisDelayMs: opts.analysisDelayMs ?? 0,
    now: opts.now ?? Date.now,
    user,
  });
  // Validate faults before opening a socket.
  parseFaultConfig(opts.faults ?? {});
  const host = opts.host ?? '127.0.0.1';
  const basePath = normalizeBasePath(opts.basePath ?? '/v1');
  const v2BasePath = normalizeBasePath(opts.v2BasePath ?? '/v2');
  if (api === 'both' && basePath === v2BasePath) {
    throw new SimulatorConfigError('simulator options', ['basePath and v2BasePath must differ when both APIs are served']);
  }
  const simulator = new Simulator(
    http.createServer({ keepAliveTimeout: 5_000 }),
    engine,
    { ...opts, api, user, password },
    basePath,
    v2BasePath,
  );
  await simulator.listen(host, opts.port ?? 0);
  return simulator;
}
