// When may a retry run a change again after its accept missed a quorum? The
// rule (definitelyNotAdopted) checked case by case: it must never say "not
// adopted" where some later prepare quorum could still pick the value or one
// built on it.
import test from 'ava';
import { definitelyNotAdopted } from '../../src/cluster/registers.js';
import { MAX_ENTRIES, seal, type LineageEntry } from '../../src/util/envelope.js';
import type { Ballot } from '../../src/util/ballot.js';
import type { Verdict } from '../../src/rpc/messages.js';

const b = (counter: number, proposer = '00000000000000aa'): Ballot => ({ counter, proposer });
const MINE = 'aaaaaaaaaaaaaaaa';
const other = (counter: number): LineageEntry => ({ tag: counter.toString(16).padStart(16, '0'), counter });
/** A refusal by an acceptor that promised `promised` and holds a value accepted at `accepted` with `lineage`. */
const refusal = (promised: number, accepted: number, lineage: LineageEntry[] = [other(accepted)]) => ({
  value: { ok: false, state: { promised: b(promised), accepted: b(accepted), value: accepted === 0 ? { kind: 'empty' } : seal(Buffer.from('v'), lineage) } } as Verdict,
});
const mine = b(10, '00000000000000bb');

test('refused by every acceptor: never adopted, whatever they hold', (t) => {
  t.true(definitelyNotAdopted({ oks: [], rejected: [refusal(11, 0), refusal(11, 0), refusal(12, 3)], errors: [] }, 3, 2, mine, MINE));
});

test('a majority holding higher values that provably do not build on ours: never adopted, even if one acceptor took it', (t) => {
  const unrelated = (n: number) => refusal(20, n, [other(4), other(n)]);
  t.true(definitelyNotAdopted({ oks: [{}], rejected: [unrelated(15), unrelated(16)], errors: [] }, 3, 2, mine, MINE));
  t.true(definitelyNotAdopted({ oks: [], rejected: [unrelated(15), unrelated(16)], errors: [] }, 3, 2, mine, MINE), 'the third has not answered');
  const fullWindow = Array.from({ length: MAX_ENTRIES }, (_, i) => other(8 + i)); // 8..13: reaches back before 10
  t.true(definitelyNotAdopted({ oks: [{}], rejected: [refusal(20, 15, fullWindow), refusal(20, 16, fullWindow)], errors: [] }, 3, 2, mine, MINE));
});

test('a higher value that carries our change on (our tag in its lineage) is our change adopted', (t) => {
  // Another proposer prepared on the acceptor that took our value and built on it (simulator seed 1181).
  const adopted = refusal(20, 15, [other(4), { tag: MINE, counter: 10 }, other(15)]);
  t.false(definitelyNotAdopted({ oks: [{}], rejected: [adopted, refusal(20, 16, [other(4), other(16)])], errors: [] }, 3, 2, mine, MINE));
});

test('a higher value whose lineage window starts after our ballot may build on ours: uncertain', (t) => {
  const late = Array.from({ length: MAX_ENTRIES }, (_, i) => other(11 + i)); // 11..16: our entry may have left the window
  t.false(definitelyNotAdopted({ oks: [{}], rejected: [refusal(30, 16, late), refusal(30, 16, late)], errors: [] }, 3, 2, mine, MINE));
});

test('refusals for promises alone, or fewer than a majority with higher accepted values: uncertain', (t) => {
  t.false(definitelyNotAdopted({ oks: [], rejected: [refusal(20, 5), refusal(20, 6)], errors: [] }, 3, 2, mine, MINE), 'promised higher, accepted lower');
  t.false(definitelyNotAdopted({ oks: [], rejected: [refusal(20, 15)], errors: [{}] }, 3, 2, mine, MINE), 'one higher, one unknown');
  t.false(definitelyNotAdopted({ oks: [{}], rejected: [refusal(20, 15), refusal(20, 9)], errors: [] }, 3, 2, mine, MINE), 'one higher, one lower');
  // an equal counter from another proposer orders by proposer id
  t.false(definitelyNotAdopted({ oks: [], rejected: [refusal(20, 10), refusal(20, 10)], errors: [] }, 3, 2, b(10, '00000000000000ff'), MINE));
});
