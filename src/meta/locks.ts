// fcntl and flock locks that hold across mounts (docs/architecture.md, "Locks").
//
// Each file's locks are one record beside its inode (schema: lockKey), a list
// of (session, owner, kind, type, range, pid); every change is a
// compare-and-set through the register's change function, which runs the
// pure decisions of lock-ranges.ts on the current list. A mount holds a
// session (lock-lease.ts): a record it renews, which others may declare dead
// once they have seen it unchanged for long enough; locks of a dead session
// are dropped by the next change of that file's record. Waiting for a lock
// held on another mount is a bounded backoff (10 ms doubling to `pollMaxMs`),
// plus at most one look at the holder's session record (a write-back, a fence)
// per renewal period; a release by this mount wakes this mount's waiters at once.
import type { RegisterSpace } from '../keyspace/types.js';
import { KEEP } from '../keyspace/types.js';
import { systemClock, type Clock, type Timer } from '../util/clock.js';
import type { Logger } from '../util/log.js';
import { FsError } from './errors.js';
import { applyLock, findConflict, findConflicts, flockConversionDrop, locksOf, sameOwner, type LockRequest, type LockType, type RangeLock } from './lock-ranges.js';
import {
  DEFAULT_LEASE,
  SessionLostError,
  declareDead,
  observe,
  renew,
  renewEveryMs,
  sessionVerdict,
  trustedUntil,
  type LeaseParams,
  type Observation,
  type SessionRecord,
} from './lock-lease.js';
import { lockKey, sessionKey } from './schema.js';
import type { Ino } from './types.js';

// ---- records

const LOCKS_VERSION = 1;
const MAX_LOCKS_PER_FILE = 10_000;

/** A lock record's value: JSON, `b` null for "to the end of the file". */
export function encodeLocks(locks: readonly RangeLock[]): Buffer | null {
  if (locks.length === 0) return null;
  return Buffer.from(
    JSON.stringify({
      v: LOCKS_VERSION,
      l: locks.map((l) => [l.session, l.owner, l.kind === 'posix' ? 0 : 1, l.type === 'read' ? 0 : 1, l.start, l.end === Infinity ? null : l.end, l.pid]),
    }),
  );
}

function malformed(what: string): never {
  throw new FsError('EIO', `malformed lock record: ${what}`);
}

export function decodeLocks(b: Buffer | null): RangeLock[] {
  if (b === null) return [];
  let doc: unknown;
  try {
    doc = JSON.parse(b.toString('utf8'));
  } catch {
    malformed('not JSON');
  }
  const d = doc as { v?: unknown; l?: unknown };
  if (typeof d !== 'object' || d === null || d.v !== LOCKS_VERSION || !Array.isArray(d.l)) malformed('no version 1 list');
  if (d.l.length > MAX_LOCKS_PER_FILE) malformed(`${d.l.length} locks`);
  return d.l.map((e: unknown): RangeLock => {
    if (!Array.isArray(e) || e.length !== 7) malformed('an entry is not a 7-tuple');
    const [session, owner, kind, type, start, end, pid] = e as unknown[];
    if (typeof session !== 'string' || typeof owner !== 'string') malformed('owner');
    if ((kind !== 0 && kind !== 1) || (type !== 0 && type !== 1)) malformed('kind or type');
    if (typeof start !== 'number' || !Number.isSafeInteger(start) || start < 0) malformed('start');
    if (end !== null && (typeof end !== 'number' || !Number.isSafeInteger(end) || end <= start)) malformed('end');
    if (typeof pid !== 'number' || !Number.isInteger(pid)) malformed('pid');
    return { session, owner, kind: kind === 0 ? 'posix' : 'flock', type: type === 0 ? 'read' : 'write', start, end: end === null ? Infinity : end, pid };
  });
}

export function encodeSession(r: SessionRecord): Buffer {
  return Buffer.from(JSON.stringify({ c: r.counter, l: r.leaseMs, f: r.inFlightMs, d: r.dead }));
}

export function decodeSession(b: Buffer | null): SessionRecord | null {
  if (b === null) return null;
  let d: { c?: unknown; l?: unknown; f?: unknown; d?: unknown };
  try {
    d = JSON.parse(b.toString('utf8')) as typeof d;
  } catch {
    throw new FsError('EIO', 'malformed session record: not JSON');
  }
  if (
    typeof d !== 'object' ||
    d === null ||
    !Number.isSafeInteger(d.c) ||
    !Number.isSafeInteger(d.l) ||
    !Number.isSafeInteger(d.f) ||
    (d.l as number) <= 0 ||
    (d.f as number) < 0 ||
    typeof d.d !== 'boolean'
  ) {
    throw new FsError('EIO', 'malformed session record');
  }
  return { counter: d.c as number, leaseMs: d.l as number, inFlightMs: d.f as number, dead: d.d };
}

// ---- the decision a change of a lock record makes (pure)

export type LockDecision = { granted: true; locks: RangeLock[] } | { granted: false; conflict: RangeLock; locks: RangeLock[] };

/**
 * What `req` does to a file's locks: locks of sessions known dead go first;
 * then a flock conversion drops the old lock; then either the request is
 * granted (the new list) or the first conflicting lock is returned (with the
 * list as it should be stored: dead sessions and a converted flock removed).
 */
export function decideLock(current: readonly RangeLock[], req: LockRequest, dead: ReadonlySet<string>): LockDecision {
  let locks = dead.size === 0 ? [...current] : current.filter((l) => !dead.has(l.session));
  locks = flockConversionDrop(locks, req);
  const conflict = findConflict(locks, req);
  if (conflict !== null) return { granted: false, conflict, locks };
  return { granted: true, locks: applyLock(locks, req) };
}

function sameLocks(a: readonly RangeLock[], b: readonly RangeLock[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (!sameOwner(x, y) || x.kind !== y.kind || x.type !== y.type || x.start !== y.start || x.end !== y.end || x.pid !== y.pid) return false;
  }
  return true;
}

// ---- the service a mount runs

/** The file's locks went with a session declared dead: what was written under them is dropped, not published. */
export class LocksLostError extends FsError {
  constructor() {
    super('EIO', "this mount's locks on the file were lost (its lock session was declared dead by another mount): what it wrote to the file since is dropped, not published");
  }
}

export interface LockServiceOptions {
  log: Logger;
  clock?: Clock;
  lease?: Partial<LeaseParams>;
  /** Deadline of each record change or read (ms). */
  requestMs?: number;
  /** Longest pause between two looks at a lock held on another mount (ms). */
  pollMaxMs?: number;
  /** The session id (default: random). */
  sessionId?: () => string;
  /**
   * Test-only: reintroduces a protocol bug, so that the simulator shows it finds
   * it. `noDeclare`: a session seen unchanged for long enough is treated as dead
   * without marking its record dead, so its mount, back in touch, renews and
   * trusts locks that others have taken.
   */
  injectBugs?: { noDeclare?: boolean };
}

export interface LockSpec {
  /** The kernel's lock owner (POSIX) or the open file (flock). */
  owner: string;
  kind: 'posix' | 'flock';
  type: LockType | 'unlock';
  start: number;
  end: number;
  pid: number;
}

/** Something the simulator (and logs) may want to know about the session. */
export type SessionEvent =
  | { kind: 'trusted'; session: string; until: number }
  | { kind: 'lapsed'; session: string }
  | { kind: 'lost'; session: string; locks: Array<{ ino: Ino; locks: RangeLock[] }> };

interface Session {
  id: string;
  /** Own clock: until when its locks are trusted. */
  until: number;
  /** Declared dead (or given up): a new session is needed. */
  lost: boolean;
  lapseTimer: Timer | null;
}

const DEAD_SESSIONS_REMEMBERED = 4096;
const OBSERVATIONS_REMEMBERED = 4096;

function ownerKey(owner: string, kind: 'posix' | 'flock'): string {
  return `${kind}\0${owner}`;
}

function undoKey(ino: Ino, owner: string, kind: 'posix' | 'flock'): string {
  return `${ino}\0${ownerKey(owner, kind)}`;
}

export class LockService {
  private readonly clock: Clock;
  private readonly lease: LeaseParams;
  private readonly requestMs: number;
  private readonly pollMaxMs: number;
  private session: Session | null = null;
  private starting: Promise<Session> | null = null;
  private renewTimer: Timer | null = null;
  private stopped = false;
  /** This session's locks as last stored, per file (the record is the truth; this answers "do I hold anything here?"). */
  private readonly held = new Map<Ino, RangeLock[]>();
  /**
   * Per file, the owners (ownerKey) with a change whose outcome is unknown: this
   * session may hold locks of theirs there that `held` does not show. A change
   * touches only its own owner's locks (and dead sessions'), so the others'
   * entries in `held` stay exact; a later change that answers and wrote makes
   * the file known (while any is unknown, every change writes: see attempt).
   */
  private readonly unsure = new Map<Ino, Set<string>>();
  /**
   * Per file and owner (undoKey), the unlock that takes back a request which
   * ended without a grant after a change whose outcome was unknown. It is
   * retried until it lands, and that owner's next lock request on the file
   * waits for it, so it can never remove a later grant.
   */
  private readonly undoing = new Map<string, Promise<void>>();
  /** Waiters on this mount per file, woken by this mount's releases. */
  private readonly waiters = new Map<Ino, Set<() => void>>();
  private readonly observations = new Map<string, Observation>();
  private readonly dead = new Set<string>();
  /**
   * Files whose locks went with a session declared dead: what this mount
   * wrote under them is not published (an NFS client answers EIO after a lost
   * lock the same way), until every handle of the file here is closed.
   */
  private readonly fenced = new Set<Ino>();
  /**
   * Per file, the owners this session granted a lock to and that have not
   * seen it gone in a change of their own. Unlike `held` (the record as last
   * stored), a lock another mount dropped because it declared this session
   * dead stays here, so the loss fences the file.
   */
  private readonly holders = new Map<Ino, Set<string>>();
  /** For the simulator and tests. */
  onEvent: ((e: SessionEvent) => void) | null = null;

  constructor(
    /** Only linearizable reads and changes: the cluster's registers, or the simulator's. */
    private readonly ks: Pick<RegisterSpace, 'read' | 'change'>,
    private readonly opts: LockServiceOptions,
  ) {
    this.clock = opts.clock ?? systemClock;
    this.lease = { ...DEFAULT_LEASE, ...opts.lease };
    this.requestMs = opts.requestMs ?? 5000;
    this.pollMaxMs = opts.pollMaxMs ?? 250;
  }

  get leaseParams(): Readonly<LeaseParams> {
    return this.lease;
  }

  /** The current session id (null before the first lock). */
  get sessionId(): string | null {
    return this.session?.id ?? null;
  }

  /** Whether this mount trusts its locks now. */
  trusted(): boolean {
    const s = this.session;
    return s !== null && !s.lost && this.clock.now() < s.until;
  }

  // ---- session

  private async ensureSession(deadline: number): Promise<Session> {
    for (;;) {
      if (this.stopped) throw new FsError('EIO', 'the lock service is stopped');
      const s = this.session;
      if (s !== null && !s.lost && this.clock.now() < s.until) return s;
      if (s === null || s.lost) {
        this.starting ??= this.startSession().finally(() => (this.starting = null));
        await this.starting.catch(() => null);
      } else {
        // lapsed: renew now rather than at the next period
        await this.renewNow();
      }
      if (this.clock.now() >= deadline) throw new FsError('ENOLCK', 'no lock session: the cluster did not answer');
    }
  }

  private async startSession(): Promise<Session> {
    const id = this.opts.sessionId?.() ?? this.clock.randomHex(12);
    const rec: SessionRecord = { counter: 1, leaseMs: this.lease.leaseMs, inFlightMs: this.lease.inFlightMs, dead: false };
    const sentAt = this.clock.now();
    await this.ks.change(sessionKey(id), () => encodeSession(rec), { timeoutMs: this.requestMs });
    const s: Session = { id, until: trustedUntil(sentAt, this.lease.leaseMs), lost: false, lapseTimer: null };
    if (this.stopped) throw new FsError('EIO', 'the lock service is stopped');
    this.session = s;
    this.armLapse(s);
    this.onEvent?.({ kind: 'trusted', session: id, until: s.until });
    this.scheduleRenewal();
    return s;
  }

  private armLapse(s: Session): void {
    s.lapseTimer?.cancel();
    s.lapseTimer = this.clock.after(Math.max(0, s.until - this.clock.now()), () => {
      if (this.session === s && !s.lost && this.clock.now() >= s.until) {
        this.opts.log.warn({ session: s.id }, 'lock session lapsed: renewals are not getting through');
        this.onEvent?.({ kind: 'lapsed', session: s.id });
      } else if (this.session === s && !s.lost) {
        this.armLapse(s);
      }
    });
  }

  private scheduleRenewal(): void {
    if (this.renewTimer !== null || this.stopped) return;
    this.renewTimer = this.clock.after(renewEveryMs(this.lease.leaseMs), () => {
      this.renewTimer = null;
      void this.renewNow().finally(() => this.scheduleRenewal());
    });
  }

  private renewing: Promise<void> | null = null;

  /** One renewal, shared by everyone who asks while it runs. */
  private renewNow(): Promise<void> {
    this.renewing ??= this.renewOnce().finally(() => (this.renewing = null));
    return this.renewing;
  }

  private async renewOnce(): Promise<void> {
    const s = this.session;
    if (s === null || s.lost || this.stopped) return;
    const sentAt = this.clock.now();
    try {
      await this.ks.change(sessionKey(s.id), (old) => encodeSession(renew(decodeSession(old))), { timeoutMs: Math.min(this.requestMs, this.lease.leaseMs / 2) });
    } catch (err) {
      if (err instanceof SessionLostError) this.lose(s);
      // anything else: try again next period; the lapse timer stops the trust meanwhile
      else this.opts.log.debug({ session: s.id, err: (err as Error).message }, 'lock session renewal failed');
      return;
    }
    if (s.lost || this.session !== s) return;
    const until = trustedUntil(sentAt, this.lease.leaseMs);
    if (until > s.until) {
      const wasLapsed = this.clock.now() >= s.until;
      s.until = until;
      this.armLapse(s);
      if (wasLapsed) this.opts.log.info({ session: s.id }, 'lock session renewed after a lapse');
      this.onEvent?.({ kind: 'trusted', session: s.id, until });
    }
  }

  /** The session was declared dead: every lock it held is gone. */
  private lose(s: Session): void {
    if (s.lost) return;
    s.lost = true;
    s.lapseTimer?.cancel();
    const locks = [...this.held].map(([ino, l]) => ({ ino, locks: l }));
    for (const ino of [...this.held.keys(), ...this.unsure.keys(), ...this.holders.keys()]) this.fenced.add(ino);
    this.holders.clear();
    this.held.clear();
    this.unsure.clear();
    if (locks.length > 0) this.opts.log.error({ session: s.id, files: locks.length }, 'lock session declared dead by another mount: its locks are lost');
    this.onEvent?.({ kind: 'lost', session: s.id, locks });
    for (const set of this.waiters.values()) for (const w of set) w();
  }

  /** Ends the session (unmount): marks it dead, so other mounts take its locks at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.renewTimer?.cancel();
    this.renewTimer = null;
    const s = this.session;
    if (s === null || s.lost) return;
    s.lost = true;
    s.lapseTimer?.cancel();
    this.held.clear();
    this.holders.clear();
    await this.ks
      .change(sessionKey(s.id), (old) => {
        const r = decodeSession(old);
        return r === null ? KEEP : encodeSession({ ...r, dead: true });
      }, { timeoutMs: this.requestMs })
      .catch((err: Error) => this.opts.log.warn({ err: err.message }, 'could not end the lock session (others will wait for its lease)'));
    for (const set of this.waiters.values()) for (const w of set) w();
  }

  // ---- other sessions

  /** Looks at a session holding a conflicting lock: true when its locks may go now. */
  private async checkSession(id: string): Promise<{ dead: boolean; recheckInMs: number }> {
    if (this.dead.has(id)) return { dead: true, recheckInMs: 0 };
    // Every look writes the value back as it is (a fence): a renewal the holder
    // sent before it died may sit accepted on a minority of replicas, where a
    // quorum read does not see it (the majority agrees on the older value) but a
    // later round adopts it, moving the counter after the count has begun.
    // Written back at a higher ballot on a majority, it never can; after this,
    // only a renewal sent later changes the counter. Only the first look fenced
    // once: a holder that died later, while this mount watched it, left such a
    // renewal, which the declaration itself then adopted, so the count began
    // again and the release took twice the wait (lock simulator seed 6363). With
    // every look a fence, the first look after the death ends the counter.
    const rec = decodeSession(await this.ks.change(sessionKey(id), (old) => (old === null ? KEEP : Buffer.from(old)), { timeoutMs: this.requestMs }));
    const now = this.clock.now();
    const seen = rec === null ? undefined : observe(this.observations.get(id), rec, now);
    if (seen !== undefined) {
      if (this.observations.size >= OBSERVATIONS_REMEMBERED && !this.observations.has(id)) this.observations.clear();
      this.observations.set(id, seen);
    }
    const v = sessionVerdict(rec, seen, now, this.lease.drift);
    if (v.kind === 'alive') return { dead: false, recheckInMs: v.recheckInMs };
    if (v.kind === 'expired' && this.opts.injectBugs?.noDeclare !== true) {
      const after = decodeSession(
        await this.ks.change(sessionKey(id), (old) => {
          const r = decodeSession(old);
          const d = declareDead(r, v.counter);
          return d === r || d === null ? KEEP : encodeSession(d);
        }, { timeoutMs: this.requestMs }),
      );
      if (after !== null && !after.dead) return { dead: false, recheckInMs: renewEveryMs(after.leaseMs) };
      this.opts.log.warn({ session: id }, 'declared a lock session dead (not renewed within its lease): its locks are released');
    }
    if (this.dead.size >= DEAD_SESSIONS_REMEMBERED) this.dead.clear();
    this.dead.add(id);
    this.observations.delete(id);
    return { dead: true, recheckInMs: 0 };
  }

  // ---- locks

  private ownerOf(spec: LockSpec, s: Session): LockRequest {
    return { session: s.id, owner: spec.owner, kind: spec.kind, type: spec.type, start: spec.start, end: spec.end, pid: spec.pid };
  }

  private isUnsure(ino: Ino, owner: string, kind: 'posix' | 'flock'): boolean {
    return this.unsure.get(ino)?.has(ownerKey(owner, kind)) ?? false;
  }

  private markUnsure(ino: Ino, owner: string, kind: 'posix' | 'flock'): void {
    let set = this.unsure.get(ino);
    if (set === undefined) this.unsure.set(ino, (set = new Set()));
    set.add(ownerKey(owner, kind));
  }

  /**
   * What a change that answered stored. Only one that wrote (at a ballot above
   * any earlier change of this mount) settles the outcomes that were unknown;
   * one that kept the value did not write, and it kept it only while none was.
   */
  private remember(ino: Ino, sessionId: string, locks: readonly RangeLock[], wrote: boolean): void {
    const mine = locks.filter((l) => l.session === sessionId);
    if (mine.length === 0) this.held.delete(ino);
    else this.held.set(ino, mine);
    if (wrote) this.unsure.delete(ino);
  }

  /** After a change of `spec`'s owner that answered: does that owner still hold something on the file? */
  private noteHolder(ino: Ino, sessionId: string, spec: LockSpec, locks: readonly RangeLock[]): void {
    const key = ownerKey(spec.owner, spec.kind);
    const has = locks.some((l) => l.session === sessionId && l.owner === spec.owner && l.kind === spec.kind);
    let set = this.holders.get(ino);
    if (has) {
      if (set === undefined) this.holders.set(ino, (set = new Set()));
      set.add(key);
    } else if (set !== undefined) {
      set.delete(key);
      if (set.size === 0) this.holders.delete(ino);
    }
  }

  private wake(ino: Ino): void {
    const set = this.waiters.get(ino);
    if (set === undefined) return;
    for (const w of set) w();
  }

  /** Does this mount (possibly) hold a lock of `owner` on the file? (No: an unlock has nothing to do.) */
  mayHold(ino: Ino, owner: string, kind: 'posix' | 'flock'): boolean {
    if (this.isUnsure(ino, owner, kind)) return true;
    return (this.held.get(ino) ?? []).some((l) => l.owner === owner && l.kind === kind);
  }

  /** One change of the record: granted, or the conflicting lock. */
  private async attempt(ino: Ino, spec: LockSpec, s: Session, deadline: number): Promise<LockDecision> {
    const req = this.ownerOf(spec, s);
    let decision: LockDecision | null = null;
    const dead = this.dead;
    let stored: Buffer | null;
    let wrote = false;
    try {
      stored = await this.ks.change(
        lockKey(ino),
        (old) => {
          const current = decodeLocks(old);
          decision = decideLock(current, req, dead);
          wrote = true;
          if (sameLocks(current, decision.locks)) {
            // Nothing to change. A change that keeps the value writes nothing when a
            // majority agrees on it, and then a change of this mount whose outcome is
            // unknown, accepted on a minority, can still be adopted by a later round
            // (seed 5457: an undo that found nothing to unlock, and the lock came back
            // after it). While there is one, write the value back at this round's
            // ballot: then it never can, and the file is known again.
            if (this.unsure.has(ino)) return old === null ? null : Buffer.from(old);
            wrote = false;
            return KEEP;
          }
          if (decision.locks.length > MAX_LOCKS_PER_FILE) throw new FsError('ENOLCK', `more than ${MAX_LOCKS_PER_FILE} locks on one file`);
          return encodeLocks(decision.locks);
        },
        { deadline },
      );
    } catch (err) {
      this.markUnsure(ino, spec.owner, spec.kind);
      throw err;
    }
    const d = decision as LockDecision | null;
    if (d === null) throw new FsError('EIO', 'lock change did not run');
    this.remember(ino, s.id, decodeLocks(stored), wrote);
    this.noteHolder(ino, s.id, spec, decodeLocks(stored));
    return d;
  }

  /**
   * F_SETLK / F_SETLKW / flock: takes, changes or releases a lock. With `wait`,
   * blocks until granted or `signal` aborts (EINTR); without, a conflict is
   * EAGAIN. Unlocking what is not held costs nothing.
   */
  async set(ino: Ino, spec: LockSpec, wait: boolean, signal?: AbortSignal): Promise<void> {
    if (spec.type === 'unlock') {
      if (!this.mayHold(ino, spec.owner, spec.kind)) return;
      const s = this.session;
      if (s === null || s.lost) {
        this.held.delete(ino);
        return;
      }
      await this.attempt(ino, spec, s, this.clock.now() + this.requestMs);
      this.wake(ino);
      return;
    }
    // A change whose outcome is unknown may have granted the lock. If the
    // request then ends without a grant (EINTR, an error), that grant must not
    // stay behind, or another owner waits on a lock this process does not know
    // it holds (the lock simulator found that, seed 3108). When the owner held
    // nothing of this kind in the range before, undoing it is unlocking the range.
    // The undo is retried in the background until it lands: the cluster that did
    // not answer the request often does not answer the undo either, and an undo
    // tried once left the lock for good (seed 4936). This owner's next request
    // on the file waits for it first.
    // (no await when none is pending: a request reaches the cluster in the same turn, as before)
    if (this.undoing.has(undoKey(ino, spec.owner, spec.kind))) await this.undone(ino, spec, wait, signal);
    const priorKnown = !this.isUnsure(ino, spec.owner, spec.kind);
    const heldBefore = (this.held.get(ino) ?? []).some((l) => l.owner === spec.owner && l.kind === spec.kind && l.start < spec.end && spec.start < l.end);
    let uncertain = false;
    try {
      return await this.setLoop(ino, spec, wait, signal, (u) => (uncertain = u));
    } catch (err) {
      if (uncertain && priorKnown && !heldBefore) this.undo(ino, spec);
      throw err;
    }
  }

  /** Undos still being retried (for the simulator and tests). */
  pendingUndos(): number {
    return this.undoing.size;
  }

  /**
   * Waits until no undo of this owner's is pending on the file: a waiting
   * request until the signal; a non-waiting one for one request's deadline,
   * then ENOLCK (as when the cluster does not answer).
   */
  private async undone(ino: Ino, spec: LockSpec, wait: boolean, signal: AbortSignal | undefined): Promise<void> {
    const deadline = this.clock.now() + this.requestMs;
    for (;;) {
      const pending = this.undoing.get(undoKey(ino, spec.owner, spec.kind));
      if (pending === undefined) return;
      if (signal?.aborted) throw new FsError('EINTR');
      const left = deadline - this.clock.now();
      if (!wait && left <= 0) throw new FsError('ENOLCK', 'an earlier request of this owner is still being undone: the cluster did not answer');
      await new Promise<void>((resolve, reject) => {
        const timer = wait ? null : this.clock.after(left, finish);
        const aborted = (): void => {
          timer?.cancel();
          reject(new FsError('EINTR'));
        };
        function finish(): void {
          timer?.cancel();
          signal?.removeEventListener('abort', aborted);
          resolve();
        }
        signal?.addEventListener('abort', aborted, { once: true });
        void pending.then(finish);
      });
    }
  }

  /** Starts the undo of a request (an unlock of its range), retried until it lands, the session is lost, or the service stops. */
  private undo(ino: Ino, spec: LockSpec): void {
    const key = undoKey(ino, spec.owner, spec.kind);
    const s0 = this.session;
    const unlock: LockSpec = { ...spec, type: 'unlock' };
    const run = async (): Promise<void> => {
      let backoff = 10;
      for (let tries = 1; ; tries++) {
        const s = this.session;
        // a lost session's locks went with it; a stopped service ended its session
        if (this.stopped || s === null || s.lost || s !== s0) return;
        try {
          await this.attempt(ino, unlock, s, this.clock.now() + this.requestMs);
          this.wake(ino);
          if (tries > 1) this.opts.log.info({ ino, owner: spec.owner, tries }, 'undid a lock request whose outcome was unknown');
          return;
        } catch (err) {
          const msg = { ino, owner: spec.owner, err: (err as Error).message };
          // a broken record (EIO) does not mend by trying again; the cluster not answering does
          if (err instanceof FsError) {
            this.opts.log.error(msg, 'could not undo a lock request whose outcome was unknown');
            return;
          }
          if (tries === 1) this.opts.log.warn(msg, 'could not undo a lock request whose outcome was unknown yet; trying again');
          else this.opts.log.debug(msg, 'lock undo: the cluster did not answer; trying again');
        }
        await this.pause(backoff * (0.75 + this.clock.random() / 2));
        backoff = Math.min(this.pollMaxMs, backoff * 2);
      }
    };
    const p: Promise<void> = run()
      .catch((err: Error) => this.opts.log.error({ err: err.message }, 'lock undo failed'))
      .finally(() => {
        if (this.undoing.get(key) === p) this.undoing.delete(key);
      });
    this.undoing.set(key, p);
  }

  private async setLoop(ino: Ino, spec: LockSpec, wait: boolean, signal: AbortSignal | undefined, uncertain: (u: boolean) => void): Promise<void> {
    let backoff = 10;
    for (;;) {
      if (signal?.aborted) throw new FsError('EINTR');
      const deadline = this.clock.now() + this.requestMs;
      let s: Session;
      let d: LockDecision;
      try {
        s = await this.ensureSession(deadline);
        d = await this.attempt(ino, spec, s, deadline);
        uncertain(false);
      } catch (err) {
        if (this.isUnsure(ino, spec.owner, spec.kind)) uncertain(true);
        // A waiting lock outlasts a cluster that does not answer (a signal ends it); a non-waiting one reports it.
        if (!wait || (err instanceof FsError && err.errno !== 'ENOLCK')) throw err;
        this.opts.log.debug({ err: (err as Error).message }, 'lock wait: the cluster did not answer; trying again');
        await this.waitLocal(ino, backoff, signal);
        backoff = Math.min(this.pollMaxMs, backoff * 2);
        continue;
      }
      if (d.granted) {
        if (spec.kind === 'flock' || d.locks.length > 0) this.wake(ino); // a conversion or split may have released something
        // Granted while the trust had run out: it counts only once a renewal shows the
        // session alive (then nobody can have taken its locks); if the session was
        // declared dead instead, the lock went with it.
        if (!this.trusted()) {
          // Stored, but reported as not taken if the trust does not come back: then it is undone like an unknown outcome.
          uncertain(true);
          await this.regainTrust(s, this.clock.now() + 4 * this.requestMs);
          uncertain(false);
        }
        return;
      }
      let pauseMs = backoff;
      // Every other mount in the way is watched at once, so that several dead ones cost one wait.
      const sessions = [...new Set(findConflicts(d.locks, this.ownerOf(spec, s)).map((l) => l.session))].filter((id) => id !== s.id);
      if (sessions.length > 0) {
        let verdicts: Array<{ dead: boolean; recheckInMs: number }>;
        try {
          verdicts = await Promise.all(sessions.map((id) => this.checkSession(id)));
        } catch (err) {
          // as with the change itself: a waiting lock outlasts a cluster that does not answer
          if (!wait || (err instanceof FsError && err.errno !== 'ENOLCK')) throw err;
          this.opts.log.debug({ err: (err as Error).message }, 'lock wait: the cluster did not answer a look at a holder; trying again');
          await this.waitLocal(ino, backoff, signal);
          backoff = Math.min(this.pollMaxMs, backoff * 2);
          continue;
        }
        this.opts.log.debug({ ino, owner: spec.owner, holder: d.conflict.owner, sessions, dead: verdicts.map((v) => v.dead) }, 'lock held by another mount');
        if (verdicts.some((v) => v.dead)) continue; // the next change drops their locks
        pauseMs = Math.min(backoff, ...verdicts.map((v) => v.recheckInMs));
      }
      if (!wait) throw new FsError('EAGAIN');
      await this.waitLocal(ino, pauseMs, signal);
      backoff = Math.min(this.pollMaxMs, backoff * 2);
    }
  }

  private async regainTrust(s: Session, deadline: number): Promise<void> {
    while (!this.trusted()) {
      if (s.lost || this.session !== s) throw new FsError('ENOLCK', 'the lock session was declared dead while the lock was being taken');
      if (this.clock.now() >= deadline) {
        // Rare: reported as not taken; set() undoes it when the owner held nothing there before.
        throw new FsError('ENOLCK', 'the lock session lapsed while the lock was being taken');
      }
      await this.renewNow();
      if (!this.trusted()) await this.pause(10);
    }
  }

  /** F_GETLK: the lock that would stop `spec`, or null. */
  async test(ino: Ino, spec: LockSpec): Promise<RangeLock | null> {
    const s = this.session;
    const req: LockRequest = { session: s?.id ?? '', owner: spec.owner, kind: spec.kind, type: spec.type, start: spec.start, end: spec.end, pid: spec.pid };
    const locks = decodeLocks(await this.ks.read(lockKey(ino), { timeoutMs: this.requestMs })).filter((l) => !this.dead.has(l.session));
    return findConflict(locks, req);
  }

  /** Every lock of `owner` on the file (a close: POSIX; the last close of a description: flock). */
  async releaseAll(ino: Ino, owner: string, kind: 'posix' | 'flock'): Promise<void> {
    await this.set(ino, { owner, kind, type: 'unlock', start: 0, end: Infinity, pid: 0 }, false);
  }

  // ---- fencing this mount's own writes (docs/architecture.md, "Locks": "What a cut-off mount's writes can do")

  /** Does this mount hold, or may it hold, a lock on the file? */
  private holdsOn(ino: Ino): boolean {
    return (this.held.get(ino)?.length ?? 0) > 0 || this.unsure.has(ino) || this.holders.has(ino);
  }

  /** Were the file's locks lost with a dead session (its handles here then answer EIO)? */
  isFenced(ino: Ino): boolean {
    return this.fenced.has(ino);
  }

  /** Every handle of the file on this mount is closed: the next open starts clean. */
  unfence(ino: Ino): void {
    this.fenced.delete(ino);
  }

  /**
   * Before this mount publishes what it wrote to a file: a file it holds locks
   * on is published only while its session is trusted, and every request of
   * the publish gets a deadline that ends before another mount may declare
   * the session dead (trust end + F on this clock; the argument is the one
   * for requests in flight). While the session is lapsed, waits (up to
   * D + F) for a renewal. Throws LocksLostError when the locks went with a
   * dead session (the caller drops what it wrote: publishing it could
   * overwrite what the next holder wrote), EIO when the session stays
   * lapsed (nothing is dropped; a later flush tries again).
   */
  async publishGate(ino: Ino): Promise<{ deadline: number } | undefined> {
    if (this.fenced.has(ino)) throw new LocksLostError();
    if (!this.holdsOn(ino)) return undefined;
    const giveUpAt = this.clock.now() + this.lease.leaseMs + this.lease.inFlightMs;
    for (;;) {
      const s = this.session;
      if (this.fenced.has(ino)) throw new LocksLostError();
      // (the key space given to this service measures CallOpts deadlines on the same clock: the system's, or the simulator's)
      if (s !== null && !s.lost && this.clock.now() < s.until) return { deadline: s.until + this.lease.inFlightMs };
      if (s === null || s.lost || !this.holdsOn(ino)) {
        if (this.fenced.has(ino)) throw new LocksLostError();
        return undefined; // released meanwhile: nothing of this session guards the file any more
      }
      if (this.stopped || this.clock.now() >= giveUpAt) throw new FsError('EIO', 'the lock session is lapsed (renewals are not getting through): not published; a later fsync or close tries again');
      await this.renewNow();
      if (!this.trusted()) await this.pause(Math.min(50, renewEveryMs(this.lease.leaseMs)));
    }
  }

  /** This session's locks on a file, as last stored (tests, F_GETLK pids). */
  heldOn(ino: Ino): RangeLock[] {
    return [...(this.held.get(ino) ?? [])];
  }

  /** The locks this session holds of `owner` (a view, for tests). */
  ownerLocks(ino: Ino, owner: string, kind: 'posix' | 'flock'): RangeLock[] {
    const s = this.session;
    return s === null ? [] : locksOf(this.held.get(ino) ?? [], { session: s.id, owner }, kind);
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => this.clock.after(ms, resolve));
  }

  /** Waits up to `ms` (jittered), or until this mount releases something on the file, or the signal. */
  private waitLocal(ino: Ino, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      let set = this.waiters.get(ino);
      if (set === undefined) this.waiters.set(ino, (set = new Set()));
      const waiters = set;
      const done = (): void => {
        timer.cancel();
        waiters.delete(done);
        if (waiters.size === 0 && this.waiters.get(ino) === waiters) this.waiters.delete(ino);
        signal?.removeEventListener('abort', aborted);
      };
      const woken = (): void => {
        done();
        resolve();
      };
      const aborted = (): void => {
        done();
        reject(new FsError('EINTR'));
      };
      const timer = this.clock.after(ms * (0.75 + this.clock.random() / 2), woken);
      waiters.add(woken);
      signal?.addEventListener('abort', aborted, { once: true });
    });
  }
}
