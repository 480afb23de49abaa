import test from 'ava';
import { Decoder, Encoder } from '../../src/util/codec.js';
import { encodeAuth, encodeHello, requestEncoder, decodeRequestHeader, encodeErrorResponse, decodeResponseHeader } from '../../src/rpc/frame.js';
import { clientProof, serverProof } from '../../src/rpc/auth.js';
import { backoffDelay } from '../../src/rpc/client.js';
import { isQfsError } from '../../src/util/errors.js';

test('fields round-trip through the encoder and decoder', (t) => {
  const e = new Encoder(4); // forces growth
  e.u8(255).u16(65535).u32(0xdeadbeef).u53(Number.MAX_SAFE_INTEGER).u53(0).bool(true).bytes(Buffer.from('abc')).str('héllo ✓');
  const d = new Decoder(e.finish());
  t.is(d.u8(), 255);
  t.is(d.u16(), 65535);
  t.is(d.u32(), 0xdeadbeef);
  t.is(d.u53(), Number.MAX_SAFE_INTEGER);
  t.is(d.u53(), 0);
  t.true(d.bool());
  t.deepEqual(d.bytes(10), Buffer.from('abc'));
  t.is(d.str(100), 'héllo ✓');
  t.notThrows(() => d.end());
});

test('exact bytes of a request frame', (t) => {
  const frame = requestEncoder({ id: 0x01020304, op: 11, deadlineMs: 5000, epoch: 9 }).bytes(Buffer.from('k')).finish();
  t.is(frame.toString('hex'), '04' + '01020304' + '0b' + '00001388' + '00000009' + '00000001' + '6b');
  const { header, body } = decodeRequestHeader(frame);
  t.deepEqual(header, { id: 0x01020304, op: 11, deadlineMs: 5000, epoch: 9 });
  t.deepEqual(body.bytes(10), Buffer.from('k'));
});

test('exact bytes of an error response and a hello', (t) => {
  const frame = encodeErrorResponse(7, 4, 'no');
  t.is(frame.toString('hex'), '05' + '00000007' + '04' + '0002' + '6e6f');
  const { header, body } = decodeResponseHeader(frame);
  t.deepEqual(header, { id: 7, status: 4 });
  t.is(body.str(10), 'no');
  const hello = encodeHello(Buffer.alloc(32, 0xaa), 'c');
  t.is(hello.toString('hex'), '01' + '05' + 'aa'.repeat(32) + '0001' + '63');
  t.is(encodeAuth(Buffer.alloc(32, 1), Buffer.alloc(32, 2)).length, 1 + 1 + 32 + 32);
});

test('truncated, oversized and trailing input is rejected as bad_request', (t) => {
  const e = new Encoder().bytes(Buffer.alloc(100)).finish();
  t.true(isQfsError(t.throws(() => new Decoder(e).bytes(50)), 'bad_request'));
  t.true(isQfsError(t.throws(() => new Decoder(e.subarray(0, 50)).bytes(1000)), 'bad_request'));
  t.true(isQfsError(t.throws(() => new Decoder(Buffer.from([1, 2])).u32()), 'bad_request'));
  const d = new Decoder(Buffer.from([1, 2]));
  d.u8();
  t.true(isQfsError(t.throws(() => d.end()), 'bad_request'));
  // 2^53 and above does not fit a JavaScript number exactly
  t.true(isQfsError(t.throws(() => new Decoder(Buffer.from('0020000000000000', 'hex')).u53()), 'bad_request'));
  t.throws(() => new Encoder().u53(-1), { instanceOf: RangeError });
  t.true(isQfsError(t.throws(() => new Decoder(Buffer.from('0002c3', 'hex')).str(10)), 'bad_request'));
  t.true(isQfsError(t.throws(() => new Decoder(Buffer.from('0001ff', 'hex')).str(10)), 'bad_request'));
  t.true(isQfsError(t.throws(() => new Decoder(Buffer.from('02', 'hex')).bool()), 'bad_request'));
});

test('auth proofs depend on the secret, both nonces, the cluster and the role', (t) => {
  const s = Buffer.from('x'.repeat(40));
  const n1 = Buffer.alloc(32, 1);
  const n2 = Buffer.alloc(32, 2);
  const p = clientProof(s, 'c', n1, n2);
  t.is(p.length, 32);
  t.deepEqual(p, clientProof(s, 'c', n1, n2));
  t.notDeepEqual(p, clientProof(Buffer.from('y'.repeat(40)), 'c', n1, n2));
  t.notDeepEqual(p, clientProof(s, 'd', n1, n2));
  t.notDeepEqual(p, clientProof(s, 'c', n2, n2));
  t.notDeepEqual(p, clientProof(s, 'c', n1, n1));
  // a client proof can never be reflected back as the server's proof
  t.notDeepEqual(p, serverProof(s, 'c', n1, n2));
});

test('backoff is jittered, grows, and stays within its bounds', (t) => {
  for (let attempt = 0; attempt < 40; attempt++) {
    for (const r of [0, 0.5, 0.999]) {
      const d = backoffDelay(attempt, 50, 2000, () => r);
      t.true(d >= 25 && d <= 2000, `attempt ${attempt}: ${d}`);
    }
  }
  t.true(backoffDelay(10, 50, 2000, () => 0.999) > backoffDelay(0, 50, 2000, () => 0.999));
  t.not(backoffDelay(5, 50, 2000, () => 0.1), backoffDelay(5, 50, 2000, () => 0.9));
});

test('tail reserves bytes for the caller to fill, growing the frame as needed', (t) => {
  const e = new Encoder(4).u8(7);
  const view = e.tail(10);
  t.is(view.length, 10);
  view.fill(0xab);
  e.u8(9);
  t.is(e.finish().toString('hex'), '07' + 'ab'.repeat(10) + '09');
});
