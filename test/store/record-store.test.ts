import test, { type ExecutionContext } from 'ava';
import { RecordStore } from '../../src/store/record-store.js';
import { decodeState, encodeState } from '../../src/store/record-codec.js';
import { MAX_KEY_BYTES, MAX_VALUE_BYTES, type AcceptorState, type RecordValue } from '../../src/store/types.js';
import { compareBallots, formatBallot, maxBallot, ZERO_BALLOT, type Ballot } from '../../src/util/ballot.js';
import { isQfsError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/log.js';
import { ballot, tempDir } from './helpers.js';

async function openStore(t: ExecutionContext, dir?: string): Promise<{ store: RecordStore; dir: string }> {
  const d = dir ?? (await tempDir(t));
  const store = await RecordStore.open(d, silentLogger());
  t.teardown(() => store.close());
  return { store, dir: d };
}

const K = Buffer.from('inode/1');
const val = (s: string): RecordValue => ({ kind: 'value', bytes: Buffer.from(s) });
const TOMBSTONE: RecordValue = { kind: 'tombstone', bytes: Buffer.alloc(0) };

test('state codec round-trips and rejects damage', (t) => {
  const states: AcceptorState[] = [
    { promised: ZERO_BALLOT, accepted: ZERO_BALLOT, value: { kind: 'empty' } },
    { promised: ballot(Number.MAX_SAFE_INTEGER, 'ffffffffffffffff'), accepted: ballot(2 ** 32 + 5), value: TOMBSTONE },
    { promised: ballot(7), accepted: ballot(7), value: val('') },
    { promised: ballot(9), accepted: ballot(8), value: { kind: 'value', bytes: Buffer.from([0, 255, 1]) } },
    { promised: ballot(9), accepted: ballot(9), value: { kind: 'tombstone', bytes: Buffer.from([1, 0]) } },
  ];
  for (const s of states) t.deepEqual(decodeState(encodeState(s)), s);
  const good = encodeState(states[3]!);
  for (const bad of [good.subarray(0, 20), Buffer.concat([Buffer.from([2]), good.subarray(1)]), Buffer.concat([encodeState(states[0]!), Buffer.from([0])])]) {
    t.true(isQfsError(tryCatch(() => decodeState(bad)), 'corrupt'));
  }
  const badTag = Buffer.from(good);
  badTag[33] = 9;
  t.true(isQfsError(tryCatch(() => decodeState(badTag)), 'corrupt'));
});

test('prepare: a lower or equal ballot after a higher one is refused', async (t) => {
  const { store } = await openStore(t);
  t.true((await store.prepare(K, ballot(5))).ok);
  const lower = await store.prepare(K, ballot(4));
  t.false(lower.ok);
  t.deepEqual(lower.state.promised, ballot(5));
  t.false((await store.prepare(K, ballot(5))).ok);
  t.false((await store.prepare(K, ballot(5, '00000000000000a9'))).ok, 'same counter, lower proposer');
  t.true((await store.prepare(K, ballot(5, '00000000000000ab'))).ok, 'same counter, higher proposer');
  t.deepEqual(store.read(K).promised, ballot(5, '00000000000000ab'));
});

test('accept after a promise; below the promise refused; equal ballot is an idempotent retry', async (t) => {
  const { store } = await openStore(t);
  t.true((await store.prepare(K, ballot(3))).ok);
  const refused = await store.accept(K, ballot(2), val('old'));
  t.false(refused.ok);
  t.is(refused.state.value.kind, 'empty');
  const a = await store.accept(K, ballot(3), val('v3'));
  t.true(a.ok);
  t.deepEqual(a.state, { promised: ballot(3), accepted: ballot(3), value: val('v3') });
  const again = await store.accept(K, ballot(3), val('v3'));
  t.true(again.ok);
  t.deepEqual(store.read(K), a.state);
  // accept without a prepare raises the promise too
  const b = await store.accept(K, ballot(6), val('v6'));
  t.true(b.ok);
  t.deepEqual(b.state.promised, ballot(6));
  t.false((await store.prepare(K, ballot(6))).ok, 'prepare must beat the accepted ballot');
  t.false((await store.accept(K, ballot(5), val('late'))).ok);
  t.deepEqual(store.read(K).value, val('v6'));
});

test('prepare returns the accepted value', async (t) => {
  const { store } = await openStore(t);
  await store.accept(K, ballot(1), val('hello'));
  const p = await store.prepare(K, ballot(2));
  t.true(p.ok);
  t.deepEqual(p.state, { promised: ballot(2), accepted: ballot(1), value: val('hello') });
});

test('state survives close and reopen; count reports stored keys', async (t) => {
  const dir = await tempDir(t);
  const first = await RecordStore.open(dir, silentLogger());
  await first.accept(K, ballot(4), val('persisted'));
  await first.prepare(Buffer.from('other'), ballot(9));
  t.is(first.count(), 2);
  await first.close();
  await first.close(); // idempotent
  t.true(isQfsError(await first.prepare(K, ballot(10)).catch((e: unknown) => e), 'closed'));
  t.true(isQfsError(tryCatch(() => first.read(K)), 'closed'));
  const { store } = await openStore(t, dir);
  t.deepEqual(store.read(K), { promised: ballot(4), accepted: ballot(4), value: val('persisted') });
  t.deepEqual(store.read(Buffer.from('other')).promised, ballot(9));
  t.is(store.count(), 2);
  t.false((await store.accept(K, ballot(3), val('stale'))).ok);
});

test('drop: a copy the membership no longer places here is forgotten, the floor keeps its promises, also after reopen', async (t) => {
  const { store, dir } = await openStore(t);
  const other = Buffer.from('other-key');
  await store.accept(K, ballot(5), val('moved away'));
  t.true((await store.prepare(K, ballot(9))).ok);
  await store.accept(other, ballot(3), val('stays'));
  t.true(await store.drop(K));
  t.false(await store.drop(K), 'already gone');
  t.false(await store.drop(Buffer.from('never-written')));
  const after = store.read(K);
  t.is(after.value.kind, 'empty');
  t.deepEqual(after.promised, ballot(9), 'an absent key reads promised = floor: the dropped promise still holds');
  t.false((await store.accept(K, ballot(8), val('late'))).ok, 'an old proposer cannot write it here');
  t.is(store.read(other).value.kind, 'value', 'other keys stay');
  t.is(store.count(), 1);
  await store.close();
  const { store: reopened } = await openStore(t, dir);
  t.is(reopened.read(K).value.kind, 'empty');
  t.false((await reopened.prepare(K, ballot(9))).ok);
  t.true((await reopened.prepare(K, ballot(10))).ok);
});

test('purge: only the exact tombstone ballot; afterwards the floor refuses old ballots, also after reopen', async (t) => {
  const { store, dir } = await openStore(t);
  await store.accept(K, ballot(5), val('alive'));
  t.false(await store.purge(K, ballot(5)), 'not a tombstone');
  await store.accept(K, ballot(6), TOMBSTONE);
  t.true((await store.prepare(K, ballot(7))).ok); // promised above the tombstone's ballot
  t.false(await store.purge(K, ballot(5)), 'wrong ballot');
  t.false(await store.purge(K, ballot(7)), 'promised, not accepted');
  t.true(await store.purge(K, ballot(6)));
  t.false(await store.purge(K, ballot(6)), 'already gone');
  const after = store.read(K);
  t.is(after.value.kind, 'empty');
  t.deepEqual(after.accepted, ZERO_BALLOT);
  t.deepEqual(after.promised, ballot(7), 'an absent key reads promised = floor');
  t.deepEqual(store.scan(Buffer.alloc(0), null, 10).entries, []);
  t.is(store.count(), 0);
  t.false((await store.prepare(K, ballot(6))).ok);
  t.false((await store.prepare(K, ballot(7))).ok);
  t.false((await store.accept(K, ballot(6), val('resurrected'))).ok, 'an old proposer cannot write the purged key');
  t.false((await store.prepare(Buffer.from('never-written'), ballot(7))).ok, 'the floor is store-wide');
  await store.close();

  const { store: reopened } = await openStore(t, dir);
  t.deepEqual(reopened.read(K).promised, ballot(7));
  t.false((await reopened.prepare(K, ballot(7))).ok);
  t.false((await reopened.accept(K, ballot(6), val('resurrected'))).ok);
  const higher = await reopened.prepare(K, ballot(8));
  t.true(higher.ok);
  t.is(higher.state.value.kind, 'empty');
});

test('scan: byte order, [start, end), limit and next; promise-only keys skipped, tombstones kept', async (t) => {
  const { store } = await openStore(t);
  const keys = [Buffer.from('a'), Buffer.from([0x61, 0x00]), Buffer.from('ab'), Buffer.from('b'), Buffer.from('c'), Buffer.from([0xff])];
  for (const k of [...keys].reverse()) await store.accept(k, ballot(1), val(k.toString('hex')));
  await store.accept(Buffer.from('b'), ballot(2), TOMBSTONE);
  await store.prepare(Buffer.from('bb'), ballot(3)); // promise only
  await store.accept(Buffer.from('e'), ballot(1), { kind: 'empty' }); // accepted empty: excluded too
  await store.prepare(Buffer.from([0xff, 0x01]), ballot(3)); // promise only, after every value

  const all = store.scan(Buffer.alloc(0), null, 100);
  t.deepEqual(all.entries.map((e) => e.key.toString('hex')), keys.map((k) => k.toString('hex')));
  t.is(all.next, null);
  t.is(all.entries[3]!.state.value.kind, 'tombstone');

  const mid = store.scan(Buffer.from('ab'), Buffer.from('c'), 100);
  t.deepEqual(mid.entries.map((e) => e.key.toString()), ['ab', 'b'], 'end is exclusive, bb is promise-only');
  t.is(mid.next, null);

  const page1 = store.scan(Buffer.from('a'), null, 2);
  t.deepEqual(page1.entries.map((e) => e.key.toString('hex')), ['61', '6100']);
  t.deepEqual(page1.next, Buffer.from('ab'));
  const page2 = store.scan(page1.next!, null, 3);
  t.deepEqual(page2.entries.map((e) => e.key.toString()), ['ab', 'b', 'c']);
  t.deepEqual(page2.next, Buffer.from([0xff]), 'next skips keys without a value');
  const page3 = store.scan(page2.next!, null, 1);
  t.is(page3.entries.length, 1);
  t.is(page3.next, null, 'only a promise-only key remains');
  t.deepEqual(store.scan(Buffer.from('b'), Buffer.from('b'), 10), { entries: [], next: null });
  t.true(isQfsError(tryCatch(() => store.scan(Buffer.alloc(0), null, 0)), 'bad_request'));
});

test('200 concurrent prepares and accepts on one key match a sequential model', async (t) => {
  const { store, dir } = await openStore(t);
  const proposers = ['0000000000000001', '0000000000000002', '00000000000000ff'];
  const ops: Array<{ kind: 'prepare' | 'accept'; b: Ballot }> = [];
  let seed = 12345;
  const rand = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
  for (let i = 0; i < 200; i++) {
    ops.push({ kind: rand(2) ? 'prepare' : 'accept', b: ballot(Math.floor(i / 4) + rand(6), proposers[rand(3)]!) });
  }
  const valueOf = (b: Ballot): RecordValue => val(formatBallot(b));
  // The store decides in call order, so its answers must equal this sequential model's.
  let m: AcceptorState = { promised: ZERO_BALLOT, accepted: ZERO_BALLOT, value: { kind: 'empty' } };
  const expected = ops.map(({ kind, b }) => {
    const ok = kind === 'prepare' ? compareBallots(b, m.promised) > 0 && compareBallots(b, m.accepted) > 0 : compareBallots(b, m.promised) >= 0 && compareBallots(b, m.accepted) >= 0;
    if (ok) m = kind === 'prepare' ? { ...m, promised: b } : { promised: maxBallot(m.promised, b), accepted: b, value: valueOf(b) };
    return { ok, state: m };
  });
  const order: number[] = [];
  const replies = await Promise.all(
    ops.map(({ kind, b }, i) => (kind === 'prepare' ? store.prepare(K, b) : store.accept(K, b, valueOf(b))).then((r) => (order.push(i), r))),
  );
  t.deepEqual(replies, expected);
  t.true(replies.some((r) => r.ok) && replies.some((r) => !r.ok), 'the mix exercises both outcomes');
  const maxOkAccept = ops.filter((o, i) => o.kind === 'accept' && replies[i]!.ok).reduce((a, o) => maxBallot(a, o.b), ZERO_BALLOT);
  t.deepEqual(store.read(K).accepted, maxOkAccept);
  t.deepEqual(store.read(K), m);
  // No reply may come before a write decided earlier is committed.
  const position = new Map(order.map((op, at) => [op, at]));
  const early = replies.flatMap((_, j) => replies.slice(0, j).flatMap((r, i) => (r.ok && position.get(i)! > position.get(j)! ? [[i, j]] : [])));
  t.deepEqual(early, []);
  await store.close();
  const { store: reopened } = await openStore(t, dir);
  t.deepEqual(reopened.read(K), m);
});

test('a refusal does not answer before the earlier write for its key is committed', async (t) => {
  const { store } = await openStore(t);
  const order: string[] = [];
  const accepted = store.accept(K, ballot(5), val('x')).then((r) => order.push(`accept:${r.ok}`));
  const refused = store.prepare(K, ballot(4)).then((r) => order.push(`prepare:${r.ok}`));
  await Promise.all([accepted, refused]);
  t.deepEqual(order, ['accept:true', 'prepare:false']);
});

test('read reports committed state only, never a write still in flight', async (t) => {
  const { store } = await openStore(t);
  await store.accept(K, ballot(1), val('committed'));
  const inFlight = store.accept(K, ballot(2), val('in flight'));
  t.deepEqual(store.read(K).value, val('committed'));
  t.deepEqual(store.scan(K, null, 1).entries[0]?.state.value, val('committed'));
  await inFlight;
  t.deepEqual(store.read(K).value, val('in flight'));
});

test('a failed write rolls back the overlay and the purge floor', async (t) => {
  const { store } = await openStore(t);
  await store.accept(K, ballot(2), val('kept'));
  const internals = store as unknown as { records: { put: unknown }; env: { batch: unknown } };
  const realPut = internals.records.put;
  internals.records.put = () => Promise.reject(new Error('injected failure'));
  const failed = await store.prepare(K, ballot(9)).catch((e: unknown) => e);
  t.true(isQfsError(failed, 'internal'));
  internals.records.put = realPut;
  t.deepEqual(store.read(K).promised, ballot(2));
  t.true((await store.prepare(K, ballot(3))).ok, 'the failed promise of 9 was forgotten');

  await store.accept(K, ballot(4), TOMBSTONE);
  await store.prepare(K, ballot(8));
  const realBatch = internals.env.batch;
  internals.env.batch = () => Promise.reject(new Error('injected failure'));
  t.true(isQfsError(await store.purge(K, ballot(4)).catch((e: unknown) => e), 'internal'));
  internals.env.batch = realBatch;
  t.is(store.read(K).value.kind, 'tombstone');
  t.true((await store.prepare(Buffer.from('fresh'), ballot(5))).ok, 'the floor went back down');
});

test('bad keys, values and ballots are bad_request', async (t) => {
  const { store } = await openStore(t);
  const bad = async (p: () => Promise<unknown>): Promise<boolean> => isQfsError(await p().catch((e: unknown) => e), 'bad_request');
  t.true(await bad(() => store.prepare(Buffer.alloc(0), ballot(1))));
  t.true(await bad(() => store.prepare(Buffer.alloc(MAX_KEY_BYTES + 1, 1), ballot(1))));
  t.true(await bad(() => store.accept(K, ballot(1), { kind: 'value', bytes: Buffer.alloc(MAX_VALUE_BYTES + 1) })));
  t.true(await bad(() => store.accept(K, ballot(1), { kind: 'bogus' } as unknown as RecordValue)));
  t.true(await bad(() => store.prepare(K, { counter: -1, proposer: '00000000000000aa' })));
  t.true(await bad(() => store.prepare(K, { counter: 1, proposer: '00000000000000AA' })));
  t.true(await bad(() => store.prepare(K, { counter: 1.5, proposer: '00000000000000aa' })));
  t.true(await bad(() => store.purge(Buffer.alloc(0), ballot(1))));
  t.true(isQfsError(tryCatch(() => store.read(Buffer.alloc(MAX_KEY_BYTES + 1))), 'bad_request'));
  t.is(store.count(), 0, 'nothing was written');
  // the limits themselves are fine
  const big = Buffer.alloc(MAX_KEY_BYTES, 7);
  t.true((await store.accept(big, ballot(1), { kind: 'value', bytes: Buffer.alloc(MAX_VALUE_BYTES, 3) })).ok);
  const back = store.read(big);
  t.is(back.value.kind === 'value' ? back.value.bytes.length : -1, MAX_VALUE_BYTES);
});

function tryCatch(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

test('accept with promiseNext also promises the proposer next ballot', async (t) => {
  const { RecordStore } = await import('../../src/store/record-store.js');
  const { silentLogger } = await import('../../src/util/log.js');
  const { mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = await mkdtemp(join(tmpdir(), 'qfs-pn-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = await RecordStore.open(dir, silentLogger());
  t.teardown(() => store.close());
  const key = Buffer.from('k');
  const mine = { counter: 5, proposer: '0000000000000001' };
  t.true((await store.accept(key, mine, { kind: 'value', bytes: Buffer.from('a') }, true)).ok);
  t.deepEqual(store.read(key).promised, { counter: 6, proposer: '0000000000000001' });
  // a rival ballot between mine and my next is refused: (5, higher id) < (6, mine)
  t.false((await store.prepare(key, { counter: 5, proposer: 'ffffffffffffffff' })).ok);
  t.false((await store.accept(key, { counter: 5, proposer: 'ffffffffffffffff' }, { kind: 'tombstone', bytes: Buffer.alloc(0) })).ok);
  // my next ballot goes through without a prepare
  t.true((await store.accept(key, { counter: 6, proposer: '0000000000000001' }, { kind: 'value', bytes: Buffer.from('b') }, true)).ok);
  // a rival that prepares higher wins, and my pre-promised next is then refused
  t.true((await store.prepare(key, { counter: 8, proposer: '0000000000000002' })).ok);
  t.false((await store.accept(key, { counter: 7, proposer: '0000000000000001' }, { kind: 'value', bytes: Buffer.from('c') }, true)).ok);
  // without promiseNext the promise is the ballot itself
  const other = Buffer.from('o');
  await store.accept(other, mine, { kind: 'tombstone', bytes: Buffer.alloc(0) });
  t.deepEqual(store.read(other).promised, mine);
});
