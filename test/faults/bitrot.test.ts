// Fault scenario 4: bytes flipped in the chunk files of one node. Reads
// through a mount still return the right bytes (every read is verified
// against the chunk's hash and fails over), the mount reports and replaces
// the bad copies it meets, scrub finds and replaces the rest, and fsck is clean.
import test from 'ava';
import { join } from 'node:path';
import { python } from '../helpers/e2e-fixtures.js';
import { runCli } from '../helpers/cluster.js';
import { assertFsckClean, chunkFiles, runJson, startWriter, verifyClosed } from '../helpers/faults.js';
import { startCluster } from '../helpers/keyspace.js';
import { forceUnmount, mountCluster } from '../helpers/mount.js';

/** Flips one byte in the middle of every chunk file of a node's data directory; returns how many. */
async function rot(dataDir: string): Promise<number> {
  const r = await python(
    String.raw`
import os, sys
n = 0
for d, _, files in os.walk(os.path.join(sys.argv[1], 'chunks')):
    for f in files:
        p = os.path.join(d, f)
        with open(p, 'r+b') as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0: continue
            fh.seek(size // 2); b = fh.read(1); fh.seek(size // 2); fh.write(bytes([b[0] ^ 0x5a]))
        n += 1
print(n)
`,
    [dataDir],
  );
  if (r.code !== 0) throw new Error(r.stderr);
  return Number(r.stdout.trim());
}

/** Chunk files whose bytes do not hash to their name (the chunk id). */
async function badCopies(dataDir: string): Promise<string[]> {
  const r = await python(
    String.raw`
import hashlib, json, os, sys
def chunk_id(b):  # the hash-tree root of src/util/hash.ts
    leaves = b''.join(hashlib.sha256(b[i:i + 65536]).digest() for i in range(0, len(b), 65536))
    return hashlib.sha256(b'qfs-tree-1' + len(b).to_bytes(4, 'big') + leaves).hexdigest()
bad = []
for d, _, files in os.walk(os.path.join(sys.argv[1], 'chunks')):
    for f in files:
        with open(os.path.join(d, f), 'rb') as fh:
            if chunk_id(fh.read()) != f: bad.append(f)
print(json.dumps(bad))
`,
    [dataDir],
  );
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as string[];
}

interface ScrubJson {
  scanned: number;
  corrupt: number;
  repaired: number;
  failed: number;
  nodes: Record<string, { corrupt: number; repaired: number }>;
  nodesDown: string[];
}

test.serial('4 flipped bytes on one node: reads return the right bytes, the bad copies are reported, scrub replaces them; fsck clean', async (t) => {
  const rc = await startCluster(t, 3);
  const f = await runCli(['format', '--config', rc.cluster.configPath]);
  t.is(f.code, 0, f.stderr);
  const first = await mountCluster(t, rc);
  const w = startWriter(t, join(first.dir, 'w'), { seed: 4, count: 24, minSize: 20_000, maxSize: 2_500_000 });
  t.is(await w.done, 0);
  await first.stop();
  await forceUnmount(first.dir);

  const n1 = rc.cluster.nodes.find((n) => n.id === 'n1')!;
  const rotted = await rot(n1.dataDir);
  t.true(rotted >= 24, `${rotted} chunk copies damaged on n1`);
  t.is((await badCopies(n1.dataDir)).length, rotted);

  // With n3 stopped, every chunk read goes to n1 (bad) or n2 (good): a fresh mount (empty chunk cache) must fail over.
  await rc.nodes.get('n3')!.stop();
  const second = await mountCluster(t, rc, 'mnt2');
  t.deepEqual(await verifyClosed(w.closed, { from: first.dir, to: second.dir }), [], 'every file reads back right');
  const reported = second.logs().split('\n').filter((l) => l.includes('corrupt chunk copy')).length;
  t.true(reported > 0, 'the mount reported the bad copies it met');
  t.log(`${rotted} copies damaged; the mount logged ${reported} bad-copy warnings`);
  await rc.start('n3');

  const scrub = await runJson<ScrubJson>(['scrub', '--config', rc.cluster.configPath, '--restart']);
  t.is(scrub.code, 0, scrub.stderr);
  // A bad copy the mount met was replaced by the mount itself (verify, quarantine, copy from a good replica); scrub replaced the rest.
  const n1Scrub = scrub.json.nodes['n1']!;
  t.is(n1Scrub.repaired, n1Scrub.corrupt, 'scrub replaced every bad copy it found');
  t.is(scrub.json.corrupt, n1Scrub.corrupt, 'no other node had a bad copy');
  const quarantined = Number((await python(`import os,sys; print(len(os.listdir(os.path.join(sys.argv[1], 'quarantine'))))`, [n1.dataDir])).stdout.trim());
  t.is(quarantined, rotted, 'every damaged copy was caught exactly once, by the mount or by scrub');
  t.log(`scrub found ${n1Scrub.corrupt}; the mount had already replaced ${rotted - n1Scrub.corrupt}`);
  t.deepEqual(await badCopies(n1.dataDir), [], 'n1 holds only good copies now');
  t.deepEqual((await chunkFiles(n1.dataDir)).length, (await chunkFiles(rc.cluster.nodes[1]!.dataDir)).length);
  const again = await runJson<ScrubJson>(['scrub', '--config', rc.cluster.configPath, '--restart']);
  t.is(again.json.corrupt, 0, 'a second scrub finds nothing');
  await assertFsckClean(t, rc.cluster.configPath, ['--grace', '0']);
});
