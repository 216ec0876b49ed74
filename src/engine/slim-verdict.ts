import type { ScanVerdict, StopReason } from '../policy/types.js';

/** Stop rows a cached verdict keeps: the most a denial shows (policy/decision.ts renders at most 3). */
export const KEPT_REASONS = 3;
/** Characters kept of a stop row's output (a denial shows at most 200 of them). */
export const KEPT_OUTPUT_CHARS = 240;
/** Characters kept of a gate or trigger name, of a digest and of a policy id. */
export const KEPT_NAME_CHARS = 64;
const KEPT_DIGEST_CHARS = 'sha512:'.length + 128;

/**
 * The first `max` characters, as a string of their own: V8's `slice` of a long string is a view that
 * keeps the whole original alive (measured: a 3-row verdict cut from 10 KB rows held 60 KB), so a
 * shortened text is copied out.
 */
function cut(text: string, max: number): string {
  return text.length <= max ? text : (JSON.parse(JSON.stringify(text.slice(0, max))) as string);
}

/**
 * What the verdict cache keeps of a scanner's answer: only what a denial can show. A failing image
 * may come back with thousands of stop rows (one per vulnerable package, whose names and paths the
 * image's author chose); keeping them all would let a few pod creations fill the heap. The rest is a
 * count (`omittedReasons`), so the denial still says "+N more". Pure.
 */
export function slimVerdict(verdict: ScanVerdict): ScanVerdict {
  const digest = cut(verdict.digest, KEPT_DIGEST_CHARS);
  const policy = {
    ...(verdict.policyId !== undefined ? { policyId: cut(verdict.policyId, KEPT_NAME_CHARS * 2) } : {}),
    ...(verdict.pinDigest !== undefined ? { pinDigest: cut(verdict.pinDigest, KEPT_DIGEST_CHARS) } : {}),
  };
  if (verdict.status === 'pass') return { status: 'pass', digest, warnings: verdict.warnings, ...policy };
  const kept: StopReason[] = verdict.reasons.slice(0, KEPT_REASONS).map((r) => ({
    gate: cut(r.gate, KEPT_NAME_CHARS),
    trigger: cut(r.trigger, KEPT_NAME_CHARS),
    output: cut(r.output, KEPT_OUTPUT_CHARS),
  }));
  const omitted = verdict.reasons.length - kept.length + (verdict.omittedReasons ?? 0);
  return { status: 'fail', digest, reasons: kept, cause: verdict.cause, ...(omitted > 0 ? { omittedReasons: omitted } : {}), ...policy };
}

