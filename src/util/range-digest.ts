// What self-heal compares between two replicas for a range of record keys
// (docs/architecture.md, "Maintenance"): one SHA-256 over the keys both
// replicas should hold and the ballot each accepted, or a mark for a copy
// that failed its checksum (lost). Equal digests: nothing in the range differs
// between the two, and none of its records needs to cross the network; only a
// range whose digests differ is compared key by key. Both sides build it from
// the same store scan with the same filter, so equal stores give equal bytes.
import { createHash } from 'node:crypto';
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
