// Replicated immutable chunks. A put goes to the chunk's R placement nodes in
// parallel and succeeds at W durable acks; copies that failed or were still
// running are remembered as repair hints. A get reads from the healthiest
// replica, verifies it against the id, and falls over to the next replica on
// any error or mismatch (reporting the bad copy as a hint). A ranged get moves
// and verifies only the 64 KiB blocks it needs, against the chunk's leaf
// digests, which are fetched once per chunk and checked against the id.
import { QfsError, isQfsError, toQfsError } from '../util/errors.js';
import type { ChunkId } from '../util/ids.js';
import type { Logger } from '../util/log.js';
import { BLOCK_BYTES, blockCount, blocksMatch, chunkIdOf, rootOf } from '../util/hash.js';
import { callDeadline, type CallOpts } from '../keyspace/types.js';
import { byHealth, bySpread, type Peer } from './peers.js';
import { gatherQuorum } from './quorum.js';

export interface ChunkOptions {
  writeQuorum: number;
  requestTimeoutMs: number;
  log: Logger;
  /** Most repair hints kept in memory; older ones are dropped (a full repair finds them). */
  maxHints?: number;
  /** Where a chunk may be read, best first (default: its writers); during a membership change, more nodes than it is written to. */
  readersOf?: (id: ChunkId) => Peer[];
}

export interface Hint {
  id: ChunkId;
  nodeId: string;
  reason: string;
}

/** How often a put waiting for its checker's verdict looks whether the checker was cut off. */
const RECHECK_CHECKER_MS = 100;

/**
 * Settles once the checking replica's answer is in (rejecting only with its
 * 'corrupt': the bytes sent do not hash to the id), or once it is cut off.
 */
function verdictOf(checker: Peer, answer: Promise<unknown>): Promise<void> {
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    const settle = (err?: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve();
    };
    answer.then(
      () => settle(),
      (err: unknown) => settle(isQfsError(err, 'corrupt') ? err : undefined),
    );
    const look = (): void => {
      if (settled) return;
      if (checker.cutOff) settle();
      else timer = setTimeout(look, RECHECK_CHECKER_MS);
    };
    timer = setTimeout(look, RECHECK_CHECKER_MS);
  });
}

export class Chunks {
  /** Copies known to be missing or bad: `${nodeId} ${chunkId}` → reason. */
  readonly hints = new Map<string, Hint>();
  readonly stats = { puts: 0, gets: 0, failovers: 0, corruptCopies: 0, hintsDropped: 0 };

  constructor(
    readonly replicasOf: (id: ChunkId) => Peer[],
    private readonly opts: ChunkOptions,
  ) {}

  private hint(id: ChunkId, nodeId: string, reason: string): void {
    const k = `${nodeId} ${id}`;
    if (this.hints.has(k)) return;
    if (this.hints.size >= (this.opts.maxHints ?? 100_000)) {
      this.stats.hintsDropped++;
      return;
    }
    this.hints.set(k, { id, nodeId, reason });
  }

  private deadline(opts?: CallOpts): number {
    return callDeadline(Date.now(), opts, this.opts.requestTimeoutMs);
  }

  async put(bytes: Buffer, opts?: CallOpts & { id?: ChunkId }): Promise<ChunkId> {
    const id = opts?.id ?? ((await chunkIdOf(bytes)) as ChunkId);
    const deadline = this.deadline(opts);
    this.stats.puts++;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.putOnce(id, bytes, deadline, opts);
        return id;
      } catch (err) {
        // A node knew a newer membership (learned with its refusal): place the chunk again under it.
        if (!isQfsError(err, 'stale_epoch') || attempt >= 8 || Date.now() >= deadline) throw err;
      }
    }
  }

  /**
   * One replica checks the bytes against the id, the others store them
   * unchecked (ChunkStore.put): a bad put still fails at the writer, for a
   * third of the hashing. The checker is the replica reads of the chunk go
   * to first, which keeps the leaf digests a ranged read needs from the put.
   * The put waits for the checker's verdict even when the others made the
   * quorum first, unless the checker fails otherwise or is cut off.
   */
  private async putOnce(id: ChunkId, bytes: Buffer, deadline: number, opts?: CallOpts): Promise<void> {
    const replicas = this.replicasOf(id);
    const checker = this.readOrder(id).find((p) => replicas.includes(p)) ?? replicas[0];
    let verdict: Promise<void> = Promise.resolve();
    const put = (p: Peer): Promise<'stored' | 'exists'> => {
      const answer = p.track((c) => c.putChunk(id, bytes, p.callOpts(deadline, opts?.signal), p === checker ? 'verify' : 'defer'));
      if (p === checker) {
        verdict = verdictOf(p, answer);
        verdict.catch(() => {}); // awaited below unless the quorum failed first
      }
      return answer;
    };
    await gatherQuorum(
      replicas.map((p) => ({ key: p.id, run: () => put(p) })),
      Math.min(this.opts.writeQuorum, replicas.length),
      () => true,
      (nodeId, outcome) => {
        if ('error' in outcome) this.hint(id, nodeId, outcome.error.message);
      },
    ).then((r) => {
      for (const e of r.errors) this.hint(id, e.key, e.error.message);
    });
    await verdict;
  }

  /** The replicas a read of `id` tries, in order (see bySpread). */
  readOrder(id: ChunkId): Peer[] {
    return bySpread((this.opts.readersOf ?? this.replicasOf)(id), parseInt(id.slice(-6), 16));
  }

  /** Verified leaf digests of recently read chunks (immutable, so never stale). */
  private readonly trees = new Map<ChunkId, { size: number; leaves: Buffer }>();

  /**
   * Bytes [offset, offset+length) of a chunk (shorter at its end), verified
   * block by block: only the blocks that hold the range travel.
   */
  async getRange(id: ChunkId, offset: number, length: number, opts?: CallOpts): Promise<Buffer> {
    return this.fromReplicas(id, opts, async (p, deadline) => {
      let tree = this.trees.get(id);
      const r = await p.track((c) => c.getBlocks(id, offset, length, !tree, p.callOpts(deadline, opts?.signal)));
      if (!tree) {
        if (!r.leaves || r.leaves.length !== blockCount(r.size) * 32 || rootOf(r.leaves, r.size) !== id) throw this.corrupt(id, p.id, 'leaves do not match the id');
        tree = { size: r.size, leaves: Buffer.from(r.leaves) };
        if (this.trees.size >= 65_536) this.trees.delete(this.trees.keys().next().value as ChunkId);
        this.trees.set(id, tree);
      }
      const start = r.first * BLOCK_BYTES;
      const want = Math.min(tree.size, offset + length);
      if (r.size !== tree.size || start > offset || start + r.bytes.length < want || !(await blocksMatch(tree.leaves, tree.size, r.first, r.bytes))) {
        throw this.corrupt(id, p.id, 'block does not match its leaf');
      }
      return r.bytes.subarray(Math.min(offset, tree.size) - start, Math.max(Math.min(offset, tree.size), want) - start);
    });
  }

  private corrupt(id: ChunkId, nodeId: string, what: string): QfsError {
    this.stats.corruptCopies++;
    this.hint(id, nodeId, `${what} on read`);
    this.opts.log.warn({ chunk: id, node: nodeId }, `corrupt chunk copy (${what}); reading another replica`);
    return new QfsError('corrupt', what);
  }

  /** The whole chunk, verified against its id; with `offset`/`length`, only the blocks that hold that range (getRange). */
  async get(id: ChunkId, opts?: CallOpts & { offset?: number; length?: number }): Promise<Buffer> {
    if (opts?.offset !== undefined || opts?.length !== undefined) return this.getRange(id, opts.offset ?? 0, opts.length ?? 0xffffffff, opts);
    return this.fromReplicas(id, opts, async (p, deadline) => {
      // in a mount, the hashing thread verifies it (util/hash-offload.ts)
      const bytes = await p.track((c) => c.getChunk(id, 0, 0xffffffff, p.callOpts(deadline, opts?.signal)));
      if ((await chunkIdOf(bytes, { offload: true })) !== id) throw this.corrupt(id, p.id, 'hash mismatch');
      return bytes;
    });
  }

  /**
   * Runs `readOne` against the chunk's replicas in read order until one
   * answers: a missing copy becomes a hint, any error moves on to the next
   * replica while the deadline allows.
   */
  private async fromReplicas(id: ChunkId, opts: CallOpts | undefined, readOne: (p: Peer, deadline: number) => Promise<Buffer>): Promise<Buffer> {
    const deadline = this.deadline(opts);
    this.stats.gets++;
    const errors: string[] = [];
    let sawNotFound = 0;
    let replicas = this.readOrder(id);
    const tried = new Set<string>();
    for (let i = 0; i < replicas.length; i++) {
      const p = replicas[i]!;
      tried.add(p.id);
      try {
        return await readOne(p, deadline);
      } catch (err) {
        const e = toQfsError(err);
        if (opts?.signal?.aborted) throw e;
        if (e.code === 'stale_epoch') {
          // Learned a newer membership with the refusal: read where it places the chunk.
          replicas = [...replicas.slice(0, i + 1), ...this.readOrder(id).filter((r) => !tried.has(r.id))];
        }
        if (e.code === 'not_found') {
          sawNotFound++;
          this.hint(id, p.id, 'missing on read');
        }
        errors.push(`${p.id}: ${e.message}`);
        this.stats.failovers++;
        if (Date.now() >= deadline) break;
      }
    }
    if (sawNotFound === tried.size) throw new QfsError('not_found', `chunk ${id} is on none of its replicas`);
    throw new QfsError('unavailable', `chunk ${id} unreadable: ${errors.join('; ')}`);
  }

  async has(id: ChunkId, opts?: CallOpts): Promise<boolean> {
    const deadline = this.deadline(opts);
    const replicas = byHealth((this.opts.readersOf ?? this.replicasOf)(id));
    const errors: string[] = [];
    for (const p of replicas) {
      try {
        const [found] = await p.track((c) => c.hasChunks([id], p.callOpts(deadline, opts?.signal)));
        if (found) return true;
      } catch (err) {
        errors.push(`${p.id}: ${(err as Error).message}`);
      }
    }
    if (errors.length === replicas.length) throw new QfsError('unavailable', `no replica of ${id} answered: ${errors.join('; ')}`);
    return false;
  }

  /**
   * Copies hinted chunks to the nodes that miss them, from a replica that has a
   * good copy. Returns how many copies were restored.
   */
  async drainHints(opts: { limit?: number; deadlineMs?: number } = {}): Promise<number> {
    let restored = 0;
    const limit = opts.limit ?? 256;
    // A drain can find more bad copies (a source that fails verification is hinted
    // in turn); those are drained in the same call, each key tried at most once.
    const tried = new Set<string>();
    const next = () => {
      if (tried.size >= limit) return undefined;
      for (const e of this.hints.entries()) if (!tried.has(e[0])) return e;
      return undefined;
    };
    for (let e = next(); e; e = next()) {
      const [k, h] = e;
      tried.add(k);
      const target = this.replicasOf(h.id).find((p) => p.id === h.nodeId);
      if (!target) {
        this.hints.delete(k); // placement changed; a full repair handles it
        continue;
      }
      if (!target.up) continue;
      try {
        await this.copyTo(h.id, target, Date.now() + (opts.deadlineMs ?? this.opts.requestTimeoutMs));
        this.hints.delete(k);
        restored++;
      } catch (err) {
        this.opts.log.debug({ chunk: h.id, node: h.nodeId, err: (err as Error).message }, 'hint not drained yet');
      }
    }
    return restored;
  }

  /** Reads a verified copy from another replica and writes it to `target`; the bytes copied (0: it had a good one). */
  async copyTo(id: ChunkId, target: Peer, deadline: number): Promise<number> {
    // verify moves a corrupt copy aside on the node, so the put below is not answered "exists".
    if ((await target.track((c) => c.verifyChunk(id, target.callOpts(deadline)))) === 'ok') return 0;
    const sources = byHealth((this.opts.readersOf ?? this.replicasOf)(id).filter((p) => p.id !== target.id));
    let lastError: unknown = new QfsError('unavailable', 'no source replica');
    for (const src of sources) {
      try {
        const bytes = await src.track((c) => c.getChunk(id, 0, 0xffffffff, src.callOpts(deadline)));
        if ((await chunkIdOf(bytes)) !== id) {
          this.hint(id, src.id, 'hash mismatch during repair');
          continue;
        }
        await target.track((c) => c.putChunk(id, bytes, target.callOpts(deadline)));
        return bytes.length;
      } catch (err) {
        lastError = err;
      }
    }
    throw toQfsError(lastError);
  }
}
