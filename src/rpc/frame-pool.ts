// Buffers for big request frames (chunk puts), used again once ws has written
// them. A put encodes the chunk into one frame per replica: three fresh 1 MiB
// buffers per chunk, each page of them faulted in as the chunk is copied there
// (12% of the mount's JS thread in a big write) and each one external memory
// that brings the next major GC closer.
//
// One size at a time: the largest asked for so far (rounded up to 64 KiB);
// at most `keep` buffers are kept, so the pool holds at most keep × that size.
export class FramePool {
  private size = 0;
  private readonly free: Buffer[] = [];

  constructor(private readonly keep = 8) {}

  /** A buffer of at least n bytes: a kept one, or a new one. */
  take(n: number): Buffer {
    if (n > this.size) {
      this.size = Math.ceil(n / 65_536) * 65_536;
      this.free.length = 0;
    }
    return this.free.pop() ?? Buffer.allocUnsafe(this.size);
  }

  /** `b`, from take(), is no longer used by anyone. */
  give(b: Buffer): void {
    if (b.length === this.size && this.free.length < this.keep && !this.free.includes(b)) this.free.push(b);
  }

  get kept(): number {
    return this.free.length;
  }
}
