import test from 'ava';
import { createHash } from 'node:crypto';
import { Decoder, Encoder } from '../../src/util/codec.js';
import * as M from '../../src/rpc/messages.js';
import { QfsError, isQfsError } from '../../src/util/errors.js';
import type { ChunkId } from '../../src/util/ids.js';
import { BUCKET_DIGEST_BYTES, CHUNK_BUCKETS, RECORD_BUCKETS } from '../../src/util/range-digest.js';

function roundTrip<T>(codec: { encode(e: Encoder, v: T): void; decode(d: Decoder): T }, v: T): T {
  const e = new Encoder();
  codec.encode(e, v);
  return codec.decode(new Decoder(e.finish()));
}

const ballot = { counter: 42, proposer: '0123456789abcdef' };
const id = createHash('sha256').update('x').digest('hex') as ChunkId;

test('record messages round-trip', (t) => {
  t.deepEqual(roundTrip(M.RecordPrepare, { key: Buffer.from('inode/1'), ballot }), { key: Buffer.from('inode/1'), ballot });
  for (const value of [{ kind: 'empty' }, { kind: 'tombstone', bytes: Buffer.alloc(0) }, { kind: 'value', bytes: Buffer.from([0, 1, 2]) }] as const) {
    const r = roundTrip(M.RecordAccept, { key: Buffer.from('k'), ballot, value, promiseNext: true });
    t.deepEqual(r.value, value);
    t.true(r.promiseNext);
  }
  const state = { promised: ballot, accepted: { counter: 1, proposer: 'ffffffffffffffff' }, value: { kind: 'value' as const, bytes: Buffer.from('v') } };
  t.deepEqual(roundTrip(M.VerdictReply, { ok: true, state }), { ok: true, state });
  const scan = { entries: [{ key: Buffer.from('a'), state }], next: Buffer.from('b') };
  t.deepEqual(roundTrip(M.ScanReplyCodec, scan), scan);
  t.deepEqual(roundTrip(M.RecordScan, { start: Buffer.from('a'), end: null, limit: 10 }), { start: Buffer.from('a'), end: null, limit: 10 });
});

test('scope leases on the wire: scoped calls, tagged and annotated states, fenced verdicts, learn', (t) => {
  const scope = { lease: Buffer.from('d/@lease'), term: 7, session: 'm1#3' };
  t.deepEqual(roundTrip(M.RecordPrepare, { key: Buffer.from('d/x'), ballot, scope }), { key: Buffer.from('d/x'), ballot, scope });
  const acc = roundTrip(M.RecordAccept, { key: Buffer.from('d/x'), ballot, value: { kind: 'value', bytes: Buffer.from('v') }, promiseNext: false, scope });
  t.deepEqual(acc.scope, scope);
  t.deepEqual(roundTrip(M.RecordRead, { key: Buffer.from('d/x'), scope }), { key: Buffer.from('d/x'), scope });
  const settling = { ...scope, settling: true };
  t.deepEqual(roundTrip(M.RecordScan, { start: Buffer.from('d/'), end: Buffer.from('d0'), limit: 5, scope: settling }), { start: Buffer.from('d/'), end: Buffer.from('d0'), limit: 5, scope: settling });
  const tagged = { promised: ballot, accepted: ballot, value: { kind: 'value' as const, bytes: Buffer.from('v') }, tag: 7, settled: 5 };
  t.deepEqual(roundTrip(M.VerdictReply, { ok: false, state: tagged, fenced: true }), { ok: false, state: tagged, fenced: true });
  t.deepEqual(roundTrip(M.StateReply, tagged), tagged);
  const scan = { entries: [{ key: Buffer.from('d/x'), state: tagged }], next: null, settled: 5 };
  t.deepEqual(roundTrip(M.ScanReplyCodec, scan), scan);
  t.deepEqual(roundTrip(M.RecordLearn, { key: Buffer.from('d/x'), ballot }), { key: Buffer.from('d/x'), ballot });
  // unknown state flags are refused, not ignored
  const e = new Encoder();
  M.StateReply.encode(e, tagged);
  const bytes = e.finish();
  const flagsAt = bytes.length - 1 - 8 - 8; // the flags byte, then two u53 of 8 bytes each
  bytes[flagsAt] = 0x80;
  t.true(isQfsError(t.throws(() => M.StateReply.decode(new Decoder(bytes))), 'bad_request'));
});

test('chunk messages round-trip; ids travel as 32 raw bytes', (t) => {
  const e = new Encoder();
  M.ChunkPut.encode(e, { id, bytes: Buffer.from('x') });
  const frame = e.finish();
  t.is(frame.length, 33);
  t.is(frame.subarray(0, 32).toString('hex'), id);
  t.deepEqual(M.ChunkPut.decode(new Decoder(frame)), { id, bytes: Buffer.from('x') });
  t.deepEqual(roundTrip(M.ChunkIdList, [id, id]), [id, id]);
  t.deepEqual(roundTrip(M.ChunkList, { after: id, limit: 5 }), { after: id, limit: 5 });
  t.deepEqual(roundTrip(M.ChunkGet, { id, offset: 3, length: 9 }), { id, offset: 3, length: 9 });
  t.is(roundTrip(M.VerifyReply, 'corrupt'), 'corrupt');
});

test('bad fields are refused', (t) => {
  const bad = (fn: () => unknown): void => {
    t.true(isQfsError(t.throws(fn), 'bad_request'));
  };
  bad(() => M.RecordPrepare.decode(new Decoder(new Encoder().bytes(Buffer.alloc(0)).u53(1).raw(Buffer.alloc(8)).finish())));
  bad(() => M.RecordPrepare.decode(new Decoder(new Encoder().bytes(Buffer.alloc(2000)).u53(1).raw(Buffer.alloc(8)).finish())));
  bad(() => M.RecordAccept.decode(new Decoder(new Encoder().bytes(Buffer.from('k')).u53(1).raw(Buffer.alloc(8)).u8(9).u8(0).finish())));
  bad(() => M.RecordScan.decode(new Decoder(new Encoder().bytes(Buffer.from('k')).bool(false).u32(0).finish())));
  bad(() => M.RecordScan.decode(new Decoder(new Encoder().bytes(Buffer.from('k')).bool(false).u32(M.MAX_SCAN_LIMIT + 1).finish())));
  bad(() => M.ChunkIdList.decode(new Decoder(new Encoder().u32(M.MAX_IDS_PER_REQUEST + 1).finish())));
  bad(() => M.ChunkIdRequest.decode(new Decoder(Buffer.alloc(31))));
  bad(() => M.ChunkGet.decode(new Decoder(new Encoder().raw(Buffer.alloc(32)).u32(0xffffffff).u32(1).finish())));
});

test('range digest messages round-trip, and bad ones are refused', (t) => {
  const req = { start: Buffer.from([1, 0x61]), end: Buffer.from([1, 0x62]), limit: 500, peer: 'n2' };
  t.deepEqual(roundTrip(M.RecordDigest, req), req);
  t.deepEqual(roundTrip(M.RecordDigest, { ...req, end: null }), { ...req, end: null });
  const reply = { digest: Buffer.alloc(32, 7), count: 12, next: null };
  t.deepEqual(roundTrip(M.DigestReplyCodec, reply), reply);
  t.deepEqual(roundTrip(M.DigestReplyCodec, { ...reply, next: Buffer.from('z') }), { ...reply, next: Buffer.from('z') });
  const bad = (fn: () => unknown): void => {
    t.true(isQfsError(t.throws(fn), 'bad_request'));
  };
  bad(() => M.RecordDigest.decode(new Decoder(new Encoder().bytes(Buffer.from('k')).bool(false).u32(M.MAX_SCAN_LIMIT + 1).str('n2').finish())));
  bad(() => M.RecordDigest.decode(new Decoder(new Encoder().bytes(Buffer.from('k')).bool(false).u32(5).str('x'.repeat(65)).finish())));
  bad(() => M.DigestReplyCodec.decode(new Decoder(new Encoder().raw(Buffer.alloc(31)).finish())));
  bad(() => M.DigestReplyCodec.decode(new Decoder(new Encoder().raw(Buffer.alloc(32)).u32(M.MAX_SCAN_LIMIT + 1).bool(false).finish())));
  bad(() => M.DigestReplyCodec.decode(new Decoder(new Encoder().raw(Buffer.alloc(32)).u32(1).bool(false).u8(0).finish())));
});

test('bucket digest and bucket scan messages round-trip, and bad ones are refused', (t) => {
  t.deepEqual(roundTrip(M.BucketDigestsRequestCodec, { peer: 'n3' }), { peer: 'n3' });
  const xor = Buffer.alloc(RECORD_BUCKETS * BUCKET_DIGEST_BYTES);
  xor[5] = 9;
  const counts = new Uint32Array(RECORD_BUCKETS);
  counts[1023] = 77;
  const back = roundTrip(M.BucketDigestsReplyCodec, { xor, counts });
  t.true(back.xor.equals(xor));
  t.deepEqual([...back.counts], [...counts]);
  const scan = { bucket: 1023, start: Buffer.from([1, 0x61]), limit: 100 };
  t.deepEqual(roundTrip(M.BucketScanRequestCodec, scan), scan);
  const list = { bucket: 4, after: 'ab'.repeat(32) as ChunkId, limit: 1000 };
  t.deepEqual(roundTrip(M.ChunkBucketListCodec, list), list);
  t.deepEqual(roundTrip(M.ChunkBucketListCodec, { ...list, after: null }), { ...list, after: null });
  const bad = (fn: () => unknown): void => {
    t.true(isQfsError(t.throws(fn), 'bad_request'));
  };
  bad(() => M.BucketDigestsReplyCodec.decode(new Decoder(new Encoder().raw(Buffer.alloc(100)).finish())));
  bad(() => M.BucketScanRequestCodec.decode(new Decoder(new Encoder().u32(RECORD_BUCKETS).bytes(Buffer.alloc(0)).u32(5).finish())));
  bad(() => M.BucketScanRequestCodec.decode(new Decoder(new Encoder().u32(1).bytes(Buffer.alloc(0)).u32(M.MAX_SCAN_LIMIT + 1).finish())));
  bad(() => M.ChunkBucketListCodec.decode(new Decoder(new Encoder().u32(CHUNK_BUCKETS).bool(false).u32(5).finish())));
  bad(() => M.BucketDigestsRequestCodec.decode(new Decoder(new Encoder().str('x'.repeat(65)).finish())));
});

test('batched accepts and learns: each item round-trips with its scope; a batched answer is a verdict or that item error; counts over the limit are refused', (t) => {
  const scope = { lease: Buffer.from('d/@lease'), term: 7, session: 'm1#3' };
  const items = [
    { key: Buffer.from('d/a'), ballot, value: { kind: 'value' as const, bytes: Buffer.from('v') }, promiseNext: true, scope },
    { key: Buffer.from('i/1'), ballot, value: { kind: 'tombstone' as const, bytes: Buffer.alloc(0) }, promiseNext: false },
  ];
  t.deepEqual(roundTrip(M.RecordAcceptMany, items), items);
  const state = { promised: ballot, accepted: ballot, value: { kind: 'value' as const, bytes: Buffer.from('v') }, tag: 7, settled: 5 };
  const answers = roundTrip(M.VerdictsReply, [{ ok: true, state }, new QfsError('corrupt', 'lost state'), { ok: false, state, fenced: true }]);
  t.deepEqual(answers[0], { ok: true, state });
  t.true(isQfsError(answers[1], 'corrupt'));
  t.is((answers[1] as QfsError).message, 'lost state');
  t.deepEqual(answers[2], { ok: false, state, fenced: true });
  const learns = [{ key: Buffer.from('d/a'), ballot }, { key: Buffer.from('d/b'), ballot }];
  t.deepEqual(roundTrip(M.RecordLearnMany, learns), learns);
  t.deepEqual(roundTrip(M.BoolsReply, [true, false, true]), [true, false, true]);
  const reads = [{ key: Buffer.from('i/1') }, { key: Buffer.from('d/x'), scope: { lease: Buffer.from('L'), session: 's#1', term: 3 } }];
  t.deepEqual(roundTrip(M.RecordReadMany, reads), reads);
  const states = roundTrip(M.StatesReply, [state, new QfsError('fenced', 'held by another')]);
  t.deepEqual(states[0], state);
  t.true(isQfsError(states[1], 'fenced'));
  for (const [codec, max] of [[M.RecordAcceptMany, M.MAX_ACCEPTS_PER_REQUEST], [M.RecordLearnMany, M.MAX_LEARNS_PER_REQUEST], [M.VerdictsReply, M.MAX_ACCEPTS_PER_REQUEST], [M.BoolsReply, M.MAX_LEARNS_PER_REQUEST], [M.RecordReadMany, M.MAX_READS_PER_REQUEST], [M.StatesReply, M.MAX_READS_PER_REQUEST]] as const) {
    const over = new Encoder().u32(max + 1).finish();
    t.true(isQfsError(t.throws(() => codec.decode(new Decoder(over))), 'bad_request'));
  }
  // a truncated batch is refused too
  const e = new Encoder();
  M.RecordAcceptMany.encode(e, items);
  const bytes = e.finish();
  t.true(isQfsError(t.throws(() => M.RecordAcceptMany.decode(new Decoder(bytes.subarray(0, bytes.length - 3)))), 'bad_request'));
});
