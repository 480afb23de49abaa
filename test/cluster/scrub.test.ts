// scrub as an operator runs it: the CLI against real nodes whose chunk files
// were damaged behind their back.
import { chunkIdSync } from '../../src/util/hash.js';
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { scrubCluster, type ScrubCheckpoint } from '../../src/cluster/scrub.js';
import type { ChunkId } from '../../src/util/ids.js';
import { runCli, type TestCluster } from '../helpers/cluster.js';
import { clusterKeySpace, startCluster } from '../helpers/keyspace.js';

const chunk = (i: number) => Buffer.alloc(20_000 + i * 13, (i * 31) % 256);
const sha256 = (b: Buffer) => chunkIdSync(b);

function chunkFile(rc: { cluster: TestCluster }, nodeId: string, id: string): string {
  const n = rc.cluster.nodes.find((x) => x.id === nodeId)!;
  return join(n.dataDir, 'chunks', id.slice(0, 2), id.slice(2, 4), id);
}

async function flip(rc: { cluster: TestCluster }, nodeId: string, id: string, at = 100): Promise<void> {
  const file = chunkFile(rc, nodeId, id);
  const bytes = await readFile(file);
  bytes[at] = bytes[at]! ^ 0xff;
  await writeFile(file, bytes);
}

/** Every chunk file on a node, with whether it hashes to its name. */
async function copiesOn(dataDir: string): Promise<Array<{ id: string; good: boolean }>> {
  const out: Array<{ id: string; good: boolean }> = [];
  const root = join(dataDir, 'chunks');
  for (const d1 of await readdir(root)) {
    for (const d2 of await readdir(join(root, d1))) {
      for (const name of await readdir(join(root, d1, d2))) {
        out.push({ id: name, good: sha256(await readFile(join(root, d1, d2, name))) === name });
      }
    }
  }
  return out;
}

async function quarantined(dataDir: string): Promise<string[]> {
  return (await readdir(join(dataDir, 'quarantine'))).sort();
}

async function putChunks(ks: ReturnType<typeof clusterKeySpace>, n: number): Promise<ChunkId[]> {
  const ids: ChunkId[] = [];
  for (let i = 0; i < n; i++) ids.push(await ks.putChunk(chunk(i)));
  await new Promise((r) => setTimeout(r, 300)); // let straggling third copies land
  return ids;
}

test.serial('scrub finds flipped bytes on two nodes, replaces the copies from good replicas, and a second run finds nothing', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = clusterKeySpace(t, rc);
  await ks.waitForPeers(5000);
  const ids = await putChunks(ks, 20);
  // three chunks on n1, one other on n2
  const onN1 = [ids[2]!, ids[7]!, ids[15]!];
  const onN2 = ids[11]!;
  for (const id of onN1) await flip(rc, 'n1', id);
  await flip(rc, 'n2', onN2, 5000);

  const state = join(rc.cluster.dir, 'scrub-state.json');
  const r = await runCli(['scrub', '--config', rc.cluster.configPath, '--state', state, '--json'], { timeoutMs: 120_000 });
  t.is(r.code, 0, r.stderr + r.stdout);
  const s = JSON.parse(r.stdout);
  t.is(s.corrupt, 4);
  t.is(s.repaired, 4);
  t.is(s.failed, 0);
  t.is(s.errors, 0);
  t.is(s.scanned, 60);
  t.deepEqual(s.nodesDown, []);
  t.is(s.nodes.n1.corrupt, 3);
  t.is(s.nodes.n2.corrupt, 1);
  t.is(s.nodes.n3.corrupt, 0);
  t.deepEqual(s.failureSamples, []);

  // every copy on disk hashes to its id, and every node still holds all 20
  for (const n of rc.cluster.nodes) {
    const copies = await copiesOn(n.dataDir);
    t.is(copies.length, 20, `copies on ${n.id}`);
    t.deepEqual(copies.filter((c) => !c.good), [], `bad copies on ${n.id}`);
  }
  // the bad copies were kept aside, and they are the damaged bytes
  const q1 = await quarantined(rc.cluster.nodes[0]!.dataDir);
  t.deepEqual(q1.map((f) => f.slice(0, 64)).sort(), [...onN1].sort());
  for (const f of q1) t.not(sha256(await readFile(join(rc.cluster.nodes[0]!.dataDir, 'quarantine', f))), f.slice(0, 64));
  t.deepEqual((await quarantined(rc.cluster.nodes[1]!.dataDir)).map((f) => f.slice(0, 64)), [onN2]);
  t.deepEqual(await quarantined(rc.cluster.nodes[2]!.dataDir), []);

  // a second run (text output this time) finds nothing
  const again = await runCli(['scrub', '--config', rc.cluster.configPath, '--state', state]);
  t.is(again.code, 0, again.stderr);
  t.regex(again.stdout, /^scrub done: 60 chunk copies checked on 3 nodes; 0 corrupt, 0 replaced from a good replica, 0 not replaced/);
  for (let i = 0; i < 20; i++) t.deepEqual(await ks.getChunk(ids[i]!), chunk(i));
});

test.serial('scrub while a writer is busy: the writer sees no error and the counts are exact', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = clusterKeySpace(t, rc);
  await ks.waitForPeers(5000);
  const ids = await putChunks(ks, 40);
  const flipped: Array<[string, ChunkId]> = [
    ['n1', ids[1]!],
    ['n1', ids[20]!],
    ['n2', ids[5]!],
    ['n3', ids[5]!], // the same chunk bad on two nodes: n1 still has it good
    ['n3', ids[33]!],
  ];
  for (const [node, id] of flipped) await flip(rc, node, id);

  const writer = clusterKeySpace(t, rc);
  await writer.waitForPeers(5000);
  let stop = false;
  let ops = 0;
  const errors: string[] = [];
  const loop = (async () => {
    while (!stop) {
      try {
        const data = randomBytes(30_000 + (ops % 1000));
        const id = await writer.putChunk(data);
        if (!(await writer.getChunk(id)).equals(data)) errors.push(`new chunk ${id} read back wrong`);
        // also read the old chunks, damaged copies included, while scrub quarantines and replaces them
        const i = ops % ids.length;
        if (!(await writer.getChunk(ids[i]!)).equals(chunk(i))) errors.push(`chunk ${i} read back wrong`);
        ops++;
      } catch (err) {
        errors.push(String(err));
      }
    }
  })();
  await new Promise((r) => setTimeout(r, 100));
  const r = await runCli(['scrub', '--config', rc.cluster.configPath, '--state', join(rc.cluster.dir, 's.json'), '--json'], { timeoutMs: 120_000 });
  await new Promise((r) => setTimeout(r, 100));
  stop = true;
  await loop;
  t.is(r.code, 0, r.stderr + r.stdout);
  t.deepEqual(errors, []);
  t.true(ops > 5, `writer did ${ops} rounds`);
  t.log(`writer did ${ops} rounds while scrub ran`);
  const s = JSON.parse(r.stdout);
  t.is(s.corrupt, flipped.length);
  t.is(s.repaired, flipped.length);
  t.is(s.failed + s.errors, 0);
  t.true(s.scanned >= 120, `scanned ${s.scanned}`);
  await new Promise((r) => setTimeout(r, 300));
  for (const n of rc.cluster.nodes) {
    const copies = await copiesOn(n.dataDir);
    t.deepEqual(copies.filter((c) => !c.good), [], `bad copies on ${n.id}`);
    for (const id of ids) t.true(copies.some((c) => c.id === id), `${id} on ${n.id}`);
  }
});

test.serial('with a node down, scrub reports it (exit 1) and still scrubs the others; --node scrubs one node', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = clusterKeySpace(t, rc);
  await ks.waitForPeers(5000);
  const ids = await putChunks(ks, 12);
  await flip(rc, 'n1', ids[4]!);
  await flip(rc, 'n2', ids[9]!);
  await rc.nodes.get('n3')!.stop();

  const config = rc.cluster.configPath;
  const r = await runCli(['scrub', '--config', config, '--state', join(rc.cluster.dir, 's.json'), '--json'], { timeoutMs: 120_000 });
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /nodes down, skipped: n3/);
  const s = JSON.parse(r.stdout);
  t.deepEqual(s.nodesDown, ['n3']);
  t.is(s.nodes.n1.scanned, 12);
  t.is(s.nodes.n2.scanned, 12);
  t.is(s.nodes.n3.scanned, 0);
  t.is(s.corrupt, 2);
  t.is(s.repaired, 2);
  for (const n of rc.cluster.nodes.slice(0, 2)) t.deepEqual((await copiesOn(n.dataDir)).filter((c) => !c.good), []);

  const text = await runCli(['scrub', '--config', config, '--state', join(rc.cluster.dir, 's.json')], { timeoutMs: 120_000 });
  t.is(text.code, 1);
  t.regex(text.stdout, /nodes down: n3/);
  t.regex(text.stdout, /^ {2}n3\s+0 checked.*down/m);

  // only the node asked for; the one down is no concern of this run
  await flip(rc, 'n2', ids[0]!);
  await flip(rc, 'n1', ids[1]!);
  const one = await runCli(['scrub', '--config', config, '--node', 'n2', '--state', join(rc.cluster.dir, 's2.json'), '--json'], { timeoutMs: 120_000 });
  t.is(one.code, 0, one.stderr);
  const o = JSON.parse(one.stdout);
  t.deepEqual(Object.keys(o.nodes), ['n2']);
  t.is(o.scanned, 12);
  t.is(o.corrupt, 1);
  t.is(o.repaired, 1);
  t.deepEqual(o.nodesDown, []);
  t.false((await copiesOn(rc.cluster.nodes[0]!.dataDir)).find((c) => c.id === ids[1])!.good, 'n1 was not scrubbed');

  const bad = await runCli(['scrub', '--config', config, '--node', 'n9']);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /no node n9/);
});

test.serial('an interrupted scrub resumes from its checkpoint and the counts add up', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = clusterKeySpace(t, rc);
  await ks.waitForPeers(5000);
  const ids = await putChunks(ks, 30);
  const bad: Array<[string, ChunkId]> = [
    ['n1', ids[3]!],
    ['n1', ids[28]!],
    ['n2', ids[17]!],
    ['n3', ids[0]!],
  ];
  for (const [node, id] of bad) await flip(rc, node, id);

  const abort = new AbortController();
  let saved: ScrubCheckpoint | null = null;
  const err = await t.throwsAsync(
    scrubCluster(ks, {
      pageSize: 4,
      concurrency: 2,
      signal: abort.signal,
      saveCheckpoint: async (c) => {
        saved = c;
      },
      onProgress: (_node, c) => {
        if (c.scanned >= 25) abort.abort(new Error('interrupted'));
      },
    }),
  );
  t.is(err?.message, 'interrupted');
  const cp = saved as ScrubCheckpoint | null;
  t.truthy(cp);
  const before = Object.values(cp!.nodes).reduce((n, x) => n + x.counts.scanned, 0);
  t.true(before >= 25 && before < 90, `scanned ${before} before the interrupt`);
  t.true(Object.values(cp!.nodes).some((n) => !n.done && n.cursor !== null));
  // what was checked is exactly what the cursors cover
  for (const [id, n] of Object.entries(cp!.nodes)) {
    const covered = n.done ? 30 : (await ks.peer(id)!.client.listChunks(null, 1000)).filter((c) => n.cursor !== null && c <= n.cursor).length;
    t.is(n.counts.scanned, covered, `node ${id}`);
  }

  // the CLI picks the checkpoint up
  const state = join(rc.cluster.dir, 'scrub.json');
  await writeFile(state, JSON.stringify(cp));
  const r = await runCli(['scrub', '--config', rc.cluster.configPath, '--state', state, '--json'], { timeoutMs: 120_000 });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /scrub: resuming \(n1 /);
  const s = JSON.parse(r.stdout);
  t.is(s.scanned, 90, 'every copy checked once over both runs');
  t.is(s.corrupt, bad.length);
  t.is(s.repaired, bad.length);
  for (const n of rc.cluster.nodes) t.deepEqual((await copiesOn(n.dataDir)).filter((c) => !c.good), []);
  await t.throwsAsync(readFile(state), undefined, 'checkpoint removed after a finished run');
});
