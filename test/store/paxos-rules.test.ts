// The acceptor rules as pure functions (util/paxos.ts), over random sequences
// of prepares, accepts and purges: ballots only grow, a refusal changes
// nothing, and an accept at a ballot below a promise never lands.
import test from 'ava';
import { prng } from '../helpers/raw-rpc.js';
import { compareBallots, ZERO_BALLOT, type Ballot } from '../../src/util/ballot.js';
import { decideAccept, decidePrepare, decidePurge, EMPTY_VALUE, type AcceptorState, type RecordValue } from '../../src/util/paxos.js';


const proposers = ['00000000000000aa', '00000000000000bb', '00000000000000cc'];

test('random sequences: promised and accepted only grow; refusals change nothing; promised >= accepted', (t) => {
  for (let seed = 1; seed <= 300; seed++) {
    const r = prng(seed);
    let st: AcceptorState = { promised: ZERO_BALLOT, accepted: ZERO_BALLOT, value: EMPTY_VALUE };
    let floor: Ballot = ZERO_BALLOT;
    for (let step = 0; step < 60; step++) {
      const b: Ballot = { counter: Math.floor(r() * 20), proposer: proposers[Math.floor(r() * 3)]! };
      const before = st;
      const x = r();
      let next: AcceptorState | null;
      if (x < 0.4) {
        next = decidePrepare(st, b);
        if (next) t.true(compareBallots(b, before.promised) > 0 && compareBallots(b, before.accepted) > 0, `seed ${seed}: prepare above both`);
      } else if (x < 0.9) {
        const v: RecordValue = r() < 0.2 ? { kind: 'tombstone', bytes: Buffer.alloc(0) } : { kind: 'value', bytes: Buffer.from([step]) };
        next = decideAccept(st, b, v, r() < 0.5);
        if (next) {
          t.true(compareBallots(b, before.promised) >= 0, `seed ${seed}: accept at or above the promise`);
          t.is(next.value, v);
        } else {
          t.true(compareBallots(b, before.promised) < 0 || compareBallots(b, before.accepted) < 0, `seed ${seed}: refused only below`);
        }
      } else {
        const f = decidePurge(st, st.accepted, floor);
        if (f) {
          t.is(st.value.kind, 'tombstone');
          t.true(compareBallots(f, floor) >= 0 && compareBallots(f, st.promised) >= 0, 'the floor covers the promise');
          floor = f;
          // a purged key reads as promised = floor
          st = { promised: f, accepted: ZERO_BALLOT, value: EMPTY_VALUE };
        }
        continue;
      }
      if (!next) {
        t.is(st, before, 'a refusal changes nothing');
        continue;
      }
      t.true(compareBallots(next.promised, before.promised) >= 0, `seed ${seed}: promised only grows`);
      t.true(compareBallots(next.accepted, before.accepted) >= 0, `seed ${seed}: accepted only grows`);
      t.true(compareBallots(next.promised, next.accepted) >= 0, `seed ${seed}: promised >= accepted`);
      st = next;
    }
  }
});

test('promiseNext promises the same proposer\'s next counter; an equal ballot is a retry', (t) => {
  const b = { counter: 7, proposer: proposers[0]! };
  const v: RecordValue = { kind: 'value', bytes: Buffer.from('x') };
  const s1 = decideAccept({ promised: ZERO_BALLOT, accepted: ZERO_BALLOT, value: EMPTY_VALUE }, b, v, true)!;
  t.deepEqual(s1.promised, { counter: 8, proposer: proposers[0] });
  t.not(decideAccept(s1, { counter: 8, proposer: proposers[0]! }, v, false), null, 'the promised next ballot is taken');
  t.is(decideAccept(s1, { counter: 7, proposer: proposers[1]! }, v, false), null, 'below the promise: refused');
  t.is(decidePrepare(s1, { counter: 8, proposer: proposers[0]! }), null, 'a prepare must exceed the promise');
  const s2 = decideAccept({ promised: b, accepted: ZERO_BALLOT, value: EMPTY_VALUE }, b, v, false)!;
  t.not(decideAccept(s2, b, v, false), null, 'the same accept again');
});
