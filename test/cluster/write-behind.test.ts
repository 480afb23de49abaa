// Directory leases and name changes written behind (src/meta/dir-scopes.ts),
// over real node processes: two FsMeta instances stand for two mounts.
import test from 'ava';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { FsMeta } from '../../src/meta/fs-meta.js';
import { FsError } from '../../src/meta/errors.js';
import { ROOT_INO, S_IFDIR, S_IFREG, type Ino } from '../../src/meta/types.js';
import { readLease } from '../../src/cluster/scope-lease.js';
import { dirLeaseKey } from '../../src/meta/schema.js';
import { decodeHolder, holderRecordKey } from '../../src/util/lease.js';
import { clusterKeySpace, startCluster, type RunningCluster } from '../helpers/keyspace.js';
import type { ExecutionContext } from 'ava';

const WORKER = fileURLToPath(new URL('./write-behind-worker.js', import.meta.url));
const FILE = { mode: S_IFREG | 0o644, uid: 0, gid: 0 };
const DIR = { mode: S_IFDIR | 0o755, uid: 0, gid: 0 };
const name = (s: string) => Buffer.from(s);

async function mounts(t: ExecutionContext, rc: RunningCluster, writeBehind: [boolean, boolean], bornLeases = false) {
  const ka = clusterKeySpace(t, rc, { scopeLeaseMs: 2000 });
  const kb = clusterKeySpace(t, rc, { scopeLeaseMs: 2000 });
  await Promise.all([ka.waitForPeers(5000), kb.waitForPeers(5000)]);
  const sb = await FsMeta.format(ka, { chunkSize: 1 << 20, replication: 3 });
  // A lease after two changes (the default waits for eight), so that small directories are leased here;
  // born leases only where a test asks for them (the others test how a lease is taken).
  const a = new FsMeta(ka, sb, { writeBehind: { enabled: writeBehind[0], acquireAfter: 2, bornLeases } });
  const b = new FsMeta(kb, sb, { writeBehind: { enabled: writeBehind[1], acquireAfter: 2, bornLeases } });
  t.teardown(() => Promise.allSettled([a.close(), b.close()]));
  return { a, b, ka, kb };
}

async function names(m: FsMeta, dir: Ino): Promise<string[]> {
  const out: string[] = [];
  let after: Buffer | null = null;
  for (;;) {
    const page = await m.readdir(dir, after, 7);
    out.push(...page.entries.map((e) => e.name.toString()));
    if (!page.more || page.entries.length === 0) return out;
    after = page.entries[page.entries.length - 1]!.name;
  }
}

test.serial("a busy directory's lease goes to the mount changing it; another mount's listing recalls it and sees every acknowledged change", async (t) => {
  const rc = await startCluster(t, 3);
  const { a, b, ka } = await mounts(t, rc, [true, true]);
  const dir = (await a.create(ROOT_INO, name('d'), DIR)).inode.ino;
  const inos: Ino[] = [];
  for (let i = 0; i < 20; i++) inos.push((await a.create(dir, name(`f${i}`), FILE)).inode.ino);
  for (let i = 0; i < 10; i++) await a.unlink(dir, name(`f${i}`));
  t.true(a.dirs.stats.acquired >= 1, 'the mount took the lease of the directory it kept changing');
  t.true(a.dirs.stats.queued >= 20, `name changes were written behind (${a.dirs.stats.queued})`);
  const lease = await readLease(ka.registers, dirLeaseKey(dir));
  t.is(lease.holder, ka.scopes.session, 'the lease record names the writing mount');
  // The holder read the small directory whole when it took the lease: a missing name and a listing need no read.
  const reads = ka.registers.stats.fastReads + ka.registers.stats.slowReads;
  t.is(await a.lookup(dir, name('missing')), null);
  t.deepEqual((await names(a, dir)).sort(), Array.from({ length: 10 }, (_, i) => `f${i + 10}`).sort());
  t.is(ka.registers.stats.fastReads + ka.registers.stats.slowReads, reads, 'answered from what the holder knows');

  // An inode created under the lease is reached only through it: its changes are written behind too.
  const reads2 = ka.registers.stats.fastReads + ka.registers.stats.slowReads;
  const changed = await a.changeInode(inos[15]!, (i) => {
    i.mode = S_IFREG | 0o600;
    i.uid = 7;
  });
  t.is(changed.mode, S_IFREG | 0o600);
  t.is((await a.getInode(inos[15]!)).uid, 7);
  t.is(ka.registers.stats.fastReads + ka.registers.stats.slowReads, reads2, "the holder answers from its own copy of its new inode");

  // The other mount's listing is refused until the holder has committed and given the lease back.
  const expected = Array.from({ length: 10 }, (_, i) => `f${i + 10}`).sort();
  t.deepEqual((await names(b, dir)).sort(), expected);
  t.true(a.dirs.stats.recalled >= 1, 'the nodes recalled the lease from its holder');
  t.is(await b.lookup(dir, name('f3')), null);
  t.is((await b.lookup(dir, name('f15')))?.ino, inos[15]);
  const seen = await b.getInode(inos[15]!);
  t.deepEqual([seen.mode, seen.uid], [S_IFREG | 0o600, 7], "the holder's change of its new inode was committed before it gave the lease back");

  // The holder's unlinks dropped the link counts after the names (crash order), in the background.
  await a.settle();
  for (let i = 0; i < 10; i++) await t.throwsAsync(a.getInode(inos[i]!), { instanceOf: FsError }, `inode of f${i} is gone`);
  t.is((await b.getInode(inos[12]!)).nlink, 1);

  // Now the first mount changes the directory again: the lease moves back, and b sees that too.
  await a.unlink(dir, name('f10'));
  await a.create(dir, name('g'), FILE);
  t.deepEqual((await names(b, dir)).sort(), [...expected.filter((n) => n !== 'f10'), 'g'].sort());
});

test.serial('a mount writing through (-o sync) takes no lease, and still gets a busy directory from a mount that holds it', async (t) => {
  const rc = await startCluster(t, 3);
  const { a, b } = await mounts(t, rc, [false, true]);
  const dir = (await b.create(ROOT_INO, name('d'), DIR)).inode.ino;
  for (let i = 0; i < 5; i++) await b.create(dir, name(`b${i}`), FILE);
  t.true(b.dirs.stats.acquired >= 1);
  // a's changes wait for b's lease to come back, then go through one by one
  for (let i = 0; i < 5; i++) await a.create(dir, name(`a${i}`), FILE);
  await t.throwsAsync(a.create(dir, name('b2'), FILE), { instanceOf: FsError, message: /EEXIST/ }, "b's acknowledged create is visible to a");
  t.is(a.dirs.stats.queued, 0, 'nothing was written behind');
  t.true(b.dirs.stats.recalled >= 1);
  const all = (await names(b, dir)).sort();
  t.deepEqual(all, ['a0', 'a1', 'a2', 'a3', 'a4', 'b0', 'b1', 'b2', 'b3', 'b4']);
});

test.serial('rmdir under a lease: a directory emptied behind is removed behind; an unempty one is refused', async (t) => {
  const rc = await startCluster(t, 3);
  const { a, b } = await mounts(t, rc, [true, true]);
  const top = (await a.create(ROOT_INO, name('top'), DIR)).inode.ino;
  const sub = (await a.create(top, name('sub'), DIR)).inode.ino;
  for (let i = 0; i < 4; i++) await a.create(sub, name(`x${i}`), FILE);
  await a.create(top, name('other'), FILE);
  await t.throwsAsync(a.rmdir(top, name('sub')), { instanceOf: FsError, message: /ENOTEMPTY/ });
  for (let i = 0; i < 4; i++) await a.unlink(sub, name(`x${i}`));
  await a.rmdir(top, name('sub'));
  t.is(await a.lookup(top, name('sub')), null);
  await a.flushNames();
  t.deepEqual(await names(b, top), ['other']);
  await a.settle();
  await t.throwsAsync(b.getInode(sub), { instanceOf: FsError });
});

test.serial('a mount SIGKILLed right after a flush: the next mount takes the lease over, finds every flushed change, and no name without its inode', async (t) => {
  const rc = await startCluster(t, 3);
  const child = spawn(
    process.execPath,
    [WORKER, JSON.stringify({ clusterName: rc.cluster.name, secret: rc.cluster.secret.toString(), nodes: rc.cluster.nodes.map((n) => ({ id: n.id, url: n.url })), scopeLeaseMs: 1000, dieAfter: 60 })],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  const durable = (): number => Math.max(-1, ...[...out.matchAll(/^durable (\d+)/gm)].map((m) => Number(m[1])));
  const closed = new Promise((r) => child.once('close', r));
  for (let i = 0; i < 1500 && child.exitCode === null && child.signalCode === null; i++) await new Promise((r) => setTimeout(r, 20));
  await closed; // it killed itself right after its last flush (or the test gives up on it here)
  t.true(durable() >= 60, `the worker flushed (${durable()}); stderr: ${err.slice(-500)}`);
  const last = durable();
  const queued = Number(/queued (\d+)/.exec(out.trim().split('\n').pop()!)?.[1] ?? 0);
  t.true(queued > 0, 'the worker wrote names behind');
  const dir = Number(/^dir (\d+)$/m.exec(out)![1]) as Ino;

  const ks = clusterKeySpace(t, rc);
  await ks.waitForPeers(5000);
  const meta = new FsMeta(ks, await FsMeta.load(ks));
  t.teardown(() => meta.close());
  const listed = new Set(await names(meta, dir));
  t.true(meta.dirs.stats.acquired >= 1, "the dead mount's lease was taken over");
  // Through its holder record: the dead mount renewed every lease it held through it, and the takeover ended it.
  const session = /^session (\S+)$/m.exec(out)![1]!;
  const holder = decodeHolder(await ks.read(holderRecordKey(session)));
  t.true(holder !== null && holder.ended, `the dead mount's holder record was ended before its lease was taken over: ${JSON.stringify(holder)}`);
  // Up to the last flush: exactly the names that step left.
  for (let n = 0; n <= last; n++) {
    const unlinked = n % 3 === 1 && n + 1 <= last;
    t.is(listed.has(`f${n}`), !unlinked, `f${n} after the flush of step ${last}`);
  }
  // After it: anything of the unflushed window may be there or not, but every name has its inode.
  for (const nm of listed) {
    const d = await meta.lookup(dir, Buffer.from(nm));
    t.truthy(d);
    await t.notThrowsAsync(meta.getInode(d!.ino), `${nm} names an inode that exists`);
  }
});

test.serial('a lease taken in the middle of a change (another mount held it) knows that change: the new holder lists its own name', async (t) => {
  const rc = await startCluster(t, 3);
  const { a, b } = await mounts(t, rc, [true, true]);
  const dir = (await b.create(ROOT_INO, name('d'), DIR)).inode.ino;
  for (let i = 0; i < 3; i++) await b.create(dir, name(`b${i}`), FILE);
  t.true(b.dirs.stats.acquired >= 1, 'b holds the directory');
  // a's first change there is made through: refused, a takes the lease (reading the directory whole), then creates.
  await a.create(dir, name('a0'), FILE);
  t.true(a.dirs.stats.acquired >= 1, 'a took the lease during its create');
  t.deepEqual((await names(a, dir)).sort(), ['a0', 'b0', 'b1', 'b2']);
  t.truthy(await a.lookup(dir, name('a0')));
});

test.serial("a directory a mount makes is born with its lease held: what is made inside it is written behind from the first, and another mount that finds it recalls the lease and sees every acknowledged change", async (t) => {
  const rc = await startCluster(t, 3);
  const { a, b, ka, kb } = await mounts(t, rc, [true, true], true);
  const top = (await a.create(ROOT_INO, name('top'), DIR)).inode.ino;
  t.is(a.dirs.stats.born, 1, 'the new directory was born leased');
  // Its lease record was chosen before its name: held by the maker, at the term after the fresh one, nothing to settle.
  const lease = await readLease(ka.registers, dirLeaseKey(top));
  t.deepEqual([lease.holder, lease.term, lease.settled], [ka.scopes.session, 2, 1]);
  // Inside it: a subdirectory (born too, its name written behind), files in both, an unlink; no lease is acquired.
  const sub = (await a.create(top, name('sub'), DIR)).inode.ino;
  const inos: Ino[] = [];
  for (let i = 0; i < 3; i++) inos.push((await a.create(sub, name(`s${i}`), FILE)).inode.ino);
  await a.create(top, name('t0'), FILE);
  await a.unlink(sub, name('s1'));
  t.is(a.dirs.stats.born, 2);
  t.is(a.dirs.stats.acquired, 0, 'no lease had to be taken');
  t.true(a.dirs.stats.queued >= 8, `every change was written behind (${a.dirs.stats.queued})`);
  const reads = ka.registers.stats.fastReads + ka.registers.stats.slowReads;
  t.is(await a.lookup(sub, name('missing')), null);
  t.deepEqual((await names(a, sub)).sort(), ['s0', 's2']);
  t.is(ka.registers.stats.fastReads + ka.registers.stats.slowReads, reads, 'a born directory is known whole: no read');

  // The other mount finds the names only through the leases: each is recalled, and what a acknowledged is there.
  t.deepEqual((await names(b, top)).sort(), ['sub', 't0']);
  t.is((await b.lookup(top, name('sub')))?.ino, sub);
  t.deepEqual((await names(b, sub)).sort(), ['s0', 's2']);
  t.is((await b.lookup(sub, name('s2')))?.ino, inos[2]);
  t.true(a.dirs.stats.recalled >= 2, `the nodes recalled both born leases (${a.dirs.stats.recalled})`);
  const after = await readLease(kb.registers, dirLeaseKey(sub));
  t.is(after.holder === ka.scopes.session, false, 'the maker gave the lease of sub back');
  // b can now change it, and a sees b's change (the lease moves as for any directory).
  await b.create(sub, name('fromb'), FILE);
  t.truthy(await a.lookup(sub, name('fromb')));
});

test.serial('a born-leased directory removed by its maker: emptied behind, removed behind, its lease given back; the name is gone for the other mount', async (t) => {
  const rc = await startCluster(t, 3);
  const { a, b, kb } = await mounts(t, rc, [true, true], true);
  const top = (await a.create(ROOT_INO, name('top'), DIR)).inode.ino;
  const sub = (await a.create(top, name('sub'), DIR)).inode.ino;
  await a.create(sub, name('x'), FILE);
  await t.throwsAsync(a.rmdir(top, name('sub')), { instanceOf: FsError, message: /ENOTEMPTY/ });
  await a.unlink(sub, name('x'));
  await a.rmdir(top, name('sub'));
  await a.settle();
  t.deepEqual(await names(b, top), []);
  await t.throwsAsync(b.getInode(sub), { instanceOf: FsError });
  const lease = await readLease(kb.registers, dirLeaseKey(sub));
  t.is(lease.holder, null, "the removed directory's lease was given back");
});

test.serial('without born leases (bornLeases false) a new directory has no lease record until a mount takes one', async (t) => {
  const rc = await startCluster(t, 3);
  const { a, ka } = await mounts(t, rc, [true, true], false);
  const top = (await a.create(ROOT_INO, name('top'), DIR)).inode.ino;
  t.is(a.dirs.stats.born, 0);
  t.is(await ka.registers.read(dirLeaseKey(top)), null);
});

test.serial("a private inode's changes queued behind one another are written as the newest value: a write an earlier one carried is skipped", async (t) => {
  const rc = await startCluster(t, 3);
  const { a, b, ka } = await mounts(t, rc, [true, true], true);
  const dir = (await a.create(ROOT_INO, name('d'), DIR)).inode.ino;
  const ino = (await a.create(dir, name('f'), FILE)).inode.ino;
  await a.settle();
  const changes = (): number => ka.registers.stats.fastChanges + ka.registers.stats.fullRounds;
  const before = changes();
  // tar after close: chown, chmod, utimes, back to back (each returns at once: the inode is private).
  await a.changeInode(ino, (i) => void (i.uid = 7));
  await a.changeInode(ino, (i) => void (i.mode = S_IFREG | 0o600));
  await a.changeInode(ino, (i) => void (i.mtime = { sec: 1234, nsec: 5 }));
  await a.settle();
  const writes = changes() - before;
  t.true(writes >= 1 && writes <= 2, `three changes, ${writes} writes`);
  const seen = await b.getInode(ino);
  t.deepEqual([seen.uid, seen.mode, seen.mtime.sec, seen.mtime.nsec], [7, S_IFREG | 0o600, 1234, 5], 'the other mount sees all three');
});
