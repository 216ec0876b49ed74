import { readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type Koa from 'koa';
import type { Logger } from 'pino';
import { describeError } from '../errors.js';
import { createFairShare, peerOf, type Claim } from './fair-share.js';

export interface ServerOptions {
  readonly host: string;
  readonly port: number;
  /** Absent only for plain HTTP (an explicit local-use switch). */
  readonly tls?: { readonly certFile: string; readonly keyFile: string; readonly reloadIntervalMs: number };
  readonly logger: Logger;
  /**
   * Bound of open connections (MAX_CONNECTIONS), shared fairly between peers (fair-share.ts): past it a
   * new connection closes one of a peer holding more connections than the new one's peer, if one of
   * those has no request being answered; otherwise the new connection is closed at once.
   */
  readonly maxConnections?: number;
  /** Told of every connection closed at once because of maxConnections. */
  readonly onConnectionDropped?: () => void;
  /** Told of every connection closed to make room for another peer's. */
  readonly onConnectionPreempted?: (peer: string) => void;
}

interface ConnectionClaim extends Claim {
  /** The connection's latest request and its answer (a connection carries one at a time). */
  req?: http.IncomingMessage;
  res?: http.ServerResponse;
}

/**
 * Time a client has to send a request's headers, and the whole request. The API server sends an
 * AdmissionReview in one go and waits at most 30 s for the answer (its `timeout`), so a request still
 * arriving after this is not from it; the bound keeps slow uploads from holding sockets and body bytes.
 */
export const HEADERS_TIMEOUT_MS = 10_000;
export const REQUEST_TIMEOUT_MS = 15_000;
/** Time a client has to complete the TLS handshake (Node's default, 120 s, would let a stalled one hold a connection). */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
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
  // The claim of each open connection, by the socket requests arrive on (for TLS, the TLS socket; the
  // TCP connection under it is found once, by its `address|port`, when the handshake completes).
  const claims = new WeakMap<Socket, ConnectionClaim>();
  const handshaking = new Map<string, ConnectionClaim>();
  const connectionKey = (socket: Socket): string => `${socket.remoteAddress ?? ''}|${String(socket.remotePort ?? '')}`;
  const share = createFairShare<ConnectionClaim>(opts.maxConnections ?? Number.MAX_SAFE_INTEGER, (claim) => {
    opts.onConnectionPreempted?.(claim.peer);
  });
  // koa answers errors itself; the promise it returns only settles after the response.
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const claim = claims.get(req.socket);
    if (claim !== undefined) {
      claim.req = req;
      claim.res = res;
    }
    void callback(req, res);
  };
  if (opts.tls !== undefined) {
    const { certFile, keyFile, reloadIntervalMs } = opts.tls;
    const tlsServer = https.createServer(
      {
        cert: readFileSync(certFile),
        key: readFileSync(keyFile),
        minVersion: 'TLSv1.2',
        handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
        connectionsCheckingInterval: CONNECTIONS_CHECKING_INTERVAL_MS,
      },
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
  // Not server.maxConnections: it closes the newest connection, whoever holds the others.
  server.on('connection', (socket: Socket) => {
    const claim: ConnectionClaim = {
      peer: peerOf(socket),
      // Idle, or its request still arriving: it can be cut for another peer. From the request's last
      // byte until its answer has gone, it cannot.
      preemptible: () => claim.req === undefined || !claim.req.complete || claim.res?.writableFinished === true,
      preempt: () => {
        socket.destroy();
      },
    };
    if (!share.take(claim, 1)) {
      socket.destroy();
      opts.onConnectionDropped?.();
      return;
    }
    const key = opts.tls !== undefined ? connectionKey(socket) : undefined;
    if (key === undefined) claims.set(socket, claim);
    else handshaking.set(key, claim);
    socket.once('close', () => {
      share.release(claim);
      if (key !== undefined && handshaking.get(key) === claim) handshaking.delete(key);
    });
  });
  server.on('secureConnection', (socket: Socket) => {
    const key = connectionKey(socket);
    const claim = handshaking.get(key);
    if (claim === undefined) return;
    handshaking.delete(key);
    claims.set(socket, claim);
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
