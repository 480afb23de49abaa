// Membership changes carried through by the nodes themselves. The command that
// asks for a change (`quorumfs node add/drain/remove/set`) moves the data
// itself while it runs, publishing its progress beside the membership record;
// when it is killed, loses its connection or was told `--no-wait`, the change
// would otherwise stay half done until someone ran `quorumfs node resume`.
// Every node watches the record instead: when a change has had no progress
// reported for a grace period, one node of the node set the change leads to
// picks it up with a mover of its own (src/cluster/mover.ts). Nodes take turns
// by rank (the second waits twice as long, and so on), so one of them moves
// the data while the others see its reports; two movers at once would only
// repeat work, never break anything: every mover step is idempotent and a
// step on an old view changes nothing (docs/architecture.md, "Membership").
import type { Logger } from '../util/log.js';
import { toQfsError } from '../util/errors.js';
import type { Membership } from '../util/membership.js';
import type { ClusterKeySpace } from './cluster-keyspace.js';
import { MOVE_PROGRESS_KEY, Mover, decodeMoveProgress, type MoveProgress } from './mover.js';

export interface TakeoverInput {
  membership: Membership;
  /** The last progress any mover published, or null. */
  progress: MoveProgress | null;
  selfId: string;
  now: number;
  /** When this watcher first saw the membership at its current epoch. */
  seenSince: number;
  graceMs: number;
}

/**
 * The nodes that may carry a change, in the order they take turns: those of
 * the node set it leads to (never a node on its way out), active before
 * draining, then by id.
 */
export function moverCandidates(m: Membership): string[] {
  const set = m.transition ? m.transition.next : m.nodes;
  return [...set].sort((a, b) => (a.state === b.state ? (a.id < b.id ? -1 : a.id > b.id ? 1 : 0) : a.state === 'active' ? -1 : 1)).map((n) => n.id);
}

/**
 * Whether this node should start a mover now: a change is in the record (or
 * queued), this node is a candidate, and nothing has been reported for its
 * turn's wait: graceMs × (rank + 1) since the later of the last report and
 * when this node saw the current epoch. A command that hands the change to
 * the nodes (`--no-wait`) publishes a report saying so: then the first
 * candidate starts at once and the others wait graceMs × rank.
 */
export function takeoverDue(i: TakeoverInput): boolean {
  const m = i.membership;
  if (m.transition === null && m.queued.length === 0) return false;
  const rank = moverCandidates(m).indexOf(i.selfId);
  if (rank < 0) return false;
  const handed = i.progress?.handedToNodes === true && i.progress.epoch === m.epoch;
  const since = Math.max(i.seenSince, i.progress && !handed ? i.progress.updatedAt : 0);
  return i.now - since >= i.graceMs * (handed ? rank : rank + 1);
}

export interface MoveWatcherOptions {
  selfId: string;
  /** How long a change may go without a progress report before this node's turn starts, ms. */
  graceMs: number;
  /** How often the record is read, ms (default: a quarter of the grace, at most 10 s; at most 1 s while a change is in progress). */
  checkMs?: number;
  log: Logger;
  /**
   * Whether to look at all (default: always). A node passes "I have learned
   * a membership": before that the cluster is not formatted, and a placed
   * read would hand this node (and the others) the bootstrap membership,
   * which is format's to do.
   */
  active?: () => boolean;
}

export class MoveWatcher {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private readonly abort = new AbortController();
  private seen: { epoch: number; at: number } | null = null;
  /** Changes this node carried through (for logs and tests). */
  moves = 0;
  /** Times this node looked (whether or not there was anything to do). */
  checks = 0;
  /** The progress of the mover this node runs now, or null. */
  progress: MoveProgress | null = null;
  /** Whether the last look found a change in progress (the next look comes sooner). */
  private changing = false;
  private nudged = false;

  constructor(
    private readonly ks: ClusterKeySpace,
    private readonly opts: MoveWatcherOptions,
  ) {}

  start(): void {
    this.schedule();
  }

  private get checkMs(): number {
    const every = this.opts.checkMs ?? Math.max(200, Math.min(10_000, this.opts.graceMs / 4));
    return this.changing ? Math.min(every, 1000) : every;
  }

  /**
   * Looks soon (this node just learned a membership: a change may have been
   * asked for, and a command that hands it to the nodes should not wait for
   * the next look).
   */
  nudge(): void {
    if (this.abort.signal.aborted) return;
    if (!this.timer) {
      this.nudged = true; // a look is running: the next one comes soon after it
      return;
    }
    clearTimeout(this.timer);
    this.schedule(100);
  }

  private schedule(delayMs = this.checkMs): void {
    if (this.abort.signal.aborted) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.running = this.check()
        .catch((err: unknown) => this.opts.log.warn({ err: toQfsError(err).message }, 'membership change: could not carry it on; trying again later'))
        .finally(() => {
          this.running = null;
          const soon = this.nudged;
          this.nudged = false;
          this.schedule(soon ? 100 : this.checkMs);
        });
    }, delayMs);
    this.timer.unref();
  }

  private async check(): Promise<void> {
    this.checks++;
    if (this.opts.active && !this.opts.active()) return;
    const reader = new Mover(this.ks, { log: this.opts.log, signal: this.abort.signal });
    let m: Membership;
    try {
      m = await reader.read();
    } catch (err) {
      // This node cut off from a majority, or the cluster busy: the next check asks again.
      this.opts.log.debug({ err: toQfsError(err).message }, 'membership record not read');
      return;
    }
    const now = Date.now();
    if (this.seen?.epoch !== m.epoch) this.seen = { epoch: m.epoch, at: now };
    this.changing = m.transition !== null || m.queued.length > 0;
    if (!this.changing) return;
    let progress: MoveProgress | null;
    try {
      progress = decodeMoveProgress(await this.ks.registers.read(MOVE_PROGRESS_KEY, { timeoutMs: this.ks.opts.requestTimeoutMs, signal: this.abort.signal }));
    } catch (err) {
      this.opts.log.debug({ err: toQfsError(err).message }, 'move progress not read'); // not knowing is not "no report"
      return;
    }
    if (!takeoverDue({ membership: m, progress, selfId: this.opts.selfId, now, seenSince: this.seen.at, graceMs: this.opts.graceMs })) return;
    this.opts.log.info({ epoch: m.epoch, change: m.transition?.change ?? m.queued[0], lastReport: progress?.updatedAt ?? null }, 'membership change: no progress reported, this node carries it on');
    const mover = new Mover(this.ks, {
      log: this.opts.log,
      signal: this.abort.signal,
      onProgress: (p) => (this.progress = p),
      ...(progress?.rateBytesPerSec ? { rateBytesPerSec: progress.rateBytesPerSec } : {}),
    });
    let done;
    try {
      done = await mover.run();
    } finally {
      this.progress = null;
    }
    this.moves++;
    this.opts.log.info({ epoch: done.epoch, nodes: done.nodes.map((n) => n.id) }, 'membership change carried through');
  }

  async stop(): Promise<void> {
    this.abort.abort();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => {});
  }
}
