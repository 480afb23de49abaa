// What a node acknowledged survives SIGKILL: a client keeps ~16 record accepts
// and chunk puts in flight, the node is killed at a random moment, and after a
// restart every acknowledged write reads back exactly. Three rounds over the
// same data directory, so recovery after recovery is covered too.
import test from 'ava';
import { createHash } from 'node:crypto';
import { connect, startNode, writeCluster, type NodeProcess } from '../helpers/cluster.js';
import { Rand, sha256, testSeed } from '../helpers/raw-rpc.js';
import type { NodeClient } from '../../src/rpc/node-client.js';
import { MAX_CHUNK_BYTES } from '../../src/store/types.js';
import type { Ballot } from '../../src/util/ballot.js';
import type { ChunkId } from '../../src/util/ids.js';

const PROPOSER = '00000000000000d1';
const ballot = (counter: number): Ballot => ({ counter, proposer: PROPOSER });
const IN_FLIGHT = 16;

/** A record's value is a function of its key, so the check needs no copy of it. */
function valueFor(key: string): Buffer {
  const h = createHash('sha256').update(key).digest();
  const len = 1 + (h.readUInt16BE(0) % 3000);
  const out = Buffer.alloc(len);
  for (let i = 0; i < len; i += h.length) h.copy(out, i, 0, Math.min(h.length, len - i));
  return out;
}

/** Chunk bytes from a seed, regenerated for the check. */
function chunkBytes(seed: number): Buffer {
  const r = new Rand(seed);
  return r.bytes(r.range(4096, 256 * 1024));
}

interface Acked {
  records: Map<string, Buffer>;
  /** key → the tombstone's ballot counter */
  tombstones: Map<string, number>;
  chunks: Map<ChunkId, number>;
}

interface RoundResult {
  issued: number;
  acked: number;
  ackedAfterKill: number;
  failed: number;
  killAtMs: number;
}

async function stormAndKill(c: NodeClient, node: NodeProcess, round: number, seed: number, acked: Acked): Promise<RoundResult> {
  const r = new Rand(seed);
  const killAtMs = r.range(200, 1500);
  let killed = false;
  let issued = 0;
  let ackCount = 0;
  let ackedAfterKill = 0;
  let failed = 0;
  const started = Date.now();

  const one = async (n: number): Promise<void> => {
    const kind = r.int(10);
    if (kind < 4) {
      const key = `r${round}/rec/${n}`;
      const v = await c.accept(Buffer.from(key), ballot(1), { kind: 'value', bytes: valueFor(key) }, { timeoutMs: 20_000 });
      if (!v.ok) throw new Error(`accept of fresh key ${key} refused`);
      if (killed) ackedAfterKill++;
      acked.records.set(key, valueFor(key));
    } else if (kind < 5) {
      // a value, then its tombstone at a higher ballot
      const key = `r${round}/tomb/${n}`;
      const v = await c.accept(Buffer.from(key), ballot(1), { kind: 'value', bytes: valueFor(key) }, { timeoutMs: 20_000 });
      if (!v.ok) throw new Error(`accept of fresh key ${key} refused`);
      acked.records.set(key, valueFor(key));
      const tomb = await c.accept(Buffer.from(key), ballot(2), { kind: 'tombstone', bytes: Buffer.from(`gone:${key}`) }, { timeoutMs: 20_000 });
      if (!tomb.ok) throw new Error(`tombstone of ${key} refused`);
      if (killed) ackedAfterKill++;
      acked.records.delete(key);
      acked.tombstones.set(key, 2);
    } else {
      const chunkSeed = (seed ^ Math.imul(n + 1, 0x9e3779b1)) >>> 0;
      const bytes = chunkBytes(chunkSeed);
      const id = sha256(bytes);
      await c.putChunk(id, bytes, { timeoutMs: 20_000 });
      if (killed) ackedAfterKill++;
      acked.chunks.set(id, chunkSeed);
    }
    ackCount++;
  };

  const lane = async (): Promise<void> => {
    while (!killed) {
      const n = issued++;
      try {
        await one(n);
      } catch {
        failed++; // the kill cut it off: its outcome is unknown, so it is not checked
      }
    }
  };
  const lanes = Array.from({ length: IN_FLIGHT }, () => lane());
  await new Promise((resolve) => setTimeout(resolve, killAtMs));
  killed = true;
  node.kill('SIGKILL');
  const exit = await node.exited;
  if (exit.signal !== 'SIGKILL') throw new Error(`node exited with ${exit.code ?? exit.signal}, not by the kill`);
  await Promise.all(lanes);
  return { issued, acked: ackCount, ackedAfterKill, failed, killAtMs: Date.now() - started };
}

test('acknowledged records, tombstones and chunks survive SIGKILL at a random moment (3 rounds)', async (t) => {
  t.timeout(110_000);
  const base = testSeed();
  t.log(`seed ${base} (QFS_SEED=${base} replays it)`);
  const cluster = await writeCluster(t, 1, { replication: 1 });
  const acked: Acked = { records: new Map(), tombstones: new Map(), chunks: new Map() };

  let node = await startNode(t, cluster, 'n1');
  for (let round = 0; round < 3; round++) {
    const seed = (base + round * 0x3c6ef372) >>> 0;
    const c = connect(t, cluster, 'n1', { timeoutMs: 20_000 });
    const res = await stormAndKill(c, node, round, seed, acked);
    c.close();
    t.log(`round ${round} (seed ${seed}): killed after ${res.killAtMs} ms; ${res.issued} issued, ${res.acked} acknowledged (${res.ackedAfterKill} read after the kill), ${res.failed} cut off`);
    t.true(res.acked > 0, `round ${round} seed ${seed}: nothing was acknowledged before the kill`);

    node = await startNode(t, cluster, 'n1');
    const check = connect(t, cluster, 'n1', { timeoutMs: 20_000 });
    const problems: string[] = [];
    // everything acknowledged in this and earlier rounds, 32 checks at a time
    const jobs: Array<() => Promise<void>> = [];
    for (const [key, value] of acked.records) {
      jobs.push(async () => {
        const s = await check.read(Buffer.from(key));
        if (s.value.kind === 'tombstone' && acked.tombstones.has(key)) return;
        if (s.value.kind !== 'value' || !s.value.bytes.equals(value)) {
          // a tombstone key whose tombstone was not acknowledged may hold either the value or the tombstone
          if (!(key.includes('/tomb/') && s.value.kind === 'tombstone')) problems.push(`record ${key}: read ${s.value.kind}`);
        }
        if (s.accepted.counter < 1) problems.push(`record ${key}: accepted ballot ${s.accepted.counter}`);
      });
    }
    for (const [key, counter] of acked.tombstones) {
      jobs.push(async () => {
        const s = await check.read(Buffer.from(key));
        if (s.value.kind !== 'tombstone' || s.accepted.counter !== counter || !s.value.bytes.equals(Buffer.from(`gone:${key}`))) {
          problems.push(`tombstone ${key}: read ${s.value.kind} at ${s.accepted.counter}`);
        }
      });
    }
    for (const [id, chunkSeed] of acked.chunks) {
      jobs.push(async () => {
        const back = await check.getChunk(id, 0, MAX_CHUNK_BYTES);
        if (!back.equals(chunkBytes(chunkSeed))) problems.push(`chunk ${id}: ${back.length} bytes differ`);
        const v = await check.verifyChunk(id);
        if (v !== 'ok') problems.push(`chunk ${id}: verify says ${v}`);
      });
    }
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < jobs.length) {
          const job = jobs[next++]!;
          try {
            await job();
          } catch (err) {
            problems.push(String(err));
          }
        }
      }),
    );
    t.deepEqual(problems.slice(0, 20), [], `round ${round} seed ${seed}: ${problems.length} acknowledged writes lost or changed`);
    t.log(`round ${round}: checked ${acked.records.size} records, ${acked.tombstones.size} tombstones, ${acked.chunks.size} chunks`);
    check.close();
  }
  t.true(acked.tombstones.size > 0, 'at least one tombstone was acknowledged');
  t.true(acked.chunks.size > 0 && acked.records.size > 0);
  const final = await node.stop();
  t.is(final.code, 0);
});
