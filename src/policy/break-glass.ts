/**
 * Break-glass: an audited emergency bypass. A pod (or a workload's pod template) annotated
 * `scangate.io/break-glass: "<reason>"` is admitted despite failed or missing verdicts and local
 * rules, but only when the request comes from a person allowed to break glass (BREAK_GLASS_USERS,
 * BREAK_GLASS_GROUPS), or when the object carries a break-glass proof that scangate wrote for such a
 * person's template and that matches this object (break-glass-proof.ts): a controller's identity is
 * never a permission (README, "Break-glass"; docs/THREAT-MODEL.md, I1). Pure: (annotation, requester,
 * settings, proof check, decision) -> decision.
 */
import { decide, renderMessage } from './decision.js';
import type { ProofCheck } from './break-glass-proof.js';
import { displayText } from './safe-text.js';
import type { Decision, DecisionOptions, ImageAssessment } from './types.js';

export const BREAK_GLASS_ANNOTATION = 'scangate.io/break-glass';

/** Message prefixes (README, messages table). */
export const BREAK_GLASS_MESSAGES = {
  notPermitted: 'Break-glass not permitted',
  noReason: 'Break-glass needs a reason',
  invalidReference: 'break-glass cannot admit an invalid image reference',
  used: 'Break-glass used',
} as const;

/** Longest reason kept (characters, after escaping): it is tenant text in logs, warnings and the audit log. */
export const MAX_REASON_LENGTH = 200;
/** Longest identity shown in a message or log line (usernames come from the API server's authenticator). */
const MAX_IDENTITY_LENGTH = 128;
const MAX_WARNING_LENGTH = 400;

/** Who sent the request: the AdmissionReview's request.userInfo. */
export interface Requester {
  readonly username: string;
  readonly groups: readonly string[];
}

export interface BreakGlassSettings {
  /** Usernames that may break glass (BREAK_GLASS_USERS). */
  readonly users: readonly string[];
  /** Groups whose members may break glass (BREAK_GLASS_GROUPS). */
  readonly groups: readonly string[];
}

/** Why a break-glass annotation was not honoured. */
export type RefusedWhy = 'not-allowed' | 'no-reason' | 'proof-invalid' | 'proof-expired' | 'proof-images';

export type BreakGlassGrant =
  | { readonly kind: 'none' }
  /** `user` is the person who broke glass: the requester, or the person the proof names ('proof'). */
  | { readonly kind: 'granted'; readonly reason: string; readonly user: string; readonly via: 'user' | 'group' | 'proof' }
  | { readonly kind: 'refused'; readonly reason: string; readonly user: string; readonly why: RefusedWhy };

/**
 * What break-glass did to a decision (the metric's `outcome` label): admitted what would have been
 * denied; not needed (nothing to bypass); refused (requester not allowed, or no reason); ineffective
 * (allowed, but an invalid reference still denies).
 */
export type BreakGlassOutcome = NonNullable<Decision['breakGlass']>;

/**
 * Tenant text made safe for a log line, a warning, an audit annotation: whitespace runs collapsed, then
 * the one escaper (safe-text.ts) and its bound. Reads at most a bounded head of the text.
 */
export function reasonText(text: string): string {
  const head = text.length > MAX_REASON_LENGTH * 2 ? text.slice(0, MAX_REASON_LENGTH * 2) : text;
  const flat = head.replace(/[ \t]+/g, ' ').trim();
  return displayText(head.length < text.length ? `${flat}…` : flat, MAX_REASON_LENGTH);
}

export function displayIdentity(name: string): string {
  return displayText(name, MAX_IDENTITY_LENGTH);
}

export interface BreakGlassClaim {
  /** The break-glass annotation's text; undefined when the object carries none. */
  readonly annotation: string | undefined;
  readonly requester: Requester | undefined;
  /** The object's break-glass proof checked against it (absent: the object carries no proof). */
  readonly proof?: ProofCheck;
}

/** Whether the requester is a person allowed to break glass (a controller never is, whoever it is). */
export function allowedPerson(requester: Requester | undefined, settings: BreakGlassSettings): 'user' | 'group' | undefined {
  if (requester === undefined || requester.username === '') return undefined;
  if (settings.users.includes(requester.username)) return 'user';
  if (requester.groups.some((g) => settings.groups.includes(g))) return 'group';
  return undefined;
}

/**
 * Whether this request may use the annotation it carries: its requester is an allowed person who
 * wrote a reason, or the object carries a valid proof for this namespace, these images and this reason.
 */
export function judgeBreakGlass(claim: BreakGlassClaim, settings: BreakGlassSettings): BreakGlassGrant {
  if (claim.annotation === undefined) return { kind: 'none' };
  const reason = reasonText(claim.annotation);
  const username = claim.requester?.username ?? '';
  const user = displayIdentity(username === '' ? '(unknown user)' : username);
  const person = allowedPerson(claim.requester, settings);
  if (person !== undefined) {
    if (reason === '') return { kind: 'refused', reason, user, why: 'no-reason' };
    return { kind: 'granted', reason, user, via: person };
  }
  if (claim.proof !== undefined) {
    if (claim.proof.ok) return { kind: 'granted', reason, user: displayIdentity(claim.proof.proof.user), via: 'proof' };
    const why: RefusedWhy = claim.proof.why === 'expired' ? 'proof-expired' : claim.proof.why === 'images' ? 'proof-images' : 'proof-invalid';
    return { kind: 'refused', reason, user, why };
  }
  return { kind: 'refused', reason, user, why: 'not-allowed' };
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, Math.max(0, max - 1))}…`;
}

const PROOF_SENTENCES: Readonly<Record<'proof-invalid' | 'proof-expired' | 'proof-images', string>> = {
  'proof-invalid': 'its break-glass proof was not written by scangate for this namespace and reason',
  'proof-expired': 'its break-glass proof has expired (BREAK_GLASS_PROOF_TTL_S)',
  'proof-images': 'its break-glass proof does not name these images',
};

function refusalSentence(grant: Extract<BreakGlassGrant, { kind: 'refused' }>): string {
  switch (grant.why) {
    case 'no-reason':
      return `${BREAK_GLASS_MESSAGES.noReason}: the annotation ${BREAK_GLASS_ANNOTATION} is empty; write why (it goes to the audit log)`;
    case 'not-allowed':
      return `${BREAK_GLASS_MESSAGES.notPermitted}: user "${grant.user}" may not break glass (annotation ${BREAK_GLASS_ANNOTATION}); remove the annotation or ask someone allowed by BREAK_GLASS_USERS / BREAK_GLASS_GROUPS`;
    default:
      return `${BREAK_GLASS_MESSAGES.notPermitted}: user "${grant.user}" may not break glass and ${PROOF_SENTENCES[grant.why]}; someone allowed by BREAK_GLASS_USERS / BREAK_GLASS_GROUPS must write the workload's template again`;
  }
}
/**
 * The decision with break-glass applied. Granted: every finding is bypassed (failed verdicts, scans
 * not finished in time, scanner errors, the latest-tag and registry rules) except an invalid
 * reference, which no runtime could pull and which scangate could not even name in the audit log.
 * Refused: denied with a message saying so, whatever the images' verdicts and in every mode, warn
 * included: a template that carries an unvetted annotation would otherwise be honoured later, when
 * its controller creates pods from it (and a warn namespace may become an enforce one).
 */
export function decideWithBreakGlass(
  images: readonly ImageAssessment[],
  opts: DecisionOptions,
  grant: BreakGlassGrant | undefined,
): Decision {
  const decision = decide(images, opts);
  if (grant === undefined || grant.kind === 'none') return decision;
  if (grant.kind === 'refused') {
    const sentence = refusalSentence(grant);
    const message = decision.allowed || decision.message === '' ? sentence : `${sentence}. ${decision.message}`;
    return { ...decision, allowed: false, message: truncate(message, opts.maxMessageLength ?? 1000), breakGlass: 'refused' };
  }
  const denying = decision.findings.filter((f) => f.denies);
  const header = `${BREAK_GLASS_MESSAGES.used} by "${grant.user}" (reason: "${grant.reason}")`;
  if (denying.length === 0) {
    return {
      ...decision,
      warnings: [`${header}: nothing needed bypassing`, ...decision.warnings],
      breakGlass: 'not_needed',
    };
  }
  const invalid = denying.filter((f) => f.kind === 'invalid-reference');
  if (invalid.length > 0 && opts.mode === 'enforce') {
    const message = `${renderMessage(invalid, images, (opts.maxMessageLength ?? 1000) - 60)} (${BREAK_GLASS_MESSAGES.invalidReference})`;
    return { ...decision, allowed: false, message, breakGlass: 'ineffective' };
  }
  const bypassed = renderMessage(denying, images, MAX_WARNING_LENGTH);
  return {
    ...decision,
    allowed: true,
    message: '',
    warnings: [truncate(`${header}: admitted despite: ${bypassed}`, MAX_WARNING_LENGTH * 2)],
    breakGlass: 'admitted',
  };
}
