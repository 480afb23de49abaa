// Chunk ids and block checks: the sliced hashing gives the ids of the plain
// definition, sees any changed byte, and lets the event loop run meanwhile.
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { OFFLOAD_MIN_BYTES, SLOT_BYTES, hashThread } from '../../src/util/hash-offload.js';
import { BLOCK_BYTES, blocksMatch, chunkIdSync, chunkTree, rootOf } from '../../src/util/hash.js';

/** What a verified read asks for (ClusterChunks.get). */
const OFF = { offload: true };

/** The id as DESIGN.md defines it, written out. */
function reference(bytes: Buffer): string {
  const leaves: Buffer[] = [];
  for (let off = 0; off < bytes.length; off += BLOCK_BYTES) leaves.push(createHash('sha256').update(bytes.subarray(off, off + BLOCK_BYTES)).digest());
  const len = Buffer.alloc(4);
  len.writeUInt32BE(bytes.length);
  return createHash('sha256').update('qfs-tree-1').update(len).update(Buffer.concat(leaves)).digest('hex');
}

test('chunkTree and chunkIdSync give the hash-tree root at block boundaries and between them', async (t) => {
  for (const n of [0, 1, BLOCK_BYTES - 1, BLOCK_BYTES, BLOCK_BYTES + 1, 5 * BLOCK_BYTES + 7, 16 * BLOCK_BYTES]) {
    const bytes = randomBytes(n);
    const tree = await chunkTree(bytes);
    t.is(tree.id, reference(bytes), `length ${n}`);
    t.is(chunkIdSync(bytes), tree.id);
    t.is(rootOf(tree.leaves, n), tree.id);
  }
});

test('blocksMatch accepts the blocks of a chunk and refuses one changed byte in any of them', async (t) => {
  const bytes = randomBytes(10 * BLOCK_BYTES + 100);
  const { leaves } = await chunkTree(bytes);
  t.true(await blocksMatch(leaves, bytes.length, 0, bytes));
  t.true(await blocksMatch(leaves, bytes.length, 3, bytes.subarray(3 * BLOCK_BYTES, 8 * BLOCK_BYTES)));
  t.true(await blocksMatch(leaves, bytes.length, 10, bytes.subarray(10 * BLOCK_BYTES)));
  for (const at of [0, 4 * BLOCK_BYTES + 9, 10 * BLOCK_BYTES + 99]) {
    const bad = Buffer.from(bytes);
    bad[at] = bad[at]! ^ 1;
    t.false(await blocksMatch(leaves, bytes.length, 0, bad), `byte ${at}`);
  }
  // a short block that is not the chunk's last, or a range past the end
  t.false(await blocksMatch(leaves, bytes.length, 3, bytes.subarray(3 * BLOCK_BYTES, 8 * BLOCK_BYTES - 1)));
  t.false(await blocksMatch(leaves, bytes.length, 10, Buffer.concat([bytes.subarray(10 * BLOCK_BYTES), Buffer.alloc(1)])));
});

test('hashing a 1 MiB chunk gives the event loop several turns', async (t) => {
  const bytes = randomBytes(16 * BLOCK_BYTES);
  let turns = 0;
  let done = false;
  const tick = (): void => {
    turns++;
    if (!done) setImmediate(tick);
  };
  setImmediate(tick);
  await chunkTree(bytes);
  done = true;
  t.true(turns >= 3, `${turns} turns`);
});

// Serial (ava runs these before the others): they turn the process's hashing thread on, and off when done.
test.serial('with the hashing thread enabled, big ranges are hashed there with the same leaves; small and oversized ones stay here', async (t) => {
  hashThread.enable();
  for (const n of [OFFLOAD_MIN_BYTES, 5 * BLOCK_BYTES + 7, 16 * BLOCK_BYTES]) {
    const bytes = randomBytes(n);
    const before = hashThread.stats.offloaded;
    const tree = await chunkTree(bytes, OFF);
    t.is(hashThread.stats.offloaded, before + 1, `${n} bytes went to the thread`);
    t.is(tree.id, reference(bytes), 'the id of the plain definition');
    const bad = Buffer.from(bytes);
    bad[n - 1] = bad[n - 1]! ^ 1;
    t.false(await blocksMatch(tree.leaves, n, 0, bad), 'a changed byte is seen');
    t.is(hashThread.stats.offloaded, before + 1, 'block checks (ranged reads) are hashed here');
  }
  // more at once than there are slots: the rest are hashed here, all right
  const many = Array.from({ length: 12 }, () => randomBytes(SLOT_BYTES));
  const busy = hashThread.stats.busy;
  t.deepEqual((await Promise.all(many.map((b) => chunkTree(b, OFF)))).map((x) => x.id), many.map((b) => reference(b)));
  t.true(hashThread.stats.busy > busy, 'some found every slot busy');
  const before = hashThread.stats.offloaded;
  await chunkTree(randomBytes(OFFLOAD_MIN_BYTES - 1), OFF);
  await chunkTree(randomBytes(SLOT_BYTES + 1), OFF);
  t.is(hashThread.stats.offloaded, before, 'a small range and one over a slot are hashed here');
  await chunkTree(randomBytes(SLOT_BYTES));
  t.is(hashThread.stats.offloaded, before, 'a caller that does not ask (a write) hashes here');
  hashThread.enable(false);
});

test.serial('a hashing thread that dies fails nothing: its requests and later ones are hashed here', async (t) => {
  hashThread.enable();
  const bytes = randomBytes(OFFLOAD_MIN_BYTES * 2);
  const want = chunkIdSync(bytes);
  t.is((await chunkTree(bytes, OFF)).id, want, 'thread up');
  // the thread goes away with requests on their way to it (or just answered: either way, right ids)
  const pending = Array.from({ length: 4 }, () => chunkTree(bytes, OFF));
  await hashThread.kill();
  t.deepEqual((await Promise.all(pending)).map((x) => x.id), [want, want, want, want]);
  const offloadedBefore = hashThread.stats.offloaded;
  t.is((await chunkTree(bytes, OFF)).id, want, 'after it died');
  t.is(hashThread.stats.offloaded, offloadedBefore, 'hashed here: a dead thread is not asked again');
  await hashThread.stop();
  const offloaded = hashThread.stats.offloaded;
  t.is((await chunkTree(bytes, OFF)).id, want, 'a new thread after stop()');
  t.is(hashThread.stats.offloaded, offloaded + 1);
  await hashThread.stop();
  hashThread.enable(false);
});
