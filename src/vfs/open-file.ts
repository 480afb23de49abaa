// One open file in this mount: its write-back pieces, uploads in flight and
// extent changes not yet published. Shared by every handle of the inode.
//
// The file's bytes are extents over immutable chunks (meta/extents.ts). A
// write copies its bytes into a piece of memory and lays a span over the
// slot's list; it never reads or rewrites what it did not touch. Pieces are
// uploaded in the background: a piece that fills a whole slot becomes a chunk
// of its own (so identical whole chunks are stored once); small pieces are
// packed together into one chunk. When an upload lands, the parts of its
// pieces that are still newest become ops (overlay an extent), queued in
// order with truncation cuts; flush/fsync/release upload the rest, wait, and
// publish the ops page by page, then the inode. Any upload failure is kept
// and reported by the next flush/fsync as EIO: never dropped. Small files keep
// their bytes inline in the inode and never touch the chunk space.
//
// Reads assemble the newest spans: bytes still in memory, whole chunks from
// the cache (sequential reads fetch whole chunks ahead of the reader), or only
// the 64 KiB blocks that hold the range, each verified on its own.
import type { CallOpts, ChunkSpace } from '../keyspace/types.js';
import type { ChunkId } from '../util/ids.js';
import type { Logger } from '../util/log.js';
import { BLOCK_BYTES } from '../util/hash.js';
import { toQfsError } from '../util/errors.js';
import { FsError } from '../meta/errors.js';
import { LocksLostError } from '../meta/locks.js';
import type { FsMeta } from '../meta/fs-meta.js';
import {
  COMPACT_EXTENTS,
  MAP_PAGE_SLOTS,
  MAX_EXTENTS_PER_SLOT,
  cutAt,
  firstEndingAfter,
  overlay,
  spansIn,
  type Extent,
  type MapPage,
  type SlotOp,
  type Span,
} from '../meta/extents.js';
import { nowTimespec, type Inode } from '../meta/types.js';
import type { ByteLru } from './lru.js';

export const INLINE_MAX = 16 * 1024;
/** Chunks fetched ahead of a sequential reader at most (8 MiB with 1 MiB chunks). */
const READ_AHEAD_MAX = 8;
/**
 * How far from the end of the last read a read still counts as sequential. The
 * kernel's read-ahead sends several requests at once (with libfuse 3, 1 MiB each),
 * from several FUSE threads, and they reach the vfs in any order: an exact match
 * took the second of two requests in flight for a seek and restarted the read-ahead.
 */
const SEQUENTIAL_SLACK = 4 * 1024 * 1024;
/** Background compaction waits until the file has seen no read or write here for this long. */
export const COMPACT_IDLE_MS = 1000;

/** What the mount lends an open file for work in the background. */
export interface Background {
  /** Hands over a promise the mount waits for (or stops) at unmount. */
  track(work: Promise<void>): void;
  /** True once the mount is going away: queued work is dropped. */
  stopped(): boolean;
  /** A read or write of the inode on this mount, through any open file. */
  touch(ino: number): void;
  /** When the inode was last read or written on this mount (ms; 0: not lately). */
  lastIo(ino: number): number;
  /**
   * Asked before each publish: may it go, and under which deadline (a file
   * this mount holds locks on: LockService.publishGate). Throwing
   * LocksLostError drops the unpublished changes; any other error keeps them.
   */
  publishGate?(ino: number): Promise<CallOpts | undefined>;
}

export interface WriteBudget {
  /** Bytes of pieces not yet uploaded or uploading, across the mount. */
  used: number;
  readonly max: number;
  /** Uploads in flight across the mount. */
  uploads: number;
  readonly maxUploads: number;
  waiters: Array<() => void>;
}

/** Bytes written by this mount and not yet stored in a chunk: buf[base, base + used). */
interface Piece {
  slot: number;
  buf: Buffer;
  base: number;
  used: number;
  /** Most bytes it may grow to (a piece of its own). */
  cap: number;
  /** The pack it lives in (small writes), or null for a piece of its own. */
  pack: Pack | null;
  /** Being uploaded: its bytes must not change any more. */
  uploading: boolean;
}

/** Small writes of a file packed into one buffer, uploaded as one chunk. */
interface Pack {
  buf: Buffer;
  used: number;
  pieces: Piece[];
}

type Src = ChunkId | Piece;
type LocalSpan = Span<Src>;

export class OpenFile {
  inode: Inode;
  handles = 0;
  /** Any change not yet published (writes, truncate). */
  dirty = false;
  /** Slots this mount changed: the newest spans, over the published extents. */
  private readonly local = new Map<number, LocalSpan[]>();
  /** Per slot, the changes to publish, in order. */
  private readonly ops = new Map<number, SlotOp[]>();
  /** Pieces of their own not yet uploading. */
  private readonly pieces = new Set<Piece>();
  /** The pack small writes go into now. */
  private pack: Pack | null = null;
  /** Packs whose upload failed: uploaded again by the next flush. */
  private readonly failedPacks = new Set<Pack>();
  private readonly inflight = new Set<Promise<void>>();
  /** Published pages as last read or committed. */
  private readonly maps = new Map<number, MapPage>();
  private readonly mapLoads = new Map<number, Promise<MapPage>>();
  private error: Error | null = null;
  /** When the oldest uploaded-but-unpublished chunk landed (gc spares unreferenced chunks only for its grace period). */
  private pendingSince: number | null = null;
  private publishing = false;
  private lastReadEnd = -1;
  private lastWriteEnd = -1;
  /** Bytes read sequentially in a row: the read-ahead grows with them (a chunk per MiB), up to READ_AHEAD_MAX chunks. */
  private sequentialBytes = 0;
  private aheadUntil = 0;
  private readonly fetching = new Map<string, Promise<Buffer>>();
  /** Bumped by every change, so a flush knows whether more came in while it published. */
  private version = 0;
  private compacting: Promise<void> = Promise.resolve();
  private readonly compactQueued = new Set<number>();
  private readonly cs: number;

  constructor(
    inode: Inode,
    private readonly meta: FsMeta,
    private readonly chunks: ChunkSpace,
    private readonly cache: ByteLru<string, Buffer>,
    private readonly budget: WriteBudget,
    private readonly log: Logger,
    private readonly background: Background = { track: () => {}, stopped: () => false, touch: () => {}, lastIo: () => 0 },
  ) {
    this.inode = inode;
    this.cs = meta.sb.chunkSize;
  }

  /** Close-to-open: a fresh inode and no cached map pages, unless this mount has unpublished changes. */
  revalidate(inode: Inode): void {
    if (this.dirty) return;
    this.inode = inode;
    this.maps.clear();
    this.local.clear();
    this.mapless = false;
    this.aheadUntil = 0;
  }

  /**
   * This mount has just created the file: it has no chunk-map pages yet, so
   * none is read (a create used to pay a quorum read for page 0 at its first
   * write). Cleared by the next revalidation, like any cached page.
   */
  private mapless = false;

  markNew(): void {
    if (this.inode.size === 0 && this.inode.chunks === 0) this.mapless = true;
  }

  private page(page: number): MapPage | Promise<MapPage> {
    const m = this.maps.get(page);
    if (m) return m;
    if (this.mapless) {
      const empty: MapPage = new Map();
      this.maps.set(page, empty);
      return empty;
    }
    let p = this.mapLoads.get(page);
    if (!p) {
      p = this.meta.readMapPage(this.inode.ino, page).then(
        (loaded) => {
          this.mapLoads.delete(page);
          // a commit that landed meanwhile is newer than what was read
          const now = this.maps.get(page) ?? loaded;
          this.maps.set(page, now);
          return now;
        },
        (err: unknown) => {
          this.mapLoads.delete(page);
          throw err;
        },
      );
      this.mapLoads.set(page, p);
    }
    return p;
  }

  /** The newest spans of a slot as this mount sees them. */
  private async spans(slot: number): Promise<readonly LocalSpan[]> {
    const l = this.local.get(slot);
    if (l) return l;
    const p = await this.page(Math.floor(slot / MAP_PAGE_SLOTS));
    return this.local.get(slot) ?? p.get(slot % MAP_PAGE_SLOTS) ?? [];
  }

  /** The slot's local list, made from the published one on first change. */
  private async localSpans(slot: number): Promise<void> {
    if (this.local.has(slot)) return;
    const base = await this.spans(slot);
    if (!this.local.has(slot)) this.local.set(slot, base.slice());
  }

  // ---- chunk bytes

  private shared(key: string, load: () => Promise<Buffer>): Promise<Buffer> {
    let p = this.fetching.get(key);
    if (!p) {
      p = load().then(
        (bytes) => {
          this.fetching.delete(key);
          return bytes;
        },
        (err: unknown) => {
          this.fetching.delete(key);
          throw err;
        },
      );
      this.fetching.set(key, p);
    }
    return p;
  }

  /** A whole chunk from the cache, or fetched once (a read during the read-ahead's fetch waits for it). */
  private fetchChunk(id: ChunkId): Promise<Buffer> {
    const hit = this.cache.get(id);
    if (hit) return Promise.resolve(hit);
    return this.shared(id, async () => {
      const bytes = await this.chunks.getChunk(id);
      this.cache.set(id, bytes);
      return bytes;
    });
  }

  /** Bytes [off, off+len) of a chunk: from a cached whole chunk, or only the verified blocks that hold them. */
  private async chunkRange(id: ChunkId, off: number, len: number): Promise<Buffer> {
    const whole = this.cache.get(id) ?? (await this.fetching.get(id)?.catch(() => undefined));
    if (whole) return whole.subarray(off, off + len);
    const first = Math.floor(off / BLOCK_BYTES);
    const last = Math.floor((off + len - 1) / BLOCK_BYTES);
    const blocks: Buffer[] = [];
    let missFrom = -1;
    const fetchRun = async (from: number, to: number): Promise<void> => {
      const bytes = await this.shared(`${id}:${from}:${to}`, () => this.chunks.getChunk(id, { offset: from * BLOCK_BYTES, length: (to - from) * BLOCK_BYTES }));
      for (let b = from; b < to; b++) {
        const piece = bytes.subarray((b - from) * BLOCK_BYTES, (b - from + 1) * BLOCK_BYTES);
        this.cache.set(`${id}:${b}`, piece);
        blocks[b - first] = piece;
      }
    };
    const runs: Promise<void>[] = [];
    for (let b = first; b <= last + 1; b++) {
      const hit = b <= last ? this.cache.get(`${id}:${b}`) : undefined;
      if (hit) blocks[b - first] = hit;
      if (b <= last && !hit) {
        if (missFrom < 0) missFrom = b;
      } else if (missFrom >= 0) {
        runs.push(fetchRun(missFrom, b));
        missFrom = -1;
      }
    }
    await Promise.all(runs);
    const joined = blocks.length === 1 ? blocks[0]! : Buffer.concat(blocks);
    const from = off - first * BLOCK_BYTES;
    return joined.subarray(from, from + len);
  }

  // ---- reads

  async read(pos: number, len: number, into?: Buffer): Promise<Buffer> {
    const size = this.inode.size;
    if (pos >= size || len <= 0) return Buffer.alloc(0);
    const end = Math.min(size, pos + len);
    // Every byte of out is written below (readSpans zeroes the holes), so FUSE's buffer is not cleared first.
    const out = into !== undefined && into.length >= end - pos ? into.subarray(0, end - pos) : Buffer.allocUnsafe(end - pos);
    if (this.inode.inline) {
      out.fill(0);
      this.inode.inline.copy(out, 0, pos, Math.min(end, this.inode.inline.length));
      return out;
    }
    this.background.touch(this.inode.ino);
    const sequential = pos === 0 || (this.lastReadEnd >= 0 && Math.abs(pos - this.lastReadEnd) <= SEQUENTIAL_SLACK);
    this.lastReadEnd = end; // at once: a request that arrives while this one waits compares with it
    const first = Math.floor(pos / this.cs);
    const last = Math.floor((end - 1) / this.cs);
    const work: Promise<void>[] = [];
    for (let slot = first; slot <= last; slot++) {
      const base = slot * this.cs;
      const from = Math.max(pos, base) - base;
      const to = Math.min(end, base + this.cs) - base;
      work.push(this.readSlot(slot, from, to, out, base - pos, sequential));
    }
    await Promise.all(work);
    // Sequential reading: fetch the next chunks before they are asked for, more
    // of them the longer the reader keeps going (a cold chunk is a round trip to a
    // node and a disk read: several in flight keep both busy).
    if (sequential) {
      this.sequentialBytes += end - pos;
      this.readAhead(last + 1, Math.min(READ_AHEAD_MAX, 2 + Math.floor(this.sequentialBytes / (1024 * 1024))));
    } else {
      this.sequentialBytes = 0;
      this.aheadUntil = 0;
    }
    return out;
  }

  /** Copies slot bytes [from, to) to out at (slot offset + shift). */
  private async readSlot(slot: number, from: number, to: number, out: Buffer, shift: number, sequential: boolean): Promise<void> {
    await this.readSpans(await this.spans(slot), from, to, out, shift, sequential);
  }

  /** Copies bytes [from, to) of the slot `list` describes to out at (slot offset + shift); holes become zeros. */
  private async readSpans(list: readonly LocalSpan[], from: number, to: number, out: Buffer, shift: number, sequential: boolean): Promise<void> {
    const whole = sequential && list.length === 1 && list[0]!.off === 0;
    const spans = spansIn(list, from, to - from);
    let covered = from;
    for (const s of spans) {
      if (s.start > covered) out.fill(0, covered + shift, s.start + shift);
      covered = Math.max(covered, s.start + s.len);
    }
    if (covered < to) out.fill(0, covered + shift, to + shift);
    await Promise.all(
      spans.map(async (s) => {
        const a = Math.max(from, s.start);
        const b = Math.min(to, s.start + s.len);
        const srcOff = s.off + (a - s.start);
        if (typeof s.src !== 'string') {
          s.src.buf.copy(out, a + shift, srcOff, srcOff + (b - a));
          return;
        }
        const bytes = whole ? (await this.fetchChunk(s.src)).subarray(srcOff, srcOff + (b - a)) : await this.chunkRange(s.src, srcOff, b - a);
        if (bytes.length < b - a) throw new FsError('EIO', `chunk ${s.src} is shorter than its extent`);
        bytes.copy(out, a + shift);
      }),
    );
  }

  private readAhead(from: number, count: number): void {
    // chunks already asked for by an earlier read of this run are not asked again
    const start = Math.max(from, this.aheadUntil);
    this.aheadUntil = Math.max(this.aheadUntil, from + count);
    for (let slot = start; slot < from + count && slot * this.cs < this.inode.size; slot++) {
      void (async () => {
        const list = await this.spans(slot);
        const only = list.length === 1 ? list[0]! : null;
        if (only && only.off === 0 && typeof only.src === 'string' && !this.cache.has(only.src) && !this.fetching.has(only.src)) await this.fetchChunk(only.src);
      })().catch(() => {});
    }
  }

  // ---- writes

  private async waitBudget(extra: number): Promise<void> {
    while (this.budget.used + extra > this.budget.max && this.budget.used > 0) {
      // Push out our own pieces first, then wait for any upload to finish.
      if (this.unstored()) this.uploadAll();
      await new Promise<void>((r) => this.budget.waiters.push(r));
    }
  }

  async write(pos: number, data: Buffer): Promise<number> {
    if (this.error) throw this.takeError();
    if (data.length === 0) return 0;
    const end = pos + data.length;
    this.dirty = true;
    this.version++;
    this.background.touch(this.inode.ino);
    if (this.inode.inline !== null || (this.inode.size === 0 && this.ops.size === 0 && !this.unstored() && (await this.hasNoExtents()))) {
      if (end <= INLINE_MAX) {
        const cur = this.inode.inline ?? Buffer.alloc(0);
        const next = Buffer.alloc(Math.max(cur.length, end, this.inode.size));
        cur.copy(next);
        data.copy(next, pos);
        this.inode.inline = next;
        this.touchWrite(end);
        this.changed();
        return data.length;
      }
      await this.convertInline();
    }
    if (pos > this.inode.size) await this.cutStale(this.inode.size);
    let done = 0;
    while (done < data.length) {
      const at = pos + done;
      const slot = Math.floor(at / this.cs);
      const off = at - slot * this.cs;
      const n = Math.min(this.cs - off, data.length - done);
      // sequential: continuing the last write, at the file's start, or a large aligned write
      await this.writeSlot(slot, off, data.subarray(done, done + n), at === this.lastWriteEnd || at === 0 || (off === 0 && n >= BLOCK_BYTES));
      done += n;
    }
    this.lastWriteEnd = end;
    this.touchWrite(end);
    this.changed();
    return data.length;
  }

  /**
   * Marks a change made: the next publish carries it. Also called at the end of
   * a write or truncate that awaited on its way, since a publish that ran in
   * between took the state before the change's last steps (the size) and, the
   * version it saw being already the new one, would have cleared `dirty`: the
   * rest of the change was then never published (a CI run caught a truncate
   * lost that way).
   */
  private changed(): void {
    this.dirty = true;
    this.version++;
  }

  private async writeSlot(slot: number, off: number, data: Buffer, sequential: boolean): Promise<void> {
    if (!this.local.has(slot)) await this.localSpans(slot);
    if (this.writeInPlace(slot, off, data)) return;
    // A new piece: a sequential writer's has room to grow to the slot's end
    // and becomes a chunk of its own; a small write goes into the pack.
    if (sequential) {
      const cap = this.cs - off;
      if (this.budget.used + cap > this.budget.max) await this.waitBudget(cap);
      if (!this.local.has(slot)) await this.localSpans(slot);
      const p: Piece = { slot, buf: Buffer.allocUnsafe(cap), base: 0, used: data.length, cap, pack: null, uploading: false };
      data.copy(p.buf);
      this.budget.used += cap;
      this.pieces.add(p);
      this.lay(slot, { start: off, len: data.length, src: p, off: 0 });
      if (p.used === p.cap) this.upload(p);
      return;
    }
    let pack = this.pack;
    if (!pack || pack.used + data.length > pack.buf.length) {
      if (pack) this.sealPack();
      if (this.budget.used + this.cs > this.budget.max) await this.waitBudget(this.cs);
      if (!this.local.has(slot)) await this.localSpans(slot);
      if (this.writeInPlace(slot, off, data)) return; // another write made room meanwhile
      pack = this.pack;
      if (!pack || pack.used + data.length > pack.buf.length) {
        if (pack) this.sealPack();
        pack = this.pack = { buf: Buffer.allocUnsafe(Math.max(this.cs, data.length)), used: 0, pieces: [] };
        this.budget.used += pack.buf.length;
      }
    }
    const p: Piece = { slot, buf: pack.buf, base: pack.used, used: data.length, cap: data.length, pack, uploading: false };
    data.copy(pack.buf, pack.used);
    pack.used += data.length;
    pack.pieces.push(p);
    this.lay(slot, { start: off, len: data.length, src: p, off: p.base });
    if (pack.used === pack.buf.length) this.sealPack();
  }

  /**
   * A write into bytes a piece already holds, or at the end of the piece that
   * ends where it starts (with room left): copied in place. False otherwise.
   */
  private writeInPlace(slot: number, off: number, data: Buffer): boolean {
    const list = this.local.get(slot)!;
    const [s] = spansIn(list, Math.max(0, off - 1), 1);
    if (!s || typeof s.src === 'string' || s.src.uploading) return false;
    const p = s.src;
    if (s.start <= off && off + data.length <= s.start + s.len) {
      data.copy(p.buf, s.off + (off - s.start));
      return true;
    }
    // appends: a piece of its own with room, or the last piece of the pack
    const tail = p.base + p.used;
    if (s.start + s.len !== off || s.off + s.len !== tail) return false;
    if (p.pack ? !(p.pack === this.pack && p.pack.used === tail && tail + data.length <= p.buf.length) : p.used + data.length > p.cap) return false;
    data.copy(p.buf, tail);
    p.used += data.length;
    if (p.pack) p.pack.used += data.length;
    this.lay(slot, { start: off, len: data.length, src: p, off: tail });
    if (!p.pack && p.used === p.cap) this.upload(p);
    else if (p.pack && p.pack.used === p.buf.length) this.sealPack();
    return true;
  }

  /** Lays a span over the slot's local list, in place (the list is this file's own). */
  private lay(slot: number, span: LocalSpan): void {
    const list = this.local.get(slot)!;
    const i = firstEndingAfter(list, span.start);
    let j = i;
    const e = span.start + span.len;
    while (j < list.length && list[j]!.start < e) j++;
    if (i === j && i === list.length) {
      const prev = list[i - 1];
      if (prev && prev.start + prev.len === span.start && prev.src === span.src && prev.off + prev.len === span.off) prev.len += span.len;
      else list.push(span);
      return;
    }
    // the general case: rebuild the few spans around i..j (overlay is the reference rule)
    const lo = Math.max(0, i - 1);
    const hi = Math.min(list.length, j + 1);
    const around = overlay(list.slice(lo, hi), span);
    list.splice(lo, hi - lo, ...around);
  }

  /** Written bytes not stored in a chunk yet (pieces, the pack, packs to upload again). */
  private unstored(): boolean {
    return this.pieces.size > 0 || (this.pack !== null && this.pack.used > 0) || this.failedPacks.size > 0;
  }

  private async hasNoExtents(): Promise<boolean> {
    return this.inode.size === 0 && (await this.spans(0)).length === 0;
  }

  private async convertInline(): Promise<void> {
    const inline = this.inode.inline;
    this.inode.inline = null;
    if (inline && inline.length > 0) await this.writeSlot(0, 0, inline, true);
  }

  /**
   * The file grows past `oldSize`: whatever an interrupted publish left mapped
   * past the old end must read as zeros, not come back.
   */
  private async cutStale(oldSize: number): Promise<void> {
    const slot = Math.floor(oldSize / this.cs);
    const at = oldSize - slot * this.cs;
    const list = await this.spans(slot);
    if (list.length === 0 || list[list.length - 1]!.start + list[list.length - 1]!.len <= at) return;
    await this.localSpans(slot);
    this.local.set(slot, cutAt(this.local.get(slot)!, at));
    this.pushOp(slot, { cut: at });
  }

  private touchWrite(end: number): void {
    if (end > this.inode.size) this.inode.size = end;
    const now = nowTimespec();
    this.inode.mtime = now;
    this.inode.ctime = now;
  }

  private pushOp(slot: number, op: SlotOp): void {
    let l = this.ops.get(slot);
    if (!l) this.ops.set(slot, (l = []));
    l.push(op);
  }

  /**
   * Publishes a file that has held uploaded chunks unpublished for `maxAgeMs`
   * (a file written for hours without fsync or close), so that they are
   * referenced long before gc's grace period ends. A failure is kept for the
   * next flush/fsync/close to report, as any upload failure is.
   */
  async publishIfOld(maxAgeMs: number): Promise<boolean> {
    if (this.pendingSince === null || Date.now() - this.pendingSince < maxAgeMs || this.error || this.publishing) return false;
    this.publishing = true;
    try {
      await this.flush();
    } catch (err) {
      this.error ??= err as Error;
    } finally {
      this.publishing = false;
    }
    return true;
  }

  private uploadAll(): void {
    if (this.pack && this.pack.used > 0) this.sealPack();
    for (const p of [...this.pieces]) this.upload(p);
  }

  /** The current pack takes no more writes and is uploaded. */
  private sealPack(): void {
    const pack = this.pack;
    if (!pack) return;
    this.pack = null;
    if (pack.used === 0) {
      this.budget.used -= pack.buf.length;
      for (const w of this.budget.waiters.splice(0)) w();
      return;
    }
    this.store(pack.pieces, pack.buf.subarray(0, pack.used), 0, pack.buf.length);
  }

  /** Uploads a piece of its own. */
  private upload(p: Piece): void {
    if (p.pack || p.uploading) return;
    this.store([p], p.buf.subarray(0, p.used), 0, p.cap);
  }

  /**
   * Stores `bytes` (piece bytes from offset `from` of their buffer) as one
   * chunk in the background. When it lands, the parts of the pieces that are
   * still the newest bytes of their slots point at the chunk, and become ops
   * to publish. `reserved` budget bytes are given back at the end.
   */
  private store(pieces: Piece[], bytes: Buffer, from: number, reserved: number): void {
    for (const p of pieces) {
      this.pieces.delete(p);
      p.uploading = true;
    }
    const release = (): void => {
      this.budget.used -= reserved;
      for (const w of this.budget.waiters.splice(0)) w();
    };
    this.budget.uploads++;
    const run = (async () => {
      try {
        const id = await this.chunks.putChunk(bytes);
        if (bytes.length === this.cs && pieces.length === 1) this.cache.set(id, bytes);
        this.landed(pieces, id, from);
      } catch (err) {
        // Keep the bytes: the next flush uploads them again, and reports this failure.
        this.error ??= err as Error;
        this.log.warn({ ino: this.inode.ino, err: toQfsError(err).message }, 'chunk upload failed');
        const again: Pack | null = pieces[0]?.pack ? { buf: pieces[0].buf, used: bytes.length, pieces } : null;
        for (const p of pieces) {
          p.uploading = false;
          if (again) p.pack = again;
          else this.pieces.add(p);
        }
        if (again) this.failedPacks.add(again);
        reserved = 0; // still held by the pieces
      } finally {
        this.budget.uploads--;
        release();
      }
    })();
    this.inflight.add(run);
    void run.finally(() => this.inflight.delete(run));
  }

  private landed(pieces: Piece[], id: ChunkId, from: number): void {
    const bySlot = new Map<number, Set<Piece>>();
    for (const p of pieces) {
      let set = bySlot.get(p.slot);
      if (!set) bySlot.set(p.slot, (set = new Set()));
      set.add(p);
    }
    for (const [slot, set] of bySlot) {
      const list = this.local.get(slot);
      if (!list) continue;
      for (let k = 0; k < list.length; k++) {
        const s = list[k]!;
        if (typeof s.src === 'string' || !set.has(s.src)) continue;
        const x: Extent = { start: s.start, len: s.len, src: id, off: s.off - from };
        list[k] = x;
        this.pushOp(slot, x);
      }
    }
    this.pendingSince ??= Date.now();
  }

  private takeError(): FsError {
    const e = this.error;
    this.error = null;
    if (e instanceof FsError) return e;
    const q = toQfsError(e);
    return new FsError(q.code === 'no_space' ? 'ENOSPC' : 'EIO', q.message);
  }

  async truncate(size: number): Promise<void> {
    if (this.error) throw this.takeError();
    this.dirty = true;
    this.version++;
    const old = this.inode.size;
    if (this.inode.inline !== null || (old === 0 && !this.unstored() && this.ops.size === 0 && (await this.hasNoExtents()))) {
      if (size <= INLINE_MAX) {
        const next = Buffer.alloc(size);
        (this.inode.inline ?? Buffer.alloc(0)).copy(next, 0, 0, size);
        this.inode.inline = next;
        this.inode.size = size;
        this.touchTruncate();
        this.changed();
        return;
      }
      await this.convertInline();
    }
    if (size < old) {
      const keep = Math.ceil(size / this.cs); // slots [0, keep) stay
      for (let slot = keep; slot < Math.ceil(old / this.cs); slot++) {
        this.local.set(slot, []);
        this.pushOp(slot, { cut: 0 });
      }
      const tail = size % this.cs;
      if (tail !== 0) {
        await this.localSpans(keep - 1);
        this.local.set(keep - 1, cutAt(this.local.get(keep - 1)!, tail));
        this.pushOp(keep - 1, { cut: tail });
      }
    } else if (size > old) {
      await this.cutStale(old);
    }
    this.inode.size = size;
    this.touchTruncate();
    this.changed();
  }

  private touchTruncate(): void {
    const now = nowTimespec();
    this.inode.mtime = now;
    this.inode.ctime = now;
  }

  private async settle(): Promise<void> {
    for (const pack of this.failedPacks) {
      this.failedPacks.delete(pack);
      this.store(pack.pieces, pack.buf.subarray(0, pack.used), 0, pack.buf.length);
    }
    this.uploadAll();
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
    if (this.error) throw this.takeError();
  }

  /** Uploads everything, waits, publishes. Throws EIO/ENOSPC if any byte could not be stored. */
  async flush(): Promise<void> {
    if (!this.dirty && !this.error) return;
    await this.settle();
    // a write raced the flush: upload it too (it is published now or by the next flush)
    if (this.unstored()) await this.settle();
    await this.boundExtents();
    let op: CallOpts | undefined;
    try {
      op = await this.background.publishGate?.(this.inode.ino);
    } catch (err) {
      if (err instanceof LocksLostError) {
        this.log.error({ ino: this.inode.ino }, 'dropping what this mount wrote to a file whose locks were lost');
        this.discard();
      }
      throw err;
    }
    const taken = new Map(this.ops);
    this.ops.clear();
    const changes = new Map<number, Map<number, SlotOp[]>>();
    for (const [slot, ops] of taken) {
      const page = Math.floor(slot / MAP_PAGE_SLOTS);
      let c = changes.get(page);
      if (!c) changes.set(page, (c = new Map()));
      c.set(slot % MAP_PAGE_SLOTS, ops);
    }
    const local = this.inode;
    const version = this.version;
    try {
      const { inode: published, pages } = await this.meta.commitFile(local.ino, changes, (i) => {
        i.size = local.size;
        i.mtime = local.mtime;
        i.ctime = local.ctime;
        i.atime = local.atime;
        i.inline = local.inline;
        // attribute changes made while this mount wrote the file (not the link count: that is meta's)
        i.mode = local.mode;
        i.uid = local.uid;
        i.gid = local.gid;
        i.xattrs = local.xattrs;
      }, op);
      for (const [page, p] of pages) this.maps.set(page, p);
      for (const slot of taken.keys()) {
        // published as this mount saw it, unless more came in meanwhile
        const l = this.local.get(slot);
        if (!this.ops.has(slot) && l && l.every((s) => typeof s.src === 'string')) this.local.delete(slot);
      }
      this.inode = { ...published, size: local.size, inline: local.inline, mtime: local.mtime, ctime: local.ctime, mode: local.mode, uid: local.uid, gid: local.gid, atime: local.atime, xattrs: local.xattrs };
      this.dirty = this.version !== version || this.unstored() || this.ops.size > 0;
      this.pendingSince = this.ops.size > 0 ? Date.now() : null;
      for (const [page, p] of pages) {
        for (const [s, list] of p) if (list.length > COMPACT_EXTENTS) this.queueCompaction(page * MAP_PAGE_SLOTS + s);
      }
    } catch (err) {
      // Not published: keep the changes for the next attempt, before any made since.
      for (const [slot, ops] of taken) this.ops.set(slot, ops.concat(this.ops.get(slot) ?? []));
      if (err instanceof FsError) throw err;
      const q = toQfsError(err);
      throw new FsError(q.code === 'no_space' ? 'ENOSPC' : 'EIO', q.message);
    }
  }

  /**
   * Before publishing: a slot whose list grew past MAX_EXTENTS_PER_SLOT is
   * rewritten as one chunk here and now, so that no publish of this mount
   * leaves more than that many for readers to search.
   */
  private async boundExtents(): Promise<void> {
    for (const [slot, list] of [...this.local]) {
      if (list.length <= MAX_EXTENTS_PER_SLOT || !this.ops.has(slot) || list.some((s) => typeof s.src !== 'string')) continue;
      const version = this.version;
      const x = await this.compactedSlot(list as Extent[]);
      // a write that came in meanwhile is newer than the compacted bytes: leave the slot for the next flush
      if (!x || this.version !== version || this.local.get(slot) !== list) continue;
      this.local.set(slot, [x]);
      this.ops.set(slot, [{ cut: 0 }, x]);
    }
  }

  /** The bytes a slot's extents cover, stored as one chunk; one extent over it. */
  private async compactedSlot(list: readonly Extent[]): Promise<Extent | null> {
    if (list.length === 0) return null;
    const from = list[0]!.start;
    const last = list[list.length - 1]!;
    const to = last.start + last.len;
    const bytes = Buffer.alloc(to - from);
    // from `list` itself: the commit replaces exactly that list, so its bytes are what must be kept
    await this.readSpans(list, from, to, bytes, -from, false);
    const id = await this.chunks.putChunk(bytes);
    return { start: from, len: to - from, src: id, off: 0 };
  }

  private queueCompaction(slot: number): void {
    if (this.compactQueued.has(slot)) return;
    this.compactQueued.add(slot);
    this.compacting = this.compacting.then(async () => {
      try {
        await this.idle();
        this.compactQueued.delete(slot);
        if (this.background.stopped()) return;
        await this.compact(slot);
      } catch (err) {
        this.log.debug({ ino: this.inode.ino, slot, err: toQfsError(err).message }, 'compaction skipped');
      }
    });
    this.background.track(this.compacting);
  }

  /**
   * Resolves once this mount has not read or written the file for
   * COMPACT_IDLE_MS (or the mount is going away): compaction is a debt paid
   * when the file is quiet, not on top of a random-I/O workload; the bound of
   * MAX_EXTENTS_PER_SLOT is kept at publish time whatever happens here.
   */
  private async idle(): Promise<void> {
    for (;;) {
      const wait = this.background.lastIo(this.inode.ino) + COMPACT_IDLE_MS - Date.now();
      if (wait <= 0 || this.background.stopped()) return;
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  /**
   * Background compaction of a published slot: its bytes become one chunk,
   * committed only if the slot's extents are still the ones read (a write or
   * another compaction meanwhile wins; the slot is compacted another time).
   * A crash in between leaves an unreferenced chunk for gc, nothing else.
   */
  private async compact(slot: number): Promise<void> {
    if (this.local.has(slot) || this.inode.nlink === 0) return;
    // A file removed after its last close is not this object's to know of (only
    // open files hear of unlinks): ask. Compacting a removed fragmented 1 GiB
    // file read and rewrote all of it in the background for a minute.
    const now = await this.meta.getInode(this.inode.ino).catch((err: unknown) => {
      if (err instanceof FsError && err.errno === 'ENOENT') return null;
      throw err;
    });
    if (now === null || now.nlink === 0) {
      this.inode.nlink = 0; // the rest of the queue returns at once
      return;
    }
    const page = Math.floor(slot / MAP_PAGE_SLOTS);
    // read afresh: this object may be a closed file's, whose cached pages another open has moved past
    const list = (await this.meta.readMapPage(this.inode.ino, page)).get(slot % MAP_PAGE_SLOTS);
    if (!list || list.length <= COMPACT_EXTENTS) return;
    const x = await this.compactedSlot(list);
    if (!x) return;
    const replaced = await this.meta.replaceSlot(this.inode.ino, page, slot % MAP_PAGE_SLOTS, list, [x]);
    const p = this.maps.get(page);
    const cached = p?.get(slot % MAP_PAGE_SLOTS);
    if (replaced && p && cached && sameList(cached, list)) p.set(slot % MAP_PAGE_SLOTS, [x]);
  }

  /** An attribute (mode, owner, times, xattrs) changed locally: publish it with the data. */
  attrsChanged(): void {
    this.dirty = true;
    this.version++;
  }

  /** Drops pieces without publishing (the file was removed). */
  discard(): void {
    for (const p of this.pieces) this.budget.used -= p.cap;
    this.pieces.clear();
    if (this.pack) this.budget.used -= this.pack.buf.length;
    this.pack = null;
    for (const pack of this.failedPacks) this.budget.used -= pack.buf.length;
    this.failedPacks.clear();
    this.ops.clear();
    this.local.clear();
    this.pendingSince = null;
    this.dirty = false;
    for (const w of this.budget.waiters.splice(0)) w();
  }
}

function sameList(a: readonly Extent[], b: readonly Extent[]): boolean {
  return a.length === b.length && a.every((x, k) => x.start === b[k]!.start && x.len === b[k]!.len && x.src === b[k]!.src && x.off === b[k]!.off);
}
