// Chunk ids: the root of a one-level hash tree over a chunk's 64 KiB blocks.
// Each block's SHA-256 is a leaf; the id is SHA-256("qfs-tree-1", length,
// leaves). A reader that holds the leaves (checked once against the id) can
// verify any block it fetched on its own, so a 4 KiB read moves and hashes one
// block, not the chunk; whole-chunk content addressing and dedup stay.
//
// In a process that enabled it (a mount), big ranges read from the cluster are
// hashed on a thread of their own (hash-offload.ts). Others are hashed on the
// calling thread, a few blocks at a time, with a turn of the event loop
// between slices: a mount's JS thread also serves every FUSE
// request, and a node's serves every RPC, so no slice holds it for more than
// about 0.15 ms. Hashing here costs 0.55 ms of CPU per MiB; WebCrypto's digest
// on libuv's thread pool, used before, cost 1.0 ms (it copies its input, wipes
// the copy when done, and wakes a pool thread for every 64 KiB block), and on
// a machine that is CPU-bound during a big read that is throughput.
// The bytes must not change until the promise resolves.
import { createHash } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { hashThread } from './hash-offload.js';

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

/**
 * SHA-256 of each 64 KiB block of bytes, written to out at 32 bytes each: on
 * the hashing thread if it takes them (hash-offload.ts), else here,
 * SLICE_BLOCKS per turn of the event loop.
 */
async function hashBlocks(bytes: Uint8Array, out: Buffer, offload = false): Promise<void> {
  const onThread = offload ? hashThread.leaves(bytes) : null;
  if (onThread !== null) {
    try {
      (await onThread).copy(out);
      return;
    } catch {
      hashThread.stats.fellBack++;
    }
  }
  const n = blockCount(bytes.length);
  for (let i = 0; i < n; i++) {
    if (i > 0 && i % SLICE_BLOCKS === 0) await nextTurn();
    sha256(bytes.subarray(i * BLOCK_BYTES, Math.min(bytes.length, (i + 1) * BLOCK_BYTES))).copy(out, i * LEAF_BYTES);
  }
}

/** What a caller asks of the hashing. */
export interface HashOptions {
  /**
   * May go to the hashing thread, if the process enabled it (hash-offload.ts).
   * Reads ask for it: a cold read leaves CPU idle beside a busy JS thread. Writes
   * do not: a big write keeps every core busy, and the copy into the thread's
   * slot and a hash of bytes no longer in the CPU's cache cost more than they
   * free (about +0.5 CPU-s per GiB written in the mount, -7% MB/s, measured).
   */
  offload?: boolean;
}

/** Leaves and id of `bytes`. */
export async function chunkTree(bytes: Uint8Array, opts?: HashOptions): Promise<ChunkTree> {
  const leaves = Buffer.allocUnsafe(blockCount(bytes.length) * LEAF_BYTES);
  await hashBlocks(bytes, leaves, opts?.offload);
  return { id: rootOf(leaves, bytes.length), leaves };
}

export async function chunkIdOf(bytes: Uint8Array, opts?: HashOptions): Promise<string> {
  return (await chunkTree(bytes, opts)).id;
}

/** The same id computed in one go on the calling thread: for tests and tools, not for hot paths. */
export function chunkIdSync(bytes: Uint8Array): string {
  const leaves = Buffer.allocUnsafe(blockCount(bytes.length) * LEAF_BYTES);
  leavesSync(bytes, leaves);
  return rootOf(leaves, bytes.length);
}

/** The leaves of `bytes`, written to `out` (32 bytes per 64 KiB block), in one go on the calling thread (the hashing thread's own work). */
export function leavesSync(bytes: Uint8Array, out: Uint8Array): void {
  const n = blockCount(bytes.length);
  for (let i = 0; i < n; i++) out.set(sha256(bytes.subarray(i * BLOCK_BYTES, Math.min(bytes.length, (i + 1) * BLOCK_BYTES))), i * LEAF_BYTES);
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
