import Router from '@koa/router';
import Koa from 'koa';
import type { Logger } from 'pino';
import {
  decodeAdmissionReview,
  encodeAdmissionResponse,
  imagesToJudge,
  objectUidOf,
  type AdmissionRequest,
} from '../admission/admission-review.js';
import type { DecisionRecord } from '../admission/decision-record.js';
import { createAuditAnnotator, type AuditAnnotations } from '../admission/audit-annotations.js';
import { pinPatch, pinTargets } from '../admission/pin-targets.js';
import type { Pinner } from '../engine/pinner.js';
import { judgeBreakGlass, type BreakGlassGrant, type BreakGlassSettings } from '../policy/break-glass.js';
import { decodeImageReview, encodeImageReviewResponse } from '../admission/image-review.js';
import { computeDeadline, type Deadline, type DeadlineSettings } from '../engine/deadline.js';
import type { Evaluation, Evaluator } from '../engine/evaluator.js';
import { BadRequestError, OverloadedError, describeError } from '../errors.js';
import type { Endpoint, Metrics } from '../observability/metrics.js';
import { selectMode, type ModeSettings } from '../policy/mode.js';
import { displayText } from '../policy/safe-text.js';
import type { ContainerImage, Mode } from '../policy/types.js';
import { createFairShare, peerOf } from './fair-share.js';
import { readJsonBody, type BodyBudget, type BodyHold } from './read-json-body.js';

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
  /** Bytes of request bodies held at once by every request together (MAX_INFLIGHT_BODY_BYTES). */
  readonly maxInflightBodyBytes?: number;
  readonly state: AppState;
  /** MODE, NAMESPACE_MODES, WORKLOAD_MODE: which mode judges a request (policy/mode.ts). */
  readonly modes: ModeSettings;
  /** Who may break glass; absent: nobody (every annotated request is refused). */
  readonly breakGlass?: BreakGlassSettings;
  /** Digest pinning (PIN_DIGESTS); absent: `/mutate` answers every request unchanged. */
  readonly pinner?: Pinner;
  /** Observer of each decision (Kubernetes Events: observability/events.ts); synchronous, never throws. */
  readonly onDecision?: (record: DecisionRecord) => void;
  readonly now?: () => number;
}

/** What a judged request was about, for the DecisionRecord (the admission core builds it after the merge). */
type DecisionSubject = Pick<DecisionRecord, 'dryRun' | 'operation' | 'regarding' | 'user'>;

/** The DecisionRecord of a judged request: the metrics' result, refined into glass and unverified. */
function decisionRecordOf(
  endpoint: 'validate' | 'image_policy',
  evaluation: Evaluation,
  mode: Mode,
  about: DecisionSubject,
  breakGlass: DecisionRecord['breakGlass'],
): DecisionRecord {
  let result: DecisionRecord['result'] = resultOf(evaluation, mode);
  if (result !== 'denied' && result !== 'exempt' && evaluation.decision.breakGlass === 'admitted') result = 'glass';
  else if (result === 'allowed' && evaluation.images.some((i) => i.result === 'timeout' || i.result === 'deferred' || i.result === 'scanner-error')) result = 'unverified';
  const { decision } = evaluation;
  return { endpoint, result, mode, ...about, message: decision.message, warnings: decision.warnings, ...(breakGlass !== undefined ? { breakGlass } : {}), images: evaluation.images };
}

const NO_BREAK_GLASS: BreakGlassSettings = { users: [], groups: [], controllers: [] };

/**
 * The `timeout` query parameter the API server adds (`?timeout=10s`), without parsing the whole query.
 * A Go duration needs no percent-decoding; anything else is not a duration and the default applies.
 */
function timeoutParam(querystring: string): string | undefined {
  return /(?:^|&)timeout=([^&]*)/.exec(querystring)?.[1];
}

/** Images listed in one decision log line; the rest are counted (`imagesOmitted`). */
const LOG_MAX_IMAGES = 16;
/** Characters of any other tenant-written text (uid, pod, namespace, ...) in a log line. */
const LOG_MAX_FIELD_CHARS = 256;
/** Longest `?timeout=` spelling memoised (a Go duration the API server writes is a few characters). */
const MEMO_MAX_TIMEOUT_CHARS = 32;

/** Tenant-written text (uid, pod, namespace, ...) as a log line holds it: escaped and cut. */
function logText(text: string | undefined): string | undefined {
  return text === undefined ? undefined : displayText(text, LOG_MAX_FIELD_CHARS);
}

function cacheCounts(images: Evaluation['images']): { hit: number; miss: number; shared: number } {
  const counts = { hit: 0, miss: 0, shared: 0 };
  for (const image of images) if (image.cache !== undefined) counts[image.cache] += 1;
  return counts;
}

function resultOf(evaluation: Evaluation, mode: Mode): 'allowed' | 'denied' | 'warned' | 'exempt' {
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
  // The API server sends the same `?timeout=` on every call of one webhook: parse each spelling once.
  const deadlines = new Map<string | undefined, Deadline>();
  const deadlineOf = (param: string | undefined): Deadline => {
    if (param !== undefined && param.length > MEMO_MAX_TIMEOUT_CHARS) return computeDeadline(param, opts.deadline);
    let deadline = deadlines.get(param);
    if (deadline === undefined) {
      if (deadlines.size >= 64) deadlines.clear();
      deadline = computeDeadline(param, opts.deadline);
      deadlines.set(param, deadline);
    }
    return deadline;
  };
  /**
   * Writes a webhook answer in one go. The two review endpoints are the hot path of every admission;
   * Koa's response handling (header by header, then the body) costs about as much as the decision on
   * a cache hit (bench/, docs/BENCHMARKS.md), so these answers bypass it (`ctx.respond = false`).
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
  /** Reads the body within MAX_BODY_BYTES and the process' body budget, held until the answer is sent. */
  const readBody = (ctx: Koa.Context): Promise<unknown> => {
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
    return readJsonBody(ctx.req, opts.maxBodyBytes, bodyBudget, hold);
  };
  const annotator = createAuditAnnotator();
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

  async function judge(
    endpoint: Endpoint,
    images: readonly ContainerImage[],
    namespace: string | undefined,
    timeout: string | undefined,
    how: { readonly mode: Mode; readonly subject: 'pod' | 'workload' },
    logFields: Readonly<Record<string, string | undefined>>,
    breakGlass?: BreakGlassGrant,
    about?: DecisionSubject,
  ): Promise<{ evaluation: Evaluation; auditAnnotations: AuditAnnotations }> {
    const startedAt = now();
    const deadline = deadlineOf(timeout);
    const evaluation = await opts.evaluator.evaluate({
      images,
      budgetMs: deadline.budgetMs,
      mode: how.mode,
      subject: how.subject,
      namespace,
      breakGlass,
    });
    const durationMs = now() - startedAt;
    const result = resultOf(evaluation, how.mode);
    opts.metrics.decisions.inc({ endpoint, result });
    opts.metrics.decisionDuration.observe({ endpoint }, durationMs / 1000);
    // Bounded whatever the review holds: image texts are already escaped and cut by the evaluator,
    // the message by the decision, the other fields by the caller (logText).
    const omitted = evaluation.images.length - LOG_MAX_IMAGES;
    const used = evaluation.decision.breakGlass;
    const glass = used !== undefined && breakGlass !== undefined && breakGlass.kind !== 'none' ? { outcome: used, user: breakGlass.user, reason: breakGlass.reason } : undefined;
    const auditAnnotations = annotator.of({
      decision: result,
      // An ImageReport is an AuditImage (image, result, digest): no copy on the hot path.
      images: evaluation.images,
      ...(glass !== undefined ? { breakGlass: glass } : {}),
    });
    if (opts.onDecision !== undefined && about !== undefined && endpoint !== 'mutate' && endpoint !== 'cli') {
      opts.onDecision(decisionRecordOf(endpoint, evaluation, how.mode, about, glass));
    }
    if (glass !== undefined) {
      opts.metrics.breakGlass.inc({ outcome: glass.outcome });
      // One line per use, at warn so it stands out: who, why (escaped, bounded tenant text), what it did.
      opts.logger.warn(
        {
          endpoint,
          ...logFields,
          namespace: logText(namespace),
          user: glass.user,
          via: breakGlass?.kind === 'granted' ? breakGlass.via : undefined,
          reason: glass.reason,
          outcome: glass.outcome,
          bypassed: glass.outcome === 'admitted' ? evaluation.decision.findings.filter((f) => f.denies).map((f) => ({ image: f.image, kind: f.kind })) : undefined,
        },
        'break-glass',
      );
    }
    opts.logger.info(
      {
        endpoint,
        ...logFields,
        namespace: logText(namespace),
        mode: how.mode,
        images: omitted > 0 ? evaluation.images.slice(0, LOG_MAX_IMAGES) : evaluation.images,
        ...(omitted > 0 ? { imagesOmitted: omitted } : {}),
        allowed: evaluation.decision.allowed,
        result,
        ...(evaluation.decision.message !== '' ? { reasons: evaluation.decision.message } : {}),
        cache: cacheCounts(evaluation.images),
        budgetMs: deadline.budgetMs,
        durationMs: Math.round(durationMs * 100) / 100,
      },
      'decision',
    );
    return { evaluation, auditAnnotations };
  }

  /**
   * The ValidatingAdmissionWebhook endpoint. `pathMode` is the mode of the webhook entry that called
   * (one entry per namespace mode, each with its own namespaceSelector: see manifests/).
   */
  const validate = async (ctx: Koa.Context, pathMode: Mode | undefined): Promise<void> => {
    ctx.state['endpoint'] = 'validate';
    const body = await readBody(ctx);
    const request: AdmissionRequest = decodeAdmissionReview(body);
    const review = imagesToJudge(request);
    if (review === undefined) {
      // Not a pod, a workload or an ephemeral container: nothing of ours to judge.
      sendJson(ctx, encodeAdmissionResponse(request, { allowed: true }));
      return;
    }
    const subject = review.kind === 'Pod' ? 'pod' : 'workload';
    // One shape for every request (pino leaves out the fields that are undefined).
    const logFields = {
      uid: logText(request.uid),
      operation: logText(request.operation),
      subResource: request.subResource !== '' ? logText(request.subResource) : undefined,
      pod: subject === 'pod' ? logText(review.name) : undefined,
      kind: subject === 'pod' ? undefined : review.kind,
      name: subject === 'pod' ? undefined : logText(review.name),
    };
    // Break-glass is judged when the object carries the annotation and the request has images to
    // judge, or adds or changes the annotation (a template's annotation is honoured later, when its
    // controller creates pods from it: it must be vetted now, by the identity of whoever writes it).
    const glass = review.breakGlass;
    const annotationChanged = glass !== undefined && glass.value !== undefined && glass.value !== glass.previous;
    const breakGlass =
      glass?.value !== undefined && (review.images.length > 0 || annotationChanged)
        ? judgeBreakGlass(glass.value, request.userInfo, opts.breakGlass ?? NO_BREAK_GLASS)
        : undefined;
    if (review.images.length === 0 && breakGlass === undefined) {
      // An UPDATE that changes no image (labels, annotations, scaling, finalizers): nothing to scan.
      opts.metrics.decisions.inc({ endpoint: 'validate', result: 'unchanged' });
      opts.logger.debug({ endpoint: 'validate', ...logFields, namespace: logText(request.namespace) }, 'no image changed');
      sendJson(ctx, encodeAdmissionResponse(request, { allowed: true }));
      return;
    }
    const choice = selectMode(opts.modes, pathMode, subject);
    if (choice.refused !== undefined) {
      opts.logger.warn({ path: ctx.path, uid: request.uid, namespace: request.namespace }, `mode ${choice.refused} is not in NAMESPACE_MODES: judged in ${choice.mode} mode`);
    }
    const uid = objectUidOf(request.object);
    const { evaluation, auditAnnotations } = await judge(
      'validate',
      review.images,
      request.namespace,
      timeoutParam(ctx.querystring),
      { mode: choice.mode, subject },
      logFields,
      breakGlass,
      {
        dryRun: request.dryRun,
        operation: request.operation,
        // Every kind scangate judges is served as v1 of its group.
        regarding: {
          apiVersion: request.group === '' ? 'v1' : `${request.group}/v1`,
          kind: review.kind,
          ...(request.namespace !== undefined ? { namespace: request.namespace } : {}),
          name: review.name ?? request.name ?? '',
          ...(uid !== undefined ? { uid } : {}),
        },
        ...(request.userInfo !== undefined && request.userInfo.username !== '' ? { user: request.userInfo.username } : {}),
      },
    );
    sendJson(
      ctx,
      encodeAdmissionResponse(request, {
        allowed: evaluation.decision.allowed,
        message: evaluation.decision.message,
        warnings: evaluation.decision.warnings,
        auditAnnotations,
      }),
    );
  };
  router.post('/validate', (ctx) => validate(ctx, undefined));
  router.post('/validate/enforce', (ctx) => validate(ctx, 'enforce'));
  router.post('/validate/warn', (ctx) => validate(ctx, 'warn'));
  // kube-image-bouncer registered its webhook at the root path.
  router.post('/', (ctx) => validate(ctx, undefined));

  /**
   * The mutating webhook (digest pinning). Never refuses: whatever goes wrong after the body is
   * decoded, the answer is "allowed, unchanged" and the validating webhook decides as always.
   */
  router.post('/mutate', async (ctx) => {
    ctx.state['endpoint'] = 'mutate';
    const body = await readJsonBody(ctx.req, opts.maxBodyBytes);
    const request: AdmissionRequest = decodeAdmissionReview(body);
    const pinner = opts.pinner;
    if (pinner === undefined) {
      sendJson(ctx, encodeAdmissionResponse(request, { allowed: true }));
      return;
    }
    const startedAt = now();
    try {
      const targets = pinTargets(request);
      if (targets.length === 0) {
        sendJson(ctx, encodeAdmissionResponse(request, { allowed: true }));
        return;
      }
      const deadline = deadlineOf(timeoutParam(ctx.querystring));
      const result = await pinner.pin({ targets, budgetMs: deadline.budgetMs, ...(request.namespace !== undefined ? { namespace: request.namespace } : {}) });
      if (result.pins.length > 0) opts.metrics.pins.inc({ result: 'pinned' }, result.pins.length);
      for (const u of result.unpinned) opts.metrics.pins.inc({ result: u.reason });
      const durationMs = now() - startedAt;
      opts.metrics.decisions.inc({ endpoint: 'mutate', result: result.exempt ? 'exempt' : 'allowed' });
      opts.metrics.decisionDuration.observe({ endpoint: 'mutate' }, durationMs / 1000);
      opts.logger.info(
        {
          endpoint: 'mutate',
          uid: request.uid,
          operation: request.operation,
          namespace: request.namespace,
          resource: `${request.group}/${request.resource}`,
          pinned: result.pins.map((p) => ({ image: p.image, digest: p.digest })),
          unpinned: result.unpinned,
          budgetMs: deadline.budgetMs,
          durationMs: Math.round(durationMs * 100) / 100,
        },
        'pin',
      );
      const pinned = annotator.pins(result.pins);
      sendJson(
        ctx,
        encodeAdmissionResponse(request, {
          allowed: true,
          patch: pinPatch(result.pins),
          ...(pinned !== undefined ? { auditAnnotations: pinned } : {}),
        }),
      );
    } catch (error) {
      opts.logger.error({ endpoint: 'mutate', uid: request.uid, err: describeError(error) }, 'pinning failed; answered unchanged');
      sendJson(ctx, encodeAdmissionResponse(request, { allowed: true }));
    }
  });

  router.post('/image_policy', async (ctx) => {
    ctx.state['endpoint'] = 'image_policy';
    const body = await readBody(ctx);
    const review = decodeImageReview(body);
    const how = { mode: opts.modes.defaultMode, subject: 'pod' } as const;
    // An ImageReview names no pod: the event is about "a pod" of the namespace.
    const about = { dryRun: false, operation: 'CREATE', regarding: { apiVersion: 'v1', kind: 'Pod', ...(review.namespace !== undefined ? { namespace: review.namespace } : {}), name: '' } };
    const { evaluation } = await judge('image_policy', review.images, review.namespace, timeoutParam(ctx.querystring), how, {}, undefined, about);
    sendJson(ctx, JSON.stringify(encodeImageReviewResponse({ allowed: evaluation.decision.allowed, reason: evaluation.decision.message })));
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
