/**
 * An Anchore API simulator over plain node:http, for tests, benchmarks, the local demo and the
 * end-to-end cluster tests. It speaks Anchore Engine's v1 API, Anchore Enterprise's v2 API, or both
 * (`api`), from one engine: the same images, lifecycle, verdicts and faults whichever API asks. The
 * real scanner client must work unchanged against it.
 *
 * Each API is a route table of its own (routes-v1.ts, routes-v2.ts) on shared plumbing (routing.ts);
 * this module owns the server: which API a path belongs to, counters, recording, faults, auth and
 * the admin routes. Outside the API bases it answers Anchore Engine's `GET /version` (with v1).
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
import { SimulatorEngine } from './engine.js';
import { AnchoreApiError, SimulatorConfigError } from './errors.js';
import { FaultInjector, parseFaultConfig, type FaultConfig, type RouteOperation, type TransportFault } from './faults.js';
import { createV1Api, versionJsonV1 } from './routes-v1.js';
import { createV2Api } from './routes-v2.js';
import {
  BodyTooLargeError,
  matchRoute,
  normalizeBasePath,
  parseJsonOrText,
  readBody,
  sendJson,
  type Api,
  type ApiVersion,
  type RouteDeps,
  type TagStats,
} from './routing.js';

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

function digestOfSecret(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** Answers an error in the shape of `version`'s API. */
function sendError(
  res: http.ServerResponse,
  version: ApiVersion,
  status: number,
  message: string,
  detail: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): void {
  sendJson(res, status, version.errorBody(status, message, detail), headers);
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
  private readonly apis: { readonly v1: ApiVersion; readonly v2: ApiVersion };

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
    this.apis = { v1: createV1Api(this.routeDeps(basePath)), v2: createV2Api(this.routeDeps(v2BasePath)) };
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      this.handle(req, res).catch((err: unknown) => {
        this.options.logger?.info({ err: String(err) }, 'scanner simulator: request failed');
        sendError(res, this.apis.v1, 500, 'internal error in scanner simulator');
      });
    });
  }

  private routeDeps(basePath: string): RouteDeps {
    return {
      engine: this.engine,
      user: this.user,
      basePath,
      tagStats: (fulltag) => this.tagStats(fulltag),
      count: (counter) => {
        this.counters[counter] += 1;
      },
    };
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
    const defaultApi = this.servesV1 ? this.apis.v1 : this.apis.v2;

    let body: Buffer;
    try {
      body = await readBody(req);
    } catch (err) {
      if (err instanceof BodyTooLargeError) {
        sendError(res, defaultApi, 413, 'request body too large');
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
      sendJson(res, 200, versionJsonV1());
      return;
    }
    const target = this.apiOf(pathname);
    if (target === undefined) {
      sendError(res, defaultApi, 404, 'not found', { path: pathname });
      return;
    }
    const { api, rest } = target;
    const version = this.apis[api];
    const route = matchRoute(version, method, rest, query, body);
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
      this.answerFault(version, decision.fault, route.operation, res);
      return;
    }
    if (route.auth && !this.authorized(req.headers.authorization)) {
      counters.unauthorized += 1;
      sendError(res, version, 401, 'Unauthorized', {}, { 'www-authenticate': 'Basic realm="Authentication required"' });
      return;
    }
    try {
      route.run(res);
    } catch (err) {
      if (err instanceof AnchoreApiError) {
        sendJson(res, err.httpcode, version.apiErrorBody(err));
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

  private answerFault(version: ApiVersion, fault: TransportFault, operation: RouteOperation, res: http.ServerResponse): void {
    this.options.logger?.info({ fault: fault.kind, operation, api: version.api }, 'scanner simulator: fault injected');
    switch (fault.kind) {
      case 'hang':
        // Never answered; close() destroys the socket.
        return;
      case 'status': {
        const headers: Record<string, string> = {};
        if (fault.retryAfterSeconds !== undefined) headers['retry-after'] = String(fault.retryAfterSeconds);
        if (fault.status === 401) headers['www-authenticate'] = 'Basic realm="Authentication required"';
        const text = http.STATUS_CODES[fault.status] ?? 'error';
        sendError(res, version, fault.status, `simulated fault: ${text}`, { simulated: true }, headers);
        return;
      }
      case 'malformed': {
        const text = version.malformedText;
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
        return;
      }
      case 'wrongShape':
        sendJson(res, 200, version.wrongShape(operation));
        return;
    }
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
          sendError(res, this.apis.v1, 404, 'unknown simulator admin route', { path: pathname, method });
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
