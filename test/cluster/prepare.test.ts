// Prepare ahead (Registers.prepare): the first phase of a change run early, so
// that the change itself is one accept, over real node processes.
import test from 'ava';
import { recordKey } from '../../src/keyspace/types.js';
import { FsMeta } from '../../src/meta/fs-meta.js';
import { S_IFDIR, S_IFREG, ROOT_INO, type Ino } from '../../src/meta/types.js';
import { clusterKeySpace, startCluster } from '../helpers/keyspace.js';

const key = (s: string) => recordKey(Buffer.from('prep'), Buffer.from(s));

test.serial('a prepared key changes in one accept; a change by another proposer in between wins over the stale promise', async (t) => {
  const rc = await startCluster(t, 3);
  const a = clusterKeySpace(t, rc);
  const b = clusterKeySpace(t, rc);
  await Promise.all([a.waitForPeers(5000), b.waitForPeers(5000)]);

  // prepare, then change: no full round
  await a.prepare(key('x'));
  t.is(a.registers.stats.prepared, 1);
  const rounds = a.registers.stats.fullRounds;
  await a.change(key('x'), (old) => {
    t.is(old, null);
    return Buffer.from('a1');
  });
  t.is(a.registers.stats.fullRounds, rounds, 'the change after prepare ran no full round');
  t.deepEqual(await b.read(key('x')), Buffer.from('a1'));

  // a prepared key that already holds a value: the change builds on it
  await b.change(key('y'), () => Buffer.from('b1'));
  await a.prepare(key('y'));
  await a.change(key('y'), (old) => Buffer.concat([old ?? Buffer.from('?'), Buffer.from('+a')]));
  t.deepEqual(await b.read(key('y')), Buffer.from('b1+a'));

  // another proposer changes the key after a's prepare: a's accept is refused and
  // its change runs in full on top of b's value (nothing is lost, nothing doubled)
  await a.prepare(key('z'));
  await b.change(key('z'), () => Buffer.from('b'));
  const before = a.registers.stats.fullRounds;
  await a.change(key('z'), (old) => Buffer.concat([old ?? Buffer.from('?'), Buffer.from('+a')]));
  t.true(a.registers.stats.fullRounds > before, 'the stale promise fell back to a full round');
  t.deepEqual(await b.read(key('z')), Buffer.from('b+a'));
  t.deepEqual(await a.read(key('z')), Buffer.from('b+a'));
});

test.serial('prepare with two of three nodes down returns without error, and changes no value', async (t) => {
  const rc = await startCluster(t, 3);
  const a = clusterKeySpace(t, rc, { requestTimeoutMs: 1000 });
  await a.waitForPeers(5000);
  await a.change(key('v'), () => Buffer.from('kept'));
  await Promise.all([rc.nodes.get('n1')!.stop(), rc.nodes.get('n2')!.stop()]);
  const t0 = Date.now();
  await t.notThrowsAsync(a.prepare(key('v')));
  await t.notThrowsAsync(a.prepare(key('w')));
  t.true(Date.now() - t0 < 5000, `prepare gave up after ${Date.now() - t0} ms`);
  await Promise.all([rc.start('n1'), rc.start('n2')]);
  await a.waitForPeers(5000);
  t.deepEqual(await a.read(key('v')), Buffer.from('kept'));
  t.is(await a.read(key('w')), null);
});

test.serial('a create with a prepared inode number and an overlapped dirent prepare runs no full round', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = clusterKeySpace(t, rc);
  await ks.waitForPeers(5000);
  const sb = await FsMeta.format(ks, { chunkSize: 1 << 20, replication: 3 });
  // Writing through (-o sync): names written behind under a lease take another path (test/cluster/write-behind.test.ts).
  const meta = new FsMeta(ks, sb, { writeBehind: { enabled: false } });
  const other = new FsMeta(clusterKeySpace(t, rc), sb, { writeBehind: { enabled: false } });
  const attrs = { mode: S_IFREG | 0o644, uid: 0, gid: 0 };
  // the first create fills the pool of prepared inode numbers
  await meta.create(ROOT_INO, Buffer.from('first'), attrs, true, true);
  const waitForPool = async () => {
    for (let i = 0; i < 200 && meta.preparedInos === 0; i++) await new Promise((r) => setTimeout(r, 10));
    t.true(meta.preparedInos > 0);
  };
  await waitForPool();
  const d = await meta.create(ROOT_INO, Buffer.from('dir'), { ...attrs, mode: S_IFDIR | 0o755 }, true, true);
  await meta.settle();
  const rounds = ks.registers.stats.fullRounds;
  const made: Ino[] = [];
  for (let i = 0; i < 10; i++) {
    await waitForPool();
    made.push((await meta.create(d.inode.ino, Buffer.from(`f${i}`), attrs, true, true)).inode.ino);
  }
  await meta.settle();
  t.is(ks.registers.stats.fullRounds, rounds, 'inode and dirent writes were single accepts');
  // what the other proposer sees: every name, each pointing at its own inode
  for (let i = 0; i < 10; i++) {
    const e = await other.lookup(d.inode.ino, Buffer.from(`f${i}`));
    t.is(e?.ino, made[i]);
    t.is((await other.getInode(made[i]!)).mode, attrs.mode);
  }
  t.is(new Set(made).size, 10);
  // an exclusive create of a taken name still fails, after its dirent was prepared
  await t.throwsAsync(meta.create(d.inode.ino, Buffer.from('f3'), attrs, true, true), { message: /EEXIST/ });
  t.is((await other.lookup(d.inode.ino, Buffer.from('f3')))?.ino, made[3]);
});
