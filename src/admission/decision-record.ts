import type { ImageReport } from '../engine/evaluator.js';
import type { Mode } from '../policy/types.js';
/** One admission decision as observers (decision log, metrics, events) see it. Tenant text is raw here: each sink escapes. */
export interface DecisionRecord {
  readonly endpoint: 'validate' | 'mutate' | 'image_policy';
  /** allowed; denied; warned (admitted with findings in warn mode); exempt; glass (admitted by break-glass); unverified
   *  (admitted although an image has no pass verdict: timeout / deferred / scanner error with REJECT_IF_TIMEOUT=false or a
   *  workload template). */
  readonly result: 'allowed' | 'denied' | 'warned' | 'exempt' | 'glass' | 'unverified';
  readonly mode: Mode;
  /** request.dryRun: no event may be recorded for it. */
  readonly dryRun: boolean;
  readonly operation: string;
  /** The object asked for (also when refused and never created). apiVersion like 'apps/v1' or 'v1'. */
  readonly regarding: { readonly apiVersion: string; readonly kind: string; readonly namespace?: string; readonly name: string; readonly uid?: string };
  /** Who asked (request.userInfo.username), raw. */
  readonly user?: string;
  /** The denial message scangate answered (already scangate's own words + findings), or '' when allowed. */
  readonly message: string;
  /** The warnings scangate answered (warn-mode findings, break-glass, unverified). */
  readonly warnings: readonly string[];
  /** Break-glass, when used: who (a person, never a controller), why (tenant text), what it did. */
  readonly breakGlass?: { readonly outcome: 'admitted' | 'not_needed' | 'refused' | 'ineffective'; readonly user: string; readonly reason: string };
  readonly images: readonly ImageReport[];
  // ---- for the decision log line and the metrics (observability/decision-log.ts) ----
  /** The review's uid and subresource, raw. */
  readonly uid?: string;
  readonly subResource?: string;
  /** How break-glass was granted: the requester is an allowed person, or a proof names one. */
  readonly breakGlassVia?: 'user' | 'group' | 'proof';
  /** The images break-glass admitted despite their findings. */
  readonly bypassed?: ReadonlyArray<{ readonly image: string; readonly kind: string }>;
  /** The entry asked for a mode the settings do not allow (policy/mode.ts): judged in `mode` instead. */
  readonly modeRefused?: Mode;
  readonly budgetMs: number;
  readonly durationMs: number;
}

/** What the mutating entry did (decision log line `pin`, metrics). */
export interface MutationRecord {
  readonly uid: string;
  readonly operation: string;
  readonly namespace?: string;
  readonly resource: string;
  readonly exempt: boolean;
  readonly pinned: ReadonlyArray<{ readonly image: string; readonly digest: string }>;
  readonly unpinned: ReadonlyArray<{ readonly image: string; readonly reason: string }>;
  /** A break-glass proof was written into the template for this person (raw username). */
  readonly proofFor?: string;
  /** Set when the request could not be read (answered unchanged). */
  readonly error?: unknown;
  readonly budgetMs: number;
  readonly durationMs: number;
}

/** A validating request that changes no image and no break-glass: answered without judging. */
export interface UnchangedRecord {
  readonly uid: string;
  readonly operation: string;
  readonly namespace?: string;
  readonly kind: string;
  readonly name?: string;
}

/** Observers of decisions: each must return at once and never throw. */
export interface DecisionObserver {
  decided(record: DecisionRecord): void;
  mutated(record: MutationRecord): void;
  unchanged(record: UnchangedRecord): void;
}

/** Several observers as one (the composition root's decision log, metrics and events). */
export function observeAll(observers: readonly DecisionObserver[]): DecisionObserver {
  return {
    decided: (r) => {
      for (const o of observers) o.decided(r);
    },
    mutated: (r) => {
      for (const o of observers) o.mutated(r);
    },
    unchanged: (r) => {
      for (const o of observers) o.unchanged(r);
    },
  };
}
