// Binary field codec: big-endian fixed-width integers, length-prefixed bytes and
// strings. Every read checks bounds; a short or oversized field is a bad frame.
import { QfsError } from './errors.js';

export class Encoder {
  private buf: Buffer;
  private pos = 0;

  /** Starts with a buffer of `initial` bytes, or with `initial` itself (the encoding is written into it while it fits). */
  constructor(initial: number | Buffer = 256) {
    this.buf = typeof initial === 'number' ? Buffer.allocUnsafe(initial) : initial;
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(v: number): this {
    this.reserve(1);
    this.buf.writeUInt8(v, this.pos);
    this.pos += 1;
    return this;
  }

  u16(v: number): this {
    this.reserve(2);
    this.buf.writeUInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }

  u32(v: number): this {
    this.reserve(4);
    this.buf.writeUInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  /** An unsigned safe integer (< 2^53) in 8 bytes. */
  u53(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`not an unsigned safe integer: ${v}`);
    this.reserve(8);
    this.buf.writeUInt32BE(Math.floor(v / 0x1_0000_0000), this.pos);
    this.buf.writeUInt32BE(v % 0x1_0000_0000, this.pos + 4);
    this.pos += 8;
    return this;
  }

  bool(v: boolean): this {
    return this.u8(v ? 1 : 0);
  }

  /** Raw bytes with no length: the caller knows the size (a fixed field or the frame's tail). */
  raw(b: Uint8Array): this {
    this.reserve(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  /** Reserves `n` bytes at the end and returns them for the caller to fill (a file read straight into a reply). */
  tail(n: number): Buffer {
    this.reserve(n);
    const view = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return view;
  }

  /** Length-prefixed (u32) bytes. */
  bytes(b: Uint8Array): this {
    this.u32(b.length);
    return this.raw(b);
  }

  /** Length-prefixed (u16) UTF-8 string. */
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    if (b.length > 0xffff) throw new RangeError('string too long for a u16 length');
    this.u16(b.length);
    return this.raw(b);
  }

  get length(): number {
    return this.pos;
  }

  /** A view of the encoded bytes; the encoder must not be used afterwards. */
  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

function truncated(what: string): QfsError {
  return new QfsError('bad_request', `truncated frame reading ${what}`);
}

export class Decoder {
  private pos: number;

  constructor(
    private readonly buf: Buffer,
    start = 0,
  ) {
    this.pos = start;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private need(n: number, what: string): void {
    if (this.pos + n > this.buf.length) throw truncated(what);
  }

  u8(what = 'u8'): number {
    this.need(1, what);
    return this.buf.readUInt8(this.pos++);
  }

  u16(what = 'u16'): number {
    this.need(2, what);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(what = 'u32'): number {
    this.need(4, what);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  u53(what = 'u53'): number {
    this.need(8, what);
    const hi = this.buf.readUInt32BE(this.pos);
    const lo = this.buf.readUInt32BE(this.pos + 4);
    this.pos += 8;
    if (hi >= 0x20_0000) throw new QfsError('bad_request', `${what} exceeds 2^53`);
    return hi * 0x1_0000_0000 + lo;
  }

  bool(what = 'bool'): boolean {
    const v = this.u8(what);
    if (v > 1) throw new QfsError('bad_request', `${what}: invalid boolean ${v}`);
    return v === 1;
  }

  /** A view (no copy) of the next n bytes. */
  raw(n: number, what = 'raw'): Buffer {
    this.need(n, what);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  /** Every byte left in the frame, as a view. */
  rest(): Buffer {
    return this.raw(this.remaining, 'rest');
  }

  bytes(max: number, what = 'bytes'): Buffer {
    const n = this.u32(`${what} length`);
    if (n > max) throw new QfsError('bad_request', `${what}: ${n} bytes exceeds the limit of ${max}`);
    return this.raw(n, what);
  }

  str(max: number, what = 'string'): string {
    const n = this.u16(`${what} length`);
    if (n > max) throw new QfsError('bad_request', `${what}: ${n} bytes exceeds the limit of ${max}`);
    const b = this.raw(n, what);
    const s = b.toString('utf8');
    // Reject invalid UTF-8 rather than silently replacing it.
    if (Buffer.byteLength(s, 'utf8') !== n || s.includes('\ufffd')) {
      if (!Buffer.from(s, 'utf8').equals(b)) throw new QfsError('bad_request', `${what}: invalid UTF-8`);
    }
    return s;
  }

  /** Asserts the frame had no trailing bytes. */
  end(): void {
    if (this.pos !== this.buf.length) {
      throw new QfsError('bad_request', `${this.buf.length - this.pos} unexpected trailing bytes in frame`);
    }
  }
}
