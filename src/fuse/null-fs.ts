// A filesystem that does nothing: a root directory holding one file whose
// writes are counted and dropped and whose reads are zeros. Mounted through
// the same binding, it is the ceiling every quorumfs benchmark is held
// against (scripts/bench/null-fuse.ts; docs/fuse-binding.md).
import { constants as osConstants } from 'node:os';
import type { Caller, FuseOps, Stat, StatFs, Timespec } from './binding.js';

const { ENOENT, EISDIR, EACCES } = osConstants.errno;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

function fsError(errno: number): Error {
  return Object.assign(new Error(`errno ${errno}`), { errno });
}

export interface NullFsOptions {
  /** The one file's name in the root directory (default "data"). */
  name?: string;
  /** Its size until it is truncated or written (default 1 GiB). */
  size?: number;
}

/** What the null filesystem saw, for benchmarks and tests. */
export interface NullFsCounters {
  writes: number;
  bytesWritten: number;
  maxWrite: number;
  reads: number;
  bytesRead: number;
  maxRead: number;
}

export interface NullFs {
  ops: FuseOps;
  counters: NullFsCounters;
}

export function nullFs(options: NullFsOptions = {}): NullFs {
  const name = options.name ?? 'data';
  const file = '/' + name;
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const start: Timespec = { sec: Math.floor(Date.now() / 1000), nsec: 0 };
  let size = options.size ?? 1024 ** 3;
  let mtime = start;
  const counters: NullFsCounters = { writes: 0, bytesWritten: 0, maxWrite: 0, reads: 0, bytesRead: 0, maxRead: 0 };

  const stat = (path: string): Stat => {
    if (path === '/') {
      return { ino: 1, mode: S_IFDIR | 0o755, nlink: 2, uid, gid, size: 4096, blocks: 8, blksize: 4096, atime: start, mtime: start, ctime: start };
    }
    if (path === file) {
      return { ino: 2, mode: S_IFREG | 0o644, nlink: 1, uid, gid, size, blocks: Math.ceil(size / 512), blksize: 131072, atime: mtime, mtime, ctime: mtime };
    }
    throw fsError(ENOENT);
  };
  const fileOnly = (path: string): void => {
    if (path === '/') throw fsError(EISDIR);
    if (path !== file) throw fsError(ENOENT);
  };

  const ops: FuseOps = {
    getattr: (_c: Caller, path: string) => stat(path),
    statfs: (): StatFs => ({ bsize: 4096, frsize: 4096, blocks: 1 << 30, bfree: 1 << 30, bavail: 1 << 30, files: 2, ffree: 0, favail: 0, namemax: 255 }),
    readdir: (_c: Caller, path: string) => {
      if (path !== '/') throw fsError(ENOENT);
      return { names: [name] };
    },
    open: (_c: Caller, path: string) => {
      fileOnly(path);
      return 1;
    },
    create: (_c: Caller, path: string) => {
      if (path !== file) throw fsError(EACCES);
      size = 0;
      return 1;
    },
    truncate: (_c: Caller, path: string, length: number) => {
      fileOnly(path);
      size = length;
    },
    ftruncate: (_c: Caller, _path: string, _fh: number, length: number) => {
      size = length;
    },
    read: (_c: Caller, _path: string, _fh: number, buf: Buffer, len: number, offset: number) => {
      const n = Math.max(0, Math.min(len, size - offset));
      buf.fill(0, 0, n);
      counters.reads++;
      counters.bytesRead += n;
      if (n > counters.maxRead) counters.maxRead = n;
      return n;
    },
    write: (_c: Caller, _path: string, _fh: number, _buf: Buffer, len: number, offset: number) => {
      counters.writes++;
      counters.bytesWritten += len;
      if (len > counters.maxWrite) counters.maxWrite = len;
      if (offset + len > size) size = offset + len;
      return len;
    },
    utimens: () => {
      mtime = { sec: Math.floor(Date.now() / 1000), nsec: 0 };
    },
    flush: () => {},
    fsync: () => {},
    release: () => {},
  };
  return { ops, counters };
}
