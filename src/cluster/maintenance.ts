// The key space's maintenance walks over many nodes (fsck, gc): every record
// and every chunk id that any node holds, merged across nodes page by page,
// and gc's age-conditional chunk delete on every node that holds a copy.
//
// Completeness: a chosen value lives on a majority of its key's R replicas, so
// a walk that reached all but at most R - majority nodes has seen every chosen
// value (each key keeps at least one majority member among the nodes asked).
// With more nodes down the walk still runs, but says it is incomplete, and gc
// must then delete nothing on its strength.
import type { ChunkId } from '../util/ids.js';
import { compareBallots } from '../util/ballot.js';
import type { CallOpts, RawRecord } from '../keyspace/types.js';
import type { AcceptorState } from '../util/paxos.js';
import { open } from '../util/envelope.js';
import type { Peer } from './peers.js';

export interface MaintenanceContext {
  peers: readonly Peer[];
  replication: number;
  requestTimeoutMs: number;
}

/** How many nodes may be unreachable while a walk still sees every chosen value. */
export function toleratedDown(replication: number): number {
  return replication - (Math.floor(replication / 2) + 1);
}

interface Reply<T> {
  peer: Peer;
  items: T[];
  more: boolean;
}

/** One page from every reachable node; down or failing nodes are counted, not fatal. */
async function fromEveryNode<T>(ctx: MaintenanceContext, call: (p: Peer) => Promise<{ items: T[]; more: boolean }>): Promise<{ replies: Reply<T>[]; missing: number }> {
  const results = await Promise.all(
    ctx.peers.map(async (peer) => {
      if (!peer.up) return null;
      try {
        return { peer, ...(await call(peer)) };
      } catch {
        return null;
      }
    }),
  );
  const replies = results.filter((r): r is Reply<T> => r !== null);
  return { replies, missing: ctx.peers.length - replies.length };
}

/**
 * Items below the smallest last item of a truncated reply are complete in
 * every reply; the page ends there.
 */
function horizonOf<T>(replies: ReadonlyArray<Reply<T>>, cmp: (a: T, b: T) => number): T | null {
  let h: T | null = null;
  for (const r of replies) {
    const last = r.items.at(-1);
    if (r.more && last !== undefined && (h === null || cmp(last, h) < 0)) h = last;
  }
  return h;
}

export async function listRecords(
  ctx: MaintenanceContext,
  after: Buffer | null,
  limit: number,
  opts?: CallOpts,
): Promise<{ records: RawRecord[]; next: Buffer | null; complete: boolean }> {
  const deadline = Date.now() + (opts?.timeoutMs ?? ctx.requestTimeoutMs);
  const from = after ? Buffer.concat([after, Buffer.from([0])]) : Buffer.from([0]);
  const { replies, missing } = await fromEveryNode<{ key: Buffer; state: AcceptorState }>(ctx, async (p) => {
    const r = await p.track((c) => c.scan(from, null, limit, p.callOpts(deadline, opts?.signal)));
    return { items: r.entries, more: r.next !== null };
  });
  const horizon = horizonOf(replies, (a, b) => Buffer.compare(a.key, b.key));
  const byKey = new Map<string, Array<{ key: Buffer; state: AcceptorState }>>();
  for (const r of replies) {
    for (const e of r.items) {
      if (horizon && Buffer.compare(e.key, horizon.key) > 0) continue;
      const id = e.key.toString('latin1');
      const list = byKey.get(id) ?? [];
      list.push(e);
      byKey.set(id, list);
    }
  }
  const records: RawRecord[] = [];
  for (const list of byKey.values()) {
    list.sort((a, b) => compareBallots(b.state.accepted, a.state.accepted));
    let value: Buffer | null = null;
    let tombstone = false;
    const others: Buffer[] = [];
    list.forEach((e, i) => {
      if (e.state.value.kind === 'empty') return;
      let payload: Buffer | null;
      try {
        payload = open(e.state.value).payload;
      } catch {
        payload = null; // a malformed envelope is the record store's problem (scrub of records), not a value
      }
      if (e.state.value.kind === 'tombstone') tombstone = true;
      if (i === 0) value = payload;
      else if (payload && !(value !== null && payload.equals(value)) && !others.some((o) => o.equals(payload!))) others.push(payload);
    });
    records.push({ key: list[0]!.key, value, others, tombstone });
  }
  records.sort((a, b) => Buffer.compare(a.key, b.key));
  return { records, next: horizon ? horizon.key : null, complete: missing <= toleratedDown(ctx.replication) };
}

export async function listChunks(
  ctx: MaintenanceContext,
  after: ChunkId | null,
  limit: number,
  opts?: CallOpts,
): Promise<{ ids: ChunkId[]; next: ChunkId | null; complete: boolean }> {
  const deadline = Date.now() + (opts?.timeoutMs ?? ctx.requestTimeoutMs);
  const { replies, missing } = await fromEveryNode<ChunkId>(ctx, async (p) => {
    const ids = await p.track((c) => c.listChunks(after, limit, p.callOpts(deadline, opts?.signal)));
    return { items: ids, more: ids.length === limit };
  });
  const horizon = horizonOf(replies, (a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const ids = new Set<ChunkId>();
  for (const r of replies) for (const id of r.items) if (horizon === null || id <= horizon) ids.add(id);
  return { ids: [...ids].sort(), next: horizon, complete: missing <= toleratedDown(ctx.replication) };
}

/** The copy on every reachable node; a node that fails keeps its copy (the next gc gets it). */
export async function sweepChunk(ctx: MaintenanceContext, id: ChunkId, minAgeMs: number, opts?: CallOpts): Promise<{ bytes: number; copies: number }> {
  const deadline = Date.now() + (opts?.timeoutMs ?? ctx.requestTimeoutMs);
  const freed = await Promise.all(
    ctx.peers.map(async (p) => {
      if (!p.up) return 0;
      try {
        return await p.track((c) => c.sweepChunk(id, minAgeMs, p.callOpts(deadline, opts?.signal)));
      } catch {
        return 0;
      }
    }),
  );
  return { bytes: freed.reduce((a, b) => a + b, 0), copies: freed.filter((b) => b > 0).length };
}
