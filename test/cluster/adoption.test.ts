// When may a retry run a change again after its accept missed a quorum? The
// rule (definitelyNotAdopted) checked case by case: it must never say "not
// adopted" where some later prepare quorum could still pick the value.
import test from 'ava';
import { definitelyNotAdopted } from '../../src/cluster/registers.js';
import type { Ballot } from '../../src/util/ballot.js';
import type { Verdict } from '../../src/rpc/messages.js';

const b = (counter: number, proposer = '00000000000000aa'): Ballot => ({ counter, proposer });
const refusal = (promised: number, accepted: number) => ({ value: { ok: false, state: { promised: b(promised), accepted: b(accepted), value: { kind: 'empty' } } } as Verdict });
const mine = b(10, '00000000000000bb');

test('refused by every acceptor: never adopted, whatever they hold', (t) => {
  t.true(definitelyNotAdopted({ oks: [], rejected: [refusal(11, 0), refusal(11, 0), refusal(12, 3)], errors: [] }, 3, 2, mine));
});

test('a majority holding higher accepted ballots: never adopted, even if one acceptor took it', (t) => {
  t.true(definitelyNotAdopted({ oks: [{}], rejected: [refusal(20, 15), refusal(20, 16)], errors: [] }, 3, 2, mine));
  t.true(definitelyNotAdopted({ oks: [], rejected: [refusal(20, 15), refusal(20, 16)], errors: [] }, 3, 2, mine), 'the third has not answered');
});

test('refusals for promises alone, or fewer than a majority with higher accepted values: uncertain', (t) => {
  t.false(definitelyNotAdopted({ oks: [], rejected: [refusal(20, 5), refusal(20, 6)], errors: [] }, 3, 2, mine), 'promised higher, accepted lower');
  t.false(definitelyNotAdopted({ oks: [], rejected: [refusal(20, 15)], errors: [{}] }, 3, 2, mine), 'one higher, one unknown');
  t.false(definitelyNotAdopted({ oks: [{}], rejected: [refusal(20, 15), refusal(20, 9)], errors: [] }, 3, 2, mine), 'one higher, one lower');
  // an equal counter from another proposer orders by proposer id
  t.false(definitelyNotAdopted({ oks: [], rejected: [refusal(20, 10), refusal(20, 10)], errors: [] }, 3, 2, b(10, '00000000000000ff')));
});
