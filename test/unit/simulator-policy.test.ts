import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveSimulatorData, type SimVulnerability } from '@scangate/simulator/internal/data';
import { checkOutputOf, evaluatePolicy, policyBundleOf } from '@scangate/simulator/internal/policy';

const policy = resolveSimulatorData({}).policies[0];
if (policy === undefined) throw new Error('default policy missing');

function vuln(severity: SimVulnerability['severity'], extra: Partial<SimVulnerability> = {}): SimVulnerability {
  return { vuln: `CVE-2020-${severity.length}`, severity, package: 'pkg-1.0', packageType: 'dpkg', ...extra };
}

describe('simulator policy evaluation', () => {
  const table: Array<{ name: string; vulns: SimVulnerability[]; final: string; status: string; actions: string[] }> = [
    { name: 'no vulnerabilities', vulns: [], final: 'go', status: 'pass', actions: [] },
    { name: 'low and negligible only', vulns: [vuln('Low'), vuln('Negligible'), vuln('Unknown')], final: 'go', status: 'pass', actions: [] },
    { name: 'one medium', vulns: [vuln('Medium')], final: 'warn', status: 'pass', actions: ['warn'] },
    { name: 'one high', vulns: [vuln('High')], final: 'stop', status: 'fail', actions: ['stop'] },
    { name: 'critical and medium', vulns: [vuln('Medium'), vuln('Critical')], final: 'stop', status: 'fail', actions: ['warn', 'stop'] },
  ];
  for (const row of table) {
    it(row.name, () => {
      const outcome = evaluatePolicy(row.vulns, policy);
      assert.equal(outcome.finalAction, row.final);
      assert.equal(outcome.status, row.status);
      assert.deepEqual(
        outcome.rows.map((r) => r.action),
        row.actions,
      );
      for (const r of outcome.rows) {
        assert.equal(r.gate, 'vulnerabilities');
        assert.equal(r.trigger, 'package');
      }
    });
  }

  it('honours the policy severities', () => {
    const strict = { ...policy, stopSeverities: ['Critical', 'High', 'Medium'] as const, warnSeverities: ['Low'] as const };
    const outcome = evaluatePolicy([vuln('Medium'), vuln('Low')], { ...strict, stopSeverities: [...strict.stopSeverities], warnSeverities: [...strict.warnSeverities] });
    assert.deepEqual(
      outcome.rows.map((r) => r.action),
      ['stop', 'warn'],
    );
    assert.equal(outcome.status, 'fail');
  });

  it('writes Check_Output as Anchore does for non-os and os packages', () => {
    assert.equal(
      checkOutputOf({
        vuln: 'CVE-2017-5638',
        severity: 'Critical',
        package: 'struts2-core-2.3.12',
        packageType: 'java',
        packagePath: '/usr/local/tomcat/webapps/ROOT/WEB-INF/lib/struts2-core-2.3.12.jar',
      }),
      'CRITICAL Vulnerability found in non-os package type (java) - /usr/local/tomcat/webapps/ROOT/WEB-INF/lib/struts2-core-2.3.12.jar (CVE-2017-5638 - https://nvd.nist.gov/vuln/detail/CVE-2017-5638)',
    );
    assert.equal(
      checkOutputOf({ vuln: 'CVE-2023-0286', severity: 'High', package: 'libssl-3.0', packageName: 'libssl', packageType: 'dpkg', url: 'https://x/CVE-2023-0286' }),
      'HIGH Vulnerability found in os package type (dpkg) - libssl (CVE-2023-0286 - https://x/CVE-2023-0286)',
    );
    assert.equal(
      checkOutputOf({ vuln: 'GHSA-xxxx', severity: 'Medium', package: 'lodash-4.17.0', packageType: 'npm' }),
      'MEDIUM Vulnerability found in non-os package type (npm) - lodash-4.17.0 (GHSA-xxxx - None)',
    );
  });

  it('describes the bundle with one rule per severity', () => {
    const bundle = policyBundleOf(policy);
    assert.equal(bundle['id'], policy.id);
    const policies = bundle['policies'] as Array<{ rules: Array<{ action: string }> }>;
    assert.deepEqual(
      policies[0]?.rules.map((r) => r.action),
      ['STOP', 'STOP', 'WARN'],
    );
  });
});
