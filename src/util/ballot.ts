// CASPaxos ballots: (counter, proposer id), ordered by counter, then proposer.
// Pure, shared by the acceptor (store) and the proposer (cluster).

export interface Ballot {
  /** Monotonic counter, a safe integer. */
  readonly counter: number;
  /** 16 lowercase hex characters (64 random bits), unique per proposer. */
  readonly proposer: string;
}

export const ZERO_PROPOSER = '0000000000000000';
export const ZERO_BALLOT: Ballot = Object.freeze({ counter: 0, proposer: ZERO_PROPOSER });
const PROPOSER_RE = /^[0-9a-f]{16}$/;

export function isValidBallot(b: Ballot): boolean {
  return Number.isSafeInteger(b.counter) && b.counter >= 0 && PROPOSER_RE.test(b.proposer);
}

export function compareBallots(a: Ballot, b: Ballot): number {
  if (a.counter !== b.counter) return a.counter < b.counter ? -1 : 1;
  if (a.proposer === b.proposer) return 0;
  return a.proposer < b.proposer ? -1 : 1;
}

export function maxBallot(a: Ballot, b: Ballot): Ballot {
  return compareBallots(a, b) >= 0 ? a : b;
}

export function formatBallot(b: Ballot): string {
  return `${b.counter}.${b.proposer}`;
}
