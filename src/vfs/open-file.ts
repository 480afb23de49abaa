// One open file in this mount: its write-back buffers, uploads in flight and
// map changes not yet published. Shared by every handle of the inode.
//
// Writes land in chunk-sized buffers. A buffer that fills up is uploaded in
// the background (bounded); flush/fsync/release upload the rest, wait, and
// publish chunk-map pages then the inode. Any upload failure is kept and
// reported by the next flush/fsync as EIO: never dropped. Small files keep
// their bytes inline in the inode and never touch the chunk space.
import type { ChunkSpace } from '../keyspace/types.js';
import type { ChunkId } from '../util/ids.js';
import type { Logger } from '../util/log.js';
import { toQfsError } from '../util/errors.js';
import { FsError } from '../meta/errors.js';
import type { FsMeta } from '../meta/fs-meta.js';
import { MAP_PAGE_ENTRIES, nowTimespec, type Inode, type MapPage } from '../meta/types.js';
import type { ByteLru } from './lru.js';

export const INLINE_MAX = 16 * 1024;
/** Chunks fetched ahead of a sequential reader at most (8 MiB with 1 MiB chunks). */
const READ_AHEAD_MAX = 8;

export interface WriteBudget {
  /** Bytes of dirty and uploading buffers across the mount. */
  used: number;
  readonly max: number;
  /** Uploads in flight across the mount. */
  uploads: number;
  readonly maxUploads: number;
  waiters: Array<() => void>;
}

interface Dirty {
  buf: Buffer;
  /** Valid bytes from the chunk start. */
  len: number;
}

export class OpenFile {
  inode: Inode;
  handles = 0;
  /** Any change not yet published (writes, truncate). */
  dirty = false;
  private readonly buffers = new Map<number, Dirty>();
  private readonly uploading = new Map<number, { buf: Buffer; gen: number }>();
  private readonly gens = new Map<number, number>();
  private readonly inflight = new Set<Promise<void>>();
  /** Uploaded but unpublished map entries: page → index in page → id (null: dropped). */
  private readonly pending = new Map<number, Map<number, ChunkId | null>>();
  private readonly maps = new Map<number, MapPage>();
  private error: Error | null = null;
  /** When the oldest uploaded-but-unpublished chunk landed (gc spares unreferenced chunks only for its grace period). */
  private pendingSince: number | null = null;
  private publishing = false;
  private lastReadEnd = -1;
  /** Sequential reads in a row: the read-ahead grows with them, up to READ_AHEAD_MAX chunks. */
  private sequentialReads = 0;
  private aheadUntil = 0;
  private readonly fetching = new Map<ChunkId, Promise<Buffer>>();
  /** Bumped by every change, so a flush knows whether more came in while it published. */
  private version = 0;
  private readonly cs: number;

  constructor(
    inode: Inode,
    private readonly meta: FsMeta,
    private readonly chunks: ChunkSpace,
    private readonly cache: ByteLru<string, Buffer>,
    private readonly budget: WriteBudget,
    private readonly log: Logger,
  ) {
    this.inode = inode;
    this.cs = meta.sb.chunkSize;
  }

  /** Close-to-open: a fresh inode and no cached map pages, unless this mount has unpublished changes. */
  revalidate(inode: Inode): void {
    if (this.dirty) return;
    this.inode = inode;
    this.maps.clear();
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

  private async mapped(index: number): Promise<ChunkId | null> {
    const page = Math.floor(index / MAP_PAGE_ENTRIES);
    const slot = index % MAP_PAGE_ENTRIES;
    const p = this.pending.get(page);
    if (p && p.has(slot)) return p.get(slot)!;
    let m = this.maps.get(page);
    if (!m) {
      m = this.mapless ? new Map() : await this.meta.readMapPage(this.inode.ino, page);
      this.maps.set(page, m);
    }
    return m.get(slot) ?? null;
  }

  /**
   * A chunk from the cache, or fetched once: a read that arrives while the
   * read-ahead is fetching the same chunk waits for that fetch instead of
   * starting a second one.
   */
  private fetchChunk(id: ChunkId): Promise<Buffer> {
    const hit = this.cache.get(id);
    if (hit) return Promise.resolve(hit);
    let p = this.fetching.get(id);
    if (!p) {
      p = this.chunks.getChunk(id).then(
        (bytes) => {
          this.fetching.delete(id);
          this.cache.set(id, bytes);
          return bytes;
        },
        (err: unknown) => {
          this.fetching.delete(id);
          throw err;
        },
      );
      this.fetching.set(id, p);
    }
    return p;
  }

  /** The bytes of chunk `index` as this mount sees them (dirty, uploading, or published). */
  private async chunkBytes(index: number): Promise<{ buf: Buffer; len: number } | null> {
    const d = this.buffers.get(index);
    if (d) return d;
    const u = this.uploading.get(index);
    if (u) return { buf: u.buf, len: u.buf.length };
    const id = await this.mapped(index);
    if (!id) return null;
    const bytes = await this.fetchChunk(id);
    return { buf: bytes, len: bytes.length };
  }

  async read(pos: number, len: number, into?: Buffer): Promise<Buffer> {
    const size = this.inode.size;
    if (pos >= size || len <= 0) return Buffer.alloc(0);
    const end = Math.min(size, pos + len);
    // holes and the parts past a chunk's stored bytes read as zeros
    const out = into !== undefined && into.length >= end - pos ? into.subarray(0, end - pos).fill(0) : Buffer.alloc(end - pos);
    if (this.inode.inline) {
      this.inode.inline.copy(out, 0, pos, Math.min(end, this.inode.inline.length));
      return out;
    }
    const first = Math.floor(pos / this.cs);
    const last = Math.floor((end - 1) / this.cs);
    await Promise.all(
      Array.from({ length: last - first + 1 }, async (_, k) => {
        const index = first + k;
        const c = await this.chunkBytes(index);
        if (!c) return; // a hole reads as zeros
        const cStart = index * this.cs;
        const from = Math.max(pos, cStart) - cStart;
        const to = Math.min(end, cStart + this.cs) - cStart;
        if (from < c.len) c.buf.copy(out, cStart + from - pos, from, Math.min(to, c.len));
      }),
    );
    // Sequential reading: fetch the next chunks before they are asked for, more
    // of them the longer the reader keeps going (a cold chunk is a round trip to a
    // node and a disk read: several in flight keep both busy).
    if (pos === this.lastReadEnd || pos === 0) {
      this.sequentialReads++;
      this.readAhead(last + 1, Math.min(READ_AHEAD_MAX, 2 + (this.sequentialReads >> 3)));
    } else {
      this.sequentialReads = 0;
      this.aheadUntil = 0;
    }
    this.lastReadEnd = end;
    return out;
  }

  private readAhead(from: number, count: number): void {
    // chunks already asked for by an earlier read of this run are not asked again
    const start = Math.max(from, this.aheadUntil);
    this.aheadUntil = Math.max(this.aheadUntil, from + count);
    for (let index = start; index < from + count && index * this.cs < this.inode.size; index++) {
      if (this.buffers.has(index) || this.uploading.has(index)) continue;
      void this.mapped(index)
        .then((id) => (id && !this.cache.has(id) && !this.fetching.has(id) ? this.fetchChunk(id) : undefined))
        .catch(() => {});
    }
  }

  private async waitBudget(extra: number): Promise<void> {
    while (this.budget.used + extra > this.budget.max && this.budget.used > 0) {
      // Push out our own full or partial buffers first, then wait for any upload to finish.
      if (this.buffers.size > 0) this.uploadAll();
      await new Promise<void>((r) => this.budget.waiters.push(r));
    }
  }

  /** A dirty buffer for chunk `index`, seeded with what the chunk holds now. */
  private async dirtyBuffer(index: number, coversWhole: boolean): Promise<Dirty> {
    let d = this.buffers.get(index);
    if (d) return d;
    await this.waitBudget(this.cs);
    d = this.buffers.get(index);
    if (d) return d;
    // Not zeroed: bytes below `len` are always written or zero-filled (write fills a
    // gap it leaves), and nothing past `len` is ever read or uploaded.
    const buf = Buffer.allocUnsafe(this.cs);
    let len = 0;
    const beyondEof = index * this.cs >= this.inode.size;
    if (!coversWhole && !beyondEof) {
      const cur = await this.chunkBytes(index);
      if (cur) {
        len = Math.min(cur.len, this.cs);
        cur.buf.copy(buf, 0, 0, len);
      }
    }
    d = this.buffers.get(index);
    if (d) return d; // another write seeded it while we read
    d = { buf, len };
    this.buffers.set(index, d);
    this.budget.used += this.cs;
    return d;
  }

  async write(pos: number, data: Buffer): Promise<number> {
    if (this.error) throw this.takeError();
    if (data.length === 0) return 0;
    const end = pos + data.length;
    this.dirty = true;
    this.version++;
    if (this.inode.inline !== null || (this.inode.size === 0 && this.pending.size === 0 && this.buffers.size === 0 && (await this.hasNoChunks()))) {
      if (end <= INLINE_MAX) {
        const cur = this.inode.inline ?? Buffer.alloc(0);
        const next = Buffer.alloc(Math.max(cur.length, end, this.inode.size));
        cur.copy(next);
        data.copy(next, pos);
        this.inode.inline = next;
        this.touchWrite(end);
        return data.length;
      }
      this.convertInline();
    }
    let done = 0;
    while (done < data.length) {
      const at = pos + done;
      const index = Math.floor(at / this.cs);
      const off = at - index * this.cs;
      const n = Math.min(this.cs - off, data.length - done);
      const d = await this.dirtyBuffer(index, off === 0 && n === this.cs);
      if (off > d.len) d.buf.fill(0, d.len, off); // a hole inside the chunk reads as zeros
      data.copy(d.buf, off, done, done + n);
      d.len = Math.max(d.len, off + n);
      done += n;
      if (d.len === this.cs && off + n === this.cs) this.upload(index);
    }
    this.touchWrite(end);
    return data.length;
  }

  private async hasNoChunks(): Promise<boolean> {
    return this.inode.size === 0 && (await this.mapped(0)) === null;
  }

  private convertInline(): void {
    const inline = this.inode.inline;
    this.inode.inline = null;
    if (inline && inline.length > 0) {
      const buf = Buffer.alloc(this.cs);
      inline.copy(buf);
      this.buffers.set(0, { buf, len: inline.length });
      this.budget.used += this.cs;
    }
  }

  private touchWrite(end: number): void {
    if (end > this.inode.size) this.inode.size = end;
    const now = nowTimespec();
    this.inode.mtime = now;
    this.inode.ctime = now;
  }

  private setPending(index: number, id: ChunkId | null): void {
    const page = Math.floor(index / MAP_PAGE_ENTRIES);
    let p = this.pending.get(page);
    if (!p) this.pending.set(page, (p = new Map()));
    p.set(index % MAP_PAGE_ENTRIES, id);
    this.pendingSince ??= Date.now();
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

  /** Starts uploading one dirty buffer; its map entry becomes pending when it lands. */
  private upload(index: number): void {
    const d = this.buffers.get(index);
    if (!d) return;
    this.buffers.delete(index);
    const gen = (this.gens.get(index) ?? 0) + 1;
    this.gens.set(index, gen);
    const bytes = d.len === this.cs ? d.buf : Buffer.from(d.buf.subarray(0, d.len));
    this.uploading.set(index, { buf: bytes, gen });
    this.budget.uploads++;
    const p = (async () => {
      try {
        const id = await this.chunks.putChunk(bytes);
        this.cache.set(id, bytes);
        if (this.gens.get(index) === gen) this.setPending(index, id);
      } catch (err) {
        // Keep the bytes: the next flush tries again, and reports this failure.
        this.error ??= err as Error;
        this.log.warn({ ino: this.inode.ino, index, err: toQfsError(err).message }, 'chunk upload failed');
        if (!this.buffers.has(index) && this.gens.get(index) === gen) {
          this.buffers.set(index, { buf: Buffer.concat([bytes, Buffer.alloc(this.cs - bytes.length)]), len: bytes.length });
          this.budget.used += this.cs;
        }
      } finally {
        if (this.uploading.get(index)?.gen === gen) this.uploading.delete(index);
        this.budget.used -= this.cs;
        this.budget.uploads--;
        for (const w of this.budget.waiters.splice(0)) w();
      }
    })();
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  private uploadAll(): void {
    for (const index of [...this.buffers.keys()]) this.upload(index);
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
    if (this.inode.inline !== null || (old === 0 && this.buffers.size === 0 && this.pending.size === 0 && (await this.hasNoChunks()))) {
      if (size <= INLINE_MAX) {
        const next = Buffer.alloc(size);
        (this.inode.inline ?? Buffer.alloc(0)).copy(next, 0, 0, size);
        this.inode.inline = next;
        this.inode.size = size;
        this.touchTruncate();
        return;
      }
      this.convertInline();
    }
    if (size < old) {
      const keep = Math.ceil(size / this.cs); // chunks [0, keep) stay
      const lastOld = Math.ceil(old / this.cs);
      for (let index = keep; index < lastOld; index++) {
        const d = this.buffers.get(index);
        if (d) {
          this.buffers.delete(index);
          this.budget.used -= this.cs;
        }
        this.gens.set(index, (this.gens.get(index) ?? 0) + 1);
        this.uploading.delete(index);
        this.setPending(index, null);
      }
      const tail = size % this.cs;
      if (tail !== 0) {
        // The kept part of the last chunk is rewritten, so a later extension reads zeros.
        const d = await this.dirtyBuffer(keep - 1, false);
        d.buf.fill(0, tail);
        d.len = Math.min(d.len, tail);
      }
    }
    this.inode.size = size;
    this.touchTruncate();
  }

  private touchTruncate(): void {
    const now = nowTimespec();
    this.inode.mtime = now;
    this.inode.ctime = now;
  }

  /** Uploads everything, waits, publishes. Throws EIO/ENOSPC if any byte could not be stored. */
  async flush(): Promise<void> {
    if (!this.dirty && !this.error) return;
    this.uploadAll();
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
    if (this.error) throw this.takeError();
    if (this.buffers.size > 0) {
      // a write raced the flush; publish what is uploaded now, the rest on the next flush
      this.uploadAll();
      while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
      if (this.error) throw this.takeError();
    }
    const changes = new Map(this.pending);
    this.pending.clear();
    const local = this.inode;
    const version = this.version;
    try {
      const published = await this.meta.commitFile(local.ino, changes, (i) => {
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
      });
      for (const [page, entries] of changes) {
        const m = this.maps.get(page);
        if (!m) continue;
        for (const [slot, id] of entries) {
          if (id === null) m.delete(slot);
          else m.set(slot, id);
        }
      }
      this.inode = { ...published, size: local.size, inline: local.inline, mtime: local.mtime, ctime: local.ctime, mode: local.mode, uid: local.uid, gid: local.gid, atime: local.atime, xattrs: local.xattrs };
      this.dirty = this.version !== version || this.buffers.size > 0 || this.pending.size > 0;
      this.pendingSince = this.pending.size > 0 ? Date.now() : null;
    } catch (err) {
      // Not published: keep the changes for the next attempt.
      for (const [page, entries] of changes) {
        const p = this.pending.get(page) ?? new Map<number, ChunkId | null>();
        for (const [slot, id] of entries) if (!p.has(slot)) p.set(slot, id);
        this.pending.set(page, p);
      }
      if (err instanceof FsError) throw err;
      const q = toQfsError(err);
      throw new FsError(q.code === 'no_space' ? 'ENOSPC' : 'EIO', q.message);
    }
  }

  /** An attribute (mode, owner, times, xattrs) changed locally: publish it with the data. */
  attrsChanged(): void {
    this.dirty = true;
    this.version++;
  }

  /** Drops buffers without publishing (the file was removed). */
  discard(): void {
    this.budget.used -= this.buffers.size * this.cs;
    this.buffers.clear();
    this.pending.clear();
    this.pendingSince = null;
    this.dirty = false;
  }
}
