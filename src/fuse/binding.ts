// The typed, promise-based face of the patched fuse-native binding, built on
// libfuse 3 (patches/fuse-native@2.2.6.patch; docs/fuse-binding.md). Thin on purpose:
// it maps handler results and thrown errors to what fuse-native expects, builds
// the mount options, and works around the path API's stale hard-link
// attributes. What an op means is the vfs's business, not this file's.
//
// The process that mounts must never do I/O on its own mount: every callback
// is served on this one JavaScript thread, and a syscall on the mount from this
// thread waits for a callback that can never run (seen as ETIMEDOUT on Node 20).
import { readFile, realpath, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';

export interface Timespec {
  sec: number;
  nsec: number;
}

/** A time given to utimens: a value, "now", or "leave unchanged" (UTIME_NOW / UTIME_OMIT). */
export type TimeSet = Timespec | 'now' | 'omit';

/** Who made the request (fuse_get_context()): the caller's fsuid/fsgid, pid and umask. */
export interface Caller {
  uid: number;
  gid: number;
  pid: number;
  umask: number;
}

export interface Stat {
  /** Up to 2^53; shown as st_ino with `useIno` (the default). */
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  rdev?: number;
  blocks?: number;
  blksize?: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
  /**
   * The file has no extended attributes: getxattr and listxattr of this path are
   * then answered in C, without a trip into JS, for the attribute timeout
   * (`cacheXattrs`).
   */
  noXattrs?: boolean;
}

/** Block counts travel as 32-bit numbers: scale frsize for volumes over 2^32 blocks. */
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
  fsid?: number;
  flag?: number;
}

export type Awaitable<T> = T | Promise<T>;

/** A POSIX lock as fcntl passes it (l_whence SEEK_SET; len 0: to the end of the file). */
export interface FuseLock {
  type: 'read' | 'write' | 'unlock';
  start: number;
  len: number;
  /** The caller's pid (requests); the holder's pid, or 0 when unknown here (F_GETLK answers). */
  pid: number;
}

/** fcntl's lock commands, as libfuse passes them. */
export type LockCmd = 'getlk' | 'setlk' | 'setlkw';
/** flock(2)'s operation without LOCK_NB (which comes as `wait` false). */
export type FlockOp = 'shared' | 'exclusive' | 'unlock';

/**
 * The filesystem's handlers. Each gets the caller first, then the op's own
 * arguments, and returns a value or throws; a throw becomes -errno through
 * `MountOptions.toErrno`. Buffers given to read/write/setxattr point into
 * libfuse's memory and are detached once the handler has answered: copy what
 * must outlive the call. An op left out answers ENOSYS (getattr: only "/").
 */
export interface FuseOps {
  init?(): Awaitable<void>;
  statfs?(c: Caller, path: string): Awaitable<StatFs>;
  getattr?(c: Caller, path: string): Awaitable<Stat>;
  access?(c: Caller, path: string, mode: number): Awaitable<void>;
  /** Returns the file handle (fh) that later ops on this open file get. */
  open?(c: Caller, path: string, flags: number): Awaitable<number>;
  opendir?(c: Caller, path: string, flags: number): Awaitable<number>;
  /** The binding passes no open flags to create (libfuse 3 has them; not carried yet). Returns the file handle. */
  create?(c: Caller, path: string, mode: number): Awaitable<number>;
  /** Fills buf[0..len) and returns the number of bytes read. */
  read?(c: Caller, path: string, fh: number, buf: Buffer, len: number, offset: number): Awaitable<number>;
  /** Returns the number of bytes written. */
  write?(c: Caller, path: string, fh: number, buf: Buffer, len: number, offset: number): Awaitable<number>;
  flush?(c: Caller, path: string, fh: number): Awaitable<void>;
  fsync?(c: Caller, path: string, datasync: boolean, fh: number): Awaitable<void>;
  fsyncdir?(c: Caller, path: string, datasync: boolean, fh: number): Awaitable<void>;
  release?(c: Caller, path: string, fh: number): Awaitable<void>;
  releasedir?(c: Caller, path: string, fh: number): Awaitable<void>;
  truncate?(c: Caller, path: string, size: number): Awaitable<void>;
  ftruncate?(c: Caller, path: string, fh: number, size: number): Awaitable<void>;
  /** Names without "." and ".."; stats, when given, are parallel to names. */
  readdir?(c: Caller, path: string): Awaitable<{ names: readonly string[]; stats?: readonly Stat[] }>;
  readlink?(c: Caller, path: string): Awaitable<string>;
  chown?(c: Caller, path: string, uid: number, gid: number): Awaitable<void>;
  chmod?(c: Caller, path: string, mode: number): Awaitable<void>;
  mknod?(c: Caller, path: string, mode: number, dev: number): Awaitable<void>;
  setxattr?(c: Caller, path: string, name: string, value: Buffer, flags: number): Awaitable<void>;
  /** null: no such attribute (ENODATA). */
  getxattr?(c: Caller, path: string, name: string): Awaitable<Buffer | null>;
  listxattr?(c: Caller, path: string): Awaitable<readonly string[]>;
  removexattr?(c: Caller, path: string, name: string): Awaitable<void>;
  utimens?(c: Caller, path: string, atime: TimeSet, mtime: TimeSet): Awaitable<void>;
  unlink?(c: Caller, path: string): Awaitable<void>;
  /** `flags`: renameat2's; RENAME_NOREPLACE (1) and RENAME_EXCHANGE (2) reach JS, RENAME_WHITEOUT is refused in C. */
  rename?(c: Caller, from: string, to: string, flags: number): Awaitable<void>;
  /** fstat of an open file libfuse has no path for any more (a directory above it was removed): by handle. */
  fgetattr?(c: Caller, fh: number): Awaitable<Stat>;
  link?(c: Caller, existing: string, path: string): Awaitable<void>;
  symlink?(c: Caller, target: string, path: string): Awaitable<void>;
  mkdir?(c: Caller, path: string, mode: number): Awaitable<void>;
  rmdir?(c: Caller, path: string): Awaitable<void>;
  /**
   * fcntl locks. `owner` is the kernel's lock owner (hex): one per process's file
   * table. 'getlk' answers the lock that would block `lock` (null: none);
   * 'setlkw' may wait, until `signal` aborts (the kernel interrupted the call:
   * answer EINTR). libfuse also calls 'setlk' with 'unlock' over the whole file
   * at every flush (close), with the closing process's owner.
   */
  lock?(c: Caller, path: string, fh: number, cmd: LockCmd, lock: FuseLock, owner: string, signal: AbortSignal): Awaitable<FuseLock | null | void>;
  /** flock(2) on the open file `fh`; `wait` false for LOCK_NB; `signal` as for lock. */
  flock?(c: Caller, path: string, fh: number, op: FlockOp, wait: boolean, owner: string, signal: AbortSignal): Awaitable<void>;
}

export type OpName = keyof FuseOps;

export interface MountOptions {
  /** Source shown in /proc/mounts (fsname=). */
  fsname: string;
  /** Type shown as fuse.<subtype>. */
  subtype: string;
  /** Let other users use the mount (root can always; others need user_allow_other in /etc/fuse.conf). */
  allowOther: boolean;
  /** The kernel checks permissions from mode/uid/gid (no access calls for it). */
  defaultPermissions: boolean;
  /**
   * Writes of up to maxWrite bytes instead of 4 KiB pages (32 MB/s → 400+ MB/s on a
   * null fs). libfuse 3 always allows big writes; false asks for max_write=4096.
   * maxWrite also sets the largest request the kernel sends (max_pages, up to 1 MiB).
   */
  bigWrites: boolean;
  maxWrite: number;
  /** max_readahead= for the connection in bytes (undefined: the kernel's offer; it can only lower the bdi's). */
  maxReadahead: number | undefined;
  /**
   * The mount's read-ahead window in KiB, written to /sys/class/bdi/<dev>/read_ahead_kb
   * once the mount is live (root only; undefined: the kernel's 128 KiB). The kernel
   * sends buffered reads in requests of at most this size, so with libfuse 3's
   * 1 MiB requests it is what makes reads big (docs/fuse-binding.md).
   */
  readAheadKb: number | undefined;
  /** Seconds the kernel caches names, attributes, and missing names. */
  entryTimeout: number;
  attrTimeout: number;
  negativeTimeout: number;
  /** st_ino from getattr (hard links share it) instead of libfuse's per-name node id. */
  useIno: boolean;
  /**
   * Milliseconds before an unanswered callback is answered ETIMEDOUT (0: never);
   * a number or per op ({ default, write, ... }). The last resort: vfs and cluster
   * deadlines must be shorter, so that they report their own error first.
   */
  callbackTimeoutMs: number | ({ default: number } & Partial<Record<OpName, number>>);
  /** After a change through one name of a hard-linked file, drop the kernel's attributes of its other names. */
  hardLinkInvalidation: boolean;
  /** How many hard-linked names to remember for that (oldest dropped first). */
  hardLinkNamesMax: number;
  /**
   * Microseconds a FUSE thread polls for the JS thread's answer before it sleeps
   * (while its answers keep coming that fast), and the JS loop keeps polling for
   * the next request after an answer (0: sleep at once). Waking a sleeping thread
   * costs tens of µs on a VM, paid twice per request otherwise
   * (docs/fuse-binding.md, "The hand-off").
   */
  spinUs: number;
  hotUs: number;
  /**
   * Keep what getattr and readdir answered, by path, in C for attrTimeout, and
   * answer getattr (and so every LOOKUP) from it (`cacheAttrs`), and getxattr /
   * listxattr of files shown without xattrs (`cacheXattrs`). Every change made
   * through the mount drops what it touches, before JS sees it and again after
   * JS answered it (docs/fuse-binding.md).
   */
  cacheAttrs: boolean;
  cacheXattrs: boolean;
  /** Further -o options, verbatim. */
  extraOptions: readonly string[];
  /** libfuse debug output on stderr. */
  debug: boolean;
  /** The one place errors become errno values (positive); the default reads err.errno / err.code. */
  toErrno: (err: unknown) => number;
}

/** errno from err.errno (either sign) or err.code ("ENOENT"); otherwise EIO. */
export function defaultToErrno(err: unknown): number {
  if (typeof err === 'object' && err !== null) {
    const e = err as { errno?: unknown; code?: unknown };
    if (typeof e.errno === 'number' && e.errno !== 0) return Math.abs(e.errno);
    if (typeof e.code === 'string') {
      const n = (osConstants.errno as Record<string, number | undefined>)[e.code];
      if (n !== undefined) return n;
    }
  }
  return osConstants.errno.EIO;
}

export const DEFAULT_MOUNT_OPTIONS: Readonly<MountOptions> = Object.freeze({
  fsname: 'quorumfs',
  subtype: 'quorumfs',
  allowOther: false,
  defaultPermissions: true,
  bigWrites: true,
  // 1 MiB: the most libfuse 3 negotiates (max_pages 256); libfuse 2.9 stopped at 128 KiB.
  maxWrite: 1048576,
  maxReadahead: undefined,
  readAheadKb: 1024,
  // libfuse's defaults, also the peers' choice (JuiceFS 1 s, MooseFS attr 1 s).
  entryTimeout: 1,
  attrTimeout: 1,
  negativeTimeout: 0,
  useIno: true,
  // Above any vfs/cluster deadline (requests default to 5 s, with retries).
  callbackTimeoutMs: 30_000,
  hardLinkInvalidation: true,
  hardLinkNamesMax: 100_000,
  spinUs: 100,
  hotUs: 1000,
  cacheAttrs: true,
  cacheXattrs: true,
  extraOptions: [],
  debug: false,
  toErrno: defaultToErrno,
});

/** The -o list a mount with these options gets (fuse-native adds "debug" itself). */
export function fuseOptionList(o: Readonly<MountOptions>): string[] {
  const opts: string[] = [`fsname=${o.fsname}`, `subtype=${o.subtype}`];
  if (o.allowOther) opts.push('allow_other');
  if (o.defaultPermissions) opts.push('default_permissions');
  opts.push(`max_write=${o.bigWrites ? o.maxWrite : 4096}`);
  if (o.maxReadahead !== undefined) opts.push(`max_readahead=${o.maxReadahead}`);
  opts.push(`entry_timeout=${o.entryTimeout}`, `attr_timeout=${o.attrTimeout}`, `negative_timeout=${o.negativeTimeout}`);
  if (o.useIno) opts.push('use_ino');
  opts.push(...o.extraOptions);
  for (const opt of opts) {
    if (opt === '' || /[,\s]/.test(opt)) throw new Error(`fuse: bad mount option ${JSON.stringify(opt)}`);
  }
  return opts;
}

// --- the patched fuse-native, as far as we use it ---------------------------

type NativeCb = (result: number, ...values: unknown[]) => void;
type NativeOp = (...args: never[]) => void;
interface NativeFuse {
  caller: Caller;
  /** The dispatched request's words: caller, then [4] = interrupted by the kernel (lock ops). */
  request: Uint32Array | null;
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
  invalidate(path: string): number;
  invalidateData(path: string, cb: (res: number) => void): void;
  cacheEpoch(): number;
  cachePut(path: string, stat: Stat, epoch: number): void;
  cacheNoXattrs(path: string, epoch: number): void;
}
interface NativeFuseClass {
  new (mnt: string, ops: Record<string, NativeOp>, opts: Record<string, unknown>): NativeFuse;
  UTIME_NOW: number;
  UTIME_OMIT: number;
  QUORUMFS_PATCH: number | undefined;
}

let nativeClass: NativeFuseClass | undefined;
function loadNative(): NativeFuseClass {
  if (nativeClass === undefined) {
    const require = createRequire(import.meta.url);
    const cls = require('fuse-native') as NativeFuseClass;
    if (cls.QUORUMFS_PATCH !== 10) {
      throw new Error('fuse-native is not the quorumfs-patched build: run `node patches/fuse-native.mjs` (docs/fuse-binding.md)');
    }
    nativeClass = cls;
  }
  return nativeClass;
}

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const { ENODATA } = osConstants.errno;

/**
 * The names of hard-linked files (nlink > 1) that getattr has answered, so
 * that a change through one name can invalidate the kernel's attributes of the
 * others: the path API gives each name its own kernel node and attribute cache.
 */
class HardLinkNames {
  private readonly inoOf = new Map<string, number>();
  private readonly namesOf = new Map<number, Set<string>>();

  constructor(private readonly max: number) {}

  get size(): number {
    return this.inoOf.size;
  }

  has(path: string): boolean {
    return this.inoOf.has(path);
  }

  ino(path: string): number | undefined {
    return this.inoOf.get(path);
  }

  /** What getattr answered for a name. */
  seen(path: string, st: Stat): void {
    if ((st.mode & S_IFMT) !== S_IFDIR && st.nlink > 1) this.add(path, st.ino);
    else this.forget(path);
  }

  private add(path: string, ino: number): void {
    if (this.inoOf.get(path) === ino) return;
    this.forget(path);
    this.inoOf.set(path, ino);
    let names = this.namesOf.get(ino);
    if (names === undefined) this.namesOf.set(ino, (names = new Set()));
    names.add(path);
    if (this.inoOf.size > this.max) {
      const oldest = this.inoOf.keys().next();
      if (oldest.done !== true) this.forget(oldest.value);
    }
  }

  forget(path: string): number | undefined {
    const ino = this.inoOf.get(path);
    if (ino === undefined) return undefined;
    this.inoOf.delete(path);
    const names = this.namesOf.get(ino);
    names?.delete(path);
    if (names?.size === 0) this.namesOf.delete(ino);
    return ino;
  }

  names(ino: number | undefined): string[] {
    return ino === undefined ? [] : [...(this.namesOf.get(ino) ?? [])];
  }

  /** RENAME_EXCHANGE: the two names (and everything below them) swap. */
  exchanged(a: string, b: string): void {
    const under = (root: string): Array<[string, number]> => [...this.inoOf].filter(([p]) => p === root || p.startsWith(root + '/'));
    const fromA = under(a);
    const fromB = under(b);
    for (const [p] of [...fromA, ...fromB]) this.forget(p);
    for (const [p, ino] of fromA) this.add(b + p.slice(a.length), ino);
    for (const [p, ino] of fromB) this.add(a + p.slice(b.length), ino);
  }

  /** A rename: the name itself, or everything below a renamed directory. */
  renamed(from: string, to: string): void {
    const prefix = from + '/';
    for (const [path, ino] of [...this.inoOf]) {
      if (path !== from && !path.startsWith(prefix)) continue;
      this.forget(path);
      this.add(to + path.slice(from.length), ino);
    }
  }
}

/** A mounted filesystem. */
export class FuseMount {
  private unmounted = false;

  private constructor(
    readonly mountpoint: string,
    readonly options: Readonly<MountOptions>,
    /** The -o list it was mounted with. */
    readonly optionList: readonly string[],
    private readonly native: NativeFuse,
  ) {}

  /**
   * Mounts `ops` at `mountpoint` (an empty directory) and resolves once the
   * kernel has sent INIT, i.e. the mount is live.
   */
  static async mount(mountpoint: string, ops: FuseOps, options: Partial<MountOptions> = {}): Promise<FuseMount> {
    const Native = loadNative();
    const o: MountOptions = { ...DEFAULT_MOUNT_OPTIONS, ...options };
    // as /proc/self/mountinfo shows it (setReadAhead); read before the mount hides the directory
    const realMountpoint = o.readAheadKb === undefined ? mountpoint : await realpath(mountpoint).catch(() => mountpoint);
    const optionList = fuseOptionList(o);
    const links = o.hardLinkInvalidation ? new HardLinkNames(o.hardLinkNamesMax) : null;
    const holder: { fuse?: NativeFuse } = {};
    const table = nativeOps(ops, o, Native, () => holder.fuse as NativeFuse, links);
    const fuse = new Native(mountpoint, table, {
      extraOptions: optionList,
      timeout: callbackTimeouts(o.callbackTimeoutMs),
      debug: o.debug,
      spinUs: o.spinUs,
      hotUs: o.hotUs,
      cacheTtlMs: Math.round(o.attrTimeout * 1000),
      cacheAttrs: o.cacheAttrs,
      cacheXattrs: o.cacheXattrs,
    });
    holder.fuse = fuse;
    await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())));
    if (o.readAheadKb !== undefined) await setReadAhead(realMountpoint, o.readAheadKb);
    return new FuseMount(mountpoint, o, optionList, fuse);
  }

  /**
   * Drops the kernel's cached attributes of `path` (its libfuse node). 0, or
   * -ENOENT when the kernel holds no node for it, -ENOSYS if unsupported.
   */
  invalidate(path: string): number {
    return this.native.invalidate(path);
  }

  /**
   * Drops the kernel's attributes and cached pages of `path` (another mount
   * changed the file and this mount just took a lock on it). Resolves once the
   * kernel has dropped them: 0, -ENOENT, -ENOSYS.
   */
  invalidateData(path: string): Promise<number> {
    if (this.unmounted) return Promise.resolve(-osConstants.errno.ENOSYS);
    return new Promise((resolve) => this.native.invalidateData(path, resolve));
  }

  /** Unmounts (lazily: fusermount -uz). */
  async unmount(): Promise<void> {
    if (this.unmounted) return;
    this.unmounted = true;
    await new Promise<void>((resolve, reject) => this.native.unmount((err) => (err ? reject(err) : resolve())));
  }
}

/**
 * Sets the mount's read-ahead window (the bdi of its anonymous device, found in
 * /proc/self/mountinfo: no call into the mount itself). Best effort: a non-root
 * process cannot write it, and the mount then keeps the kernel's 128 KiB.
 */
async function setReadAhead(mountpoint: string, kb: number): Promise<boolean> {
  try {
    const info = await readFile('/proc/self/mountinfo', 'utf8');
    const unescape = (f: string): string => f.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    let dev: string | undefined;
    for (const line of info.split('\n')) {
      const f = line.split(' ');
      const sep = f.indexOf('-');
      if (f.length < 10 || sep < 0 || !(f[sep + 1] ?? '').startsWith('fuse')) continue;
      if (unescape(f[4] ?? '') === mountpoint) dev = f[2];
    }
    if (dev === undefined || !/^\d+:\d+$/.test(dev)) return false;
    await writeFile(`/sys/class/bdi/${dev}/read_ahead_kb`, String(Math.max(4, Math.round(kb))));
    return true;
  } catch {
    return false;
  }
}

// Lock ops wait as long as another process holds the lock: never answered by the
// binding's timeout (their own requests have deadlines; a wait ends by grant or signal).
function callbackTimeouts(t: MountOptions['callbackTimeoutMs']): false | Record<string, number | false> {
  if (t === 0) return false;
  const base: Record<string, number | false> = typeof t === 'number' ? { default: t } : { ...t };
  base['lock'] ??= false;
  base['flock'] ??= false;
  return base;
}

/** renameat2: the two names swap (patch 10). */
const RENAME_EXCHANGE = 2;
const F_GETLK = 5;
const F_SETLKW = 7;
const F_RDLCK = 0;
const F_WRLCK = 1;
const F_UNLCK = 2;
const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
/** How often a waiting lock op looks at the kernel's interrupt flag (the FUSE thread sets it within 10 ms). */
const INTERRUPT_POLL_MS = 20;

/** An AbortSignal that fires when the FUSE thread flags the request as interrupted; stop() when answered. */
function interruptSignal(request: Uint32Array | null): { signal: AbortSignal; stop: () => void } {
  const ac = new AbortController();
  if (request === null || request.length < 5) return { signal: ac.signal, stop: () => {} };
  const timer = setInterval(() => {
    if (request[4] !== 0) {
      clearInterval(timer);
      ac.abort();
    }
  }, INTERRUPT_POLL_MS);
  return { signal: ac.signal, stop: () => clearInterval(timer) };
}

function ownerHex(low: number, high: number): string {
  return high.toString(16).padStart(8, '0') + low.toString(16).padStart(8, '0');
}

function nativeOps(
  ops: FuseOps,
  o: MountOptions,
  Native: NativeFuseClass,
  fuse: () => NativeFuse,
  links: HardLinkNames | null,
): Record<string, NativeOp> {
  const toResult = (err: unknown): number => {
    const n = o.toErrno(err);
    return -(Number.isInteger(n) && n > 0 ? n : osConstants.errno.EIO);
  };

  // Runs a handler with the caller read synchronously at dispatch, and answers
  // fuse-native's callback with answer(value) or -errno.
  function call<T>(cb: NativeCb, run: (c: Caller) => Awaitable<T>, answer: (v: T) => void, after?: (c: Caller) => Awaitable<void>): void {
    const c = fuse().caller;
    let p: Awaitable<T>;
    try {
      p = run(c);
    } catch (err) {
      cb(toResult(err));
      return;
    }
    const done = (v: T): void => {
      if (after === undefined) return answer(v);
      Promise.resolve()
        .then(() => after(c))
        .then(() => answer(v), () => answer(v));
    };
    if (p instanceof Promise) p.then(done, (err: unknown) => cb(toResult(err)));
    else done(p);
  }

  const ok = (cb: NativeCb) => (): void => cb(0);

  // Hard links: after a change through one name, invalidate the kernel's
  // attributes of the file's other known names. Nothing to do (and no cost)
  // while no hard-linked name is known.
  const invalidateNames = (names: readonly string[], except?: string): void => {
    for (const n of names) if (n !== except) fuse().invalidate(n);
  };
  // A name whose last getattr showed nlink 1 is not tracked; ask again, so that
  // a file that got a second name since is recognised.
  const learn = async (c: Caller, path: string): Promise<void> => {
    if (links === null || links.size === 0 || links.has(path) || ops.getattr === undefined) return;
    try {
      links.seen(path, await ops.getattr(c, path));
    } catch {
      // gone: nothing to learn
    }
  };
  // After a change of the file's attributes (the kernel refreshes this name itself).
  const changed = (path: string) => async (c: Caller): Promise<void> => {
    if (links === null || links.size === 0 || path === '') return;
    await learn(c, path);
    invalidateNames(links.names(links.ino(path)), path);
  };
  // After close/flush/fsync: only names already known (no extra getattr on this path).
  const closed = (path: string) => (): void => {
    if (links !== null && links.size > 0 && path !== '') invalidateNames(links.names(links.ino(path)), path);
  };

  const table: Record<string, NativeOp> = {};
  const def = <K extends OpName>(name: K, fn: NativeOp): void => {
    if (ops[name] !== undefined) table[name] = fn;
  };

  if (ops.init !== undefined) {
    const init = ops.init.bind(ops);
    table['init'] = ((cb: (err: number) => void) => {
      Promise.resolve()
        .then(init)
        .then(() => cb(0), (err: unknown) => cb(toResult(err)));
    }) as NativeOp;
  }
  def('statfs', ((path: string, cb: NativeCb) => call(cb, (c) => ops.statfs!(c, path), (v) => cb(0, v))) as NativeOp);
  def('getattr', ((path: string, cb: NativeCb) =>
    call(cb, (c) => ops.getattr!(c, path), (st) => {
      links?.seen(path, st);
      cb(0, st);
    })) as NativeOp);
  // patch 9: index.js sends here an fstat that came with no path, with its handle
  def('fgetattr', ((_path: string, fh: number, cb: NativeCb) => call(cb, (c) => ops.fgetattr!(c, fh), (st) => cb(0, st))) as NativeOp);
  def('access', ((path: string, mode: number, cb: NativeCb) => call(cb, (c) => ops.access!(c, path, mode), ok(cb))) as NativeOp);
  def('open', ((path: string, flags: number, cb: NativeCb) => call(cb, (c) => ops.open!(c, path, flags), (fh) => cb(0, fh))) as NativeOp);
  def('opendir', ((path: string, flags: number, cb: NativeCb) => call(cb, (c) => ops.opendir!(c, path, flags), (fh) => cb(0, fh))) as NativeOp);
  def('create', ((path: string, mode: number, cb: NativeCb) => call(cb, (c) => ops.create!(c, path, mode), (fh) => cb(0, fh))) as NativeOp);
  def('read', ((path: string, fh: number, buf: Buffer, len: number, off: number, cb: NativeCb) =>
    call(cb, (c) => ops.read!(c, path, fh, buf, len, off), (n) => cb(n))) as NativeOp);
  def('write', ((path: string, fh: number, buf: Buffer, len: number, off: number, cb: NativeCb) =>
    call(cb, (c) => ops.write!(c, path, fh, buf, len, off), (n) => cb(n))) as NativeOp);
  // After a close published the file, its attributes go to the C cache, so that the
  // stat that follows a close (make, tar, cp) needs no trip into JS.
  const published = (path: string) => (c: Caller): Awaitable<void> => {
    closed(path)();
    if (!o.cacheAttrs || ops.getattr === undefined || path === '') return;
    const epoch = fuse().cacheEpoch();
    return Promise.resolve(ops.getattr(c, path)).then(
      (st) => fuse().cachePut(path, st, epoch),
      () => {},
    );
  };
  def('flush', ((path: string, fh: number, cb: NativeCb) => call(cb, (c) => ops.flush!(c, path, fh), ok(cb), published(path))) as NativeOp);
  def('fsync', ((path: string, datasync: number, fh: number, cb: NativeCb) =>
    call(cb, (c) => ops.fsync!(c, path, datasync !== 0, fh), ok(cb), closed(path))) as NativeOp);
  def('fsyncdir', ((path: string, datasync: number, fh: number, cb: NativeCb) =>
    call(cb, (c) => ops.fsyncdir!(c, path, datasync !== 0, fh), ok(cb))) as NativeOp);
  def('release', ((path: string, fh: number, cb: NativeCb) => call(cb, (c) => ops.release!(c, path, fh), ok(cb), closed(path))) as NativeOp);
  def('releasedir', ((path: string, fh: number, cb: NativeCb) => call(cb, (c) => ops.releasedir!(c, path, fh), ok(cb))) as NativeOp);
  def('truncate', ((path: string, size: number, cb: NativeCb) => call(cb, (c) => ops.truncate!(c, path, size), ok(cb), changed(path))) as NativeOp);
  def('ftruncate', ((path: string, fh: number, size: number, cb: NativeCb) =>
    call(cb, (c) => ops.ftruncate!(c, path, fh, size), ok(cb), changed(path))) as NativeOp);
  // With libfuse 3 the kernel keeps the attributes READDIRPLUS gave each name, so
  // hard-linked names shown by readdir are recorded as getattr's are.
  const listed = (dir: string, r: { names: readonly string[]; stats?: readonly Stat[] }): void => {
    if (links === null || r.stats === undefined || r.stats.length !== r.names.length) return;
    const prefix = dir === '/' ? '/' : dir + '/';
    for (let i = 0; i < r.names.length; i++) {
      const st = r.stats[i] as Stat;
      if (st.nlink > 1 || links.size > 0) links.seen(prefix + (r.names[i] as string), st);
    }
  };
  def('readdir', ((path: string, cb: NativeCb) =>
    call(cb, (c) => ops.readdir!(c, path), (r) => {
      listed(path, r);
      cb(0, r.names, r.stats);
    })) as NativeOp);
  def('readlink', ((path: string, cb: NativeCb) => call(cb, (c) => ops.readlink!(c, path), (t) => cb(0, t))) as NativeOp);
  def('chown', ((path: string, uid: number, gid: number, cb: NativeCb) =>
    call(cb, (c) => ops.chown!(c, path, uid, gid), ok(cb), changed(path))) as NativeOp);
  def('chmod', ((path: string, mode: number, cb: NativeCb) => call(cb, (c) => ops.chmod!(c, path, mode), ok(cb), changed(path))) as NativeOp);
  def('mknod', ((path: string, mode: number, dev: number, cb: NativeCb) => call(cb, (c) => ops.mknod!(c, path, mode, dev), ok(cb))) as NativeOp);
  def('setxattr', ((path: string, name: string, value: Buffer, _position: number, flags: number, cb: NativeCb) =>
    call(cb, (c) => ops.setxattr!(c, path, name, value, flags), ok(cb), changed(path))) as NativeOp);
  // A miss on a file with no extended attributes at all tells the C cache so, for
  // the attribute timeout: the kernel asks for security.capability before every
  // write, and without this a writer that never stats (fio, a database) sent
  // each of them here once the last getattr's answer had expired. The epoch is
  // read before the getxattr: any change to the file since drops the fact.
  const learnsNoXattrs = o.cacheXattrs && ops.listxattr !== undefined;
  const getxattrLearning = async (c: Caller, path: string, name: string, epoch: number): Promise<Buffer | null> => {
    const v = await ops.getxattr!(c, path, name);
    if (v !== null) return v;
    const names = await Promise.resolve(ops.listxattr!(c, path)).catch(() => null);
    if (names?.length === 0) fuse().cacheNoXattrs(path, epoch);
    return null;
  };
  def('getxattr', ((path: string, name: string, _position: number, cb: NativeCb) => {
    const epoch = learnsNoXattrs ? fuse().cacheEpoch() : -1;
    call(
      cb,
      (c) => (learnsNoXattrs ? getxattrLearning(c, path, name, epoch) : ops.getxattr!(c, path, name)),
      (v) => (v === null ? cb(-ENODATA) : cb(0, v)),
    );
  }) as NativeOp);
  def('listxattr', ((path: string, cb: NativeCb) => call(cb, (c) => ops.listxattr!(c, path), (names) => cb(0, names))) as NativeOp);
  def('removexattr', ((path: string, name: string, cb: NativeCb) =>
    call(cb, (c) => ops.removexattr!(c, path, name), ok(cb), changed(path))) as NativeOp);
  const timeSet = (t: Timespec): TimeSet => (t.nsec === Native.UTIME_OMIT ? 'omit' : t.nsec === Native.UTIME_NOW ? 'now' : t);
  def('utimens', ((path: string, atime: Timespec, mtime: Timespec, cb: NativeCb) =>
    call(cb, (c) => ops.utimens!(c, path, timeSet(atime), timeSet(mtime)), ok(cb), changed(path))) as NativeOp);
  def('unlink', ((path: string, cb: NativeCb) =>
    call(
      cb,
      async (c) => {
        await learn(c, path);
        await ops.unlink!(c, path);
      },
      ok(cb),
      () => {
        if (links === null) return;
        invalidateNames(links.names(links.forget(path)));
      },
    )) as NativeOp);
  def('rename', ((from: string, to: string, flags: number, cb: NativeCb) =>
    call(
      cb,
      async (c) => {
        await learn(c, to);
        await ops.rename!(c, from, to, flags);
      },
      ok(cb),
      () => {
        if (links === null) return;
        if (flags & RENAME_EXCHANGE) {
          links.exchanged(from, to);
          invalidateNames(links.names(links.ino(to)), to);
          invalidateNames(links.names(links.ino(from)), from);
          return;
        }
        invalidateNames(links.names(links.forget(to)));
        links.renamed(from, to);
        invalidateNames(links.names(links.ino(to)), to);
      },
    )) as NativeOp);
  def('link', ((existing: string, path: string, cb: NativeCb) =>
    call(
      cb,
      async (c) => {
        await learn(c, existing);
        await ops.link!(c, existing, path);
      },
      ok(cb),
      // The new name gets its own libfuse node, and the kernel refreshes only that
      // one: the existing name (and any others) would show the old link count.
      () => {
        fuse().invalidate(existing);
        if (links !== null && links.size > 0) invalidateNames(links.names(links.ino(existing)), existing);
      },
    )) as NativeOp);
  def('symlink', ((target: string, path: string, cb: NativeCb) => call(cb, (c) => ops.symlink!(c, target, path), ok(cb))) as NativeOp);
  def('mkdir', ((path: string, mode: number, cb: NativeCb) => call(cb, (c) => ops.mkdir!(c, path, mode), ok(cb))) as NativeOp);
  def('rmdir', ((path: string, cb: NativeCb) => call(cb, (c) => ops.rmdir!(c, path), ok(cb))) as NativeOp);
  def('lock', ((path: string, fh: number, cmd: number, lk: { type: number; start: number; len: number; pid: number }, ownerLow: number, ownerHigh: number, cb: NativeCb) => {
    const lockCmd: LockCmd = cmd === F_GETLK ? 'getlk' : cmd === F_SETLKW ? 'setlkw' : 'setlk';
    const type = lk.type === F_RDLCK ? 'read' : lk.type === F_WRLCK ? 'write' : lk.type === F_UNLCK ? 'unlock' : null;
    if (type === null) return cb(-osConstants.errno.EINVAL);
    const intr = interruptSignal(lockCmd === 'setlkw' ? fuse().request : null);
    // every answer (a value or an error) stops the interrupt polling
    const answer: NativeCb = (result, ...values) => {
      intr.stop();
      cb(result, ...values);
    };
    call(
      answer,
      (c) => ops.lock!(c, path, fh, lockCmd, { type, start: lk.start, len: lk.len, pid: lk.pid }, ownerHex(ownerLow, ownerHigh), intr.signal),
      (v) => {
        if (lockCmd !== 'getlk') return answer(0);
        if (!v) return answer(0, { type: F_UNLCK, start: 0, len: 0, pid: 0 });
        answer(0, { type: v.type === 'read' ? F_RDLCK : v.type === 'write' ? F_WRLCK : F_UNLCK, start: v.start, len: v.len, pid: v.pid });
      },
    );
  }) as NativeOp);
  def('flock', ((path: string, fh: number, op: number, ownerLow: number, ownerHigh: number, cb: NativeCb) => {
    const kind = op & LOCK_UN ? 'unlock' : op & LOCK_EX ? 'exclusive' : op & LOCK_SH ? 'shared' : null;
    if (kind === null) return cb(-osConstants.errno.EINVAL);
    const wait = (op & LOCK_NB) === 0 && kind !== 'unlock';
    const intr = interruptSignal(wait ? fuse().request : null);
    const answer: NativeCb = (result, ...values) => {
      intr.stop();
      cb(result, ...values);
    };
    call(answer, (c) => ops.flock!(c, path, fh, kind, wait, ownerHex(ownerLow, ownerHigh), intr.signal), () => answer(0));
  }) as NativeOp);
  return table;
}
