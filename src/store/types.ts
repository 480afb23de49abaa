// What one node stores for each record key: the acceptor half of CASPaxos.
// The types and the rules live in util/paxos.ts, shared with the wire
// protocol and the proposer; the store persists what the rules decide.
export { EMPTY_VALUE, MAX_CHUNK_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES, type AcceptorState, type RecordValue } from '../util/paxos.js';
