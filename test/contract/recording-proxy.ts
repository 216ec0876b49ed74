/**
 * A recording reverse proxy on 127.0.0.1: the client under test talks to it as if it were the
 * scanner, it forwards every request byte for byte (the request target exactly as received, so a
 * `%3A` stays a `%3A`) to the real server and records both sides. Bodies are capped (a contract
 * test has no business with megabytes); an over-long body is recorded as an error, never cut.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { HttpExchange, RecordedRequest } from './openapi-contract.js';

const MAX_BODY_BYTES = 4 * 1024 * 1024;
/** Hop-by-hop headers (RFC 9110 section 7.6.1) are not forwarded. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);

export interface RecordingProxy {
  /** `http://127.0.0.1:PORT` followed by `basePath`. */
  readonly url: string;
  /** Every exchange so far, in the order the responses were complete. */
  readonly exchanges: readonly HttpExchange[];
  /** Forgets the recorded exchanges. */
  clear(): void;
  /** Called with each request, once read and before it is forwarded (a test may move a clock). */
  onRequest: ((request: RecordedRequest) => void) | undefined;
  close(): Promise<void>;
}

function readAll(stream: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        stream.destroy(new Error(`body over ${String(MAX_BODY_BYTES)} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    stream.on('end', () => {
      resolve(Buffer.concat(chunks));
    });
    stream.on('error', reject);
  });
}

function forwardable(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const [key, value] of Object.entries(headers)) {
    if (!HOP_BY_HOP.has(key) && value !== undefined) out[key] = value;
  }
  return out;
}

/**
 * Starts a proxy to `target` (an `http://127.0.0.1:PORT[/base]` URL; only its origin is used: the
 * request path is forwarded as received). `basePath` is appended to the proxy's own URL.
 */
export async function startRecordingProxy(target: string, basePath = ''): Promise<RecordingProxy> {
  const upstream = new URL(target);
  if (upstream.protocol !== 'http:' || !/^127\.\d+\.\d+\.\d+$/.test(upstream.hostname)) {
    throw new Error(`recording proxy: target must be http://127.x.x.x, got ${target}`);
  }
  const exchanges: HttpExchange[] = [];
  const sockets = new Set<Socket>();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const hooks: { onRequest: ((request: RecordedRequest) => void) | undefined } = { onRequest: undefined };

  const server = http.createServer((req, res) => {
    void (async () => {
      let request: RecordedRequest;
      try {
        request = { method: req.method ?? 'GET', url: req.url ?? '/', headers: { ...req.headers }, body: await readAll(req) };
      } catch (error) {
        res.writeHead(502).end(`recording proxy: ${String(error)}`);
        return;
      }
      hooks.onRequest?.(request);
      const outgoing = http.request({
        host: upstream.hostname,
        port: upstream.port,
        method: request.method,
        path: request.url,
        headers: { ...forwardable(req.headers), host: upstream.host, 'content-length': String(request.body.length) },
        agent,
      });
      outgoing.on('response', (upstreamRes) => {
        readAll(upstreamRes).then(
          (body) => {
            const status = upstreamRes.statusCode ?? 0;
            exchanges.push({ request, response: { status, headers: { ...upstreamRes.headers }, body } });
            res.writeHead(status, { ...forwardable(upstreamRes.headers), 'content-length': String(body.length) });
            res.end(body);
          },
          (error: unknown) => {
            res.destroy(error instanceof Error ? error : new Error(String(error)));
          },
        );
      });
      // A refused or reset upstream is the client's to see as a network error: drop the connection.
      outgoing.on('error', () => {
        res.destroy();
      });
      res.on('close', () => {
        if (!res.writableFinished) outgoing.destroy();
      });
      outgoing.end(request.body);
    })();
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${String(port)}${basePath.replace(/\/+$/, '')}`,
    get exchanges() {
      return exchanges;
    },
    clear() {
      exchanges.length = 0;
    },
    get onRequest() {
      return hooks.onRequest;
    },
    set onRequest(fn) {
      hooks.onRequest = fn;
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => {
          agent.destroy();
          resolve();
        });
        for (const socket of sockets) socket.destroy();
      });
    },
  };
}
