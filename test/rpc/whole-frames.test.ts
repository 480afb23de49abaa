// WholeFrames passes a socket's bytes on unchanged and in order, and every frame
// longer than its 64 KiB read buffer in one buffer of its own, however the reads cut them.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { BIG_FRAME, WholeFrames } from '../../src/rpc/whole-frames.js';

/** An unmasked server frame (binary, FIN) with this payload. */
function frame(payload: Buffer, opcode = 0x2): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x80 | opcode, n]) : n < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  if (n >= 126 && n < 65536) {
    head[0] = 0x80 | opcode;
    head[1] = 126;
    head.writeUInt16BE(n, 2);
  } else if (n >= 65536) {
    head[0] = 0x80 | opcode;
    head[1] = 127;
    head.writeUInt32BE(0, 2);
    head.writeUInt32BE(n, 6);
  }
  return Buffer.concat([head, payload]);
}

/** Feeds `input` through WholeFrames in reads of the sizes `cut` picks; what it passed on, by emit. */
function feed(input: Buffer, cut: (room: number) => number, maxFrame = 16 * 1024 * 1024): Buffer[] {
  const out: Buffer[] = [];
  const w = new WholeFrames((b) => out.push(b), maxFrame);
  let at = 0;
  while (at < input.length) {
    const into = w.next();
    if (into.length === 0) throw new Error('next() gave no room');
    const n = Math.min(into.length, input.length - at, Math.max(1, cut(into.length)));
    input.copy(into, 0, at, at + n);
    at += n;
    w.read(n);
  }
  return out;
}

const HEAD = Buffer.from('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n');

function stream(seed: number): { bytes: Buffer; frames: Buffer[] } {
  let s = seed;
  const rnd = (n: number): number => ((s = (s * 1103515245 + 12345) % 2 ** 31), s % n);
  const frames: Buffer[] = [];
  for (let i = 0; i < 60; i++) {
    const kind = rnd(6);
    const len = kind === 0 ? 1024 * 1024 + rnd(100) : kind === 1 ? BIG_FRAME + rnd(70_000) : kind === 2 ? rnd(126) : kind === 3 ? 126 + rnd(BIG_FRAME) : kind === 4 ? BIG_FRAME - 4 + rnd(8) : 0;
    frames.push(frame(randomBytes(len), kind === 5 ? 0x9 : 0x2));
  }
  return { bytes: Buffer.concat([HEAD, ...frames]), frames };
}

for (const [name, cut] of [
  ['one byte at a time at the start, then random', (() => { let k = 0; return (room: number) => (k++ < 200 ? 1 : 1 + Math.floor(Math.random() * room)); })()],
  ['random read sizes', (room: number) => 1 + Math.floor(Math.random() * room)],
  ['whatever room there is', (room: number) => room],
  ['small reads', () => 1 + Math.floor(Math.random() * 3000)],
] as const) {
  test(`bytes unchanged and in order; each frame over 64 KiB in one buffer (${name})`, (t) => {
    for (let seed = 1; seed <= 3; seed++) {
      const { bytes, frames } = stream(seed);
      const out = feed(bytes, cut);
      // checked after all reads: a buffer handed out for reading never overlaps bytes passed on
      t.true(Buffer.concat(out).equals(bytes));
      t.true(out[0]!.equals(HEAD), 'the HTTP head alone first');
      // a frame that arrived whole in the reused 64 KiB buffer is copied out with its neighbours; a longer one never can
      const big = frames.filter((f) => f.length > 64 * 1024);
      t.true(big.length > 5);
      const whole = out.filter((b) => b.length > BIG_FRAME);
      for (const f of big) t.true(whole.some((b) => b.equals(f)), `a frame of ${f.length} bytes in one buffer`);
      // every emit starts at a frame boundary
      const starts = new Set<number>();
      let at = HEAD.length;
      for (const f of frames) {
        starts.add(at);
        at += f.length;
      }
      let pos = 0;
      for (const b of out) {
        if (pos > 0) t.true(starts.has(pos) || pos === HEAD.length, `an emit at ${pos} starts a frame`);
        pos += b.length;
      }
    }
  });
}

test('a frame longer than the limit, a masked frame, or no HTTP head: bytes still pass unchanged', (t) => {
  const tooBig = Buffer.concat([HEAD, frame(randomBytes(200_000)), frame(randomBytes(10))]);
  t.true(Buffer.concat(feed(tooBig, (r) => 1 + Math.floor(Math.random() * r), 100_000)).equals(tooBig));
  const masked = Buffer.concat([HEAD, Buffer.from([0x82, 0x85, 1, 2, 3, 4]), randomBytes(5), frame(randomBytes(70_000))]);
  t.true(Buffer.concat(feed(masked, (r) => 1 + Math.floor(Math.random() * r))).equals(masked));
  const noHead = randomBytes(300_000);
  t.true(Buffer.concat(feed(noHead, (r) => 1 + Math.floor(Math.random() * r))).equals(noHead));
});

test('each frame over 16 KiB is passed on whole, in a buffer of exactly its size; smaller ones as copies', (t) => {
  const { bytes, frames } = stream(7);
  const out: Buffer[] = [];
  const w = new WholeFrames((b) => out.push(b), 16 * 1024 * 1024);
  let pos = 0;
  while (pos < bytes.length) {
    const into = w.next();
    const n = Math.min(into.length, bytes.length - pos, 1 + Math.floor(Math.random() * 200_000));
    bytes.copy(into, 0, pos, pos + n);
    pos += n;
    w.read(n);
  }
  t.true(Buffer.concat(out).equals(bytes));
  for (const f of frames.filter((x) => x.length > 16 * 1024)) {
    const got = out.find((b) => b.equals(f));
    t.truthy(got, `a frame of ${f.length} bytes was passed on whole`);
    t.is(got!.buffer.byteLength, f.length, 'a buffer of exactly its size');
    t.is(got!.byteOffset, 0);
  }
});
