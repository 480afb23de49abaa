// The key space over many storage nodes: placement picks each key's R nodes,
// registers run CASPaxos on them, chunks are written to a W-of-R quorum.
import type { PurgeOutcome } from '../keyspace/tombstones.js';
import type { ChunkId } from '../util/ids.js';
import type { Logger } from '../util/log.js';
import { QfsError } from '../util/errors.js';
import { KEEP, recordKey, type CallOpts, type ChangeFn, type MaintainableKeySpace, type RawRecord, type ScanPage } from '../keyspace/types.js';
import { Chunks } from './chunks.js';
import * as maintenance from './maintenance.js';
import { Peer, type MembershipHooks, type PeerSpec } from './peers.js';
import { Registers } from './registers.js';
import { MembershipView } from './membership-view.js';
import { decodeMembership, initialMembership, type Membership } from '../util/membership.js';
import { ClusterScopes } from './scope-lease.js';

export interface ClusterOptions {
  clusterName: string;
  secret: Buffer;
  nodes: readonly PeerSpec[];
  replication: number;
  writeQuorum: number;
  requestTimeoutMs: number;
  connectTimeoutMs: number;
  log: Logger;
  ca?: Buffer;
  /** How often hinted chunk copies are retried, ms (0 disables the background loop). */
  hintIntervalMs?: number;
  /** How long a delete stays settled before it is purged (see Registers). */
  tombstoneGraceMs?: number;
  /** Scope leases (directory write-behind): lease period and clock drift bound. */
  scopeLeaseMs?: number;
  clockDrift?: number;
  /** How long accepts written behind wait for company before they leave (peers.ts, BEHIND_GATHER_MS). */
  behindGatherMs?: number;
  /** How long a background learn or prepare waits to leave with other frames to its node (tests; default RIDE_MS). */
  rideMs?: number;
}

export class ClusterKeySpace implements MaintainableKeySpace {
  readonly view: MembershipView;
  readonly registers: Registers;
  readonly chunks: Chunks;
  readonly scopes: ClusterScopes;
  /** Settles once the nodes were asked for the membership they know (see syncMembership). */
  readonly ready: Promise<void>;
  private readonly recallListeners: Array<(lease: Buffer) => void> = [];
  private readonly backListeners: Array<(nodeId: string) => void> = [];
  private hintTimer: NodeJS.Timeout | null = null;
  private draining = false;
  private closed = false;

  constructor(readonly opts: ClusterOptions) {
    if (opts.nodes.length === 0) throw new QfsError('bad_request', 'no nodes configured');
    const peerOpts = {
      secret: opts.secret,
      clusterName: opts.clusterName,
      log: opts.log.child({ component: 'rpc-client' }),
      ...(opts.ca ? { ca: opts.ca } : {}),
      requestTimeoutMs: opts.requestTimeoutMs,
      connectTimeoutMs: opts.connectTimeoutMs,
      // A node that is down must not hold every operation for the whole deadline.
      connectWaitMs: Math.min(opts.connectTimeoutMs, 1000),
      ...(opts.behindGatherMs !== undefined ? { behindGatherMs: opts.behindGatherMs } : {}),
      ...(opts.rideMs !== undefined ? { rideMs: opts.rideMs } : {}),
    };
    // cluster.json's node list: the bootstrap membership (what format hands every node) and the seeds to learn the current one from.
    // Fewer nodes than R: they are only seeds (epoch 0, nothing placed by it) until a node hands over the membership.
    const listed = opts.nodes.map((n) => ({ id: n.id, url: n.url, weight: n.weight, zone: n.zone }));
    const bootstrap: Membership =
      listed.length >= opts.replication ? initialMembership(listed, opts.replication) : { epoch: 0, r: opts.replication, nodes: listed.map((n) => ({ ...n, state: 'active' as const })), transition: null, queued: [] };
    const log = opts.log.child({ component: 'membership' });
    this.view = new MembershipView(
      bootstrap,
      (spec, hooks: MembershipHooks) => {
        const p = new Peer(spec, { ...peerOpts, membership: hooks });
        p.client.onLeaseRecall((lease) => {
          for (const fn of this.recallListeners) fn(lease);
        });
        p.onBack((back) => {
          for (const fn of this.backListeners) fn(back.id);
        });
        return p;
      },
      log,
    );
    this.registers = new Registers((group) => this.view.keyQuorum(group), {
      replication: opts.replication,
      requestTimeoutMs: opts.requestTimeoutMs,
      log: opts.log.child({ component: 'registers' }),
      ...(opts.tombstoneGraceMs !== undefined ? { tombstoneGraceMs: opts.tombstoneGraceMs } : {}),
    });
    this.view.onChange(() => this.registers.membershipChanged());
    this.chunks = new Chunks((id) => this.view.chunkWriters(Buffer.from(id, 'hex')), {
      readersOf: (id) => this.view.chunkReaders(Buffer.from(id, 'hex')),
      writeQuorum: opts.writeQuorum,
      requestTimeoutMs: opts.requestTimeoutMs,
      log: opts.log.child({ component: 'chunks' }),
    });
    this.scopes = new ClusterScopes(this.registers, this, {
      periodMs: opts.scopeLeaseMs ?? 5000,
      drift: opts.clockDrift ?? 0.05,
      log: opts.log.child({ component: 'leases' }),
      reachable: (group) => {
        const q = this.view.keyQuorum(recordKey(group, Buffer.alloc(0)).subarray(0, 1 + group.length));
        return q.sets.every((set) => set.filter((id) => this.view.peer(id)?.up).length >= Math.floor(set.length / 2) + 1);
      },
    });
    // A node that is down costs a second here, not the connect timeout: the others answer.
    this.ready = this.syncMembership(Math.min(opts.connectTimeoutMs, 1000));
    const interval = opts.hintIntervalMs ?? 2000;
    if (interval > 0) {
      const hintLog = opts.log.child({ component: 'hints' });
      // A background drain that fails is tried again at the next tick; one cut short by
      // close() (its peers gone under it) is no error at all.
      this.hintTimer = setInterval(() => {
        this.drainHints().catch((err: unknown) => {
          if (!this.closed) hintLog.warn({ err: (err as Error)?.message ?? String(err) }, 'copying hinted chunks and records failed; tried again later');
        });
      }, interval);
      this.hintTimer.unref();
    }
  }

  /** Peers of every member node (both node sets during a change). */
  get peers(): Peer[] {
    return this.view.peers;
  }

  get membership(): Membership {
    return this.view.membership;
  }

  peer(id: string): Peer | undefined {
    return this.view.peer(id);
  }

  /**
   * Asks every node it knows for the membership that node has learned and
   * takes the newest: a client started from an old cluster.json then places
   * its first calls by the current membership, not by a stale node list that
   * could pick majorities that do not meet the current ones. A node that knows
   * none (an unformatted cluster) says nothing; the bootstrap stands then.
   * Repeats while it learns something newer (its new nodes may know more).
   */
  private async syncMembership(timeoutMs: number): Promise<void> {
    const asked = new Set<string>();
    for (let round = 0; round < 8; round++) {
      const peers = this.view.peers.filter((p) => !asked.has(p.id));
      if (peers.length === 0) return;
      for (const p of peers) asked.add(p.id);
      const found = await Promise.all(
        peers.map((p) =>
          p.client
            .getMembership({ timeoutMs, connectWaitMs: timeoutMs })
            .then((b) => (b ? decodeMembership(b) : null))
            .catch(() => null),
        ),
      );
      let newest: Membership | null = null;
      for (const m of found) if (m && (!newest || m.epoch > newest.epoch)) newest = m;
      if (!newest || !this.view.adopt(newest)) return;
    }
  }

  /** Waits until every node is connected, or `timeoutMs` passed; returns the ids still down. */
  /**
   * Calls `fn` with a lease key when a node asks this client to give that
   * scope lease back (another session was refused reading the scope). One
   * recall may come from several nodes.
   */
  onLeaseRecall(fn: (lease: Buffer) => void): void {
    this.recallListeners.push(fn);
  }

  /** Calls `fn` with a node's id each time it answers again after it was seen unreachable. */
  onPeerBack(fn: (nodeId: string) => void): void {
    this.backListeners.push(fn);
  }

  async waitForPeers(timeoutMs: number, need = this.peers.length): Promise<string[]> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until && this.peers.filter((p) => p.up).length < need) await new Promise((r) => setTimeout(r, 20));
    return this.peers.filter((p) => !p.up).map((p) => p.id);
  }

  /** Copies what a node missed while it was away: hinted chunks, then hinted records. */
  async drainHints(): Promise<void> {
    if (this.draining || this.closed || (this.chunks.hints.size === 0 && this.registers.hints.size === 0)) return;
    this.draining = true;
    try {
      if (this.chunks.hints.size > 0) await this.chunks.drainHints();
      if (this.registers.hints.size > 0) await this.registers.drainHints();
    } finally {
      this.draining = false;
    }
  }

  read(key: Buffer, opts?: CallOpts): Promise<Buffer | null> {
    return this.registers.read(key, opts);
  }

  expedite(): void {
    for (const p of this.view.peers) p.expedite();
  }

  prepare(key: Buffer, opts?: CallOpts): Promise<void> {
    return this.registers.prepare(key, opts);
  }

  change(key: Buffer, fn: ChangeFn, opts?: CallOpts): Promise<Buffer | null> {
    return this.registers.change(key, fn, opts);
  }

  async delete(key: Buffer, opts?: CallOpts): Promise<void> {
    await this.registers.change(key, (old) => (old === null ? KEEP : null), opts);
  }

  scan(group: Buffer, startName: Buffer, endName: Buffer | null, opts?: CallOpts & { limit?: number }): Promise<ScanPage> {
    const prefix = Buffer.concat([Buffer.from([group.length]), group]);
    const start = Buffer.concat([prefix, startName]);
    // Without an end name the range ends where the group prefix ends.
    const end = endName ? Buffer.concat([prefix, endName]) : prefixEnd(prefix);
    return this.registers.scan(prefix, start, end, opts?.limit ?? 1000, opts);
  }

  putChunk(bytes: Buffer, opts?: CallOpts): Promise<ChunkId> {
    return this.chunks.put(bytes, opts);
  }

  getChunk(id: ChunkId, opts?: CallOpts & { offset?: number; length?: number }): Promise<Buffer> {
    return this.chunks.get(id, opts);
  }

  hasChunk(id: ChunkId, opts?: CallOpts): Promise<boolean> {
    return this.chunks.has(id, opts);
  }

  private get maintenance(): maintenance.MaintenanceContext {
    return { peers: this.peers, replication: this.opts.replication, requestTimeoutMs: this.opts.requestTimeoutMs };
  }

  listRecords(after: Buffer | null, limit: number, opts?: CallOpts): Promise<{ records: RawRecord[]; next: Buffer | null; complete: boolean }> {
    return maintenance.listRecords(this.maintenance, after, limit, opts);
  }

  listChunks(after: ChunkId | null, limit: number, opts?: CallOpts): Promise<{ ids: ChunkId[]; next: ChunkId | null; complete: boolean }> {
    return maintenance.listChunks(this.maintenance, after, limit, opts);
  }

  sweepChunk(id: ChunkId, minAgeMs: number, opts?: CallOpts): Promise<{ bytes: number; copies: number }> {
    return maintenance.sweepChunk(this.maintenance, id, minAgeMs, opts);
  }

  purgeTombstone(key: Buffer, opts?: CallOpts): Promise<PurgeOutcome> {
    return this.registers.purgeSettledTombstone(key, opts);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.hintTimer) clearInterval(this.hintTimer);
    // The mount gave its leases back before this: its holder record says the session ended.
    await Promise.race([this.scopes.close(), new Promise((r) => setTimeout(r, 2000).unref())]);
    this.view.close();
  }
}

/** The smallest key greater than every key that starts with `prefix`. */
export function prefixEnd(prefix: Buffer): Buffer | null {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return null;
}
