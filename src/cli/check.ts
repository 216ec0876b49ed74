import type { Evaluation } from '../engine/evaluator.js';
import type { ContainerImage } from '../policy/types.js';

export const CHECK_EXIT = { allowed: 0, denied: 1, error: 2 } as const;

/** Images given on the command line become containers named after their position. */
export function imagesFromArgs(images: readonly string[]): ContainerImage[] {
  return images.map((image, i) => ({ container: `arg${i + 1}`, kind: 'container', image }));
}

/** Exit status of `scangate check`: 2 when any verdict is missing (timeout or scanner error). */
export function checkExitCode(evaluation: Evaluation): number {
  if (evaluation.images.some((i) => i.result === 'timeout' || i.result === 'deferred' || i.result === 'scanner-error')) return CHECK_EXIT.error;
  return evaluation.decision.allowed ? CHECK_EXIT.allowed : CHECK_EXIT.denied;
}

/** Human-readable table, or one JSON document with `--json`. */
export function renderCheck(evaluation: Evaluation, json: boolean): string {
  if (json) {
    return JSON.stringify(
      {
        allowed: evaluation.decision.allowed,
        message: evaluation.decision.message,
        warnings: evaluation.decision.warnings,
        images: evaluation.images,
        findings: evaluation.decision.findings.map((f) => ({ kind: f.kind, image: f.image, detail: f.detail, denies: f.denies })),
      },
      null,
      2,
    );
  }
  const rows = evaluation.images.map((i) => [i.image, i.result, i.cache ?? '-', i.digest ?? '']);
  const header = ['IMAGE', 'RESULT', 'CACHE', 'DIGEST'];
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (r: readonly string[]): string => r.map((cell, c) => cell.padEnd(widths[c] ?? 0)).join('  ').trimEnd();
  const out = [line(header), ...rows.map(line), ''];
  out.push(evaluation.decision.allowed ? 'ALLOWED' : 'DENIED');
  if (evaluation.decision.message !== '') out.push(evaluation.decision.message);
  for (const w of evaluation.decision.warnings) out.push(`warning: ${w}`);
  return out.join('\n');
}
