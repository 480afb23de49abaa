// Self-heal's bucket digests kept as records change (src/node/shared-digests.ts
// over the record store's bucket index and accepted-ballot changes): after any
// mix of prepares, accepts, learns, purges and drops, in flight together, the
// digests kept up to date equal digests built afresh from the store; a
// bucket's scan holds exactly the keys of that bucket; a store from before
// buckets gets its index at open.
import test from 'ava';
import { prng } from '../helpers/raw-rpc.js';
import { open as openLmdb } from 'lmdb';
import { RecordStore } from '../../src/store/record-store.js';
import { CHUNK_DIGESTS, RECORD_DIGESTS, SharedDigests } from '../../src/node/shared-digests.js';
import { ChunkStore } from '../../src/store/chunk-store.js';
import { CHUNK_BUCKETS, chunkBucket } from '../../src/util/range-digest.js';
import { randomBytes } from 'node:crypto';
import { chunkIdOf } from '../store/helpers.js';
import { initialMembership, type Membership } from '../../src/util/membership.js';
import { RECORD_BUCKETS, recordBucket } from '../../src/util/range-digest.js';
import { recordKey } from '../../src/util/record-key.js';
import { holdersOfRecord } from '../../src/util/replica-sets.js';
import { silentLogger } from '../../src/util/log.js';
import { ballot, tempDir } from '../store/helpers.js';

const members = (ids: string[], epoch = 1): Membership => ({
  ...initialMembership(
    ids.map((id, i) => ({ id, url: `ws://127.0.0.1:${7400 + i}`, weight: 1, zone: null })),
    3,
  ),
  epoch,
});
const keyOf = (i: number): Buffer => recordKey(Buffer.from(`g${i % 37}`), Buffer.from(`k${i}`));


for (const seed of [1, 2, 3]) {
  test(`digests kept through a random mix of writes in flight together equal digests built afresh (seed ${seed})`, async (t) => {
    const store = await RecordStore.open(await tempDir(t), silentLogger());
    t.teardown(() => store.close());
    const m = members(['n1', 'n2', 'n3', 'n4']);
    const kept = new SharedDigests(store, RECORD_DIGESTS, 'n1', () => m);
    const peers = ['n2', 'n3', 'n4'];
    for (const p of peers) await kept.forPeer(p); // built now, on an empty store; kept from here on
    const random = prng(seed);
    const counters = new Map<number, number>();
    const inFlight: Array<Promise<unknown>> = [];
    for (let op = 0; op < 3000; op++) {
      const i = Math.floor(random() * 300);
      const key = keyOf(i);
      const next = (counters.get(i) ?? 0) + 1 + Math.floor(random() * 2);
      counters.set(i, next);
      const b = ballot(next, random() < 0.5 ? '00000000000000aa' : '00000000000000bb');
      const r = random();
      if (r < 0.25) inFlight.push(store.prepare(key, b));
      else if (r < 0.8) inFlight.push(store.accept(key, b, random() < 0.1 ? { kind: 'tombstone', bytes: Buffer.alloc(0) } : { kind: 'value', bytes: Buffer.from(`v${op}`) }, random() < 0.5));
      else if (r < 0.9) inFlight.push(store.learn(key, ballot(counters.get(i)!, '00000000000000aa')));
      else if (r < 0.95) inFlight.push(store.drop(key));
      else inFlight.push(store.purge(key, ballot(counters.get(i)!, '00000000000000aa')));
      if (inFlight.length >= 40) await Promise.all(inFlight.splice(0));
    }
    await Promise.all(inFlight);
    const keptNow = await Promise.all(peers.map((p) => kept.forPeer(p)));
    t.is(kept.builds, 1, 'kept, never rebuilt');
    const fresh = new SharedDigests(store, RECORD_DIGESTS, 'n1', () => m);
    let held = 0;
    for (const [n, p] of peers.entries()) {
      const f = await fresh.forPeer(p);
      t.true(keptNow[n]!.xor.equals(f.xor), `digests for ${p}`);
      t.deepEqual([...keptNow[n]!.counts], [...f.counts], `counts for ${p}`);
      held += f.counts.reduce((a, c) => a + c, 0);
    }
    t.true(held > 100, `the digests cover many keys (${held})`);
  });
}

test("a bucket's scan holds exactly the keys of that bucket with a value, in key order; a purge or drop takes a key out", async (t) => {
  const store = await RecordStore.open(await tempDir(t), silentLogger());
  t.teardown(() => store.close());
  for (let i = 0; i < 500; i++) await store.accept(keyOf(i), ballot(1), { kind: 'value', bytes: Buffer.from(`v${i}`) });
  await store.prepare(keyOf(500), ballot(1)); // a promise only: indexed, never listed
  t.true(await store.drop(keyOf(7)));
  await store.accept(keyOf(8), ballot(2), { kind: 'tombstone', bytes: Buffer.alloc(0) });
  t.true(await store.purge(keyOf(8), ballot(2)));
  const want = new Map<number, string[]>();
  for (let i = 0; i < 500; i++) {
    if (i === 7 || i === 8) continue;
    const k = keyOf(i);
    const b = recordBucket(k);
    want.set(b, [...(want.get(b) ?? []), k.toString('hex')]);
  }
  let seen = 0;
  for (let b = 0; b < RECORD_BUCKETS; b++) {
    const got: string[] = [];
    let start: Buffer = Buffer.alloc(0);
    for (;;) {
      const page = store.scanBucket(b, start, 3);
      got.push(...page.entries.map((e) => e.key.toString('hex')));
      if (!page.next) break;
      start = page.next;
    }
    seen += got.length;
    t.deepEqual(got, (want.get(b) ?? []).sort(), `bucket ${b}`);
  }
  t.is(seen, 498);
  t.throws(() => store.scanBucket(RECORD_BUCKETS, Buffer.alloc(0), 10), { message: /bucket/ });
});

test('a store from before buckets gets its bucket index when it is opened', async (t) => {
  const dir = await tempDir(t);
  {
    const store = await RecordStore.open(dir, silentLogger());
    for (let i = 0; i < 200; i++) await store.accept(keyOf(i), ballot(1), { kind: 'value', bytes: Buffer.from(`v${i}`) });
    await store.close();
  }
  {
    // As a store written before buckets: no index entries, no mark.
    const env = openLmdb({ path: dir, maxDbs: 4 });
    const meta = env.openDB<Buffer, string>({ name: 'meta', encoding: 'binary' });
    const buckets = env.openDB<Buffer, Buffer>({ name: 'buckets', keyEncoding: 'binary', encoding: 'binary' });
    await buckets.clearAsync();
    await meta.remove('bucket-index');
    await env.close();
  }
  const store = await RecordStore.open(dir, silentLogger());
  t.teardown(() => store.close());
  let found = 0;
  for (let b = 0; b < RECORD_BUCKETS; b++) found += store.scanBucket(b, Buffer.alloc(0), 1000).entries.length;
  t.is(found, 200);
});

test('under a new membership the digests are built again with its placement', async (t) => {
  const store = await RecordStore.open(await tempDir(t), silentLogger());
  t.teardown(() => store.close());
  for (let i = 0; i < 300; i++) await store.accept(keyOf(i), ballot(1), { kind: 'value', bytes: Buffer.from(`v${i}`) });
  let m = members(['n1', 'n2', 'n3']);
  const digests = new SharedDigests(store, RECORD_DIGESTS, 'n1', () => m);
  t.is((await digests.forPeer('n2')).counts.reduce((a, c) => a + c, 0), 300, 'three nodes, R=3: n1 and n2 share every key');
  t.is((await digests.forPeer('n5')).counts.reduce((a, c) => a + c, 0), 0, 'nothing with a node outside the membership');
  m = members(['n1', 'n2', 'n3', 'n4', 'n5'], 2);
  const shared = Array.from({ length: 300 }, (_, i) => holdersOfRecord(m, keyOf(i))).filter((h) => h.includes('n1') && h.includes('n5')).length;
  t.is((await digests.forPeer('n5')).counts.reduce((a, c) => a + c, 0), shared);
  t.is(digests.builds, 2);
});

test('chunk digests kept through puts, deletes and sweeps equal digests built afresh, also after a reopen; a bucket lists exactly its ids', async (t) => {
  const dir = await tempDir(t);
  const m = members(['n1', 'n2', 'n3', 'n4']);
  const store = await ChunkStore.open(dir, silentLogger());
  const kept = new SharedDigests(store, CHUNK_DIGESTS, 'n1', () => m);
  for (const p of ['n2', 'n3', 'n4']) await kept.forPeer(p);
  const ids: string[] = [];
  for (let i = 0; i < 120; i++) {
    const bytes = randomBytes(100 + i);
    const id = chunkIdOf(bytes);
    await store.put(id, bytes);
    await store.put(id, bytes); // a second put of the same chunk changes nothing
    ids.push(id);
  }
  for (const id of ids.slice(0, 30)) t.true(await store.delete(id as never));
  for (const id of ids.slice(30, 40)) t.true((await store.sweep(id as never, 0)) > 0);
  const fresh = new SharedDigests(store, CHUNK_DIGESTS, 'n1', () => m);
  let held = 0;
  const snapshot = await Promise.all(['n2', 'n3', 'n4'].map(async (p) => {
    const k = await kept.forPeer(p);
    return { xor: Buffer.from(k.xor), counts: [...k.counts] };
  }));
  for (const [i, p] of ['n2', 'n3', 'n4'].entries()) {
    const f = await fresh.forPeer(p);
    t.true(snapshot[i]!.xor.equals(f.xor), `digests for ${p}`);
    t.deepEqual(snapshot[i]!.counts, [...f.counts], `counts for ${p}`);
    held += f.counts.reduce((a, c) => a + c, 0);
  }
  t.true(held > 0);
  t.is(kept.builds, 1);
  const left = ids.slice(40);
  let listed = 0;
  for (let b = 0; b < CHUNK_BUCKETS; b++) {
    const got = await store.listBucket(b, null, 1000);
    t.deepEqual(got, left.filter((id) => chunkBucket(Buffer.from(id, 'hex')) === b).sort(), `bucket ${b}`);
    listed += got.length;
  }
  t.is(listed, 80);
  await store.close();
  // The ids are found again when the store opens.
  const reopened = await ChunkStore.open(dir, silentLogger());
  t.teardown(() => reopened.close());
  const again = new SharedDigests(reopened, CHUNK_DIGESTS, 'n1', () => m);
  for (const [i, p] of ['n2', 'n3', 'n4'].entries()) t.true((await again.forPeer(p)).xor.equals(snapshot[i]!.xor), `after a reopen, digests for ${p}`);
});

test('digests built over several turns while accepts, drops and promises land meanwhile equal digests built afresh after', async (t) => {
  const store = await RecordStore.open(await tempDir(t), silentLogger());
  t.teardown(() => store.close());
  const m = members(['n1', 'n2', 'n3', 'n4']);
  // Enough keys for the walk to take several turns (2 000 a turn).
  for (let i = 0; i < 9000; i += 500) {
    await Promise.all(Array.from({ length: 500 }, (_, j) => store.accept(keyOf(i + j), ballot(1), { kind: 'value', bytes: Buffer.from(`v${i + j}`) })));
  }
  const kept = new SharedDigests(store, RECORD_DIGESTS, 'n1', () => m);
  const building = kept.forPeer('n2'); // the walk starts now and goes on over the next turns
  const random = prng(7);
  const writes: Array<Promise<unknown>> = [];
  let turnsDuring = 0;
  let built = false;
  void building.then(() => (built = true));
  for (let round = 0; round < 40 && !built; round++) {
    for (let j = 0; j < 50; j++) {
      const i = Math.floor(random() * 9500); // some keys the walk has passed, some it has not, some new
      const r = random();
      if (r < 0.7) writes.push(store.accept(keyOf(i), ballot(2 + round), { kind: 'value', bytes: Buffer.from(`w${round}`) }));
      else if (r < 0.85) writes.push(store.drop(keyOf(i)));
      else writes.push(store.prepare(keyOf(i), ballot(2 + round)));
    }
    turnsDuring++;
    await new Promise((r) => setImmediate(r));
  }
  await building;
  await Promise.all(writes);
  t.true(turnsDuring >= 2, `writes landed over ${turnsDuring} turns of the build`);
  const fresh = new SharedDigests(store, RECORD_DIGESTS, 'n1', () => m);
  for (const p of ['n2', 'n3', 'n4']) {
    const [k, f] = [await kept.forPeer(p), await fresh.forPeer(p)];
    t.true(k.xor.equals(f.xor), `digests for ${p}`);
    t.deepEqual([...k.counts], [...f.counts], `counts for ${p}`);
  }
  t.is(kept.builds, 1);
});
