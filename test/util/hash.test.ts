// Chunk ids and block checks: the sliced hashing gives the ids of the plain
// definition, sees any changed byte, and lets the event loop run meanwhile.
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { BLOCK_BYTES, BlockDigester, blocksMatch, chunkIdSync, chunkTree, rootOf } from '../../src/util/hash.js';

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

test('BlockDigester: leaves of bytes filled in any steps equal chunkTree; only for exactly those bytes, once complete', async (t) => {
  for (const n of [0, 100, BLOCK_BYTES, 5 * BLOCK_BYTES + 7, 16 * BLOCK_BYTES]) {
    const frame = Buffer.concat([Buffer.from('header'), randomBytes(n)]);
    const body = frame.subarray(6);
    const d = new BlockDigester();
    d.start(frame, 6);
    let upTo = 0;
    while (upTo < frame.length) {
      t.is(d.leavesOf(body), null, 'not before all bytes are in');
      upTo = Math.min(frame.length, upTo + 1 + Math.floor(Math.random() * 100_000));
      d.filled(upTo);
    }
    d.filled(frame.length);
    t.true(d.leavesOf(body)!.equals((await chunkTree(body)).leaves), `length ${n}`);
    t.is(d.leavesOf(Buffer.from(body)), null);
    t.is(d.leavesOf(frame), null);
  }
  t.is(new BlockDigester().leavesOf(Buffer.alloc(0)), null, 'never started');
});
