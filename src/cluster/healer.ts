// Self-heal, run by every storage node: at an interval, the node makes sure
// each of its records' and chunks' other replicas hold what it holds
// (docs/architecture.md, "Maintenance"). A key written while a replica was
// down is on a majority, so some node that holds it finds the replica lacking
// and repairs it, with no command run. Records are compared by bucket digests
// (src/util/range-digest.ts, "Buckets"): each node keeps, per other node, one
// XOR digest per bucket of the records both hold, up to date as records
// change; a pass fetches this node's and each peer's digests (one frame each)
// and reads, from both, only the buckets that differ. So an idle pass reads
// no record from any disk and sends no record over the network: what a pass
// costs follows what differs. Chunks likewise (buckets by id range; each
// node keeps its chunk ids in memory and digests of them per peer). Every `fullEvery`-th pass walks all records
// page by page instead (range digests over store scans), which also finds a
// copy that rotted on disk since the digests were built. A record found
// differing is looked at again after a pause, because a change in flight
// differs for a moment on its way to every replica, and only a difference
// that stays is repaired (a full CASPaxos round, as `quorumfs repair` does).
import { compareBallots } from '../util/ballot.js';
import type { ChunkId } from '../util/ids.js';
import type { Logger } from '../util/log.js';
import type { AcceptorState } from '../util/paxos.js';
import { BucketDigests, RECORD_BUCKETS, sharedPageDigests } from '../util/range-digest.js';
import { groupOf } from '../keyspace/types.js';
import type { ClusterKeySpace } from './cluster-keyspace.js';
import type { Peer } from './peers.js';

export interface HealCounts {
  recordsChecked: number;
  recordsSuspect: number;
  /** Copies on this node found failing their checksum (each is repaired). */
  recordsLost: number;
  recordsRepaired: number;
  /** Pages of records found equal on another replica by their digests, and pages compared key by key. */
  rangesAgreed: number;
  rangesScanned: number;
  chunksChecked: number;
  chunksCopied: number;
  /** Bytes of the chunk copies made. */
  bytesCopied: number;
  failures: number;
}

function noCounts(): HealCounts {
  return { recordsChecked: 0, recordsSuspect: 0, recordsLost: 0, recordsRepaired: 0, rangesAgreed: 0, rangesScanned: 0, chunksChecked: 0, chunksCopied: 0, bytesCopied: 0, failures: 0 };
}

export interface HealerOptions {
  /** Time between the end of one pass and the start of the next, ms. */
  intervalMs: number;
  /** How soon a pass follows a node coming back after it was unreachable, ms (default 5 s). */
  backDelayMs?: number;
  /** How long a differing record is left before it is looked at again, ms. */
  settleMs?: number;
  log: Logger;
  pageSize?: number;
  /**
   * 'buckets' (default): bucket digests, with a full walk every `fullEvery`-th pass;
   * 'pages': always the full walk with range digests per page; false: the full
   * walk comparing every page key by key (for tests and comparisons).
   */
  digests?: 'buckets' | 'pages' | false;
  /** Every this many passes, a full walk (default 12; the first pass is a bucket pass). */
  fullEvery?: number;
  /** Chunk bytes a pass copies per second at most (unlimited by default): heal beside a busy cluster. */
  rateBytesPerSec?: number;
  /** Whether a pass may run now (default: always); see MoveWatcherOptions.active. */
  active?: () => boolean;
}

const OTHERS_LIMIT = 10_000;

interface BucketKeys {
  states: Map<string, AcceptorState>;
  lost: Set<string>;
}

export class Healer {
  private timer: NodeJS.Timeout | null = null;
  private dueAt = 0;
  private running: Promise<HealCounts> | null = null;
  private stopped = false;
  /** The pass running now (its counts so far, what kind, and when it started), or null. */
  current: { startedAt: number; counts: HealCounts; full: boolean } | null = null;
  passes = 0;
  readonly totals: HealCounts = noCounts();

  constructor(
    private readonly ks: ClusterKeySpace,
    private readonly selfId: string,
    private readonly opts: HealerOptions,
  ) {}

  start(): void {
    this.schedule();
    // A node that was unreachable is back: it may have missed writes, so the next pass comes soon.
    this.ks.onPeerBack((id) => {
      if (id === this.selfId || this.stopped) return;
      this.opts.log.info({ node: id }, 'a node is back: a heal pass soon');
      this.schedule(this.opts.backDelayMs ?? 5000);
    });
  }

  private schedule(delayMs = this.opts.intervalMs): void {
    if (this.stopped) return;
    if (this.timer) {
      // Keep whichever pass comes first.
      if (this.dueAt <= Date.now() + delayMs) return;
      clearTimeout(this.timer);
    }
    this.dueAt = Date.now() + delayMs;
    this.timer = setTimeout(() => {
      this.timer = null;
      // A pass that could not finish its work (a replica that did not answer, a
      // repair that failed) comes again soon, not a whole interval later.
      const retry = Math.min(this.opts.intervalMs, (this.opts.backDelayMs ?? 5000) * 6);
      void this.pass().then(
        (counts) => this.schedule(counts.failures > 0 ? retry : this.opts.intervalMs),
        (err: unknown) => {
          this.opts.log.warn({ err: (err as Error).message }, 'heal pass failed');
          this.schedule(retry);
        },
      );
    }, delayMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running?.catch(() => {});
  }

  /** One walk over this node's records and chunks. */
  pass(): Promise<HealCounts> {
    this.running ??= this.walk().finally(() => (this.running = null));
    return this.running;
  }

  private async walk(): Promise<HealCounts> {
    const counts = noCounts();
    const self = this.ks.peer(this.selfId);
    if (!self) return counts; // not a member (yet): nothing here is placed
    if (this.opts.active && !this.opts.active()) return counts; // not formatted yet: nothing to heal, and no membership to hand out
    const mode = this.opts.digests ?? 'buckets';
    const full = mode !== 'buckets' || (this.passes > 0 && this.passes % (this.opts.fullEvery ?? 12) === 0);
    this.current = { startedAt: Date.now(), counts, full };
    try {
      return await this.walkFrom(self, counts, full);
    } finally {
      this.current = null;
      this.passes++;
    }
  }

  private async walkFrom(self: Peer, counts: HealCounts, full: boolean): Promise<HealCounts> {
    const suspects = full ? await this.findSuspects(self, counts) : await this.findByBuckets(self, counts);
    if (suspects.length > 0) {
      await new Promise((r) => setTimeout(r, this.opts.settleMs ?? 2000));
      for (const { key, lost } of suspects) {
        if (this.stopped) break;
        await this.settle(key, lost, counts);
      }
    }
    if (full) await this.chunks(self, counts);
    else await this.chunksByBuckets(self, counts);
    for (const k of Object.keys(counts) as Array<keyof HealCounts>) this.totals[k] += counts[k];
    if (counts.recordsRepaired + counts.chunksCopied + counts.failures > 0) this.opts.log.info(counts, 'heal pass repaired');
    return counts;
  }

  /**
   * Records whose replicas differ, and records some replica (this node
   * included) holds a lost copy of: its stored state failed its checksum.
   */
  private async findSuspects(self: Peer, counts: HealCounts): Promise<Array<{ key: Buffer; lost: boolean }>> {
    const suspects: Array<{ key: Buffer; lost: boolean }> = [];
    const page = this.opts.pageSize ?? 500;
    let from: Buffer = Buffer.from([0]);
    const placedHere = (key: Buffer): string[] | null => {
      const replicas = this.ks.view.keyQuorum(groupOf(key)).acceptors.map((a) => a.id);
      return replicas.includes(this.selfId) ? replicas : null;
    };
    while (!this.stopped) {
      const mine = await self.track((c) => c.scan(from, null, page, { timeoutMs: this.ks.opts.requestTimeoutMs, withLost: true }));
      const lostHere = mine.lost ?? [];
      let last = mine.entries.at(-1)?.key;
      for (const k of lostHere) if (!last || Buffer.compare(k, last) > 0) last = k;
      if (!last) break;
      const end = Buffer.concat([last, Buffer.from([0])]);
      const others = this.ks.peers.filter((p) => p.id !== this.selfId && p.up);
      const replies = new Map<string, { states: Map<string, AcceptorState>; horizon: Buffer | null; lost: Set<string> }>();
      const m = this.ks.view.membership;
      const mineByPeer = this.opts.digests === false ? null : sharedPageDigests(m, this.selfId, others.map((p) => p.id), mine);
      await Promise.all(
        others.map(async (p) => {
          try {
            if (mineByPeer) {
              const theirs = await p
                .track((c) => c.digest(from, end, OTHERS_LIMIT, this.selfId, { timeoutMs: this.ks.opts.requestTimeoutMs, epoch: m.epoch }), m.epoch)
                .catch(() => null); // a node from before digests, or on another epoch: compared key by key
              if (theirs && theirs.next === null && theirs.digest.equals(mineByPeer.get(p.id)!.digest)) {
                counts.rangesAgreed++;
                return;
              }
            }
            counts.rangesScanned++;
            const r = await p.track((c) => c.scan(from, end, OTHERS_LIMIT, { timeoutMs: this.ks.opts.requestTimeoutMs, withLost: true }));
            replies.set(p.id, { states: new Map(r.entries.map((e) => [e.key.toString('latin1'), e.state])), horizon: r.next, lost: new Set((r.lost ?? []).map((k) => k.toString('latin1'))) });
          } catch {
            // a replica that cannot answer now is judged on a later pass (soon: a failure)
            counts.failures++;
          }
        }),
      );
      // Keys at or past a truncated reply's end are judged on the next page.
      let horizon: Buffer | null = null;
      for (const r of replies.values()) if (r.horizon && (!horizon || Buffer.compare(r.horizon, horizon) < 0)) horizon = r.horizon;
      for (const key of lostHere) {
        if (horizon && Buffer.compare(key, horizon) >= 0) continue;
        counts.recordsChecked++;
        counts.recordsLost++;
        if (placedHere(key)) suspects.push({ key, lost: true });
      }
      for (const e of mine.entries) {
        if (horizon && Buffer.compare(e.key, horizon) >= 0) break;
        counts.recordsChecked++;
        const id = e.key.toString('latin1');
        const replicas = placedHere(e.key);
        if (!replicas) continue; // a copy this node no longer holds for the key
        let lost = false;
        const differs = replicas.some((r) => {
          if (r === this.selfId) return false;
          const reply = replies.get(r);
          if (!reply) return false;
          if (reply.lost.has(id)) return (lost = true);
          const theirs = reply.states.get(id);
          return !theirs || compareBallots(theirs.accepted, e.state.accepted) !== 0;
        });
        if (differs) suspects.push({ key: e.key, lost });
      }
      if (horizon && Buffer.compare(horizon, from) > 0) from = horizon;
      else if (!mine.next) break;
      else from = end;
    }
    counts.recordsSuspect += suspects.length;
    return suspects;
  }

  /**
   * Records whose replicas differ, found by bucket digests: this node's and
   * each peer's digests of what both hold, then both sides' keys of each
   * bucket that differs. Keys a peer holds that this node lacks are suspects
   * too (this node is placed to hold them: it has missed them).
   */
  private async findByBuckets(self: Peer, counts: HealCounts): Promise<Array<{ key: Buffer; lost: boolean }>> {
    const { differing, covered } = await this.compareDigests(self, 'records', counts);
    counts.recordsChecked += covered;
    const suspects: Array<{ key: Buffer; lost: boolean }> = [];
    for (const b of [...differing.keys()].sort((x, y) => x - y)) {
      if (this.stopped) break;
      const peers = differing.get(b)!;
      let here: BucketKeys;
      const there = new Map<string, BucketKeys>();
      try {
        here = await this.readBucket(self, b);
        await Promise.all(peers.map(async (p) => there.set(p.id, await this.readBucket(p, b))));
      } catch (err) {
        counts.failures++;
        this.opts.log.debug({ bucket: b, err: (err as Error).message }, 'heal: bucket not compared');
        continue;
      }
      const suspect = new Map<string, boolean>();
      const replicasOf = (key: Buffer): string[] | null => {
        const replicas = this.ks.view.keyQuorum(groupOf(key)).acceptors.map((a) => a.id);
        return replicas.includes(this.selfId) ? replicas : null;
      };
      for (const id of here.lost) suspect.set(id, true);
      for (const [id, state] of here.states) {
        const key = Buffer.from(id, 'latin1');
        const replicas = replicasOf(key);
        if (!replicas) continue;
        for (const p of peers) {
          if (!replicas.includes(p.id)) continue;
          const theirs = there.get(p.id)!;
          if (theirs.lost.has(id)) suspect.set(id, true);
          else {
            const s = theirs.states.get(id);
            if (!s || compareBallots(s.accepted, state.accepted) !== 0) suspect.set(id, suspect.get(id) ?? false);
          }
        }
      }
      for (const theirs of there.values()) {
        for (const id of [...theirs.states.keys(), ...theirs.lost]) {
          if (here.states.has(id) || here.lost.has(id) || suspect.has(id)) continue;
          if (replicasOf(Buffer.from(id, 'latin1'))) suspect.set(id, theirs.lost.has(id));
        }
      }
      for (const [id, lost] of suspect) {
        if (lost) counts.recordsLost++;
        suspects.push({ key: Buffer.from(id, 'latin1'), lost });
      }
    }
    counts.recordsSuspect += suspects.length;
    return suspects;
  }

  /**
   * This node's and each peer's bucket digests of the records (or chunks) both
   * should hold: the buckets that differ, with the peers they differ with, and
   * how many items the digests covered (the most shared with one peer).
   */
  private async compareDigests(self: Peer, what: 'records' | 'chunks', counts: HealCounts): Promise<{ differing: Map<number, Peer[]>; covered: number }> {
    const m = this.ks.view.membership;
    const opts = { timeoutMs: this.ks.opts.requestTimeoutMs, epoch: m.epoch };
    const ask = (p: Peer, peer: string) => p.track((c) => (what === 'records' ? c.bucketDigests(peer, opts) : c.chunkBucketDigests(peer, opts)), m.epoch);
    const differing = new Map<number, Peer[]>();
    let covered = 0;
    await Promise.all(
      this.ks.peers
        .filter((p) => p.id !== this.selfId && p.up)
        .map(async (p) => {
          try {
            const [mine, theirs] = await Promise.all([ask(self, p.id), ask(p, this.selfId)]);
            const ours = new BucketDigests();
            mine.xor.copy(ours.xor);
            ours.counts.set(mine.counts);
            const diff = ours.differing(theirs);
            if (what === 'records') {
              counts.rangesAgreed += RECORD_BUCKETS - diff.length;
              counts.rangesScanned += diff.length;
            }
            covered = Math.max(covered, mine.counts.reduce((a, b) => a + b, 0));
            for (const b of diff) differing.set(b, [...(differing.get(b) ?? []), p]);
          } catch (err) {
            counts.failures++;
            this.opts.log.debug({ node: p.id, what, err: (err as Error).message }, 'heal: bucket digests not compared');
          }
        }),
    );
    return { differing, covered };
  }

  /** Every key of one bucket on one node, page by page. */
  private async readBucket(p: Peer, bucket: number): Promise<BucketKeys> {
    const out: BucketKeys = { states: new Map(), lost: new Set() };
    let start: Buffer = Buffer.alloc(0);
    for (;;) {
      const r = await p.track((c) => c.scanBucket(bucket, start, OTHERS_LIMIT, { timeoutMs: this.ks.opts.requestTimeoutMs, epoch: this.ks.view.membership.epoch }), this.ks.view.membership.epoch);
      for (const e of r.entries) out.states.set(e.key.toString('latin1'), e.state);
      for (const k of r.lost ?? []) out.lost.add(k.toString('latin1'));
      if (!r.next) return out;
      start = r.next;
    }
  }

  /**
   * Looks at a differing record again; repairs it if its replicas still
   * differ. A lost copy is repaired at once: it answers no read to compare,
   * and only a round above its node's ceiling heals it (the repair's retry).
   */
  private async settle(key: Buffer, lost: boolean, counts: HealCounts): Promise<void> {
    try {
      if (lost) {
        const r = await this.ks.registers.repair(key);
        if (!r || r.acked === r.of) counts.recordsRepaired++; // null: nothing was chosen, and every replica now says so
        else counts.failures++;
        return;
      }
      const states = await this.ks.registers.states(key);
      const held = states.filter((s) => s.state && s.state.value.kind !== 'empty');
      const first = held[0]?.state;
      const agree = first && held.length === states.length && held.every((s) => compareBallots(s.state!.accepted, first.accepted) === 0);
      if (agree || held.length === 0 || states.some((s) => !s.state)) return; // healed meanwhile, nothing to carry, or a replica unreachable
      const r = await this.ks.registers.repair(key);
      if (r) counts.recordsRepaired++;
    } catch (err) {
      counts.failures++;
      this.opts.log.debug({ key: key.toString('hex'), err: (err as Error).message }, 'heal: record not repaired');
    }
  }

  /** Waits while the pass's chunk bytes copied are ahead of the rate (measured from the start of the pass). */
  private async throttle(counts: HealCounts): Promise<void> {
    const rate = this.opts.rateBytesPerSec;
    const startedAt = this.current?.startedAt;
    if (!rate || startedAt === undefined) return;
    for (;;) {
      const due = startedAt + (counts.bytesCopied / rate) * 1000;
      if (due <= Date.now() || this.stopped) return;
      await new Promise((r) => setTimeout(r, Math.min(1000, due - Date.now())));
    }
  }

  /**
   * Chunks by bucket digests, as records: this node's and each peer's digests
   * of the chunks both should hold, then both sides' ids of each bucket that
   * differs; a chunk one of the two lacks is copied to it (verified on the
   * way, from any replica that has a good copy).
   */
  private async chunksByBuckets(self: Peer, counts: HealCounts): Promise<void> {
    const { differing, covered } = await this.compareDigests(self, 'chunks', counts);
    counts.chunksChecked += covered;
    for (const b of [...differing.keys()].sort((x, y) => x - y)) {
      if (this.stopped) break;
      try {
        const here = await this.listChunkBucket(self, b);
        for (const p of differing.get(b)!) {
          const there = await this.listChunkBucket(p, b);
          // What the peer lacks, to the peer; what this node lacks, to this node.
          for (const [from, to, target] of [[here, there, p], [there, here, self]] as const) {
            for (const id of from) {
              if (to.has(id) || this.stopped) continue;
              const writers = this.ks.chunks.replicasOf(id).map((w) => w.id);
              if (!writers.includes(this.selfId) || !writers.includes(p.id)) continue;
              counts.bytesCopied += await this.ks.chunks.copyTo(id, target, Date.now() + this.ks.opts.requestTimeoutMs);
              counts.chunksCopied++;
              await this.throttle(counts);
            }
          }
        }
      } catch (err) {
        counts.failures++;
        this.opts.log.debug({ bucket: b, err: (err as Error).message }, 'heal: chunk bucket not compared');
      }
    }
  }

  /** Every chunk id of one bucket on one node. */
  private async listChunkBucket(p: Peer, bucket: number): Promise<Set<ChunkId>> {
    const out = new Set<ChunkId>();
    let after: ChunkId | null = null;
    for (;;) {
      const ids: ChunkId[] = await p.track((c) => c.listChunkBucket(bucket, after, 1000, { timeoutMs: this.ks.opts.requestTimeoutMs }));
      for (const id of ids) out.add(id);
      if (ids.length < 1000) return out;
      after = ids.at(-1)!;
    }
  }

  private async chunks(self: Peer, counts: HealCounts): Promise<void> {
    let after: ChunkId | null = null;
    while (!this.stopped) {
      const ids: ChunkId[] = await self.track((c) => c.listChunks(after, 1000, { timeoutMs: this.ks.opts.requestTimeoutMs }));
      if (ids.length === 0) break;
      counts.chunksChecked += ids.length;
      const byPeer = new Map<Peer, ChunkId[]>();
      for (const id of ids) {
        const writers = this.ks.chunks.replicasOf(id);
        if (!writers.some((p) => p.id === this.selfId)) continue;
        for (const p of writers) {
          if (p.id === this.selfId || !p.up) continue;
          const list = byPeer.get(p) ?? [];
          list.push(id);
          byPeer.set(p, list);
        }
      }
      for (const [peer, list] of byPeer) {
        try {
          const has = await peer.track((c) => c.hasChunks(list, { timeoutMs: this.ks.opts.requestTimeoutMs }));
          for (let i = 0; i < list.length; i++) {
            if (has[i] || this.stopped) continue;
            counts.bytesCopied += await this.ks.chunks.copyTo(list[i]!, peer, Date.now() + this.ks.opts.requestTimeoutMs);
            counts.chunksCopied++;
            await this.throttle(counts);
          }
        } catch (err) {
          counts.failures++;
          this.opts.log.debug({ node: peer.id, err: (err as Error).message }, 'heal: chunks not copied');
        }
      }
      if (ids.length < 1000) break;
      after = ids.at(-1)!;
    }
  }
}
