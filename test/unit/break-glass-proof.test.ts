import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { createProofKeeper, MAX_PROOF_LENGTH } from '../../src/policy/break-glass-proof.js';

const DIGEST = `sha256:${'c'.repeat(64)}`;
const subject = { namespace: 'shop', images: ['struts:2.3.12', 'nginx:1.25.3', 'struts:2.3.12'], reason: 'INC-42 checkout down' };

function keeper(now: { t: number }, key = Buffer.alloc(32, 7)) {
  return createProofKeeper({ key, ttlMs: 3_600_000, now: () => now.t });
}

test('a proof holds for its namespace, images (any order, repeats) and reason, until it expires', () => {
  const clock = { t: 1_700_000_000_000 };
  const k = keeper(clock);
  const proof = k.mint(subject, 'alice');
  const ok = k.verify(proof, subject);
  assert.deepEqual(ok, { ok: true, proof: { user: 'alice', expiresAtS: 1_700_003_600, images: ['nginx:1.25.3', 'struts:2.3.12'] } });
  assert.equal(k.verify(proof, { ...subject, images: ['nginx:1.25.3', 'struts:2.3.12'] }).ok, true);
  // A subset of the images (a pod of the same template cannot have fewer, but a person allowed these).
  assert.equal(k.verify(proof, { ...subject, images: ['struts:2.3.12'] }).ok, true);
  // A digest the person did not see: another image of that repository, perhaps (the template is pinned
  // before the proof is written, so its pods carry exactly the proof's texts).
  assert.deepEqual(k.verify(proof, { ...subject, images: [`struts:2.3.12@${DIGEST}`, 'nginx:1.25.3'] }), { ok: false, why: 'images' });
  const pinned = k.mint({ ...subject, images: [`struts:2.3.12@${DIGEST}`] }, 'alice');
  assert.equal(k.verify(pinned, { ...subject, images: [`struts:2.3.12@${DIGEST}`] }).ok, true);
  assert.deepEqual(k.verify(pinned, { ...subject, images: ['struts:2.3.12'] }), { ok: false, why: 'images' });
  clock.t += 3_600_000;
  assert.deepEqual(k.verify(proof, subject), { ok: false, why: 'expired' });
});

test('a proof does not carry over: another namespace, reason, image, or a digest on an image it did not name', () => {
  const clock = { t: 1_700_000_000_000 };
  const k = keeper(clock);
  const proof = k.mint(subject, 'alice');
  assert.deepEqual(k.verify(proof, { ...subject, namespace: 'other' }), { ok: false, why: 'forged' });
  assert.deepEqual(k.verify(proof, { ...subject, reason: 'INC-42 checkout down!' }), { ok: false, why: 'forged' });
  assert.deepEqual(k.verify(proof, { ...subject, images: ['struts:2.3.12', 'evil:1'] }), { ok: false, why: 'images' });
  assert.deepEqual(k.verify(proof, { ...subject, images: [`evil:1@${DIGEST}`] }), { ok: false, why: 'images' });
  // Not a digest in the pinned form, or pinned twice: not the allowed tag resolved.
  assert.deepEqual(k.verify(proof, { ...subject, images: ['struts:2.3.12@latest'] }), { ok: false, why: 'images' });
  assert.deepEqual(k.verify(proof, { ...subject, images: [`struts:2.3.12@${DIGEST}@${DIGEST}`] }), { ok: false, why: 'images' });
});

test('a tenant cannot write one: edited fields, another key, hostile texts', () => {
  const clock = { t: 1_700_000_000_000 };
  const k = keeper(clock);
  const proof = k.mint(subject, 'alice');
  const [v, body, tag] = proof.split('.') as [string, string, string];
  const fields = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as { u: string; e: number; i: string[] };
  const edit = (change: Partial<typeof fields>): string => `${v}.${Buffer.from(JSON.stringify({ ...fields, ...change })).toString('base64url')}.${tag}`;
  assert.deepEqual(k.verify(edit({ e: fields.e + 86_400 }), subject), { ok: false, why: 'forged' }, 'a later expiry');
  assert.deepEqual(k.verify(edit({ u: 'mallory' }), subject), { ok: false, why: 'forged' }, 'another person');
  assert.deepEqual(k.verify(edit({ i: [...fields.i, 'evil:1'] }), { ...subject, images: ['evil:1'] }), { ok: false, why: 'forged' }, 'another image');
  // The same text from another installation's key.
  const other = keeper(clock, randomBytes(32));
  assert.deepEqual(other.verify(proof, subject), { ok: false, why: 'forged' });
  assert.deepEqual(k.verify(other.mint(subject, 'alice'), subject), { ok: false, why: 'forged' });
  for (const text of ['', 'v1', 'v1..', `v1.${body}`, `v2.${body}.${tag}`, `v1.!!!.${tag}`, `v1.${Buffer.from('[1,2]').toString('base64url')}.${tag}`, `v1.${body}.${tag}.x`, 'x'.repeat(MAX_PROOF_LENGTH + 1)]) {
    const check = k.verify(text, subject);
    assert.equal(check.ok, false, JSON.stringify(text.slice(0, 40)));
  }
  const huge = `v1.${Buffer.from(JSON.stringify({ ...fields, i: Array.from({ length: 300 }, (_, n) => `i:${n}`) })).toString('base64url')}.${tag}`;
  assert.deepEqual(k.verify(huge, subject), { ok: false, why: 'malformed' });
});
