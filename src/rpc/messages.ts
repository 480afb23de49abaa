// The storage node's operations on the wire: op numbers and the fields of each
// request and response. The rpc layer carries them; node/ gives them meaning.
import { Decoder, Encoder } from '../util/codec.js';
import type { Ballot } from '../util/ballot.js';
import { isValidBallot } from '../util/ballot.js';
import { QfsError, byteToErrorCode, errorCodeToByte } from '../util/errors.js';
import { parseChunkId, type ChunkId } from '../util/ids.js';
import type { AcceptorState, RecordValue } from '../util/paxos.js';
import { MAX_CHUNK_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES } from '../util/paxos.js';
import type { ScopeCall } from '../util/lease.js';
import { BUCKET_DIGEST_BYTES, CHUNK_BUCKETS, RECORD_BUCKETS } from '../util/range-digest.js';

export const Op = {
  Ping: 1,
  Stat: 2,
  RecordPrepare: 10,
  RecordAccept: 11,
  RecordRead: 12,
  RecordScan: 13,
  RecordPurge: 14,
  RecordLearn: 15,
  RecordDrop: 16,
  RecordDigest: 17,
  RecordBucketDigests: 18,
  RecordBucketScan: 19,
  ChunkPut: 20,
  ChunkGet: 21,
  ChunkHas: 22,
  ChunkList: 23,
  ChunkDelete: 24,
  ChunkVerify: 25,
  ChunkSweep: 26,
  ChunkBlocks: 27,
  ChunkBucketDigests: 28,
  ChunkBucketList: 29,
  MembershipGet: 30,
  MembershipInstall: 31,
  RecordLearnMany: 32,
  RecordAcceptMany: 33,
  /** A put whose bytes the node stores without checking them against the id (see ChunkStore.put). */
  ChunkPutDeferred: 34,
  RecordReadMany: 35,
} as const;
export type OpCode = (typeof Op)[keyof typeof Op];

export const OP_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(Op).map(([name, code]) => [code, name.replace(/[A-Z]/g, (c, i: number) => (i ? '_' : '') + c.toLowerCase())]),
);

export const MAX_SCAN_LIMIT = 10_000;
/** Node ids are at most 63 characters (src/util/ids.ts). */
const MAX_NODE_ID_BYTES = 64;
export const MAX_LEASE_KEY_BYTES = MAX_KEY_BYTES;
export const MAX_IDS_PER_REQUEST = 10_000;
const CHUNK_ID_BYTES = 32;

// ---- shared fields

export function encodeBallot(e: Encoder, b: Ballot): void {
  e.u53(b.counter).raw(Buffer.from(b.proposer, 'hex'));
}

export function decodeBallot(d: Decoder): Ballot {
  const counter = d.u53('ballot counter');
  const proposer = d.raw(8, 'ballot proposer').toString('hex');
  const b = { counter, proposer };
  if (!isValidBallot(b)) throw new QfsError('bad_request', 'invalid ballot');
  return b;
}

const VALUE_EMPTY = 0;
const VALUE_BYTES = 1;
const VALUE_TOMBSTONE = 2;

export function encodeValue(e: Encoder, v: RecordValue): void {
  if (v.kind === 'empty') e.u8(VALUE_EMPTY);
  else if (v.kind === 'tombstone') e.u8(VALUE_TOMBSTONE).bytes(v.bytes);
  else e.u8(VALUE_BYTES).bytes(v.bytes);
}

export function decodeValue(d: Decoder): RecordValue {
  const tag = d.u8('value tag');
  if (tag === VALUE_EMPTY) return { kind: 'empty' };
  if (tag === VALUE_TOMBSTONE) return { kind: 'tombstone', bytes: d.bytes(MAX_VALUE_BYTES, 'tombstone') };
  if (tag === VALUE_BYTES) return { kind: 'value', bytes: d.bytes(MAX_VALUE_BYTES, 'value') };
  throw new QfsError('bad_request', `invalid value tag ${tag}`);
}

const STATE_TAGGED = 1;
const STATE_SETTLED = 2;

/** A state on the wire: ballots, value, then flags and the lease tag and settled term when present (src/util/lease.ts). */
export function encodeState(e: Encoder, s: AcceptorState): void {
  encodeBallot(e, s.promised);
  encodeBallot(e, s.accepted);
  encodeValue(e, s.value);
  e.u8((s.tag !== undefined ? STATE_TAGGED : 0) | (s.settled !== undefined ? STATE_SETTLED : 0));
  if (s.tag !== undefined) e.u53(s.tag);
  if (s.settled !== undefined) e.u53(s.settled);
}

export function decodeState(d: Decoder): AcceptorState {
  const promised = decodeBallot(d);
  const accepted = decodeBallot(d);
  const value = decodeValue(d);
  const flags = d.u8('state flags');
  if (flags & ~(STATE_TAGGED | STATE_SETTLED)) throw new QfsError('bad_request', `unknown state flags ${flags}`);
  const tag = flags & STATE_TAGGED ? d.u53('lease tag') : undefined;
  const settled = flags & STATE_SETTLED ? d.u53('settled term') : undefined;
  return { promised, accepted, value, ...(tag === undefined ? {} : { tag }), ...(settled === undefined ? {} : { settled }) };
}

const MAX_SESSION_BYTES = 64;

/** A record call's scope (or none): the lease key, term, session and whether it is a settling scan. */
export function encodeScope(e: Encoder, scope: ScopeCall | undefined): void {
  e.bool(scope !== undefined);
  if (!scope) return;
  e.bytes(scope.lease).u53(scope.term).str(scope.session).bool(scope.settling === true);
}

export function decodeScope(d: Decoder): ScopeCall | undefined {
  if (!d.bool('has scope')) return undefined;
  const lease = decodeKey(d, 'lease key');
  const term = d.u53('lease term');
  const session = d.str(MAX_SESSION_BYTES, 'lease session');
  const settling = d.bool('settling');
  return settling ? { lease, term, session, settling } : { lease, term, session };
}

function decodeKey(d: Decoder, what = 'key'): Buffer {
  const k = d.bytes(MAX_KEY_BYTES, what);
  if (k.length === 0) throw new QfsError('bad_request', `${what} is empty`);
  return k;
}

/** Chunk ids travel as their 32 hash bytes; as hex they are validated before any use. */
function encodeChunkId(e: Encoder, id: ChunkId): void {
  e.raw(Buffer.from(parseChunkId(id), 'hex'));
}

function decodeChunkId(d: Decoder): ChunkId {
  return parseChunkId(d.raw(CHUNK_ID_BYTES, 'chunk id').toString('hex'));
}

function decodeLimit(d: Decoder, max: number): number {
  const n = d.u32('limit');
  if (n < 1 || n > max) throw new QfsError('bad_request', `limit ${n} out of range 1..${max}`);
  return n;
}

// ---- per-op request and response codecs. Requests: encodeX(e, req) / decodeX(d).

export interface KeyBallot {
  key: Buffer;
  ballot: Ballot;
}

export const KeyBallotRequest = {
  encode(e: Encoder, r: KeyBallot): void {
    e.bytes(r.key);
    encodeBallot(e, r.ballot);
  },
  decode(d: Decoder): KeyBallot {
    const r = { key: decodeKey(d), ballot: decodeBallot(d) };
    d.end();
    return r;
  },
};

export interface PrepareRequest extends KeyBallot {
  scope?: ScopeCall | undefined;
}

export const RecordPrepare = {
  encode(e: Encoder, r: PrepareRequest): void {
    e.bytes(r.key);
    encodeBallot(e, r.ballot);
    encodeScope(e, r.scope);
  },
  decode(d: Decoder): PrepareRequest {
    const key = decodeKey(d);
    const ballot = decodeBallot(d);
    const scope = decodeScope(d);
    d.end();
    return scope ? { key, ballot, scope } : { key, ballot };
  },
};

export interface AcceptRequest extends KeyBallot {
  value: RecordValue;
  /**
   * Also promise the proposer's next ballot (counter + 1, same proposer): the
   * CASPaxos one-round-trip optimisation, where this accept doubles as the
   * prepare of the proposer's next change of the key.
   */
  promiseNext: boolean;
  scope?: ScopeCall | undefined;
}

/** One accept's fields, alone in `record_accept` or one of many in `record_accept_many`. */
const AcceptFields = {
  encode(e: Encoder, r: AcceptRequest): void {
    e.bytes(r.key);
    encodeBallot(e, r.ballot);
    encodeValue(e, r.value);
    e.bool(r.promiseNext);
    encodeScope(e, r.scope);
  },
  decode(d: Decoder): AcceptRequest {
    const r = { key: decodeKey(d), ballot: decodeBallot(d), value: decodeValue(d), promiseNext: d.bool('promise next') };
    const scope = decodeScope(d);
    return scope ? { ...r, scope } : r;
  },
};

export const RecordAccept = whole(AcceptFields);

/** A codec of fields that must fill the frame's body: trailing bytes are refused. */
function whole<T>(fields: { encode(e: Encoder, v: T): void; decode(d: Decoder): T }): { encode(e: Encoder, v: T): void; decode(d: Decoder): T } {
  return {
    encode: fields.encode,
    decode(d: Decoder): T {
      const v = fields.decode(d);
      d.end();
      return v;
    },
  };
}

/** A u32 count, then that many items (at most `max`: more is a bad request), filling the body. */
function listOf<T>(item: { encode(e: Encoder, v: T): void; decode(d: Decoder): T }, max: number, what: string): { encode(e: Encoder, v: readonly T[]): void; decode(d: Decoder): T[] } {
  return {
    encode(e: Encoder, list: readonly T[]): void {
      e.u32(list.length);
      for (const v of list) item.encode(e, v);
    },
    decode(d: Decoder): T[] {
      const n = d.u32(`${what} count`);
      if (n > max) throw new QfsError('bad_request', `${n} ${what}s exceeds ${max}`);
      const list: T[] = [];
      for (let i = 0; i < n; i++) list.push(item.decode(d));
      d.end();
      return list;
    },
  };
}

export interface Verdict {
  ok: boolean;
  state: AcceptorState;
  /** Refused because the call's lease term is not the acceptor's (src/util/lease.ts): retrying cannot help. */
  fenced?: boolean;
}

const VerdictFields = {
  encode(e: Encoder, v: Verdict): void {
    e.bool(v.ok);
    encodeState(e, v.state);
    e.bool(v.fenced === true);
  },
  decode(d: Decoder): Verdict {
    const ok = d.bool('ok');
    const state = decodeState(d);
    const fenced = d.bool('fenced');
    return fenced ? { ok, state, fenced } : { ok, state };
  },
};

export const VerdictReply = whole(VerdictFields);

/**
 * Accepts of many keys in one frame, each judged alone, as `record_accept`
 * would judge it: a proposer's accepts that nobody waits on (changes written
 * behind) travel together, and the node's group commit writes them in one
 * transaction.
 */
export const MAX_ACCEPTS_PER_REQUEST = 1024;
export const RecordAcceptMany = listOf(AcceptFields, MAX_ACCEPTS_PER_REQUEST, 'accept');

/** One answer per accept of a `record_accept_many`, in order: a verdict, or the error that accept alone would have got. */
export type VerdictOrError = Verdict | QfsError;
const MAX_ITEM_ERROR_BYTES = 1024;
/**
 * One item of a batched reply: status 0 and the item's fields, or an error
 * code and message (what the single op would have failed with).
 */
function orError<T>(fields: { encode(e: Encoder, v: T): void; decode(d: Decoder): T }): { encode(e: Encoder, v: T | QfsError): void; decode(d: Decoder): T | QfsError } {
  return {
    encode(e: Encoder, x: T | QfsError): void {
      if (x instanceof QfsError) {
        e.u8(errorCodeToByte(x.code));
        e.str(Buffer.from(x.message, 'utf8').subarray(0, MAX_ITEM_ERROR_BYTES).toString('utf8'));
      } else {
        e.u8(0);
        fields.encode(e, x);
      }
    },
    decode(d: Decoder): T | QfsError {
      const status = d.u8('status');
      return status === 0 ? fields.decode(d) : new QfsError(byteToErrorCode(status), d.str(MAX_ITEM_ERROR_BYTES, 'error message'));
    },
  };
}

export const VerdictsReply = listOf(orError(VerdictFields), MAX_ACCEPTS_PER_REQUEST, 'answer');

export interface ReadRequest {
  key: Buffer;
  scope?: ScopeCall | undefined;
}

const ReadFields = {
  encode(e: Encoder, r: ReadRequest): void {
    e.bytes(r.key);
    encodeScope(e, r.scope);
  },
  decode(d: Decoder): ReadRequest {
    const key = decodeKey(d);
    const scope = decodeScope(d);
    return scope ? { key, scope } : { key };
  },
};

export const RecordRead = whole(ReadFields);

/**
 * Reads of many keys in one frame, each answered as `record_read` would answer
 * it: the reads a mount makes in one turn (a directory listing's inodes)
 * travel together.
 */
export const MAX_READS_PER_REQUEST = 1024;
export const RecordReadMany = listOf(ReadFields, MAX_READS_PER_REQUEST, 'read');

/** One answer per read of a `record_read_many`, in order: the state, or the error that read alone would have got. */
export type StateOrError = AcceptorState | QfsError;
export const StatesReply = listOf(orError({ encode: encodeState, decode: decodeState }), MAX_READS_PER_REQUEST, 'answer');

export const StateReply = {
  encode(e: Encoder, s: AcceptorState): void {
    encodeState(e, s);
  },
  decode(d: Decoder): AcceptorState {
    const s = decodeState(d);
    d.end();
    return s;
  },
};

export interface ScanRequest {
  start: Buffer;
  end: Buffer | null;
  limit: number;
  scope?: ScopeCall | undefined;
  /** List keys whose stored state fails its checksum instead of failing the page (maintenance walks). */
  withLost?: boolean;
}

export const RecordScan = {
  encode(e: Encoder, r: ScanRequest): void {
    e.bytes(r.start).bool(r.end !== null);
    if (r.end) e.bytes(r.end);
    e.u32(r.limit);
    encodeScope(e, r.scope);
    // Trailing and only when set, so a node from before checksums still reads every other scan.
    if (r.withLost) e.bool(true);
  },
  decode(d: Decoder): ScanRequest {
    const start = d.bytes(MAX_KEY_BYTES, 'scan start');
    const end = d.bool('has end') ? d.bytes(MAX_KEY_BYTES, 'scan end') : null;
    const limit = decodeLimit(d, MAX_SCAN_LIMIT);
    const scope = decodeScope(d);
    const withLost = d.remaining > 0 ? d.bool('with lost') : false;
    d.end();
    const r: ScanRequest = scope ? { start, end, limit, scope } : { start, end, limit };
    if (withLost) r.withLost = true;
    return r;
  },
};

export interface ScanReply {
  entries: Array<{ key: Buffer; state: AcceptorState }>;
  next: Buffer | null;
  /** In answers to a scope's scan: the answering acceptor's settled lease term. */
  settled?: number;
  /** Keys in the page whose state failed its checksum on the answering node (scans with `withLost`). */
  lost?: Buffer[];
}

export const ScanReplyCodec = {
  encode(e: Encoder, r: ScanReply): void {
    e.u32(r.entries.length);
    for (const { key, state } of r.entries) {
      e.bytes(key);
      encodeState(e, state);
    }
    e.bool(r.next !== null);
    if (r.next) e.bytes(r.next);
    e.bool(r.settled !== undefined);
    if (r.settled !== undefined) e.u53(r.settled);
    if (r.lost && r.lost.length > 0) {
      e.u32(r.lost.length);
      for (const k of r.lost) e.bytes(k);
    }
  },
  decode(d: Decoder): ScanReply {
    const n = d.u32('entry count');
    if (n > MAX_SCAN_LIMIT) throw new QfsError('bad_request', `scan reply of ${n} entries`);
    const entries: ScanReply['entries'] = [];
    for (let i = 0; i < n; i++) entries.push({ key: decodeKey(d), state: decodeState(d) });
    const next = d.bool('has next') ? d.bytes(MAX_KEY_BYTES, 'next') : null;
    const settled = d.bool('has settled') ? d.u53('settled term') : undefined;
    let lost: Buffer[] | undefined;
    if (d.remaining > 0) {
      const count = d.u32('lost count');
      if (count > MAX_SCAN_LIMIT) throw new QfsError('bad_request', `scan reply of ${count} lost keys`);
      lost = [];
      for (let i = 0; i < count; i++) lost.push(decodeKey(d));
    }
    d.end();
    const r: ScanReply = settled === undefined ? { entries, next } : { entries, next, settled };
    if (lost) r.lost = lost;
    return r;
  },
};

export interface DigestRequest {
  start: Buffer;
  end: Buffer | null;
  limit: number;
  /** The other replica: only keys the answering node and it both hold (by the membership) are digested. */
  peer: string;
}

export const RecordDigest = {
  encode(e: Encoder, r: DigestRequest): void {
    e.bytes(r.start).bool(r.end !== null);
    if (r.end) e.bytes(r.end);
    e.u32(r.limit).str(r.peer);
  },
  decode(d: Decoder): DigestRequest {
    const start = d.bytes(MAX_KEY_BYTES, 'digest start');
    const end = d.bool('has end') ? d.bytes(MAX_KEY_BYTES, 'digest end') : null;
    const limit = decodeLimit(d, MAX_SCAN_LIMIT);
    const peer = d.str(MAX_NODE_ID_BYTES, 'peer id');
    d.end();
    return { start, end, limit, peer };
  },
};

export interface DigestReply {
  /** SHA-256 (src/util/range-digest.ts) over the range's shared keys up to `next`. */
  digest: Buffer;
  count: number;
  /** Where the page stopped (exclusive of nothing: the next page starts here); null when the range is done. */
  next: Buffer | null;
}

export const DigestReplyCodec = {
  encode(e: Encoder, r: DigestReply): void {
    e.raw(r.digest).u32(r.count).bool(r.next !== null);
    if (r.next) e.bytes(r.next);
  },
  decode(d: Decoder): DigestReply {
    const digest = Buffer.from(d.raw(32, 'digest'));
    const count = d.u32('digest count');
    if (count > MAX_SCAN_LIMIT) throw new QfsError('bad_request', `digest of ${count} keys`);
    const next = d.bool('has next') ? d.bytes(MAX_KEY_BYTES, 'next') : null;
    d.end();
    return { digest, count, next };
  },
};

export const RecordPurge = KeyBallotRequest;
/** learn(key, ballot): drop the lease tag of the value accepted at that ballot (src/util/lease.ts). */
export const RecordLearn = KeyBallotRequest;

/** Learns of many keys in one frame, each judged alone, as `record_learn` would (a proposer's 2 ms batch of learns to one node). */
export const MAX_LEARNS_PER_REQUEST = 4096;
export const RecordLearnMany = listOf<KeyBallot>(
  {
    encode(e: Encoder, it: KeyBallot): void {
      e.bytes(it.key);
      encodeBallot(e, it.ballot);
    },
    decode: (d: Decoder): KeyBallot => ({ key: decodeKey(d), ballot: decodeBallot(d) }),
  },
  MAX_LEARNS_PER_REQUEST,
  'learn',
);

export const BoolReply = {
  encode(e: Encoder, v: boolean): void {
    e.bool(v);
  },
  decode(d: Decoder): boolean {
    const v = d.bool();
    d.end();
    return v;
  },
};

/** One boolean per item of a batched request, in its order. */
export const BoolsReply = listOf<boolean>({ encode: (e, b) => void e.bool(b), decode: (d) => d.bool() }, MAX_LEARNS_PER_REQUEST, 'answer');

export interface ChunkPutRequest {
  id: ChunkId;
  bytes: Buffer;
}

export const ChunkPut = {
  encode(e: Encoder, r: ChunkPutRequest): void {
    ChunkPut.encodeHead(e, r.id);
    e.raw(r.bytes);
  },
  /** Everything before the bytes, for a caller that sends them as they are (`CallOptions.tail`). */
  encodeHead(e: Encoder, id: ChunkId): void {
    encodeChunkId(e, id);
  },
  decode(d: Decoder): ChunkPutRequest {
    const id = decodeChunkId(d);
    const bytes = d.rest();
    if (bytes.length > MAX_CHUNK_BYTES) throw new QfsError('bad_request', `chunk of ${bytes.length} bytes`);
    return { id, bytes };
  },
};

export const PUT_STORED = 1;
export const PUT_EXISTS = 2;

export interface ChunkGetRequest {
  id: ChunkId;
  offset: number;
  length: number;
}

export const ChunkGet = {
  encode(e: Encoder, r: ChunkGetRequest): void {
    encodeChunkId(e, r.id);
    e.u32(r.offset).u32(r.length);
  },
  decode(d: Decoder): ChunkGetRequest {
    const r = { id: decodeChunkId(d), offset: d.u32('offset'), length: d.u32('length') };
    // length may exceed the chunk (read to its end); an offset past any chunk is a bad request
    if (r.offset > MAX_CHUNK_BYTES) throw new QfsError('bad_request', 'chunk offset out of bounds');
    d.end();
    return r;
  },
};

export interface ChunkBlocksRequest {
  id: ChunkId;
  offset: number;
  length: number;
  withLeaves: boolean;
}

/** A ranged read in whole 64 KiB blocks, with the chunk's leaf digests when asked (see util/hash.ts). */
export const ChunkBlocks = {
  encode(e: Encoder, r: ChunkBlocksRequest): void {
    encodeChunkId(e, r.id);
    e.u32(r.offset).u32(r.length).bool(r.withLeaves);
  },
  decode(d: Decoder): ChunkBlocksRequest {
    const r = { id: decodeChunkId(d), offset: d.u32('offset'), length: d.u32('length'), withLeaves: d.bool('withLeaves') };
    if (r.offset > MAX_CHUNK_BYTES) throw new QfsError('bad_request', 'chunk offset out of bounds');
    d.end();
    return r;
  },
};

export interface ChunkBlocksResult {
  /** The whole chunk's length. */
  size: number;
  /** Index of the first block returned. */
  first: number;
  leaves: Buffer | null;
  bytes: Buffer;
}

const MAX_LEAVES = Math.ceil(MAX_CHUNK_BYTES / (64 * 1024));

export const ChunkBlocksReply = {
  encode(e: Encoder, r: ChunkBlocksResult): void {
    e.u32(r.size).u16(r.first);
    const n = r.leaves ? r.leaves.length / 32 : 0;
    e.u16(n);
    if (r.leaves) e.raw(r.leaves);
    e.raw(r.bytes);
  },
  decode(d: Decoder): ChunkBlocksResult {
    const size = d.u32('size');
    const first = d.u16('first');
    const n = d.u16('leaves');
    if (n > MAX_LEAVES) throw new QfsError('bad_request', `${n} leaves`);
    const leaves = n > 0 ? d.raw(n * 32, 'leaves') : null;
    return { size, first, leaves, bytes: d.rest() };
  },
};

export const ChunkIdRequest = {
  encode(e: Encoder, id: ChunkId): void {
    encodeChunkId(e, id);
  },
  decode(d: Decoder): ChunkId {
    const id = decodeChunkId(d);
    d.end();
    return id;
  },
};

export interface ChunkSweepRequest {
  id: ChunkId;
  /** Delete only a copy stored at least this long ago (the node's clock), ms. */
  minAgeMs: number;
}

export const ChunkSweep = {
  encode(e: Encoder, r: ChunkSweepRequest): void {
    encodeChunkId(e, r.id);
    e.u53(r.minAgeMs);
  },
  decode(d: Decoder): ChunkSweepRequest {
    const r = { id: decodeChunkId(d), minAgeMs: d.u53('sweep age') };
    d.end();
    return r;
  },
};

export const U53Reply = {
  encode(e: Encoder, v: number): void {
    e.u53(v);
  },
  decode(d: Decoder): number {
    const v = d.u53('count');
    d.end();
    return v;
  },
};

export const ChunkIdList = {
  encode(e: Encoder, ids: readonly ChunkId[]): void {
    e.u32(ids.length);
    for (const id of ids) encodeChunkId(e, id);
  },
  decode(d: Decoder): ChunkId[] {
    const n = d.u32('id count');
    if (n > MAX_IDS_PER_REQUEST) throw new QfsError('bad_request', `${n} ids exceeds ${MAX_IDS_PER_REQUEST}`);
    const ids: ChunkId[] = [];
    for (let i = 0; i < n; i++) ids.push(decodeChunkId(d));
    d.end();
    return ids;
  },
};

export const BoolListReply = {
  encode(e: Encoder, v: readonly boolean[]): void {
    e.u32(v.length);
    for (const b of v) e.bool(b);
  },
  decode(d: Decoder): boolean[] {
    const n = d.u32('count');
    if (n > MAX_IDS_PER_REQUEST) throw new QfsError('bad_request', `${n} flags`);
    const out: boolean[] = [];
    for (let i = 0; i < n; i++) out.push(d.bool());
    d.end();
    return out;
  },
};

export interface ChunkListRequest {
  after: ChunkId | null;
  limit: number;
}

export const ChunkList = {
  encode(e: Encoder, r: ChunkListRequest): void {
    e.bool(r.after !== null);
    if (r.after) encodeChunkId(e, r.after);
    e.u32(r.limit);
  },
  decode(d: Decoder): ChunkListRequest {
    const after = d.bool('has after') ? decodeChunkId(d) : null;
    const limit = decodeLimit(d, MAX_IDS_PER_REQUEST);
    d.end();
    return { after, limit };
  },
};

export type VerifyResult = 'ok' | 'corrupt' | 'missing';
const VERIFY_RESULTS: readonly VerifyResult[] = ['ok', 'corrupt', 'missing'];

export const VerifyReply = {
  encode(e: Encoder, v: VerifyResult): void {
    e.u8(VERIFY_RESULTS.indexOf(v));
  },
  decode(d: Decoder): VerifyResult {
    const v = VERIFY_RESULTS[d.u8('verify result')];
    if (!v) throw new QfsError('bad_request', 'invalid verify result');
    d.end();
    return v;
  },
};

export interface NodeStat {
  nodeId: string;
  version: string;
  uptimeSec: number;
  totalBytes: number;
  freeBytes: number;
  chunks: number;
  chunkBytes: number;
  records: number;
}

export const StatReply = {
  encode(e: Encoder, s: NodeStat): void {
    e.str(s.nodeId).str(s.version).u53(s.uptimeSec).u53(s.totalBytes).u53(s.freeBytes);
    e.u53(s.chunks).u53(s.chunkBytes).u53(s.records);
  },
  decode(d: Decoder): NodeStat {
    const s = {
      nodeId: d.str(64, 'node id'),
      version: d.str(64, 'version'),
      uptimeSec: d.u53(),
      totalBytes: d.u53(),
      freeBytes: d.u53(),
      chunks: d.u53(),
      chunkBytes: d.u53(),
      records: d.u53(),
    };
    d.end();
    return s;
  },
};

export const EmptyMessage = {
  encode(_e: Encoder, _v: void): void {},
  decode(d: Decoder): void {
    d.end();
  },
};

/** An encoded membership (src/util/membership.ts) is at most this large on the wire. */
export const MAX_MEMBERSHIP_BYTES = 1024 * 1024;

/** The membership a node has learned, or null before any (membership_get's reply). */
export const MembershipReply = {
  encode(e: Encoder, m: Buffer | null): void {
    e.bool(m !== null);
    if (m) e.bytes(m);
  },
  decode(d: Decoder): Buffer | null {
    const m = d.bool('has membership') ? d.bytes(MAX_MEMBERSHIP_BYTES, 'membership') : null;
    d.end();
    return m;
  },
};

/** membership_install(m): learn `m` when it is newer; the reply is the epoch the node holds afterwards (U53Reply). */
export const MembershipInstall = {
  encode(e: Encoder, m: Buffer): void {
    e.bytes(m);
  },
  decode(d: Decoder): Buffer {
    const m = d.bytes(MAX_MEMBERSHIP_BYTES, 'membership');
    d.end();
    return m;
  },
};

/** record_drop(keys): forget this node's copies of keys the membership no longer places here; the reply is how many went (U53Reply). */
export const RecordDrop = {
  encode(e: Encoder, keys: readonly Buffer[]): void {
    e.u32(keys.length);
    for (const k of keys) e.bytes(k);
  },
  decode(d: Decoder): Buffer[] {
    const n = d.u32('key count');
    if (n > MAX_IDS_PER_REQUEST) throw new QfsError('bad_request', `${n} keys exceeds ${MAX_IDS_PER_REQUEST}`);
    const keys: Buffer[] = [];
    for (let i = 0; i < n; i++) keys.push(decodeKey(d));
    d.end();
    return keys;
  },
};

/** Self-heal: the bucket digests of the records the answering node and `peer` both hold. */
export const BucketDigestsRequestCodec = {
  encode(e: Encoder, r: { peer: string }): void {
    e.str(r.peer);
  },
  decode(d: Decoder): { peer: string } {
    const peer = d.str(MAX_NODE_ID_BYTES, 'peer id');
    d.end();
    return { peer };
  },
};

export interface BucketDigestsReply {
  /** RECORD_BUCKETS digests of BUCKET_DIGEST_BYTES each, in bucket order. */
  xor: Buffer;
  counts: Uint32Array;
}

export const BucketDigestsReplyCodec = {
  encode(e: Encoder, r: BucketDigestsReply): void {
    e.raw(r.xor);
    for (let b = 0; b < RECORD_BUCKETS; b++) e.u32(r.counts[b]!);
  },
  decode(d: Decoder): BucketDigestsReply {
    const xor = Buffer.from(d.raw(RECORD_BUCKETS * BUCKET_DIGEST_BYTES, 'bucket digests'));
    const counts = new Uint32Array(RECORD_BUCKETS);
    for (let b = 0; b < RECORD_BUCKETS; b++) counts[b] = d.u32('bucket count');
    d.end();
    return { xor, counts };
  },
};

export interface BucketScanRequest {
  bucket: number;
  /** The first key to return, or an empty buffer for the bucket's start. */
  start: Buffer;
  limit: number;
}

export const BucketScanRequestCodec = {
  encode(e: Encoder, r: BucketScanRequest): void {
    e.u32(r.bucket).bytes(r.start).u32(r.limit);
  },
  decode(d: Decoder): BucketScanRequest {
    const bucket = d.u32('bucket');
    if (bucket >= RECORD_BUCKETS) throw new QfsError('bad_request', `bucket ${bucket} is not below ${RECORD_BUCKETS}`);
    const start = d.bytes(MAX_KEY_BYTES, 'bucket scan start');
    const limit = decodeLimit(d, MAX_SCAN_LIMIT);
    d.end();
    return { bucket, start, limit };
  },
};

/** Chunk ids of one bucket (src/util/range-digest.ts, chunkBucket) after `after`, ascending. */
export const ChunkBucketListCodec = {
  encode(e: Encoder, r: { bucket: number; after: ChunkId | null; limit: number }): void {
    e.u32(r.bucket).bool(r.after !== null);
    if (r.after) encodeChunkId(e, r.after);
    e.u32(r.limit);
  },
  decode(d: Decoder): { bucket: number; after: ChunkId | null; limit: number } {
    const bucket = d.u32('bucket');
    if (bucket >= CHUNK_BUCKETS) throw new QfsError('bad_request', `bucket ${bucket} is not below ${CHUNK_BUCKETS}`);
    const after = d.bool('has after') ? decodeChunkId(d) : null;
    const limit = decodeLimit(d, MAX_IDS_PER_REQUEST);
    d.end();
    return { bucket, after, limit };
  },
};
