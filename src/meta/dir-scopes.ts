// Directory scopes: a directory's entries are one lease scope (src/util/lease.ts;
// docs/architecture.md, "Leases" and "Metadata write-behind").
//
// Every call on a directory's entries names the directory's lease. While no
// mount holds it, calls carry its current (free) term, so that none of them
// can land once a holder's term is chosen. A mount that keeps changing one
// directory takes the lease; from then on it alone changes and reads those
// entries: it answers lookups from what it knows, and its name changes are
// written behind: acknowledged at once, committed in the background, one
// name's changes in order, durable at the next flush (close of a written
// file, fsync, unmount) or within about a round trip when the cluster keeps
// up. Another mount that reads the directory makes the nodes recall the
// lease: the holder flushes and gives it back.
import { setTimeout as delay } from 'node:timers/promises';
import type { CallOpts, ChangeFn, HeldScope, KeySpace, ScopeRange, ScopeService } from '../keyspace/types.js';
import { KEEP } from '../keyspace/types.js';
import { ChangeTrail } from '../util/envelope.js';
import { QfsError, isQfsError } from '../util/errors.js';
import { FRESH_LEASE, decodeLease } from '../util/lease.js';
import type { Logger } from '../util/log.js';
import { DIRENT_RANGE, dirLeaseKey, direntKey, inoGroup } from './schema.js';
import { decodeDirent, type Dirent, type Ino } from './types.js';

export interface WriteBehindOptions {
  /** Take directory leases and write name changes behind (false: every change is synchronous). */
  enabled: boolean;
  /** This many changes of one directory within `heatMs` make the mount take its lease. */
  acquireAfter: number;
  heatMs: number;
  /**
   * A held lease nobody used for this long is flushed and given back. Holding
   * costs no rounds (every lease of the mount is renewed through its one
   * holder record), so this only bounds how long the mount keeps a directory
   * it stopped working in; another mount's call recalls it at any time.
   */
  idleReleaseMs: number;
  /**
   * Held leases past this many, or holding more known entries than
   * `maxKnownEntries` in all: the least recently used idle ones are given
   * back (each keeps its entries in memory, about 200 bytes apiece).
   */
  maxHeld: number;
  maxKnownEntries: number;
  /** After a recall, the mount waits this long before it takes the same lease again. */
  recallBackoffMs: number;
  /** Name changes queued and not yet committed, over all directories: a writer past it waits. */
  maxPending: number;
  /** How long taking a lease may take before the change goes on without it. */
  acquireGiveUpMs: number;
  /** A directory this mount makes is born with its lease held (known empty, nothing to settle). */
  bornLeases: boolean;
}

export const DEFAULT_WRITE_BEHIND: Readonly<WriteBehindOptions> = Object.freeze({
  enabled: true,
  acquireAfter: 8,
  heatMs: 1000,
  idleReleaseMs: 30_000,
  maxHeld: 1024,
  maxKnownEntries: 262_144,
  recallBackoffMs: 2000,
  maxPending: 2048,
  acquireGiveUpMs: 1000,
  bornLeases: true,
});

/** One directory as this mount sees its scope. */
export class DirState {
  /** The lease's term as last read while free (null: read it again). */
  term: number | null = null;
  held: HeldScope | null = null;
  /** A born lease whose record is not chosen yet: nothing is sent under it before this resolves. */
  ready: Promise<void> | null = null;
  /** An acquisition or release in progress: calls on the directory wait for it. */
  gate: Promise<void> | null = null;
  /** While held: the entries this mount knows, its queued changes included (null: no such name). */
  readonly known = new Map<string, Dirent | null>();
  /** While held: `known` has every entry (read whole when the lease was taken): a name it lacks does not exist. */
  complete = false;
  private sortedNames: Buffer[] | null = null;
  /** While held: the last queued commit of each name. */
  readonly chains = new Map<string, Promise<void>>();
  /** Calls made without the lease still running (an acquisition waits for them). */
  freeCalls = 0;
  private freeIdle: (() => void) | null = null;
  heatSince = 0;
  heat = 0;
  lastUse = 0;
  recalledAt = -Infinity;
  /** Callers waiting for this directory's queued commits (its release, fsyncdir): its commits go out at once meanwhile. */
  waiters = 0;

  constructor(
    readonly dir: Ino,
    readonly range: ScopeRange,
  ) {}

  get leaseKey(): Buffer {
    return this.range.lease;
  }

  /** What a name is as far as this holder knows (undefined: it must read it). */
  knownEntry(name: string): Dirent | null | undefined {
    const d = this.known.get(name);
    return d !== undefined ? d : this.complete ? null : undefined;
  }

  /** Records what a name now is, under the lease. */
  setKnown(name: string, d: Dirent | null): void {
    const had = this.known.get(name);
    this.known.set(name, d);
    if ((had ?? null) === null || d === null) this.sortedNames = null;
  }

  /** Drops everything known (the lease is gone or new). */
  forgetAll(): void {
    this.known.clear();
    this.complete = false;
    this.sortedNames = null;
  }

  /** A complete holder's listing: entries after `after` in name byte order, at most `limit`. */
  listing(after: Buffer | null, limit: number): { entries: Array<{ name: Buffer; dirent: Dirent }>; more: boolean } {
    if (!this.sortedNames) {
      this.sortedNames = [...this.known].filter(([, d]) => d !== null).map(([n]) => Buffer.from(n, 'latin1'));
      this.sortedNames.sort(Buffer.compare);
    }
    const names = this.sortedNames;
    let lo = 0;
    if (after) {
      let hi = names.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (Buffer.compare(names[mid]!, after) <= 0) lo = mid + 1;
        else hi = mid;
      }
    }
    const page = names.slice(lo, lo + limit);
    return { entries: page.map((n) => ({ name: n, dirent: this.known.get(n.toString('latin1'))! })), more: lo + limit < names.length };
  }

  beginFree(): void {
    this.freeCalls++;
  }

  endFree(): void {
    this.freeCalls--;
    if (this.freeCalls === 0 && this.freeIdle) {
      this.freeIdle();
      this.freeIdle = null;
    }
  }

  freeDrained(): Promise<void> {
    if (this.freeCalls === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const prev = this.freeIdle;
      this.freeIdle = () => {
        prev?.();
        resolve();
      };
    });
  }
}

/** Told what a change made under the held lease did, so that what the holder knows stays the truth. */
export type Learnt<T> = (st: DirState, out: T) => void;

/** The chain of an inode's writes behind (a name never holds a NUL byte, so it cannot collide). */
export function inoChain(ino: Ino): string {
  return `\u0000${ino}`;
}

/** The most entries a held directory is read whole with. */
const LISTING_MAX = 4096;
/** How long a queued change keeps trying after transient failures (commitQueued). */
const QUEUED_COMMIT_PATIENCE_MS = 30_000;
/** How long a call refused by replicas that lack the held lease is tried again (writing the lease record back in between). */
const LAGGING_PATIENCE_MS = 5_000;

function fenced(err: unknown): boolean {
  return isQfsError(err, 'fenced');
}

export class DirScopes {
  private readonly dirs = new Map<Ino, DirState>();
  private readonly byLease = new Map<string, DirState>();
  private readonly scopes: ScopeService | undefined;
  private readonly pending = new Set<Promise<void>>();
  /** The first failed background commit since the last flush: reported by flush(). */
  private failure: unknown = null;
  private readonly idleTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** Removed directories whose leases are being given back. */
  private readonly forgetting = new Set<Promise<void>>();
  /** Counters for tests and status. */
  readonly stats = { born: 0, acquired: 0, released: 0, recalled: 0, queued: 0, committed: 0, fencedRetries: 0, laggingRetries: 0, transientRetries: 0 };

  constructor(
    private readonly ks: KeySpace,
    readonly opts: WriteBehindOptions,
    private readonly log?: Logger,
  ) {
    this.scopes = ks.scopes;
    if (this.scopes && opts.enabled) {
      this.scopes.onRecall((lease) => {
        const st = this.byLease.get(lease.toString('latin1'));
        if (!st?.held) return;
        st.recalledAt = Date.now();
        this.stats.recalled++;
        void this.release(st);
      });
      this.idleTimer = setInterval(() => this.releaseIdle(), Math.max(50, Math.min(200, opts.idleReleaseMs / 3)));
      this.idleTimer.unref();
    }
  }

  /** Is a majority of the directory's replicas connected? */
  reachable(st: DirState): boolean {
    return this.scopes?.reachable(st.range.group) ?? false;
  }

  /** Does this key space have leases at all (otherwise calls carry no scope)? */
  get scoped(): boolean {
    return this.scopes !== undefined;
  }

  get queued(): number {
    return this.pending.size;
  }

  state(dir: Ino): DirState {
    let st = this.dirs.get(dir);
    if (!st) {
      const range: ScopeRange = { lease: dirLeaseKey(dir), group: inoGroup(dir), start: DIRENT_RANGE.start, end: DIRENT_RANGE.end };
      st = new DirState(dir, range);
      this.dirs.set(dir, st);
      this.byLease.set(range.lease.toString('latin1'), st);
    }
    return st;
  }

  /** Forgets a directory that is gone (its lease, if held, is given back); settled() waits for it. */
  async forget(dir: Ino): Promise<void> {
    const st = this.dirs.get(dir);
    if (!st) return;
    const done = (async () => {
      if (st.held) await this.release(st);
      if (this.dirs.get(dir) === st) {
        this.dirs.delete(dir);
        this.byLease.delete(st.leaseKey.toString('latin1'));
      }
    })();
    this.forgetting.add(done);
    try {
      await done;
    } finally {
      this.forgetting.delete(done);
    }
  }

  /** Waits for the leases of removed directories to be given back (fsyncdir, unmount, tests). */
  async forgotten(): Promise<void> {
    while (this.forgetting.size > 0) await Promise.allSettled([...this.forgetting]);
  }

  /** The directory's state when this mount holds its lease and may use it; null otherwise. */
  async holding(dir: Ino): Promise<DirState | null> {
    const st = this.dirs.get(dir);
    if (!st) return null;
    while (st.gate) await st.gate;
    if (!st.held) return null;
    if (st.held.trusted()) {
      st.lastUse = Date.now();
      return st;
    }
    await this.lost(st, new QfsError('fenced', 'the directory lease ran out before it was used'));
    return null;
  }

  /**
   * Like holding(), for a change of the directory's entries: counts the
   * change, and takes the lease when the directory is busy enough.
   */
  async forChange(dir: Ino): Promise<DirState | null> {
    if (!this.scopes || !this.opts.enabled || this.closed) return null;
    const held = await this.holding(dir);
    // Cut off from the directory's nodes, a change is made now (and fails now), not acknowledged and lost later.
    if (held) return this.reachable(held) ? held : null;
    const st = this.state(dir);
    const now = Date.now();
    if (now - st.heatSince > this.opts.heatMs) {
      st.heatSince = now;
      st.heat = 0;
    }
    st.heat++;
    if (st.heat < this.opts.acquireAfter || now - st.recalledAt < this.opts.recallBackoffMs) return null;
    await this.acquire(st, this.opts.acquireGiveUpMs);
    return this.holding(dir);
  }

  private async acquire(st: DirState, giveUpAfterMs: number): Promise<void> {
    if (st.gate) return st.gate;
    const scopes = this.scopes!;
    st.gate = (async () => {
      await st.freeDrained();
      let held: HeldScope | null = null;
      try {
        held = await scopes.acquire(st.range, giveUpAfterMs);
      } catch (err) {
        this.log?.debug({ err: (err as Error).message, dir: st.dir }, 'could not take a directory lease');
      }
      st.forgetAll();
      st.chains.clear();
      st.term = null;
      st.heat = 0;
      if (held) {
        st.held = held;
        st.lastUse = Date.now();
        this.stats.acquired++;
        await this.readWhole(st, held);
        this.log?.debug({ dir: st.dir, term: held.call.term }, 'took a directory lease');
      } else {
        // Somebody else is busy here: do not try again at once.
        st.recalledAt = Date.now();
      }
    })().finally(() => {
      st.gate = null;
    });
    return st.gate;
  }

  /**
   * A directory of up to LISTING_MAX entries is read whole when its lease is
   * taken: then lookups of names it lacks and listings need no round trip.
   */
  private async readWhole(st: DirState, held: HeldScope): Promise<void> {
    try {
      const page = await this.ks.scan(st.range.group, st.range.start, st.range.end, { limit: LISTING_MAX + 1, scope: held.call });
      if (page.next !== null || page.entries.length > LISTING_MAX) return;
      const prefix = 1 + st.range.group.length + st.range.start.length;
      for (const e of page.entries) st.known.set(e.key.subarray(prefix).toString('latin1'), decodeDirent(e.value));
      st.complete = true;
    } catch {
      // Not read whole: names are read one by one under the lease.
    }
  }

  /**
   * A directory this mount is making, before its name is published: nobody
   * else can reach its entries yet, so it is born with its lease held by this
   * mount and known to be empty (ScopeService.born), and changes inside it are
   * written behind from the first. Returns the lease record's write: the
   * directory's name must not be committed before it resolves. Null when
   * there is no born lease (no leases, writing through, or closing): the
   * directory starts as any other.
   */
  born(dir: Ino): Promise<void> | null {
    const scopes = this.scopes;
    if (!scopes?.born || !this.opts.enabled || !this.opts.bornLeases || this.closed) return null;
    const st = this.state(dir);
    if (st.held || st.gate || st.freeCalls > 0) return null; // not a new directory after all
    const { held, ready } = scopes.born(st.range);
    st.forgetAll();
    st.chains.clear();
    st.term = null;
    st.heat = 0;
    st.held = held;
    st.complete = true;
    st.ready = ready;
    st.lastUse = Date.now();
    this.stats.born++;
    void ready.then(
      () => {
        if (st.ready === ready) st.ready = null;
      },
      (err: unknown) => {
        if (st.ready === ready) st.ready = null;
        if (st.held === held) void this.lost(st, err);
      },
    );
    return ready;
  }

  /** Commits the directory's queued changes and gives its lease back. */
  async release(st: DirState): Promise<void> {
    while (st.gate) await st.gate;
    const held = st.held;
    if (!held) return;
    st.gate = (async () => {
      await this.waitingFor(async () => {
        while (st.chains.size > 0) await Promise.allSettled([...st.chains.values()]);
      }, st);
      await held.release().catch(() => false);
      st.held = null;
      st.forgetAll();
      st.chains.clear();
      st.term = held.call.term + 1; // a release frees the lease at the next term (a refusal corrects a wrong guess)
      this.stats.released++;
      this.log?.debug({ dir: st.dir }, 'gave a directory lease back');
    })().finally(() => {
      st.gate = null;
    });
    return st.gate;
  }

  /** The lease stopped being usable: what was queued under it is lost to the next flush's error. */
  private async lost(st: DirState, why: unknown): Promise<void> {
    if (!st.held) return;
    // Commits still queued under it fail by themselves, and those failures go to the next flush.
    const held = st.held;
    st.held = null;
    st.forgetAll();
    st.chains.clear();
    st.term = null;
    this.log?.warn({ dir: st.dir, err: (why as Error).message }, 'lost a directory lease: changes not yet committed under it are reported to the next fsync or close');
    await held.release().catch(() => false);
  }

  private releaseIdle(): void {
    const now = Date.now();
    let held = 0;
    let entries = 0;
    for (const st of this.dirs.values()) {
      if (!st.held) continue;
      held++;
      entries += st.known.size;
    }
    if (held > this.opts.maxHeld || entries > this.opts.maxKnownEntries) {
      const idle = [...this.dirs.values()].filter((st) => st.held && !st.gate && now - st.lastUse > 100).sort((a, b) => a.lastUse - b.lastUse);
      for (const st of idle) {
        if (held <= this.opts.maxHeld && entries <= this.opts.maxKnownEntries) break;
        held--;
        entries -= st.known.size;
        void this.release(st);
      }
    }
    for (const st of this.dirs.values()) {
      if (st.held && !st.gate && now - st.lastUse > this.opts.idleReleaseMs) void this.release(st);
      else if (!st.held && !st.gate && st.freeCalls === 0 && now - st.lastUse > 60_000 && now - st.recalledAt > 60_000) {
        this.dirs.delete(st.dir);
        this.byLease.delete(st.leaseKey.toString('latin1'));
      }
    }
  }

  /**
   * Runs a call on the directory's entries under its scope: under the lease
   * when this mount holds it, otherwise under its free term. Without the lease,
   * a refusal means the term moved (read it again and retry) or another mount
   * holds the lease: then this mount takes it, which recalls it from a live
   * holder and takes it over from a silent one, and runs the call under it
   * (or, writing through, gives it straight back).
   */
  async call<T>(dir: Ino, run: (opts: CallOpts) => Promise<T>, op?: CallOpts, learnt?: Learnt<T>): Promise<T> {
    const scopes = this.scopes;
    if (!scopes) return run(op ?? {});
    // A refused call runs again under another term or lease, and may have landed (some replicas took it): one trail for all its calls.
    if (!op?.trail) op = { ...op, trail: new ChangeTrail() };
    const st = this.state(dir);
    const deadline = op?.deadline ?? Date.now() + (op?.timeoutMs ?? 30_000);
    for (let attempt = 0; ; attempt++) {
      while (st.gate) await st.gate;
      if (st.held?.trusted()) return this.underLease(st, run, op, learnt);
      st.lastUse = Date.now();
      st.beginFree();
      try {
        // Reads do not depend on the term (only on who holds the lease), and most
        // directories were never leased: start from a fresh lease's term, and
        // read the record only when a write is refused.
        if (st.term === null) st.term = attempt === 0 ? FRESH_LEASE.term : decodeLease(await this.ks.read(st.leaseKey, op)).term;
        return await run({ ...op, scope: { lease: st.leaseKey, term: st.term, session: scopes.session } });
      } catch (err) {
        if (!fenced(err)) throw err;
        this.stats.fencedRetries++;
        st.term = null;
      } finally {
        st.endFree();
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new QfsError('timeout', 'another mount kept this directory');
      if (attempt === 0) continue; // most often a term this mount had not seen yet: read it
      await this.acquire(st, left);
      if (st.held && (!this.opts.enabled || this.closed)) await this.release(st);
      else if (!st.held) await delay(Math.min(100, 5 * attempt));
    }
  }

  /** One entry read under the directory's scope (for tools that hold no lease: fsck, intents). */
  readEntry(dir: Ino, name: Buffer, op?: CallOpts): Promise<Buffer | null> {
    return this.call(dir, (o) => this.ks.read(direntKey(dir, name), o), op);
  }

  /** One entry changed under the directory's scope (for tools that hold no lease: fsck, intents). */
  changeEntry(dir: Ino, name: Buffer, fn: ChangeFn, op?: CallOpts): Promise<Buffer | null> {
    return this.call(dir, (o) => this.ks.change(direntKey(dir, name), fn, o), op);
  }

  /** Runs a call under the held lease; a refusal means the lease is gone, and the call goes on without it. */
  async underLease<T>(st: DirState, run: (opts: CallOpts) => Promise<T>, op?: CallOpts, learnt?: Learnt<T>): Promise<T> {
    const held = st.held;
    if (held && st.ready) await st.ready.catch(() => {}); // a born lease: nothing is sent under it before its record
    if (held && st.held === held && held.trusted()) {
      try {
        const out = await this.retryLagging(st, held, () => run({ ...op, scope: held.call }));
        // What the holder knows follows, in the same turn: a lease taken during this very call read the directory before it.
        if (st.held === held) learnt?.(st, out);
        return out;
      } catch (err) {
        if (!fenced(err)) throw err;
        if (st.held === held) await this.lost(st, err);
      }
    }
    return this.call(st.dir, run, op, learnt);
  }

  /**
   * A refusal under a held lease is either the lease gone, or a replica that
   * has not seen it yet (it was down when the lease was taken, or it became
   * one of the directory's replicas in a membership change) standing in the
   * way of a quorum. While the lease record still names this session at its
   * term, the record is written back unchanged (which lands it on every
   * replica that answers) and the call is tried again, at least 8 times and
   * for at least LAGGING_PATIENCE_MS (a try that waited out a cut-off
   * replica can take seconds), while the lease is trusted. A record that cannot be
   * read just now (a quorum busy with a mover's rewrites, a replica cut off)
   * is looked at again on the next try, not taken for a lost lease.
   */
  private async retryLagging<T>(st: DirState, held: HeldScope, call: () => Promise<T>): Promise<T> {
    const until = Date.now() + LAGGING_PATIENCE_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        return await call();
      } catch (err) {
        if (!fenced(err) || (attempt >= 8 && Date.now() >= until) || st.held !== held || !held.trusted()) throw err;
        let lease = null;
        try {
          lease = decodeLease(await this.ks.read(st.leaseKey));
        } catch {
          // unreadable for now: the next try looks again
        }
        if (lease && (lease.holder !== held.call.session || lease.term !== held.call.term)) throw err;
        this.stats.laggingRetries++;
        // Carry the lease record to the replicas that lack it now rather than at the next renewal: a
        // round that writes it back unchanged lands it on every replica that answers (one that was down
        // when the lease was taken, or a new one after a membership change).
        await this.ks.change(st.leaseKey, (old) => old ?? KEEP).catch(() => {});
        await delay(Math.min(500, 25 * 2 ** attempt));
      }
    }
  }

  /**
   * A queued change was already answered to its caller: a transient failure
   * (no quorum in time, conflicts, a membership change, a node unreachable) is
   * tried again while the lease is held and trusted, for up to
   * QUEUED_COMMIT_PATIENCE_MS, rather than turned into the next close's EIO
   * at once. Seen in the fault suite: a drain under a partition left a
   * commit without a quorum for one request deadline (5 s), and the writer's
   * next close failed. The commits are idempotent: each sets a name or an
   * inode to a value decided under the lease (a creation knows its retry).
   */
  private async commitQueued(st: DirState, held: HeldScope, commit: (opts: CallOpts) => Promise<unknown>, soon: boolean): Promise<void> {
    const until = Date.now() + QUEUED_COMMIT_PATIENCE_MS;
    const trail = new ChangeTrail();
    for (let attempt = 0; ; attempt++) {
      try {
        // `behind` is read when the change is made, not now: a commit that first waits (a name
        // waits for its inode) is wanted at once if a flush came meanwhile.
        const waited = (): boolean => this.waiters > 0 || st.waiters > 0;
        await this.retryLagging(st, held, () =>
          commit({
            scope: held.call,
            trail,
            get behind() {
              return !waited() && (soon ? 'soon' : true);
            },
          }),
        );
        return;
      } catch (err) {
        const transient = err instanceof QfsError && err.retryable && err.code !== 'closed';
        if (!transient || Date.now() >= until || st.held !== held || !held.trusted()) throw err;
        this.stats.transientRetries++;
        this.log?.info({ dir: st.dir, err: err.message, attempt }, 'a change written behind is tried again');
        await delay(Math.min(1000, 50 * 2 ** attempt));
      }
    }
  }

  /** Callers waiting for every queued commit (a flush, unmount): while there are any, commits go out at once, not batched. */
  private waiters = 0;

  /**
   * Someone waits for queued commits, of every directory or of `st` alone
   * (its release, fsyncdir): what is held back to batch goes now, and the
   * commits it waits for that start meanwhile are not held back
   * (CallOpts.behind). A wait for one directory leaves the others' commits
   * to batch: `rm -rf` gives back a removed directory's lease every few
   * milliseconds, and a mount-wide count sent most of its unlinks one accept
   * per frame.
   */
  private async waitingFor<T>(wait: () => Promise<T>, st?: DirState): Promise<T> {
    if (st) st.waiters++;
    else this.waiters++;
    this.ks.expedite?.();
    try {
      return await wait();
    } finally {
      if (st) st.waiters--;
      else this.waiters--;
    }
  }

  /** Waits while the queue is full (backpressure): call before deciding a change that will be queued. */
  async room(): Promise<void> {
    while (this.pending.size >= this.opts.maxPending) await Promise.race([...this.pending].map((q) => q.catch(() => {})));
  }

  /**
   * Queues a commit of one name (or of another chain: `inoChain`) under the
   * held lease, after that chain's earlier commits, and returns the commit.
   * Synchronous on purpose: the caller decided the change under the lease it
   * saw held (holding(), with no await since), so no release can start in
   * between; a release waits for every queued commit (release()).
   * `soon`: a call will wait for it shortly (a created file's name, which
   * its close waits for): it skips the gather window (CallOpts.behind).
   */
  queue(st: DirState, name: Buffer | string, commit: (opts: CallOpts) => Promise<unknown>, soon = false): { committed: Promise<void> } {
    const held = st.held;
    if (!held || st.gate) throw new QfsError('internal', 'a change was queued without a usable directory lease');
    const k = typeof name === 'string' ? name : name.toString('latin1');
    const before = st.chains.get(k);
    const ready = st.ready;
    const p: Promise<void> = (async () => {
      if (before) await before.catch(() => {});
      if (ready) await ready; // a born lease's record first (its failure is this commit's)
      if (st.held !== held || !held.trusted()) throw new QfsError('fenced', 'the directory lease was lost before a queued change was committed');
      await this.commitQueued(st, held, commit, soon);
      this.stats.committed++;
    })();
    this.stats.queued++;
    st.chains.set(k, p);
    this.pending.add(p);
    void p.then(
      () => {},
      (err: unknown) => {
        this.log?.warn({ dir: st.dir, err: (err as Error)?.message ?? String(err) }, 'a change written behind failed: reported to the next fsync, close or unmount');
        this.failure ??= err;
        if (fenced(err) && st.held === held) void this.lost(st, err);
      },
    ).finally(() => {
      this.pending.delete(p);
      if (st.chains.get(k) === p) st.chains.delete(k);
    });
    return { committed: p };
  }

  /** Waits for the directory's queued commits (a failure among them is flush()'s to report). */
  async flushDir(dir: Ino): Promise<void> {
    const st = this.dirs.get(dir);
    if (st && st.chains.size > 0) await this.waitingFor(() => Promise.allSettled([...st.chains.values()]), st);
  }

  /** Waits for every queued commit; throws the first that failed since the last flush. */
  async flush(): Promise<void> {
    await this.waitingFor(async () => {
      while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
    });
    this.throwFailure();
  }

  private throwFailure(): void {
    const e = this.failure;
    this.failure = null;
    if (e) throw e;
  }

  /** Unmount: commits everything and gives every lease back. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.idleTimer) clearInterval(this.idleTimer);
    await Promise.allSettled([...this.pending]);
    await Promise.allSettled([...this.dirs.values()].map((st) => this.release(st)));
    this.throwFailure();
  }
}

const toolScopes = new WeakMap<KeySpace, DirScopes>();

/**
 * Directory scopes for a tool that changes entries without ever holding a
 * lease (fsck's repairs, rename recovery): its calls name the free term, and
 * a held lease is recalled (or taken over and given straight back) first.
 */
export function toolDirScopes(ks: KeySpace): DirScopes {
  let d = toolScopes.get(ks);
  if (!d) toolScopes.set(ks, (d = new DirScopes(ks, { ...DEFAULT_WRITE_BEHIND, enabled: false })));
  return d;
}
