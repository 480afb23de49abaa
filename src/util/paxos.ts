// The acceptor side of CASPaxos as data and pure decisions, shared by the
// node's record store (which persists what they decide), the wire protocol
// and the proposer: none of them imports another's layer for these, and the
// deterministic simulator drives the same functions.
import { ZERO_BALLOT, compareBallots, maxBallot, type Ballot } from './ballot.js';

/** A record's accepted value: nothing yet, bytes, or a delete marker. */
export type RecordValue =
  | { readonly kind: 'empty' }
  | { readonly kind: 'value'; readonly bytes: Buffer }
  /** A delete; its bytes are the proposer's bookkeeping (operation tags), often empty. */
  | { readonly kind: 'tombstone'; readonly bytes: Buffer };

export const EMPTY_VALUE: RecordValue = Object.freeze({ kind: 'empty' });

export interface AcceptorState {
  /** Highest ballot promised by a prepare. */
  readonly promised: Ballot;
  /** Ballot of the accepted value (ZERO_BALLOT when nothing was accepted). */
  readonly accepted: Ballot;
  readonly value: RecordValue;
  /**
   * The lease term a scope key's value was accepted under, until its writer
   * learned it was chosen (src/util/lease.ts); absent for other values.
   */
  readonly tag?: number | undefined;
  /** In answers about a scope key only, never stored: the settled term of the answering acceptor's lease. */
  readonly settled?: number | undefined;
}

/** Limits that both the store and the wire protocol enforce. */
export const MAX_KEY_BYTES = 1024;
export const MAX_VALUE_BYTES = 1024 * 1024;
export const MAX_CHUNK_BYTES = 16 * 1024 * 1024;

/**
 * Test-only: a protocol bug the simulator must find. `acceptBelowPromise`: an
 * accept is checked against the accepted ballot only, not the promise (a
 * proposer whose prepare was overtaken still gets its stale value accepted).
 */
export interface AcceptorBugs {
  acceptBelowPromise?: boolean;
}

/**
 * prepare(b): promised only if b is above both the promise and the accepted
 * ballot; the state to persist before answering, or null to refuse (the
 * answer then carries the current state).
 */
export function decidePrepare(cur: AcceptorState, ballot: Ballot): AcceptorState | null {
  if (compareBallots(ballot, cur.promised) <= 0 || compareBallots(ballot, cur.accepted) <= 0) return null;
  return cur.tag === undefined ? { promised: ballot, accepted: cur.accepted, value: cur.value } : { promised: ballot, accepted: cur.accepted, value: cur.value, tag: cur.tag };
}

/**
 * accept(b, v): taken if b is at least the promise and the accepted ballot (an
 * equal ballot is the same proposer retrying the same accept: a proposer
 * sends one value per ballot). With `promiseNext`, the acceptor also promises
 * (counter + 1, same proposer), so that proposer's next change is one accept.
 * The state to persist before answering, or null to refuse.
 */
export function decideAccept(cur: AcceptorState, ballot: Ballot, value: RecordValue, promiseNext: boolean, bugs?: AcceptorBugs, tag?: number): AcceptorState | null {
  if ((!bugs?.acceptBelowPromise && compareBallots(ballot, cur.promised) < 0) || compareBallots(ballot, cur.accepted) < 0) return null;
  const promise = promiseNext && Number.isSafeInteger(ballot.counter + 1) ? { counter: ballot.counter + 1, proposer: ballot.proposer } : ballot;
  const promised = maxBallot(cur.promised, promise);
  return tag === undefined ? { promised, accepted: ballot, value } : { promised, accepted: ballot, value, tag };
}

/**
 * learn(b): the writer of a tagged value accepted at b saw it chosen; the tag
 * goes if this acceptor still holds that very value. The state to persist, or
 * null when there is nothing to do.
 */
export function decideLearn(cur: AcceptorState, ballot: Ballot): AcceptorState | null {
  if (cur.tag === undefined || compareBallots(cur.accepted, ballot) !== 0) return null;
  return { promised: cur.promised, accepted: cur.accepted, value: cur.value };
}

/**
 * purge(b): a tombstone accepted at exactly b may go (every replica holds it;
 * the proposer checked). The new purge floor when it may, else null: the
 * floor keeps the key's promise, so a delayed proposer with an old ballot
 * cannot get a value accepted on a key that reads as never written.
 */
export function decidePurge(cur: AcceptorState, ballot: Ballot, floor: Ballot): Ballot | null {
  if (cur.value.kind !== 'tombstone' || compareBallots(cur.accepted, ballot) !== 0) return null;
  return maxBallot(floor, cur.promised);
}

/**
 * A key whose stored state failed its checksum has lost its promise and its
 * accepted value. What the acceptor still knows is its ceiling: a ballot at
 * least every ballot it ever promised or accepted, for any key, kept durable
 * beside the states. So the lost key is treated as promised = ceiling with an
 * accepted value unknown: it answers no prepare and no read (its answer could
 * hide a chosen value, as an amnesiac acceptor would), and takes an accept
 * only above the ceiling. Such an accept comes from a proposer whose prepare
 * quorum, without this acceptor, saw every chosen value, so afterwards the
 * key's state is whole again (docs/architecture.md, "Record checksums").
 */
export function lostState(ceiling: Ballot): AcceptorState {
  return { promised: ceiling, accepted: ZERO_BALLOT, value: EMPTY_VALUE };
}

/** accept(b, v) on a lost key: taken only above the ceiling; the state to persist, or null to refuse. */
export function decideLostAccept(ceiling: Ballot, ballot: Ballot, value: RecordValue, promiseNext: boolean, tag?: number): AcceptorState | null {
  if (compareBallots(ballot, ceiling) <= 0) return null;
  return decideAccept(lostState(ceiling), ballot, value, promiseNext, undefined, tag);
}

/** The ceiling once `state` is stored: the highest of it and the state's ballots. */
export function ceilingAfter(ceiling: Ballot, state: AcceptorState): Ballot {
  return maxBallot(ceiling, maxBallot(state.promised, state.accepted));
}
