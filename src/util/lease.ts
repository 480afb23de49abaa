// Scope leases: the record and the pure rules behind directory leases and
// metadata write-behind (docs/architecture.md, "Leases"). One lease record
// guards a scope of keys (a directory's entries) that share its replica set.
//
// - Every write of a scope key names the lease term it is made under (its
//   tag), and an acceptor admits it only while its own copy of the lease
//   record is at that term and, when held, held by the writer. So once a new
//   term is chosen on a majority, no write of an older term can reach a
//   majority again: it is fenced.
// - A value accepted under a term stays tagged until its writer learns it was
//   chosen and tells the acceptors (learn); a tagged value may be a fenced
//   write that a minority accepted and that was never chosen.
// - Before a new holder trusts what it reads, it settles every term since the
//   last settled one: on a majority that has its term (so nothing older can
//   land there any more) it finds the tagged values of those terms and
//   rewrites each in a full round. It then raises `settled`. From then on a
//   tagged value of a settled term is ignored wherever it is still found: had
//   it been chosen, it was learned or rewritten on a majority, which every
//   quorum meets; if not, it must never be adopted.
import { QfsError } from './errors.js';
import { recordKey } from './record-key.js';
import { ZERO_BALLOT } from './ballot.js';
import { EMPTY_VALUE, type AcceptorState } from './paxos.js';

export interface LeaseRecord {
  /** Bumped by every change of holder (acquire, release, takeover); writes of the scope carry it. */
  readonly term: number;
  /** The session holding the lease, or null while it is free. */
  readonly holder: string | null;
  /** Every term up to this one is settled (see above). */
  readonly settled: number;
  /** Bumped by every renewal: a contender that sees it unchanged for a lease period knows the holder stopped. */
  readonly renewals: number;
  /**
   * The holder renews this lease through its holder record (`HolderRecord`)
   * instead of through `renewals`: one renewal a quarter period for every
   * lease it holds, however many. A contender then watches that record, and
   * ends it before taking the lease over (`takeoverWaitMs`, "Holder
   * records" in docs/architecture.md). Stored as record version 2, which
   * mounts and nodes older than it refuse as malformed (they would watch the
   * wrong counter) rather than misread.
   */
  readonly viaHolder?: boolean;
}

/**
 * The lease of a scope that was never written: free at term 1, with term 0
 * settled (nothing is ever written under it). Not term 0: mounts that do not
 * hold a free lease write under its term, and the first holder must settle
 * those writes, which it does only for terms above `settled`.
 */
export const FRESH_LEASE: LeaseRecord = Object.freeze({ term: 1, holder: null, settled: 0, renewals: 0 });

const VERSION = 1;
const VERSION_VIA_HOLDER = 2;
const MAX_HOLDER_BYTES = 64;

export function encodeLease(l: LeaseRecord): Buffer {
  const holder = Buffer.from(l.holder ?? '', 'utf8');
  if (holder.length > MAX_HOLDER_BYTES) throw new QfsError('bad_request', `lease holder id of ${holder.length} bytes`);
  const b = Buffer.alloc(1 + 8 * 3 + 1 + holder.length);
  b.writeUInt8(l.viaHolder ? VERSION_VIA_HOLDER : VERSION, 0);
  b.writeDoubleBE(l.term, 1);
  b.writeDoubleBE(l.settled, 9);
  b.writeDoubleBE(l.renewals, 17);
  b.writeUInt8(l.holder === null ? 0 : 1 + holder.length, 25);
  holder.copy(b, 26);
  return b;
}

/** The lease in a record's payload; null (no record) reads as FRESH_LEASE. Throws `corrupt` on bytes that are not one. */
export function decodeLease(payload: Buffer | null): LeaseRecord {
  if (payload === null) return FRESH_LEASE;
  const version = payload.length < 26 ? 0 : payload.readUInt8(0);
  if (version !== VERSION && version !== VERSION_VIA_HOLDER) throw new QfsError('corrupt', 'not a lease record');
  const term = payload.readDoubleBE(1);
  const settled = payload.readDoubleBE(9);
  const renewals = payload.readDoubleBE(17);
  const h = payload.readUInt8(25);
  if (![term, settled, renewals].every((n) => Number.isSafeInteger(n) && n >= 0) || settled > term || (h > 0 && payload.length !== 26 + h - 1) || (h === 0 && payload.length !== 26)) {
    throw new QfsError('corrupt', 'malformed lease record');
  }
  const lease: LeaseRecord = { term, settled, renewals, holder: h === 0 ? null : payload.subarray(26).toString('utf8') };
  return version === VERSION_VIA_HOLDER ? { ...lease, viaHolder: true } : lease;
}

// Transitions: each returns the new record, or null when it does not apply
// (the caller lost the race and must look again). They run as CASPaxos change
// functions, so the record they see is the chosen one.

/** `viaHolder` on a record that `me` takes: only when it renews through its holder record. */
function held(l: Omit<LeaseRecord, 'viaHolder'>, viaHolder: boolean): LeaseRecord {
  return viaHolder ? { ...l, viaHolder: true } : l;
}

/** A free lease to `me`, at the next term. */
export function acquireFree(cur: LeaseRecord, me: string, viaHolder = false): LeaseRecord | null {
  if (cur.holder !== null) return null;
  return held({ term: cur.term + 1, holder: me, settled: cur.settled, renewals: 0 }, viaHolder);
}

/**
 * The first record of a scope created by `me` that nobody else can reach yet
 * (a directory this mount is making, before its name is published): held by
 * `me` at the term after the fresh one, with the fresh term settled. Written
 * only over an absent record (ScopeLease.born): a scope whose lease record
 * was never written and whose keys nobody else knows has nothing under any
 * term to settle.
 */
export function bornLease(me: string, viaHolder = false): LeaseRecord {
  return held({ term: FRESH_LEASE.term + 1, holder: me, settled: FRESH_LEASE.term, renewals: 0 }, viaHolder);
}

/** The holder extends its lease; null if it is no longer its own. */
export function renewLease(cur: LeaseRecord, me: string, term: number): LeaseRecord | null {
  if (cur.holder !== me || cur.term !== term) return null;
  return { ...cur, renewals: cur.renewals + 1 };
}

/**
 * The holder gives the lease back. `clean`: every write it made under its term
 * was chosen and learned on a majority (nothing of the term is left to settle).
 */
export function releaseLease(cur: LeaseRecord, me: string, term: number, clean: boolean): LeaseRecord | null {
  if (cur.holder !== me || cur.term !== term) return null;
  return { term: cur.term + 1, holder: null, settled: clean ? term : cur.settled, renewals: 0 };
}

/** The holder of a lease renewed through its holder record takes no renewal of the lease itself. */
export function renewsItself(l: LeaseRecord): boolean {
  return l.viaHolder !== true;
}

/**
 * Taking a lease whose holder went silent: only if the record is still exactly
 * the one observed unchanged for a whole lease period (see `takeoverWaitMs`).
 */
export function takeOver(cur: LeaseRecord, observed: LeaseRecord, me: string, viaHolder = false): LeaseRecord | null {
  if (cur.term !== observed.term || cur.holder !== observed.holder || cur.renewals !== observed.renewals || cur.holder === null) return null;
  return held({ term: cur.term + 1, holder: me, settled: cur.settled, renewals: 0 }, viaHolder);
}

/**
 * A holder record: one per holding session, renewed by it every quarter
 * period, standing in for a renewal of every lease it holds with `viaHolder`.
 * The holder trusts all those leases until its own clock reads (send time of
 * its last successful renewal) + holderTrustMs, and never while the record
 * says `ended`. A contender that wants one of them takes over only after it
 * saw this record's `renewals` unchanged for takeoverWaitMs and then ended it
 * by a compare-and-set on that counter (`endHolder`): a renewal chosen after
 * its look moves the counter and the end fails; once ended, no renewal
 * succeeds again (`renewHolder`), so the holder's trust runs out by its own
 * clock and is never extended. A session whose record was ended holds nothing
 * any more and starts a new session to hold leases again.
 */
export interface HolderRecord {
  readonly renewals: number;
  readonly ended: boolean;
  /**
   * The holder's own takeoverWaitMs (its period and drift): how long anyone
   * must see `renewals` unchanged before ending the record, so that a
   * contender or gc with other settings still waits long enough.
   */
  readonly waitMs: number;
}

const HOLDER_VERSION = 1;
const HOLDER_BYTES = 18;

/** Holder records' group (7 bytes: never taken for an inode's 8-byte group); a record's name is its session id. */
export const HOLDER_GROUP = Buffer.from('holders');

export function holderRecordKey(session: string): Buffer {
  return recordKey(HOLDER_GROUP, Buffer.from(session, 'utf8'));
}

export function encodeHolder(h: HolderRecord): Buffer {
  const b = Buffer.alloc(HOLDER_BYTES);
  b.writeUInt8(HOLDER_VERSION, 0);
  b.writeDoubleBE(h.renewals, 1);
  b.writeUInt8(h.ended ? 1 : 0, 9);
  b.writeDoubleBE(h.waitMs, 10);
  return b;
}

/** The holder record in a payload; null when there is none. Throws `corrupt` on bytes that are not one. */
export function decodeHolder(payload: Buffer | null): HolderRecord | null {
  if (payload === null) return null;
  if (payload.length !== HOLDER_BYTES || payload.readUInt8(0) !== HOLDER_VERSION) throw new QfsError('corrupt', 'not a lease holder record');
  const renewals = payload.readDoubleBE(1);
  const ended = payload.readUInt8(9);
  const waitMs = payload.readDoubleBE(10);
  if (!Number.isSafeInteger(renewals) || renewals < 0 || ended > 1 || !(waitMs >= 0 && waitMs <= 86_400_000)) throw new QfsError('corrupt', 'malformed lease holder record');
  return { renewals, ended: ended === 1, waitMs };
}

/** A session's first holder record, written over an absent one before it takes any lease with `viaHolder`. */
export function newHolder(periodMs: number, drift: number): HolderRecord {
  return { renewals: 0, ended: false, waitMs: takeoverWaitMs(periodMs, drift) };
}

/** The holder's renewal; null once its record was ended (or is missing: it never comes back). */
export function renewHolder(cur: HolderRecord | null): HolderRecord | null {
  if (cur === null || cur.ended) return null;
  return { ...cur, renewals: cur.renewals + 1 };
}

/**
 * Ends a holder record that a contender saw with `observedRenewals` unchanged
 * for a whole takeover wait; null (nothing changes) if it moved since. (A
 * record already ended, or missing, counts as ended: nothing to change.)
 */
export function endHolder(cur: HolderRecord, observedRenewals: number): HolderRecord | null {
  if (cur.ended || cur.renewals !== observedRenewals) return null;
  return { ...cur, ended: true };
}

/** The holder has settled every term up to `through`. */
export function markSettled(cur: LeaseRecord, me: string, term: number, through: number): LeaseRecord | null {
  if (cur.holder !== me || cur.term !== term || through >= term) return null;
  return { ...cur, settled: Math.max(cur.settled, through) };
}

/**
 * Clock-rate drift: each clock's rate is within [1 - drift, 1 + drift] of real
 * time. A holder that sent its last successful renewal at local time s trusts
 * its lease until it reads s + holderTrustMs; a contender that saw the record
 * unchanged at local time o may take it over once it reads o + takeoverWaitMs.
 * The first is at most `periodMs` of real time after the renewal was sent, the
 * second at least `periodMs` after it was chosen, which is after it was sent.
 */
export function holderTrustMs(periodMs: number, drift: number): number {
  return periodMs * (1 - drift);
}

export function takeoverWaitMs(periodMs: number, drift: number): number {
  return periodMs * (1 + drift);
}

/** What a scope write names: the lease term it is made under and the session making it. */
export interface ScopeWrite {
  term: number;
  session: string;
}

/** How a call of a scope key names its scope: the lease record's key, and the term and session it is made under. */
export interface ScopeCall extends ScopeWrite {
  lease: Buffer;
  /** A settling scan (admitSettlingScan). */
  settling?: boolean;
}

export type Admission = 'ok' | 'fenced';

/**
 * An acceptor's rule for a prepare or accept of a scope key, given its own
 * copy of the scope's lease: the write's term must be the lease's term, and a
 * held lease admits only its holder.
 */
export function admitScopeWrite(lease: LeaseRecord, write: ScopeWrite): Admission {
  if (write.term !== lease.term) return 'fenced';
  if (lease.holder !== null && lease.holder !== write.session) return 'fenced';
  return 'ok';
}

/**
 * A read or scan of a scope key by a session (not a settling scan): answered
 * only while the acceptor's committed lease is free or held by that session.
 * A holder's changes are written behind, so what the nodes hold is not yet
 * what it has acknowledged: another session must wait for the recall (the
 * holder flushes and releases) instead of reading around it. Any acceptor
 * that took a write under a held term has that lease committed before it,
 * so it refuses; a quorum of answers therefore never shows part of a
 * holder's batches.
 */
export function admitScopeRead(committedLease: LeaseRecord, session: string): Admission {
  return committedLease.holder === null || committedLease.holder === session ? 'ok' : 'fenced';
}

/**
 * A settling scan (the new holder looking for tagged values) is answered only
 * by an acceptor whose durable lease is at the scanner's term: everything that
 * acceptor admitted under older terms is then durable and in the answer.
 */
export function admitSettlingScan(durableLease: LeaseRecord, write: ScopeWrite): Admission {
  return durableLease.term === write.term && durableLease.holder === write.session ? 'ok' : 'fenced';
}

/**
 * The proposer's filter over the states a quorum reported for a scope key: a
 * value tagged with a settled term is treated as never accepted (its promise
 * still counts). `settled` is the highest settled term any of them reported.
 */
export function withoutSettled<S extends AcceptorState>(states: readonly S[], settled: number): S[] {
  return states.map((s) => {
    if (s.tag === undefined || s.tag > settled) return s;
    const { tag: _tag, ...rest } = s;
    return { ...rest, accepted: ZERO_BALLOT, value: EMPTY_VALUE } as S;
  });
}

/** The highest settled term reported with these states (each acceptor reports its own lease's). */
export function settledOf(states: ReadonlyArray<{ settled?: number | undefined }>): number {
  let m = 0;
  for (const s of states) if (s.settled !== undefined && s.settled > m) m = s.settled;
  return m;
}
