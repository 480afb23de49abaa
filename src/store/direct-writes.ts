// Chunk files written, and read whole, with O_DIRECT, past the page cache.
//
// Why: a node writes every chunk it stores and syncs it at once. Through the
// page cache that is a copy of every byte into freshly allocated cache pages,
// which on this kind of VM cost a node about 2 CPU-seconds per GiB written
// (perf: copy_folio_from_iter_atomic, a third of a node's CPU during a big
// write), and the pages are then written back anyway by the sync. O_DIRECT
// hands the buffer to the device instead. The bytes must sit in memory
// aligned to the device's block size and the length must be a whole number of
// blocks; Node cannot align a Buffer, but a WebAssembly memory is mapped on a
// page boundary, so slots carved out of one at multiples of ALIGN are aligned.
// A chunk is copied into a slot (one memcpy, far cheaper than the kernel's
// copy into the cache), padded with zeros to a whole block, written, cut back
// to its length with ftruncate and synced. Filesystems without O_DIRECT
// (tmpfs before Linux 6.6) refuse the open with EINVAL: the store then writes through the
// cache as before, for the rest of its life.
//
// Whole-chunk reads (a sequential reader's) go direct too, into a slot, then
// one memcpy into the reply: through the cache a cold read allocated a page
// per 4 KiB and copied every byte out of it (perf: a node's pread was 10% of
// the machine's CPU during a cold 1 GiB read), and a chunk file is written
// direct, so the cache never held it anyway. Ranged reads (64 KiB blocks for
// random I/O) stay buffered: the cache is what serves a block read twice.
import { constants } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';

/** Alignment of memory, file offsets and lengths: a page, enough for 4 KiB-sector disks. */
export const ALIGN = 4096;
/** Slots are this big: a chunk of up to 1 MiB (quorumfs format's default) goes direct. */
const SLOT_BYTES = 1024 * 1024;
/** Chunk writes in flight at once that go direct; more wait for a slot (through the cache each costs more than the wait). */
const SLOTS = 16;
const WASM_PAGE = 64 * 1024;

// Node has WebAssembly; the TypeScript lib this project builds with does not declare it.
interface PageAlignedMemory {
  readonly buffer: ArrayBuffer;
}
const { Memory } = (globalThis as unknown as { WebAssembly: { Memory: new (size: { initial: number; maximum: number }) => PageAlignedMemory } }).WebAssembly;

export type DirectWriteResult = 'direct' | 'unsupported';

type OpenFile = (path: string, flags: number, mode: number) => Promise<FileHandle>;

export class DirectWrites {
  /** `openFile` is replaceable so that a test can play a filesystem without O_DIRECT. */
  constructor(private readonly openFile: OpenFile = open) {}

  private memory: PageAlignedMemory | null = null;
  private readonly free: number[] = [];
  private readonly waiting: Array<(slot: number) => void> = [];
  private supported = true;
  /** Chunk files written direct so far. */
  written = 0;
  /** Whole chunk files read direct so far. */
  read = 0;
  /** False once a filesystem refused an O_DIRECT read: later reads go through the cache. */
  private readsSupported = true;

  /** False once a filesystem refused O_DIRECT: later writes go through the cache without trying. */
  get enabled(): boolean {
    return this.supported;
  }

  /**
   * Writes `bytes` as a new file at `path` (which must not exist) and syncs it.
   * Returns 'unsupported' without leaving a file when this write cannot go
   * direct (too big, or the filesystem has no O_DIRECT); the caller then
   * writes through the cache. While every slot is busy it waits for one.
   */
  async writeNew(path: string, bytes: Buffer, mode: number): Promise<DirectWriteResult> {
    if (!this.supported || bytes.length > SLOT_BYTES || bytes.length === 0) return 'unsupported';
    const slot = await this.take();
    try {
      const padded = Math.ceil(bytes.length / ALIGN) * ALIGN;
      const view = Buffer.from(this.memory!.buffer, slot, padded);
      bytes.copy(view, 0);
      view.fill(0, bytes.length);
      let fh;
      try {
        fh = await this.openFile(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DIRECT, mode);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EINVAL') {
          this.supported = false;
          return 'unsupported';
        }
        throw err;
      }
      let refused = false;
      try {
        let done = 0;
        while (done < padded) {
          // Short writes stay aligned: the device writes whole blocks.
          const { bytesWritten } = await fh.write(view, done, padded - done, done);
          if (bytesWritten <= 0) throw new Error(`direct write of ${path} made no progress`);
          done += bytesWritten;
        }
        if (padded !== bytes.length) await fh.truncate(bytes.length);
        await fh.sync();
      } catch (err) {
        // A filesystem that takes O_DIRECT at open but wants another alignment.
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
        refused = true;
      } finally {
        await fh.close();
      }
      if (refused) {
        this.supported = false;
        await rm(path, { force: true });
        return 'unsupported';
      }
      this.written++;
      return 'direct';
    } finally {
      this.give(slot);
    }
  }

  /**
   * Reads the first `maxLength` bytes of the file at `path` (all of it when
   * shorter): opens it direct, learns its size, reads into a slot, then asks
   * `into(n)` once for where the n bytes go (a reply's tail). `short` when the
   * file ended before the size it had at the open. 'unsupported' when it
   * cannot go direct (empty, bigger than a slot, or the filesystem refuses);
   * the caller then reads through the cache, and `into` was not called.
   * Errors of the open (ENOENT) and of the reads are thrown as they are.
   */
  async readWhole(path: string, maxLength: number, into: (n: number) => Buffer): Promise<{ bytes: Buffer; short: boolean } | 'unsupported'> {
    if (!this.readsSupported) return 'unsupported';
    let fh;
    try {
      fh = await this.openFile(path, constants.O_RDONLY | constants.O_DIRECT, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EINVAL') {
        this.readsSupported = false;
        return 'unsupported';
      }
      throw err;
    }
    try {
      const n = Math.min((await fh.stat()).size, maxLength);
      // (a chunk size above a slot, from `format --chunk-size`, pays this open for nothing)
      if (n === 0 || n > SLOT_BYTES) return 'unsupported';
      const slot = await this.take();
      try {
        const padded = Math.ceil(n / ALIGN) * ALIGN;
        const view = Buffer.from(this.memory!.buffer, slot, padded);
        let done = 0;
        try {
          // Reads stay aligned: a short read ends at the end of the file (or a whole block).
          while (done < n) {
            const { bytesRead } = await fh.read(view, done, padded - done, done);
            if (bytesRead <= 0) break;
            done += bytesRead;
          }
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
          // Refused at once: this filesystem does not read direct. Refused after a short
          // read (a misaligned offset): only this read goes through the cache.
          if (done === 0) this.readsSupported = false;
          return 'unsupported';
        }
        const got = Math.min(done, n);
        const bytes = into(got);
        view.copy(bytes, 0, 0, got);
        this.read++;
        return { bytes, short: got < n };
      } finally {
        this.give(slot);
      }
    } finally {
      await fh.close();
    }
  }

  private give(slot: number): void {
    const next = this.waiting.shift();
    if (next) next(slot);
    else this.free.push(slot);
  }

  private take(): Promise<number> | number {
    if (this.memory === null) {
      const pages = (SLOTS * SLOT_BYTES) / WASM_PAGE;
      this.memory = new Memory({ initial: pages, maximum: pages });
      for (let i = SLOTS - 1; i >= 0; i--) this.free.push(i * SLOT_BYTES);
    }
    const slot = this.free.pop();
    if (slot !== undefined) return slot;
    return new Promise((resolve) => this.waiting.push(resolve));
  }
}
