// Chunk ids: the root of a one-level hash tree over a chunk's 64 KiB blocks.
// Each block's SHA-256 is a leaf; the id is SHA-256("qfs-tree-1", length,
// leaves). A reader that holds the leaves (checked once against the id) can
// verify any block it fetched on its own, so a 4 KiB read moves and hashes one
// block, not the chunk; whole-chunk content addressing and dedup stay.
//
// The blocks are hashed on the calling thread, a few at a time, with a turn of
// the event loop between slices: a mount's JS thread also serves every FUSE
// request, and a node's serves every RPC, so no slice holds it for more than
// about 0.15 ms. Hashing here costs 0.55 ms of CPU per MiB; WebCrypto's digest
// on libuv's thread pool, used before, cost 1.0 ms (it copies its input, wipes
// the copy when done, and wakes a pool thread for every 64 KiB block), and on
// a machine that is CPU-bound during a big read that is throughput.
// The bytes must not change until the promise resolves.
import { createHash } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';

export const BLOCK_BYTES = 64 * 1024;
/** Blocks hashed in one turn of the event loop (about 0.14 ms with SHA extensions). */
const SLICE_BLOCKS = 4;
const LEAF_BYTES = 32;
const TREE_TAG = Buffer.from('qfs-tree-1');

export interface ChunkTree {
  /** The chunk id: 64 lowercase hex characters. */
  id: string;
  /** The blocks' SHA-256 digests, 32 bytes each, in order. */
  leaves: Buffer;
}

export function blockCount(length: number): number {
  return Math.ceil(length / BLOCK_BYTES);
}

/** The id a chunk of `length` bytes with these leaves has. */
export function rootOf(leaves: Buffer, length: number): string {
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(length);
  return createHash('sha256').update(TREE_TAG).update(len).update(leaves).digest('hex');
}

export function sha256(bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest();
}

/** SHA-256 of each 64 KiB block of bytes, written to out at 32 bytes each; SLICE_BLOCKS per turn of the event loop. */
async function hashBlocks(bytes: Uint8Array, out: Buffer): Promise<void> {
  const n = blockCount(bytes.length);
  for (let i = 0; i < n; i++) {
    if (i > 0 && i % SLICE_BLOCKS === 0) await nextTurn();
    sha256(bytes.subarray(i * BLOCK_BYTES, Math.min(bytes.length, (i + 1) * BLOCK_BYTES))).copy(out, i * LEAF_BYTES);
  }
}

/** Leaves and id of `bytes`. */
export async function chunkTree(bytes: Uint8Array): Promise<ChunkTree> {
  const leaves = Buffer.allocUnsafe(blockCount(bytes.length) * LEAF_BYTES);
  await hashBlocks(bytes, leaves);
  return { id: rootOf(leaves, bytes.length), leaves };
}

export async function chunkIdOf(bytes: Uint8Array): Promise<string> {
  return (await chunkTree(bytes)).id;
}

/** The same id computed in one go on the calling thread: for tests and tools, not for hot paths. */
export function chunkIdSync(bytes: Uint8Array): string {
  const n = blockCount(bytes.length);
  const leaves = Buffer.allocUnsafe(n * LEAF_BYTES);
  for (let i = 0; i < n; i++) sha256(bytes.subarray(i * BLOCK_BYTES, Math.min(bytes.length, (i + 1) * BLOCK_BYTES))).copy(leaves, i * LEAF_BYTES);
  return rootOf(leaves, bytes.length);
}

/** Leaf `i` of a leaves buffer. */
export function leafAt(leaves: Buffer, i: number): Buffer {
  return leaves.subarray(i * LEAF_BYTES, (i + 1) * LEAF_BYTES);
}

/**
 * Checks blocks [first, first + k) of a chunk, given as one buffer that starts
 * at block `first`, against verified leaves. True when every block matches.
 */
export async function blocksMatch(leaves: Buffer, length: number, first: number, bytes: Buffer): Promise<boolean> {
  const start = first * BLOCK_BYTES;
  if (start + bytes.length > length) return false;
  const k = blockCount(bytes.length);
  // every block but the chunk's last is whole
  if (first + k < blockCount(length) && bytes.length !== k * BLOCK_BYTES) return false;
  if (first + k === blockCount(length) && start + bytes.length !== length) return false;
  const digests = Buffer.allocUnsafe(k * LEAF_BYTES);
  await hashBlocks(bytes, digests);
  return digests.equals(leaves.subarray(first * LEAF_BYTES, (first + k) * LEAF_BYTES));
}

/**
 * Digests the 64 KiB blocks of bytes that arrive into a buffer, while they are
 * still in the CPU's cache: the receiver calls start() with the buffer and
 * where the bytes begin, then filled() each time more of it holds data. A
 * 1 MiB chunk hashed as its reads land costs about 0.55 ms of CPU; hashed
 * after the whole of it arrived, from memory, 0.9 ms.
 *
 * leavesOf(bytes) gives the leaves only for exactly the bytes that were
 * digested (the same memory, offset and length), once all of them were:
 * anything else is hashed by the caller as before.
 */
export class BlockDigester {
  private buf: Buffer | null = null;
  private from = 0;
  private done = 0;
  private leaves: Buffer | null = null;
  private complete = false;

  /** The bytes to digest are buf[from, buf.length); they will not change once filled. */
  start(buf: Buffer, from: number): void {
    this.buf = buf;
    this.from = from;
    this.done = from;
    this.complete = false;
    this.leaves = Buffer.allocUnsafe(blockCount(buf.length - from) * LEAF_BYTES);
  }

  /** buf[0, upTo) now holds data: digest the blocks that are complete (the last one at the end). */
  filled(upTo: number): void {
    const buf = this.buf;
    if (buf === null || this.leaves === null) return;
    if (upTo >= buf.length) this.complete = true;
    for (;;) {
      const end = Math.min(buf.length, this.done + BLOCK_BYTES);
      if (end > upTo || end === this.done) return;
      sha256(buf.subarray(this.done, end)).copy(this.leaves, ((this.done - this.from) / BLOCK_BYTES) * LEAF_BYTES);
      this.done = end;
    }
  }

  /** The leaves of `bytes`, if they are exactly what was digested; else null. */
  leavesOf(bytes: Buffer): Buffer | null {
    const buf = this.buf;
    if (buf === null || !this.complete || this.done !== buf.length || bytes.length !== buf.length - this.from) return null;
    if (bytes.buffer !== buf.buffer || bytes.byteOffset !== buf.byteOffset + this.from) return null;
    return this.leaves;
  }
}
