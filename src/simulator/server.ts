/**
 * An Anchore Engine v1 API simulator over plain node:http, for tests, benchmarks, the local demo
 * and the end-to-end cluster tests. The real scanner client must work unchanged against it.
 *
 * v1 routes (under `basePath`, HTTP Basic auth on every call except the `GET {base}` ping):
 *   POST {base}/images                       addImage
 *   GET  {base}/images[?fulltag=]            listImages
 *   GET  {base}/images/{digest}              getImage
 *   GET  {base}/images/{digest}/check?tag=   check
 *   GET  {base}/images/{digest}/vuln[/{all|os|non-os}]   vuln
 *   GET  {base}/status                       service status
 * Admin routes (no auth, outside basePath): `GET|PUT /_sim/faults` (a FaultConfig, see faults.ts),
 * `GET|PUT /_sim/analysis-delay` (`{"ms": N}`), `GET /_sim/stats`, `POST /_sim/reset`; and
 * `GET /health`, `GET /version` as Anchore serves them.
 *
 * A v1 call goes: counted -> fault decision (latency, hang, status, malformed, wrongShape) ->
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

export { loadSimulatorData, loadSampleSimulatorData, SAMPLE_DATA_URL, type SimulatorData } from './data.js';
export { parseFaultConfig, type FaultConfig, type SimOperation } from './faults.js';
export { AnchoreApiError, SimulatorConfigError, SimulatorError } from './errors.js';

export interface SimulatorOptions {
  /** Default '127.0.0.1'. */
  host?: string | undefined;
  /** Default 0 (ephemeral). */
  port?: number | undefined;
  /** Default '/v1' (ANCHORE_CLI_URL = http://host:port/v1); '' serves the API at the root. */
  basePath?: string | undefined;
  /** Default 'admin'. */
  user?: string | undefined;
  /** Default 'foobar'. '' is allowed (Sysdig style: the token is the user, the password is empty). */
  password?: string | undefined;
  /** Default 0: time from the first POST /images of an image until it is 'analyzed'. */
  analysisDelayMs?: number | undefined;
  /** Default: samples/scanner-data.json. Validated at start (SimulatorConfigError). */
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
 * Counters since start or reset(). Every v1 request counts in `total` and in its operation
 * counter (`other` for status, ping and unknown routes), whether it is then faulted, refused (401)
 * or answered. `faulted` counts calls answered by a hang/status/malformed/wrongShape fault;
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
  other: number;
  unauthorized: number;
  faulted: number;
  getWithBody: number;
  forced: number;
  autosubscribed: number;
  total: number;
  byTag: Record<string, TagStats>;
}

export interface ScannerSimulator {
  /** Base URL including basePath, e.g. http://127.0.0.1:39211/v1. */
  readonly url: string;
  readonly port: number;
  stats(): SimulatorStats;
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
    other: 0,
    unauthorized: 0,
    faulted: 0,
    getWithBody: 0,
    forced: 0,
    autosubscribed: 0,
    total: 0,
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

function sendError(res: http.ServerResponse, status: number, message: string, detail: Record<string, unknown> = {}, headers: Record<string, string> = {}): void {
  sendJson(res, status, errorJson(status, message, detail), headers);
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

class Simulator implements ScannerSimulator {
  private readonly server: http.Server;
  private readonly engine: SimulatorEngine;
  private readonly options: SimulatorOptions;
  private readonly basePath: string;
  private readonly userDigest: Buffer;
  private readonly passwordDigest: Buffer;
  private faults: FaultInjector;
  private counters = freshStats();
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private closing: Promise<void> | undefined;
  private listening: { url: string; port: number } | undefined;

  constructor(server: http.Server, engine: SimulatorEngine, options: SimulatorOptions, basePath: string) {
    this.server = server;
    this.engine = engine;
    this.options = options;
    this.basePath = basePath;
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
    this.listening = { url: `http://${urlHost}:${String(actual)}${this.basePath}`, port: actual };
  }

  get url(): string {
    if (this.listening === undefined) throw new Error('scanner simulator is not listening');
    return this.listening.url;
  }

  get port(): number {
    if (this.listening === undefined) throw new Error('scanner simulator is not listening');
    return this.listening.port;
  }

  stats(): SimulatorStats {
    return structuredClone(this.counters);
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

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const rawUrl = req.url ?? '/';
    const q = rawUrl.indexOf('?');
    const pathname = q === -1 ? rawUrl : rawUrl.slice(0, q);
    const query = new URLSearchParams(q === -1 ? '' : rawUrl.slice(q + 1));
    const method = req.method ?? 'GET';

    let body: Buffer;
    try {
      body = await readBody(req);
    } catch (err) {
      if (err instanceof BodyTooLargeError) {
        sendError(res, 413, 'request body too large');
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
    if (pathname === '/version' && method === 'GET') {
      sendJson(res, 200, { service: { version: SIMULATED_VERSION }, api: { version: 'v1' }, db: { schema_version: '0.0.0' } });
      return;
    }
    const base = this.basePath;
    if (pathname !== base && !pathname.startsWith(`${base}/`)) {
      sendError(res, 404, 'not found', { path: pathname });
      return;
    }

    const rest = pathname.slice(base.length);
    const route = this.route(method, rest, query, body);
    const counters = this.counters;
    counters.total += 1;
    counters[route.operation] += 1;
    if (method === 'GET' && body.length > 0) {
      counters.getWithBody += 1;
      this.options.logger?.info({ path: pathname }, 'scanner simulator: GET request with a body');
    }

    const decision = this.faults.decide(route.operation);
    if (decision.latencyMs > 0) {
      await this.sleep(decision.latencyMs);
      if (res.destroyed) return;
    }
    if (decision.fault !== undefined) {
      counters.faulted += 1;
      this.answerFault(decision.fault, route.operation, res);
      return;
    }
    if (route.auth && !this.authorized(req.headers.authorization)) {
      counters.unauthorized += 1;
      sendError(res, 401, 'Unauthorized', {}, { 'www-authenticate': 'Basic realm="Authentication required"' });
      return;
    }
    try {
      route.run({ res, query, body });
    } catch (err) {
      if (err instanceof AnchoreApiError) {
        sendJson(res, err.httpcode, err.toBody());
        return;
      }
      throw err;
    }
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

  private answerFault(fault: TransportFault, operation: RouteOperation, res: http.ServerResponse): void {
    this.options.logger?.info({ fault: fault.kind, operation }, 'scanner simulator: fault injected');
    switch (fault.kind) {
      case 'hang':
        // Never answered; close() destroys the socket.
        return;
      case 'status': {
        const headers: Record<string, string> = {};
        if (fault.retryAfterSeconds !== undefined) headers['retry-after'] = String(fault.retryAfterSeconds);
        if (fault.status === 401) headers['www-authenticate'] = 'Basic realm="Authentication required"';
        const text = http.STATUS_CODES[fault.status] ?? 'error';
        sendError(res, fault.status, `simulated fault: ${text}`, { simulated: true }, headers);
        return;
      }
      case 'malformed': {
        const text = '{"imageDigest": "sha256:<truncated';
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
        return;
      }
      case 'wrongShape':
        sendJson(
          res,
          200,
          operation === 'vuln'
            ? ['simulated wrong shape: an array where an object is expected']
            : { simulated: 'wrong shape: an object where an array is expected' },
        );
        return;
    }
  }

  private route(method: string, rest: string, query: URLSearchParams, body: Buffer): Route {
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
      if (method === 'POST') return this.addImageRoute(query, body);
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

    let digest: string;
    try {
      digest = decodeURIComponent(parts[1] ?? '');
    } catch {
      return {
        operation: 'other',
        auth: true,
        run: ({ res }) => {
          sendError(res, 400, 'malformed image digest in path');
        },
      };
    }

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

  private addImageRoute(query: URLSearchParams, body: Buffer): Route {
    const force = queryFlag(query, 'force', false);
    if (force) this.counters.forced += 1;
    if (queryFlag(query, 'autosubscribe', true)) this.counters.autosubscribed += 1;
    // Parsed before the fault decision so that faulted submissions still count per tag.
    let parsed: ReturnType<typeof parseAddImageBody> | AnchoreApiError;
    try {
      const json: unknown = body.length === 0 ? undefined : JSON.parse(body.toString('utf8'));
      parsed = parseAddImageBody(json);
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
        if (parsed instanceof AnchoreApiError) throw parsed;
        sendJson(res, 200, [imageRecordJson(this.engine.submit(parsed, force), this.user)]);
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
  const simulator = new Simulator(http.createServer({ keepAliveTimeout: 5_000 }), engine, { ...opts, user, password }, basePath);
  await simulator.listen(host, opts.port ?? 0);
  return simulator;
}
