/**
 * The decision for a workload's pod template (issue 10 §1) and the choice of mode per request
 * (issue 10 §2). Pure functions, table-driven.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MESSAGES, WORKLOAD_WITHOUT_VERDICT, decide } from '../../src/policy/decision.js';
import { selectMode, type ModeSettings } from '../../src/policy/mode.js';
import type { DecisionOptions, ScanOutcome } from '../../src/policy/types.js';
import { assess } from '../helpers/assess.js';

const digest = `sha256:${'c'.repeat(64)}`;
const STRUTS = 'kaizheh/apache-struts2-cve-2017-5638:2.3.12';
const workload = { kind: 'Deployment', name: 'web' };


const fail: ScanOutcome = {
  kind: 'verdict',
  verdict: { status: 'fail', digest, cause: 'policy', reasons: [{ gate: 'vulnerabilities', trigger: 'package', output: 'CRITICAL CVE-2017-5638' }] },
};
const timeout: ScanOutcome = { kind: 'timeout', waitedMs: 9000 };
const error: ScanOutcome = { kind: 'error', code: 'SCANGATE_ERR_SCANNER_UNAVAILABLE', message: 'scanner unreachable' };
const onWorkload: DecisionOptions = { mode: 'enforce', rejectIfTimeout: true, subject: 'workload' };

describe('a workload template', () => {
  test('a failed verdict refuses it, naming the workload and the container', () => {
    const d = decide(assess([{ container: 'web', kind: 'container', image: STRUTS, workload }], { [STRUTS]: fail }), onWorkload);
    assert.equal(d.allowed, false);
    assert.equal(d.message, `${MESSAGES.policyFail}: ${STRUTS} (deployment "web" container "web"): vulnerabilities/package: CRITICAL CVE-2017-5638`);
  });

  test('a local rule refuses it, naming an init container of a CronJob', () => {
    const d = decide(assess([{ container: 'setup', kind: 'initContainer', image: 'busybox', workload: { kind: 'CronJob', name: 'nightly' } }], {}), onWorkload);
    assert.equal(d.allowed, false);
    assert.equal(d.message, `${MESSAGES.latestTag}: busybox (cronjob "nightly" init container "setup")`);
  });

  test('no verdict in time never refuses it, even with REJECT_IF_TIMEOUT=true: a warning says the pods will be checked', () => {
    for (const outcome of [timeout, error]) {
      const d = decide(assess([{ container: 'web', kind: 'container', image: 'nginx:1.25.4', workload }], { 'nginx:1.25.4': outcome }), onWorkload);
      assert.equal(d.allowed, true, outcome.kind);
      assert.equal(d.warnings.length, 1);
      assert.ok(d.warnings[0]?.startsWith(`${WORKLOAD_WITHOUT_VERDICT}: ${outcome.kind === 'timeout' ? MESSAGES.timeout : MESSAGES.scannerError}: nginx:1.25.4 (deployment "web" container "web"`), d.warnings[0]);
    }
  });

  test('a pending scan next to a failed one: refused for the failure, the pending one is a warning', () => {
    const d = decide(
      assess([{ container: 'web', kind: 'container', image: STRUTS, workload }, { container: 'side', kind: 'container', image: 'nginx:1.25.4', workload }], { [STRUTS]: fail, 'nginx:1.25.4': timeout }),
      onWorkload,
    );
    assert.equal(d.allowed, false);
    assert.ok(d.message.startsWith(`${MESSAGES.policyFail}: ${STRUTS}`));
    assert.doesNotMatch(d.message, /still in progress/);
    assert.equal(d.warnings.length, 1);
  });

  test('warn mode admits it with every reason as a warning', () => {
    const d = decide(assess([{ container: 'web', kind: 'container', image: STRUTS, workload }], { [STRUTS]: fail }), { ...onWorkload, mode: 'warn' });
    assert.equal(d.allowed, true);
    assert.ok(d.warnings[0]?.startsWith(`${MESSAGES.policyFail}: ${STRUTS} (deployment "web" container "web")`));
  });

  test('a pod keeps its REJECT_IF_TIMEOUT behaviour and its plain container names', () => {
    const d = decide(assess([{ container: 'web', kind: 'container', image: 'nginx:1.25.4' }], { 'nginx:1.25.4': timeout }), { mode: 'enforce', rejectIfTimeout: true });
    assert.equal(d.allowed, false);
    assert.ok(d.message.startsWith(`${MESSAGES.timeout}: nginx:1.25.4 (container "web": no verdict within 9.0s`));
  });

  test('an image volume is named as one', () => {
    const d = decide(assess([{ container: 'tools', kind: 'imageVolume', image: STRUTS }], { [STRUTS]: fail }), { mode: 'enforce', rejectIfTimeout: true });
    assert.ok(d.message.startsWith(`${MESSAGES.policyFail}: ${STRUTS} (image volume "tools")`));
  });
});

describe('mode selection', () => {
  const all: ModeSettings = { defaultMode: 'enforce', namespaceModes: ['enforce', 'warn', 'off'], workloadMode: 'enforce' };
  const cases: Array<[string, ModeSettings, 'enforce' | 'warn' | undefined, 'pod' | 'workload', ReturnType<typeof selectMode>]> = [
    ['/validate takes MODE', all, undefined, 'pod', { mode: 'enforce' }],
    ['/validate with MODE=warn', { ...all, defaultMode: 'warn' }, undefined, 'pod', { mode: 'warn' }],
    ['/validate/warn in a warn namespace', all, 'warn', 'pod', { mode: 'warn' }],
    ['/validate/enforce wins over MODE=warn', { ...all, defaultMode: 'warn' }, 'enforce', 'pod', { mode: 'enforce' }],
    ['/validate/enforce even when NAMESPACE_MODES omits it', { ...all, namespaceModes: ['off'] }, 'enforce', 'pod', { mode: 'enforce' }],
    ['/validate/warn not allowed: enforced', { ...all, namespaceModes: ['enforce', 'off'] }, 'warn', 'pod', { mode: 'enforce', refused: 'warn' }],
    ['/validate/warn not allowed with MODE=warn: still enforced', { defaultMode: 'warn', namespaceModes: ['enforce'], workloadMode: 'enforce' }, 'warn', 'pod', { mode: 'enforce', refused: 'warn' }],
    ['WORKLOAD_MODE=warn softens a workload', { ...all, workloadMode: 'warn' }, 'enforce', 'workload', { mode: 'warn' }],
    ['WORKLOAD_MODE=warn leaves pods alone', { ...all, workloadMode: 'warn' }, 'enforce', 'pod', { mode: 'enforce' }],
    ['a workload in a warn namespace', all, 'warn', 'workload', { mode: 'warn' }],
  ];
  for (const [what, settings, pathMode, subject, expected] of cases) {
    test(what, () => assert.deepEqual(selectMode(settings, pathMode, subject), expected));
  }
});
