// The key space over many storage nodes: placement picks each key's R nodes,
// registers run CASPaxos on them, chunks are written to a W-of-R quorum.
import type { PurgeOutcome } from '../keyspace/tombstones.js';
import type { ChunkId } from '../util/ids.js';
import type { Logger } from '../util/log.js';
import { QfsError } from '../util/errors.js';
import { KEEP, recordKey, type CallOpts, type ChangeFn, type MaintainableKeySpace, type RawRecord, type ScanPage } from '../keyspace/types.js';
import { Chunks } from './chunks.js';
import * as maintenance from './maintenance.js';
import { Peer, type PeerSpec } from './peers.js';
import { place } from './placement.js';
import { Registers } from './registers.js';
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
}

export class ClusterKeySpace implements MaintainableKeySpace {
  readonly peers: Peer[];
  readonly registers: Registers;
  readonly chunks: Chunks;
  readonly scopes: ClusterScopes;
  private readonly byId: Map<string, Peer>;
  private hintTimer: NodeJS.Timeout | null = null;
  private draining = false;
  private closed = false;

  constructor(readonly opts: ClusterOptions) {
    if (opts.replication > opts.nodes.length) {
      throw new QfsError('bad_request', `replication ${opts.replication} needs at least that many nodes; ${opts.nodes.length} configured`);
    }
    const peerOpts = {
      secret: opts.secret,
      clusterName: opts.clusterName,
      log: opts.log.child({ component: 'rpc-client' }),
      ...(opts.ca ? { ca: opts.ca } : {}),
      requestTimeoutMs: opts.requestTimeoutMs,
      connectTimeoutMs: opts.connectTimeoutMs,
      // A node that is down must not hold every operation for the whole deadline.
      connectWaitMs: Math.min(opts.connectTimeoutMs, 1000),
    };
    this.peers = opts.nodes.map((n) => new Peer(n, peerOpts));
    this.byId = new Map(this.peers.map((p) => [p.id, p]));
    this.registers = new Registers((group) => place(this.peers, group, opts.replication), {
      replication: opts.replication,
      requestTimeoutMs: opts.requestTimeoutMs,
      log: opts.log.child({ component: 'registers' }),
      ...(opts.tombstoneGraceMs !== undefined ? { tombstoneGraceMs: opts.tombstoneGraceMs } : {}),
    });
    this.chunks = new Chunks((id) => place(this.peers, Buffer.from(id, 'hex'), opts.replication), {
      writeQuorum: opts.writeQuorum,
      requestTimeoutMs: opts.requestTimeoutMs,
      log: opts.log.child({ component: 'chunks' }),
    });
    this.scopes = new ClusterScopes(this.registers, this, {
      periodMs: opts.scopeLeaseMs ?? 5000,
      drift: opts.clockDrift ?? 0.05,
      reachable: (group) => {
        const replicas = place(this.peers, recordKey(group, Buffer.alloc(0)), opts.replication);
        return replicas.filter((p) => p.up).length >= Math.floor(opts.replication / 2) + 1;
      },
    });
    for (const p of this.peers) p.connect();
    const interval = opts.hintIntervalMs ?? 2000;
    if (interval > 0) {
      this.hintTimer = setInterval(() => void this.drainHints(), interval);
      this.hintTimer.unref();
    }
  }

  peer(id: string): Peer | undefined {
    return this.byId.get(id);
  }

  /** Waits until every node is connected, or `timeoutMs` passed; returns the ids still down. */
  /**
   * Calls `fn` with a lease key when a node asks this client to give that
   * scope lease back (another session was refused reading the scope). One
   * recall may come from several nodes.
   */
  onLeaseRecall(fn: (lease: Buffer) => void): void {
    for (const p of this.peers) p.client.onLeaseRecall(fn);
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
    for (const p of this.peers) p.close();
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
