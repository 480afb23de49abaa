// POSIX semantics over the filesystem records: path resolution, handles,
// write-back, caches, name rules. No FUSE, no sockets: it runs the same over
// the in-memory key space (tests) and the cluster.
import type { CallOpts, ChunkSpace } from '../keyspace/types.js';

/** Bounds of one filesystem operation: its deadline, shared by every cluster call it makes. */
export type { CallOpts };
import type { Logger } from '../util/log.js';
import { toQfsError } from '../util/errors.js';
import { FsError } from '../meta/errors.js';
import { FsMeta, checkName, isDir } from '../meta/fs-meta.js';
import { ROOT_INO, S_IFDIR, S_IFBLK, S_IFCHR, S_IFIFO, S_IFLNK, S_IFSOCK, S_IFMT, S_IFREG, nowTimespec, type Dirent, type Ino, type Inode, type Timespec } from '../meta/types.js';
import { ByteLru, LastSeen, TtlCache } from './lru.js';
import { OpenFile, type WriteBudget } from './open-file.js';
import { LockService, LocksLostError } from '../meta/locks.js';
import { lengthOf, rangeOf, type LockType } from '../meta/lock-ranges.js';

export interface Caller {
  uid: number;
  gid: number;
  pid: number;
  /** Supplementary groups, when the caller's layer looked them up (chown, chmod). */
  groups?: readonly number[];
}

function inGroup(caller: Caller, gid: number): boolean {
  return caller.gid === gid || (caller.groups?.includes(gid) ?? false);
}

export const ROOT_CALLER: Caller = { uid: 0, gid: 0, pid: 0 };

export interface Stat {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  blocks: number;
  blksize: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
  /** The file has extended attributes. */
  hasXattrs: boolean;
}

export interface StatFs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  namemax: number;
}

export type TimeSet = Timespec | 'now' | 'omit';

export interface VfsOptions {
  log: Logger;
  /** How long an attribute or name lookup may be answered from memory. */
  attrTtlMs?: number;
  entryTtlMs?: number;
  chunkCacheBytes?: number;
  /** Ceiling for write-back buffers across the mount. */
  writeBackBytes?: number;
  maxUploads?: number;
  capacity?: () => Promise<{ totalBytes: number; freeBytes: number }>;
  /** An open file whose uploaded chunks have waited this long unpublished is published (default 30 s; 0: never). */
  publishAfterMs?: number;
  /** fcntl/flock locks shared with other mounts (default: a service over this vfs's key space, lease defaults). */
  locks?: LockService;
}

/** A POSIX lock as fcntl passes it (l_whence SEEK_SET; len 0: to the end of the file). */
export interface FcntlLock {
  type: LockType | 'unlock';
  start: number;
  len: number;
  pid: number;
}

export const O_ACCMODE = 3;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_TRUNC = 0o1000;
export const O_APPEND = 0o2000;

export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;
const XATTR_NAME_MAX = 255;
const XATTR_VALUE_MAX = 64 * 1024;
const XATTR_TOTAL_MAX = 256 * 1024;

interface Handle {
  file: OpenFile;
  flags: number;
}

function split(path: string): Buffer[] {
  if (!path.startsWith('/')) throw new FsError('EINVAL', `relative path ${path}`);
  return path
    .split('/')
    .filter((p) => p.length > 0)
    .map((p) => Buffer.from(p, 'utf8'));
}

function parentAndName(path: string): { parent: string; name: Buffer } {
  const parts = split(path);
  const name = parts.pop();
  if (!name) throw new FsError('EINVAL', 'the root has no name');
  const i = path.lastIndexOf('/');
  return { parent: i <= 0 ? '/' : path.slice(0, i), name };
}

/**
 * libfuse's high-level API (hard_remove off, which the binding needs: every
 * op gets a path) does not unlink an open file: it renames it to
 * `.fuse_hidden` + 16 hex digits in the same directory, and unlinks that name
 * at the last close. Those names are this mount's business alone: the rename
 * is carried out as the unlink it stands for (the name goes at once, for
 * every mount), and the hidden path is kept here only, so that the kernel's
 * requests by that path (fstat, the final unlink) still find the open file.
 */
const HIDDEN_NAME = /^\.fuse_hidden[0-9a-f]{16}$/;

function isHiddenPath(path: string): boolean {
  return HIDDEN_NAME.test(path.slice(path.lastIndexOf('/') + 1));
}

function blocksOf(size: number): number {
  return Math.ceil(size / 512);
}

export class Vfs {
  private readonly attrs: TtlCache<Ino, Inode>;
  private readonly entries: TtlCache<string, Dirent | null>;
  private readonly cache: ByteLru<string, Buffer>;
  /** Directory listings as last read, for answering ls while the cluster cannot (see stale()). */
  private readonly listings = new LastSeen<Ino, Array<{ name: Buffer; dirent: Dirent }>>(256, 100_000, (entries) => entries.length + 1);
  private staleWarnedAt = 0;
  private readonly files = new Map<Ino, OpenFile>();
  /** The hidden names (HIDDEN_NAME) of open files whose last name was unlinked here, by path. */
  private readonly hidden = new Map<string, Ino>();
  private readonly handles = new Map<number, Handle>();
  private nextFh = 1;
  private readonly budget: WriteBudget;
  readonly locks: LockService;

  constructor(
    readonly meta: FsMeta,
    private readonly chunks: ChunkSpace,
    private readonly opts: VfsOptions,
  ) {
    this.locks = opts.locks ?? new LockService(meta.ks, { log: opts.log.child({ component: 'locks' }) });
    this.attrs = new TtlCache(opts.attrTtlMs ?? 1000);
    this.entries = new TtlCache(opts.entryTtlMs ?? 1000);
    this.cache = new ByteLru(opts.chunkCacheBytes ?? 256 * 1024 * 1024);
    this.budget = { used: 0, max: opts.writeBackBytes ?? 256 * 1024 * 1024, uploads: 0, maxUploads: opts.maxUploads ?? 16, waiters: [] };
    const publishAfterMs = opts.publishAfterMs ?? 30_000;
    if (publishAfterMs > 0) {
      this.publisher = setInterval(() => {
        for (const f of this.files.values()) if (f.inode.nlink > 0) void f.publishIfOld(publishAfterMs);
      }, Math.max(10, Math.min(5000, publishAfterMs / 2)));
      this.publisher.unref();
    }
  }

  private readonly publisher: NodeJS.Timeout | null = null;
  /** Compactions queued or running in the background, also of files already closed. */
  private readonly background = new Set<Promise<void>>();
  private stopping = false;
  /** When each recently used inode was last read or written here: compaction waits for quiet. */
  private readonly activity = new Map<number, number>();

  /** Waits until no compaction runs (unmount; tests). */
  async backgroundIdle(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }

  /** Stops the background publisher (open files are the caller's: flushAll). */
  close(): void {
    this.stopping = true; // queued compactions are dropped: they are an optimisation, redone later
    if (this.publisher) clearInterval(this.publisher);
  }

  // ---- names and attributes

  private entryKey(dir: Ino, name: Buffer): string {
    return `${dir}/${name.toString('latin1')}`;
  }

  /**
   * Degraded reads: when a majority of a key's replicas cannot be reached, a
   * lookup, getattr or readdir is answered from what this mount last saw, so
   * ls and stat of what it has listed keep working; every change, and every
   * open (close-to-open needs the current attributes), still fails with EIO.
   */
  private stale<T>(err: unknown, last: T | undefined): T {
    const code = err instanceof FsError ? null : toQfsError(err).code;
    if (last === undefined || (code !== 'unavailable' && code !== 'timeout')) throw err;
    if (Date.now() - this.staleWarnedAt > 10_000) {
      this.staleWarnedAt = Date.now();
      this.opts.log.warn({ err: (err as Error).message }, 'cluster unavailable: answering lookups and listings from what this mount last saw');
    }
    return last;
  }

  private async lookupCached(dir: Ino, name: Buffer, op?: CallOpts): Promise<Dirent | null> {
    const k = this.entryKey(dir, name);
    const hit = this.entries.get(k);
    if (hit !== undefined) return hit;
    let d: Dirent | null;
    try {
      d = await this.meta.lookup(dir, name, op);
    } catch (err) {
      return this.stale(err, this.entries.getStale(k));
    }
    this.entries.set(k, d);
    return d;
  }

  /** The next lookup of the name asks the cluster (the old answer stays only as a last resort). */
  private forgetEntry(dir: Ino, name: Buffer): void {
    this.entries.expire(this.entryKey(dir, name));
  }

  /** This mount changed the name: what it saw before is wrong even as a last resort. */
  private changedEntry(dir: Ino, name: Buffer): void {
    this.entries.delete(this.entryKey(dir, name));
    this.listings.delete(dir);
  }

  /** The inode, from an open file of this mount, the cache, or the cluster. */
  private async inode(ino: Ino, fresh = false, op?: CallOpts): Promise<Inode> {
    const open = this.files.get(ino);
    if (open && (open.dirty || !fresh)) return open.inode;
    if (!fresh) {
      const hit = this.attrs.get(ino);
      if (hit) return hit;
    }
    await this.meta.settled(ino);
    let i: Inode;
    try {
      i = await this.meta.getInode(ino, op);
    } catch (err) {
      return this.stale(err, fresh ? undefined : this.attrs.getStale(ino));
    }
    this.attrs.set(ino, i);
    if (open) open.revalidate(i);
    return i;
  }

  private remember(i: Inode): Inode {
    this.attrs.set(i.ino, i);
    const open = this.files.get(i.ino);
    if (open && !open.dirty) open.inode = i;
    else if (open) {
      open.inode.mode = i.mode;
      open.inode.uid = i.uid;
      open.inode.gid = i.gid;
      open.inode.nlink = i.nlink;
      open.inode.xattrs = i.xattrs;
      open.inode.ctime = i.ctime;
      open.inode.atime = i.atime;
    }
    return i;
  }

  async resolve(path: string, uncached = false, names = split(path), op?: CallOpts): Promise<Ino> {
    let ino = ROOT_INO;
    for (let k = 0; k < names.length; k++) {
      const name = names[k]!;
      checkName(name);
      if (uncached) this.forgetEntry(ino, name);
      // a cached name needs no await (a path of n names would otherwise cost n promise turns)
      const hit = uncached ? undefined : this.entries.get(this.entryKey(ino, name));
      const d = hit !== undefined ? hit : await this.lookupCached(ino, name, op);
      if (!d) throw new FsError('ENOENT');
      if (k < names.length - 1 && !isDir(d.type)) throw new FsError('ENOTDIR');
      ino = d.ino;
    }
    return ino;
  }

  private async resolveDir(path: string, op?: CallOpts): Promise<Ino> {
    const ino = await this.resolve(path, false, split(path), op);
    const i = await this.inode(ino, false, op);
    if (!isDir(i.mode)) throw new FsError('ENOTDIR');
    return ino;
  }

  toStat(i: Inode): Stat {
    const size = (i.mode & S_IFMT) === S_IFLNK ? (i.target?.length ?? 0) : i.size;
    // Holes take no space: count inline bytes, or mapped chunks (the last one cut at the size).
    const stored = i.inline !== null ? i.inline.length : (i.mode & S_IFMT) === S_IFREG ? Math.min(size, i.chunks * this.meta.sb.chunkSize) : size;
    return {
      ino: i.ino,
      mode: i.mode,
      nlink: i.nlink,
      uid: i.uid,
      gid: i.gid,
      rdev: i.rdev,
      size,
      blocks: blocksOf(stored),
      blksize: 4096,
      atime: i.atime,
      mtime: i.mtime,
      ctime: i.ctime,
      hasXattrs: i.xattrs.size > 0,
    };
  }

  /**
   * The inode a path names now. A name can point at an inode that was just
   * replaced and dropped (another mount's rename over it, an editor's atomic
   * save): then look the name up again instead of answering ENOENT.
   */
  private async inodeAt(path: string, fresh = false, op?: CallOpts): Promise<Inode> {
    const names = split(path);
    for (let attempt = 0; ; attempt++) {
      const guess = attempt === 0 ? this.readAhead(names, fresh, op) : null;
      const ino = await this.resolve(path, attempt > 0, names, op);
      try {
        if (guess?.ino === ino) {
          const i = await guess.inode;
          if (i) return i;
        }
        return await this.inode(ino, fresh || attempt > 0, op);
      } catch (err) {
        if (!(err instanceof FsError && err.errno === 'ENOENT') || attempt >= 3) throw err;
        this.attrs.delete(ino);
      }
    }
  }

  /**
   * When the last name of a path must be looked up again (its entry expired)
   * and it named an inode whose attributes must be read too, read that inode
   * while the name is looked up: one round trip instead of two when the name
   * still names it (the usual case: stat, or the lookup before an unlink, of a
   * file seen more than a second ago). Both reads start after the call did, so
   * the answer is as fresh as reading them one after the other.
   */
  private readAhead(names: Buffer[], fresh: boolean, op?: CallOpts): { ino: Ino; inode: Promise<Inode | null> } | null {
    if (names.length === 0) return null;
    let dir = ROOT_INO;
    for (let k = 0; k < names.length - 1; k++) {
      const d = this.entries.get(this.entryKey(dir, names[k]!));
      if (!d) return null;
      dir = d.ino;
    }
    const k = this.entryKey(dir, names.at(-1)!);
    if (this.entries.get(k) !== undefined) return null;
    const last = this.entries.getStale(k);
    if (!last) return null;
    const open = this.files.get(last.ino);
    if (open && (open.dirty || !fresh)) return null;
    if (!fresh && this.attrs.get(last.ino)) return null;
    return { ino: last.ino, inode: this.inode(last.ino, fresh, op).catch(() => null) };
  }

  async getattr(path: string, op?: CallOpts): Promise<Stat> {
    const hiddenIno = this.hidden.size > 0 ? this.hidden.get(path) : undefined;
    if (hiddenIno !== undefined) {
      const open = this.files.get(hiddenIno);
      if (!open) throw new FsError('ENOENT');
      return this.toStat(open.inode);
    }
    return this.toStat(await this.inodeAt(path, false, op));
  }

  async fgetattr(fh: number): Promise<Stat> {
    return this.toStat(this.handle(fh).file.inode);
  }

  async readdir(path: string, op?: CallOpts): Promise<Array<{ name: string; stat: Stat | null }>> {
    const dir = await this.resolveDir(path, op);
    const out: Array<{ name: string; stat: Stat | null }> = [];
    const seen: Array<{ name: Buffer; dirent: Dirent }> = [];
    let after: Buffer | null = null;
    for (;;) {
      let page: Awaited<ReturnType<FsMeta['readdir']>>;
      try {
        page = await this.meta.readdir(dir, after, 1000, op);
      } catch (err) {
        const last = after === null ? this.listings.get(dir) : undefined;
        const entries = this.stale(err, last);
        const inodes = entries.map((e) => this.attrs.getStale(e.dirent.ino) ?? null);
        return entries.map((e, k) => ({ name: e.name.toString('utf8'), stat: inodes[k] ? this.toStat(inodes[k]) : null }));
      }
      const inodes = await Promise.all(page.entries.map((e) => this.inode(e.dirent.ino, false, op).catch(() => null)));
      page.entries.forEach((e, k) => {
        this.entries.set(this.entryKey(dir, e.name), e.dirent);
        seen.push(e);
        const i = inodes[k];
        out.push({ name: e.name.toString('utf8'), stat: i ? this.toStat(i) : null });
      });
      if (!page.more || page.entries.length === 0) break;
      after = page.entries.at(-1)!.name;
    }
    this.listings.set(dir, seen); // dropped instead when it alone exceeds the budget
    return out;
  }

  // ---- creating and removing names

  private async createNode(
    path: string,
    mode: number,
    caller: Caller,
    extra: { rdev?: number; target?: Buffer } = {},
    exclusive = true,
    op?: CallOpts,
  ): Promise<{ inode: Inode; created: boolean }> {
    const { parent, name } = parentAndName(path);
    checkName(name);
    const dir = await this.resolveDir(parent, op);
    const parentInode = await this.inode(dir, false, op);
    // setgid directories pass their group on (and the bit, to subdirectories)
    let gid = caller.gid;
    let m = mode;
    if (parentInode.mode & 0o2000) {
      gid = parentInode.gid;
      if (isDir(mode)) m |= 0o2000;
    }
    let r: { inode: Inode; created: boolean };
    const time = nowTimespec();
    try {
      r = await this.meta.create(dir, name, { mode: m, uid: caller.uid, gid, time, ...extra }, exclusive, true, op);
    } finally {
      // Created or found taken: either way a cached "no such name" is wrong now.
      this.forgetEntry(dir, name);
    }
    if (r.created) {
      this.changedEntry(dir, name);
      // What this mount just wrote answers the lookup and getattr that follow a create.
      this.entries.set(this.entryKey(dir, name), { ino: r.inode.ino, type: r.inode.mode & S_IFMT });
      this.touchedDir(dir, time, isDir(r.inode.mode) ? 1 : 0);
    } else {
      this.attrs.delete(dir);
    }
    this.remember(r.inode);
    return r;
  }

  async mkdir(path: string, mode: number, caller: Caller = ROOT_CALLER, op?: CallOpts): Promise<Stat> {
    // setgid on a new directory comes from its parent only (createNode), never from the mode
    return this.toStat((await this.createNode(path, S_IFDIR | (mode & 0o5777), caller, {}, true, op)).inode);
  }

  async mknod(path: string, mode: number, rdev: number, caller: Caller = ROOT_CALLER, op?: CallOpts): Promise<Stat> {
    const type = mode & S_IFMT || S_IFREG;
    // Devices exist as files (tar, cp -a, images); the mount is nodev, so opening them does nothing.
    // Making one needs CAP_MKNOD, which the kernel checks too; here root stands for it.
    const device = type === S_IFCHR || type === S_IFBLK;
    if (device && caller.uid !== 0) throw new FsError('EPERM', 'making a device node needs CAP_MKNOD');
    if (![S_IFREG, S_IFIFO, S_IFSOCK].includes(type) && !device) throw new FsError('EINVAL', `mknod of file type ${type.toString(8)}`);
    return this.toStat((await this.createNode(path, type | (mode & 0o7777), caller, { rdev: device ? rdev : 0 }, true, op)).inode);
  }

  async symlink(target: string, path: string, caller: Caller = ROOT_CALLER, op?: CallOpts): Promise<Stat> {
    const t = Buffer.from(target, 'utf8');
    if (t.length === 0) throw new FsError('ENOENT');
    if (t.length > 4095) throw new FsError('ENAMETOOLONG');
    return this.toStat((await this.createNode(path, S_IFLNK | 0o777, caller, { target: t }, true, op)).inode);
  }

  async readlink(path: string, op?: CallOpts): Promise<string> {
    const i = await this.inodeAt(path, false, op);
    if ((i.mode & S_IFMT) !== S_IFLNK || !i.target) throw new FsError('EINVAL');
    return i.target.toString('utf8');
  }

  async unlink(path: string, op?: CallOpts): Promise<void> {
    // the last close of a file whose name was already unlinked (HIDDEN_NAME): nothing is left in the cluster
    if (this.hidden.size > 0 && this.hidden.delete(path)) return;
    const { parent, name } = parentAndName(path);
    const dir = await this.resolveDir(parent, op);
    const d = await this.lookupCached(dir, name, op);
    if (!d) throw new FsError('ENOENT');
    this.forgetEntry(dir, name);
    const time = nowTimespec();
    const gone = await this.meta.unlink(dir, name, time, op);
    this.changedEntry(dir, name);
    this.touchedDir(dir, time, 0);
    this.attrs.delete(gone.ino);
    const open = this.files.get(gone.ino);
    if (open) open.inode.nlink = Math.max(0, open.inode.nlink - 1);
  }

  async rmdir(path: string, op?: CallOpts): Promise<void> {
    const { parent, name } = parentAndName(path);
    const dir = await this.resolveDir(parent, op);
    this.forgetEntry(dir, name);
    const time = nowTimespec();
    await this.meta.rmdir(dir, name, time, op);
    this.changedEntry(dir, name);
    this.touchedDir(dir, time, -1);
  }

  /**
   * The parent's cached attributes after this mount changed its entries: the
   * times and link count meta's background update is writing, so that the
   * getattr the kernel sends next needs no read (and no wait for that update).
   * The cache entry keeps its expiry.
   */
  private touchedDir(dir: Ino, time: Timespec, linkDelta: number): void {
    const p = this.attrs.get(dir);
    if (p) this.attrs.update(dir, { ...p, mtime: time, ctime: time, nlink: Math.max(2, p.nlink + linkDelta) });
    else this.attrs.delete(dir);
  }

  async rename(from: string, to: string, flags = 0, op?: CallOpts): Promise<void> {
    const a = parentAndName(from);
    const b = parentAndName(to);
    checkName(b.name);
    if (flags === 0 && a.parent === b.parent && isHiddenPath(to) && !isHiddenPath(from)) {
      const ino = (await this.lookupCached(await this.resolveDir(a.parent, op), a.name, op))?.ino;
      if (ino !== undefined && this.files.has(ino)) {
        // libfuse hiding an open file it was asked to unlink: unlink it, keep the hidden path here
        await this.unlink(from, op);
        this.hidden.set(to, ino);
        return;
      }
    }
    const srcDir = await this.resolveDir(a.parent, op);
    const dstDir = await this.resolveDir(b.parent, op);
    const RENAME_NOREPLACE = 1;
    const RENAME_EXCHANGE = 2;
    // RENAME_WHITEOUT: overlayfs's, not served (the binding refuses it before it arrives); NOREPLACE with EXCHANGE makes no sense (Linux: EINVAL)
    if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) !== 0 || flags === (RENAME_NOREPLACE | RENAME_EXCHANGE)) throw new FsError('EINVAL');
    this.forgetEntry(srcDir, a.name);
    this.forgetEntry(dstDir, b.name);
    if (flags & RENAME_EXCHANGE) {
      const swapped = await this.meta.exchange(srcDir, a.name, dstDir, b.name, op);
      this.changedEntry(srcDir, a.name);
      this.changedEntry(dstDir, b.name);
      this.attrs.delete(srcDir);
      this.attrs.delete(dstDir);
      this.attrs.delete(swapped.src.ino);
      this.attrs.delete(swapped.dst.ino);
      return;
    }
    const replaced = await this.meta.lookup(dstDir, b.name, op);
    // only when the name it replaces belongs to a file open here: is it another file than the one moved?
    const moved = replaced && this.files.has(replaced.ino) ? await this.meta.lookup(srcDir, a.name, op) : null;
    await this.meta.rename(srcDir, a.name, dstDir, b.name, { noReplace: (flags & RENAME_NOREPLACE) !== 0 }, op);
    this.changedEntry(srcDir, a.name);
    this.changedEntry(dstDir, b.name);
    this.attrs.delete(srcDir);
    this.attrs.delete(dstDir);
    if (replaced) {
      this.attrs.delete(replaced.ino);
      // a replaced file still open here lost a name (through a mount, libfuse hides an open target
      // first, so this is for the vfs's other callers: the in-memory mount and the POSIX runner)
      const open = this.files.get(replaced.ino);
      if (open && moved && moved.ino !== replaced.ino) open.inode.nlink = Math.max(0, open.inode.nlink - 1);
    }
  }

  async link(existing: string, path: string, op?: CallOpts): Promise<Stat> {
    const ino = await this.resolve(existing, false, split(existing), op);
    const { parent, name } = parentAndName(path);
    checkName(name);
    const dir = await this.resolveDir(parent, op);
    this.forgetEntry(dir, name);
    const i = await this.meta.link(ino, dir, name, op);
    this.changedEntry(dir, name);
    this.attrs.delete(dir);
    return this.toStat(this.remember(i));
  }

  // ---- attributes

  /**
   * Attribute changes of a file this mount is writing are applied to the open
   * file and published with its data at close (one record write instead of one
   * per call: tar sets times, owner and mode on each file before closing it).
   * Other mounts see them at close, as they see the data (close-to-open).
   */
  private async setattr(ino: Ino, fn: (i: Inode) => void, op?: CallOpts): Promise<Inode> {
    const open = this.files.get(ino);
    if (open && open.dirty && open.inode.nlink > 0) {
      fn(open.inode);
      open.attrsChanged();
      return open.inode;
    }
    const i = await this.meta.changeInode(ino, fn, op);
    return this.remember(i);
  }

  async chmod(path: string, mode: number, caller: Caller = ROOT_CALLER, op?: CallOpts): Promise<void> {
    const ino = await this.resolve(path, false, split(path), op);
    await this.setattr(ino, (i) => {
      // A write or truncate by another user makes the kernel clear setuid and
      // setgid first ("kill priv", a forced chmod on the writer's behalf):
      // a chmod that only clears those bits is allowed to anyone. A user's own
      // chmod of a file it does not own never gets here on a mount: the
      // kernel refuses it (default_permissions).
      const old = i.mode & 0o7777;
      const next = mode & 0o7777;
      const onlyKillsPriv = next !== old && (next & ~old) === 0 && ((old & ~next) & ~0o6000) === 0;
      if (caller.uid !== 0 && caller.uid !== i.uid && !onlyKillsPriv) throw new FsError('EPERM');
      let m = mode & 0o7777;
      // a non-member may not set the setgid bit on a file
      if (caller.uid !== 0 && !inGroup(caller, i.gid) && !isDir(i.mode) && !onlyKillsPriv) m &= ~0o2000;
      i.mode = (i.mode & S_IFMT) | m;
      i.ctime = nowTimespec();
    }, op);
  }

  async chown(path: string, uid: number, gid: number, caller: Caller = ROOT_CALLER, op?: CallOpts): Promise<void> {
    const ino = await this.resolve(path, false, split(path), op);
    const keep = 0xffffffff;
    await this.setattr(ino, (i) => {
      const newUid = uid === keep || uid === -1 ? i.uid : uid;
      const newGid = gid === keep || gid === -1 ? i.gid : gid;
      if (caller.uid !== 0) {
        if (newUid !== i.uid || caller.uid !== i.uid) throw new FsError('EPERM');
        if (newGid !== i.gid && !inGroup(caller, newGid)) throw new FsError('EPERM');
      }
      i.uid = newUid;
      i.gid = newGid;
      // As Linux: every chown of a non-directory clears setuid, and setgid when
      // group-execute is set (without it, setgid means mandatory locking, kept).
      if (!isDir(i.mode)) {
        i.mode &= ~0o4000;
        if (i.mode & 0o010) i.mode &= ~0o2000;
      }
      i.ctime = nowTimespec();
    }, op);
  }

  async utimens(path: string, atime: TimeSet, mtime: TimeSet, op?: CallOpts): Promise<void> {
    const ino = await this.resolve(path, false, split(path), op);
    const now = nowTimespec();
    const pick = (t: TimeSet, cur: Timespec): Timespec => (t === 'omit' ? cur : t === 'now' ? now : t);
    const i = await this.setattr(ino, (x) => {
      x.atime = pick(atime, x.atime);
      x.mtime = pick(mtime, x.mtime);
      x.ctime = now;
    }, op);
    const open = this.files.get(ino);
    if (open) {
      open.inode.mtime = i.mtime;
      open.inode.atime = i.atime;
    }
  }

  async truncate(path: string, size: number): Promise<void> {
    if (size < 0) throw new FsError('EINVAL');
    const ino = await this.resolve(path);
    const fh = await this.openIno(ino, O_WRONLY);
    try {
      await this.ftruncate(fh, size);
      await this.flush(fh);
    } finally {
      await this.release(fh).catch(() => {});
    }
  }

  async ftruncate(fh: number, size: number): Promise<void> {
    if (size < 0) throw new FsError('EINVAL');
    const h = this.handle(fh);
    if (isDir(h.file.inode.mode)) throw new FsError('EISDIR');
    if ((h.flags & O_ACCMODE) === 0) throw new FsError('EINVAL', 'descriptor not open for writing');
    await h.file.truncate(size);
  }

  // ---- extended attributes

  async setxattr(path: string, name: string, value: Buffer, flags: number, op?: CallOpts): Promise<void> {
    if (name.length === 0 || Buffer.byteLength(name) > XATTR_NAME_MAX) throw new FsError('ERANGE');
    if (value.length > XATTR_VALUE_MAX) throw new FsError('E2BIG');
    // system.* (POSIX ACLs) is not stored as plain bytes: cp -a and tar then fall back to chmod.
    if (!/^(user|trusted|security)\./.test(name)) throw new FsError('ENOTSUP');
    const ino = await this.resolve(path, false, split(path), op);
    await this.setattr(ino, (i) => {
      const exists = i.xattrs.has(name);
      if (flags & XATTR_CREATE && exists) throw new FsError('EEXIST');
      if (flags & XATTR_REPLACE && !exists) throw new FsError('ENODATA');
      let total = 0;
      for (const [k, v] of i.xattrs) if (k !== name) total += k.length + v.length;
      if (total + name.length + value.length > XATTR_TOTAL_MAX) throw new FsError('ENOSPC');
      i.xattrs.set(name, Buffer.from(value));
      i.ctime = nowTimespec();
    }, op);
  }

  async getxattr(path: string, name: string, op?: CallOpts): Promise<Buffer> {
    const i = await this.inode(await this.resolve(path, false, split(path), op), false, op);
    const v = i.xattrs.get(name);
    if (!v) throw new FsError('ENODATA');
    return v;
  }

  async listxattr(path: string, op?: CallOpts): Promise<string[]> {
    const i = await this.inode(await this.resolve(path, false, split(path), op), false, op);
    return [...i.xattrs.keys()];
  }

  async removexattr(path: string, name: string, op?: CallOpts): Promise<void> {
    const ino = await this.resolve(path, false, split(path), op);
    await this.setattr(ino, (i) => {
      if (!i.xattrs.delete(name)) throw new FsError('ENODATA');
      i.ctime = nowTimespec();
    }, op);
  }

  // ---- open files

  private handle(fh: number): Handle {
    const h = this.handles.get(fh);
    if (!h) throw new FsError('EBADF');
    return h;
  }

  /** `fresh`: the inode just read, so that it is not read again (it may be gone by then). */
  private async openIno(ino: Ino, flags: number, fresh?: Inode, op?: CallOpts): Promise<number> {
    let file = this.files.get(ino);
    if (file) {
      file.revalidate(fresh ?? (await this.inode(ino, true, op)));
    } else {
      const i = fresh ?? (await this.inode(ino, true, op));
      file = new OpenFile(i, this.meta, this.chunks, this.cache, this.budget, this.opts.log, {
        track: (work) => {
          this.background.add(work);
          void work.finally(() => this.background.delete(work));
        },
        stopped: () => this.stopping,
        touch: (ino) => {
          // bounded: forgetting only lets a compaction start a little early
          if (this.activity.size >= 10_000 && !this.activity.has(ino)) this.activity.clear();
          this.activity.set(ino, Date.now());
        },
        lastIo: (ino) => this.activity.get(ino) ?? 0,
        publishGate: (ino) => this.locks.publishGate(ino as Ino),
      });
      this.files.set(ino, file);
    }
    file.handles++;
    const fh = this.nextFh++;
    this.handles.set(fh, { file, flags });
    return fh;
  }

  async open(path: string, flags: number, op?: CallOpts): Promise<number> {
    return (await this.openChecked(path, flags, op)).fh;
  }

  /**
   * open(2), also telling whether the file changed since this mount last
   * described it, so that the caller can drop the kernel's cached attributes
   * (close-to-open: the size another mount published must show at once).
   */
  async openChecked(path: string, flags: number, op?: CallOpts): Promise<{ fh: number; changed: boolean }> {
    const cachedIno = await this.resolve(path, false, split(path), op);
    const before = this.attrs.get(cachedIno);
    const i = await this.inodeAt(path, true, op);
    const ino = i.ino;
    const changed = !before || before.size !== i.size || before.mtime.sec !== i.mtime.sec || before.mtime.nsec !== i.mtime.nsec;
    if (isDir(i.mode) && (flags & O_ACCMODE) !== 0) throw new FsError('EISDIR');
    const fh = await this.openIno(ino, flags, i);
    if (flags & O_TRUNC && (flags & O_ACCMODE) !== 0 && !isDir(i.mode)) {
      await this.handle(fh).file.truncate(0);
    }
    return { fh, changed };
  }

  async create(path: string, mode: number, flags: number, caller: Caller = ROOT_CALLER, op?: CallOpts): Promise<number> {
    const exclusive = (flags & O_EXCL) !== 0;
    const { inode, created } = await this.createNode(path, S_IFREG | (mode & 0o7777), caller, {}, exclusive, op);
    if (!created && isDir(inode.mode)) throw new FsError('EISDIR');
    // The inode was just written (created) or just read (found): no need to read it again.
    const fh = await this.openIno(inode.ino, flags, inode);
    if (created) this.handle(fh).file.markNew();
    if (!created && flags & O_TRUNC) await this.handle(fh).file.truncate(0);
    return fh;
  }

  /**
   * Up to `len` bytes at `pos`; with `into` (at least `len` bytes), they are
   * written there and the answer is `into` cut to what was read: FUSE's own
   * buffer, so a read costs no buffer of its own and no second copy.
   */
  async read(fh: number, pos: number, len: number, into?: Buffer): Promise<Buffer> {
    const h = this.handle(fh);
    if ((h.flags & O_ACCMODE) === O_WRONLY) throw new FsError('EBADF');
    try {
      return await h.file.read(pos, len, into);
    } catch (err) {
      throw asFsError(err);
    }
  }

  async write(fh: number, pos: number, data: Buffer): Promise<number> {
    const h = this.handle(fh);
    if ((h.flags & O_ACCMODE) === 0) throw new FsError('EBADF');
    const at = h.flags & O_APPEND ? h.file.inode.size : pos;
    if (at + data.length > Number.MAX_SAFE_INTEGER) throw new FsError('EFBIG');
    if (this.locks.isFenced(h.file.inode.ino)) throw new LocksLostError();
    try {
      return await h.file.write(at, data);
    } catch (err) {
      throw asFsError(err);
    }
  }

  async flush(fh: number): Promise<void> {
    const h = this.handle(fh);
    if (h.file.inode.nlink === 0) return; // removed while open: nothing to publish
    await h.file.flush();
    this.attrs.set(h.file.inode.ino, h.file.inode);
    // Close of a written file and fsync: the names written behind too (the one it was created under among them).
    if ((h.flags & O_ACCMODE) !== 0) await this.flushNames();
  }

  private async flushNames(): Promise<void> {
    await this.meta.flushNames().catch((e: unknown) => {
      throw asFsError(e);
    });
  }

  async fsync(fh: number): Promise<void> {
    await this.flush(fh);
  }

  async release(fh: number): Promise<void> {
    const h = this.handle(fh);
    this.handles.delete(fh);
    const file = h.file;
    file.handles--;
    try {
      if (file.inode.nlink > 0) await file.flush();
      if (file.inode.nlink > 0 && (h.flags & O_ACCMODE) !== 0) await this.flushNames();
    } finally {
      // the last close of the description drops its flock (libfuse also asks, when the kernel says so)
      await this.locks.releaseAll(file.inode.ino, `f${fh}`, 'flock').catch((err: unknown) => this.opts.log.warn({ err: (err as Error).message }, 'could not release a flock at close'));
      if (file.handles === 0) this.locks.unfence(file.inode.ino);
      if (file.handles === 0 && !file.dirty) this.files.delete(file.inode.ino);
      if (file.handles === 0 && file.inode.nlink === 0) {
        file.discard();
        this.files.delete(file.inode.ino);
      }
    }
  }

  // ---- locks: which file and which owner; what a lock does is src/meta/locks.ts's

  /**
   * F_SETLK (wait false) / F_SETLKW (wait true) for the kernel's lock owner
   * `owner`. Locks carry coherence, as NFS's do: what this mount wrote is
   * published before a lock is released or downgraded, and a lock granted
   * re-reads the file, so that it sees what the previous holder published on
   * any mount. `changed`: the file changed since this mount last described it
   * (the kernel's cached pages and attributes must go).
   */
  async setlk(fh: number, owner: string, lock: FcntlLock, wait: boolean, signal?: AbortSignal): Promise<{ changed: boolean }> {
    const file = this.handle(fh).file;
    const r = lockRange(lock);
    if (lock.type !== 'write' && file.inode.nlink > 0) await file.flush();
    await this.locks.set(file.inode.ino, { owner: `p${owner}`, kind: 'posix', type: lock.type, start: r.start, end: r.end, pid: lock.pid }, wait, signal).catch(rethrowLockError);
    return { changed: lock.type === 'unlock' ? false : await this.revalidateLocked(file) };
  }

  /** After a lock was granted: the file as the cluster has it now (unless this mount has unpublished writes). */
  private async revalidateLocked(file: OpenFile): Promise<boolean> {
    if (file.dirty || file.inode.nlink === 0) return false;
    const before = file.inode;
    const fresh = await this.inode(before.ino, true).catch(() => null);
    if (fresh === null) return false;
    const changed = fresh.size !== before.size || fresh.mtime.sec !== before.mtime.sec || fresh.mtime.nsec !== before.mtime.nsec || fresh.ctime.nsec !== before.ctime.nsec || fresh.ctime.sec !== before.ctime.sec;
    if (changed) file.revalidate(fresh);
    return changed;
  }

  /** F_GETLK: the lock that would block `lock`, or null. */
  async getlk(fh: number, owner: string, lock: FcntlLock): Promise<FcntlLock | null> {
    const ino = this.handle(fh).file.inode.ino;
    const r = lockRange(lock);
    const c = await this.locks.test(ino, { owner: `p${owner}`, kind: 'posix', type: lock.type, start: r.start, end: r.end, pid: lock.pid }).catch(rethrowLockError);
    if (c === null) return null;
    // A pid means something only on this machine; a holder on another mount is shown without one.
    return { type: c.type, start: c.start, len: lengthOf(c), pid: c.session === this.locks.sessionId ? c.pid : 0 };
  }

  /** flock(2): the lock belongs to the open file description, which is the handle. */
  async flock(fh: number, type: LockType | 'unlock', wait: boolean, pid: number, signal?: AbortSignal): Promise<{ changed: boolean }> {
    const file = this.handle(fh).file;
    if (type !== 'write' && file.inode.nlink > 0) await file.flush();
    await this.locks.set(file.inode.ino, { owner: `f${fh}`, kind: 'flock', type, start: 0, end: Infinity, pid }, wait, signal).catch(rethrowLockError);
    return { changed: type === 'unlock' ? false : await this.revalidateLocked(file) };
  }

  /** Publishes every open file and directory update (unmount, SIGTERM). Returns the errors. */
  async flushAll(): Promise<Error[]> {
    const errors: Error[] = [];
    for (const f of this.files.values()) {
      if (f.inode.nlink === 0) continue;
      await f.flush().catch((e: Error) => errors.push(e));
    }
    await this.meta.close().catch((e: Error) => errors.push(e));
    // queued compactions are dropped (an optimisation, redone by a later mount); one running ends first
    this.stopping = true;
    await this.backgroundIdle();
    // the session ends: other mounts get its locks at once instead of after its lease
    await this.locks.stop();
    return errors;
  }

  /** fsync of a directory: its entries are durable already; wait for its times too. */
  async fsyncdir(): Promise<void> {
    await this.meta.settle().catch((e: unknown) => {
      throw asFsError(e);
    });
  }

  get openFiles(): number {
    return this.files.size;
  }

  async access(path: string, mode: number, caller: Caller = ROOT_CALLER, op?: CallOpts): Promise<void> {
    const i = await this.inode(await this.resolve(path, false, split(path), op), false, op);
    if (mode === 0 || caller.uid === 0) {
      if (caller.uid === 0 && mode & 1 && !isDir(i.mode) && (i.mode & 0o111) === 0) throw new FsError('EACCES');
      return;
    }
    const bits = caller.uid === i.uid ? (i.mode >> 6) & 7 : caller.gid === i.gid ? (i.mode >> 3) & 7 : i.mode & 7;
    if ((bits & mode) !== mode) throw new FsError('EACCES');
  }

  async statfs(): Promise<StatFs> {
    const bsize = 4096;
    const cap = this.opts.capacity ? await this.opts.capacity() : { totalBytes: 1 << 40, freeBytes: 1 << 40 };
    const r = this.meta.sb.replication;
    const blocks = Math.floor(cap.totalBytes / r / bsize);
    const bfree = Math.floor(cap.freeBytes / r / bsize);
    const files = 2 ** 32;
    return { bsize, frsize: bsize, blocks, bfree, bavail: bfree, files, ffree: files, favail: files, namemax: 255 };
  }
}

/** Key-space failures reach callers as EIO, or ENOSPC when a node is full. */
export function asFsError(err: unknown): FsError {
  if (err instanceof FsError) return err;
  const q = toQfsError(err);
  return new FsError(q.code === 'no_space' ? 'ENOSPC' : 'EIO', q.message);
}

function lockRange(lock: FcntlLock): { start: number; end: number } {
  try {
    return rangeOf(lock.start, lock.len);
  } catch (err) {
    throw new FsError('EINVAL', (err as Error).message);
  }
}

/** Lock errors keep their errno; a cluster failure while locking is ENOLCK, not a silent success. */
function rethrowLockError(err: unknown): never {
  if (err instanceof FsError) throw err;
  throw new FsError('ENOLCK', toQfsError(err).message);
}
