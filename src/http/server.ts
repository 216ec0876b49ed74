import { readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type Koa from 'koa';
import type { Logger } from 'pino';
import { describeError } from '../errors.js';

export interface ServerOptions {
  readonly host: string;
  readonly port: number;
  /** Absent only for plain HTTP (an explicit local-use switch). */
  readonly tls?: { readonly certFile: string; readonly keyFile: string; readonly reloadIntervalMs: number };
  readonly logger: Logger;
  /** Bound of open connections (MAX_CONNECTIONS): past it, a new connection is closed at once. */
  readonly maxConnections?: number;
  /** Told of every connection closed at once because of maxConnections. */
  readonly onConnectionDropped?: () => void;
}

/**
 * Time a client has to send a request's headers, and the whole request. The API server sends an
 * AdmissionReview in one go and waits at most 30 s for the answer (its `timeout`), so a request still
 * arriving after this is not from it; the bound keeps slow uploads from holding sockets and body bytes.
 */
export const HEADERS_TIMEOUT_MS = 10_000;
export const REQUEST_TIMEOUT_MS = 15_000;
/** How often Node checks those two timeouts (its default, 30 s, would let them run 30 s late). */
const CONNECTIONS_CHECKING_INTERVAL_MS = 1000;
/** An idle keep-alive connection is kept a little longer than the API server's client keeps it. */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;

export interface RunningServer {
  readonly server: http.Server;
  readonly port: number;
  readonly url: string;
  /** Stops accepting, answers in-flight requests, then closes every connection (bounded by timeoutMs). */
  close(timeoutMs: number): Promise<void>;
}

function fingerprint(files: readonly string[]): string {
  return files.map((f) => {
    const s = statSync(f);
    return `${s.mtimeMs}:${s.size}:${s.ino}`;
  }).join('|');
}

/**
 * Listens with TLS (certificates re-read when the files change, as a renewed Kubernetes secret
 * does) or, when asked explicitly, plain HTTP.
 */
export async function startServer(app: Koa, opts: ServerOptions): Promise<RunningServer> {
  let server: http.Server;
  let reloadTimer: NodeJS.Timeout | undefined;
  const callback = app.callback();
  // koa answers errors itself; the promise it returns only settles after the response.
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    void callback(req, res);
  };
  if (opts.tls !== undefined) {
    const { certFile, keyFile, reloadIntervalMs } = opts.tls;
    const tlsServer = https.createServer(
      { cert: readFileSync(certFile), key: readFileSync(keyFile), minVersion: 'TLSv1.2', connectionsCheckingInterval: CONNECTIONS_CHECKING_INTERVAL_MS },
      handler,
    );
    let seen = fingerprint([certFile, keyFile]);
    reloadTimer = setInterval(() => {
      try {
        const current = fingerprint([certFile, keyFile]);
        if (current === seen) return;
        tlsServer.setSecureContext({ cert: readFileSync(certFile), key: readFileSync(keyFile), minVersion: 'TLSv1.2' });
        seen = current;
        opts.logger.info({ certFile }, 'TLS certificate reloaded');
      } catch (error) {
        // Half-written files during a secret update: keep serving the old pair, try again next tick.
        opts.logger.warn({ err: describeError(error) }, 'TLS certificate reload failed; keeping the current one');
      }
    }, reloadIntervalMs);
    reloadTimer.unref();
    server = tlsServer;
  } else {
    server = http.createServer({ connectionsCheckingInterval: CONNECTIONS_CHECKING_INTERVAL_MS }, handler);
  }
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  if (opts.maxConnections !== undefined) server.maxConnections = opts.maxConnections;
  server.on('drop', () => {
    opts.onConnectionDropped?.();
  });
  server.on('clientError', (_error, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const scheme = opts.tls !== undefined ? 'https' : 'http';
  const host = opts.host === '0.0.0.0' || opts.host === '::' ? '127.0.0.1' : opts.host;
  return {
    server,
    port,
    url: `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`,
    close: async (timeoutMs) => {
      if (reloadTimer !== undefined) clearInterval(reloadTimer);
      const closed = new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
      server.closeIdleConnections();
      const timer = setTimeout(() => {
        server.closeAllConnections();
      }, timeoutMs);
      timer.unref();
      await closed;
      clearTimeout(timer);
    },
  };
}
