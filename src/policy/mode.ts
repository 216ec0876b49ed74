import type { Mode } from './types.js';

/** The modes a namespace can choose with its `scangate.io/mode` label. */
export const NAMESPACE_MODES = ['enforce', 'warn', 'off'] as const;
export type NamespaceMode = (typeof NAMESPACE_MODES)[number];

export interface ModeSettings {
  /** `MODE`: the cluster default, for namespaces without a (valid) label. */
  readonly defaultMode: Mode;
  /** `NAMESPACE_MODES`: the label values the operator lets namespaces choose. */
  readonly namespaceModes: readonly NamespaceMode[];
  /** `WORKLOAD_MODE`: `warn` turns every refusal of a workload's template into warnings. */
  readonly workloadMode: Mode;
}

export interface ModeChoice {
  readonly mode: Mode;
  /** Set when the path asked for a mode the settings do not allow, and a stricter one was used. */
  readonly refused?: Mode;
}

/**
 * Which mode judges a request. The API server tells scangate a namespace's mode only through the path
 * of the webhook entry whose namespaceSelector matched (`/validate/warn`, `/validate/enforce`), so
 * scangate needs no read access to namespaces. The path can only make the decision as weak as the
 * operator allows: `enforce` is always honoured; `warn` only when NAMESPACE_MODES lists it, else the
 * request is enforced (anyone who can reach the Service can pick a path, and the answer is theirs
 * alone, but a misrendered webhook configuration must not quietly weaken the cluster). `/validate`
 * without a mode takes MODE. WORKLOAD_MODE=warn then softens a workload's template check only: its
 * pods are still judged in the namespace's mode when they are created. Pure.
 */
export function selectMode(settings: ModeSettings, pathMode: Mode | undefined, subject: 'pod' | 'workload'): ModeChoice {
  let mode: Mode = pathMode ?? settings.defaultMode;
  let refused: Mode | undefined;
  if (pathMode === 'warn' && !settings.namespaceModes.includes('warn')) {
    mode = 'enforce';
    refused = 'warn';
  }
  if (subject === 'workload' && settings.workloadMode === 'warn') mode = 'warn';
  return { mode, ...(refused !== undefined ? { refused } : {}) };
}
