// Restoring R copies of every record and chunk. Walks every node's records and
// chunks page by page; a record whose replicas disagree or miss it gets a full
// CASPaxos round that writes the chosen value to all of its replicas; a chunk
// missing from one of its placement nodes is copied there from a verified
// replica. Idempotent, safe while the cluster is in use (it only ever writes
// chosen values and immutable chunks), and resumable from a checkpoint.
import type { ChunkId } from '../util/ids.js';
import { compareBallots } from '../util/ballot.js';
import type { ClusterKeySpace } from './cluster-keyspace.js';
import type { Peer } from './peers.js';
import { purgeWithGrace } from '../keyspace/tombstones.js';

export interface RepairCheckpoint {
  phase: 'records' | 'chunks' | 'done';
  /** Index into the cluster's node list. */
  node: number;
  /** Hex of the last key / chunk id finished on that node. */
  cursor: string | null;
}

export interface RepairCounts {
  recordsScanned: number;
  recordsRepaired: number;
  tombstonesPurged: number;
  chunksScanned: number;
  chunksRepaired: number;
  failures: number;
  /** Nodes skipped because they were down. */
  nodesDown: string[];
}

export interface RepairOptions {
  /** Count what needs repair without writing anything. */
  dryRun?: boolean;
  signal?: AbortSignal;
  checkpoint?: RepairCheckpoint | null;
  saveCheckpoint?: (c: RepairCheckpoint) => Promise<void>;
  onProgress?: (what: string, counts: RepairCounts) => void;
  onFailure?: (what: string, error: string) => void;
  pageSize?: number;
}

export async function repairCluster(ks: ClusterKeySpace, opts: RepairOptions = {}): Promise<RepairCounts> {
  const counts: RepairCounts = { recordsScanned: 0, recordsRepaired: 0, tombstonesPurged: 0, chunksScanned: 0, chunksRepaired: 0, failures: 0, nodesDown: [] };
  const start = opts.checkpoint ?? { phase: 'records', node: 0, cursor: null };
  const page = opts.pageSize ?? 500;
  const seenKeys = new Set<string>();
  const seenChunks = new Set<string>();
  /** Deletes every replica holds: purged at the end, once their grace has run. */
  const settledDeletes: Buffer[] = [];
  const save = async (c: RepairCheckpoint): Promise<void> => {
    if (opts.saveCheckpoint) await opts.saveCheckpoint(c);
  };

  if (start.phase === 'records') {
    for (let i = start.node; i < ks.peers.length; i++) {
      const peer = ks.peers[i]!;
      if (!peer.up) {
        counts.nodesDown.push(peer.id);
        continue;
      }
      let cursor: Buffer | null = i === start.node && start.cursor ? Buffer.from(start.cursor, 'hex') : null;
      for (;;) {
        opts.signal?.throwIfAborted();
        const from = cursor ? Buffer.concat([cursor, Buffer.from([0])]) : Buffer.from([0]);
        const reply = await peer.track((c) => c.scan(from, null, page));
        for (const e of reply.entries) {
          const id = e.key.toString('latin1');
          if (seenKeys.has(id)) continue;
          seenKeys.add(id);
          counts.recordsScanned++;
          await repairRecord(ks, e.key, opts, counts, settledDeletes);
        }
        const last: Buffer | null = reply.entries.at(-1)?.key ?? null;
        if (!reply.next || !last) break;
        cursor = last;
        await save({ phase: 'records', node: i, cursor: last.toString('hex') });
        opts.onProgress?.(`records on ${peer.id}`, counts);
      }
      opts.onProgress?.(`records on ${peer.id}`, counts);
      await save({ phase: 'records', node: i + 1, cursor: null });
    }
  }

  if (start.phase !== 'done') {
    const first = start.phase === 'chunks' ? start.node : 0;
    for (let i = first; i < ks.peers.length; i++) {
      const peer = ks.peers[i]!;
      if (!peer.up) {
        if (!counts.nodesDown.includes(peer.id)) counts.nodesDown.push(peer.id);
        continue;
      }
      let after = start.phase === 'chunks' && i === start.node && start.cursor ? (start.cursor as ChunkId) : null;
      for (;;) {
        opts.signal?.throwIfAborted();
        const listed = await peer.track((c) => c.listChunks(after, page));
        const ids = listed.filter((id) => !seenChunks.has(id));
        for (const id of ids) seenChunks.add(id);
        counts.chunksScanned += ids.length;
        await repairChunks(ks, ids, opts, counts);
        if (listed.length < page) break;
        after = listed.at(-1)!;
        await save({ phase: 'chunks', node: i, cursor: after });
        opts.onProgress?.(`chunks on ${peer.id}`, counts);
      }
      opts.onProgress?.(`chunks on ${peer.id}`, counts);
      await save({ phase: 'chunks', node: i + 1, cursor: null });
    }
    await save({ phase: 'done', node: 0, cursor: null });
  }
  if (settledDeletes.length > 0) {
    opts.onProgress?.('deletes (purged once settled for the tombstone grace)', counts);
    await purgeWithGrace(
      settledDeletes,
      (key) => ks.registers.purgeSettledTombstone(key),
      () => counts.tombstonesPurged++,
      (key, err) => {
        counts.failures++;
        opts.onFailure?.(`record ${key.toString('hex')}`, (err as Error).message);
      },
      opts.signal,
    );
  }
  return counts;
}

async function repairRecord(ks: ClusterKeySpace, key: Buffer, opts: RepairOptions, counts: RepairCounts, settledDeletes: Buffer[]): Promise<void> {
  try {
    const states = await ks.registers.states(key);
    const held = states.filter((s) => s.state && s.state.value.kind !== 'empty');
    const first = held[0]?.state;
    const healthy =
      first !== undefined &&
      first !== null &&
      held.length === states.length &&
      held.every((s) => compareBallots(s.state!.accepted, first.accepted) === 0);
    if (healthy) {
      // A delete every replica has seen is finished: reclaim it.
      if (!opts.dryRun && first.value.kind === 'tombstone') settledDeletes.push(key);
      return;
    }
    if (held.length === 0 && states.every((s) => s.state)) return; // promises only, nothing to copy
    if (opts.dryRun) {
      counts.recordsRepaired++;
      return;
    }
    const r = await ks.registers.repair(key);
    if (r) counts.recordsRepaired++;
    if (r && r.acked < r.of) {
      counts.failures++;
      opts.onFailure?.(`record ${key.toString('hex')}`, `only ${r.acked} of ${r.of} replicas hold it after repair`);
    }
  } catch (err) {
    counts.failures++;
    opts.onFailure?.(`record ${key.toString('hex')}`, (err as Error).message);
  }
}

async function repairChunks(ks: ClusterKeySpace, ids: ChunkId[], opts: RepairOptions, counts: RepairCounts): Promise<void> {
  // Ask each placement node once per page which of its chunks it has.
  const byNode = new Map<Peer, ChunkId[]>();
  for (const id of ids) {
    for (const p of ks.chunks.replicasOf(id)) {
      const list = byNode.get(p) ?? [];
      list.push(id);
      byNode.set(p, list);
    }
  }
  const missing: Array<{ id: ChunkId; peer: Peer }> = [];
  for (const [peer, list] of byNode) {
    try {
      const has = await peer.track((c) => c.hasChunks(list));
      list.forEach((id, i) => {
        if (!has[i]) missing.push({ id, peer });
      });
    } catch (err) {
      counts.failures += list.length;
      opts.onFailure?.(`chunks on ${peer.id}`, (err as Error).message);
    }
  }
  for (const { id, peer } of missing) {
    if (opts.dryRun) {
      counts.chunksRepaired++;
      continue;
    }
    try {
      await ks.chunks.copyTo(id, peer, Date.now() + ks.opts.requestTimeoutMs);
      counts.chunksRepaired++;
    } catch (err) {
      counts.failures++;
      opts.onFailure?.(`chunk ${id} to ${peer.id}`, (err as Error).message);
    }
  }
}
