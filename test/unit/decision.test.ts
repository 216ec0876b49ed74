import assert from 'node:assert/strict';
import { describe, it, test } from 'node:test';
import { describeFinding, MESSAGES, decide } from '../../src/policy/decision.js';
import { checkLocalRules, normaliseRegistry } from '../../src/policy/local-rules.js';
import type { ContainerImage, DecisionOptions, LocalRules, ScanOutcome } from '../../src/policy/types.js';
import { assess } from '../helpers/assess.js';

const rules: LocalRules = { denyLatestTag: true, registryAllowlist: [] };
const enforce: DecisionOptions = { mode: 'enforce', rejectIfTimeout: true };
const digest = `sha256:${'b'.repeat(64)}`;

function c(image: string, container = 'app', kind: ContainerImage['kind'] = 'container'): ContainerImage {
  return { container, kind, image };
}


const pass: ScanOutcome = { kind: 'verdict', verdict: { status: 'pass', digest, warnings: 0 } };
const fail = (output: string, n = 1): ScanOutcome => ({
  kind: 'verdict',
  verdict: {
    status: 'fail',
    digest,
    cause: 'policy',
    reasons: Array.from({ length: n }, (_, i) => ({ gate: 'vulnerabilities', trigger: 'package', output: `${output} #${i}` })),
  },
});

test('latest rule: explicit :latest and an implied tag both count; tagged and digest-pinned do not', () => {
  assert.equal(checkLocalRules('nginx', rules).finding?.kind, 'latest-tag');
  assert.equal(checkLocalRules('nginx:latest', rules).finding?.kind, 'latest-tag');
  assert.equal(checkLocalRules('quay.io/a/b:latest', rules).finding?.kind, 'latest-tag');
  assert.equal(checkLocalRules('nginx:1.25.3', rules).finding, undefined);
  assert.equal(checkLocalRules(`nginx@${digest}`, rules).finding, undefined);
  // Pinned by digest: the digest decides what runs, whatever the tag says (README "digest rule").
  assert.equal(checkLocalRules(`nginx:latest@${digest}`, rules).finding, undefined);
  assert.equal(checkLocalRules('nginx', { ...rules, denyLatestTag: false }).finding, undefined);
});

test('registry allow-list matches the normalised registry host', () => {
  const allow: LocalRules = { denyLatestTag: true, registryAllowlist: ['docker.io', 'quay.io', 'localhost:5000'].map(normaliseRegistry) };
  assert.equal(checkLocalRules('nginx:1', allow).finding, undefined);
  assert.equal(checkLocalRules('index.docker.io/library/nginx:1', allow).finding, undefined);
  assert.equal(checkLocalRules('quay.io/x/y:1', allow).finding, undefined);
  assert.equal(checkLocalRules('localhost:5000/a:1', allow).finding, undefined);
  assert.deepEqual(checkLocalRules('evil.io/x/y:1', allow).finding, { kind: 'registry-not-allowed', registry: 'evil.io' });
  assert.equal(checkLocalRules('localhost:5001/a:1', allow).finding?.kind, 'registry-not-allowed');
  assert.equal(normaliseRegistry(' https://Index.Docker.io/ '), 'docker.io');
});

test('invalid references are denials with the reason, not errors', () => {
  const d = decide(assess([c('Nginx:1')]), enforce);
  assert.equal(d.allowed, false);
  assert.match(d.message, new RegExp(`^${MESSAGES.invalidReference}: Nginx:1 \\(container "app": repository name \\(library/Nginx\\) must be lowercase\\)$`));
});

test('every offending image is listed, never "last container wins"', () => {
  const containers = [
    c('nginx', 'web'),
    c('kaizheh/apache-struts2-cve-2017-5638:1', 'struts'),
    c('busybox', 'init', 'initContainer'),
    c('nginx:1.25.3', 'ok'),
    c('python:3.6', 'py'),
  ];
  const d = decide(
    assess(containers, {
      'kaizheh/apache-struts2-cve-2017-5638:1': fail('CRITICAL CVE-2017-5638'),
      'nginx:1.25.3': pass,
      'python:3.6': fail('HIGH CVE-2021-3177'),
    }),
    enforce,
  );
  assert.equal(d.allowed, false);
  assert.equal(
    d.message,
    `${MESSAGES.latestTag}: nginx (container "web"), busybox (init container "init"). ` +
      `${MESSAGES.policyFail}: kaizheh/apache-struts2-cve-2017-5638:1 (container "struts"): vulnerabilities/package: CRITICAL CVE-2017-5638. ` +
      `${MESSAGES.policyFail}: python:3.6 (container "py"): vulnerabilities/package: HIGH CVE-2021-3177`,
  );
  assert.deepEqual(d.findings.map((f) => f.kind), ['latest-tag', 'policy-fail', 'latest-tag', 'policy-fail']);
});

test('all passing: allowed with an empty message', () => {
  const d = decide(assess([c('nginx:1'), c('redis:7', 'cache')], { 'nginx:1': pass, 'redis:7': pass }), enforce);
  assert.deepEqual(d, { allowed: true, message: '', warnings: [], findings: [] });
});

/** A long stop row as a scanner writes it: a path, a URL, three CVE ids. */
const LONG_ROW = `CRITICAL Vulnerability found in non-os package type (java) - /usr/local/tomcat/${'lib/'.repeat(100)}struts2-core-2.3.12.jar (CVE-2017-5638 - https://nvd.nist.gov/vuln/detail/CVE-2017-5638) CVE-2018-11776 CVE-2016-1000031`;
/** LONG_ROW as a denial shows it. */
const LONG_FINDING = 'vulnerabilities/package: CRITICAL CVE-2017-5638, CVE-2018-11776, CVE-2016-1000031 in struts2-core-2.3.12.jar';

test('long reasons are shortened so that every image still fits the cap', () => {
  const long = LONG_ROW;
  const containers = Array.from({ length: 8 }, (_, i) => c(`team/app${i}:1`, `c${i}`));
  const outcomes = Object.fromEntries(containers.map((ci) => [ci.image, fail(long, 5)]));
  const d = decide(assess(containers, outcomes), { ...enforce, maxMessageLength: 1000 });
  assert.equal(d.allowed, false);
  assert.ok(d.message.length <= 1000, `message is ${d.message.length} long`);
  for (const ci of containers) assert.ok(d.message.includes(`${MESSAGES.policyFail}: ${ci.image}`), `${ci.image} missing`);
  const roomy = decide(assess(containers.slice(0, 1), outcomes), enforce);
  assert.match(roomy.message, /; \+2 more$/);
  // The scanner's text itself is not shown: only the findings read from it (THREAT-MODEL I4).
  assert.ok(roomy.message.includes(LONG_FINDING), roomy.message);
  assert.doesNotMatch(roomy.message, /https:|\/usr\/local|Vulnerability found/);
});

describe('a denial names every failing image within the 1000 characters, or counts the ones past it (issue 15)', () => {
  const many = (n: number, name: (i: number) => string): ContainerImage[] => Array.from({ length: n }, (_, i) => c(name(i), `c${i}`));
  const failing = (containers: ContainerImage[]): Record<string, ScanOutcome> => Object.fromEntries(containers.map((ci) => [ci.image, fail(LONG_ROW, 5)]));
  /** The images a sentence names and the count after them (`A, B, +N more` or `N images`). */
  const sentence = (message: string, prefix: string): { named: string[]; counted: number } => {
    // The first image of a kind may keep its detail in parentheses: left out here.
    const text = message
      .replace(/ \([^()]*(?:\([^()]*\)[^()]*)*\)/g, '')
      .split('. ')
      .find((part) => part.startsWith(`${prefix}: `))
      ?.slice(prefix.length + 2);
    assert.ok(text !== undefined, `no "${prefix}" in ${message}`);
    const none = /^(\d+) images?$/.exec(text);
    if (none !== null) return { named: [], counted: Number(none[1]) };
    const more = /, \+(\d+) more$/.exec(text);
    return { named: (more === null ? text : text.slice(0, more.index)).split(', '), counted: more === null ? 0 : Number(more[1]) };
  };

  it('64 failing images with short names and long reasons: all 64 named', () => {
    const containers = many(64, (i) => `team/app${i}:1`);
    const d = decide(assess(containers, failing(containers)), { ...enforce, maxMessageLength: 1000 });
    assert.equal(d.allowed, false);
    assert.ok(d.message.length <= 1000, `message is ${d.message.length} long`);
    assert.deepEqual(sentence(d.message, MESSAGES.policyFail), { named: containers.map((ci) => ci.image), counted: 0 });
  });

  it('64 failing images with registry-length names: as many named as fit, in order, the rest counted exactly', () => {
    const containers = many(64, (i) => `registry.example.com/platform-team/service-${i}:1.2.${i}`);
    const d = decide(assess(containers, failing(containers)), { ...enforce, maxMessageLength: 1000 });
    assert.ok(d.message.length <= 1000, `message is ${d.message.length} long`);
    const { named, counted } = sentence(d.message, MESSAGES.policyFail);
    assert.deepEqual(named, containers.slice(0, named.length).map((ci) => ci.image));
    assert.equal(named.length + counted, 64);
    assert.ok(named.length >= 15, `only ${named.length} named`);
    assert.ok(!d.message.endsWith('…'), 'no hard cut');
  });

  it('several kinds at once: each kind named in turn and counted, none left out', () => {
    const latest = many(20, (i) => `registry.example.com/platform-team/tool-${i}`);
    const policy = many(30, (i) => `registry.example.com/platform-team/service-${i}:2.0.${i}`);
    const errors = many(14, (i) => `registry.example.com/platform-team/job-${i}:3.1`);
    const outcomes: Record<string, ScanOutcome> = {
      ...failing(policy),
      ...Object.fromEntries(errors.map((ci) => [ci.image, { kind: 'error', code: 'SCANGATE_ERR_SCANNER_PROTOCOL', message: 'scanner answered check with malformed JSON' } as const])),
    };
    const d = decide(assess([...latest, ...policy, ...errors], outcomes), { ...enforce, maxMessageLength: 1000 });
    assert.ok(d.message.length <= 1000, `message is ${d.message.length} long`);
    for (const [prefix, list] of [
      [MESSAGES.latestTag, latest],
      [MESSAGES.policyFail, policy],
      [MESSAGES.scannerError, errors],
    ] as const) {
      const { named, counted } = sentence(d.message, prefix);
      assert.ok(named.length >= 3, `${prefix}: only ${named.length} named`);
      assert.deepEqual(named, list.slice(0, named.length).map((ci) => ci.image));
      assert.equal(named.length + counted, list.length, prefix);
    }
  });

  it('when the reasons cannot fit, the first image keeps its first reason and the others are named with their containers', () => {
    const containers = many(12, (i) => `registry.example.com/team/service-${i}:1`);
    const d = decide(assess(containers, failing(containers)), { ...enforce, maxMessageLength: 1000 });
    assert.ok(d.message.length <= 1000, `message is ${d.message.length} long`);
    const [first, ...others] = containers;
    assert.equal(
      d.message,
      `${MESSAGES.policyFail}: ${first!.image} (container "c0": ${LONG_FINDING}; +4 more), ` +
        others.map((ci) => `${ci.image} (container "${ci.container}")`).join(', '),
    );
  });

  it('the first image of each kind keeps its detail in the counted form too, when it fits', () => {
    const deferred = many(40, (i) => `registry.example.com/platform-team/service-${i}:1.2.${i}`);
    const outcomes = Object.fromEntries(deferred.map((ci) => [ci.image, { kind: 'deferred', maxNewScans: 10, why: 'request' } as const]));
    const d = decide(assess(deferred, outcomes), { ...enforce, maxMessageLength: 1000 });
    assert.ok(d.message.length <= 1000, `message is ${d.message.length} long`);
    assert.ok(
      d.message.startsWith(`${MESSAGES.deferred}: ${deferred[0]!.image} (container "c0": this review already started 10 new scans (MAX_NEW_SCANS_PER_REQUEST); a retry starts the next ones), ${deferred[1]!.image}, `),
      d.message,
    );
    const { named, counted } = sentence(d.message, MESSAGES.deferred);
    assert.equal(named.length + counted, 40);
  });

  it('a bound too small for even the counts: cut, never longer', () => {
    const containers = many(64, (i) => `registry.example.com/platform-team/service-${i}:1.2.${i}`);
    const d = decide(assess(containers, failing(containers)), { ...enforce, maxMessageLength: 20 });
    assert.ok(d.message.length <= 20, d.message);
  });
});

test('timeout: REJECT_IF_TIMEOUT=true denies saying the scan continues; false admits with a warning', () => {
  const outcomes: Record<string, ScanOutcome> = { 'nginx:1': { kind: 'timeout', waitedMs: 9000 } };
  const denied = decide(assess([c('nginx:1')], outcomes), enforce);
  assert.equal(denied.allowed, false);
  assert.equal(
    denied.message,
    `${MESSAGES.timeout}: nginx:1 (container "app": no verdict within 9.0s; the scan continues in the background and a retry will use its verdict)`,
  );
  const admitted = decide(assess([c('nginx:1')], outcomes), { ...enforce, rejectIfTimeout: false });
  assert.equal(admitted.allowed, true);
  assert.equal(admitted.warnings.length, 1);
  assert.match(admitted.warnings[0] ?? '', /^admitted without a verdict \(REJECT_IF_TIMEOUT=false\): Image scan still in progress: nginx:1/);
});

test('scanner errors follow REJECT_IF_TIMEOUT but say "Scanner error"', () => {
  const outcomes: Record<string, ScanOutcome> = { 'nginx:1': { kind: 'error', code: 'SCANGATE_ERR_SCANNER_UNAVAILABLE', message: 'scanner unreachable (ECONNREFUSED)' } };
  const denied = decide(assess([c('nginx:1')], outcomes), enforce);
  assert.equal(denied.message, `${MESSAGES.scannerError}: nginx:1 (container "app": scanner unreachable (ECONNREFUSED))`);
  assert.equal(decide(assess([c('nginx:1')], outcomes), { ...enforce, rejectIfTimeout: false }).allowed, true);
});

test('a local-rule denial still denies when other images only timed out and REJECT_IF_TIMEOUT=false', () => {
  const d = decide(assess([c('nginx'), c('redis:7', 'r')], { 'redis:7': { kind: 'timeout', waitedMs: 1000 } }), { ...enforce, rejectIfTimeout: false });
  assert.equal(d.allowed, false);
  assert.equal(d.message, `${MESSAGES.latestTag}: nginx (container "app")`);
  assert.equal(d.warnings.length, 1);
});

test('warn mode admits and returns the reasons as warnings', () => {
  const d = decide(assess([c('nginx'), c('a/b:1', 'b')], { 'a/b:1': fail('HIGH CVE-2021-0001') }), { mode: 'warn', rejectIfTimeout: true });
  assert.equal(d.allowed, true);
  assert.deepEqual(d.warnings, [
    `${MESSAGES.latestTag}: nginx (container "app")`,
    `${MESSAGES.policyFail}: a/b:1 (container "b"): vulnerabilities/package: HIGH CVE-2021-0001`,
  ]);
});

test('analysis_failed is a failed scan, not a pass', () => {
  const outcome: ScanOutcome = { kind: 'verdict', verdict: { status: 'fail', digest, reasons: [], cause: 'analysis_failed' } };
  const d = decide(assess([c('a/b:1')], { 'a/b:1': outcome }), enforce);
  assert.equal(d.allowed, false);
  assert.equal(d.message, `${MESSAGES.policyFail}: a/b:1 (container "app"): analysis/failed: the scanner could not analyse the image`);
});

test('a stop row is shown as its findings in scangate\'s words, never the scanner\'s text (THREAT-MODEL I4)', () => {
  const row = (gate: string, trigger: string, output: string): string => describeFinding({ gate, trigger, output });
  assert.equal(
    row('vulnerabilities', 'package', 'CRITICAL Vulnerability found in non-os package type (java) - /usr/local/tomcat/webapps/ROOT/WEB-INF/lib/struts2-core-2.3.12.jar (CVE-2017-5638 - https://nvd.nist.gov/vuln/detail/CVE-2017-5638)'),
    'vulnerabilities/package: CRITICAL CVE-2017-5638 in struts2-core-2.3.12.jar',
  );
  assert.equal(row('vulnerabilities', 'package', 'HIGH Vulnerability found in package log4j-core-2.14.1.jar (GHSA-jfh8-c2jp-5v3q)'), 'vulnerabilities/package: HIGH GHSA-JFH8-C2JP-5V3Q in log4j-core-2.14.1.jar');
  // Nothing that reads as a finding: the gate and trigger alone (a Dockerfile rule, a secret scan).
  assert.equal(row('dockerfile', 'instruction', "Dockerfile directive 'USER' check 'not_in' matched against 'root'"), 'dockerfile/instruction');
  assert.equal(row('secret_scans', 'content_regex_checks', 'Secret search analyzer found regexp match in container: file=/etc/app.env AWS_SECRET_KEY=abcd'), 'secret_scans/content_regex_checks');
  // Hostile text: no control character, no markup, no link, no credential passes; names that are not
  // the policy language's words are not shown either.
  const hostile = row('vuln\u001b[31m', 'pkg\nx', 'CRITICAL \u202e<script>alert(1)</script> package - evil\u001b[0m.jar password=hunter2 https://evil.example/ CVE-2021-44228');
  assert.equal(hostile, 'unknown/unknown: CRITICAL CVE-2021-44228');
  // Bounded however long the row.
  assert.ok(row('vulnerabilities', 'package', `LOW ${'CVE-2020-0001 '.repeat(10_000)}`).length < 200);
});
