// Mount sessions (leases) for locks, without synchronized clocks: pure
// verdicts, no I/O (src/meta/locks.ts acts on them; test/sim/locks.ts runs them
// on drifting simulated clocks).
//
// A mount's session record holds a counter that the mount raises every
// `leaseMs / 4`. The mount trusts its locks until `leaseMs` after it *sent* its
// last renewal that succeeded (on its own clock). Another mount that wants a
// lock held under that session reads the record; it declares the session dead
// only once it has seen the counter unchanged for `deadAfterMs` on its own
// clock, counted from the moment a read *returned* that counter (so after the
// holder sent the renewal that wrote it). With every clock's rate within
// (1 ± drift) of real time, the holder stops trusting at real time at most
// send + leaseMs / (1 - drift), and the observer declares at real time at least
// firstSeen + deadAfterMs / (1 + drift) ≥ send + deadAfterMs / (1 + drift); so
// deadAfterMs ≥ (leaseMs + inFlightMs)(1 + drift)/(1 - drift) keeps the two
// apart, with `inFlightMs` more for requests the holder sent before its trust
// ran out (their deadline). The declaration is a compare-and-set on the
// record (counter unchanged → dead), and a renewal of a dead session fails,
// so a session declared dead never comes back: its mount starts a new one.

export interface SessionRecord {
  /** Raised by every renewal. */
  counter: number;
  /** The holder's lease and in-flight bound, so that every observer uses the holder's own numbers. */
  leaseMs: number;
  inFlightMs: number;
  /** Declared dead (by another mount, or by its own at unmount): never renewed again. */
  dead: boolean;
}

export interface LeaseParams {
  /** D: how long a mount trusts its locks after sending a renewal that then succeeded. */
  leaseMs: number;
  /** The longest a request sent before the trust ran out may still be applied (its deadline). */
  inFlightMs: number;
  /** Bound on clock rate error, as a fraction (0.01: each clock within 1% of real time). */
  drift: number;
}

export const DEFAULT_LEASE: Readonly<LeaseParams> = Object.freeze({ leaseMs: 10_000, inFlightMs: 10_000, drift: 0.01 });

/** How often the holder renews: four chances per lease. */
export function renewEveryMs(leaseMs: number): number {
  return Math.max(1, Math.floor(leaseMs / 4));
}

/** How long an observer must see a session's counter unchanged before it may declare it dead. */
export function deadAfterMs(rec: Pick<SessionRecord, 'leaseMs' | 'inFlightMs'>, drift: number): number {
  if (!(drift >= 0 && drift < 1)) throw new RangeError(`clock drift bound ${drift} outside [0, 1)`);
  return Math.ceil(((rec.leaseMs + rec.inFlightMs) * (1 + drift)) / (1 - drift));
}

/** The holder's side: until when (own clock) it trusts its locks, given when it sent its last successful renewal. */
export function trustedUntil(renewalSentAt: number, leaseMs: number): number {
  return renewalSentAt + leaseMs;
}

/** What an observer remembers of another session: the counter it saw, and since when (its own clock). */
export interface Observation {
  counter: number;
  /** When a read first returned this counter. */
  since: number;
}

/** Folds a read of the session record (returned at `now`, own clock) into what was seen before. */
export function observe(prev: Observation | undefined, rec: SessionRecord, now: number): Observation {
  if (prev !== undefined && prev.counter === rec.counter) return prev;
  return { counter: rec.counter, since: now };
}

export type Verdict =
  /** Alive as far as anyone can tell: its locks stand. */
  | { kind: 'alive'; recheckInMs: number }
  /** Its record is gone or says dead: its locks may be removed. */
  | { kind: 'dead' }
  /** Unchanged for long enough: may be declared dead (compare-and-set on `counter`). */
  | { kind: 'expired'; counter: number };

/** The verdict on a session from its record (null: none) and what this observer has seen of it. */
export function sessionVerdict(rec: SessionRecord | null, seen: Observation | undefined, now: number, drift: number): Verdict {
  if (rec === null || rec.dead) return { kind: 'dead' };
  if (seen === undefined || seen.counter !== rec.counter) return { kind: 'alive', recheckInMs: renewEveryMs(rec.leaseMs) };
  const wait = deadAfterMs(rec, drift) - (now - seen.since);
  if (wait <= 0) return { kind: 'expired', counter: rec.counter };
  return { kind: 'alive', recheckInMs: Math.min(wait, renewEveryMs(rec.leaseMs)) };
}

/** The change a declaration makes: dead if the counter is still the one seen unchanged, else nothing. */
export function declareDead(rec: SessionRecord | null, counter: number): SessionRecord | null {
  if (rec === null || rec.dead || rec.counter !== counter) return rec;
  return { ...rec, dead: true };
}

export class SessionLostError extends Error {
  constructor(message = 'the session was declared dead') {
    super(message);
    this.name = 'SessionLostError';
  }
}

/** The change a renewal makes: the counter raised; a dead or missing session is not brought back. */
export function renew(rec: SessionRecord | null): SessionRecord {
  if (rec === null || rec.dead) throw new SessionLostError();
  return { ...rec, counter: rec.counter + 1 };
}

/**
 * The bound after which a dead mount's locks are released, from the later of
 * its death and the moment a waiter first asks: the waiter reads the record at
 * most every renewEveryMs, waits deadAfterMs from the first read that returned
 * the final counter, then declares and removes (a few round trips, `rttMs`).
 */
export function releaseBoundMs(p: LeaseParams, rttMs = 1000): number {
  return deadAfterMs(p, p.drift) + renewEveryMs(p.leaseMs) + rttMs;
}
