// Verifying the bytes of every chunk copy. Each node pages through its own
// chunks and re-hashes each one on request (ChunkStore.verify, which moves a
// corrupt copy to quarantine/); a corrupt copy is replaced on that node from a
// verified copy on another replica (Chunks.copyTo). A chunk listed but gone by
// the time it is verified (deleted by gc) is counted as missing, not as an
// error.
//
// Nodes are scrubbed in parallel, each with a few verifications in flight: a
// node only ever hashes its own chunks, so the load on any one node is the
// same as when the nodes take turns, and the whole run takes as long as the
// largest node rather than the sum of all. `rateBytesPerSec` caps what one
// node hashes per second for clusters that are busy.
//
// Safe while the cluster is in use: chunks are immutable, a verification is
// serialised with puts and deletes of the same id on the node, and a copy is
// only ever replaced by bytes that hash to its id. Once started, a verification
// and the repair of what it found always finish, also after an abort: a copy
// quarantined but not yet replaced would be missing from its node (repair would
// restore it, but scrub would no longer see it). Resumable from a checkpoint.
import type { ChunkId } from '../util/ids.js';
import type { VerifyResult } from '../rpc/messages.js';
import type { ClusterKeySpace } from './cluster-keyspace.js';
import type { Peer } from './peers.js';

export interface ScrubNodeCounts {
  /** Copies verified (ok + corrupt + missing). */
  scanned: number;
  ok: number;
  /** Copies that failed their hash check (and were quarantined on the node). */
  corrupt: number;
  /** Corrupt copies replaced by a good copy from another replica. */
  repaired: number;
  /** Corrupt copies that could not be replaced (no good copy reachable). */
  failed: number;
  /** Listed but gone when verified: deleted meanwhile; not an error. */
  missing: number;
  /** Copies that could not be verified (the verify call failed). */
  errors: number;
}

export interface ScrubCounts extends ScrubNodeCounts {
  /** Per node id, for the nodes this run covers. */
  nodes: Record<string, ScrubNodeCounts>;
  /** Nodes skipped because they were down, or lost during the run. */
  nodesDown: string[];
  /** Chunk copies the nodes reported holding when their scrub started (for progress; approximate, resumed nodes included). */
  expected: number;
}

export interface ScrubNodeCheckpoint {
  /** The last chunk id finished on that node; every id up to it is done. */
  cursor: string | null;
  done: boolean;
  counts: ScrubNodeCounts;
}

export interface ScrubCheckpoint {
  version: 1;
  /** Keyed by node id. */
  nodes: Record<string, ScrubNodeCheckpoint>;
}

export interface ScrubOptions {
  /** Node ids to scrub; default every node. */
  nodes?: readonly string[];
  signal?: AbortSignal;
  checkpoint?: ScrubCheckpoint | null;
  saveCheckpoint?: (c: ScrubCheckpoint) => Promise<void>;
  onProgress?: (what: string, counts: ScrubCounts) => void;
  onFailure?: (what: string, error: string) => void;
  /** Chunk ids listed per call; default 200. */
  pageSize?: number;
  /** Verifications in flight per node; default 4. */
  concurrency?: number;
  /**
   * Most bytes one node hashes per second. The chunk list carries no sizes, so
   * each verification is charged the node's average chunk size (from its stat).
   */
  rateBytesPerSec?: number;
}

export function emptyNodeCounts(): ScrubNodeCounts {
  return { scanned: 0, ok: 0, corrupt: 0, repaired: 0, failed: 0, missing: 0, errors: 0 };
}

const COUNT_KEYS = ['scanned', 'ok', 'corrupt', 'repaired', 'failed', 'missing', 'errors'] as const;

/** A checkpoint read from a file, or null when it is not one. */
export function parseScrubCheckpoint(v: unknown): ScrubCheckpoint | null {
  if (typeof v !== 'object' || v === null) return null;
  const c = v as { version?: unknown; nodes?: unknown };
  if (c.version !== 1 || typeof c.nodes !== 'object' || c.nodes === null) return null;
  const nodes: Record<string, ScrubNodeCheckpoint> = {};
  for (const [id, raw] of Object.entries(c.nodes as Record<string, unknown>)) {
    if (typeof raw !== 'object' || raw === null) return null;
    const n = raw as { cursor?: unknown; done?: unknown; counts?: unknown };
    if (!(n.cursor === null || (typeof n.cursor === 'string' && /^[0-9a-f]{64}$/.test(n.cursor)))) return null;
    if (typeof n.done !== 'boolean' || typeof n.counts !== 'object' || n.counts === null) return null;
    const counts = emptyNodeCounts();
    for (const k of COUNT_KEYS) {
      const x = (n.counts as Record<string, unknown>)[k];
      if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) return null;
      counts[k] = x;
    }
    nodes[id] = { cursor: n.cursor, done: n.done, counts };
  }
  return { version: 1, nodes };
}

export async function scrubCluster(ks: ClusterKeySpace, opts: ScrubOptions = {}): Promise<ScrubCounts> {
  const peers = opts.nodes ? ks.peers.filter((p) => opts.nodes!.includes(p.id)) : ks.peers;
  if (opts.nodes) {
    const unknown = opts.nodes.filter((id) => !ks.peer(id));
    if (unknown.length > 0) throw new RangeError(`unknown node ${unknown.join(', ')}`);
  }
  const page = opts.pageSize ?? 200;
  const concurrency = Math.max(1, opts.concurrency ?? 4);
  const state: ScrubCheckpoint = { version: 1, nodes: {} };
  for (const p of peers) {
    const prev = opts.checkpoint?.nodes[p.id];
    state.nodes[p.id] = prev ? { cursor: prev.cursor, done: prev.done, counts: { ...prev.counts } } : { cursor: null, done: false, counts: emptyNodeCounts() };
  }
  const nodesDown: string[] = [];
  let expected = 0;
  const totals = (): ScrubCounts => {
    const c: ScrubCounts = { ...emptyNodeCounts(), nodes: {}, nodesDown: [...nodesDown], expected };
    for (const [id, n] of Object.entries(state.nodes)) {
      c.nodes[id] = { ...n.counts };
      for (const k of COUNT_KEYS) c[k] += n.counts[k];
    }
    return c;
  };
  // Saves are serialised so that a later checkpoint never lands before an earlier one.
  let saving: Promise<void> = Promise.resolve();
  const save = (): Promise<void> => {
    if (!opts.saveCheckpoint) return saving;
    const snapshot = JSON.parse(JSON.stringify(state)) as ScrubCheckpoint;
    const write = opts.saveCheckpoint;
    saving = saving.then(() => write(snapshot));
    return saving;
  };
  const timers = sleeper(opts.signal);
  const env: NodeEnv = { ks, opts, page, concurrency, save, totals, nodesDown, addExpected: (n) => (expected += n), sleep: timers.sleep };
  const results = await Promise.allSettled(peers.map((p) => scrubNode(env, p, state.nodes[p.id]!)));
  timers.dispose();
  await saving;
  opts.signal?.throwIfAborted();
  for (const r of results) if (r.status === 'rejected') throw r.reason;
  return totals();
}

interface NodeEnv {
  ks: ClusterKeySpace;
  opts: ScrubOptions;
  page: number;
  concurrency: number;
  save: () => Promise<void>;
  totals: () => ScrubCounts;
  nodesDown: string[];
  addExpected: (n: number) => void;
  sleep: (ms: number) => Promise<void>;
}

async function scrubNode(env: NodeEnv, peer: Peer, node: ScrubNodeCheckpoint): Promise<void> {
  const { ks, opts } = env;
  if (node.done) return;
  const lost = (err: unknown): void => {
    if (!env.nodesDown.includes(peer.id)) env.nodesDown.push(peer.id);
    if (err !== null) opts.onFailure?.(`node ${peer.id}`, (err as Error).message);
  };
  if (!peer.up) return lost(null);
  const timeoutMs = ks.opts.requestTimeoutMs;

  // The node's own figures: how many chunks to expect, and their average size for the rate limit.
  let avgBytes = 1024 * 1024;
  try {
    const s = await peer.track((c) => c.stat(peer.callOpts(Date.now() + timeoutMs)));
    env.addExpected(s.chunks);
    if (s.chunks > 0) avgBytes = Math.max(1, Math.round(s.chunkBytes / s.chunks));
  } catch (err) {
    if (!peer.up) return lost(err);
  }
  let nextSlot = 0;
  const pace = async (): Promise<void> => {
    if (!opts.rateBytesPerSec) return;
    const now = Date.now();
    const at = Math.max(now, nextSlot);
    nextSlot = at + (avgBytes / opts.rateBytesPerSec) * 1000;
    if (at > now) await env.sleep(at - now);
  };

  let after = node.cursor as ChunkId | null;
  for (;;) {
    if (opts.signal?.aborted) return;
    let listed: ChunkId[];
    try {
      listed = await peer.track((c) => c.listChunks(after, env.page, peer.callOpts(Date.now() + timeoutMs)));
    } catch (err) {
      return lost(err);
    }
    // Ids are handed out in order and every one taken is finished, so the ids
    // finished form a prefix of the page (unless the node went away mid-page).
    const finished = new Array<boolean>(listed.length).fill(false);
    let next = 0;
    let gone: unknown = null;
    const worker = async (): Promise<void> => {
      while (next < listed.length && gone === null) {
        await pace();
        if (opts.signal?.aborted || gone !== null || next >= listed.length) return;
        const i = next++;
        const outcome = await scrubOne(env, peer, listed[i]!, node.counts);
        if (outcome !== 'done') {
          gone ??= outcome.lost;
          return;
        }
        finished[i] = true;
        opts.onProgress?.(peer.id, env.totals());
      }
    };
    await Promise.all(Array.from({ length: Math.min(env.concurrency, listed.length) }, worker));
    let prefix = 0;
    while (prefix < listed.length && finished[prefix]) prefix++;
    if (prefix > 0) {
      node.cursor = listed[prefix - 1]!;
      after = listed[prefix - 1]!;
    }
    if (gone !== null) {
      await env.save();
      return lost(gone);
    }
    if (prefix < listed.length) {
      // aborted: keep what was finished for the next run
      await env.save();
      return;
    }
    if (listed.length < env.page) break;
    await env.save();
  }
  node.done = true;
  await env.save();
  opts.onProgress?.(peer.id, env.totals());
}

/** Verifies one copy and restores it when corrupt; 'done' unless the node went away. */
async function scrubOne(env: NodeEnv, peer: Peer, id: ChunkId, counts: ScrubNodeCounts): Promise<'done' | { lost: unknown }> {
  const { ks, opts } = env;
  const timeoutMs = ks.opts.requestTimeoutMs;
  let result: VerifyResult;
  try {
    // No abort signal: a verification that quarantined a copy must be followed by its repair.
    result = await peer.track((c) => c.verifyChunk(id, peer.callOpts(Date.now() + timeoutMs)));
  } catch (err) {
    if (!peer.up) return { lost: err };
    counts.errors++;
    opts.onFailure?.(`verify ${id} on ${peer.id}`, (err as Error).message);
    return 'done';
  }
  counts.scanned++;
  if (result === 'ok') counts.ok++;
  else if (result === 'missing') counts.missing++;
  else {
    counts.corrupt++;
    try {
      // Time for one failover to a second source (each call is bounded by the request timeout).
      await ks.chunks.copyTo(id, peer, Date.now() + 2 * timeoutMs);
      counts.repaired++;
    } catch (err) {
      counts.failed++;
      opts.onFailure?.(`restore ${id} on ${peer.id}`, `${(err as Error).message} (the bad copy is in quarantine; quorumfs repair restores the copy once a good one is reachable)`);
    }
  }
  return 'done';
}

/** Timers that all end early when `signal` aborts, with one abort listener however many wait. */
function sleeper(signal: AbortSignal | undefined): { sleep: (ms: number) => Promise<void>; dispose: () => void } {
  const waiting = new Set<() => void>();
  const wakeAll = (): void => {
    for (const f of [...waiting]) f();
  };
  signal?.addEventListener('abort', wakeAll, { once: true });
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const done = (): void => {
        clearTimeout(timer);
        waiting.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      waiting.add(done);
    });
  return { sleep, dispose: () => signal?.removeEventListener('abort', wakeAll) };
}

export interface RecordScrubCounts {
  /** Record states read back, on every node scrubbed. */
  checked: number;
  /** States that failed their checksum (lost copies). */
  lost: number;
  /** Lost copies healed: a repair round above the node's ceiling wrote the chosen value back. */
  healed: number;
  /** Lost copies not healed (no quorum of good copies reachable, or the repair failed). */
  failed: number;
}

/**
 * Every record state on every node scrubbed, read back and checked against
 * its checksum by the node (a scan that lists lost keys); each lost copy is
 * healed by a repair round, which the node takes only above its ceiling
 * (src/util/paxos.ts, lostState). Not checkpointed: reading states is cheap
 * beside hashing chunks.
 */
export async function scrubRecords(ks: ClusterKeySpace, opts: Pick<ScrubOptions, 'nodes' | 'signal' | 'onFailure'> & { pageSize?: number } = {}): Promise<RecordScrubCounts> {
  const counts: RecordScrubCounts = { checked: 0, lost: 0, healed: 0, failed: 0 };
  const peers = (opts.nodes ? ks.peers.filter((p) => opts.nodes!.includes(p.id)) : ks.peers).filter((p) => p.up);
  const page = opts.pageSize ?? 1000;
  await Promise.all(
    peers.map(async (peer) => {
      let from: Buffer = Buffer.from([0]);
      for (;;) {
        opts.signal?.throwIfAborted();
        let r;
        try {
          r = await peer.track((c) => c.scan(from, null, page, { timeoutMs: ks.opts.requestTimeoutMs, withLost: true }));
        } catch (err) {
          opts.onFailure?.(`records on ${peer.id}`, (err as Error).message);
          counts.failed++;
          return;
        }
        counts.checked += r.entries.length + (r.lost?.length ?? 0);
        for (const key of r.lost ?? []) {
          counts.lost++;
          try {
            const done = await ks.registers.repair(key);
            if (!done || done.acked === done.of) counts.healed++; // null: nothing was chosen, and every replica now says so
            else {
              counts.failed++;
              opts.onFailure?.(`record ${key.toString('hex')} on ${peer.id}`, `${done.acked} of ${done.of} replicas took the repair`);
            }
          } catch (err) {
            counts.failed++;
            opts.onFailure?.(`record ${key.toString('hex')} on ${peer.id}`, (err as Error).message);
          }
        }
        if (!r.next) return;
        from = r.next;
      }
    }),
  );
  return counts;
}
