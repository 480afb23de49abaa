// The record store as the acceptor of scope leases (src/util/lease.ts): admission
// by the lease term it holds, tags on accepted values, learn, settled terms in
// answers, settling scans only at the scanner's committed term.
import test, { type ExecutionContext } from 'ava';
import { RecordStore } from '../../src/store/record-store.js';
import { decodeState, encodeState } from '../../src/store/record-codec.js';
import type { AcceptorState, RecordValue } from '../../src/store/types.js';
import { seal } from '../../src/util/envelope.js';
import { isQfsError } from '../../src/util/errors.js';
import { encodeLease, type LeaseRecord } from '../../src/util/lease.js';
import { silentLogger } from '../../src/util/log.js';
import { ballot, tempDir } from './helpers.js';

async function openStore(t: ExecutionContext, dir?: string): Promise<{ store: RecordStore; dir: string }> {
  const d = dir ?? (await tempDir(t));
  const store = await RecordStore.open(d, silentLogger());
  t.teardown(() => store.close());
  return { store, dir: d };
}

const LEASE = Buffer.from('\x01d@lease', 'latin1');
const K = Buffer.from('\x01dk0', 'latin1');
const val = (s: string): RecordValue => ({ kind: 'value', bytes: Buffer.from(s) });
const leaseValue = (l: LeaseRecord): RecordValue => seal(encodeLease(l), []);
let leaseBallot = 1000;
async function setLease(store: RecordStore, l: LeaseRecord): Promise<void> {
  const r = await store.accept(LEASE, ballot(++leaseBallot), leaseValue(l));
  if (!r.ok) throw new Error('lease write refused');
}

test('a tagged state round-trips through the on-disk codec; an untagged one keeps format 3 (1 with a checksum)', (t) => {
  const tagged: AcceptorState = { promised: ballot(3), accepted: ballot(2), value: val('x'), tag: 9 };
  t.deepEqual(decodeState(encodeState(tagged)), tagged);
  const plain: AcceptorState = { promised: ballot(3), accepted: ballot(2), value: val('x') };
  t.is(encodeState(plain)[0], 3);
  t.is(encodeState(tagged)[0], 4);
  t.deepEqual(decodeState(encodeState({ ...tagged, value: { kind: 'empty' } })), { ...tagged, value: { kind: 'empty' } });
  const short = encodeState({ ...tagged, value: { kind: 'empty' } }).subarray(0, 36);
  t.true(isQfsError(t.throws(() => decodeState(short)), 'corrupt'));
  const negative = encodeState(tagged);
  negative.writeDoubleBE(-1, 34);
  t.true(isQfsError(t.throws(() => decodeState(negative)), 'corrupt'));
});

test('scope writes are admitted only at the lease term the node holds, and only from the holder', async (t) => {
  const { store, dir } = await openStore(t);
  // No lease record yet: a fresh, free lease at term 1 (FRESH_LEASE).
  t.true((await store.prepare(K, ballot(1), { lease: LEASE, term: 1, session: 'a' })).ok);
  const fencedEarly = await store.prepare(K, ballot(2), { lease: LEASE, term: 2, session: 'a' });
  t.false(fencedEarly.ok);
  t.true(fencedEarly.fenced);
  await setLease(store, { term: 3, holder: 'a', settled: 1, renewals: 0 });
  const ok = await store.accept(K, ballot(5), val('v'), true, { lease: LEASE, term: 3, session: 'a' });
  t.true(ok.ok);
  t.is(ok.state.tag, 3, 'the value carries the term it was accepted under');
  t.is(ok.state.settled, 1, 'and the answer carries the settled term');
  for (const [term, session] of [
    [2, 'a'],
    [3, 'b'],
    [4, 'a'],
  ] as const) {
    const r = await store.accept(K, ballot(6), val('w'), false, { lease: LEASE, term, session });
    t.false(r.ok, `term ${term} session ${session}`);
    t.true(r.fenced);
    t.is(r.state.value.kind === 'value' && r.state.value.bytes.toString(), 'v');
  }
  // Unscoped calls are not checked (keys outside any scope).
  t.true((await store.prepare(Buffer.from('\x01gother', 'latin1'), ballot(1))).ok);
  // The tag survives a restart.
  await store.close();
  const { store: again } = await openStore(t, dir);
  t.is(again.read(K).tag, 3);
  t.is(again.read(K, { lease: LEASE, term: 3, session: 'a' }).settled, 1);
});

test('learn drops the tag only of the value accepted at that ballot', async (t) => {
  const { store } = await openStore(t);
  await setLease(store, { term: 2, holder: 'a', settled: 0, renewals: 0 });
  const scope = { lease: LEASE, term: 2, session: 'a' };
  t.true((await store.accept(K, ballot(4), val('v'), false, scope)).ok);
  t.false(await store.learn(K, ballot(3)), 'another ballot');
  t.is(store.read(K).tag, 2);
  t.true(await store.learn(K, ballot(4)));
  t.is(store.read(K).tag, undefined);
  t.true(await store.learn(K, ballot(4)), 'learning again says it is learned');
  t.is(store.read(K).value.kind, 'value');
});

test('a settling scan is answered only at the scanner\'s committed term and session, with tags and the settled term', async (t) => {
  const { store } = await openStore(t);
  await setLease(store, { term: 5, holder: 'a', settled: 3, renewals: 0 });
  t.true((await store.accept(K, ballot(9), val('v'), false, { lease: LEASE, term: 5, session: 'a' })).ok);
  const page = store.scan(Buffer.from('\x01dk', 'latin1'), Buffer.from('\x01dl', 'latin1'), 10, { lease: LEASE, term: 5, session: 'a', settling: true });
  t.is(page.entries.length, 1);
  t.is(page.entries[0]!.state.tag, 5);
  t.is(page.settled, 3);
  for (const scope of [
    { lease: LEASE, term: 4, session: 'a', settling: true },
    { lease: LEASE, term: 5, session: 'b', settling: true },
  ]) {
    t.true(isQfsError(t.throws(() => store.scan(Buffer.from('\x01dk', 'latin1'), null, 10, scope)), 'fenced'));
  }
  // A lease key holding something that is not a lease fences every scoped write instead of admitting it.
  t.true((await store.accept(LEASE, ballot(++leaseBallot), val('not a lease'))).ok);
  const r = await store.accept(K, ballot(10), val('w'), false, { lease: LEASE, term: 5, session: 'a' });
  t.true(r.fenced);
});

test('another session\'s reads and scans of a held scope are refused; the holder\'s and anyone\'s of a free one are answered', async (t) => {
  const { store } = await openStore(t);
  await setLease(store, { term: 2, holder: 'a', settled: 1, renewals: 0 });
  t.true((await store.accept(K, ballot(4), val('v'), false, { lease: LEASE, term: 2, session: 'a' })).ok);
  t.is(store.read(K, { lease: LEASE, term: 2, session: 'a' }).tag, 2);
  t.true(isQfsError(t.throws(() => store.read(K, { lease: LEASE, term: 2, session: 'b' })), 'fenced'));
  t.true(isQfsError(t.throws(() => store.scan(Buffer.from('\x01dk', 'latin1'), null, 10, { lease: LEASE, term: 2, session: 'b' })), 'fenced'));
  t.is(store.read(K).value.kind, 'value', 'an unscoped read is not checked');
  await setLease(store, { term: 3, holder: null, settled: 2, renewals: 0 });
  t.is(store.read(K, { lease: LEASE, term: 3, session: 'b' }).settled, 2);
  t.is(store.scan(Buffer.from('\x01dk', 'latin1'), null, 10, { lease: LEASE, term: 3, session: 'b' }).entries.length, 1);
});
