// What the proposer needs from one acceptor of a key: the five record calls,
// bounded by the operation's deadline, and the health figures that order
// reads. A Peer (a storage node over RPC) is one; the deterministic simulator
// has its own, in memory, behind a simulated network.
import type { Ballot } from '../util/ballot.js';
import type { AcceptorState, RecordValue } from '../util/paxos.js';
import type { ScanReply, Verdict } from '../rpc/messages.js';
import type { ScopeCall } from '../util/lease.js';
import type { Behind } from '../keyspace/types.js';

/** Bounds of one call: the operation's deadline (on the proposer's clock) and its cancellation. */
export interface AcceptorCall {
  deadline: number;
  signal?: AbortSignal | undefined;
  /** A call about a key of a leased scope (src/util/lease.ts). */
  scope?: ScopeCall | undefined;
  /** The membership epoch the call's quorum was counted under; it travels with the call (0 or absent: none). */
  epoch?: number | undefined;
  /**
   * Nobody waits on this call's answer yet (a change written behind): it may
   * travel with others in one frame, sent when the acceptor's previous such
   * frame is answered and a short gather window has passed, unless something
   * waits for it first (`expedite`). `'soon'`: without the window (see
   * CallOpts.behind).
   */
  behind?: Behind | undefined;
}

export interface Acceptor {
  readonly id: string;
  /** Connected (as far as this proposer knows): a hinted copy is only sent to an acceptor that is up. */
  readonly up: boolean;
  /** Lower is better: down, failing and silent acceptors last, then by latency. */
  readonly rank: number;
  /** Smoothed latency of successful calls, ms. */
  readonly latencyMs: number;
  /** Holds calls but has answered none for a while: stopped, cut off or down, not merely busy. */
  readonly silent: boolean;
  /**
   * Silent, and its last call ended without an answer (a timeout, a closed
   * connection) or it has been silent for seconds: cut off or down, not
   * merely slow on a loaded machine. A round that a refusal makes depend on
   * it stops waiting for it.
   */
  readonly cutOff: boolean;
  prepare(key: Buffer, ballot: Ballot, call: AcceptorCall): Promise<Verdict>;
  /** `promiseNext`: the accept also promises (counter + 1, same proposer). */
  accept(key: Buffer, ballot: Ballot, value: RecordValue, promiseNext: boolean, call: AcceptorCall): Promise<Verdict>;
  /** The committed state of a key. */
  read(key: Buffer, call: AcceptorCall): Promise<AcceptorState>;
  scan(start: Buffer, end: Buffer | null, limit: number, call: AcceptorCall): Promise<ScanReply>;
  /** Deletes a tombstone accepted at exactly `ballot`. */
  purge(key: Buffer, ballot: Ballot, call: AcceptorCall): Promise<boolean>;
  /**
   * Drops the lease tag of the value accepted at `ballot` (its writer saw it
   * chosen); true when this acceptor now holds it untagged (src/util/lease.ts).
   */
  learn(key: Buffer, ballot: Ballot, call: AcceptorCall): Promise<boolean>;
  /** Sends at once the calls it holds back to batch (`behind`): someone now waits on one. */
  expedite?(): void;
}

/** Acceptors sorted best first for reading. */
export function byHealth<A extends { rank: number }>(acceptors: readonly A[]): A[] {
  return [...acceptors].sort((a, b) => a.rank - b.rank);
}
