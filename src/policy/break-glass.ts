/**
 * Break-glass: an audited emergency bypass. A pod (or a workload's pod template) annotated
 * `scangate.io/break-glass: "<reason>"` is admitted despite failed or missing verdicts and local
 * rules, but only when the request comes from a user or group allowed to break glass, or from a
 * trusted controller stamping pods out of a template that scangate vetted at the workload's own
 * admission (README, "Break-glass"). Pure: (annotation, requester, settings, decision) -> decision.
 */
import { decide, renderMessage } from './decision.js';
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
  /**
   * Identities of the controllers that create pods (and ReplicaSets, Jobs) from templates
   * (BREAK_GLASS_CONTROLLERS). Their requests carry the template's annotation, which scangate only lets
   * into a template for an allowed user; a controller's own identity is never a human's permission.
   */
  readonly controllers: readonly string[];
}

export type BreakGlassGrant =
  | { readonly kind: 'none' }
  | { readonly kind: 'granted'; readonly reason: string; readonly user: string; readonly via: 'user' | 'group' | 'controller' }
  | { readonly kind: 'refused'; readonly reason: string; readonly user: string; readonly why: 'not-allowed' | 'no-reason' };

/**
 * What break-glass did to a decision (the metric's `outcome` label): admitted what would have been
 * denied; not needed (nothing to bypass); refused (requester not allowed, or no reason); ineffective
 * (allowed, but an invalid reference still denies).
 */
export type BreakGlassOutcome = 'admitted' | 'not_needed' | 'refused' | 'ineffective';

// eslint-disable-next-line no-control-regex -- finding control characters is the point
const NEEDS_ESCAPING = /[\u0000-\u001f\u007f-\u009f\\\u2028-\u202e\u2066-\u2069]|[ \t]{2}|^[ \t]|[ \t]$|\t/;

/**
 * Tenant text made safe for a log line, a warning, an audit annotation: control characters and
 * backslashes escaped (so a reason cannot forge a line or a terminal sequence), whitespace runs
 * collapsed, bounded. Linear in the input.
 */
export function escapeTenantText(text: string, maxLength: number): string {
  // The common case (an image reference, a plain reason) on the hot path: nothing to do.
  if (text.length <= maxLength && !NEEDS_ESCAPING.test(text)) return text;
  // Only the first stretch can survive the bound; never walk a megabyte of annotation.
  const head = text.slice(0, maxLength * 2);
  let out = '';
  for (const ch of head.replace(/[ \t]+/g, ' ').trim()) {
    const code = ch.codePointAt(0) ?? 0;
    if (ch === '\\') out += '\\\\';
    else if (code < 0x20 || (code >= 0x7f && code < 0xa0) || code === 0x2028 || code === 0x2029 || (code >= 0x202a && code <= 0x202e) || (code >= 0x2066 && code <= 0x2069)) {
      out += `\\u${code.toString(16).padStart(4, '0')}`;
    } else out += ch;
    if (out.length > maxLength) break;
  }
  const cut = out.length > maxLength || head.length < text.length;
  return cut ? `${out.slice(0, Math.max(0, maxLength - 1))}…` : out;
}

export function displayIdentity(name: string): string {
  return escapeTenantText(name, MAX_IDENTITY_LENGTH);
}

/**
 * Whether this request may use the annotation it carries. `annotation` is undefined when the object
 * does not carry one (or when nothing it carries needs judging: see the callers in http/app.ts).
 */
export function judgeBreakGlass(annotation: string | undefined, requester: Requester | undefined, settings: BreakGlassSettings): BreakGlassGrant {
  if (annotation === undefined) return { kind: 'none' };
  const reason = escapeTenantText(annotation, MAX_REASON_LENGTH);
  const username = requester?.username ?? '';
  const user = displayIdentity(username === '' ? '(unknown user)' : username);
  let via: 'user' | 'group' | 'controller' | undefined;
  if (requester !== undefined && username !== '') {
    if (settings.users.includes(username)) via = 'user';
    else if (requester.groups.some((g) => settings.groups.includes(g))) via = 'group';
    else if (settings.controllers.includes(username)) via = 'controller';
  }
  if (via === undefined) return { kind: 'refused', reason, user, why: 'not-allowed' };
  // A controller copies whatever the vetted template says; a human must say why.
  if (reason === '' && via !== 'controller') return { kind: 'refused', reason, user, why: 'no-reason' };
  return { kind: 'granted', reason, user, via };
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, Math.max(0, max - 1))}…`;
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
    const sentence =
      grant.why === 'no-reason'
        ? `${BREAK_GLASS_MESSAGES.noReason}: the annotation ${BREAK_GLASS_ANNOTATION} is empty; write why (it goes to the audit log)`
        : `${BREAK_GLASS_MESSAGES.notPermitted}: user "${grant.user}" may not break glass (annotation ${BREAK_GLASS_ANNOTATION}); remove the annotation or ask someone allowed by BREAK_GLASS_USERS / BREAK_GLASS_GROUPS`;
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
