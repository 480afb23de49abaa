// Self-heal's bucket digests of this node's records and chunks, kept up to
// date as they change (src/util/range-digest.ts, "Buckets"): per other node
// of the membership, per bucket, the XOR of the item hashes of what this node
// and that node both should hold. Built from the store's own listing (the
// record store walks its keys; the chunk store keeps its ids in memory) the
// first time a peer asks under a membership epoch, and again after a write
// rolled back; then moved by the store's changes, which it tells
// synchronously. So a heal pass over replicas that agree reads nothing from
// disk. The build walks a snapshot of the store a slice at a time, so a big
// store does not stop the node from serving meanwhile: the listener is set
// in the same turn as the snapshot, and changes are XOR deltas and count
// steps (modulo 2^32), so walk and changes add up to the store whatever
// order they come in.
import { QfsError } from '../util/errors.js';
import type { Membership } from '../util/membership.js';
import { BucketDigests, chunkBucket, chunkItem, itemHash, recordBucket, type DigestMark } from '../util/range-digest.js';
import { holdersOfChunk, holdersOfRecord } from '../util/replica-sets.js';
import { groupOf } from '../util/record-key.js';

/** Placements remembered (per record group) before the cache starts over. */
const PLACEMENT_CACHE = 50_000;

export interface DigestListener<Mark> {
  changed(key: Buffer, before: Mark | null, after: Mark | null): void;
  unsure(): void;
}

/** A store that tells of its changes, and walks what it holds as of a moment. */
export interface DigestSource<Mark> {
  listen(listener: DigestListener<Mark> | null): void;
  snapshotMarks(): { take(n: number): Array<[Buffer, Mark]> };
}

/** Items walked per event turn while digests are built. */
const BUILD_SLICE = 2000;

/** What the digests of one kind of item need: its bucket, its item hash, who holds it, and what placement is cached by. */
export interface DigestKind<Mark> {
  bucket(key: Buffer): number;
  item(key: Buffer, mark: Mark): Buffer;
  holders(m: Membership, key: Buffer): string[];
  /** Keys with the same placement share this (a record's group); null: the key is placed nowhere. */
  placedBy(key: Buffer): string | null;
}

export const RECORD_DIGESTS: DigestKind<DigestMark> = {
  bucket: recordBucket,
  item: itemHash,
  holders: holdersOfRecord,
  placedBy(key) {
    try {
      return groupOf(key).toString('latin1');
    } catch {
      return null; // not a record key of the key schema
    }
  },
};

export const CHUNK_DIGESTS: DigestKind<'held'> = {
  bucket: chunkBucket,
  item: chunkItem,
  holders: holdersOfChunk,
  placedBy: () => '', // chunks are placed one by one: no cache
};

interface Built {
  m: Membership;
  byPeer: Map<string, BucketDigests>;
  /** Settles when the walk is done (or was given up for a newer build). */
  ready: Promise<void>;
}

export class SharedDigests<Mark> implements DigestListener<Mark> {
  private built: Built | null = null;
  private readonly holdersByGroup = new Map<string, string[] | null>();
  /** Listings of the store made to build the digests (for tests and /metrics). */
  builds = 0;

  constructor(
    private readonly source: DigestSource<Mark>,
    private readonly kind: DigestKind<Mark>,
    private readonly nodeId: string,
    private readonly membership: () => Membership | null,
  ) {}

  /** The digests of what this node and `peer` both should hold, under the membership this node holds. */
  async forPeer(peer: string): Promise<BucketDigests> {
    for (let tries = 0; tries < 3; tries++) {
      const m = this.membership();
      if (!m) throw new QfsError('epoch_ahead', 'this node knows no membership yet');
      let built = this.built;
      if (!built || built.m.epoch !== m.epoch) built = this.rebuild(m);
      await built.ready;
      if (this.built === built) return built.byPeer.get(peer) ?? new BucketDigests();
    }
    throw new QfsError('unavailable', 'the digests were rebuilt three times while this request waited (writes failing?)');
  }

  changed(key: Buffer, before: Mark | null, after: Mark | null): void {
    const built = this.built;
    if (!built) return;
    if (before !== null) this.apply(built, key, before, -1);
    if (after !== null) this.apply(built, key, after, 1);
  }

  unsure(): void {
    this.built = null;
    this.source.listen(null);
  }

  private rebuild(m: Membership): Built {
    let done = (): void => {};
    const built: Built = { m, byPeer: new Map(), ready: new Promise<void>((resolve) => (done = resolve)) };
    this.holdersByGroup.clear();
    this.built = built;
    this.builds++;
    // The same turn: the snapshot's moment is the listener's first.
    this.source.listen(this);
    const walk = this.source.snapshotMarks();
    const step = (): void => {
      if (this.built !== built) return done();
      let items: Array<[Buffer, Mark]>;
      try {
        items = walk.take(BUILD_SLICE);
      } catch {
        this.built = null;
        return done();
      }
      for (const [key, mark] of items) this.apply(built, key, mark, 1);
      if (items.length < BUILD_SLICE) done();
      else setImmediate(step);
    };
    step();
    return built;
  }

  private apply(built: Built, key: Buffer, mark: Mark, sign: 1 | -1): void {
    const holders = this.holders(built.m, key);
    if (!holders) return;
    const bucket = this.kind.bucket(key);
    const item = this.kind.item(key, mark);
    for (const h of holders) {
      if (h === this.nodeId) continue;
      let d = built.byPeer.get(h);
      if (!d) built.byPeer.set(h, (d = new BucketDigests()));
      d.apply(bucket, item, sign);
    }
  }

  /** The key's holders when this node is one of them; null otherwise (or for a key placed nowhere). */
  private holders(m: Membership, key: Buffer): string[] | null {
    const group = this.kind.placedBy(key);
    if (group === null) return null;
    let holders = group === '' ? undefined : this.holdersByGroup.get(group);
    if (holders === undefined) {
      const all = this.kind.holders(m, key);
      holders = all.includes(this.nodeId) ? all : null;
      if (group !== '') {
        if (this.holdersByGroup.size >= PLACEMENT_CACHE) this.holdersByGroup.clear();
        this.holdersByGroup.set(group, holders);
      }
    }
    return holders;
  }
}
