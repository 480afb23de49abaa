// The filesystem's records over the key space and the order of multi-record
// operations. No paths, no handles: inode numbers and names in, records out.
//
// Crash order (a crash at any point leaves no dirent pointing at nothing):
//   create: inode, then dirent, then the parent's times
//   unlink: dirent, then the inode's link count (the inode goes at zero)
//   rename: intent record, destination dirent (replacing in one step), source
//           dirent, replaced inode's link count, intent removed
// Leftovers (orphan inodes, unreferenced chunks, stale intents) are gc's work.
import { randomBytes, randomInt } from 'node:crypto';
import { KEEP, type CallOpts, type ChangeFn, type KeySpace } from '../keyspace/types.js';
import { QfsError, isQfsError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { DEFAULT_WRITE_BEHIND, DirScopes, inoChain, type DirState, type WriteBehindOptions } from './dir-scopes.js';
import type { HeldScope } from '../keyspace/types.js';
import { FsError } from './errors.js';
import { applyOps, decodeMapPage, encodeMapPage, type Extent, type MapPage, type SlotOp } from './extents.js';
import {
  DIRENT_RANGE,
  direntKey,
  inodeKey,
  inoGroup,
  intentKey,
  mapPageKey,
  superblockKey,
} from './schema.js';
import {
  FORMAT_VERSION,
  ROOT_INO,
  S_IFDIR,
  S_IFMT,
  S_IFREG,
  decodeDirent,
  decodeInode,
  decodeSuperblock,
  encodeDirent,
  encodeInode,
  encodeIntent,
  encodeSuperblock,
  nowTimespec,
  type Dirent,
  type Ino,
  type Inode,
  type Superblock,
  type Timespec,
} from './types.js';

export const NAME_MAX = 255;

export function checkName(name: Buffer): void {
  if (name.length === 0) throw new FsError('ENOENT', 'empty name');
  if (name.length > NAME_MAX) throw new FsError('ENAMETOOLONG');
  if (name.includes(0x2f) || name.includes(0)) throw new FsError('EINVAL', 'name contains / or NUL');
}

export function isDir(mode: number): boolean {
  return (mode & S_IFMT) === S_IFDIR;
}

export interface NewInode {
  mode: number;
  uid: number;
  gid: number;
  rdev?: number;
  target?: Buffer;
  time?: Timespec;
}

export interface FormatOptions {
  chunkSize: number;
  replication: number;
  force?: boolean;
  uid?: number;
  gid?: number;
}

/** A 53-bit inode number from randomness: no central counter, collisions checked on create. */
function randomIno(): Ino {
  for (;;) {
    const ino = (randomInt(0, 2 ** 21) * 2 ** 32 + randomInt(0, 2 ** 32)) as Ino;
    if (ino > ROOT_INO) return ino;
  }
}

/** Private inodes kept before a sweep drops those whose lease is gone. */
const PRIVATES_SWEEP = 4096;

function cloneInode(i: Inode): Inode {
  return decodeInode(encodeInode(i));
}

/**
 * An inode this mount created behind under a directory lease it still holds
 * (see FsMeta.privates). `gen` counts its changes; `written` is the newest of
 * them known to be committed. Its writes run one after another on the inode's
 * chain and each writes the newest value when it is sent, so a write whose
 * change an earlier write already carried is skipped (tar's chown, chmod and
 * utimes after close make one or two writes, not three).
 */
interface Private {
  st: DirState;
  held: HeldScope;
  inode: Inode;
  gen: number;
  written: number;
}

/** Inode numbers kept prepared ahead: enough for a serial writer (tar, cp) to never wait for one. */
const FRESH_INOS = 4;
/**
 * A queued commit's call options for an inode written on its directory's
 * chain: whether it is written behind (nobody waits for it yet), read now,
 * when the change is made. Not the directory's scope (the inode is not one
 * of its keys) nor its trail (an inode commit writes the whole record, so a
 * retry needs none).
 */
function behindOnly(o: CallOpts): CallOpts {
  return o.behind ? { behind: o.behind } : {};
}

export class FsMeta {
  /** Directory time/link-count updates in flight (see touchDir), by directory. */
  private readonly touches = new Map<Ino, Set<Promise<void>>>();
  /** The last error of a background directory update, for settle(). */
  private touchError: unknown = null;
  /**
   * Inode numbers whose keys were prepared ahead (KeySpace.prepare), so that a
   * create's inode write is one accept instead of a full round. A number
   * nobody else knows is a key nobody else writes, so the promise holds.
   */
  private readonly freshInos: Ino[] = [];
  private preparingInos = 0;

  /** Directory leases and the name changes written behind under them. */
  readonly dirs: DirScopes;
  private readonly log: Logger | undefined;
  /**
   * Inodes this mount created behind under a directory lease it still holds:
   * their only name is in that directory, so no other mount can reach them,
   * and their changes (times, modes, owners, contents at close) are written
   * behind on the inode's own chain, after its creation.
   */
  private readonly privates = new Map<Ino, Private>();

  constructor(
    readonly ks: KeySpace,
    readonly sb: Superblock,
    opts: { writeBehind?: Partial<WriteBehindOptions>; log?: Logger } = {},
  ) {
    this.dirs = new DirScopes(ks, { ...DEFAULT_WRITE_BEHIND, ...opts.writeBehind }, opts.log);
    this.log = opts.log;
  }

  /**
   * Waits for name changes written behind and background directory updates;
   * throws the first that failed since the last call.
   */
  async settle(): Promise<void> {
    this.settlers++;
    try {
      this.ks.expedite?.();
      await this.dirs.flush();
      await this.dirs.forgotten();
      while (this.touches.size > 0) await Promise.allSettled([...this.touches.values()].flatMap((s) => [...s]));
    } finally {
      this.settlers--;
    }
    const e = this.touchError;
    this.touchError = null;
    if (e) throw e;
  }

  /** Waits for the name changes written behind (close of a written file, fsync); throws the first that failed. */
  async flushNames(): Promise<void> {
    await this.dirs.flush();
  }

  /** Unmount: commits what is queued and gives every directory lease back. */
  async close(): Promise<void> {
    await this.settle();
    await this.dirs.close();
  }

  /** How many prepared inode numbers wait for a create (tests, profiling). */
  get preparedInos(): number {
    return this.freshInos.length;
  }

  private takeIno(): Ino {
    const ino = this.freshInos.shift() ?? randomIno();
    this.prepareInos();
    return ino;
  }

  private prepareInos(): void {
    const prepare = this.ks.prepare?.bind(this.ks);
    if (!prepare) return;
    while (this.freshInos.length + this.preparingInos < FRESH_INOS) {
      const ino = randomIno();
      this.preparingInos++;
      // A hint never fails the caller; an unprepared number just costs a full round. Nobody
      // waits on it: it leaves with the next frame to each node (CallOpts.behind).
      void prepare(inodeKey(ino), { behind: true })
        .catch(() => {})
        .finally(() => {
          this.preparingInos--;
          this.freshInos.push(ino);
        });
    }
  }

  static async format(ks: KeySpace, opts: FormatOptions): Promise<Superblock> {
    const now = nowTimespec();
    const sb: Superblock = {
      fsId: randomBytes(16).toString('hex'),
      version: FORMAT_VERSION,
      chunkSize: opts.chunkSize,
      replication: opts.replication,
      root: ROOT_INO,
      createdAt: Date.now(),
    };
    await ks.change(superblockKey(), (old) => {
      if (old && !opts.force) throw new FsError('EEXIST', 'the cluster is already formatted');
      return encodeSuperblock(sb);
    });
    const root: Inode = {
      ino: ROOT_INO,
      mode: S_IFDIR | 0o755,
      uid: opts.uid ?? 0,
      gid: opts.gid ?? 0,
      size: 0,
      nlink: 2,
      rdev: 0,
      atime: now,
      mtime: now,
      ctime: now,
      parent: ROOT_INO,
      target: null,
      inline: null,
      chunks: 0,
      xattrs: new Map(),
    };
    if (opts.force) {
      // A forced format starts from an empty root: entries of the old root become unreachable (gc reclaims them).
      for (;;) {
        const page = await ks.scan(inoGroup(ROOT_INO), DIRENT_RANGE.start, DIRENT_RANGE.end, { limit: 1000 });
        if (page.entries.length === 0) break;
        await Promise.all(page.entries.map((e) => ks.delete(e.key)));
      }
    }
    await ks.change(inodeKey(ROOT_INO), () => encodeInode(root));
    return sb;
  }

  static async load(ks: KeySpace): Promise<Superblock> {
    const b = await ks.read(superblockKey());
    if (!b) throw new QfsError('not_found', 'the cluster is not formatted (run quorumfs format)');
    return decodeSuperblock(b);
  }

  async getInode(ino: Ino, op?: CallOpts): Promise<Inode> {
    const p = this.privateOf(ino);
    if (p) return cloneInode(p.inode);
    if (this.touches.has(ino)) await this.settled(ino);
    const b = await this.ks.read(inodeKey(ino), op);
    if (!b) throw new FsError('ENOENT', `inode ${ino}`);
    return decodeInode(b);
  }

  async lookup(dir: Ino, name: Buffer, op?: CallOpts): Promise<Dirent | null> {
    checkName(name);
    const key = direntKey(dir, name);
    const st = await this.dirs.holding(dir);
    if (st) {
      // Under the lease, what this mount knows is the truth (its queued changes included).
      const k = name.toString('latin1');
      const hit = st.knownEntry(k);
      if (hit !== undefined) return hit;
      const b = await this.dirs.underLease(st, (o) => this.ks.read(key, o), op);
      const d = b ? decodeDirent(b) : null;
      if (st.held && st.knownEntry(k) === undefined) st.setKnown(k, d);
      return d;
    }
    const b = await this.dirs.call(dir, (o) => this.ks.read(key, o), op);
    return b ? decodeDirent(b) : null;
  }

  /**
   * Changes one entry now (after the name's queued changes, under the lease
   * when held, also when it is taken during the call: what the holder knows
   * follows the change).
   */
  private async changeEntry(dir: Ino, name: Buffer, fn: ChangeFn, op?: CallOpts): Promise<Buffer | null> {
    const k = name.toString('latin1');
    await (await this.dirs.holding(dir))?.chains.get(k)?.catch(() => {});
    return this.dirs.call(dir, (o) => this.ks.change(direntKey(dir, name), fn, o), op, (st, out) => st.setKnown(k, out ? decodeDirent(out) : null));
  }

  /** Starts a dirent's first phase early (a hint: never fails). */
  private prepareEntry(dir: Ino, name: Buffer): Promise<void> | undefined {
    const prepare = this.ks.prepare?.bind(this.ks);
    if (!prepare) return undefined;
    return this.dirs.call(dir, (o) => prepare(direntKey(dir, name), o)).catch(() => {});
  }

  /** A page of a directory's entries after `after` (exclusive), in name byte order. */
  async readdir(dir: Ino, after: Buffer | null, limit = 1000, op?: CallOpts): Promise<{ entries: Array<{ name: Buffer; dirent: Dirent }>; more: boolean }> {
    let start: Buffer = after ? Buffer.concat([DIRENT_RANGE.start, after, Buffer.from([0])]) : DIRENT_RANGE.start;
    const prefix = 1 + 8 + 1; // group length byte, 8-byte group, 'd'
    const st = await this.dirs.holding(dir);
    // A holder that read the directory whole lists what it knows; otherwise what it has committed, its queued changes first.
    if (st?.complete) return st.listing(after, limit);
    if (st) await this.dirs.flushDir(dir);
    const scan = (from: Buffer) => this.dirs.call(dir, (o) => this.ks.scan(inoGroup(dir), from, DIRENT_RANGE.end, { ...o, limit }), op);
    for (;;) {
      const page = await scan(start);
      // A page can come back empty but unfinished (only deletes in it): an empty page is not the end.
      if (page.entries.length > 0 || page.next === null) {
        return {
          entries: page.entries.map((e) => ({ name: Buffer.from(e.key.subarray(prefix)), dirent: decodeDirent(e.value) })),
          more: page.next !== null,
        };
      }
      start = page.next;
    }
  }

  /**
   * A directory's mtime/ctime (and link count, for subdirectories) follow its
   * entries. The update runs in the background: the entry change it follows is
   * already durable, the time is advisory, and concurrent updates of one
   * directory batch into one round. settle() waits for them (fsyncdir, unmount).
   */
  private touchDir(dir: Ino, linkDelta: number, time: Timespec): void {
    this.background(dir, () => this.touchDirNow(dir, linkDelta, time));
  }

  /**
   * Work on an inode that may finish after the call that caused it returned:
   * the step before it is durable, and a crash in between leaves only what gc
   * reclaims (an inode without its last name, a stale directory time). This
   * mount waits for it before reading that inode again (settled).
   */
  private background(ino: Ino, work: () => Promise<unknown>): void {
    const p = work().then(
      () => {},
      (err: unknown) => {
        // said when it happens, not only at the next directory fsync or unmount that reports it
        this.log?.warn({ ino, err: (err as Error)?.message ?? String(err) }, 'a background metadata update failed (times, link count or a creation written behind): reported to the next directory fsync or unmount');
        this.touchError ??= err;
      },
    );
    let set = this.touches.get(ino);
    if (!set) this.touches.set(ino, (set = new Set()));
    set.add(p);
    void p.finally(() => {
      set.delete(p);
      if (set.size === 0 && this.touches.get(ino) === set) this.touches.delete(ino);
    });
  }

  /** Waits for this mount's own background updates of a directory (so it reads its own writes). */
  async settled(dir: Ino): Promise<void> {
    const set = this.touches.get(dir);
    if (set) {
      this.settlers++;
      this.ks.expedite?.();
      await Promise.allSettled([...set]).finally(() => this.settlers--);
    }
  }

  /** Callers waiting for background updates (settle, settled). */
  private settlers = 0;

  /**
   * The call options of a background update (a directory's times, a link
   * count, a removed inode): written behind, so that it may wait in the
   * gather window for company, unless someone is waiting for background
   * updates; read when the change is made, so that one that starts while
   * settle() waits (a removed directory's inode, which follows its name) goes
   * at once instead of waiting out the window.
   */
  private readonly behind: CallOpts = ((meta: FsMeta): CallOpts => ({
    get behind() {
      return meta.settlers === 0;
    },
  }))(this);

  private async touchDirNow(dir: Ino, linkDelta: number, time: Timespec): Promise<void> {
    if (this.privateOf(dir)) {
      await this.changeInode(dir, (d) => {
        d.mtime = time;
        d.ctime = time;
        d.nlink = Math.max(2, d.nlink + linkDelta);
      });
      return;
    }
    await this.ks.change(
      inodeKey(dir),
      (old) => {
        if (!old) return KEEP; // the directory went away meanwhile
        const d = decodeInode(old);
        d.mtime = time;
        d.ctime = time;
        d.nlink = Math.max(2, d.nlink + linkDelta);
        return encodeInode(d);
      },
      this.behind,
    );
  }

  /**
   * Creates an inode and names it. `exclusive` false returns the existing file
   * when the name is taken by a non-directory (open O_CREAT without O_EXCL).
   */
  async create(dir: Ino, name: Buffer, attrs: NewInode, exclusive = true, parentChecked = false, op?: CallOpts): Promise<{ inode: Inode; created: boolean }> {
    checkName(name);
    const time = attrs.time ?? nowTimespec();
    const held = await this.dirs.forChange(dir);
    // The dirent's first phase overlaps the inode write: a promise is no value,
    // so no name can point at the inode before the inode is durable.
    const direntPrepared = held ? undefined : this.prepareEntry(dir, name);
    if (held) {
      const existing = await this.lookup(dir, name, op);
      if (existing) {
        if (exclusive) throw new FsError('EEXIST');
        return { inode: await this.getInode(existing.ino, op), created: false };
      }
    }
    if (!parentChecked) {
      const parent = await this.getInode(dir, op);
      if (!isDir(parent.mode)) throw new FsError('ENOTDIR');
    }
    // An exclusive create learns that the name is taken from the dirent change itself.
    if (!exclusive && !held) {
      const existing = await this.lookup(dir, name, op);
      if (existing) return { inode: await this.getInode(existing.ino, op), created: false };
    }
    if (held) await this.dirs.room();
    const st = held ? await this.dirs.holding(dir) : null;
    const k = name.toString('latin1');
    // From here to the queued commits nothing waits: the lease cannot be released in between.
    if (st && st.knownEntry(k) === null) {
      // Written behind: the inode first, then the name once the inode is chosen
      // (crash order). Until then this mount's own reads and changes of the
      // inode wait for its write (settled).
      const inode = this.inodeRecord(this.takeIno(), dir, attrs, time);
      const priv: Private = { st, held: st.held!, inode: cloneInode(inode), gen: 0, written: -1 };
      // The creation writes the inode as it is when sent (changes made meanwhile ride along).
      // Tried again after a transient failure (DirScopes.commitQueued), it may find its own
      // earlier attempt landed: only a first attempt takes a record there for a collision.
      let attempts = 0;
      const regular = (attrs.mode & S_IFMT) === S_IFREG;
      const { committed: born } = this.dirs.queue(
        st,
        inoChain(inode.ino),
        async (o) => {
          const gen = priv.gen;
          const record = encodeInode(priv.inode);
          const retried = attempts++ > 0;
          await this.ks.change(
            inodeKey(inode.ino),
            (old) => {
              if (old && !retried) throw new FsError('EIO', 'inode number collision');
              return record;
            },
            behindOnly(o),
          );
          priv.written = Math.max(priv.written, gen);
        },
        regular, // its close waits for it shortly, as for its name
      );
      this.background(inode.ino, () => born);
      // A new directory is born with its lease held: what is made inside it is written behind too.
      const birth = isDir(attrs.mode) ? this.dirs.born(inode.ino) : null;
      this.privates.set(inode.ino, priv);
      if (this.privates.size > this.pruneAt) this.prunePrivates();
      // The name's first phase overlaps the inode's write: its commit is then one accept.
      void this.ks.prepare?.(direntKey(dir, name), { scope: st.held!.call }).catch(() => {});
      const dirent = encodeDirent({ ino: inode.ino, type: inode.mode & S_IFMT });
      st.setKnown(k, { ino: inode.ino, type: inode.mode & S_IFMT });
      // A regular file's name is waited for by its close, shortly: it skips the gather window.
      this.dirs.queue(
        st,
        name,
        async (o) => {
          await born;
          await birth; // published only once the nodes have its lease held: whoever finds the name finds that
          await this.ks.change(direntKey(dir, name), () => dirent, o);
        },
        regular,
      );
      this.touchDir(dir, isDir(attrs.mode) ? 1 : 0, time);
      return { inode: { ...inode, xattrs: new Map() }, created: true };
    }
    // A new directory is born with its lease held, its record written beside its inode.
    let birth: Promise<void> | null = null;
    let inode: Inode;
    for (let tries = 0; ; tries++) {
      birth = null;
      inode = await this.newInode(dir, attrs, time, op, isDir(attrs.mode) ? (ino) => (birth = this.dirs.born(ino)) : undefined);
      if (!birth) break;
      try {
        await birth;
        break;
      } catch (err) {
        // Its lease record may still land later (a minority took it): a directory whose
        // birth failed is never published, or that record could later hide what was
        // written in it meanwhile. Its number is given up (gc reclaims the inode).
        this.log?.debug({ err: (err as Error).message, ino: inode.ino }, 'a new directory was not born with its lease: giving its number up');
        void this.dirs.forget(inode.ino).catch(() => {});
        void this.ks.delete(inodeKey(inode.ino)).catch(() => {});
        if (!isQfsError(err, 'bad_request') || tries >= 2) throw err; // not a reused number: the cluster is failing
      }
    }
    let raced: Dirent | null = null;
    try {
      await direntPrepared;
      await this.changeEntry(dir, name, (old) => {
        raced = old ? decodeDirent(old) : null;
        if (old) return KEEP;
        return encodeDirent({ ino: inode.ino, type: inode.mode & S_IFMT });
      }, op);
    } catch (err) {
      if (birth) void this.dirs.forget(inode.ino).catch(() => {});
      throw err;
    }
    if (raced !== null) {
      // Another client took the name first: drop our inode, answer as if we had looked later.
      if (birth) void this.dirs.forget(inode.ino).catch(() => {});
      await this.ks.delete(inodeKey(inode.ino)).catch(() => {});
      const other = raced as Dirent;
      if (exclusive) throw new FsError('EEXIST');
      return { inode: await this.getInode(other.ino, op), created: false };
    }
    this.touchDir(dir, isDir(attrs.mode) ? 1 : 0, time);
    return { inode, created: true };
  }

  /** The record of a new inode (not written). */
  private inodeRecord(ino: Ino, dir: Ino, attrs: NewInode, time: Timespec): Inode {
    return {
      ino,
      mode: attrs.mode,
      uid: attrs.uid,
      gid: attrs.gid,
      size: attrs.target ? attrs.target.length : 0,
      nlink: isDir(attrs.mode) ? 2 : 1,
      rdev: attrs.rdev ?? 0,
      atime: time,
      mtime: time,
      ctime: time,
      parent: dir,
      target: attrs.target ?? null,
      inline: null,
      chunks: 0,
      xattrs: new Map(),
    };
  }

  /** A new inode under a fresh number, written now: durable before any name points at it. */
  private async newInode(dir: Ino, attrs: NewInode, time: Timespec, op?: CallOpts, beside?: (ino: Ino) => void): Promise<Inode> {
    let inode: Inode | null = null;
    for (let tries = 0; !inode; tries++) {
      const candidate = this.inodeRecord(this.takeIno(), dir, attrs, time);
      const ino = candidate.ino;
      beside?.(ino); // work that runs beside the inode's write (a new directory's lease)
      try {
        await this.ks.change(inodeKey(ino), (old) => {
          if (old) throw new FsError('EEXIST', 'inode number collision');
          return encodeInode(candidate);
        }, op);
        inode = candidate;
      } catch (err) {
        if (beside) void this.dirs.forget(ino).catch(() => {});
        if (!(err instanceof FsError) || tries > 5) throw err;
      }
    }
    return inode;
  }

  /** A new name for an existing non-directory inode. */
  async link(ino: Ino, dir: Ino, name: Buffer, op?: CallOpts): Promise<Inode> {
    checkName(name);
    const time = nowTimespec();
    const direntPrepared = (await this.dirs.holding(dir)) ? undefined : this.prepareEntry(dir, name); // as in create
    await this.unprivate(ino); // a second name makes it reachable without this directory's lease
    const target = await this.getInode(ino, op);
    if (isDir(target.mode)) throw new FsError('EPERM', 'hard links to directories');
    // Count the link first: a crash then leaves nlink one too high (fsck), never a name of a freed inode.
    const updated = await this.changeInode(ino, (i) => {
      if (i.nlink >= 65000) throw new FsError('EMLINK');
      i.nlink += 1;
      i.ctime = time;
    }, op);
    let taken = false;
    await direntPrepared;
    await this.changeEntry(dir, name, (old) => {
      taken = old !== null;
      return old ? KEEP : encodeDirent({ ino, type: target.mode & S_IFMT });
    }, op);
    if (taken) {
      await this.changeInode(ino, (i) => {
        i.nlink = Math.max(0, i.nlink - 1);
      });
      throw new FsError('EEXIST');
    }
    this.touchDir(dir, 0, time);
    return updated;
  }

  /**
   * Removes a non-directory name and returns what it named. The link count
   * drops (and the inode goes at zero) in the background: the name is gone
   * durably first, which is the crash order the design asks for.
   */
  async unlink(dir: Ino, name: Buffer, time: Timespec = nowTimespec(), op?: CallOpts): Promise<Dirent> {
    checkName(name);
    const held = await this.dirs.forChange(dir);
    if (held) {
      const d = await this.lookup(dir, name, op);
      if (!d) throw new FsError('ENOENT');
      if (isDir(d.type)) throw new FsError('EISDIR');
      await this.dirs.room();
      const st = await this.dirs.holding(dir);
      if (st && st.knownEntry(name.toString('latin1'))?.ino === d.ino) {
        // Written behind: the name goes first, the link count after it (crash order).
        const gone = this.removeNameBehind(st, dir, name);
        this.touchDir(dir, 0, time);
        this.background(d.ino, () => gone.then(() => this.dropLink(d.ino, time)));
        return d;
      }
    }
    let removed: Dirent | null = null;
    await this.changeEntry(dir, name, (old) => {
      if (!old) throw new FsError('ENOENT');
      const d = decodeDirent(old);
      if (isDir(d.type)) throw new FsError('EISDIR');
      removed = d;
      return null;
    }, op);
    this.touchDir(dir, 0, time);
    const gone = removed as unknown as Dirent;
    this.background(gone.ino, () => this.dropLink(gone.ino, time));
    return gone;
  }

  /** Removes a name under the held lease, written behind; returns its commit (what the inode's half waits for). */
  private removeNameBehind(st: DirState, dir: Ino, name: Buffer): Promise<void> {
    st.setKnown(name.toString('latin1'), null);
    return this.dirs.queue(st, name, (o) => this.ks.change(direntKey(dir, name), (old) => (old === null ? KEEP : null), o)).committed;
  }

  /** One link fewer; at zero the inode and its chunk map go (chunks are gc's). */
  private async dropLink(ino: Ino, time: Timespec): Promise<Inode | null> {
    await this.unprivate(ino);
    let after: Inode | null = null;
    await this.ks.change(
      inodeKey(ino),
      (old) => {
        if (!old) return KEEP;
        const i = decodeInode(old);
        i.nlink = Math.max(0, i.nlink - (isDir(i.mode) ? i.nlink : 1));
        i.ctime = time;
        after = i;
        return i.nlink === 0 ? null : encodeInode(i);
      },
      this.behind,
    );
    // The chunk-map pages stay: a file still open (here or on another mount) keeps
    // reading through them. gc reclaims the pages of inodes that are gone.
    return after as Inode | null;
  }

  async isEmptyDir(dir: Ino, op?: CallOpts): Promise<boolean> {
    const page = await this.readdir(dir, null, 16, op);
    return page.entries.length === 0;
  }

  async rmdir(dir: Ino, name: Buffer, time: Timespec = nowTimespec(), op?: CallOpts): Promise<void> {
    checkName(name);
    const held = await this.dirs.forChange(dir);
    const d = await this.lookup(dir, name, op);
    if (!d) throw new FsError('ENOENT');
    if (!isDir(d.type)) throw new FsError('ENOTDIR');
    if (!(await this.isEmptyDir(d.ino, op))) throw new FsError('ENOTEMPTY');
    if (held) await this.dirs.room();
    const st = held ? await this.dirs.holding(dir) : null;
    if (st && st.knownEntry(name.toString('latin1'))?.ino === d.ino) {
      const gone = this.removeNameBehind(st, dir, name);
      this.touchDir(dir, -1, time);
      this.background(d.ino, () => gone.then(() => this.unprivate(d.ino)).then(() => this.ks.delete(inodeKey(d.ino), this.behind)));
    } else {
      await this.changeEntry(dir, name, (old) => {
        if (!old || decodeDirent(old).ino !== d.ino) throw new FsError('ENOENT');
        return null;
      }, op);
      this.touchDir(dir, -1, time);
      this.background(d.ino, () => this.ks.delete(inodeKey(d.ino), this.behind));
    }
    // The directory is gone: so is any lease this mount held on its entries.
    void this.dirs.forget(d.ino).catch(() => {});
  }

  /** Is `ancestor` the directory `dir` or one of its ancestors? (for rename loops) */
  private async isAncestor(ancestor: Ino, dir: Ino, op?: CallOpts): Promise<boolean> {
    let cur = dir;
    for (let depth = 0; depth < 4096; depth++) {
      if (cur === ancestor) return true;
      if (cur === ROOT_INO) return false;
      cur = (await this.getInode(cur, op)).parent;
    }
    throw new FsError('EIO', 'directory tree too deep or looped');
  }

  /**
   * rename(2): replaces the destination in one step. An intent record first, so
   * that recovery (fsck) can finish a rename a crash interrupted.
   */
  async rename(srcDir: Ino, srcName: Buffer, dstDir: Ino, dstName: Buffer, flags: { noReplace?: boolean } = {}, op?: CallOpts): Promise<void> {
    checkName(srcName);
    checkName(dstName);
    const src = await this.lookup(srcDir, srcName, op);
    if (!src) throw new FsError('ENOENT');
    if (srcDir === dstDir && srcName.equals(dstName)) return;
    const dst = await this.lookup(dstDir, dstName, op);
    if (dst && flags.noReplace) throw new FsError('EEXIST');
    const srcIsDir = isDir(src.type);
    if (dst) {
      if (dst.ino === src.ino) {
        // Two names of one file: POSIX says do nothing.
        return;
      }
      if (isDir(dst.type) && !srcIsDir) throw new FsError('EISDIR');
      if (!isDir(dst.type) && srcIsDir) throw new FsError('ENOTDIR');
      if (isDir(dst.type) && !(await this.isEmptyDir(dst.ino, op))) throw new FsError('ENOTEMPTY');
    }
    if (srcIsDir && srcDir !== dstDir && (await this.isAncestor(src.ino, dstDir, op))) throw new FsError('EINVAL', 'a directory cannot move into itself');
    if (srcDir !== dstDir) await this.unprivate(src.ino); // named in another directory now
    const time = nowTimespec();
    const id = randomBytes(16);
    await this.ks.change(intentKey(id), () =>
      encodeIntent({ srcDir, srcName, dstDir, dstName, ino: src.ino, type: src.type, createdAt: Date.now() }),
      op,
    );
    let replaced: Dirent | null = null;
    try {
      await this.changeEntry(dstDir, dstName, (old) => {
        replaced = old ? decodeDirent(old) : null;
        // RENAME_NOREPLACE: a name taken since the lookup is refused here, in the same change that would take it
        if (replaced && flags.noReplace) throw new FsError('EEXIST');
        if (replaced && replaced.ino !== (dst?.ino ?? -1)) throw new FsError('EIO', 'destination changed during rename; retry');
        return encodeDirent({ ino: src.ino, type: src.type });
      }, op);
    } catch (err) {
      // refused: nothing to finish, so no intent is left for fsck to report (a timeout may have landed: keep it)
      if (err instanceof FsError && err.errno !== 'EIO') await this.ks.delete(intentKey(id)).catch(() => {});
      throw err;
    }
    await this.changeEntry(srcDir, srcName, (old) => {
      if (!old) return KEEP;
      return decodeDirent(old).ino === src.ino ? null : KEEP;
    }, op);
    if (srcIsDir && srcDir !== dstDir) {
      await this.changeInode(src.ino, (i) => {
        i.parent = dstDir;
        i.ctime = time;
      }, op);
    } else {
      await this.changeInode(
        src.ino,
        (i) => {
          i.ctime = time;
        },
        op,
      ).catch(() => {});
    }
    this.touchDir(srcDir, srcIsDir && srcDir !== dstDir ? -1 : 0, time);
    if (dstDir !== srcDir) this.touchDir(dstDir, srcIsDir ? 1 : 0, time);
    const r = replaced as Dirent | null;
    if (r) {
      if (isDir(r.type)) {
        this.touchDir(dstDir, -1, time);
        await this.unprivate(r.ino);
        await this.ks.delete(inodeKey(r.ino));
      } else {
        this.background(r.ino, () => this.dropLink(r.ino, time));
      }
    }
    await this.ks.delete(intentKey(id));
  }

  /**
   * renameat2(RENAME_EXCHANGE): the two names swap their inodes. Each name
   * changes in one step (a reader of either sees one inode or the other,
   * never none); an intent written first lets a crash in between be finished
   * or undone (intents.ts), as for a rename. Returns the two entries as they
   * were before (the caller's caches drop both inodes' attributes).
   */
  async exchange(srcDir: Ino, srcName: Buffer, dstDir: Ino, dstName: Buffer, op?: CallOpts): Promise<{ src: Dirent; dst: Dirent }> {
    checkName(srcName);
    checkName(dstName);
    const src = await this.lookup(srcDir, srcName, op);
    const dst = await this.lookup(dstDir, dstName, op);
    if (!src || !dst) throw new FsError('ENOENT');
    if (src.ino === dst.ino) return { src, dst }; // the same name, or two names of one file
    const srcIsDir = isDir(src.type);
    const dstIsDir = isDir(dst.type);
    if (srcDir !== dstDir) {
      if (srcIsDir && (await this.isAncestor(src.ino, dstDir, op))) throw new FsError('EINVAL', 'a directory cannot move into itself');
      if (dstIsDir && (await this.isAncestor(dst.ino, srcDir, op))) throw new FsError('EINVAL', 'a directory cannot move into itself');
      await this.unprivate(src.ino);
      await this.unprivate(dst.ino);
    }
    const time = nowTimespec();
    const id = randomBytes(16);
    await this.ks.change(intentKey(id), () =>
      encodeIntent({ srcDir, srcName, dstDir, dstName, ino: src.ino, type: src.type, createdAt: Date.now(), exchange: { ino: dst.ino, type: dst.type } }),
      op,
    );
    try {
      await this.changeEntry(dstDir, dstName, (old) => {
        if (!old || decodeDirent(old).ino !== dst.ino) throw new FsError('EIO', 'destination changed during rename; retry');
        return encodeDirent({ ino: src.ino, type: src.type });
      }, op);
    } catch (err) {
      if (err instanceof FsError && err.errno !== 'EIO') await this.ks.delete(intentKey(id)).catch(() => {});
      throw err;
    }
    await this.changeEntry(srcDir, srcName, (old) => (old && decodeDirent(old).ino === src.ino ? encodeDirent({ ino: dst.ino, type: dst.type }) : KEEP), op);
    for (const [ino, moved, parent] of [[src.ino, srcIsDir && srcDir !== dstDir, dstDir], [dst.ino, dstIsDir && srcDir !== dstDir, srcDir]] as const) {
      await this.changeInode(ino, (i) => {
        if (moved) i.parent = parent;
        i.ctime = time;
      }, op).catch((err: unknown) => {
        if (moved) throw err; // a moved directory's parent must be right; a ctime may stay old
      });
    }
    // A directory that moved from one to the other takes its ".." link with it.
    const delta = (dstIsDir ? 1 : 0) - (srcIsDir ? 1 : 0);
    this.touchDir(srcDir, srcDir === dstDir ? 0 : delta, time);
    if (dstDir !== srcDir) this.touchDir(dstDir, -delta, time);
    await this.ks.delete(intentKey(id));
    return { src, dst };
  }

  private privateOf(ino: Ino): Private | null {
    const p = this.privates.get(ino);
    if (!p) return null;
    if (p.st.held === p.held && !p.st.gate && p.held.trusted() && this.dirs.reachable(p.st)) return p;
    // From here on it is changed in the cluster, after its writes behind (they are in `touches`).
    this.privates.delete(ino);
    return null;
  }

  /** The inode becomes reachable another way (a link, a move, its end): its writes behind land first. */
  private async unprivate(ino: Ino): Promise<void> {
    const p = this.privates.get(ino);
    if (!p) return;
    this.privates.delete(ino);
    await p.st.chains.get(inoChain(ino))?.catch(() => {});
  }

  private pruneAt = PRIVATES_SWEEP;

  private prunePrivates(): void {
    for (const ino of [...this.privates.keys()]) this.privateOf(ino);
    this.pruneAt = Math.max(PRIVATES_SWEEP, 2 * this.privates.size);
  }

  /** Read-modify-write of an inode; `fn` mutates the decoded inode. */
  async changeInode(ino: Ino, fn: (i: Inode) => void, op?: CallOpts): Promise<Inode> {
    if (this.privates.has(ino)) await this.dirs.room();
    const p = this.privateOf(ino);
    if (p) {
      // Nobody else can reach it: the change is what this mount knows, written behind on the inode's chain.
      const next = cloneInode(p.inode);
      fn(next);
      p.inode = next;
      const gen = ++p.gen;
      const { committed } = this.dirs.queue(p.st, inoChain(ino), async (o) => {
        if (p.written >= gen) return; // an earlier write on the chain already carried this change
        const sent = p.gen;
        const bytes = encodeInode(p.inode);
        await this.ks.change(inodeKey(ino), () => bytes, behindOnly(o));
        p.written = Math.max(p.written, sent);
      });
      this.background(ino, () => committed);
      return cloneInode(next);
    }
    if (this.touches.has(ino)) await this.settled(ino); // an inode created behind its caller is written first
    let result: Inode | null = null;
    await this.ks.change(inodeKey(ino), (old) => {
      if (!old) throw new FsError('ENOENT', `inode ${ino}`);
      const i = decodeInode(old);
      fn(i);
      result = i;
      return encodeInode(i);
    }, op);
    return result!;
  }

  async readMapPage(ino: Ino, page: number): Promise<MapPage> {
    const b = await this.ks.read(mapPageKey(ino, page));
    return b ? decodeMapPage(b) : new Map();
  }

  /**
   * Publishes a file's new contents: chunk-map page changes first (each page
   * one register change that applies this mount's ops to the page's current
   * value), then the inode. A reader sees the new size only once every byte it
   * covers is mapped. Returns the inode and the pages as committed.
   */
  async commitFile(
    ino: Ino,
    changes: ReadonlyMap<number, ReadonlyMap<number, readonly SlotOp[]>>,
    update: (i: Inode) => void,
    op?: CallOpts,
  ): Promise<{ inode: Inode; pages: Map<number, MapPage> }> {
    const pages = new Map<number, MapPage>();
    // How many slots each page change mapped or emptied, for the inode's count.
    const deltas = await Promise.all(
      [...changes].map(async ([page, slots]) => {
        let delta = 0;
        await this.ks.change(mapPageKey(ino, page), (old) => {
          const p = old ? decodeMapPage(old) : new Map();
          const before = p.size;
          for (const [slot, ops] of slots) {
            const list = applyOps(p.get(slot) ?? [], ops);
            if (list.length === 0) p.delete(slot);
            else p.set(slot, list);
          }
          delta = p.size - before;
          pages.set(page, p);
          return p.size === 0 ? null : encodeMapPage(p);
        }, op);
        return delta;
      }),
    );
    const added = deltas.reduce((a, b) => a + b, 0);
    const inode = await this.changeInode(ino, (i) => {
      update(i);
      i.chunks = Math.max(0, i.chunks + added);
    }, op);
    return { inode, pages };
  }

  /**
   * Compaction's commit: replaces a slot's extents with `next` only if they
   * are still exactly `expected` (anything that changed them meanwhile wins;
   * the slot is compacted another time). True when replaced.
   */
  async replaceSlot(ino: Ino, page: number, slot: number, expected: readonly Extent[], next: Extent[]): Promise<boolean> {
    let replaced = false;
    await this.ks.change(mapPageKey(ino, page), (old) => {
      replaced = false;
      if (!old) return KEEP;
      const p = decodeMapPage(old);
      const cur = p.get(slot) ?? [];
      if (!sameExtents(cur, expected)) return KEEP;
      replaced = true;
      p.set(slot, next);
      return encodeMapPage(p);
    });
    return replaced;
  }
}

function sameExtents(a: readonly Extent[], b: readonly Extent[]): boolean {
  return a.length === b.length && a.every((x, k) => x.start === b[k]!.start && x.len === b[k]!.len && x.src === b[k]!.src && x.off === b[k]!.off);
}
