// The table from FUSE callbacks to vfs calls: one vfs call per handler, no
// POSIX decisions here. Each call is timed for the access log (debug level).
import { constants } from 'node:os';
import type { Logger } from '../util/log.js';
import { FsError } from '../meta/errors.js';
import { O_CREAT, O_EXCL, O_RDWR, type CallOpts, type Stat as VfsStat, type Vfs } from '../vfs/vfs.js';
import type { Caller, FlockOp, FuseLock, FuseOps, LockCmd, Stat } from './binding.js';
import { supplementaryGroups } from './caller-groups.js';
import { errnoOf } from './errno.js';

function fuseStat(s: VfsStat): Stat {
  return {
    ino: s.ino,
    mode: s.mode,
    nlink: s.nlink,
    uid: s.uid,
    gid: s.gid,
    size: s.size,
    rdev: s.rdev,
    blocks: s.blocks,
    blksize: s.blksize,
    atime: s.atime,
    mtime: s.mtime,
    ctime: s.ctime,
    noXattrs: !s.hasXattrs,
  };
}

export interface OpCounters {
  calls: Map<string, number>;
  errors: Map<string, number>;
}

export interface KernelCache {
  /** Drops the kernel's cached attributes of a path. */
  invalidate(path: string): void;
  /** Drops the kernel's cached attributes and pages of a path; resolves once they are gone. */
  invalidateData?(path: string): Promise<void>;
}

/**
 * How long one metadata operation (a lookup, create, rename, chmod, ...) may
 * take in all, from the FUSE callback down to every key-space call it makes
 * (CallOpts.deadline): each call gets the rest of it, at most its own request
 * timeout. Set below the binding's callback timeout, so that an operation that
 * runs out answers EIO itself instead of the binding answering a default.
 */
export const DEFAULT_OPERATION_MS = 10_000;

export function vfsOps(vfs: Vfs, log: Logger, counters?: OpCounters, kernel?: KernelCache, operationMs = DEFAULT_OPERATION_MS): FuseOps {
  const op$ = (): CallOpts => ({ deadline: Date.now() + operationMs });
  const access = log.child({ component: 'access' });
  const debug = access.isLevelEnabled('debug');
  // Wraps a handler: counts it and, at debug level, logs one line with its duration
  // and errno. Every FUSE request passes here: no async frame of its own, only the
  // handler's promise with a rejection mapper (and the timing only at debug level).
  const op = <A extends unknown[], R>(name: string, fn: (c: Caller, ...args: A) => Promise<R>) => {
    // The one place a handler's error becomes the errno FUSE answers.
    const errnoError = (err: unknown): Error & { errno: number } => {
      const n = errnoOf(err, log);
      counters?.errors.set(name, (counters.errors.get(name) ?? 0) + 1);
      return Object.assign(new Error(`errno ${n}`), { errno: n });
    };
    const failed = (err: unknown): never => {
      throw errnoError(err);
    };
    if (!debug) {
      return (c: Caller, ...args: A): Promise<R> => {
        counters?.calls.set(name, (counters.calls.get(name) ?? 0) + 1);
        let p: Promise<R>;
        try {
          p = fn(c, ...args);
        } catch (err) {
          return Promise.reject(err).catch(failed);
        }
        return p.catch(failed);
      };
    }
    return async (c: Caller, ...args: A): Promise<R> => {
      const t0 = performance.now();
      counters?.calls.set(name, (counters.calls.get(name) ?? 0) + 1);
      const shown = args.filter((a) => typeof a !== 'object');
      try {
        const r = await fn(c, ...args);
        access.debug({ op: name, args: shown, ms: +(performance.now() - t0).toFixed(3), errno: 0 });
        return r;
      } catch (err) {
        const e = errnoError(err);
        access.debug({ op: name, args: shown, ms: +(performance.now() - t0).toFixed(3), errno: e.errno });
        throw e;
      }
    };
  };

  return {
    statfs: op('statfs', async () => vfs.statfs()),
    getattr: op('getattr', async (_c, path: string) => fuseStat(await vfs.getattr(named(path), op$()))),
    fgetattr: op('fgetattr', async (_c, fh: number) => fuseStat(await vfs.fgetattr(fh))),
    access: op('access', async (c, path: string, mode: number) => vfs.access(path, mode, c, op$())),
    open: op('open', async (_c, path: string, flags: number) => {
      const { fh, changed } = await vfs.openChecked(path, flags, op$());
      // Another mount published a new size or mtime: the kernel's cached attributes must not hide it.
      if (changed) kernel?.invalidate(path);
      return fh;
    }),
    // the binding hands create no flags (libfuse 3 has them; not carried yet); the kernel only calls it after a lookup
    // found no such name, so it is exclusive (and an O_EXCL race has one winner).
    create: op('create', async (c, path: string, mode: number) => vfs.create(path, mode, O_CREAT | O_EXCL | O_RDWR, c, op$())),
    read: op('read', async (_c, _path: string, fh: number, buf: Buffer, len: number, offset: number) => {
      const data = await vfs.read(fh, offset, len, buf);
      if (data.buffer !== buf.buffer || data.byteOffset !== buf.byteOffset) data.copy(buf);
      return data.length;
    }),
    write: op('write', async (_c, _path: string, fh: number, buf: Buffer, len: number, offset: number) =>
      vfs.write(fh, offset, len === buf.length ? buf : buf.subarray(0, len)),
    ),
    flush: op('flush', async (_c, _path: string, fh: number) => vfs.flush(fh)),
    fsync: op('fsync', async (_c, _path: string, _datasync: boolean, fh: number) => vfs.fsync(fh)),
    fsyncdir: op('fsyncdir', async () => vfs.fsyncdir()),
    release: op('release', async (_c, _path: string, fh: number) => vfs.release(fh)),
    truncate: op('truncate', async (_c, path: string, size: number) => vfs.truncate(named(path), size)),
    ftruncate: op('ftruncate', async (_c, _path: string, fh: number, size: number) => vfs.ftruncate(fh, size)),
    readdir: op('readdir', async (_c, path: string) => {
      if (path === '') return { names: [], stats: [] }; // a removed directory still open: nothing in it
      const entries = await vfs.readdir(path, op$());
      const present = entries.filter((e) => e.stat !== null);
      return { names: present.map((e) => e.name), stats: present.map((e) => fuseStat(e.stat!)) };
    }),
    readlink: op('readlink', async (_c, path: string) => vfs.readlink(path, op$())),
    chown: op('chown', async (c, path: string, uid: number, gid: number) => {
      const o = op$();
      return vfs.chown(named(path), uid, gid, c.uid !== 0 && gid !== c.gid && gid !== -1 && gid !== 0xffffffff ? { ...c, groups: await supplementaryGroups(c.pid) } : c, o);
    }),
    chmod: op('chmod', async (c, path: string, mode: number) => {
      const o = op$();
      return vfs.chmod(named(path), mode, c.uid !== 0 && mode & 0o2000 ? { ...c, groups: await supplementaryGroups(c.pid) } : c, o);
    }),
    mknod: op('mknod', async (c, path: string, mode: number, dev: number) => {
      await vfs.mknod(path, mode, dev, c, op$());
    }),
    setxattr: op('setxattr', async (_c, path: string, name: string, value: Buffer, flags: number) => vfs.setxattr(path, name, Buffer.from(value), flags, op$())),
    getxattr: op('getxattr', async (_c, path: string, name: string) => {
      try {
        return await vfs.getxattr(path, name, op$());
      } catch (err) {
        if (err instanceof FsError && err.errno === 'ENODATA') return null;
        throw err;
      }
    }),
    listxattr: op('listxattr', async (_c, path: string) => vfs.listxattr(path, op$())),
    removexattr: op('removexattr', async (_c, path: string, name: string) => vfs.removexattr(path, name, op$())),
    utimens: op('utimens', async (_c, path: string, atime, mtime) => vfs.utimens(named(path), atime, mtime, op$())),
    unlink: op('unlink', async (_c, path: string) => vfs.unlink(path, op$())),
    rename: op('rename', async (_c, from: string, to: string, flags: number) => vfs.rename(from, to, flags, op$())),
    link: op('link', async (_c, existing: string, path: string) => {
      await vfs.link(existing, path, op$());
    }),
    symlink: op('symlink', async (c, target: string, path: string) => {
      await vfs.symlink(target, path, c, op$());
    }),
    mkdir: op('mkdir', async (c, path: string, mode: number) => {
      await vfs.mkdir(path, mode, c, op$());
    }),
    rmdir: op('rmdir', async (_c, path: string) => vfs.rmdir(path, op$())),
    // A granted lock that finds the file changed by another mount drops what the
    // kernel cached of it before the caller goes on (lock-time coherence, as NFS).
    lock: op('lock', async (_c, path: string, fh: number, cmd: LockCmd, lock: FuseLock, owner: string, signal: AbortSignal) => {
      if (cmd === 'getlk') return vfs.getlk(fh, owner, lock);
      const { changed } = await vfs.setlk(fh, owner, lock, cmd === 'setlkw', signal);
      if (changed && path !== '') await kernel?.invalidateData?.(path);
      return null;
    }),
    flock: op('flock', async (c, path: string, fh: number, kind: FlockOp, wait: boolean, _owner: string, signal: AbortSignal) => {
      const { changed } = await vfs.flock(fh, kind === 'shared' ? 'read' : kind === 'exclusive' ? 'write' : 'unlock', wait, c.pid, signal);
      if (changed && path !== '') await kernel?.invalidateData?.(path);
    }),
  };
}

export const ERRNO = constants.errno;

/**
 * An op on an open file whose path libfuse cannot compute any more (a
 * directory above it was removed while it was open) comes with "" (binding
 * patch 9). Reads, writes, flush, fsync, release and locks go by handle; the
 * ops that go by name answer ENOENT, as the name is gone.
 */
function named(path: string): string {
  if (path === '') throw new FsError('ENOENT', 'the file has no path any more (a directory above it was removed)');
  return path;
}
