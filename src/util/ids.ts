// Branded ids: a chunk id can never be passed where a node id was meant.
import { QfsError } from './errors.js';

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** SHA-256 of a chunk's bytes, as 64 lowercase hex characters. */
export type ChunkId = Brand<string, 'ChunkId'>;
/** A storage node's id from the cluster config. */
export type NodeId = Brand<string, 'NodeId'>;

const CHUNK_ID_RE = /^[0-9a-f]{64}$/;
const NODE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export function isChunkId(s: unknown): s is ChunkId {
  return typeof s === 'string' && CHUNK_ID_RE.test(s);
}

/** Validates before the id is ever used in a path: exactly 64 lowercase hex characters. */
export function parseChunkId(s: unknown): ChunkId {
  if (!isChunkId(s)) throw new QfsError('bad_request', `invalid chunk id ${JSON.stringify(String(s).slice(0, 80))}`);
  return s;
}

export function isNodeId(s: unknown): s is NodeId {
  return typeof s === 'string' && NODE_ID_RE.test(s);
}

export function parseNodeId(s: unknown): NodeId {
  if (!isNodeId(s)) {
    throw new QfsError('bad_request', `invalid node id ${JSON.stringify(String(s).slice(0, 80))}: use 1-63 letters, digits, '_', '.', '-'`);
  }
  return s;
}
