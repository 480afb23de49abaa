// The on-disk encoding of one acceptor state. Values hold raw record bytes, so
// they get a fixed binary layout rather than msgpack/JSON:
//
//   0      u8   format version: 1, or 2 for a value with a lease tag; 3 and 4
//               are 1 and 2 with a checksum (what every write stores now)
//   1..17       promised ballot: u32 counter high, u32 counter low, 8 bytes proposer
//   17..33      accepted ballot, same layout
//   33     u8   value tag: 0 empty, 1 value, 2 tombstone
//   (version 2 only) f64 BE: the lease term the value was accepted under (src/util/lease.ts)
//   34.. (42.. in version 2)  value bytes (tags 1 and 2; may be zero-length)
//   (versions 3 and 4) last 4 bytes: CRC-32 of every byte before them
//
// The checksum covers the ballots too: a flipped bit there would be worse than
// one in a value (a promise that went back). A state that fails it throws
// `RecordChecksumError`; the store then treats the key as lost
// (src/util/paxos.ts, lostState).
import { crc32 } from 'node:zlib';
import { QfsError } from '../util/errors.js';
import type { Ballot } from '../util/ballot.js';
import type { AcceptorState, RecordValue } from './types.js';
import { EMPTY_VALUE } from './types.js';

const FORMAT_VERSION = 1;
const FORMAT_TAGGED = 2;
const FORMAT_SUMMED = 3;
const FORMAT_TAGGED_SUMMED = 4;
const CHECKSUM_BYTES = 4;
const LEASE_TAG_BYTES = 8;
export const BALLOT_BYTES = 16;
const HEADER_BYTES = 1 + 2 * BALLOT_BYTES + 1;
const TAG_EMPTY = 0;
const TAG_VALUE = 1;
const TAG_TOMBSTONE = 2;
const TWO_32 = 2 ** 32;
// Counters are safe integers: the high word never exceeds 2^21 - 1.
const MAX_COUNTER_HIGH = Math.floor(Number.MAX_SAFE_INTEGER / TWO_32);

function writeBallot(buf: Buffer, at: number, b: Ballot): void {
  buf.writeUInt32BE(Math.floor(b.counter / TWO_32), at);
  buf.writeUInt32BE(b.counter % TWO_32, at + 4);
  buf.write(b.proposer, at + 8, 8, 'hex');
}

function readBallot(buf: Buffer, at: number): Ballot {
  const high = buf.readUInt32BE(at);
  if (high > MAX_COUNTER_HIGH) throw new QfsError('corrupt', 'stored ballot counter is not a safe integer');
  return Object.freeze({ counter: high * TWO_32 + buf.readUInt32BE(at + 4), proposer: buf.toString('hex', at + 8, at + 16) });
}

export function encodeBallot(b: Ballot): Buffer {
  const buf = Buffer.alloc(BALLOT_BYTES);
  writeBallot(buf, 0, b);
  return buf;
}

export function decodeBallot(buf: Buffer): Ballot {
  if (buf.length !== BALLOT_BYTES) throw new QfsError('corrupt', `stored ballot of ${buf.length} bytes`);
  return readBallot(buf, 0);
}

export function encodeState(s: AcceptorState): Buffer {
  const bytes = s.value.kind === 'empty' ? null : s.value.bytes;
  const tagged = s.tag !== undefined;
  const start = HEADER_BYTES + (tagged ? LEASE_TAG_BYTES : 0);
  const end = start + (bytes?.length ?? 0);
  const buf = Buffer.allocUnsafe(end + CHECKSUM_BYTES);
  buf.writeUInt8(tagged ? FORMAT_TAGGED_SUMMED : FORMAT_SUMMED, 0);
  writeBallot(buf, 1, s.promised);
  writeBallot(buf, 1 + BALLOT_BYTES, s.accepted);
  const tag = s.value.kind === 'value' ? TAG_VALUE : s.value.kind === 'tombstone' ? TAG_TOMBSTONE : TAG_EMPTY;
  buf.writeUInt8(tag, HEADER_BYTES - 1);
  if (tagged) buf.writeDoubleBE(s.tag!, HEADER_BYTES);
  if (bytes) buf.set(bytes, start);
  buf.writeUInt32BE(crc32(buf.subarray(0, end)), end);
  return buf;
}

/** A stored state whose bytes do not match their checksum: the key's state is lost on this node. */
export class RecordChecksumError extends QfsError {
  constructor() {
    super('corrupt', 'stored record state fails its checksum');
  }
}

/**
 * With `share`, value bytes are a view into `buf` (the caller owns `buf` and
 * never mutates it); otherwise they are copied, because lmdb may reuse the
 * buffers it hands out.
 */
export function decodeState(stored: Buffer, share = false): AcceptorState {
  if (stored.length < HEADER_BYTES) throw new QfsError('corrupt', `stored record state of ${stored.length} bytes`);
  let version = stored.readUInt8(0);
  let buf = stored;
  if (version === FORMAT_SUMMED || version === FORMAT_TAGGED_SUMMED) {
    const end = stored.length - CHECKSUM_BYTES;
    if (end < HEADER_BYTES || crc32(stored.subarray(0, end)) !== stored.readUInt32BE(end)) throw new RecordChecksumError();
    buf = stored.subarray(0, end);
    version = version === FORMAT_SUMMED ? FORMAT_VERSION : FORMAT_TAGGED;
  } else if (version !== FORMAT_VERSION && version !== FORMAT_TAGGED) {
    throw new QfsError('corrupt', `stored record state has format version ${version}`);
  }
  const promised = readBallot(buf, 1);
  const accepted = readBallot(buf, 1 + BALLOT_BYTES);
  const tag = buf.readUInt8(HEADER_BYTES - 1);
  let start = HEADER_BYTES;
  let leaseTag: number | undefined;
  if (version === FORMAT_TAGGED) {
    if (buf.length < HEADER_BYTES + LEASE_TAG_BYTES) throw new QfsError('corrupt', 'stored record state is short of its lease tag');
    leaseTag = buf.readDoubleBE(HEADER_BYTES);
    if (!Number.isSafeInteger(leaseTag) || leaseTag < 0) throw new QfsError('corrupt', 'stored lease tag is not a term');
    start += LEASE_TAG_BYTES;
  }
  let value: RecordValue;
  if (tag === TAG_VALUE || tag === TAG_TOMBSTONE) {
    const view = buf.subarray(start);
    value = Object.freeze({ kind: tag === TAG_VALUE ? 'value' : 'tombstone', bytes: share ? view : Buffer.from(view) });
  } else if (tag === TAG_EMPTY) {
    if (buf.length !== start) throw new QfsError('corrupt', 'stored record state has trailing bytes');
    value = EMPTY_VALUE;
  } else {
    throw new QfsError('corrupt', `stored record state has value tag ${tag}`);
  }
  return Object.freeze(leaseTag === undefined ? { promised, accepted, value } : { promised, accepted, value, tag: leaseTag });
}
