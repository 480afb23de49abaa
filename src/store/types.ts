// What one node stores for each record key: the acceptor half of CASPaxos.
import type { Ballot } from '../util/ballot.js';

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
}

/** Limits that both the store and the wire protocol enforce. */
export const MAX_KEY_BYTES = 1024;
export const MAX_VALUE_BYTES = 1024 * 1024;
export const MAX_CHUNK_BYTES = 16 * 1024 * 1024;
