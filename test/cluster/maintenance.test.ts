// The key space's maintenance walks and gc's chunk delete over real nodes:
// every record once, in order, across pages and nodes; completeness with
// nodes down; and a chunk younger than the sweep age (or put again) survives.
import test from 'ava';
import { utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { recordKey } from '../../src/keyspace/types.js';
import type { ChunkId } from '../../src/util/ids.js';
import { clusterKeySpace, startCluster } from '../helpers/keyspace.js';

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
