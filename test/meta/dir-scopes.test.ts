// DirScopes over the in-memory key space with a stand-in lease service (the
// layer below, faked inside this unit test only): the rules that keep a
// change acknowledged under a lease from being lost when the lease goes.
import test from 'ava';
import { MemoryKeySpace } from '../../src/keyspace/memory.js';
import type { HeldScope, KeySpace, ScopeRange, ScopeService } from '../../src/keyspace/types.js';
import { DEFAULT_WRITE_BEHIND, DirScopes } from '../../src/meta/dir-scopes.js';
import type { Ino } from '../../src/meta/types.js';

/** Grants every lease at once; counts releases; `trust` can be withdrawn. */
function standIn(): { ks: KeySpace; released: string[]; trust: { ok: boolean } } {
  const released: string[] = [];
  const trust = { ok: true };
  let term = 1;
  const scopes: ScopeService = {
    session: 'me',
    async acquire(range: ScopeRange): Promise<HeldScope> {
      const call = { lease: range.lease, term: ++term, session: 'me' };
      return { call, trusted: () => trust.ok, release: async () => (released.push(range.lease.toString('hex')), true) };
    },
    onRecall() {},
    reachable: () => true,
  };
  const ks: KeySpace = Object.assign(new MemoryKeySpace(), { scopes });
  return { ks, released, trust };
}

const DIR = 42 as Ino;

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

test('a release waits for every queued commit, and nothing can be queued once it has begun', async (t) => {
  const { ks, released } = standIn();
  const dirs = new DirScopes(ks, { ...DEFAULT_WRITE_BEHIND, acquireAfter: 1 });
  t.teardown(() => dirs.close());
  const st = await dirs.forChange(DIR);
  t.truthy(st, 'the lease was taken');
  const gate = deferred();
  let committed = false;
  dirs.queue(st!, Buffer.from('a'), async () => {
    await gate.promise;
    committed = true;
  });
  const releasing = dirs.release(st!);
  t.throws(() => dirs.queue(st!, Buffer.from('b'), async () => {}), { message: /without a usable directory lease/ }, 'a release in progress admits no new commit');
  const after = dirs.holding(DIR).then((held) => ({ held, committed, released: released.length }));
  await new Promise((r) => setImmediate(r));
  t.is(released.length, 0, 'not released while a commit is queued');
  gate.resolve();
  t.deepEqual(await after, { held: null, committed: true, released: 1 }, 'holding() waited for the release, which waited for the commit');
  await releasing;
});

test("commits of one name run in order; a failed commit is reported by the next flush, once", async (t) => {
  const { ks } = standIn();
  const dirs = new DirScopes(ks, { ...DEFAULT_WRITE_BEHIND, acquireAfter: 1 });
  t.teardown(() => dirs.close().catch(() => {}));
  const st = (await dirs.forChange(DIR))!;
  const order: number[] = [];
  const first = deferred();
  dirs.queue(st, Buffer.from('n'), async () => {
    await first.promise;
    order.push(1);
  });
  dirs.queue(st, Buffer.from('n'), async () => {
    order.push(2);
    throw new Error('the node said no');
  });
  dirs.queue(st, Buffer.from('other'), async () => {
    order.push(3);
  });
  first.resolve();
  await t.throwsAsync(dirs.flush(), { message: 'the node said no' });
  t.deepEqual(order.indexOf(1) < order.indexOf(2), true, `one name's commits in order: ${order.join(',')}`);
  t.is(order.length, 3);
  await t.notThrowsAsync(dirs.flush(), 'reported once');
});

test('a lease that stops being trusted takes its queued commits with it: they fail, and the flush says so', async (t) => {
  const { ks, trust } = standIn();
  const dirs = new DirScopes(ks, { ...DEFAULT_WRITE_BEHIND, acquireAfter: 1 });
  t.teardown(() => dirs.close().catch(() => {}));
  const st = (await dirs.forChange(DIR))!;
  const gate = deferred();
  let ran = 0;
  dirs.queue(st, Buffer.from('x'), async () => {
    await gate.promise;
    ran++;
  });
  dirs.queue(st, Buffer.from('x'), async () => {
    ran++;
  });
  trust.ok = false;
  gate.resolve();
  await t.throwsAsync(dirs.flush(), { message: /lease was lost/ });
  t.is(ran, 1, 'the commit queued behind the first was not sent without the lease');
  t.is(await dirs.holding(DIR), null, 'the lease is dropped');
});

test('past maxHeld leases the least recently used idle ones are given back; a used one stays held for idleReleaseMs', async (t) => {
  const { ks, released } = standIn();
  const dirs = new DirScopes(ks, { ...DEFAULT_WRITE_BEHIND, acquireAfter: 1, maxHeld: 2 });
  t.teardown(() => dirs.close());
  const leaseOf = new Map<Ino, string>();
  for (const d of [1, 2, 3, 4] as Ino[]) {
    const st = await dirs.forChange(d);
    t.truthy(st, `the lease of ${d} was taken`);
    leaseOf.set(d, st!.leaseKey.toString('hex'));
    // Used one after another (distinct clock readings, so "least recently used" is well defined).
    await new Promise((r) => setTimeout(r, 5));
  }
  // The check runs every 200 ms and gives back only leases idle for 100 ms: wait for it to have given two back.
  for (let i = 0; i < 500 && released.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
  t.deepEqual(released.sort(), [leaseOf.get(1 as Ino)!, leaseOf.get(2 as Ino)!].sort(), 'the two least recently used went back');
  t.truthy(await dirs.holding(4 as Ino), 'the most recent is still held (idle release is 30 s)');
  t.truthy(await dirs.holding(3 as Ino));
});

test('past maxKnownEntries in all held directories, the least recently used idle ones are given back', async (t) => {
  const { ks, released } = standIn();
  const dirs = new DirScopes(ks, { ...DEFAULT_WRITE_BEHIND, acquireAfter: 1, maxKnownEntries: 3 });
  t.teardown(() => dirs.close());
  const first = await dirs.forChange(1 as Ino);
  for (const n of ['a', 'b']) first!.setKnown(n, null);
  await new Promise((r) => setTimeout(r, 5));
  const second = await dirs.forChange(2 as Ino);
  for (const n of ['c', 'd']) second!.setKnown(n, null);
  for (let i = 0; i < 500 && released.length < 1; i++) await new Promise((r) => setTimeout(r, 20));
  t.deepEqual(released, [first!.leaseKey.toString('hex')], 'four entries known, three allowed: the older directory went back');
  t.truthy(await dirs.holding(2 as Ino));
});
