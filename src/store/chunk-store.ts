// Immutable, content-addressed chunks as files:
//   <dir>/chunks/<id[0..2]>/<id[2..4]>/<id>   the chunks
//   <dir>/tmp/                                 writes in progress (cleared at open)
//   <dir>/quarantine/                          copies that failed their hash
// Every id goes through parseChunkId before it becomes part of a path, so no
// request can name a path outside <dir>.
//
// A put is durable before it resolves: temp file written and fsynced, renamed
// into its fan-out directory, that directory fsynced; a fan-out directory's
// parent is fsynced once per process after the directory is (or was found)
// created, which also covers a crash between mkdir and that fsync last run.
//
// A put either checks the bytes against the id first (SHA-256 of every byte)
// or, when the writer asks for it (`'defer'`), stores them unchecked: a mount
// has one replica of each chunk check it and the others defer, which saves two
// hashes of every byte written (a fifth of the CPU a write costs with three
// replicas on one machine). An unchecked copy is marked by its owner-execute
// bit, which no chunk file has otherwise. It can only hurt a later writer of
// the same id, who would be told 'exists' for bytes that are not its own; so
// a put that finds an unchecked copy checks its own bytes (whatever it asked)
// and writes them over that copy. Scrub's verify clears the mark of a copy
// that checks out, and quarantines one that does not, as for any copy.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { chmod, mkdir, open, readdir, rename, rm, stat, statfs, unlink, utimes, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { QfsError, toQfsError } from '../util/errors.js';
import { isChunkId, parseChunkId, type ChunkId } from '../util/ids.js';
import type { Logger } from '../util/log.js';
import { BLOCK_BYTES, chunkTree } from '../util/hash.js';
import { MAX_CHUNK_BYTES } from './types.js';
import { CHUNK_BUCKETS } from '../util/range-digest.js';
import { fsyncDir } from './durable-files.js';
import { DirectWrites } from './direct-writes.js';

export type PutResult = 'stored' | 'exists';
export type VerifyResult = 'ok' | 'corrupt' | 'missing';

export interface ChunkStoreOptions {
  /** Free bytes the filesystem must keep after a put; default 64 MiB. */
  reserveBytes?: number;
  /** Write chunk files with O_DIRECT where the filesystem allows it (`direct-writes.ts`); default false. */
  directWrites?: boolean;
}

const DEFAULT_RESERVE_BYTES = 64 * 1024 * 1024;
const STATFS_TTL_MS = 1000;
// Within this distance of the reserve a cached statfs is not trusted.
const LOW_SPACE_MARGIN = 4 * MAX_CHUNK_BYTES;
const HAS_CONCURRENCY = 64;
// Chunk files kept open for ranged reads.
const OPEN_HANDLES = 256;
// 16 leaves of 32 bytes per 1 MiB chunk: about 20 MiB of memory at most.
const LEAVES_CACHED = 32_768;
const FANOUT_RE = /^[0-9a-f]{2}$/;
const CHECKED_MODE = 0o644;
/** The owner-execute bit: a copy stored without its bytes checked against its id. */
const UNCHECKED_BIT = 0o100;
const isUnchecked = (st: { mode: number }): boolean => (st.mode & UNCHECKED_BIT) !== 0;

export class ChunkStore {
  private readonly chunksDir: string;
  private readonly tmpDir: string;
  private readonly quarantineDir: string;
  private readonly reserveBytes: number;
  private chunks: number;
  private bytes: number;
  private space: { free: number; at: number } | null = null;
  /** Per-id tail of the queue of mutating operations (put, delete, verify). */
  private readonly locks = new Map<string, Promise<void>>();
  /** Directories whose entry in their parent has been fsynced by this process. */
  private readonly dirsReady = new Map<string, Promise<void>>();
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Chunks whose directory entry this process has synced (a repeated put of them needs no fsync). */
  private readonly synced = new Set<string>();
  private closing: Promise<void> | null = null;
  private readonly direct: DirectWrites | null;
  /** Every stored chunk's id (found at open, kept since): self-heal's digests are built from it without a walk of the disk. */
  private readonly ids: Set<string>;
  private listener: ChunkListener | null = null;
  /** False when the process's umask would clear the unchecked mark: then every put is checked. */
  private readonly canDefer = (process.umask() & UNCHECKED_BIT) === 0;

  private constructor(
    private readonly dir: string,
    private readonly log: Logger,
    reserveBytes: number,
    counts: { chunks: number; bytes: number; ids: Set<string> },
    directWrites: boolean,
  ) {
    this.ids = counts.ids;
    this.direct = directWrites ? new DirectWrites() : null;
    this.chunksDir = join(dir, 'chunks');
    this.tmpDir = join(dir, 'tmp');
    this.quarantineDir = join(dir, 'quarantine');
    this.reserveBytes = reserveBytes;
    this.chunks = counts.chunks;
    this.bytes = counts.bytes;
  }

  static async open(dir: string, log: Logger, opts: ChunkStoreOptions = {}): Promise<ChunkStore> {
    const reserveBytes = opts.reserveBytes ?? DEFAULT_RESERVE_BYTES;
    if (!Number.isSafeInteger(reserveBytes) || reserveBytes < 0) throw new RangeError(`reserveBytes ${reserveBytes} must be a non-negative integer`);
    try {
      for (const sub of ['chunks', 'tmp', 'quarantine']) await mkdir(join(dir, sub), { recursive: true });
      await rm(join(dir, 'tmp'), { recursive: true, force: true });
      await mkdir(join(dir, 'tmp'));
      await fsyncDir(dir);
      const counts = await countChunks(join(dir, 'chunks'), log);
      log.debug({ dir, ...counts }, 'chunk store open');
      return new ChunkStore(dir, log, reserveBytes, counts, opts.directWrites ?? false);
    } catch (err) {
      throw toQfsError(err);
    }
  }

  /** `check: 'defer'` stores the bytes unchecked unless an unchecked copy is already there (see the top of this file). */
  async put(id: ChunkId, bytes: Buffer, check: 'verify' | 'defer' = 'verify'): Promise<PutResult> {
    this.checkOpen();
    const cid = parseChunkId(id);
    if (!Buffer.isBuffer(bytes)) throw new QfsError('bad_request', 'chunk bytes must be a Buffer');
    if (bytes.length > MAX_CHUNK_BYTES) throw new QfsError('bad_request', `chunk of ${bytes.length} bytes exceeds ${MAX_CHUNK_BYTES}`);
    const checked = check === 'verify' || !this.canDefer;
    if (checked) await this.check(cid, bytes);
    // Serialised per id: a concurrent put of the same id waits and finds the file.
    return await this.track(this.withLock(cid, () => this.store(cid, bytes, checked)));
  }

  private async check(cid: ChunkId, bytes: Buffer): Promise<void> {
    const tree = await chunkTree(bytes);
    if (tree.id !== cid) throw new QfsError('corrupt', `chunk bytes do not hash to ${cid}`);
    this.rememberLeaves(cid, tree.leaves);
  }

  /** `into(n)`: where to read the n bytes (a reply's tail), instead of a new buffer. */
  async get(id: ChunkId, offset = 0, length?: number, into?: (n: number) => Buffer): Promise<Buffer> {
    this.checkOpen();
    const cid = parseChunkId(id);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new QfsError('bad_request', `invalid offset ${offset}`);
    if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) throw new QfsError('bad_request', `invalid length ${length}`);
    if (offset === 0 && this.direct) {
      let r;
      try {
        r = await this.direct.readWhole(this.chunkPath(cid), length ?? Infinity, into ?? ((n) => Buffer.allocUnsafe(n)));
      } catch (err) {
        throw this.fsError(err, cid, 'get');
      }
      if (r !== 'unsupported') {
        if (r.short) throw new QfsError('corrupt', `chunk ${cid} shrank while being read`);
        return r.bytes;
      }
    }
    let fh;
    try {
      fh = await open(this.chunkPath(cid), 'r');
    } catch (err) {
      throw this.fsError(err, cid, 'get');
    }
    try {
      const size = (await fh.stat()).size;
      const start = Math.min(offset, size);
      const end = length === undefined ? size : Math.min(size, start + length);
      const buf = into ? into(end - start) : Buffer.allocUnsafe(end - start);
      let done = 0;
      while (done < buf.length) {
        const { bytesRead } = await fh.read(buf, done, buf.length - done, start + done);
        if (bytesRead === 0) throw new QfsError('corrupt', `chunk ${cid} shrank while being read`);
        done += bytesRead;
      }
      return buf;
    } catch (err) {
      throw this.fsError(err, cid, 'get');
    } finally {
      await fh.close();
    }
  }

  /**
   * The whole 64 KiB blocks that hold [offset, offset+length) of a chunk (the
   * chunk's last block may be short), and with `withLeaves` the chunk's leaf
   * digests, so that the reader can verify the blocks without the rest.
   * Leaves come from memory, or are computed from the file once.
   */
  async getBlocks(id: ChunkId, offset: number, length: number, withLeaves: boolean): Promise<{ size: number; first: number; leaves: Buffer | null; bytes: Buffer }> {
    this.checkOpen();
    const cid = parseChunkId(id);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new QfsError('bad_request', `invalid offset ${offset}`);
    if (!Number.isSafeInteger(length) || length < 0) throw new QfsError('bad_request', `invalid length ${length}`);
    let leaves = withLeaves ? this.leaves.get(cid) ?? null : null;
    if (leaves) {
      // refresh its place in the LRU
      this.leaves.delete(cid);
      this.leaves.set(cid, leaves);
    }
    if (withLeaves && !leaves) {
      let whole: Buffer;
      try {
        whole = await readFile(this.chunkPath(cid));
      } catch (err) {
        throw this.fsError(err, cid, 'get');
      }
      // Not checked against the id here: the reader checks the leaves against the id, and the blocks against the leaves.
      leaves = (await chunkTree(whole)).leaves;
      this.rememberLeaves(cid, leaves);
      const first = Math.floor(Math.min(offset, whole.length) / BLOCK_BYTES);
      const end = Math.min(whole.length, Math.ceil(Math.min(whole.length, offset + length) / BLOCK_BYTES) * BLOCK_BYTES);
      return { size: whole.length, first, leaves, bytes: whole.subarray(first * BLOCK_BYTES, Math.max(first * BLOCK_BYTES, end)) };
    }
    let open_: { fh: FileHandle; size: number };
    try {
      open_ = await this.handle(cid);
    } catch (err) {
      throw this.fsError(err, cid, 'get');
    }
    const { fh, size } = open_;
    try {
      const first = Math.floor(Math.min(offset, size) / BLOCK_BYTES);
      const start = first * BLOCK_BYTES;
      const end = Math.min(size, Math.ceil(Math.min(size, offset + length) / BLOCK_BYTES) * BLOCK_BYTES);
      const buf = Buffer.allocUnsafe(Math.max(0, end - start));
      let done = 0;
      while (done < buf.length) {
        const { bytesRead } = await fh.read(buf, done, buf.length - done, start + done);
        if (bytesRead === 0) throw new QfsError('corrupt', `chunk ${cid} shrank while being read`);
        done += bytesRead;
      }
      return { size, first, leaves, bytes: buf };
    } catch (err) {
      this.dropHandle(cid);
      throw this.fsError(err, cid, 'get');
    }
  }

  /**
   * Open chunk files, kept for ranged reads (a random 4 KiB read otherwise
   * pays open, fstat and close on the thread pool besides its read). A chunk
   * never changes while stored; delete, sweep and quarantine drop its handle,
   * so a read never reaches a removed file through it.
   */
  private readonly handles = new Map<string, Promise<{ fh: FileHandle; size: number }>>();

  private handle(cid: ChunkId): Promise<{ fh: FileHandle; size: number }> {
    let h = this.handles.get(cid);
    if (h) {
      this.handles.delete(cid);
      this.handles.set(cid, h);
      return h;
    }
    if (this.handles.size >= OPEN_HANDLES) this.dropHandle(this.handles.keys().next().value as string);
    h = (async () => {
      const fh = await open(this.chunkPath(cid), 'r');
      try {
        return { fh, size: (await fh.stat()).size };
      } catch (err) {
        await fh.close();
        throw err;
      }
    })();
    this.handles.set(cid, h);
    h.catch(() => {
      if (this.handles.get(cid) === h) this.handles.delete(cid);
    });
    return h;
  }

  /** Closes a kept handle (the close waits for reads in flight on it). */
  private dropHandle(cid: string): void {
    const h = this.handles.get(cid);
    if (!h) return;
    this.handles.delete(cid);
    h.then(
      ({ fh }) => fh.close().catch(() => {}),
      () => {},
    );
  }

  /** Leaf digests of recently stored or read chunks: a ranged read needs them, and computing them reads the whole chunk. */
  private readonly leaves = new Map<string, Buffer>();

  private rememberLeaves(cid: string, leaves: Buffer): void {
    if (this.leaves.size >= LEAVES_CACHED) this.leaves.delete(this.leaves.keys().next().value as string);
    this.leaves.set(cid, leaves);
  }

  async has(ids: ChunkId[]): Promise<boolean[]> {
    this.checkOpen();
    const paths = ids.map((id) => this.chunkPath(parseChunkId(id)));
    const result: boolean[] = [];
    for (let i = 0; i < paths.length; i += HAS_CONCURRENCY) {
      result.push(...(await Promise.all(paths.slice(i, i + HAS_CONCURRENCY).map((p) => fileExists(p)))));
    }
    return result;
  }

  /** Ids greater than `after`, ascending, at most `limit`. */
  async list(after: ChunkId | null, limit: number): Promise<ChunkId[]> {
    this.checkOpen();
    const from = after === null ? null : parseChunkId(after);
    if (!Number.isSafeInteger(limit) || limit < 1) throw new QfsError('bad_request', `list limit ${limit} must be a positive integer`);
    const out: ChunkId[] = [];
    try {
      for (const d1 of await sortedDir(this.chunksDir, FANOUT_RE)) {
        if (from && d1 < from.slice(0, 2)) continue;
        for (const d2 of await sortedDir(join(this.chunksDir, d1), FANOUT_RE)) {
          const prefix = d1 + d2;
          if (from && prefix < from.slice(0, 4)) continue;
          if (await this.listFanout(prefix, from, limit, out)) return out;
        }
      }
    } catch (err) {
      throw this.fsError(err, null, 'list');
    }
    return out;
  }

  /** Adds the ids of one fan-out directory after `from` to `out`; true once `out` holds `limit`. */
  private async listFanout(prefix: string, from: string | null, limit: number, out: ChunkId[]): Promise<boolean> {
    for (const name of await sortedDir(join(this.chunksDir, prefix.slice(0, 2), prefix.slice(2)), null)) {
      if (!isChunkId(name) || !name.startsWith(prefix) || (from && name <= from)) continue;
      out.push(name);
      if (out.length === limit) return true;
    }
    return false;
  }

  async delete(id: ChunkId): Promise<boolean> {
    this.checkOpen();
    const cid = parseChunkId(id);
    return await this.track(
      this.withLock(cid, async () => {
        const path = this.chunkPath(cid);
        try {
          const { size } = await stat(path);
          this.dropHandle(cid);
          await unlink(path);
          this.synced.delete(cid);
          this.forget(cid, size);
          await fsyncDir(this.fanoutDir(cid));
          return true;
        } catch (err) {
          if (isErrno(err, 'ENOENT')) return false;
          throw this.fsError(err, cid, 'delete');
        }
      }),
    );
  }

  /**
   * gc's delete: removes the chunk only if it was stored (or last put again)
   * at least `minAgeMs` ago by this node's clock, so a chunk that a write in
   * flight has just put survives a sweep that marked before the write's
   * commit. Returns the bytes freed (0: absent or too young).
   */
  async sweep(id: ChunkId, minAgeMs: number): Promise<number> {
    this.checkOpen();
    const cid = parseChunkId(id);
    if (!Number.isSafeInteger(minAgeMs) || minAgeMs < 0) throw new QfsError('bad_request', `sweep age ${minAgeMs} must be a non-negative integer`);
    return await this.track(
      this.withLock(cid, async () => {
        const path = this.chunkPath(cid);
        try {
          const st = await stat(path);
          if (Date.now() - st.mtimeMs < minAgeMs) return 0;
          this.dropHandle(cid);
          await unlink(path);
          this.synced.delete(cid);
          this.forget(cid, st.size);
          await fsyncDir(this.fanoutDir(cid));
          return st.size;
        } catch (err) {
          if (isErrno(err, 'ENOENT')) return 0;
          throw this.fsError(err, cid, 'sweep');
        }
      }),
    );
  }

  /** Re-hashes the stored copy; a corrupt one is moved to quarantine so a later put can restore it. */
  async verify(id: ChunkId): Promise<VerifyResult> {
    this.checkOpen();
    const cid = parseChunkId(id);
    return await this.track(
      this.withLock(cid, async () => {
        const path = this.chunkPath(cid);
        let size: number;
        try {
          const st = await stat(path);
          size = st.size;
          if (size <= MAX_CHUNK_BYTES && (await chunkTree(await readFile(path))).id === cid) {
            if (isUnchecked(st)) await chmod(path, CHECKED_MODE);
            return 'ok';
          }
        } catch (err) {
          if (isErrno(err, 'ENOENT')) return 'missing';
          throw this.fsError(err, cid, 'verify');
        }
        const dest = join(this.quarantineDir, `${cid}.${Date.now()}.${randomBytes(4).toString('hex')}`);
        this.dropHandle(cid);
        try {
          await rename(path, dest);
          this.synced.delete(cid);
          this.forget(cid, size);
          await fsyncDir(this.fanoutDir(cid));
          await fsyncDir(this.quarantineDir);
        } catch (err) {
          throw this.fsError(err, cid, 'quarantine');
        }
        this.log.warn({ chunk: cid, quarantined: dest }, 'chunk failed its hash check and was quarantined');
        return 'corrupt';
      }),
    );
  }

  stats(): { chunks: number; bytes: number } {
    return { chunks: this.chunks, bytes: this.bytes };
  }

  /** Whether puts still try O_DIRECT here, and how many chunk files went direct. */
  directWrites(): { enabled: boolean; written: number } {
    return { enabled: this.direct?.enabled ?? false, written: this.direct?.written ?? 0 };
  }

  /** How many reads from a chunk's start went direct (`direct-writes.ts`). */
  directReads(): number {
    return this.direct?.read ?? 0;
  }

  async capacity(): Promise<{ totalBytes: number; freeBytes: number }> {
    this.checkOpen();
    try {
      const s = await statfs(this.dir);
      const freeBytes = s.bavail * s.bsize;
      this.space = { free: freeBytes, at: Date.now() };
      return { totalBytes: s.blocks * s.bsize, freeBytes };
    } catch (err) {
      throw this.fsError(err, null, 'statfs');
    }
  }

  /** Waits for writes in flight; later calls throw `closed`. Idempotent. */
  close(): Promise<void> {
    this.closing ??= Promise.allSettled([...this.inFlight]).then(() => {
      for (const cid of [...this.handles.keys()]) this.dropHandle(cid);
    });
    return this.closing;
  }

  private async store(cid: ChunkId, bytes: Buffer, checked: boolean): Promise<PutResult> {
    const path = this.chunkPath(cid);
    const existing = await stat(path).catch((err: unknown) => {
      if (isErrno(err, 'ENOENT')) return null;
      throw this.fsError(err, cid, 'put');
    });
    let replace = false;
    if (existing && isUnchecked(existing)) {
      // Not 'exists' on an unchecked copy before these bytes are checked and the copy holds the same.
      if (!checked) await this.check(cid, bytes);
      checked = true;
      if (existing.size === bytes.length && (await this.holds(path, bytes))) await chmod(path, CHECKED_MODE);
      else replace = true;
    }
    if (existing && !replace) {
      // A put of stored bytes restarts gc's grace period: the writer is about to reference them.
      // (At most once a second: a file of zeros puts the same chunk over and over.)
      if (Date.now() - existing.mtimeMs > 1000) {
        const now = new Date();
        await utimes(path, now, now).catch(() => {});
      }
      // The file may be there from a put that died (or failed) before its directory was synced.
      if (!this.synced.has(cid)) {
        await fsyncDir(this.fanoutDir(cid));
        this.markSynced(cid);
      }
      return 'exists';
    }
    await this.reserveSpace(bytes.length);
    const tmp = join(this.tmpDir, `${cid}.${randomBytes(6).toString('hex')}`);
    const mode = checked ? CHECKED_MODE : CHECKED_MODE | UNCHECKED_BIT;
    try {
      if ((await this.direct?.writeNew(tmp, bytes, mode)) !== 'direct') {
        const fh = await open(tmp, 'wx', mode);
        try {
          await fh.writeFile(bytes);
          await fh.sync();
        } finally {
          await fh.close();
        }
      }
      await this.ensureFanout(cid);
      this.dropHandle(cid); // one left on a file removed behind the store's back
      await rename(tmp, path);
      if (existing) {
        // (only a replaced unchecked copy gets here with one)
        this.bytes += bytes.length - existing.size;
        this.log.warn({ chunk: cid }, 'a copy stored unchecked did not hold its id\'s bytes: replaced by checked ones');
      } else {
        this.chunks += 1;
        this.bytes += bytes.length;
        this.ids.add(cid);
        this.listener?.changed(Buffer.from(cid, 'hex'), null, 'held');
      }
      await fsyncDir(this.fanoutDir(cid));
      this.markSynced(cid);
      return 'stored';
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {});
      throw this.fsError(err, cid, 'put');
    }
  }

  /** Whether the file at `path` holds exactly `bytes`. */
  private async holds(path: string, bytes: Buffer): Promise<boolean> {
    try {
      return bytes.equals(await readFile(path));
    } catch (err) {
      throw this.fsError(err, null, 'put');
    }
  }

  private async reserveSpace(n: number): Promise<void> {
    const now = Date.now();
    const cached = this.space;
    if (!cached || now - cached.at > STATFS_TTL_MS || cached.free - n < this.reserveBytes + LOW_SPACE_MARGIN) {
      try {
        const s = await statfs(this.dir);
        this.space = { free: s.bavail * s.bsize, at: now };
      } catch (err) {
        throw this.fsError(err, null, 'statfs');
      }
    }
    const space = this.space!;
    if (space.free - n < this.reserveBytes) {
      throw new QfsError('no_space', `chunk store: ${space.free} bytes free, keeping ${this.reserveBytes} in reserve`);
    }
    // Puts within one statfs period see each other's bytes.
    space.free -= n;
  }

  private ensureFanout(cid: ChunkId): Promise<void> {
    const d1 = join(this.chunksDir, cid.slice(0, 2));
    return this.ensureDir(d1, this.chunksDir).then(() => this.ensureDir(this.fanoutDir(cid), d1));
  }

  private ensureDir(path: string, parent: string): Promise<void> {
    let ready = this.dirsReady.get(path);
    if (!ready) {
      ready = (async () => {
        await mkdir(path).catch((err: unknown) => {
          if (!isErrno(err, 'EEXIST')) throw err;
        });
        await fsyncDir(parent);
      })();
      ready.catch(() => this.dirsReady.delete(path));
      this.dirsReady.set(path, ready);
    }
    return ready;
  }

  private markSynced(cid: ChunkId): void {
    if (this.synced.size >= 100_000) this.synced.clear(); // bounded; forgetting only costs an fsync
    this.synced.add(cid);
  }

  private fanoutDir(cid: ChunkId): string {
    return join(this.chunksDir, cid.slice(0, 2), cid.slice(2, 4));
  }

  private chunkPath(cid: ChunkId): string {
    return join(this.fanoutDir(cid), cid);
  }

  private forget(cid: string, size: number): void {
    this.chunks -= 1;
    this.bytes -= size;
    if (this.ids.delete(cid)) this.listener?.changed(Buffer.from(cid, 'hex'), 'held', null);
  }

  /** Sets the listener of chunks stored and removed (told synchronously as the file appears or goes). */
  listen(listener: ChunkListener | null): void {
    this.listener = listener;
  }

  /** Every stored chunk as of now, handed out a slice at a time (as RecordStore.snapshotMarks). */
  snapshotMarks(): { take(n: number): Array<[Buffer, 'held']> } {
    const ids = [...this.ids];
    let at = 0;
    return {
      take: (n: number) => {
        const out: Array<[Buffer, 'held']> = [];
        for (; out.length < n && at < ids.length; at++) out.push([Buffer.from(ids[at]!, 'hex'), 'held']);
        return out;
      },
    };
  }

  /** Ids of one bucket (src/util/range-digest.ts, chunkBucket) greater than `after`, ascending, at most `limit`. */
  async listBucket(bucket: number, after: ChunkId | null, limit: number): Promise<ChunkId[]> {
    this.checkOpen();
    if (!Number.isInteger(bucket) || bucket < 0 || bucket >= CHUNK_BUCKETS) throw new QfsError('bad_request', `bucket ${bucket} is not in 0..${CHUNK_BUCKETS - 1}`);
    const from = after === null ? null : parseChunkId(after);
    if (!Number.isSafeInteger(limit) || limit < 1) throw new QfsError('bad_request', `list limit ${limit} must be a positive integer`);
    const out: ChunkId[] = [];
    const perBucket = 65536 / CHUNK_BUCKETS;
    try {
      for (let p = bucket * perBucket; p < (bucket + 1) * perBucket; p++) {
        const prefix = p.toString(16).padStart(4, '0');
        if (from && prefix < from.slice(0, 4)) continue;
        try {
          if (await this.listFanout(prefix, from, limit, out)) return out;
        } catch (err) {
          if (!isErrno(err, 'ENOENT')) throw err;
        }
      }
    } catch (err) {
      throw this.fsError(err, null, 'list');
    }
    return out;
  }

  private withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const run = prev.then(fn);
    const tail = run.then(
      () => {},
      () => {},
    );
    this.locks.set(id, tail);
    void tail.then(() => {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    });
    return run;
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inFlight.add(p);
    const forget = (): void => {
      this.inFlight.delete(p);
    };
    p.then(forget, forget);
    return p;
  }

  private checkOpen(): void {
    if (this.closing) throw new QfsError('closed', 'chunk store is closed');
  }

  private fsError(err: unknown, cid: ChunkId | null, what: string): QfsError {
    if (isErrno(err, 'ENOENT') && cid) return new QfsError('not_found', `chunk ${cid} not found`);
    const e = toQfsError(err);
    if (e.code === 'internal') this.log.error({ err, chunk: cid }, `chunk ${what} failed`);
    else if (e.code === 'no_space') this.log.warn({ chunk: cid, msg: e.message }, `chunk ${what} failed`);
    return e;
  }
}



async function fileExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw toQfsError(err);
  }
}

async function sortedDir(path: string, pattern: RegExp | null): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return [];
    throw err;
  }
  return (pattern ? names.filter((n) => pattern.test(n)) : names).sort();
}

async function countChunks(chunksDir: string, log: Logger): Promise<{ chunks: number; bytes: number; ids: Set<string> }> {
  let chunks = 0;
  let bytes = 0;
  const ids = new Set<string>();
  for (const d1 of await sortedDir(chunksDir, FANOUT_RE)) {
    for (const d2 of await sortedDir(join(chunksDir, d1), FANOUT_RE)) {
      for (const name of await sortedDir(join(chunksDir, d1, d2), null)) {
        if (!isChunkId(name) || !name.startsWith(d1 + d2)) {
          log.warn({ file: join(chunksDir, d1, d2, name) }, 'ignoring a stray file among the chunks');
          continue;
        }
        chunks += 1;
        bytes += (await stat(join(chunksDir, d1, d2, name))).size;
        ids.add(name);
      }
    }
  }
  return { chunks, bytes, ids };
}

/** Told of every chunk stored and removed (mark 'held': the digests' item for a chunk is its id alone). */
export interface ChunkListener {
  changed(id: Buffer, before: 'held' | null, after: 'held' | null): void;
  unsure(): void;
}

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === code;
}
