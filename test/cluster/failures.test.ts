// Failure semantics of the replicated key space over real node processes.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { recordKey } from '../../src/keyspace/types.js';
import { isQfsError } from '../../src/util/errors.js';
import type { ChunkId } from '../../src/util/ids.js';
import { clusterKeySpace, startCluster } from '../helpers/keyspace.js';

const key = (i: number) => recordKey(Buffer.from(`g${i % 7}`), Buffer.from(`k${i}`));
const chunk = (i: number) => Buffer.alloc(50_000 + i, i % 251);

test.serial('one node of three down: every operation succeeds', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = clusterKeySpace(t, rc, { requestTimeoutMs: 2000 });
  await ks.waitForPeers(5000);
  for (let i = 0; i < 20; i++) await ks.change(key(i), () => Buffer.from(`v${i}`));
  await rc.nodes.get('n2')!.stop();
  for (let i = 0; i < 20; i++) t.deepEqual(await ks.read(key(i)), Buffer.from(`v${i}`));
  for (let i = 0; i < 20; i++) await ks.change(key(i), (old) => Buffer.concat([old!, Buffer.from('+')]));
  for (let i = 20; i < 40; i++) await ks.change(key(i), () => Buffer.from(`v${i}`));
  const ids: ChunkId[] = [];
  for (let i = 0; i < 10; i++) ids.push(await ks.putChunk(chunk(i)));
  for (let i = 0; i < 10; i++) t.deepEqual(await ks.getChunk(ids[i]!), chunk(i));
  const page = await ks.scan(Buffer.from('g0'), Buffer.alloc(0), null);
  t.true(page.entries.length >= 5);
  // chunks whose placement included n2 were remembered as missing copies
  t.true([...ks.chunks.hints.values()].every((h) => h.nodeId === 'n2'));
});

test.serial('two of three down: operations fail with unavailable in bounded time, then recover without a restart', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = clusterKeySpace(t, rc, { requestTimeoutMs: 1500 });
  await ks.waitForPeers(5000);
  await ks.change(key(1), () => Buffer.from('before'));
  const id = await ks.putChunk(chunk(1));
  await Promise.all([rc.nodes.get('n1')!.stop(), rc.nodes.get('n3')!.stop()]);
  for (const op of [() => ks.read(key(1)), () => ks.change(key(1), () => Buffer.from('x')), () => ks.putChunk(chunk(2))]) {
    const t0 = Date.now();
    const err = await t.throwsAsync(op());
    t.true(isQfsError(err, 'unavailable') || isQfsError(err, 'timeout'), String(err));
    // bounded by the deadline (plus scheduling slack), never a hang
    t.true(Date.now() - t0 < 1500 * 3, `failed after ${Date.now() - t0} ms`);
  }
  await Promise.all([rc.start('n1'), rc.start('n3')]);
  await ks.waitForPeers(5000);
  // The failed change may have reached the one live node: a write whose outcome
  // was an error may still take effect later (Paxos), but nothing else may appear.
  t.true(['before', 'x'].includes((await ks.read(key(1)))!.toString()));
  await ks.change(key(1), () => Buffer.from('after'));
  t.deepEqual(await ks.read(key(1)), Buffer.from('after'));
  t.deepEqual(await ks.getChunk(id), chunk(1));
});

test.serial('a corrupt copy is detected on read, another replica answers, and the copy is repaired from a hint', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = clusterKeySpace(t, rc);
  await ks.waitForPeers(5000);
  const data = chunk(3);
  const id = await ks.putChunk(data);
  const fileOf = (n: { dataDir: string }): string => join(n.dataDir, 'chunks', id.slice(0, 2), id.slice(2, 4), id);
  // all three copies land (the put returned after W = 2 of them)
  const deadline = Date.now() + 10_000;
  while (!rc.cluster.nodes.every((n) => existsSync(fileOf(n))) && Date.now() < deadline) await new Promise((r) => setImmediate(r));
  t.true(rc.cluster.nodes.every((n) => existsSync(fileOf(n))), 'three copies');
  // flip a byte in every copy but the one a read tries last, so that the first read meets a bad copy
  const keep = ks.chunks.readOrder(id).at(-1)!.id;
  let flipped = 0;
  for (const n of rc.cluster.nodes.filter((m) => m.id !== keep)) {
    const bytes = await readFile(fileOf(n));
    bytes[100] = bytes[100]! ^ 0xff;
    await writeFile(fileOf(n), bytes);
    flipped++;
  }
  t.is(flipped, 2);
  for (let i = 0; i < 5; i++) t.deepEqual(await ks.getChunk(id), data);
  t.true(ks.chunks.stats.corruptCopies >= 1);
  t.true(ks.chunks.hints.size >= 1);
  const reported = new Set([...ks.chunks.hints.values()].map((h) => h.nodeId));
  await ks.chunks.drainHints();
  t.is(ks.chunks.hints.size, 0, JSON.stringify([...ks.chunks.hints.values()]));
  // a copy that was read and found bad is good again (copies never read are scrub's work)
  for (const n of rc.cluster.nodes.filter((x) => reported.has(x.id))) {
    const file = join(n.dataDir, 'chunks', id.slice(0, 2), id.slice(2, 4), id);
    t.deepEqual(await readFile(file), data, `copy on ${n.id} is good again`);
    t.true((await readdir(join(n.dataDir, 'quarantine'))).length >= 1, `bad copy on ${n.id} kept aside`);
  }
});

test.serial('a 4 KiB read moves one 64 KiB block, detects a flipped byte in it, reads another replica, and the copy is healed', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = clusterKeySpace(t, rc);
  await ks.waitForPeers(5000);
  const data = randomBytes(1024 * 1024);
  const id = await ks.putChunk(data);
  const fileOf = (n: { dataDir: string }): string => join(n.dataDir, 'chunks', id.slice(0, 2), id.slice(2, 4), id);
  const deadline = Date.now() + 10_000;
  while (!rc.cluster.nodes.every((n) => existsSync(fileOf(n))) && Date.now() < deadline) await new Promise((r) => setImmediate(r));
  t.true(rc.cluster.nodes.every((n) => existsSync(fileOf(n))), 'three copies');
  // Two of the copies were stored unchecked (ChunkStore.put), so those nodes have no leaf digests
  // yet; a checked put to each gives every node the digests, as the checker got them from its put.
  for (const p of ks.peers) t.is(await p.track((c) => c.putChunk(id, data)), 'exists');
  // a byte inside block 5 of two copies; the third node, with the good copy, is stopped,
  // so that every read meets only bad copies of that block (whatever order it tries)
  const good = rc.cluster.nodes[2]!;
  const bad = rc.cluster.nodes.filter((n) => n.id !== good.id);
  for (const n of bad) {
    const bytes = await readFile(fileOf(n));
    bytes[5 * 65536 + 1234] = bytes[5 * 65536 + 1234]! ^ 0x01;
    await writeFile(fileOf(n), bytes);
  }
  await rc.nodes.get(good.id)!.stop();
  // a read elsewhere in those copies is fine: only the blocks read are checked
  t.deepEqual(await ks.getChunk(id, { offset: 100_000, length: 4096 }), data.subarray(100_000, 104_096));
  t.is(ks.chunks.stats.corruptCopies, 0);
  // a 4 KiB read inside the bad block: both copies are caught, and no wrong byte is returned
  const err = await t.throwsAsync(ks.getChunk(id, { offset: 5 * 65536 + 1000, length: 4096 }));
  t.true(isQfsError(err, 'unavailable'), String(err));
  t.is(ks.chunks.stats.corruptCopies, 2);
  t.deepEqual([...new Set([...ks.chunks.hints.values()].map((h) => h.nodeId))].sort(), bad.map((n) => n.id).sort());
  // the good copy back: the read answers right, and the bad copies are healed from it
  await rc.start(good.id);
  await ks.waitForPeers(5000);
  t.deepEqual(await ks.getChunk(id, { offset: 5 * 65536 + 1000, length: 4096 }), data.subarray(5 * 65536 + 1000, 5 * 65536 + 5096));
  // the end of the chunk, shorter than asked
  t.deepEqual(await ks.getChunk(id, { offset: data.length - 10, length: 4096 }), data.subarray(data.length - 10));
  await ks.chunks.drainHints();
  t.is(ks.chunks.hints.size, 0, JSON.stringify([...ks.chunks.hints.values()]));
  for (const n of bad) t.deepEqual(await readFile(fileOf(n)), data, `the copy on ${n.id} is good again`);
});

test.serial('puts while a node is down are copied to it when it returns', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = clusterKeySpace(t, rc);
  await ks.waitForPeers(5000);
  await rc.nodes.get('n3')!.stop();
  const ids: ChunkId[] = [];
  for (let i = 0; i < 12; i++) ids.push(await ks.putChunk(chunk(i)));
  for (let i = 0; i < 100 && ks.chunks.hints.size === 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.true(ks.chunks.hints.size > 0, 'copies for n3 were remembered');
  await rc.start('n3');
  await ks.waitForPeers(5000);
  await ks.chunks.drainHints();
  t.is(ks.chunks.hints.size, 0);
  const n3 = ks.peer('n3')!;
  const held = await n3.client.hasChunks(ids);
  for (const [i, id] of ids.entries()) {
    const placed = ks.chunks.replicasOf(id).some((p) => p.id === 'n3');
    if (placed) t.true(held[i], `chunk ${i} is on n3`);
  }
});

test.serial('records changed while a node is down are copied to it when it returns, without a repair run', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = clusterKeySpace(t, rc);
  await ks.waitForPeers(5000);
  const keys = Array.from({ length: 40 }, (_, i) => Buffer.from(`\x01gmissed-${i}`, 'latin1'));
  await rc.nodes.get('n3')!.stop();
  for (const [i, k] of keys.entries()) await ks.change(k, () => Buffer.from(`v${i}`));
  // a call to n3 still waiting for its connection when the quorum answered is hinted when it fails
  for (let i = 0; i < 250 && ks.registers.hints.size < keys.length; i++) await new Promise((r) => setTimeout(r, 20));
  t.is(ks.registers.hints.size, keys.length, 'one hint per key, for n3');
  await rc.start('n3');
  await ks.waitForPeers(5000);
  await ks.drainHints();
  t.is(ks.registers.hints.size, 0, 'every hint drained');
  const n3 = ks.peer('n3')!;
  for (const [i, k] of keys.entries()) {
    const state = await n3.client.read(k);
    t.is(state.value.kind, 'value', `n3 holds key ${i}`);
  }
  // what n3 now holds is what a majority chose: a read from n3 and one other agrees
  for (const [i, k] of keys.entries()) t.deepEqual(await ks.read(k), Buffer.from(`v${i}`));
});

test.serial('a chunk put is checked by one replica and stored unchecked by the others; bytes that do not match the id fail the put', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = clusterKeySpace(t, rc);
  await ks.waitForPeers(5000);
  const fileOf = (n: { dataDir: string }, id: string): string => join(n.dataDir, 'chunks', id.slice(0, 2), id.slice(2, 4), id);
  const marks = async (id: string): Promise<boolean[]> => {
    const deadline = Date.now() + 10_000;
    while (!rc.cluster.nodes.every((n) => existsSync(fileOf(n, id))) && Date.now() < deadline) await new Promise((r) => setImmediate(r));
    return Promise.all(rc.cluster.nodes.map(async (n) => ((await stat(fileOf(n, id))).mode & 0o100) !== 0));
  };
  for (let i = 0; i < 4; i++) {
    const id = await ks.putChunk(randomBytes(100_000 + i));
    const m = await marks(id);
    t.is(m.filter((x) => !x).length, 1, `one checked copy of ${id}: ${m.join(' ')}`);
  }
  // a writer whose bytes do not hash to the id it names (a bug in it): the checker refuses, and so does the put,
  // although the other two replicas stored the bytes unchecked
  const claimed = (await ks.putChunk(randomBytes(2000))) as ChunkId;
  const err = await t.throwsAsync(ks.chunks.put(randomBytes(3000), { id: claimed }));
  t.true(isQfsError(err, 'corrupt'), String(err));
  // those unchecked copies are no one's 'exists': the real bytes' copies are where they were
  const real = randomBytes(5000);
  const realId = (await ks.putChunk(real)) as ChunkId;
  const bad = (await ks.chunks.put(randomBytes(6000), { id: realId }).then(() => null, (e: unknown) => e)) as Error | null;
  t.true(bad !== null && isQfsError(bad, 'corrupt'), String(bad));
  t.deepEqual(await ks.getChunk(realId), real);
});
