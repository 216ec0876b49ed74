/**
 * Policy evaluation, the way Anchore's `vulnerabilities` gate with its `package` trigger does it:
 * one row per matching vulnerability, the worst row action is the final action, and the status is
 * `pass` unless the final action is `stop`. Pure: vulnerabilities and a policy in, rows out.
 */
import type { SimPolicy, SimVulnerability } from './data.js';

export type GateAction = 'stop' | 'warn' | 'go';

export interface PolicyRow {
  readonly triggerId: string;
  readonly gate: 'vulnerabilities';
  readonly trigger: 'package';
  readonly checkOutput: string;
  readonly action: Exclude<GateAction, 'go'>;
}

export interface PolicyOutcome {
  readonly rows: readonly PolicyRow[];
  readonly finalAction: GateAction;
  readonly status: 'pass' | 'fail';
}

/** Anchore's `os_package_types`; anything else is reported as a non-os package. */
const OS_PACKAGE_TYPES = new Set(['dpkg', 'rpm', 'apk', 'kb']);

export function isOsPackage(v: SimVulnerability): boolean {
  return OS_PACKAGE_TYPES.has(v.packageType.toLowerCase());
}

export function vulnerabilityUrl(v: SimVulnerability): string {
  if (v.url !== undefined) return v.url;
  return /^CVE-\d{4}-\d+$/.test(v.vuln) ? `https://nvd.nist.gov/vuln/detail/${v.vuln}` : 'None';
}

/** e.g. `CRITICAL Vulnerability found in non-os package type (java) - /path/x.jar (CVE-... - url)`. */
export function checkOutputOf(v: SimVulnerability): string {
  const os = isOsPackage(v);
  const where = os ? (v.packageName ?? v.package) : (v.packagePath ?? v.package);
  return `${v.severity.toUpperCase()} Vulnerability found in ${os ? 'os' : 'non-os'} package type (${v.packageType}) - ${where} (${v.vuln} - ${vulnerabilityUrl(v)})`;
}

export function evaluatePolicy(vulnerabilities: readonly SimVulnerability[], policy: SimPolicy): PolicyOutcome {
  const rows: PolicyRow[] = [];
  for (const v of vulnerabilities) {
    const action = policy.stopSeverities.includes(v.severity)
      ? 'stop'
      : policy.warnSeverities.includes(v.severity)
        ? 'warn'
        : undefined;
    if (action === undefined) continue;
    rows.push({
      triggerId: `${v.vuln}+${v.packageName ?? v.package}`,
      gate: 'vulnerabilities',
      trigger: 'package',
      checkOutput: checkOutputOf(v),
      action,
    });
  }
  const finalAction: GateAction = rows.some((r) => r.action === 'stop')
    ? 'stop'
    : rows.some((r) => r.action === 'warn')
      ? 'warn'
      : 'go';
  return { rows, finalAction, status: finalAction === 'stop' ? 'fail' : 'pass' };
}

/** The bundle document Anchore returns as `detail.policy` when `detail=true`. */
export function policyBundleOf(policy: SimPolicy): Record<string, unknown> {
  const rule = (severity: string, action: 'STOP' | 'WARN', i: number): Record<string, unknown> => ({
    id: `${policy.id}-rule-${String(i)}`,
    gate: 'vulnerabilities',
    trigger: 'package',
    action,
    params: [
      { name: 'package_type', value: 'all' },
      { name: 'severity_comparison', value: '=' },
      { name: 'severity', value: severity.toLowerCase() },
    ],
  });
  const rules = [
    ...policy.stopSeverities.map((s) => ({ s, a: 'STOP' as const })),
    ...policy.warnSeverities.map((s) => ({ s, a: 'WARN' as const })),
  ].map(({ s, a }, i) => rule(s, a, i));
  return {
    id: policy.id,
    name: policy.name,
    version: '1_0',
    comment: 'scanner simulator policy bundle',
    policies: [{ id: policy.id, name: policy.name, version: '1_0', comment: '', rules }],
    whitelists: [],
    mappings: [
      {
        id: `${policy.id}-mapping`,
        name: 'default',
        registry: '*',
        repository: '*',
        image: { type: 'tag', value: '*' },
        policy_ids: [policy.id],
        whitelist_ids: [],
      },
    ],
    whitelisted_images: [],
    blacklisted_images: [],
  };
}
