// What self-heal compares between two replicas for a range of record keys
// (docs/architecture.md, "Maintenance"): one SHA-256 over the keys both
// replicas should hold and the ballot each accepted, or a mark for a copy
// that failed its checksum (lost). Equal digests: nothing in the range differs
// between the two, and none of its records needs to cross the network; only a
// range whose digests differ is compared key by key. Both sides build it from
// the same store scan with the same filter, so equal stores give equal bytes.
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import type { Ballot } from './ballot.js';
import type { Membership } from './membership.js';
import type { AcceptorState } from './paxos.js';
import { holdersOfRecord } from './replica-sets.js';
import { groupOf } from './record-key.js';

export const RANGE_DIGEST_BYTES = 32;

export class RangeDigest {
  private readonly items: Array<{ key: Buffer; accepted: Ballot | null }> = [];

  /** A key and the ballot its copy accepted; null for a lost copy. Keys that accepted nothing are left out by the caller. */
  add(key: Buffer, accepted: Ballot | null): void {
    this.items.push({ key, accepted });
  }

  get count(): number {
    return this.items.length;
  }

  digest(): Buffer {
    const h = createHash('sha256');
    const head = Buffer.alloc(11);
    for (const { key, accepted } of [...this.items].sort((a, b) => Buffer.compare(a.key, b.key))) {
      head.writeUInt16BE(key.length, 0);
      head[2] = accepted ? 1 : 0;
      head.writeDoubleBE(accepted ? accepted.counter : 0, 3);
      h.update(head);
      h.update(key);
      if (accepted) h.update(accepted.proposer, 'hex');
    }
    return h.digest();
  }
}

/**
 * The digests of a page of node `self`'s records (a store scan with lost
 * keys), one per node in `peers`, each over the keys `self` and that peer
 * both hold under `m`. Copies that accepted nothing (promises only) are left
 * out: there is nothing to carry. Placement is computed once per group.
 */
export function sharedPageDigests(
  m: Membership,
  self: string,
  peers: readonly string[],
  page: { entries: ReadonlyArray<{ key: Buffer; state: AcceptorState }>; lost?: readonly Buffer[] | undefined },
): Map<string, { digest: Buffer; count: number }> {
  const digests = new Map(peers.map((p) => [p, new RangeDigest()]));
  const byGroup = new Map<string, string[]>();
  const add = (key: Buffer, accepted: Ballot | null): void => {
    let holders: string[] | undefined;
    try {
      const group = groupOf(key);
      const id = group.toString('latin1');
      holders = byGroup.get(id);
      if (!holders) byGroup.set(id, (holders = holdersOfRecord(m, key)));
    } catch {
      return; // not a record key of the key schema: placed nowhere, compared by nobody
    }
    if (!holders.includes(self)) return;
    for (const h of holders) digests.get(h)?.add(key, accepted);
  };
  for (const e of page.entries) if (e.state.accepted.counter > 0) add(e.key, e.state.accepted);
  for (const key of page.lost ?? []) add(key, null);
  return new Map([...digests].map(([p, d]) => [p, { digest: d.digest(), count: d.count }]));
}

/** sharedPageDigests for one peer. */
export function sharedPageDigest(
  m: Membership,
  self: string,
  peer: string,
  page: { entries: ReadonlyArray<{ key: Buffer; state: AcceptorState }>; lost?: readonly Buffer[] | undefined },
): { digest: Buffer; count: number } {
  return sharedPageDigests(m, self, [peer], page).get(peer)!;
}

/**
 * Buckets: the key space cut into RECORD_BUCKETS parts by a hash of the key,
 * so that each part holds a like share of the records whatever the schema's
 * key order. A node keeps, per other node and bucket, the XOR of one item
 * hash per record both should hold (BucketDigests): a change of a record's
 * accepted ballot is two XORs, and a heal pass asks each peer for its
 * RECORD_BUCKETS digests (one frame) instead of reading the store. Only the
 * buckets whose digests differ are compared key by key. XOR of 128-bit item
 * hashes of distinct keys: two sets collide only if some subset's hashes
 * XOR to zero, about 2^-128 for sets that are not made to collide.
 */
export const RECORD_BUCKETS = 1024;
export const BUCKET_DIGEST_BYTES = 16;

export function recordBucket(key: Buffer): number {
  return crc32(key) & (RECORD_BUCKETS - 1);
}

/** What a copy of a key holds for the digests: the accepted ballot, or 'lost' (fails its checksum). */
export type DigestMark = Ballot | 'lost';

export function itemHash(key: Buffer, mark: DigestMark): Buffer {
  const h = createHash('sha256');
  const head = Buffer.alloc(11);
  head.writeUInt16BE(key.length, 0);
  head[2] = mark === 'lost' ? 0 : 1;
  head.writeDoubleBE(mark === 'lost' ? 0 : mark.counter, 3);
  h.update(head);
  h.update(key);
  if (mark !== 'lost') h.update(mark.proposer, 'hex');
  return h.digest().subarray(0, BUCKET_DIGEST_BYTES);
}

/** XOR digests and counts of every bucket for one peer. */
export class BucketDigests {
  readonly xor = Buffer.alloc(RECORD_BUCKETS * BUCKET_DIGEST_BYTES);
  readonly counts = new Uint32Array(RECORD_BUCKETS);

  /** Adds (sign 1) or takes out (sign -1) one item. */
  apply(bucket: number, item: Buffer, sign: 1 | -1 | 0): void {
    const at = bucket * BUCKET_DIGEST_BYTES;
    for (let i = 0; i < BUCKET_DIGEST_BYTES; i++) this.xor[at + i]! ^= item[i]!;
    this.counts[bucket]! += sign; // modulo 2^32: a change may come before the walk that it undoes
  }

  digestOf(bucket: number): Buffer {
    return this.xor.subarray(bucket * BUCKET_DIGEST_BYTES, (bucket + 1) * BUCKET_DIGEST_BYTES);
  }

  /** Buckets whose digest or count differs from `other`'s. */
  differing(other: { xor: Buffer; counts: ArrayLike<number> }): number[] {
    const out: number[] = [];
    for (let b = 0; b < RECORD_BUCKETS; b++) {
      if (this.counts[b] !== other.counts[b] || !this.digestOf(b).equals(other.xor.subarray(b * BUCKET_DIGEST_BYTES, (b + 1) * BUCKET_DIGEST_BYTES))) out.push(b);
    }
    return out;
  }
}

/**
 * Chunks are cut into as many buckets by the top bits of their id (a hash
 * already), so a bucket is a range of ids: 64 of the chunk store's 65 536
 * fan-out directories. A chunk's item is its id's first 16 bytes: a chunk is
 * held or not, and its bytes are checked against the id by whoever reads it.
 */
export const CHUNK_BUCKETS = RECORD_BUCKETS;

export function chunkBucket(id: Buffer): number {
  return ((id[0]! << 8) | id[1]!) >> (16 - Math.log2(CHUNK_BUCKETS));
}

export function chunkItem(id: Buffer): Buffer {
  return id.subarray(0, BUCKET_DIGEST_BYTES);
}
