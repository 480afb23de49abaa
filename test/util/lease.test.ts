// The lease record's codec and the pure rules of scope leases (src/util/lease.ts).
import test from 'ava';
import { ZERO_BALLOT } from '../../src/util/ballot.js';
import { isQfsError } from '../../src/util/errors.js';
import {
  FRESH_LEASE,
  acquireFree,
  bornLease,
  decodeHolder,
  encodeHolder,
  endHolder,
  holderRecordKey,
  newHolder,
  renewHolder,
  renewsItself,
  admitScopeWrite,
  admitSettlingScan,
  decodeLease,
  encodeLease,
  holderTrustMs,
  markSettled,
  releaseLease,
  renewLease,
  settledOf,
  takeOver,
  takeoverWaitMs,
  withoutSettled,
} from '../../src/util/lease.js';
import { decideAccept, decideLearn, decidePrepare, type AcceptorState } from '../../src/util/paxos.js';

const b = (counter: number, proposer = 'p'): { counter: number; proposer: string } => ({ counter, proposer });
const value = (s: string): { kind: 'value'; bytes: Buffer } => ({ kind: 'value', bytes: Buffer.from(s) });

test('a lease record round-trips, held and free; no record reads as a fresh free lease', (t) => {
  for (const l of [FRESH_LEASE, { term: 7, holder: 'm1#3', settled: 5, renewals: 12 }, { term: 8, holder: null, settled: 7, renewals: 0 }]) {
    t.deepEqual(decodeLease(encodeLease(l)), l);
  }
  t.deepEqual(decodeLease(null), FRESH_LEASE);
});

test('a lease renewed through its holder record is record version 2, which version-1 readers refuse; its transitions keep the mark', (t) => {
  const via = { term: 7, holder: 'm1', settled: 5, renewals: 0, viaHolder: true } as const;
  const bytes = encodeLease(via);
  t.is(bytes[0], 2);
  t.deepEqual(decodeLease(bytes), via);
  t.false(renewsItself(via));
  t.true(renewsItself({ term: 7, holder: 'm1', settled: 5, renewals: 0 }));
  t.is(encodeLease({ term: 7, holder: 'm1', settled: 5, renewals: 0 })[0], 1, 'a lease renewed by itself stays version 1');
  t.deepEqual(acquireFree(FRESH_LEASE, 'a', true), { term: 2, holder: 'a', settled: 0, renewals: 0, viaHolder: true });
  t.deepEqual(takeOver(via, via, 'b', true), { term: 8, holder: 'b', settled: 5, renewals: 0, viaHolder: true });
  t.deepEqual(takeOver(via, via, 'b'), { term: 8, holder: 'b', settled: 5, renewals: 0 }, 'an older contender taking over renews by itself');
  t.deepEqual(bornLease('a', true), { ...bornLease('a'), viaHolder: true });
  t.deepEqual(releaseLease(via, 'm1', 7, true), { term: 8, holder: null, settled: 7, renewals: 0 }, 'a free lease is nobody\'s to renew');
});

test('holder records: written once, renewed until ended, ended only from the counter a contender saw unchanged', (t) => {
  const first = newHolder(5000, 0.05);
  t.deepEqual(first, { renewals: 0, ended: false, waitMs: takeoverWaitMs(5000, 0.05) }, 'the record carries how long an observer must wait');
  for (const h of [first, { renewals: 41, ended: false, waitMs: 1 }, { renewals: 3, ended: true, waitMs: 5250 }]) t.deepEqual(decodeHolder(encodeHolder(h)), h);
  t.is(decodeHolder(null), null);
  const flip = encodeHolder({ renewals: 1, ended: false, waitMs: 5 });
  flip[9] = 7;
  const negativeWait = encodeHolder({ renewals: 1, ended: false, waitMs: 5 });
  negativeWait.writeDoubleBE(-1, 10);
  for (const bytes of [Buffer.alloc(0), Buffer.alloc(18), flip, negativeWait, Buffer.concat([encodeHolder(first), Buffer.from('x')])]) {
    t.true(isQfsError((() => { try { decodeHolder(bytes); return null; } catch (e) { return e; } })(), 'corrupt'), `rejects ${bytes.toString('hex')}`);
  }
  t.deepEqual(renewHolder(first), { ...first, renewals: 1 });
  t.is(renewHolder(null), null, 'a missing record is never brought back');
  t.is(renewHolder({ renewals: 5, ended: true, waitMs: 1 }), null, 'an ended record is never renewed again');
  t.deepEqual(endHolder({ renewals: 5, ended: false, waitMs: 1 }, 5), { renewals: 5, ended: true, waitMs: 1 });
  t.is(endHolder({ renewals: 6, ended: false, waitMs: 1 }, 5), null, 'a renewal since the contender looked defeats the end');
  t.is(endHolder({ renewals: 5, ended: true, waitMs: 1 }, 5), null, 'already ended: nothing to change');
  t.false(holderRecordKey('a').equals(holderRecordKey('b')));
});

test('malformed lease bytes are corrupt, not a lease', (t) => {
  const good = encodeLease({ term: 3, holder: 'm', settled: 1, renewals: 0 });
  const bad = [Buffer.alloc(0), Buffer.from('hello'), Buffer.concat([good, Buffer.from('x')]), good.subarray(0, good.length - 1)];
  const wrongVersion = Buffer.from(good);
  wrongVersion[0] = 9;
  const settledAboveTerm = encodeLease({ term: 3, holder: null, settled: 1, renewals: 0 });
  settledAboveTerm.writeDoubleBE(4, 9);
  for (const bytes of [...bad, wrongVersion, settledAboveTerm]) {
    t.true(isQfsError((() => { try { decodeLease(bytes); return null; } catch (e) { return e; } })(), 'corrupt'), `rejects ${bytes.toString('hex')}`);
  }
  t.throws(() => encodeLease({ term: 1, holder: 'x'.repeat(65), settled: 0, renewals: 0 }));
});

test('transitions: acquire only free, renew and release only by the holder at its term, takeover only from the observed record', (t) => {
  t.deepEqual(FRESH_LEASE, { term: 1, holder: null, settled: 0, renewals: 0 }, 'a scope never written is free at term 1 (its free writes are settled by the first holder)');
  const held = acquireFree({ term: 0, holder: null, settled: 0, renewals: 0 }, 'a')!;
  t.deepEqual(held, { term: 1, holder: 'a', settled: 0, renewals: 0 });
  t.is(acquireFree(held, 'b'), null);
  t.deepEqual(renewLease(held, 'a', 1), { ...held, renewals: 1 });
  t.is(renewLease(held, 'b', 1), null);
  t.is(renewLease(held, 'a', 2), null);
  t.deepEqual(releaseLease(held, 'a', 1, true), { term: 2, holder: null, settled: 1, renewals: 0 });
  t.deepEqual(releaseLease(held, 'a', 1, false), { term: 2, holder: null, settled: 0, renewals: 0 });
  t.is(releaseLease(held, 'b', 1, true), null);
  const renewed = renewLease(held, 'a', 1)!;
  t.is(takeOver(renewed, held, 'b'), null, 'a renewal since the observation defeats the takeover');
  t.deepEqual(takeOver(held, held, 'b'), { term: 2, holder: 'b', settled: 0, renewals: 0 });
  t.is(takeOver(FRESH_LEASE, FRESH_LEASE, 'b'), null, 'a free lease is acquired, not taken over');
  const b2 = takeOver(held, held, 'b')!;
  t.deepEqual(markSettled(b2, 'b', 2, 1), { ...b2, settled: 1 });
  t.is(markSettled(b2, 'b', 2, 2), null, 'a holder cannot settle its own term');
  t.is(markSettled(b2, 'a', 2, 1), null);
});

test('the clock rule: a holder stops trusting before a contender may take over, whatever the rates within the drift', (t) => {
  const period = 200;
  const drift = 0.05;
  for (const holderRate of [1 - drift, 1, 1 + drift]) {
    for (const contenderRate of [1 - drift, 1, 1 + drift]) {
      // Real time of the holder's last trusted instant, renewal sent at real 0;
      // the contender saw it chosen at real 0 at the earliest.
      const holderStops = holderTrustMs(period, drift) / holderRate;
      const contenderStarts = takeoverWaitMs(period, drift) / contenderRate;
      t.true(holderStops <= period && contenderStarts >= period, `rates ${holderRate} / ${contenderRate}`);
    }
  }
});

test('admission: a scope write must carry the lease term, and a held lease admits only its holder', (t) => {
  const held = { term: 4, holder: 'a', settled: 2, renewals: 3 };
  t.is(admitScopeWrite(held, { term: 4, session: 'a' }), 'ok');
  t.is(admitScopeWrite(held, { term: 3, session: 'a' }), 'fenced', 'an older term is fenced');
  t.is(admitScopeWrite(held, { term: 4, session: 'b' }), 'fenced', 'another session is fenced');
  t.is(admitScopeWrite(held, { term: 5, session: 'a' }), 'fenced', 'a term this acceptor has not seen is refused too');
  const free = { term: 5, holder: null, settled: 4, renewals: 0 };
  t.is(admitScopeWrite(free, { term: 5, session: 'anyone' }), 'ok');
  t.is(admitScopeWrite(free, { term: 4, session: 'a' }), 'fenced');
  t.is(admitSettlingScan(held, { term: 4, session: 'a' }), 'ok');
  t.is(admitSettlingScan(held, { term: 3, session: 'a' }), 'fenced');
  t.is(admitSettlingScan(free, { term: 5, session: 'a' }), 'fenced');
});

test('tags: an accept under a term tags the value, a prepare keeps the tag, learn drops it only at the same ballot', (t) => {
  const empty: AcceptorState = { promised: ZERO_BALLOT, accepted: ZERO_BALLOT, value: { kind: 'empty' } };
  const accepted = decideAccept(empty, b(1), value('x'), true, undefined, 7)!;
  t.is(accepted.tag, 7);
  t.false('tag' in decideAccept(empty, b(1), value('x'), true)!, 'an accept outside a scope has no tag');
  t.is(decidePrepare(accepted, b(5))!.tag, 7);
  t.is(decideLearn(accepted, b(2)), null, 'another ballot: nothing to learn');
  const learned = decideLearn(accepted, b(1))!;
  t.false('tag' in learned);
  t.deepEqual(learned.accepted, b(1));
  t.is(decideLearn(learned, b(1)), null, 'learned already');
});

test('the filter hides values of settled terms and keeps the rest, promises included', (t) => {
  const s = (counter: number, tag?: number, settled?: number): AcceptorState => ({
    promised: b(counter + 1),
    accepted: b(counter),
    value: value(`v${counter}`),
    ...(tag === undefined ? {} : { tag }),
    ...(settled === undefined ? {} : { settled }),
  });
  const states = [s(9, 3, 2), s(5, undefined, 3), s(4, 4, 3)];
  t.is(settledOf(states), 3);
  const seen = withoutSettled(states, settledOf(states));
  t.deepEqual(seen[0]!.accepted, ZERO_BALLOT, 'tag 3 <= settled 3: never accepted');
  t.deepEqual(seen[0]!.promised, b(10), 'its promise still counts');
  t.is(seen[0]!.value.kind, 'empty');
  t.deepEqual(seen[1], states[1]);
  t.deepEqual(seen[2], states[2], 'tag 4 is not settled');
  t.is(settledOf([]), 0);
});
