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
}
