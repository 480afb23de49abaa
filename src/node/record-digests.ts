// Self-heal's bucket digests of this node's records, kept up to date as
// records change (src/util/range-digest.ts, "Buckets"): per other node of the
// membership, the XOR of the item hashes of the records this node and that
// node both hold. Built from one walk of the store the first time a peer asks
// under a membership epoch (and again after a write rolled back), then moved
// by the store's accepted-ballot changes; so a heal pass over a store whose
// replicas agree reads nothing from disk.
import { QfsError } from '../util/errors.js';
import type { Membership } from '../util/membership.js';
import { BucketDigests, itemHash, recordBucket, type DigestMark } from '../util/range-digest.js';
import { holdersOfRecord } from '../util/replica-sets.js';
import { groupOf } from '../util/record-key.js';
import type { AcceptedListener, AcceptedMark, RecordStore } from '../store/record-store.js';

/** Placements remembered per group before the cache starts over. */
const GROUP_CACHE = 50_000;

interface Built {
  m: Membership;
  byPeer: Map<string, BucketDigests>;
}

export class RecordDigests implements AcceptedListener {
  private built: Built | null = null;
  private readonly holdersByGroup = new Map<string, string[] | null>();
  /** Walks of the store made to build the digests (for tests and /metrics). */
  builds = 0;

  constructor(
    private readonly records: RecordStore,
    private readonly nodeId: string,
    private readonly membership: () => Membership | null,
  ) {}

  /** The digests of the records this node and `peer` both hold, under the membership this node holds. */
  forPeer(peer: string): BucketDigests {
    const m = this.membership();
    if (!m) throw new QfsError('epoch_ahead', 'this node knows no membership yet');
    let built = this.built;
    if (!built || built.m.epoch !== m.epoch) built = this.rebuild(m);
    return built.byPeer.get(peer) ?? new BucketDigests();
  }

  changed(key: Buffer, before: AcceptedMark, after: AcceptedMark): void {
    const built = this.built;
    if (!built) return;
    if (before !== null) this.apply(built, key, before, -1);
    if (after !== null) this.apply(built, key, after, 1);
  }

  unsure(): void {
    this.built = null;
    this.records.listen(null);
  }

  private rebuild(m: Membership): Built {
    const built: Built = { m, byPeer: new Map() };
    this.holdersByGroup.clear();
    this.built = built;
    this.builds++;
    this.records.listen(this, (key, mark) => this.apply(built, key, mark as DigestMark, 1));
    return built;
  }

  private apply(built: Built, key: Buffer, mark: DigestMark, sign: 1 | -1): void {
    const holders = this.holders(built.m, key);
    if (!holders) return;
    const bucket = recordBucket(key);
    const item = itemHash(key, mark);
    for (const h of holders) {
      if (h === this.nodeId) continue;
      let d = built.byPeer.get(h);
      if (!d) built.byPeer.set(h, (d = new BucketDigests()));
      d.apply(bucket, item, sign);
    }
  }

  /** The key's holders when this node is one of them; null otherwise (or for a key outside the schema). */
  private holders(m: Membership, key: Buffer): string[] | null {
    let group: string;
    try {
      group = groupOf(key).toString('latin1');
    } catch {
      return null;
    }
    let holders = this.holdersByGroup.get(group);
    if (holders === undefined) {
      if (this.holdersByGroup.size >= GROUP_CACHE) this.holdersByGroup.clear();
      const all = holdersOfRecord(m, key);
      holders = all.includes(this.nodeId) ? all : null;
      this.holdersByGroup.set(group, holders);
    }
    return holders;
  }
}
