// A client's view of the cluster's membership (docs/architecture.md,
// "Membership"): the newest membership it has learned, one Peer per node of it
// (both node sets during a change), and where each key's calls go under it.
// It learns memberships only from nodes (what they report or refuse with) and
// from the membership record; it never makes one up, except the bootstrap from
// cluster.json that a formatted cluster's nodes all start with (epoch 1).
import { QfsError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { decodeMembership, encodeMembership, type MemberNode, type Membership } from '../util/membership.js';
import type { KeyQuorum } from './registers.js';
import type { MembershipHooks, Peer, PeerSpec } from './peers.js';
import { holdersOfChunk, isMembershipGroup, quorumSets, replicaSet } from '../util/replica-sets.js';

export { MEMBERSHIP_GROUP, MEMBERSHIP_KEY, isMembershipGroup } from '../util/replica-sets.js';

export class MembershipView implements MembershipHooks {
  private current: Membership;
  /** Null for the seeds-only bootstrap (epoch 0), which is never handed to a node. */
  private encoded: Buffer | null;
  private readonly byId = new Map<string, Peer>();
  private readonly listeners: Array<(m: Membership) => void> = [];
  /** Peers of nodes that left the membership, closed once their calls had time to end. */
  private retired: Peer[] = [];

  constructor(
    initial: Membership,
    private readonly makePeer: (spec: PeerSpec, hooks: MembershipHooks) => Peer,
    private readonly log: Logger,
  ) {
    this.current = initial;
    this.encoded = initial.epoch > 0 ? encodeMembership(initial) : null;
    this.syncPeers();
  }

  get membership(): Membership {
    return this.current;
  }

  get epoch(): number {
    return this.current.epoch;
  }

  /** Peers of every node of the membership (both node sets during a change), in membership order. */
  get peers(): Peer[] {
    return [...this.byId.values()];
  }

  peer(id: string): Peer | undefined {
    return this.byId.get(id);
  }

  onChange(fn: (m: Membership) => void): void {
    this.listeners.push(fn);
  }

  bytesOf(epoch: number): Buffer | null {
    return epoch === this.current.epoch ? this.encoded : null;
  }

  learn(bytes: Buffer, from: string): void {
    let m: Membership;
    try {
      m = decodeMembership(bytes);
    } catch (err) {
      this.log.warn({ node: from, err: (err as Error).message }, 'a node handed over a membership that does not decode; ignored');
      return;
    }
    this.adopt(m);
  }

  /** Takes `m` when it is newer than the current membership; true if it did. */
  adopt(m: Membership): boolean {
    if (m.epoch <= this.current.epoch) return false;
    const before = this.current;
    this.current = m;
    this.encoded = encodeMembership(m);
    this.syncPeers();
    this.log.info({ from: before.epoch, epoch: m.epoch, nodes: m.nodes.map((n) => n.id), next: m.transition?.next.map((n) => n.id) ?? null }, 'membership learned');
    for (const fn of this.listeners) fn(m);
    return true;
  }

  /** Every node of A and B, with its latest spec (B's, when both list it). */
  private members(): MemberNode[] {
    const all = new Map<string, MemberNode>();
    for (const n of this.current.nodes) all.set(n.id, n);
    for (const n of this.current.transition?.next ?? []) all.set(n.id, n);
    return [...all.values()];
  }

  private syncPeers(): void {
    const members = this.members();
    const ids = new Set(members.map((n) => n.id));
    for (const [id, p] of this.byId) {
      const spec = members.find((n) => n.id === id);
      if (!ids.has(id) || (spec && spec.url !== p.url)) {
        this.byId.delete(id);
        this.retire(p);
      }
    }
    for (const n of members) {
      if (this.byId.has(n.id)) continue;
      const p = this.makePeer({ id: n.id, url: n.url, weight: n.weight, zone: n.zone }, this);
      this.byId.set(n.id, p);
      p.connect();
    }
    for (const p of this.byId.values()) p.client.rpc.epoch = this.current.epoch;
  }

  private retire(p: Peer): void {
    this.retired.push(p);
    // Calls already on their way finish or fail on their own deadline; then the connection goes.
    setTimeout(() => {
      p.close();
      this.retired = this.retired.filter((x) => x !== p);
    }, 30_000).unref();
  }

  private requireMembership(): void {
    if (this.current.epoch === 0) {
      throw new QfsError('unavailable', `no node of ${this.peers.map((p) => p.id).join(', ')} has handed over the cluster's membership (cluster.json lists fewer nodes than R, so it cannot stand in for it)`);
    }
  }

  private peersOf(ids: readonly string[]): Peer[] {
    return ids.map((id) => {
      const p = this.byId.get(id);
      if (!p) throw new QfsError('internal', `membership epoch ${this.current.epoch} names node ${id} without a peer`);
      return p;
    });
  }

  /** A record group's acceptors and quorum sets under the current membership. */
  keyQuorum(encodedGroup: Buffer): KeyQuorum {
    const m = this.current;
    this.requireMembership();
    const sets = quorumSets(m, encodedGroup, isMembershipGroup(encodedGroup));
    return { acceptors: this.peersOf([...new Set(sets.flat())]), sets, epoch: m.epoch };
  }

  /**
   * Where a chunk is written: its R nodes under the node set the membership is
   * going to (B during a change: the mover then has nothing more to copy for
   * it), else under the current one.
   */
  chunkWriters(id: Buffer): Peer[] {
    const m = this.current;
    this.requireMembership();
    return this.peersOf(holdersOfChunk(m, id));
  }

  /** Where a chunk may be read: its writers first, then (during a change) its nodes under A, which the mover copies from. */
  chunkReaders(id: Buffer): Peer[] {
    const m = this.current;
    this.requireMembership();
    const b = replicaSet(m.transition?.next ?? m.nodes, m.r, id, false);
    const a = m.transition ? replicaSet(m.nodes, m.r, id, false) : [];
    return this.peersOf([...new Set([...b, ...a])]);
  }

  close(): void {
    for (const p of [...this.byId.values(), ...this.retired]) p.close();
    this.byId.clear();
    this.retired = [];
  }
}
