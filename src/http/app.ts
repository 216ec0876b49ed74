import Router from '@koa/router';
import Koa from 'koa';
import type { Logger } from 'pino';
import {
  decodeAdmissionReview,
  encodeAdmissionResponse,
  podReview,
  type AdmissionRequest,
} from '../admission/admission-review.js';
import { decodeImageReview, encodeImageReviewResponse } from '../admission/image-review.js';
import { computeDeadline, type DeadlineSettings } from '../engine/deadline.js';
import type { Evaluation, Evaluator } from '../engine/evaluator.js';
import { BadRequestError, describeError } from '../errors.js';
import type { Endpoint, Metrics } from '../observability/metrics.js';
import type { ContainerImage } from '../policy/types.js';
import { readJsonBody } from './read-json-body.js';

export interface AppState {
  /** False before start-up completes and from the moment shutdown begins. */
  ready: boolean;
}

export interface AppOptions {
  readonly evaluator: Evaluator;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly deadline: DeadlineSettings;
  readonly maxBodyBytes: number;
  readonly state: AppState;
  readonly mode: 'enforce' | 'warn';
  readonly now?: () => number;
}

function resultOf(evaluation: Evaluation, mode: 'enforce' | 'warn'): 'allowed' | 'denied' | 'warned' | 'exempt' {
  if (evaluation.exempt) return 'exempt';
  if (!evaluation.decision.allowed) return 'denied';
  return mode === 'warn' && evaluation.decision.findings.length > 0 ? 'warned' : 'allowed';
}

/**
 * The HTTP surface: webhook endpoints, health and metrics. Knows HTTP and which codec to use;
 * the decision itself is the evaluator's.
 */
export function createApp(opts: AppOptions): Koa {
  const now = opts.now ?? (() => performance.now());
  const app = new Koa();
  const router = new Router();
  // Koa logs errors to stderr by default; ours are logged (and answered) by the middleware below.
  app.silent = true;

  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (error) {
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
      // While shutting down, every answer (also one to a request that arrived before the signal)
      // closes its connection, so the API server reconnects elsewhere and no idle keep-alive
      // connection holds the shutdown.
      if (!opts.state.ready) ctx.set('Connection', 'close');
    }
  });

  async function judge(
    endpoint: Endpoint,
    images: readonly ContainerImage[],
    namespace: string | undefined,
    timeoutParam: string | undefined,
    logFields: Record<string, unknown>,
  ): Promise<Evaluation> {
    const startedAt = now();
    const deadline = computeDeadline(timeoutParam, opts.deadline);
    const evaluation = await opts.evaluator.evaluate({ images, budgetMs: deadline.budgetMs, ...(namespace !== undefined ? { namespace } : {}) });
    const durationMs = now() - startedAt;
    const result = resultOf(evaluation, opts.mode);
    opts.metrics.decisions.inc({ endpoint, result });
    opts.metrics.decisionDuration.observe({ endpoint }, durationMs / 1000);
    opts.logger.info(
      {
        endpoint,
        ...logFields,
        namespace,
        images: evaluation.images,
        allowed: evaluation.decision.allowed,
        result,
        ...(evaluation.decision.message !== '' ? { reasons: evaluation.decision.message } : {}),
        cache: {
          hit: evaluation.images.filter((i) => i.cache === 'hit').length,
          miss: evaluation.images.filter((i) => i.cache === 'miss').length,
          shared: evaluation.images.filter((i) => i.cache === 'shared').length,
        },
        budgetMs: deadline.budgetMs,
        durationMs: Math.round(durationMs * 100) / 100,
      },
      'decision',
    );
    return evaluation;
  }

  const validate = async (ctx: Koa.Context): Promise<void> => {
    ctx.state['endpoint'] = 'validate';
    const body = await readJsonBody(ctx.req, opts.maxBodyBytes);
    const request: AdmissionRequest = decodeAdmissionReview(body);
    const review = podReview(request);
    if (review === undefined) {
      // Not a pod creation or an ephemeral container: nothing of ours to judge.
      ctx.body = encodeAdmissionResponse(request, { allowed: true });
      return;
    }
    const timeout = typeof ctx.query['timeout'] === 'string' ? ctx.query['timeout'] : undefined;
    const evaluation = await judge('validate', review.images, request.namespace, timeout, {
      uid: request.uid,
      operation: request.operation,
      ...(request.subResource !== '' ? { subResource: request.subResource } : {}),
      pod: review.podName,
    });
    ctx.body = encodeAdmissionResponse(request, {
      allowed: evaluation.decision.allowed,
      message: evaluation.decision.message,
      warnings: evaluation.decision.warnings,
    });
  };
  router.post('/validate', validate);
  // kube-image-bouncer registered its webhook at the root path.
  router.post('/', validate);

  router.post('/image_policy', async (ctx) => {
    ctx.state['endpoint'] = 'image_policy';
    const body = await readJsonBody(ctx.req, opts.maxBodyBytes);
    const review = decodeImageReview(body);
    const timeout = typeof ctx.query['timeout'] === 'string' ? ctx.query['timeout'] : undefined;
    const evaluation = await judge('image_policy', review.images, review.namespace, timeout, {});
    ctx.body = encodeImageReviewResponse({ allowed: evaluation.decision.allowed, reason: evaluation.decision.message });
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
