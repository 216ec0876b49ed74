import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createFairShare, peerOf, type Claim } from '../../src/http/fair-share.js';

interface TestClaim extends Claim {
  readonly name: string;
  cutoff: boolean;
  cut: boolean;
}

function claim(peer: string, name: string, cutoff = true): TestClaim {
  const c: TestClaim = {
    peer,
    name,
    cutoff,
    cut: false,
    preemptible: () => c.cutoff,
    preempt: () => {
      c.cut = true;
    },
  };
  return c;
}

test('fair share: within capacity every claim fits and nothing is cut', () => {
  const share = createFairShare<TestClaim>(10);
  const a = claim('10.0.0.1', 'a');
  const b = claim('10.0.0.2', 'b');
  assert.equal(share.take(a, 6), true);
  assert.equal(share.take(b, 4), true);
  assert.equal(share.used, 10);
  assert.equal(share.heldBy('10.0.0.1'), 6);
  assert.equal(a.cut || b.cut, false);
  share.release(a);
  share.release(a);
  assert.equal(share.used, 4);
  assert.equal(share.heldBy('10.0.0.1'), 0);
});

test('fair share: a peer that holds everything is cut for one that holds nothing, largest claim first', () => {
  const cuts: Array<[string, number]> = [];
  const share = createFairShare<TestClaim>(10, (c, amount) => cuts.push([c.name, amount]));
  const small = claim('attacker', 'small');
  const large = claim('attacker', 'large');
  assert.equal(share.take(small, 3), true);
  assert.equal(share.take(large, 7), true);
  const api = claim('apiserver', 'api');
  assert.equal(share.take(api, 5), true);
  assert.deepEqual(cuts, [['large', 7]]);
  assert.equal(large.cut, true);
  assert.equal(small.cut, false);
  assert.equal(share.used, 8);
  assert.equal(share.heldBy('attacker'), 3);
});

test('fair share: a peer never cuts itself, nor one that would then hold no more than it', () => {
  const share = createFairShare<TestClaim>(10);
  const mine = claim('a', 'mine');
  assert.equal(share.take(mine, 8), true);
  assert.equal(share.take(claim('a', 'again'), 5), false, 'the same peer: refused');
  assert.equal(mine.cut, false);
  const other = claim('b', 'other');
  assert.equal(share.take(other, 2), true);
  // b would hold 2 + 6 = 8, a holds 8: not more, so nothing is cut and b is refused.
  assert.equal(share.take(other, 6), false);
  assert.equal(mine.cut, false);
  assert.equal(share.used, 10);
});

test('fair share: claims that may not be cut (being answered) are never cut; refusal cuts nothing', () => {
  const share = createFairShare<TestClaim>(10);
  const answering = claim('a', 'answering', false);
  const uploading = claim('a', 'uploading');
  assert.equal(share.take(answering, 7), true);
  assert.equal(share.take(uploading, 3), true);
  // 6 must be freed; the only cuttable claim holds 3: nothing is cut at all.
  assert.equal(share.take(claim('b', 'big'), 6), false);
  assert.equal(uploading.cut, false);
  // 3 fits by cutting the upload.
  assert.equal(share.take(claim('b', 'fits'), 3), true);
  assert.equal(uploading.cut, true);
  assert.equal(answering.cut, false);
});

test('fair share: room is made from the peers holding the most, across peers', () => {
  const share = createFairShare<TestClaim>(12);
  const a = [claim('a', 'a1'), claim('a', 'a2'), claim('a', 'a3')];
  const b = [claim('b', 'b1'), claim('b', 'b2')];
  for (const c of a) share.take(c, 2);
  for (const c of b) share.take(c, 3);
  // a and b hold 6 each; c asks for 4 (and would then hold 4): one of a's 2 brings a to 4, no more
  // than c, so then one of b's 3.
  assert.equal(share.take(claim('c', 'c'), 4), true);
  assert.deepEqual([...a, ...b].filter((c) => c.cut).map((c) => c.name).sort(), ['a1', 'b1']);
  assert.equal(share.used, 12 - 5 + 4);
});

test('fair share: a connection count (amount 1 each) is shared the same way, up to an equal share', () => {
  const share = createFairShare<TestClaim>(4);
  const held = [claim('attacker', 'c1'), claim('attacker', 'c2'), claim('attacker', 'c3'), claim('attacker', 'c4')];
  for (const c of held) assert.equal(share.take(c, 1), true);
  assert.equal(share.take(claim('attacker', 'c5'), 1), false);
  assert.equal(share.take(claim('apiserver', 'api1'), 1), true);
  assert.equal(held[0]?.cut, true, 'the oldest connection goes first');
  assert.equal(share.take(claim('apiserver', 'api2'), 1), true);
  assert.equal(held[1]?.cut, true);
  // 2 each: a third would leave the API server holding more than the attacker.
  assert.equal(share.take(claim('apiserver', 'api3'), 1), false);
  assert.equal(held[2]?.cut, false);
});

test('peerOf: an IPv4-mapped IPv6 address is the IPv4 peer', () => {
  assert.equal(peerOf({ remoteAddress: '::ffff:10.1.2.3' }), '10.1.2.3');
  assert.equal(peerOf({ remoteAddress: 'fd00::1' }), 'fd00::1');
  assert.equal(peerOf({}), 'unknown');
});
