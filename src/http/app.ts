import Router from '@koa/router';
import Koa from 'koa';
import type { Logger } from 'pino';
import { decodeAdmissionReview, encodeAdmissionResponse, type AdmissionAnswer, type AdmissionRequest } from '../admission/admission-review.js';
import type { AdmissionCore, Arrival } from '../admission/core.js';
import { decodeImageReview, encodeImageReviewResponse } from '../admission/image-review.js';
import { BadRequestError, OverloadedError, describeError } from '../errors.js';
import type { Endpoint, Metrics } from '../observability/metrics.js';
import type { Mode } from '../policy/types.js';
import { createFairShare, peerOf } from './fair-share.js';
import { readJsonBody, type BodyBudget, type BodyHold } from './read-json-body.js';

export interface AppState {
  /** False before start-up completes and from the moment shutdown begins. */
  ready: boolean;
}

export interface AppOptions {
  readonly core: AdmissionCore;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly maxBodyBytes: number;
  /** Bytes of request bodies being read at once by every request together (MAX_INFLIGHT_BODY_BYTES). */
  readonly maxInflightBodyBytes?: number;
  readonly state: AppState;
}

/**
 * The `timeout` query parameter the API server adds (`?timeout=10s`), without parsing the whole query.
 * A Go duration needs no percent-decoding; anything else is not a duration and the default applies.
 */
function timeoutParam(querystring: string): string | undefined {
  return /(?:^|&)timeout=([^&]*)/.exec(querystring)?.[1];
}

/**
 * The HTTP surface: read the body, decode, ask the admission core (admission/core.ts), encode.
 * Health and metrics. Knows HTTP and the codecs; nothing of the decision.
 */
export function createApp(opts: AppOptions): Koa {
  /**
   * Writes a webhook answer in one go. The review endpoints are the hot path of every admission; Koa's
   * response handling (header by header, then the body) costs about as much as the decision on a cache
   * hit (bench/, docs/BENCHMARKS.md), so these answers bypass it (`ctx.respond = false`).
   * While shutting down, the answer closes its connection, like every other answer (see below).
   */
  const sendJson = (ctx: Koa.Context, body: string): void => {
    ctx.respond = false;
    ctx.status = 200;
    // A string body goes out with the headers in one write (a Buffer would be a second TLS record).
    const headers: Record<string, string | number> = { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) };
    if (!opts.state.ready) headers['connection'] = 'close';
    ctx.res.writeHead(200, headers).end(body);
  };
  const bodyBudget: BodyBudget = createFairShare<BodyHold>(opts.maxInflightBodyBytes ?? Number.MAX_SAFE_INTEGER, (hold, bytes) => {
    opts.metrics.overloadRefusals.inc({ reason: 'body_bytes_preempted' });
    opts.logger.warn({ peer: hold.peer, bytes }, 'upload cut to make room for a client holding less (MAX_INFLIGHT_BODY_BYTES)');
  });
  /**
   * Reads the body within MAX_BODY_BYTES and the process' body budget. The budget is given back as soon
   * as the body is parsed: a request waiting for scans holds none of it (docs/THREAT-MODEL.md, I2).
   */
  const readBody = async (ctx: Koa.Context): Promise<unknown> => {
    const hold: BodyHold = {
      peer: peerOf(ctx.req.socket),
      uploading: true,
      preemptible: () => hold.uploading,
      preempt: () => {
        ctx.req.destroy();
      },
      release: () => {
        bodyBudget.release(hold);
      },
    };
    ctx.state['bodyHold'] = hold;
    try {
      return await readJsonBody(ctx.req, opts.maxBodyBytes, bodyBudget, hold);
    } finally {
      hold.release();
    }
  };
  /**
   * Decodes an AdmissionReview and starts the core on it. Returns at once with what the answer's
   * encoding needs, so that nothing here keeps the decoded object alive while the core waits for scans.
   */
  const startReview = async (
    ctx: Koa.Context,
    run: (request: AdmissionRequest, arrival: Arrival) => Promise<AdmissionAnswer>,
    pathMode?: Mode,
  ): Promise<{ head: Pick<AdmissionRequest, 'apiVersion' | 'uid'>; answer: Promise<AdmissionAnswer> }> => {
    const request = decodeAdmissionReview(await readBody(ctx));
    return { head: { apiVersion: request.apiVersion, uid: request.uid }, answer: run(request, { pathMode, timeout: timeoutParam(ctx.querystring) }) };
  };
  const app = new Koa();
  const router = new Router();
  // Koa logs errors to stderr by default; ours are logged (and answered) by the middleware below.
  app.silent = true;

  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (error) {
      if (error instanceof OverloadedError) {
        ctx.status = error.statusCode;
        ctx.set('Retry-After', String(error.retryAfterS));
        // The rest of the upload is not read into memory; the connection goes.
        ctx.set('Connection', 'close');
        ctx.body = { code: error.code, message: error.message };
        opts.metrics.overloadRefusals.inc({ reason: error.reason });
        opts.logger.warn({ path: ctx.path, status: error.statusCode, err: describeError(error) }, 'overloaded');
        return;
      }
      if (error instanceof BadRequestError) {
        ctx.status = error.statusCode;
        ctx.body = { code: error.code, message: error.message };
        const endpoint = ctx.state['endpoint'] as Endpoint | undefined;
        if (endpoint !== undefined) opts.metrics.decisions.inc({ endpoint, result: 'bad_request' });
        opts.logger.warn({ path: ctx.path, status: error.statusCode, err: describeError(error) }, 'bad request');
        return;
      }
      opts.logger.error({ path: ctx.path, err: describeError(error) }, 'internal error');
      ctx.status = 500;
      ctx.body = { code: 'SCANGATE_ERR_INTERNAL', message: 'internal error' };
    } finally {
      (ctx.state['bodyHold'] as BodyHold | undefined)?.release();
      // While shutting down, every answer (also one to a request that arrived before the signal)
      // closes its connection, so the API server reconnects elsewhere and no idle keep-alive
      // connection holds the shutdown.
      if (!opts.state.ready) ctx.set('Connection', 'close');
    }
  });

  /**
   * The ValidatingAdmissionWebhook endpoint. `pathMode` is the mode of the webhook entry that called
   * (one entry per namespace mode, each with its own namespaceSelector: see manifests/).
   */
  const validate = async (ctx: Koa.Context, pathMode: Mode | undefined): Promise<void> => {
    ctx.state['endpoint'] = 'validate';
    const { head, answer } = await startReview(ctx, (r, a) => opts.core.validate(r, a), pathMode);
    sendJson(ctx, encodeAdmissionResponse(head, await answer));
  };
  router.post('/validate', (ctx) => validate(ctx, undefined));
  router.post('/validate/enforce', (ctx) => validate(ctx, 'enforce'));
  router.post('/validate/warn', (ctx) => validate(ctx, 'warn'));
  // kube-image-bouncer registered its webhook at the root path.
  router.post('/', (ctx) => validate(ctx, undefined));

  /** The mutating webhook (digest pinning, break-glass proofs). Never refuses a decoded request. */
  router.post('/mutate', async (ctx) => {
    ctx.state['endpoint'] = 'mutate';
    const { head, answer } = await startReview(ctx, (r, a) => opts.core.mutate(r, a));
    sendJson(ctx, encodeAdmissionResponse(head, await answer));
  });

  router.post('/image_policy', async (ctx) => {
    ctx.state['endpoint'] = 'image_policy';
    const review = decodeImageReview(await readBody(ctx));
    const answer = await opts.core.imagePolicy(review, { timeout: timeoutParam(ctx.querystring) });
    sendJson(ctx, JSON.stringify(encodeImageReviewResponse(answer)));
  });

  router.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok' };
  });
  router.get('/readyz', (ctx) => {
    ctx.status = opts.state.ready ? 200 : 503;
    ctx.body = { status: opts.state.ready ? 'ok' : 'not ready' };
  });
  router.get('/metrics', async (ctx) => {
    ctx.type = opts.metrics.registry.contentType;
    ctx.body = await opts.metrics.registry.metrics();
  });

  app.use(router.routes());
  app.use(router.allowedMethods());
  app.use((ctx) => {
    ctx.status = 404;
    ctx.body = { code: 'SCANGATE_ERR_NOT_FOUND', message: `no route for ${ctx.method} ${ctx.path}` };
  });
  return app;
}
