// The mover: carries a membership change through (docs/architecture.md,
// "Membership"). It reads the membership record, does the step its phase
// calls for (src/util/membership.ts, moverStep) and writes the next record
// with a compare-and-set, until the record is stable with nothing queued. Any
// mover can resume a change another one left: every step is idempotent, and a
// step taken on an old view changes nothing.
//
//   joint:     every node of A and B learns the joint epoch; all but
//              R − majority(R) of A's nodes must (they then refuse older
//              epochs, and their listings hold every value chosen before);
//              each listed record whose replica set moves is rewritten in a
//              joint round; each listed chunk whose nodes change is copied
//              (verified) to its nodes under B. Then `rewritten`.
//   rewritten: `finish` (B becomes the node set); every member learns it;
//              chunk copies on nodes that no longer hold them are deleted once
//              their nodes under B have them.
import { QfsError, toQfsError } from '../util/errors.js';
import type { ChunkId } from '../util/ids.js';
import type { Logger } from '../util/log.js';
import { KEEP, groupOf, recordKey } from '../keyspace/types.js';
import {
  coversEveryMajority,
  decodeMembership,
  encodeMembership,
  finishChange,
  markRewritten,
  moverStep,
  requestChange,
  startQueued,
  type Change,
  type Membership,
} from '../util/membership.js';
import type { ClusterKeySpace } from './cluster-keyspace.js';
import { MEMBERSHIP_GROUP, MEMBERSHIP_KEY, isMembershipGroup } from './membership-view.js';
import type { Peer } from './peers.js';
import { moves, replicaSet } from '../util/replica-sets.js';

export interface MoveProgress {
  epoch: number;
  /** When this mover started on the change, and when it last reported (ms since the epoch). */
  startedAt: number;
  updatedAt: number;
  /** What there is to walk, estimated from the nodes' counts at the start (each key is on R nodes). */
  recordsTotal: number;
  chunksTotal: number;
  phase: 'learn' | 'records' | 'chunks' | 'finish' | 'trim' | 'done';
  recordsListed: number;
  recordsRewritten: number;
  chunksListed: number;
  chunksCopied: number;
  bytesCopied: number;
  chunksTrimmed: number;
  /** Record copies dropped from nodes the new membership does not place them on. */
  recordsDropped: number;
  /** The throttle the change was asked with, so that a node carrying it on keeps it. */
  rateBytesPerSec?: number;
  /** Published by a command that asked for the change and left it to the nodes (`--no-wait`). */
  handedToNodes?: boolean;
}

export interface MoverOptions {
  log: Logger;
  onProgress?: (p: MoveProgress) => void;
  signal?: AbortSignal;
  /** Keys rewritten (and chunks copied) at once. */
  parallel?: number;
  /** How long the mover keeps retrying a step that cannot go on (nodes down), ms. */
  patienceMs?: number;
  /** Chunk bytes copied per second at most (a throttle for busy clusters); unlimited by default. */
  rateBytesPerSec?: number;
}

const PAGE = 1000;
const PUBLISH_EVERY_MS = 2000;

/** Where a mover publishes its progress (beside the membership record, on every member). */
export const MOVE_PROGRESS_KEY = recordKey(MEMBERSHIP_GROUP, Buffer.from('progress'));

/** A move's progress as published, or null (none, or unreadable). */
export function decodeMoveProgress(bytes: Buffer | null): MoveProgress | null {
  if (!bytes) return null;
  try {
    const p = JSON.parse(bytes.toString('utf8')) as MoveProgress;
    return typeof p.epoch === 'number' && typeof p.updatedAt === 'number' ? p : null;
  } catch {
    return null;
  }
}

export class Mover {
  private progress: MoveProgress = { epoch: 0, startedAt: Date.now(), updatedAt: Date.now(), recordsTotal: 0, chunksTotal: 0, phase: 'learn', recordsListed: 0, recordsRewritten: 0, chunksListed: 0, chunksCopied: 0, bytesCopied: 0, chunksTrimmed: 0, recordsDropped: 0 };
  private lastPublished = 0;
  private publishing: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly ks: ClusterKeySpace,
    private readonly opts: MoverOptions,
  ) {
    if (opts.rateBytesPerSec) this.progress.rateBytesPerSec = opts.rateBytesPerSec;
  }

  /** Says, where `quorumfs status` and the nodes look, that no command moves the change at `epoch`: the nodes carry it on. */
  async handToNodes(epoch: number): Promise<void> {
    const now = Date.now();
    const p: MoveProgress = { ...this.progress, epoch, startedAt: now, updatedAt: now, handedToNodes: true };
    await this.ks.registers.change(MOVE_PROGRESS_KEY, () => Buffer.from(JSON.stringify(p)), this.callOpts());
  }

  /** The last progress report any mover published, or null. */
  async readProgress(): Promise<MoveProgress | null> {
    return decodeMoveProgress(await this.ks.registers.read(MOVE_PROGRESS_KEY, this.callOpts()));
  }

  /**
   * The membership record as chosen now. Before any change was made the record
   * is absent and the membership is the one format handed every node (epoch 1).
   */
  async read(): Promise<Membership> {
    const bytes = await this.ks.registers.read(MEMBERSHIP_KEY, this.callOpts());
    const m = bytes ? decodeMembership(bytes) : this.bootstrap();
    this.ks.view.adopt(m);
    return m;
  }

  private bootstrap(): Membership {
    const m = this.ks.view.membership;
    if (m.epoch !== 1) throw new QfsError('corrupt', `the membership record is missing, but the nodes know epoch ${m.epoch}`);
    return m;
  }

  /** Compare-and-set of the record: `step` sees the chosen membership and returns the next, or null to leave it. */
  private async cas(step: (m: Membership) => Membership | null): Promise<Membership> {
    let outcome: Membership | null = null;
    const bytes = await this.ks.registers.change(
      MEMBERSHIP_KEY,
      (old) => {
        const cur = old ? decodeMembership(old) : this.bootstrap();
        const next = step(cur);
        outcome = next ?? cur;
        return next ? encodeMembership(next) : KEEP;
      },
      this.callOpts(),
    );
    const m = bytes ? decodeMembership(bytes) : (outcome ?? this.bootstrap());
    this.ks.view.adopt(m);
    return m;
  }

  /** Asks for a change (a mistake throws `bad_request`, another change in progress `busy` unless queued); returns the record after it. */
  request(change: Change, queue = false): Promise<Membership> {
    return this.cas((m) => requestChange(m, change, { queue }));
  }

  /** Carries every change in the record through to a stable membership with nothing queued. */
  async run(): Promise<Membership> {
    for (;;) {
      this.opts.signal?.throwIfAborted();
      // The record is on every node, and a change is agreed by a majority of the old and of
      // the new nodes: one node down or restarting with a rival mover at work (the nodes run
      // movers too) can fail a round, which a later one gets through.
      const m = await this.patiently('reading the membership record', () => this.read());
      const step = moverStep(m);
      this.progress.epoch = m.epoch;
      switch (step.kind) {
        case 'idle':
          this.report('done');
          await this.flushProgress();
          return m;
        case 'start-queued': {
          await this.patiently('starting a queued change', () => this.cas((cur) => {
            const started = startQueued(cur);
            if (started) for (const d of started.dropped) this.opts.log.warn({ change: d.change, reason: d.reason }, 'queued membership change dropped');
            return started?.membership ?? null;
          }));
          break;
        }
        case 'rewrite':
          await this.rewriteAll(m);
          await this.patiently('marking the change rewritten', () => this.cas((cur) => markRewritten(cur, step.epoch)));
          break;
        case 'finish': {
          const done = await this.patiently('finishing the change', () => this.cas((cur) => finishChange(cur, step.epoch)));
          this.report('finish');
          await this.tellMembers(done);
          if (done.transition === null) {
            await this.trimChunks(done, m);
            await this.trimRecords(done);
          }
          break;
        }
      }
    }
  }

  private callOpts(): { timeoutMs: number; signal?: AbortSignal } {
    return { timeoutMs: this.ks.opts.requestTimeoutMs, ...(this.opts.signal ? { signal: this.opts.signal } : {}) };
  }

  private report(phase: MoveProgress['phase']): void {
    this.progress.phase = phase;
    this.progress.updatedAt = Date.now();
    this.opts.onProgress?.({ ...this.progress });
    // Every few seconds, and at the end, the progress goes into the cluster for `quorumfs status` (best effort).
    const final = phase === 'done';
    if (!final && this.progress.updatedAt - this.lastPublished < PUBLISH_EVERY_MS) return;
    this.lastPublished = this.progress.updatedAt;
    const value = Buffer.from(JSON.stringify(this.progress));
    this.publishing = this.publishing.then(() => this.ks.registers.change(MOVE_PROGRESS_KEY, () => value, this.callOpts()).catch(() => {}));
  }

  /** Waits for the last progress report to be written. */
  flushProgress(): Promise<unknown> {
    return this.publishing;
  }

  /** What the cluster's nodes hold, divided by R: the keys and chunks a move walks. */
  private async estimateTotals(m: Membership): Promise<void> {
    const stats = await Promise.all(this.ks.view.peers.map((p) => p.client.stat({ timeoutMs: 2000, connectWaitMs: 0 }).catch(() => null)));
    const sum = (f: (s: NonNullable<(typeof stats)[number]>) => number): number => stats.reduce((a, s) => a + (s ? f(s) : 0), 0);
    this.progress.recordsTotal = Math.round(sum((s) => s.records) / m.r);
    this.progress.chunksTotal = Math.round(sum((s) => s.chunks) / m.r);
  }

  /** Hands `m` to every node of A and B; the ids of those that hold it (or newer) afterwards. */
  /** Nodes the last tellMembers got no answer from (timed out or not connected). */
  private unreachable = new Set<string>();

  private async tellMembers(m: Membership): Promise<Set<string>> {
    const bytes = encodeMembership(m);
    const answered = new Set<string>();
    this.unreachable = new Set();
    await Promise.all(
      this.ks.view.peers.map(async (p) => {
        try {
          const epoch = await p.client.installMembership(bytes, { timeoutMs: this.ks.opts.requestTimeoutMs, connectWaitMs: Math.min(this.ks.opts.connectTimeoutMs, 2000) });
          if (epoch >= m.epoch) answered.add(p.id);
        } catch (err) {
          // No answer at all (its connection may still look open: a node cut off, its packets lost) is not "up".
          const code = toQfsError(err).code;
          if (code === 'timeout' || code === 'unavailable') this.unreachable.add(p.id);
          this.opts.log.debug({ node: p.id, err: (err as Error).message }, 'a node did not take the membership');
        }
      }),
    );
    return answered;
  }

  /** Retries `fn` while it fails for want of nodes, up to the mover's patience. */
  private async patiently<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const until = Date.now() + (this.opts.patienceMs ?? 60_000);
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        this.opts.signal?.throwIfAborted();
        const e = toQfsError(err);
        if (!e.retryable || Date.now() >= until) throw new QfsError(e.code, `${what}: ${e.message}`);
        this.opts.log.info({ err: e.message, attempt }, `${what}: retrying`);
        await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)));
        this.opts.signal?.throwIfAborted();
      }
    }
  }

  private async rewriteAll(m: Membership): Promise<void> {
    const t = m.transition!;
    this.progress = { ...this.progress, startedAt: Date.now(), recordsListed: 0, recordsRewritten: 0, chunksListed: 0, chunksCopied: 0, bytesCopied: 0, chunksTrimmed: 0, recordsDropped: 0 };
    await this.estimateTotals(m);
    // 1. Every node learns the joint epoch; enough of A's must, for their listings to hold every chosen value.
    this.report('learn');
    const a = m.nodes.map((n) => n.id);
    const listed = await this.patiently('joint epoch', async () => {
      const answered = await this.tellMembers(m);
      // Chunk puts need only W acks: below a majority of R, one unlisted node could hold a chunk no listing shows.
      const everyOne = this.ks.opts.writeQuorum < Math.floor(m.r / 2) + 1;
      if (everyOne ? a.some((id) => !answered.has(id)) : !coversEveryMajority(a, answered, m.r)) {
        const missing = a.filter((id) => !answered.has(id));
        const may = everyOne ? 0 : m.r - (Math.floor(m.r / 2) + 1);
        throw new QfsError('unavailable', `nodes ${missing.join(', ')} did not learn epoch ${m.epoch}; at most ${may} of the old nodes may be missing`);
      }
      // B's nodes that are up must hold it too: they are about to be written to under it.
      const missingB = t.next.filter((n) => !answered.has(n.id) && !this.unreachable.has(n.id) && this.ks.view.peer(n.id)?.up).map((n) => n.id);
      if (missingB.length > 0) throw new QfsError('unavailable', `new nodes ${missingB.join(', ')} did not learn epoch ${m.epoch}`);
      return [...answered];
    });
    // 2. Records: every key listed by a node that learned the joint epoch, rewritten if it moves.
    this.report('records');
    const seen = new Set<string>();
    for (const id of listed) {
      const peer = this.ks.view.peer(id);
      if (!peer) continue;
      await this.patiently(`records on ${id}`, () => this.rewriteListed(m, peer, seen));
    }
    // 3. Chunks: every chunk a listed node holds, copied to its nodes under B when they change.
    this.report('chunks');
    const seenChunks = new Set<string>();
    for (const id of listed) {
      const peer = this.ks.view.peer(id);
      if (!peer) continue;
      await this.patiently(`chunks on ${id}`, () => this.copyListed(m, peer, seenChunks));
    }
  }

  private async rewriteListed(m: Membership, peer: Peer, seen: Set<string>): Promise<void> {
    let from = Buffer.from([0]);
    for (;;) {
      this.opts.signal?.throwIfAborted();
      const page = await peer.track((c) => c.scan(from, null, PAGE, { timeoutMs: this.ks.opts.requestTimeoutMs }));
      const todo: Buffer[] = [];
      for (const e of page.entries) {
        const k = e.key.toString('latin1');
        if (seen.has(k)) continue;
        seen.add(k);
        this.progress.recordsListed++;
        // Records are placed by their group (as Registers places them), not by the whole key.
        // The membership group changes only through the record's own joint compare-and-sets (and holds only advisory progress besides).
        const group = groupOf(e.key);
        if (!isMembershipGroup(group) && moves(m, group)) todo.push(e.key);
      }
      await this.inParallel(todo, async (key) => {
        if (await this.ks.registers.rewrite(key, this.callOpts())) this.progress.recordsRewritten++;
      });
      this.report('records');
      const last = page.entries.at(-1)?.key;
      if (!page.next || !last) return;
      from = Buffer.concat([last, Buffer.from([0])]);
    }
  }

  private async copyListed(m: Membership, peer: Peer, seen: Set<string>): Promise<void> {
    const t = m.transition!;
    let after: ChunkId | null = null;
    for (;;) {
      this.opts.signal?.throwIfAborted();
      const ids: ChunkId[] = await peer.track((c) => c.listChunks(after, PAGE, { timeoutMs: this.ks.opts.requestTimeoutMs }));
      const todo = ids.filter((id) => {
        if (seen.has(id)) return false;
        seen.add(id);
        this.progress.chunksListed++;
        return true;
      });
      await this.inParallel(todo, async (id) => {
        const key = Buffer.from(id, 'hex');
        const before = replicaSet(m.nodes, m.r, key, false);
        const after = replicaSet(t.next, m.r, key, false);
        await this.ensureCopies(id, after.filter((n) => !before.includes(n)));
      });
      this.report('chunks');
      if (ids.length < PAGE) return;
      after = ids.at(-1)!;
    }
  }

  /** Waits while the bytes copied so far are ahead of the rate (measured from the start of the move). */
  private async throttle(): Promise<void> {
    const rate = this.opts.rateBytesPerSec;
    if (!rate) return;
    for (;;) {
      const due = this.progress.startedAt + (this.progress.bytesCopied / rate) * 1000;
      if (due <= Date.now()) return;
      await new Promise((r) => setTimeout(r, Math.min(1000, due - Date.now())));
    }
  }

  /** Copies `id` to each of `targets` (its new nodes) that lacks it, verified on the way; fails if one cannot be given it. */
  private async ensureCopies(id: ChunkId, targets: readonly string[]): Promise<void> {
    const deadline = Date.now() + this.ks.opts.requestTimeoutMs * 3;
    for (const nodeId of targets) {
      const target = this.ks.view.peer(nodeId);
      if (!target) continue;
      const [has] = await target.track((c) => c.hasChunks([id], target.callOpts(deadline)));
      if (has) continue;
      await this.throttle();
      const bytes = await this.ks.chunks.copyTo(id, target, deadline); // (not `+= await`: copies run in parallel)
      this.progress.bytesCopied += bytes;
      this.progress.chunksCopied++;
    }
  }

  /**
   * After a change: chunk copies on member nodes that no longer hold them
   * under the node set `m` are deleted, each only once every one of its nodes
   * under `m` has it. Nodes that left are not touched (they are stopped).
   */
  private async trimChunks(m: Membership, before: Membership): Promise<void> {
    this.report('trim');
    const changed = before.transition !== null;
    if (!changed) return;
    for (const n of m.nodes) {
      const peer = this.ks.view.peer(n.id);
      if (!peer?.up || this.unreachable.has(n.id)) continue; // a node cut off keeps its copies until a later trim
      let after: ChunkId | null = null;
      for (;;) {
        const ids: ChunkId[] = await peer.track((c) => c.listChunks(after, PAGE, { timeoutMs: this.ks.opts.requestTimeoutMs }));
        const stray = ids.filter((id) => !replicaSet(m.nodes, m.r, Buffer.from(id, 'hex'), false).includes(n.id));
        await this.inParallel(stray, async (id) => {
          const holders = replicaSet(m.nodes, m.r, Buffer.from(id, 'hex'), false).map((h) => this.ks.view.peer(h));
          const deadline = Date.now() + this.ks.opts.requestTimeoutMs;
          const held = await Promise.all(
            holders.map((h) => (h ? h.track((c) => c.hasChunks([id], h.callOpts(deadline))).then(([x]) => x === true, () => false) : Promise.resolve(false))),
          );
          if (!held.every(Boolean)) return; // a node under m lacks it: keep this copy (repair copies it later)
          if (await peer.track((c) => c.deleteChunk(id, peer.callOpts(deadline)))) this.progress.chunksTrimmed++;
        });
        this.report('trim');
        if (ids.length < PAGE) break;
        after = ids.at(-1)!;
      }
    }
  }

  /**
   * After a change: record copies on member nodes that the membership no
   * longer places there are dropped (the node refuses while it knows of a
   * change in progress). Best effort: a node that is down keeps its copies
   * until the next change's trim.
   */
  private async trimRecords(m: Membership): Promise<void> {
    this.report('trim');
    for (const n of m.nodes) {
      const peer = this.ks.view.peer(n.id);
      if (!peer?.up || this.unreachable.has(n.id)) continue;
      let from: Buffer = Buffer.from([0]);
      try {
        for (;;) {
          this.opts.signal?.throwIfAborted();
          const page = await peer.track((c) => c.scan(from, null, PAGE, { timeoutMs: this.ks.opts.requestTimeoutMs }));
          const stray = page.entries
            .map((e) => e.key)
            .filter((key) => {
              const group = groupOf(key);
              return !replicaSet(m.nodes, m.r, group, isMembershipGroup(group)).includes(n.id);
            });
          if (stray.length > 0) this.progress.recordsDropped += await peer.track((c) => c.dropRecords(stray, { timeoutMs: this.ks.opts.requestTimeoutMs }));
          this.report('trim');
          const last = page.entries.at(-1)?.key;
          if (!page.next || !last) break;
          from = Buffer.concat([last, Buffer.from([0])]);
        }
      } catch (err) {
        this.opts.log.warn({ node: n.id, err: (err as Error).message }, 'record copies not dropped from a node (the next change tries again)');
      }
    }
  }

  private async inParallel<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
    let next = 0;
    let failure: unknown = null;
    const worker = async (): Promise<void> => {
      while (next < items.length && failure === null) {
        const item = items[next++]!;
        try {
          await fn(item);
        } catch (err) {
          failure ??= err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.opts.parallel ?? 16, items.length) }, worker));
    if (failure !== null) throw failure;
  }
}
