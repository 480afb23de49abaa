// The client's socket reads, arranged so that ws never has to glue a big
// WebSocket frame together.
//
// Node reads a socket into a new 64 KiB buffer each time, and ws copies a
// message that spans several reads into one more buffer of its size: for a
// 1 MiB chunk, 17 allocations and a 1 MiB copy (13% of the mount's JS thread
// in a cold big read, page faults included). Here the socket reads into
// buffers this module hands out (net's `onread`): small frames go through one
// reused buffer and are copied out when complete, and a frame bigger than
// BIG_FRAME is read, once its header is seen, into a buffer of exactly its
// size. ws then receives each big frame as one buffer and hands its payload
// on as a view, without a copy.
//
// The framing is only looked at, never trusted: the bytes are passed on in
// order and unchanged, and ws parses and checks them as before. A length
// past `maxFrame` (or a header that cannot be a server's) turns the gathering
// off for the connection (everything is passed on as read). Before the first
// frame come the HTTP response's header lines, passed on up to their blank
// line so that ws starts on a frame boundary.
import { connect, type NetConnectOpts, type Socket } from 'node:net';

/** Frames longer than this get a buffer of their own. */
export const BIG_FRAME = 16 * 1024;
const SLAB_BYTES = 64 * 1024;
const BIG_READ = 1024 * 1024;
const HTTP_END = Buffer.from('\r\n\r\n');
/** Header lines longer than this are not an HTTP response ws would take: pass on. */
const MAX_HTTP_HEAD = 16 * 1024;

export class WholeFrames {
  /** The buffer reads go into: the slab, or one big frame's own buffer. */
  private cur: Buffer;
  private readonly slab = Buffer.allocUnsafe(SLAB_BYTES);
  /** cur[start, end) was read and not passed on yet; start is a frame's first byte in 'frames' mode. */
  private start = 0;
  private end = 0;
  private mode: 'http' | 'frames' | 'raw' = 'http';

  constructor(
    private readonly emit: (bytes: Buffer) => void,
    private readonly maxFrame: number,
  ) {
    this.cur = this.slab;
  }

  /** Where the next read goes: never empty; into a big frame at most BIG_READ at a time. */
  next(): Buffer {
    return this.cur === this.slab ? this.cur.subarray(this.end) : this.cur.subarray(this.end, this.end + BIG_READ);
  }

  /** `n` bytes were read into the buffer next() returned. */
  read(n: number): void {
    this.end += n;
    if (this.mode === 'http') this.httpHead();
    if (this.mode === 'frames') this.frames();
    if (this.mode === 'raw') this.passOn(this.end);
    this.makeRoom();
  }

  /** Passes cur[start, upTo) on: a big frame's own buffer as it is, slab bytes as a copy (the slab is reused). */
  private passOn(upTo: number): void {
    if (upTo <= this.start) return;
    const whole = this.cur !== this.slab && this.start === 0 && upTo === this.cur.length;
    const bytes = whole ? this.cur : Buffer.from(this.cur.subarray(this.start, upTo));
    this.start = upTo;
    this.emit(bytes);
  }

  private httpHead(): void {
    const at = this.cur.subarray(0, this.end).indexOf(HTTP_END, this.start);
    if (at >= 0) {
      this.passOn(at + HTTP_END.length);
      this.mode = 'frames';
    } else if (this.end - this.start > MAX_HTTP_HEAD) {
      this.mode = 'raw';
    }
  }

  /** Passes on every complete frame; a big incomplete one moves to a buffer of its own size. */
  private frames(): void {
    let at = this.start;
    for (;;) {
      const total = this.frameBytes(at);
      if (total === undefined) {
        this.mode = 'raw';
        return;
      }
      if (total === null || at + total > this.end) break; // header or body incomplete
      at += total;
    }
    this.passOn(at);
    if (this.start === this.end) return;
    const total = this.frameBytes(this.start);
    if (typeof total === 'number' && total > BIG_FRAME && this.cur === this.slab) {
      const own = Buffer.allocUnsafe(total);
      this.slab.copy(own, 0, this.start, this.end);
      this.cur = own;
      this.end -= this.start;
      this.start = 0;
    }
  }

  /**
   * The length, header included, of the frame that starts at cur[at]; null if
   * its header is not all read yet; undefined if it cannot be a frame we pass whole.
   */
  private frameBytes(at: number): number | null | undefined {
    const have = this.end - at;
    if (have < 2) return null;
    const b0 = this.cur[at]!;
    const b1 = this.cur[at + 1]!;
    // RSV bits set or a masked frame: not what a server sends; ws will say so
    if ((b0 & 0x70) !== 0 || (b1 & 0x80) !== 0) return undefined;
    const len7 = b1 & 0x7f;
    let header = 2;
    let len = len7;
    if (len7 === 126) {
      header = 4;
      if (have < header) return null;
      len = this.cur.readUInt16BE(at + 2);
    } else if (len7 === 127) {
      header = 10;
      if (have < header) return null;
      if (this.cur.readUInt32BE(at + 2) !== 0) return undefined;
      len = this.cur.readUInt32BE(at + 6);
    }
    return len > this.maxFrame ? undefined : header + len;
  }

  /** Keeps next() non-empty: back to the slab after a big frame, the slab's unread bytes moved to its front. */
  private makeRoom(): void {
    if (this.cur !== this.slab) {
      if (this.start < this.cur.length) return; // the big frame is still coming
      this.cur = this.slab;
      this.start = this.end = 0;
      return;
    }
    if (this.start === this.end) {
      this.start = this.end = 0;
    } else if (this.start > 0 && this.slab.length - this.end < BIG_FRAME) {
      this.slab.copyWithin(0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
    }
    if (this.end === this.slab.length) {
      // cannot happen (frames mode moves anything over BIG_FRAME out, http mode gives up past MAX_HTTP_HEAD); if it did, pass all on from now
      this.mode = 'raw';
      this.passOn(this.end);
      this.start = this.end = 0;
    }
  }
}

/**
 * For ws's `createConnection` (ws:// URLs): a TCP connection whose reads go
 * through WholeFrames and reach ws (and the HTTP upgrade before it) as
 * 'data' events.
 */
export function wholeFrameConnection(maxFrame: number): (options: NetConnectOpts & { socketPath?: string }) => Socket {
  return (options) => {
    let socket: Socket | null = null;
    const frames = new WholeFrames((bytes) => socket!.emit('data', bytes), maxFrame);
    // as ws's own netConnect: `path` holds the URL's path here, and would make net open a Unix socket
    const opts = { ...options, path: options.socketPath, onread: { buffer: () => frames.next(), callback: (n: number): boolean => { frames.read(n); return true; } } };
    socket = connect(opts as unknown as NetConnectOpts);
    return socket;
  };
}
