// The membership a storage node has learned (docs/architecture.md,
// "Membership"): the newest one it was handed, kept in its data directory and
// written durably before the node answers anything under it. Every record and
// chunk request names the epoch its sender placed it by; the node refuses an
// older one (`stale_epoch`: the sender fetches this node's membership and
// starts over) and asks for a newer one first (`epoch_ahead`: the sender hands
// it over with an install, then retries).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileDurably } from '../store/durable-files.js';
import { QfsError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { admitEpoch, decideInstall, decodeMembership, encodeMembership, type Membership } from '../util/membership.js';

const FILE = 'membership.bin';

export class MembershipKeeper {
  private current: Membership | null;
  private encoded: Buffer | null;
  /** Told of every membership learned (after it is on disk). */
  readonly onLearned: Array<(m: Membership) => void> = [];
  /** Installs run one at a time: each one's file write lands before the next is judged. */
  private installing: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly dir: string,
    current: Membership | null,
    private readonly log: Logger,
  ) {
    this.current = current;
    this.encoded = current ? encodeMembership(current) : null;
  }

  static async open(dir: string, log: Logger): Promise<MembershipKeeper> {
    let current: Membership | null = null;
    try {
      current = decodeMembership(await readFile(join(dir, FILE)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        // A membership file that cannot be read must stop the node: answering with no membership would admit any epoch.
        throw new QfsError('corrupt', `${join(dir, FILE)}: ${(err as Error).message}`);
      }
    }
    return new MembershipKeeper(dir, current, log);
  }

  get membership(): Membership | null {
    return this.current;
  }

  get epoch(): number {
    return this.current?.epoch ?? 0;
  }

  /** The learned membership as it travels (null before any). */
  get bytes(): Buffer | null {
    return this.encoded;
  }

  /**
   * Throws unless a request placed by `epoch` may be answered now. A node that
   * has learned no membership yet answers requests that name none (0).
   */
  admit(epoch: number): void {
    if (this.current === null) {
      if (epoch === 0) return;
      throw new QfsError('epoch_ahead', `this node knows no membership yet; the request is placed by epoch ${epoch}`);
    }
    const verdict = admitEpoch(this.current, epoch);
    if (verdict === 'stale') throw new QfsError('stale_epoch', `the request is placed by epoch ${epoch}; this node knows epoch ${this.current.epoch}`);
    if (verdict === 'behind') throw new QfsError('epoch_ahead', `the request is placed by epoch ${epoch}; this node knows epoch ${this.current.epoch}`);
  }

  /** Learns `bytes` (an encoded membership) when it is newer, durably; returns the epoch the node holds afterwards. */
  install(bytes: Buffer): Promise<number> {
    const offered = decodeMembership(bytes); // throws `corrupt` for anything malformed: nothing changes
    const run = this.installing.then(async () => {
      const next = decideInstall(this.current, offered);
      if (next === null) return this.epoch;
      const encoded = encodeMembership(next);
      await writeFileDurably(join(this.dir, FILE), encoded, 0o640);
      this.current = next;
      this.encoded = encoded;
      this.log.info({ epoch: next.epoch, nodes: next.nodes.map((n) => n.id), next: next.transition?.next.map((n) => n.id) ?? null, phase: next.transition?.phase ?? 'stable' }, 'membership learned');
      for (const f of this.onLearned) f(next);
      return next.epoch;
    });
    this.installing = run.catch(() => {});
    return run;
  }
}
