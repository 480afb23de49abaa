// Which commits written behind a directory lease may wait in the gather window
// (CallOpts.behind, `Peer.acceptBehind`): the inode changes queued on a
// directory's chains, a removed directory's inode, and the commits of one
// directory while another's lease is being given back. Over real node
// processes; the key space is watched (not replaced) to see what each change
// was asked to be.
import test from 'ava';
import { FsMeta } from '../../src/meta/fs-meta.js';
import { ROOT_INO, S_IFDIR, S_IFREG } from '../../src/meta/types.js';
import { direntKey, inodeKey } from '../../src/meta/schema.js';
import type { CallOpts } from '../../src/keyspace/types.js';
import type { ClusterKeySpace } from '../../src/cluster/cluster-keyspace.js';
import { clusterKeySpace, startCluster, type RunningCluster } from '../helpers/keyspace.js';
import type { ExecutionContext } from 'ava';

const FILE = { mode: S_IFREG | 0o644, uid: 0, gid: 0 };
const DIR = { mode: S_IFDIR | 0o755, uid: 0, gid: 0 };
const name = (s: string) => Buffer.from(s);

/** What each change of a key was asked to be: `behind` as the key space saw it when the change was made. */
function watchBehind(ks: ClusterKeySpace): Map<string, CallOpts['behind'][]> {
  const seen = new Map<string, CallOpts['behind'][]>();
  const note = (key: Buffer, opts?: CallOpts) => {
    const k = key.toString('hex');
    seen.set(k, [...(seen.get(k) ?? []), opts?.behind ?? false]);
  };
  const change = ks.change.bind(ks);
  const del = ks.delete.bind(ks);
  ks.change = (key, fn, opts) => {
    note(key, opts);
    return change(key, fn, opts);
  };
  ks.delete = (key, opts) => {
    note(key, opts);
    return del(key, opts);
  };
  return seen;
}

async function mounts(t: ExecutionContext, rc: RunningCluster) {
  // A gather window of ten minutes: what is held stays held until someone waits for it.
  const ka = clusterKeySpace(t, rc, { scopeLeaseMs: 2000, behindGatherMs: 600_000 });
  const kb = clusterKeySpace(t, rc, { scopeLeaseMs: 2000 });
  await Promise.all([ka.waitForPeers(5000), kb.waitForPeers(5000)]);
  const sb = await FsMeta.format(ka, { chunkSize: 1 << 20, replication: 3 });
  const a = new FsMeta(ka, sb, { writeBehind: { enabled: true, acquireAfter: 2, bornLeases: true } });
  const b = new FsMeta(kb, sb, { writeBehind: { enabled: true, acquireAfter: 2, bornLeases: true } });
  t.teardown(() => Promise.allSettled([a.close(), b.close()]));
  return { a, b, ka };
}

const held = (ks: ClusterKeySpace) => ks.peers.reduce((n, p) => n + p.heldBehind, 0);

/** Everything the mount queued is committed (what a close or fsync waits for), and removed directories' leases are given back. */
async function drained(m: FsMeta): Promise<void> {
  await m.flushNames();
  await m.settle();
  await m.dirs.forgotten();
}

/** Waits until `done()` holds, for 10 s at most (the assertion after it says what failed). */
async function until(done: () => boolean): Promise<void> {
  for (const end = Date.now() + 10_000; !done() && Date.now() < end; ) await new Promise((r) => setTimeout(r, 5));
}

test.serial("a new inode's changes and a removed directory's inode are written behind; a regular file's creation is wanted soon, a directory's is not", async (t) => {
  const rc = await startCluster(t, 3);
  const { a, b, ka } = await mounts(t, rc);
  const d = (await a.create(ROOT_INO, name('d'), DIR)).inode.ino;
  await drained(a);
  const seen = watchBehind(ka);
  const f = (await a.create(d, name('f'), FILE)).inode.ino;
  const sub = (await a.create(d, name('sub'), DIR)).inode.ino;
  const sub2 = (await a.create(d, name('sub2'), DIR)).inode.ino;
  const fKey = inodeKey(f).toString('hex');
  const subKey = inodeKey(sub).toString('hex');
  await until(() => seen.has(fKey) && seen.has(subKey));
  t.deepEqual(seen.get(fKey), ['soon'], "a regular file's creation skips the window: its close waits for it");
  t.deepEqual(seen.get(subKey), [true], "a directory's creation waits in the window");
  await drained(a);

  // A change of the new (private) inode: queued on the directory's chain, and held until someone waits.
  await a.changeInode(f, (i) => {
    i.mode = S_IFREG | 0o600;
    i.uid = 7;
  });
  await until(() => held(ka) > 0);
  t.true(held(ka) > 0, 'the inode change waits in the gather window');
  t.deepEqual(seen.get(fKey), ['soon', true]);
  await drained(a); // a flush sends what is held
  t.is(held(ka), 0);

  // A removed directory: its name goes (a flush waits for it), then its inode, behind.
  await a.rmdir(d, name('sub'));
  await a.flushNames();
  await until(() => seen.get(subKey)!.length > 1);
  t.deepEqual(seen.get(subKey), [true, true], "the removed directory's inode is deleted behind its name");
  await until(() => held(ka) > 0);
  t.true(held(ka) > 0, 'the deletion waits in the gather window');
  // settle() (fsyncdir, unmount) sends it.
  await a.settle();
  t.is(held(ka), 0);
  // One made while settle() waits (the inode follows its name, which settle waits for) is not held.
  await a.rmdir(d, name('sub2'));
  await a.settle();
  t.deepEqual(seen.get(inodeKey(sub2).toString('hex')), [true, false], 'a deletion made while settle() waits goes at once');
  t.is(held(ka), 0);

  // Another mount sees all of it.
  const seenByB = await b.getInode(f);
  t.deepEqual([seenByB.mode, seenByB.uid], [S_IFREG | 0o600, 7]);
  t.is(await b.lookup(d, name('sub')), null);
  t.is(await b.lookup(d, name('sub2')), null);
  await t.throwsAsync(() => b.getInode(sub), { message: /ENOENT/ });
  await t.throwsAsync(() => b.getInode(sub2), { message: /ENOENT/ });
});

test.serial("giving one directory's lease back does not make another directory's commits skip the window; a flush does", async (t) => {
  const rc = await startCluster(t, 3);
  const { a, b, ka } = await mounts(t, rc);
  const d1 = (await a.create(ROOT_INO, name('d1'), DIR)).inode.ino;
  const d2 = (await a.create(ROOT_INO, name('d2'), DIR)).inode.ino;
  for (let i = 0; i < 4; i++) await a.create(d1, name(`f${i}`), FILE);
  await a.create(d2, name('g'), FILE);
  await drained(a);
  const seen = watchBehind(ka);
  const removal = (i: number) => direntKey(d1, name(`f${i}`)).toString('hex');
  // d2's lease is being given back (it waits for d2's commits, then learns and releases) while d1 changes.
  await a.unlink(d2, name('g'));
  const release = a.dirs.release(a.dirs.state(d2));
  await Promise.all([0, 1, 2].map((i) => a.unlink(d1, name(`f${i}`))));
  await until(() => [0, 1, 2].every((i) => seen.has(removal(i))));
  await release;
  for (let i = 0; i < 3; i++) t.deepEqual(seen.get(removal(i)), [true], `d1's removal of f${i} waits in the window`);
  await drained(a);

  // A flush waits for every directory: a change made while it waits goes at once.
  await a.create(d1, name('h'), FILE);
  const flushing = a.flushNames();
  await a.unlink(d1, name('f3'));
  await flushing;
  await drained(a);
  t.deepEqual(seen.get(removal(3)), [false], 'a change made while a flush waits is not held');
  t.deepEqual(
    (await b.readdir(d1, null, 100)).entries.map((e) => e.name.toString()),
    ['h'],
    'every change reached the nodes',
  );
  t.is(await b.lookup(d2, name('g')), null);
  t.is(held(ka), 0);
});
