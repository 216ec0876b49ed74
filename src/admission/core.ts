/**
 * The admission core: one flow for every way in (`/validate*`, `/mutate`, `/image_policy`), with no
 * HTTP in it. A request decoded at the edge goes in; an answer comes out, and a record of the decision
 * goes to the observers (decision log, metrics, events). Break-glass, mode selection, deadlines, dry
 * runs, pinning and break-glass proofs are decided here and only here (docs/THREAT-MODEL.md).
 */
import { computeDeadline, type Deadline, type DeadlineSettings } from '../engine/deadline.js';
import type { Evaluation, Evaluator } from '../engine/evaluator.js';
import type { Pinner } from '../engine/pinner.js';
import { allowedPerson, judgeBreakGlass, type BreakGlassGrant, type BreakGlassSettings } from '../policy/break-glass.js';
import { BREAK_GLASS_PROOF_ANNOTATION, type ProofKeeper } from '../policy/break-glass-proof.js';
import { selectMode, type ModeSettings } from '../policy/mode.js';
import type { Mode } from '../policy/types.js';
import { imagesToJudge, type AdmissionAnswer, type AdmissionRequest, type JsonPatchOperation, type Review } from './admission-review.js';
import { createAuditAnnotator } from './audit-annotations.js';
import type { DecisionObserver, DecisionRecord } from './decision-record.js';
import type { ImageReviewRequest } from './image-review.js';
import { pinPatch, pinTargets, pointerToken } from './pin-targets.js';

export interface AdmissionCoreOptions {
  readonly evaluator: Evaluator;
  readonly modes: ModeSettings;
  /** Who may break glass; absent: nobody (every annotated request is refused). */
  readonly breakGlass?: BreakGlassSettings;
  /** Writes and checks break-glass proofs (BREAK_GLASS_KEY_FILE); absent: controllers' pods never break glass. */
  readonly proofs?: ProofKeeper;
  /** Digest pinning (PIN_DIGESTS); absent: `/mutate` pins nothing. */
  readonly pinner?: Pinner;
  readonly deadline: DeadlineSettings;
  /**
   * Requests of one namespace that may wait for scans at once (each holds a connection of the API
   * server's while it waits); past it a request is answered at once from what is known. Unbounded when
   * absent. docs/THREAT-MODEL.md, I2.
   */
  readonly maxWaitingPerNamespace?: number;
  readonly observer: DecisionObserver;
  /** Monotonic clock, ms. */
  readonly now?: () => number;
}

/** How a request came in: the mode of the webhook entry that called, the API server's `?timeout=`. */
export interface Arrival {
  readonly pathMode?: Mode | undefined;
  readonly timeout?: string | undefined;
}

export interface AdmissionCore {
  /** The validating entries: judge the images a pod or a workload's template asks to run. */
  validate(request: AdmissionRequest, arrival: Arrival): Promise<AdmissionAnswer>;
  /** The mutating entry: pin digests, write break-glass proofs. Never refuses. */
  mutate(request: AdmissionRequest, arrival: Arrival): Promise<AdmissionAnswer>;
  /** The ImagePolicyWebhook: the cluster's default mode, no break-glass (the plugin sends no annotations). */
  imagePolicy(review: ImageReviewRequest, arrival: Arrival): Promise<{ readonly allowed: boolean; readonly reason: string }>;
}

const NO_BREAK_GLASS: BreakGlassSettings = { users: [], groups: [] };
/** Longest `?timeout=` spelling memoised (a Go duration the API server writes is a few characters). */
const MEMO_MAX_TIMEOUT_CHARS = 32;

type Result = DecisionRecord['result'];

function resultOf(evaluation: Evaluation, mode: Mode): Result {
  if (evaluation.exempt) return 'exempt';
  const { decision } = evaluation;
  if (!decision.allowed) return 'denied';
  if (decision.breakGlass === 'admitted') return 'glass';
  if (evaluation.images.some((i) => i.result === 'timeout' || i.result === 'deferred' || i.result === 'scanner-error')) return 'unverified';
  return mode === 'warn' && decision.findings.length > 0 ? 'warned' : 'allowed';
}

/** `apps/v1`, `v1`: the object's apiVersion from request.kind, or the resource's group when absent. */
function apiVersionOf(request: AdmissionRequest): string {
  const { group, version } = request.objectKind;
  const g = group !== '' ? group : request.group;
  const v = version !== '' ? version : 'v1';
  return g === '' ? v : `${g}/${v}`;
}

function uidOf(object: unknown): string | undefined {
  if (typeof object !== 'object' || object === null) return undefined;
  const metadata = (object as Record<string, unknown>)['metadata'];
  if (typeof metadata !== 'object' || metadata === null) return undefined;
  const uid = (metadata as Record<string, unknown>)['uid'];
  return typeof uid === 'string' && uid !== '' ? uid : undefined;
}

export function createAdmissionCore(opts: AdmissionCoreOptions): AdmissionCore {
  const now = opts.now ?? (() => performance.now());
  const settings = opts.breakGlass ?? NO_BREAK_GLASS;
  const annotator = createAuditAnnotator();
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

  // Requests waiting for scans, per namespace (an entry exists only while one waits).
  const waiting = new Map<string, number>();
  /**
   * Runs `judge` with the request's waiting budget, or with none when its namespace already has
   * maxWaitingPerNamespace requests waiting: one tenant's requests for slow images cannot hold every
   * connection the API server has to scangate.
   */
  const waitShare = async <T>(namespace: string | undefined, budgetMs: number, judge: (budgetMs: number) => Promise<T>): Promise<T> => {
    const key = namespace ?? '';
    const held = waiting.get(key) ?? 0;
    const limit = opts.maxWaitingPerNamespace ?? Number.POSITIVE_INFINITY;
    waiting.set(key, held + 1);
    try {
      return await judge(held >= limit ? 0 : budgetMs);
    } finally {
      const left = (waiting.get(key) ?? 1) - 1;
      if (left > 0) waiting.set(key, left);
      else waiting.delete(key);
    }
  };

  /**
   * Break-glass for this request: judged when the object carries the annotation and the request has
   * images to judge, or adds or changes the annotation (feedback for whoever writes it). A proof is
   * checked against the object's own namespace, every image it will run, and its reason.
   */
  const breakGlassOf = (request: AdmissionRequest, review: Review): BreakGlassGrant | undefined => {
    const glass = review.breakGlass;
    if (glass?.value === undefined) return undefined;
    const changed = glass.value !== glass.previous;
    if (review.images.length === 0 && !changed) return undefined;
    const proof =
      glass.proof !== undefined && opts.proofs !== undefined
        ? opts.proofs.verify(glass.proof, { namespace: request.namespace ?? '', images: review.allImages.map((i) => i.image), reason: glass.value })
        : glass.proof !== undefined
          ? ({ ok: false, why: 'forged' } as const)
          : undefined;
    return judgeBreakGlass({ annotation: glass.value, requester: request.userInfo, ...(proof !== undefined ? { proof } : {}) }, settings);
  };

  return {
    async validate(request, arrival) {
      const review = imagesToJudge(request);
      // Not a pod, a workload or an ephemeral container: nothing of ours to judge.
      if (review === undefined) return { allowed: true };
      const breakGlass = breakGlassOf(request, review);
      // An UPDATE that changes no image (labels, annotations, scaling, finalizers): nothing to scan.
      if (review.images.length === 0 && breakGlass === undefined) {
        opts.observer.unchanged({
          uid: request.uid,
          operation: request.operation,
          kind: review.kind,
          ...(request.namespace !== undefined ? { namespace: request.namespace } : {}),
          ...(review.name !== undefined ? { name: review.name } : {}),
        });
        return { allowed: true };
      }
      const subject = review.kind === 'Pod' ? 'pod' : 'workload';
      const choice = selectMode(opts.modes, arrival.pathMode, subject);
      const startedAt = now();
      const deadline = deadlineOf(arrival.timeout);
      const evaluation = await waitShare(request.namespace, deadline.budgetMs, (budgetMs) =>
        opts.evaluator.evaluate({ images: review.images, budgetMs, mode: choice.mode, subject, namespace: request.namespace, breakGlass, dryRun: request.dryRun }),
      );
      const result = resultOf(evaluation, choice.mode);
      const used = evaluation.decision.breakGlass;
      const glass = used !== undefined && breakGlass !== undefined && breakGlass.kind !== 'none' ? { outcome: used, user: breakGlass.user, reason: breakGlass.reason } : undefined;
      const uid = uidOf(request.object);
      const record: DecisionRecord = {
        endpoint: 'validate',
        result,
        mode: choice.mode,
        dryRun: request.dryRun,
        operation: request.operation,
        regarding: {
          apiVersion: apiVersionOf(request),
          kind: review.kind,
          ...(request.namespace !== undefined ? { namespace: request.namespace } : {}),
          name: request.name ?? review.name ?? '',
          ...(uid !== undefined ? { uid } : {}),
        },
        ...(request.userInfo !== undefined ? { user: request.userInfo.username } : {}),
        message: evaluation.decision.message,
        warnings: evaluation.decision.warnings,
        ...(glass !== undefined ? { breakGlass: glass } : {}),
        ...(breakGlass?.kind === 'granted' ? { breakGlassVia: breakGlass.via } : {}),
        ...(glass?.outcome === 'admitted' ? { bypassed: evaluation.decision.findings.filter((f) => f.denies).map((f) => ({ image: f.image, kind: f.kind })) } : {}),
        images: evaluation.images,
        uid: request.uid,
        subResource: request.subResource,
        ...(choice.refused !== undefined ? { modeRefused: choice.refused } : {}),
        budgetMs: deadline.budgetMs,
        durationMs: now() - startedAt,
      };
      opts.observer.decided(record);
      return {
        allowed: evaluation.decision.allowed,
        message: evaluation.decision.message,
        warnings: evaluation.decision.warnings,
        auditAnnotations: annotator.of({ decision: result === 'glass' || result === 'unverified' ? 'allowed' : result, images: evaluation.images, ...(glass !== undefined ? { breakGlass: glass } : {}) }),
      };
    },

    async mutate(request, arrival) {
      const startedAt = now();
      const deadline = deadlineOf(arrival.timeout);
      const base = { uid: request.uid, operation: request.operation, resource: `${request.group}/${request.resource}`, ...(request.namespace !== undefined ? { namespace: request.namespace } : {}), budgetMs: deadline.budgetMs };
      let review: Review | undefined;
      try {
        review = imagesToJudge(request);
      } catch (error) {
        // Malformed: answered unchanged; the validating entry refuses it.
        opts.observer.mutated({ ...base, exempt: false, pinned: [], unpinned: [], error, durationMs: now() - startedAt });
        return { allowed: true };
      }
      if (review === undefined) return { allowed: true };
      const targets = opts.pinner !== undefined ? pinTargets(review) : [];
      const result =
        opts.pinner !== undefined && targets.length > 0
          ? await waitShare(request.namespace, deadline.budgetMs, (budgetMs) =>
              (opts.pinner as Pinner).pin({ targets, budgetMs, dryRun: request.dryRun, ...(request.namespace !== undefined ? { namespace: request.namespace } : {}) }),
            )
          : { exempt: false, pins: [], unpinned: [] };
      const patch: JsonPatchOperation[] = pinPatch(result.pins);
      const proof = proofPatch(request, review, result.pins);
      if (proof !== undefined) patch.push(proof.op);
      opts.observer.mutated({
        ...base,
        exempt: result.exempt,
        pinned: result.pins.map((p) => ({ image: p.image, digest: p.digest })),
        unpinned: result.unpinned,
        ...(proof !== undefined ? { proofFor: proof.user } : {}),
        durationMs: now() - startedAt,
      });
      const pinned = annotator.pins(result.pins);
      return { allowed: true, patch, ...(pinned !== undefined ? { auditAnnotations: pinned } : {}) };
    },

    async imagePolicy(review, arrival) {
      const startedAt = now();
      const deadline = deadlineOf(arrival.timeout);
      const mode = opts.modes.defaultMode;
      const evaluation = await waitShare(review.namespace, deadline.budgetMs, (budgetMs) =>
        opts.evaluator.evaluate({ images: review.images, budgetMs, mode, subject: 'pod', namespace: review.namespace }),
      );
      opts.observer.decided({
        endpoint: 'image_policy',
        result: resultOf(evaluation, mode),
        mode,
        dryRun: false,
        operation: 'CREATE',
        regarding: { apiVersion: 'v1', kind: 'Pod', ...(review.namespace !== undefined ? { namespace: review.namespace } : {}), name: '' },
        message: evaluation.decision.message,
        warnings: evaluation.decision.warnings,
        images: evaluation.images,
        budgetMs: deadline.budgetMs,
        durationMs: now() - startedAt,
      });
      return { allowed: evaluation.decision.allowed, reason: evaluation.decision.message };
    },
  };

  /**
   * The break-glass proof a workload's template earns (break-glass-proof.ts): written when a person
   * allowed to break glass writes a template that carries a reason (and the request is a use of it), over
   * the images as they will be once pinned; kept when the template already carries a valid one (writing a
   * new one would roll the workload out again). Pods carry no proof of their own: a person creating one
   * is judged as such.
   */
  function proofPatch(request: AdmissionRequest, review: Review, pins: ReadonlyArray<{ readonly path: string; readonly pinned: string }>): { op: JsonPatchOperation; user: string } | undefined {
    const reason = review.breakGlass?.value;
    if (opts.proofs === undefined || review.kind === 'Pod' || reason === undefined || reason.trim() === '') return undefined;
    if (allowedPerson(request.userInfo, settings) === undefined || request.userInfo === undefined) return undefined;
    // Only a request that is a use of break-glass earns a proof: a CREATE, or an UPDATE that writes or
    // changes the reason or changes an image, the requests the validating entry judges as such and
    // answers with "Break-glass used by ...". A person's unrelated edit (an env var, resources) of a
    // template that someone else annotated is no use of it: never a proof in their name (confused deputy).
    const use = request.operation === 'CREATE' || review.breakGlass?.previous !== reason || review.images.length > 0;
    if (!use) return undefined;
    const pinnedAt = new Map(pins.map((p) => [p.path, p.pinned]));
    const images = review.allImages.map((i) => pinnedAt.get(i.pointer) ?? i.image);
    const subject = { namespace: request.namespace ?? '', images, reason };
    const current = review.breakGlass?.proof;
    if (current !== undefined) {
      const check = opts.proofs.verify(current, subject);
      if (check.ok && check.proof.user === request.userInfo.username) return undefined;
    }
    const user = request.userInfo.username;
    const path = `${review.metadataPointer}/annotations/${pointerToken(BREAK_GLASS_PROOF_ANNOTATION)}`;
    return { op: { op: 'add', path, value: opts.proofs.mint(subject, user) }, user };
  }
}
