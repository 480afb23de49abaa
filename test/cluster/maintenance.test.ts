// The key space's maintenance walks and gc's chunk delete over real nodes:
// every record once, in order, across pages and nodes; completeness with
// nodes down; and a chunk younger than the sweep age (or put again) survives.
import test from 'ava';
import { utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { recordKey } from '../../src/keyspace/types.js';
import type { ChunkId } from '../../src/util/ids.js';
import { clusterKeySpace, startCluster } from '../helpers/keyspace.js';
import { FsMeta } from '../../src/meta/fs-meta.js';
import { fsck } from '../../src/meta/fsck.js';
import { gc } from '../../src/meta/gc.js';
import { inodeKey } from '../../src/meta/schema.js';
import { S_IFREG, encodeInode, type Ino, type Inode } from '../../src/meta/types.js';
import { seal } from '../../src/util/envelope.js';

const key = (i: number): Buffer => recordKey(Buffer.from(`grp${i % 13}`), Buffer.from(`key-${String(i).padStart(5, '0')}`));

async function walk(ks: ReturnType<typeof clusterKeySpace>, limit: number): Promise<{ keys: string[]; complete: boolean; values: Map<string, string | null> }> {
  const keys: string[] = [];
  const values = new Map<string, string | null>();
  let complete = true;
  for (let after: Buffer | null = null; ; ) {
    const page: Awaited<ReturnType<typeof ks.listRecords>> = await ks.listRecords(after, limit);
    complete &&= page.complete;
    for (const r of page.records) {
      keys.push(r.key.toString('hex'));
      values.set(r.key.toString('hex'), r.value ? r.value.toString() : null);
    }
    if (!page.next) break;
    after = page.next;
  }
  return { keys, complete, values };
}

test.serial('listRecords: every record once, in key order, across pages; complete with one node down, not with two', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = clusterKeySpace(t, rc, { requestTimeoutMs: 2000 });
  await ks.waitForPeers(5000);
  const n = 700;
  for (let i = 0; i < n; i += 50) await Promise.all(Array.from({ length: 50 }, (_, k) => ks.change(key(i + k), () => Buffer.from(`v${i + k}`))));
  await ks.delete(key(3));
  const expected = Array.from({ length: n }, (_, i) => key(i).toString('hex')).sort();

  const all = await walk(ks, 97);
  t.true(all.complete);
  t.deepEqual(all.keys, expected, 'each key once, sorted, the deleted one as a tombstone');
  t.is(all.values.get(key(3).toString('hex')), null);
  t.is(all.values.get(key(10).toString('hex')), 'v10');

  await rc.nodes.get('n1')!.stop();
  const one = await walk(ks, 97);
  t.true(one.complete, 'one of three down: every chosen value is still on a node asked');
  t.deepEqual(one.keys, expected);

  await rc.nodes.get('n2')!.stop();
  const two = await walk(ks, 97);
  t.false(two.complete, 'two of three down: the walk says it cannot be trusted for deletes');
});

test.serial('sweepChunk deletes only copies older than the age asked; a put of stored bytes restarts their age', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = clusterKeySpace(t, rc, { requestTimeoutMs: 2000 });
  await ks.waitForPeers(5000);
  const bytes = [Buffer.alloc(40_000, 1), Buffer.alloc(50_000, 2)];
  const ids: ChunkId[] = [];
  for (const b of bytes) ids.push(await ks.putChunk(b));
  await new Promise((r) => setTimeout(r, 300)); // the third copy of each is written in the background
  const listed = await ks.listChunks(null, 1);
  t.deepEqual([listed.ids.length, listed.complete], [1, true]);
  const both = await ks.listChunks(null, 10);
  t.deepEqual(both.ids, [...ids].sort());

  t.deepEqual(await ks.sweepChunk(ids[0]!, 3600_000), { bytes: 0, copies: 0 }, 'younger than an hour: kept');
  // Make both chunks look two hours old on every node, then put the second one again.
  const old = new Date(Date.now() - 7200_000);
  for (const n of rc.cluster.nodes) {
    for (const id of ids) await utimes(join(n.dataDir, 'chunks', id.slice(0, 2), id.slice(2, 4), id), old, old);
  }
  await ks.putChunk(bytes[1]!);
  await new Promise((r) => setTimeout(r, 300));
  t.deepEqual(await ks.sweepChunk(ids[1]!, 3600_000), { bytes: 0, copies: 0 }, 'put again just now: kept');
  t.deepEqual(await ks.sweepChunk(ids[0]!, 3600_000), { bytes: 3 * 40_000, copies: 3 }, 'two hours old: gone from all three nodes');
  t.false(await ks.hasChunk(ids[0]!));
  t.deepEqual(await ks.getChunk(ids[1]!), bytes[1]);
  t.deepEqual((await ks.listChunks(null, 10)).ids, [ids[1]]);
});

test.serial('gc buries an orphan inode that only one replica accepted (a create cut off mid-send): fsck after it is clean whichever replicas answer', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = clusterKeySpace(t, rc, { requestTimeoutMs: 2000 });
  await ks.waitForPeers(5000);
  await FsMeta.format(ks, { chunkSize: 1 << 20, replication: 3, force: false, uid: 0, gid: 0 });
  const ino = 987_654 as Ino;
  const old = { sec: 1_000_000, nsec: 0 };
  const inode: Inode = { ino, mode: S_IFREG | 0o644, uid: 0, gid: 0, size: 0, nlink: 1, rdev: 0, atime: old, mtime: old, ctime: old, parent: 0 as Ino, target: null, inline: null, chunks: 0, xattrs: new Map() };
  // The accept reached one acceptor only; the other two never heard of the key.
  const lone = ks.peer('n3')!.client;
  // The key space hands a node the membership only at its first refusal: n3 may not have it yet.
  const membership = (await Promise.all(ks.peers.map((p) => p.client.getMembership()))).find((m) => m !== null);
  t.truthy(membership, 'a node that took the format holds the membership');
  await lone.installMembership(membership!);
  // As a mount does it: a prepare promised by a majority (n2, n3), then the accept, which reached n3 only.
  const ballot = { counter: 7, proposer: '00000000000000cc' };
  const n2 = ks.peer('n2')!.client;
  await n2.installMembership(membership!);
  t.true((await n2.prepare(inodeKey(ino), ballot)).ok);
  t.true((await lone.prepare(inodeKey(ino), ballot)).ok);
  t.true((await lone.accept(inodeKey(ino), ballot, seal(encodeInode(inode), [{ tag: 'cccccccccccccccc', counter: 7 }]))).ok);

  const before = await fsck(ks, { graceMs: 0 });
  t.deepEqual(before.findings.map((f) => `${f.kind} ${f.ino}`), [`orphan-inode ${ino}`], 'the survey sees the lone value');
  const counts = await gc(ks, { graceMs: 0 });
  t.is(counts.orphansReclaimed, 1);
  t.is(counts.failures, 0);
  const after = await fsck(ks, { graceMs: 0 });
  t.deepEqual(after.findings.map((f) => `${f.kind} ${f.ino}`), [], 'the lone value is buried, not just missed by a quick read');
  t.is(await ks.read(inodeKey(ino)), null);
});
