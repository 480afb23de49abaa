// Chunk ids: the root of a one-level hash tree over a chunk's 64 KiB blocks.
// Each block's SHA-256 is a leaf; the id is SHA-256("qfs-tree-1", length,
// leaves). A reader that holds the leaves (checked once against the id) can
// verify any block it fetched on its own, so a 4 KiB read moves and hashes one
// block, not the chunk; whole-chunk content addressing and dedup stay.
//
// The block digests run on libuv's thread pool (WebCrypto's digest is an async
// job there), not on the JS thread: a mount's JS thread also serves every FUSE
// request, and a node's serves every RPC. The bytes must not change until the
// promise resolves.
import { createHash, webcrypto } from 'node:crypto';

export const BLOCK_BYTES = 64 * 1024;
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

export async function sha256(bytes: Uint8Array): Promise<Buffer> {
  return Buffer.from(await webcrypto.subtle.digest('SHA-256', bytes));
}

/** Leaves and id of `bytes`; the blocks are hashed in parallel on the thread pool. */
export async function chunkTree(bytes: Uint8Array): Promise<ChunkTree> {
  const n = blockCount(bytes.length);
  const digests = await Promise.all(
    Array.from({ length: n }, (_, i) => webcrypto.subtle.digest('SHA-256', bytes.subarray(i * BLOCK_BYTES, Math.min(bytes.length, (i + 1) * BLOCK_BYTES)))),
  );
  const leaves = Buffer.allocUnsafe(n * LEAF_BYTES);
  digests.forEach((d, i) => leaves.set(new Uint8Array(d), i * LEAF_BYTES));
  return { id: rootOf(leaves, bytes.length), leaves };
}

export async function chunkIdOf(bytes: Uint8Array): Promise<string> {
  return (await chunkTree(bytes)).id;
}

/** The same id computed on the calling thread: for tests and tools, not for hot paths. */
export function chunkIdSync(bytes: Uint8Array): string {
  const n = blockCount(bytes.length);
  const leaves = Buffer.allocUnsafe(n * LEAF_BYTES);
  for (let i = 0; i < n; i++) {
    createHash('sha256')
      .update(bytes.subarray(i * BLOCK_BYTES, Math.min(bytes.length, (i + 1) * BLOCK_BYTES)))
      .digest()
      .copy(leaves, i * LEAF_BYTES);
  }
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
  const digests = await Promise.all(
    Array.from({ length: k }, (_, i) => webcrypto.subtle.digest('SHA-256', bytes.subarray(i * BLOCK_BYTES, Math.min(bytes.length, (i + 1) * BLOCK_BYTES)))),
  );
  return digests.every((d, i) => leafAt(leaves, first + i).equals(new Uint8Array(d)));
}
