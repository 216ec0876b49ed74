import type { Metrics } from '../observability/metrics.js';
import { decideWithBreakGlass, type BreakGlassGrant } from '../policy/break-glass.js';
import { tooManyImages } from '../policy/decision.js';
import { LRUCache } from 'lru-cache';
import { checkLocalRules, type LocalResult } from '../policy/local-rules.js';
import { MAX_REFERENCE_LENGTH, displayImage } from '../policy/safe-text.js';
import type { ContainerImage, Decision, DecisionOptions, ImageAssessment, LocalRules, Mode } from '../policy/types.js';
import { createScanBudget, type ScanCoordinator } from './scan-coordinator.js';

const LOCAL_RESULTS_MAX = 4096;
/**
 * Bound of the local-rule memo in bytes. An entry holds the image text about seven times over (input,
 * name, path, canonical, familiar, the displayed form, the key) in UTF-16, plus its objects: at most
 * about 7.5 KB for the longest valid reference (MAX_REFERENCE_LENGTH), about 1 KB for a usual one.
 */
const LOCAL_RESULTS_MAX_BYTES = 4 * 1024 * 1024;
const localResultBytes = (key: string): number => 14 * key.length + 450;

/** A memoised local-rule result and the image text as denials and log lines show it. */
interface LocalMemo {
  readonly result: LocalResult;
  readonly display: string;
}

export interface EvaluationRequest {
  readonly images: readonly ContainerImage[];
  /** Namespace of the pod; exempt namespaces are admitted untouched. */
  readonly namespace?: string | undefined;
  /** How long this request may wait for verdicts (see deadline.ts). */
  readonly budgetMs: number;
  /** This request's mode (per-namespace webhook entry); the evaluator's default when absent. */
  readonly mode?: Mode;
  /** 'workload': a pod template at apply time (see DecisionOptions.subject). Default 'pod'. */
  readonly subject?: 'pod' | 'workload';
  /** Whether the request may break glass (policy/break-glass.ts); absent: no annotation. */
  readonly breakGlass?: BreakGlassGrant | undefined;
  /** A dry run: answered from the cache and scans in progress; it starts no scan. */
  readonly dryRun?: boolean;
}

/** Per-image summary for the decision log line. */
export interface ImageReport {
  readonly image: string;
  readonly canonical?: string;
  readonly cache?: 'hit' | 'miss' | 'shared';
  readonly result: 'pass' | 'fail' | 'timeout' | 'deferred' | 'scanner-error' | 'invalid-reference' | 'latest-tag' | 'registry-not-allowed';
  readonly digest?: string;
}

export interface Evaluation {
  readonly decision: Decision;
  readonly exempt: boolean;
  readonly images: readonly ImageReport[];
}

export interface EvaluatorOptions {
  readonly rules: LocalRules;
  readonly decision: DecisionOptions;
  readonly exemptNamespaces: readonly string[];
  /** Past this many container images a review is refused unjudged (MAX_IMAGES_PER_REVIEW); 64 if absent. */
  readonly maxImagesPerReview?: number;
  /** New scans one review may start (MAX_NEW_SCANS_PER_REQUEST); unbounded if absent. */
  readonly maxNewScansPerRequest?: number;
  readonly coordinator: ScanCoordinator;
  readonly metrics: Metrics;
  readonly now?: () => number;
}

export interface Evaluator {
  evaluate(request: EvaluationRequest): Promise<Evaluation>;
}

/**
 * One decision engine for every way in (ValidatingAdmissionWebhook, ImagePolicyWebhook, CLI): local
 * rules first, then verdicts from the cache or the scanner within the request's budget, then the pure
 * decision. Never rejects.
 */
export function createEvaluator(opts: EvaluatorOptions): Evaluator {
  const now = opts.now ?? (() => performance.now());
  const exempt = new Set(opts.exemptNamespaces);
  // The local rules are a pure function of the image text and fixed settings, and a cluster runs few
  // distinct images: each text is parsed and judged once (bounded; bench/ "cache-hit").
  // The memo also keeps the image as a log line shows it (escaped: safe-text.ts), so a cache hit
  // does not escape the same text again on every request.
  const localResults = new LRUCache<string, LocalMemo>({
    max: LOCAL_RESULTS_MAX,
    maxSize: LOCAL_RESULTS_MAX_BYTES,
    sizeCalculation: (_result, key) => localResultBytes(key),
  });
  const maxImages = opts.maxImagesPerReview ?? 64;
  // The decision's options for each mode and subject a request can ask for (a handful): made once each.
  const decisionOptionsByMode = new Map<Mode, Partial<Record<'pod' | 'workload' | 'default', DecisionOptions>>>();
  const decisionOptionsFor = (mode: Mode, subject: 'pod' | 'workload' | undefined): DecisionOptions => {
    let bySubject = decisionOptionsByMode.get(mode);
    if (bySubject === undefined) {
      bySubject = {};
      decisionOptionsByMode.set(mode, bySubject);
    }
    const which = subject ?? 'default';
    let options = bySubject[which];
    if (options === undefined) {
      options = { ...opts.decision, mode, ...(subject !== undefined ? { subject } : {}) };
      bySubject[which] = options;
    }
    return options;
  };
  const localRules = (image: string): LocalMemo => {
    // Longer than the grammar allows: refused before it is parsed, memoised or logged in full.
    if (image.length > MAX_REFERENCE_LENGTH) {
      return {
        result: { finding: { kind: 'invalid-reference', error: `longer than the ${MAX_REFERENCE_LENGTH} characters a reference can have` } },
        display: displayImage(image),
      };
    }
    let memo = localResults.get(image);
    if (memo === undefined) {
      memo = { result: checkLocalRules(image, opts.rules), display: displayImage(image) };
      localResults.set(image, memo);
    }
    return memo;
  };
  return {
    async evaluate(request) {
      if (request.namespace !== undefined && exempt.has(request.namespace)) {
        return { decision: { allowed: true, message: '', warnings: [], findings: [] }, exempt: true, images: [] };
      }
      if (request.images.length > maxImages) {
        return { decision: tooManyImages(request.images.length, maxImages, request.mode ?? opts.decision.mode), exempt: false, images: [] };
      }
      const deadlineAt = now() + request.budgetMs;
      const budget = createScanBudget(opts.maxNewScansPerRequest ?? Number.MAX_SAFE_INTEGER, request.namespace, request.dryRun === true);
      // An image used by several containers is judged (and scanned) once.
      const byImage = new Map<string, ContainerImage[]>();
      for (const c of request.images) {
        const list = byImage.get(c.image);
        if (list === undefined) byImage.set(c.image, [c]);
        else list.push(c);
      }
      // In the order of the review's images (one report per distinct image).
      const reports: ImageReport[] = new Array<ImageReport>(byImage.size);
      const assessments = await Promise.all(
        [...byImage].map(async ([image, containers], index): Promise<ImageAssessment> => {
          const { result: local, display } = localRules(image);
          const { reference, finding } = local;
          if (finding !== undefined || reference === undefined) {
            reports[index] = {
              image: display,
              ...(reference !== undefined ? { canonical: reference.canonical } : {}),
              result: finding?.kind ?? 'invalid-reference',
            };
            return { image, containers, ...(reference !== undefined ? { reference } : {}), ...(finding !== undefined ? { local: finding } : {}) };
          }
          const { source, outcome } = await opts.coordinator.lookup(reference, deadlineAt - now(), budget);
          reports[index] = {
            image: display,
            canonical: reference.canonical,
            cache: source,
            result:
              outcome.kind === 'verdict' ? outcome.verdict.status : outcome.kind === 'timeout' || outcome.kind === 'deferred' ? outcome.kind : 'scanner-error',
            ...(outcome.kind === 'verdict' ? { digest: outcome.verdict.digest } : {}),
          };
          return { image, containers, reference, scan: outcome };
        }),
      );
      const decisionOptions = decisionOptionsFor(request.mode ?? opts.decision.mode, request.subject);
      const decision = decideWithBreakGlass(assessments, decisionOptions, request.breakGlass);
      const action =
        decisionOptions.rejectIfTimeout && decisionOptions.mode === 'enforce' && decisionOptions.subject !== 'workload' ? 'denied' : 'admitted';
      if (reports.some((r) => r.result === 'timeout')) opts.metrics.deadlineExpiries.inc({ reason: 'timeout', action });
      if (reports.some((r) => r.result === 'scanner-error')) opts.metrics.deadlineExpiries.inc({ reason: 'scanner_error', action });
      return { decision, exempt: false, images: reports };
    },
  };
}
