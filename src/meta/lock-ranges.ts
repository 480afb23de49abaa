// What a lock request does to the locks of one file, as Linux decides it: pure
// functions over lists, no I/O. The same functions decide for the cluster's
// lock record (src/meta/locks.ts) and are tested against Linux itself
// (test/meta/lock-ranges.test.ts runs the same request sequences through
// fcntl(2) and flock(2) on a local directory).
//
// POSIX byte-range locks (fcntl F_SETLK / F_SETLKW / F_GETLK) belong to an
// owner (a process's file table, as the kernel names it). An owner's own locks
// never conflict with each other: a new request replaces whatever the owner
// held in its range (splitting a lock that reaches past it), and then merges
// with the owner's locks of the same type that overlap or touch it. Unlocking
// is the same with nothing put in. Two owners conflict when their ranges
// overlap and at least one of the two locks is a write lock.
//
// flock(2) locks belong to an open file description and cover the whole file;
// a shared and an exclusive lock of different descriptions conflict. Changing
// the type of a flock is not atomic on Linux: the old lock goes first, then the
// new one is asked for (and a LOCK_NB that fails leaves none).
//
// Ranges are [start, end) in bytes, `end` Infinity for "to the end of the file"
// (fcntl's l_len 0). Offsets are JS numbers: ends at or past 2^53 count as
// Infinity (docs/architecture.md, "Locks").

export type LockType = 'read' | 'write';

/** Who holds a lock: a mount's session and, inside it, the kernel's lock owner (POSIX) or the open file (flock). */
export interface LockOwner {
  session: string;
  owner: string;
}

export interface RangeLock extends LockOwner {
  kind: 'posix' | 'flock';
  type: LockType;
  start: number;
  /** Exclusive; Infinity: to the end of the file (flock locks: always [0, Infinity)). */
  end: number;
  /** The process that took it (reported by F_GETLK). */
  pid: number;
}

export interface LockRequest extends LockOwner {
  kind: 'posix' | 'flock';
  /** 'unlock' releases the range (POSIX) or the lock (flock). */
  type: LockType | 'unlock';
  start: number;
  end: number;
  pid: number;
}

/** Past this, offsets are not exact as JS numbers: such an end means "to the end of the file". */
export const MAX_EXACT_OFFSET = Number.MAX_SAFE_INTEGER;

export function sameOwner(a: LockOwner, b: LockOwner): boolean {
  return a.session === b.session && a.owner === b.owner;
}

function overlaps(a: { start: number; end: number }, b: { start: number; end: number }): boolean {
  return a.start < b.end && b.start < a.end;
}

/**
 * A lock of another owner (of the same kind) that `req` conflicts with, or null.
 * Of several, the one with the lowest start (Linux reports the first in its own
 * list order; which one is not specified by POSIX).
 */
export function findConflict(locks: readonly RangeLock[], req: LockRequest): RangeLock | null {
  let found: RangeLock | null = null;
  for (const l of findConflicts(locks, req)) if (found === null || l.start < found.start) found = l;
  return found;
}

/** Every lock of another owner (of the same kind) that `req` conflicts with. */
export function findConflicts(locks: readonly RangeLock[], req: LockRequest): RangeLock[] {
  if (req.type === 'unlock') return [];
  return locks.filter((l) => l.kind === req.kind && !sameOwner(l, req) && !(l.type === 'read' && req.type === 'read') && overlaps(l, req));
}

/**
 * The locks after `req` is granted (the caller has checked findConflict). Other
 * owners' locks are kept as they are, in order; the owner's own locks of this
 * kind are rebuilt, sorted by start.
 */
export function applyLock(locks: readonly RangeLock[], req: LockRequest): RangeLock[] {
  const others: RangeLock[] = [];
  const own: RangeLock[] = [];
  for (const l of locks) (l.kind === req.kind && sameOwner(l, req) ? own : others).push(l);
  if (req.kind === 'flock') {
    if (req.type === 'unlock') return others;
    return [...others, { session: req.session, owner: req.owner, kind: 'flock', type: req.type, start: 0, end: Infinity, pid: req.pid }];
  }
  // Cut the request's range out of the owner's locks.
  const cut: RangeLock[] = [];
  for (const l of own) {
    if (!overlaps(l, req)) {
      cut.push(l);
      continue;
    }
    if (l.start < req.start) cut.push({ ...l, end: req.start });
    if (l.end > req.end) cut.push({ ...l, start: req.end });
  }
  if (req.type !== 'unlock') {
    cut.push({ session: req.session, owner: req.owner, kind: 'posix', type: req.type, start: req.start, end: req.end, pid: req.pid });
  }
  cut.sort((a, b) => a.start - b.start);
  // Merge neighbours of the same type that touch (they cannot overlap any more).
  const merged: RangeLock[] = [];
  for (const l of cut) {
    const last = merged[merged.length - 1];
    if (last !== undefined && last.type === l.type && last.end === l.start) {
      merged[merged.length - 1] = { ...last, end: l.end, pid: req.type !== 'unlock' && overlaps(l, req) ? req.pid : last.pid };
    } else {
      merged.push(l);
    }
  }
  return [...others, ...merged];
}

/**
 * flock(2) changes a lock's type by dropping the old one first (not
 * atomically): what the locks are before the new type is asked for.
 */
export function flockConversionDrop(locks: readonly RangeLock[], req: LockRequest): RangeLock[] {
  if (req.kind !== 'flock' || req.type === 'unlock') return [...locks];
  const mine = locks.find((l) => l.kind === 'flock' && sameOwner(l, req));
  if (mine === undefined || mine.type === req.type) return [...locks];
  return locks.filter((l) => l !== mine);
}

/** The locks an owner holds (of one kind, or both). */
export function locksOf(locks: readonly RangeLock[], who: LockOwner, kind?: 'posix' | 'flock'): RangeLock[] {
  return locks.filter((l) => sameOwner(l, who) && (kind === undefined || l.kind === kind));
}

/**
 * A range from fcntl's (start, len) with l_whence already SEEK_SET (libfuse
 * converts): [start, start+len), len 0 to the end of the file. Negative lengths
 * never reach a FUSE filesystem (the kernel normalises them); a bad range is a
 * RangeError.
 */
export function rangeOf(start: number, len: number): { start: number; end: number } {
  if (!Number.isFinite(start) || !Number.isFinite(len) || start < 0 || len < 0 || !Number.isInteger(start) || !Number.isInteger(len)) {
    throw new RangeError(`bad lock range start ${start} len ${len}`);
  }
  if (start > MAX_EXACT_OFFSET) throw new RangeError(`lock offset ${start} past 2^53`);
  if (len === 0) return { start, end: Infinity };
  const end = start + len;
  return { start, end: end > MAX_EXACT_OFFSET ? Infinity : end };
}

/** fcntl's length of a range (0: to the end of the file). */
export function lengthOf(r: { start: number; end: number }): number {
  return r.end === Infinity ? 0 : r.end - r.start;
}
