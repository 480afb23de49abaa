// Self-heal's range digests (src/util/range-digest.ts): equal pages give equal
// bytes whatever their order; any difference in a shared key shows; keys the
// two nodes do not both hold are left out.
import test from 'ava';
import { RangeDigest, sharedPageDigest } from '../../src/util/range-digest.js';
import { initialMembership } from '../../src/util/membership.js';
import { holdersOfRecord } from '../../src/util/replica-sets.js';
import { recordKey } from '../../src/util/record-key.js';
import type { AcceptorState } from '../../src/util/paxos.js';
import { ZERO_BALLOT } from '../../src/util/ballot.js';

const m = initialMembership(
  ['n1', 'n2', 'n3', 'n4', 'n5'].map((id, i) => ({ id, url: `ws://127.0.0.1:${7400 + i}`, weight: 1, zone: null })),
  3,
);
const state = (counter: number, proposer = '00000000000000aa'): AcceptorState => ({ promised: { counter, proposer }, accepted: { counter, proposer }, value: { kind: 'value', bytes: Buffer.from('v') } });
const keys = Array.from({ length: 200 }, (_, i) => recordKey(Buffer.from(`g${i}`), Buffer.from(`k${i}`))).sort(Buffer.compare);

test('the digest does not depend on the order keys were added in, and changes with any key or ballot', (t) => {
  const a = new RangeDigest();
  const b = new RangeDigest();
  for (const k of keys) a.add(k, { counter: 3, proposer: '00000000000000aa' });
  for (const k of [...keys].reverse()) b.add(k, { counter: 3, proposer: '00000000000000aa' });
  t.true(a.digest().equals(b.digest()));
  const c = new RangeDigest();
  keys.forEach((k, i) => c.add(k, { counter: i === 77 ? 4 : 3, proposer: '00000000000000aa' }));
  t.false(a.digest().equals(c.digest()), 'one ballot differs');
  const d = new RangeDigest();
  keys.forEach((k, i) => d.add(k, i === 77 ? null : { counter: 3, proposer: '00000000000000aa' }));
  t.false(a.digest().equals(d.digest()), 'a lost copy differs from a held one');
  const e = new RangeDigest();
  keys.slice(1).forEach((k) => e.add(k, { counter: 3, proposer: '00000000000000aa' }));
  t.false(a.digest().equals(e.digest()), 'a missing key differs');
  const f = new RangeDigest();
  keys.forEach((k) => f.add(k, { counter: 3, proposer: '00000000000000ab' }));
  t.false(a.digest().equals(f.digest()), 'the same counter from another proposer differs');
});

test('a page digest covers exactly the keys both nodes hold: what the other holds alone, or neither, does not count', (t) => {
  const page = { entries: keys.map((key) => ({ key, state: state(5) })) };
  const shared = keys.filter((k) => holdersOfRecord(m, k).includes('n1') && holdersOfRecord(m, k).includes('n2'));
  t.true(shared.length > 0 && shared.length < keys.length, 'with five nodes and R = 3 some keys are shared, not all');
  const full = sharedPageDigest(m, 'n1', 'n2', page);
  t.is(full.count, shared.length);
  // n2's own page holds only its keys; the shared ones are the same, so the digests agree.
  const n2Page = { entries: keys.filter((k) => holdersOfRecord(m, k).includes('n2')).map((key) => ({ key, state: state(5) })) };
  t.true(sharedPageDigest(m, 'n2', 'n1', n2Page).digest.equals(full.digest));
  // A key n1 holds but n2 does not, changed: still equal. A shared key changed: not.
  const notShared = keys.find((k) => holdersOfRecord(m, k).includes('n1') && !holdersOfRecord(m, k).includes('n2'))!;
  const other = { entries: page.entries.map((e) => (e.key.equals(notShared) ? { key: e.key, state: state(9) } : e)) };
  t.true(sharedPageDigest(m, 'n1', 'n2', other).digest.equals(full.digest));
  const changed = { entries: page.entries.map((e) => (e.key.equals(shared[0]!) ? { key: e.key, state: state(9) } : e)) };
  t.false(sharedPageDigest(m, 'n1', 'n2', changed).digest.equals(full.digest));
  // Copies that accepted nothing (a promise alone) carry nothing: left out on both sides.
  const without = { entries: page.entries.filter((e) => !e.key.equals(shared[0]!)) };
  const promiseOnly = { entries: page.entries.map((e) => (e.key.equals(shared[0]!) ? { key: e.key, state: { promised: { counter: 9, proposer: '00000000000000aa' }, accepted: ZERO_BALLOT, value: { kind: 'empty' as const } } } : e)) };
  t.true(sharedPageDigest(m, 'n1', 'n2', promiseOnly).digest.equals(sharedPageDigest(m, 'n1', 'n2', without).digest));
  // A lost copy of a shared key shows.
  const lost = { entries: page.entries.filter((e) => !e.key.equals(shared[0]!)), lost: [shared[0]!] };
  t.false(sharedPageDigest(m, 'n1', 'n2', lost).digest.equals(full.digest));
});
