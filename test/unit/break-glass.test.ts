import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeAdmissionResponse } from '../../src/admission/admission-review.js';
import { createAuditAnnotator, MAX_IMAGES_ANNOTATION, type AuditInput } from '../../src/admission/audit-annotations.js';
import {
  BREAK_GLASS_MESSAGES,
  decideWithBreakGlass,
  judgeBreakGlass as judgeClaim,
  MAX_REASON_LENGTH,
  reasonText,
  type BreakGlassGrant,
  type BreakGlassSettings,
  type Requester,
} from '../../src/policy/break-glass.js';
import type { ProofCheck } from '../../src/policy/break-glass-proof.js';
import { displayImage } from '../../src/policy/safe-text.js';
import { MESSAGES } from '../../src/policy/decision.js';
import { checkLocalRules } from '../../src/policy/local-rules.js';
import type { ContainerImage, DecisionOptions, ImageAssessment, LocalRules, ScanOutcome } from '../../src/policy/types.js';

const rules: LocalRules = { denyLatestTag: true, registryAllowlist: [] };
const enforce: DecisionOptions = { mode: 'enforce', rejectIfTimeout: true };
const warn: DecisionOptions = { mode: 'warn', rejectIfTimeout: true };
const digest = `sha256:${'b'.repeat(64)}`;

/** The annotations as the API server reads them: from the answer's JSON text. */
function auditAnnotationsOf(input: AuditInput, annotator = createAuditAnnotator()): Record<string, string> {
  const text = encodeAdmissionResponse({ apiVersion: 'admission.k8s.io/v1', uid: 'u' }, { allowed: true, auditAnnotations: annotator.of(input) });
  return (JSON.parse(text) as { response: { auditAnnotations: Record<string, string> } }).response.auditAnnotations;
}

const settings: BreakGlassSettings = { users: ['alice'], groups: ['oncall'] };
const CONTROLLER = 'system:serviceaccount:kube-system:replicaset-controller';

function judgeBreakGlass(annotation: string | undefined, requester: Requester | undefined, s: BreakGlassSettings, proof?: ProofCheck): BreakGlassGrant {
  return judgeClaim({ annotation, requester, ...(proof !== undefined ? { proof } : {}) }, s);
}

function assess(images: string[], outcomes: Record<string, ScanOutcome> = {}): ImageAssessment[] {
  return images.map((image) => {
    const ci: ContainerImage = { container: 'app', kind: 'container', image };
    const { reference, finding } = checkLocalRules(image, rules);
    const scan = outcomes[image];
    return {
      image,
      containers: [ci],
      ...(reference !== undefined ? { reference } : {}),
      ...(finding !== undefined ? { local: finding } : {}),
      ...(finding === undefined && scan !== undefined ? { scan } : {}),
    };
  });
}

const pass: ScanOutcome = { kind: 'verdict', verdict: { status: 'pass', digest, warnings: 0 } };
const fail: ScanOutcome = {
  kind: 'verdict',
  verdict: { status: 'fail', digest, cause: 'policy', reasons: [{ gate: 'vulnerabilities', trigger: 'package', output: 'CRITICAL CVE-2017-5638' }] },
};
const timeout: ScanOutcome = { kind: 'timeout', waitedMs: 9000 };

test('who may break glass: listed users and groups; nobody else (a controller neither), and nobody without userInfo', () => {
  const cases: Array<[string, { username: string; groups: string[] } | undefined, string, string | undefined]> = [
    ['listed user', { username: 'alice', groups: ['system:authenticated'] }, 'granted', 'user'],
    ['member of a listed group', { username: 'bob', groups: ['system:authenticated', 'oncall'] }, 'granted', 'group'],
    ['a controller, without a proof', { username: CONTROLLER, groups: ['system:serviceaccounts'] }, 'refused', undefined],
    ['anyone else', { username: 'mallory', groups: ['system:authenticated', 'developers'] }, 'refused', undefined],
    ['a user named like a group', { username: 'oncall', groups: [] }, 'refused', undefined],
    ['a group named like a user', { username: 'mallory', groups: ['alice'] }, 'refused', undefined],
    ['a prefix of a listed user', { username: 'alic', groups: [] }, 'refused', undefined],
    ['no userInfo', undefined, 'refused', undefined],
    ['empty username', { username: '', groups: ['oncall'] }, 'refused', undefined],
  ];
  for (const [name, requester, kind, via] of cases) {
    const grant = judgeBreakGlass('prod down, CVE fix rolling', requester, settings);
    assert.equal(grant.kind, kind, name);
    if (grant.kind === 'granted') assert.equal(grant.via, via, name);
  }
  assert.deepEqual(judgeBreakGlass(undefined, { username: 'alice', groups: [] }, settings), { kind: 'none' });
});

test('a person must give a reason; a controller breaks glass only on a valid proof, which names the person', () => {
  const human = judgeBreakGlass('   ', { username: 'alice', groups: [] }, settings);
  assert.deepEqual(human, { kind: 'refused', reason: '', user: 'alice', why: 'no-reason' });
  const ctl = { username: CONTROLLER, groups: [] };
  const proof: ProofCheck = { ok: true, proof: { user: 'alice', expiresAtS: 1, images: ['struts:2.3.12'] } };
  assert.deepEqual(judgeBreakGlass('INC-42', ctl, settings, proof), { kind: 'granted', reason: 'INC-42', user: 'alice', via: 'proof' });
  for (const [why, expected] of [['forged', 'proof-invalid'], ['malformed', 'proof-invalid'], ['expired', 'proof-expired'], ['images', 'proof-images']] as const) {
    const grant = judgeBreakGlass('INC-42', ctl, settings, { ok: false, why });
    assert.equal(grant.kind, 'refused', why);
    if (grant.kind === 'refused') {
      assert.equal(grant.why, expected, why);
      const d = decideWithBreakGlass(assess(['nginx:1.25.3'], { 'nginx:1.25.3': pass }), enforce, grant);
      assert.equal(d.allowed, false);
      assert.ok(d.message.startsWith(`${BREAK_GLASS_MESSAGES.notPermitted}: user "${CONTROLLER}" may not break glass and its break-glass proof`), d.message);
    }
  }
  // An allowed person is judged as such, whatever proof the object carries.
  assert.equal(judgeBreakGlass('INC-42', { username: 'alice', groups: [] }, settings, { ok: false, why: 'forged' }).kind, 'granted');
});

test('granted: a failed verdict, a missing verdict and local rules are bypassed, with a warning naming user and reason', () => {
  const grant = judgeBreakGlass('INC-42 hotfix', { username: 'alice', groups: [] }, settings);
  const images = assess(['struts:2.3.12', 'slow:1', 'nginx'], { 'struts:2.3.12': fail, 'slow:1': timeout });
  const d = decideWithBreakGlass(images, enforce, grant);
  assert.equal(d.allowed, true);
  assert.equal(d.message, '');
  assert.equal(d.breakGlass, 'admitted');
  assert.equal(d.warnings.length, 1);
  const w = d.warnings[0] ?? '';
  assert.ok(w.startsWith(`${BREAK_GLASS_MESSAGES.used} by "alice" (reason: "INC-42 hotfix"): admitted despite: `), w);
  for (const part of [MESSAGES.latestTag, 'nginx', `${MESSAGES.policyFail}: struts:2.3.12`, `${MESSAGES.timeout}: slow:1`]) assert.ok(w.includes(part), `${part} in ${w}`);
});

test('granted but nothing to bypass: admitted, with a warning, outcome not_needed', () => {
  const grant = judgeBreakGlass('drill', { username: 'bob', groups: ['oncall'] }, settings);
  const d = decideWithBreakGlass(assess(['nginx:1.25.3'], { 'nginx:1.25.3': pass }), enforce, grant);
  assert.equal(d.allowed, true);
  assert.equal(d.breakGlass, 'not_needed');
  assert.match(d.warnings[0] ?? '', /nothing needed bypassing/);
});

test('granted: an invalid reference still denies (nothing meaningful to admit), and says break-glass cannot help', () => {
  const grant = judgeBreakGlass('INC-42', { username: 'alice', groups: [] }, settings);
  const d = decideWithBreakGlass(assess(['Nginx:1', 'struts:2.3.12'], { 'struts:2.3.12': fail }), enforce, grant);
  assert.equal(d.allowed, false);
  assert.equal(d.breakGlass, 'ineffective');
  assert.ok(d.message.startsWith(`${MESSAGES.invalidReference}: Nginx:1`), d.message);
  assert.ok(d.message.endsWith(`(${BREAK_GLASS_MESSAGES.invalidReference})`), d.message);
  assert.ok(!d.message.includes('struts'), 'the bypassed failure is not a reason of this denial');
});

test('refused: denied even when every image passes (else an unvetted template would be honoured later)', () => {
  const grant = judgeBreakGlass('let me in', { username: 'mallory', groups: ['developers'] }, settings);
  const clean = decideWithBreakGlass(assess(['nginx:1.25.3'], { 'nginx:1.25.3': pass }), enforce, grant);
  assert.equal(clean.allowed, false);
  assert.equal(clean.breakGlass, 'refused');
  assert.equal(
    clean.message,
    `${BREAK_GLASS_MESSAGES.notPermitted}: user "mallory" may not break glass (annotation scangate.io/break-glass); remove the annotation or ask someone allowed by BREAK_GLASS_USERS / BREAK_GLASS_GROUPS`,
  );
  const failing = decideWithBreakGlass(assess(['struts:2.3.12'], { 'struts:2.3.12': fail }), enforce, grant);
  assert.equal(failing.allowed, false);
  assert.ok(failing.message.startsWith(`${BREAK_GLASS_MESSAGES.notPermitted}: user "mallory"`), failing.message);
  assert.ok(failing.message.includes(`. ${MESSAGES.policyFail}: struts:2.3.12`), failing.message);
});

test('warn mode: a refusal still denies (an unvetted annotation must never be stored in a template)', () => {
  const grant = judgeBreakGlass('x', { username: 'mallory', groups: [] }, settings);
  const d = decideWithBreakGlass(assess(['nginx:1.25.3'], { 'nginx:1.25.3': pass }), warn, grant);
  assert.equal(d.allowed, false);
  assert.equal(d.breakGlass, 'refused');
  assert.ok(d.message.startsWith(BREAK_GLASS_MESSAGES.notPermitted));
  // Granted in warn mode: admitted, as warn mode admits anyway.
  const ok = decideWithBreakGlass(assess(['struts:2.3.12'], { 'struts:2.3.12': fail }), warn, judgeBreakGlass('x', { username: 'alice', groups: [] }, settings));
  assert.equal(ok.allowed, true);
  assert.equal(ok.breakGlass, 'admitted');
});

test('no annotation: the decision is exactly decide()', () => {
  const images = assess(['struts:2.3.12'], { 'struts:2.3.12': fail });
  const d = decideWithBreakGlass(images, enforce, { kind: 'none' });
  assert.equal(d.allowed, false);
  assert.equal(d.breakGlass, undefined);
  assert.ok(d.message.startsWith(MESSAGES.policyFail));
});

test('the reason is tenant text: control characters, line separators, zero-width and bidi marks escaped, bounded', () => {
  assert.equal(reasonText('a\u0007b\u001b[31mred'), 'a\\x07b\\x1b[31mred');
  assert.equal(reasonText('x\u2028y\u202ez\u200bw\u2066v'), 'x\\u2028y\\u202ez\\u200bw\\u2066v');
  assert.equal(reasonText('  spaced\t\tout \n now '), 'spaced out \\x0a now');
  const long = reasonText('r'.repeat(1_000_000));
  assert.ok(long.length <= MAX_REASON_LENGTH + 24, String(long.length));
  assert.ok(long.includes('…'));
  // Escapes count towards the bound: a reason made of control characters cannot grow past it.
  assert.ok(reasonText('\u0001'.repeat(10_000)).length <= MAX_REASON_LENGTH + 24);
  const grant = judgeBreakGlass('line1\nFAKE LOG LINE {"level":60}', { username: 'alice', groups: [] }, settings);
  assert.equal(grant.kind, 'granted');
  if (grant.kind === 'granted') assert.ok(!grant.reason.includes('\n'));
});

test('audit annotations: prefix-less keys, verdict and digest per image, break-glass fields, bounded values', () => {
  const a = auditAnnotationsOf({
    decision: 'allowed',
    images: [
      { image: 'nginx:1.25.3', result: 'pass', digest },
      { image: 'struts:2.3.12', result: 'fail', digest },
    ],
    breakGlass: { outcome: 'admitted', user: 'alice', reason: 'INC-42' },
  });
  assert.deepEqual(a, {
    decision: 'allowed',
    images: `nginx:1.25.3=pass@${digest}; struts:2.3.12=fail@${digest}`,
    'break-glass': 'admitted',
    'break-glass-user': 'alice',
    'break-glass-reason': 'INC-42',
  });
  // The API server adds "<webhook name>/": each key must be a qualified name without a prefix of its own.
  for (const key of Object.keys(a)) assert.match(key, /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/);
  const many = auditAnnotationsOf({
    decision: 'denied',
    images: Array.from({ length: 500 }, (_, i) => ({ image: `registry.example/team/app-${i}:1.0.${i}`, result: 'pass', digest })),
  });
  assert.ok((many['images'] ?? '').length <= MAX_IMAGES_ANNOTATION, String(many['images']?.length));
  assert.match(many['images'] ?? '', /; \+\d+ more$/);
  // Images come as display text (escaped once, by safe-text.ts), and are not escaped a second time.
  const hostile = auditAnnotationsOf({ decision: 'denied', images: [{ image: displayImage('a\nb\\'), result: 'invalid-reference' }] });
  assert.equal(hostile['images'], 'a\\x0ab\\=invalid-reference');
});

test('audit annotations: the JSON text holds exactly the escaped texts, whatever a tenant writes, memoised or not', () => {
  const annotator = createAuditAnnotator();
  const nasty = ['q"uote:1', 'back\\slash:1', 'nl\nline:1', 'tab\there:1', '\u2028sep:1', 'lone\ud800:1', '"},"allowed":true,"x":{"', 'x'.repeat(700), '\u001b[31mred:1', 'é:1'];
  for (const round of [1, 2]) {
    for (const image of nasty) {
      const got = auditAnnotationsOf({ decision: 'denied', images: [{ image: displayImage(image), result: 'fail', digest }, { image: 'ok:1', result: 'pass' }] }, annotator);
      const expected = `${displayImage(image)}=fail@${digest}; ok:1=pass`;
      assert.deepEqual(got, { decision: 'denied', images: expected }, `round ${String(round)}: ${JSON.stringify(image)}`);
    }
  }
  // Another verdict for the same image (a rescan) is not answered from the memo.
  assert.equal(auditAnnotationsOf({ decision: 'allowed', images: [{ image: 'ok:1', result: 'pass', digest }] }, annotator)['images'], `ok:1=pass@${digest}`);
  assert.equal(auditAnnotationsOf({ decision: 'denied', images: [{ image: 'ok:1', result: 'fail', digest }] }, annotator)['images'], `ok:1=fail@${digest}`);
  // A break-glass reason with quotes and backslashes stays one well-formed value.
  const glass = auditAnnotationsOf({ decision: 'allowed', images: [], breakGlass: { outcome: 'admitted', user: 'a"b', reason: 'x\\"},"y":"' } }, annotator);
  assert.deepEqual(glass, { decision: 'allowed', 'break-glass': 'admitted', 'break-glass-user': 'a"b', 'break-glass-reason': 'x\\"},"y":"' });
});
