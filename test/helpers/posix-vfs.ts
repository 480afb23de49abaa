// Runs POSIX scenarios (test/helpers/posix-steps.ts) on a Vfs instance.
//
// The vfs is what a FUSE mount calls after the kernel has done its part, so
// this runner plays the kernel for the few things the vfs cannot know about,
// and nothing else:
//   - symbolic links in paths: the vfs never follows them (getattr is lstat);
//     the kernel walks the path and follows them. Here: each component is
//     looked at, a link is replaced by its target (relative targets only),
//     for the last component only where the system call follows it.
//     When the walk meets an error it stops and hands the path as it stands
//     to the vfs, so every errno comes from the vfs itself.
//   - O_DIRECTORY (ENOTDIR on a non-directory) is a kernel check.
//   - close(2) is FUSE flush then release.
// Every other rule (EEXIST, EISDIR, ENOTEMPTY, name lengths, ...) is the vfs's.
import { FsError, isFsError } from '../../src/meta/errors.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK } from '../../src/meta/types.js';
import { O_APPEND, O_CREAT, O_EXCL, O_RDWR, O_TRUNC, O_WRONLY, XATTR_CREATE, XATTR_REPLACE, type Stat, type TimeSet, type Vfs } from '../../src/vfs/vfs.js';
import type { FileType, Outcome, RunnableScenario, ScenarioResult, StatView, Step, TimeArg } from './posix-steps.js';
import { materialize } from './posix-steps.js';

const FLAG_BITS: Record<string, number> = {
  O_RDONLY: 0,
  O_WRONLY,
  O_RDWR,
  O_CREAT,
  O_EXCL,
  O_TRUNC,
  O_APPEND,
  O_DIRECTORY: 0, // checked here, as the kernel does; the vfs never sees it
};

/** An errno raised by this runner's kernel part (not an FsError: the vfs has no ELOOP). */
class KernelError extends Error {
  constructor(readonly errno: string) {
    super(errno);
  }
}

const MAX_SYMLINKS = 40;

function fileType(mode: number): FileType {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return 'file';
    case S_IFDIR:
      return 'dir';
    case S_IFLNK:
      return 'symlink';
    case S_IFIFO:
      return 'fifo';
    case S_IFCHR:
      return 'char';
    case S_IFBLK:
      return 'block';
    case S_IFSOCK:
      return 'socket';
    default:
      return 'other';
  }
}

export function statView(s: Stat): StatView {
  return {
    type: fileType(s.mode),
    mode: s.mode & 0o7777,
    nlink: s.nlink,
    size: s.size,
    uid: s.uid,
    gid: s.gid,
    ino: String(s.ino),
    // the kernel's encoding of a dev_t in 32 bits (new_encode_dev), as FUSE carries it
    rdev: [(s.rdev >>> 8) & 0xfff, (s.rdev & 0xff) | ((s.rdev >>> 12) & 0xfff00)],
    atime: { sec: s.atime.sec, nsec: s.atime.nsec },
    mtime: { sec: s.mtime.sec, nsec: s.mtime.nsec },
    ctime: { sec: s.ctime.sec, nsec: s.ctime.nsec },
  };
}

function b64(b: Buffer): { b64: string } {
  return { b64: b.toString('base64') };
}

function timeSet(t: TimeArg): TimeSet {
  return t === 'now' || t === 'omit' ? t : { sec: t.sec, nsec: t.nsec };
}

export interface VfsRunOptions {
  /** A step that takes longer fails with errno ETIMEDOUT (a hang is a bug too). Default 10 s. */
  stepTimeoutMs?: number;
}

class VfsScenario {
  private readonly fds = new Map<string, number>();

  constructor(
    private readonly vfs: Vfs,
    private readonly base: string,
  ) {}

  private abs(rel: string): string {
    return `${this.base}/${rel}`;
  }

  /** The kernel's path walk: follows symbolic links (the last one only if `followLast`). */
  private async walk(rel: string, followLast: boolean): Promise<string> {
    let todo = this.abs(rel).split('/').filter((p) => p.length > 0);
    let done: string[] = [];
    let links = 0;
    while (todo.length > 0) {
      const name = todo.shift()!;
      if (name === '.') continue;
      if (name === '..') {
        done.pop();
        continue;
      }
      const here = [...done, name];
      if (todo.length === 0 && !followLast) {
        done = here;
        break;
      }
      let st: Stat;
      try {
        st = await this.vfs.getattr(`/${here.join('/')}`);
      } catch {
        return `/${[...here, ...todo].join('/')}`; // the vfs gives this path's errno itself
      }
      if ((st.mode & S_IFMT) !== S_IFLNK) {
        done = here;
        continue;
      }
      if (++links > MAX_SYMLINKS) throw new KernelError('ELOOP');
      const target = await this.vfs.readlink(`/${here.join('/')}`);
      if (target.startsWith('/')) done = []; // the vfs's root: not comparable with a local run, so the table has none
      todo = [...target.split('/').filter((p) => p.length > 0), ...todo];
    }
    return `/${done.join('/')}`;
  }

  private fh(label: string): number {
    const fh = this.fds.get(label);
    if (fh === undefined) throw new FsError('EBADF', `no descriptor labelled ${label}`);
    return fh;
  }

  private async readAll(fh: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (let pos = 0; ; ) {
      const b = await this.vfs.read(fh, pos, 1 << 20);
      if (b.length === 0) return Buffer.concat(parts);
      parts.push(b);
      pos += b.length;
    }
  }

  private async close(fh: number): Promise<void> {
    try {
      await this.vfs.flush(fh);
    } finally {
      await this.vfs.release(fh);
    }
  }

  private async open(rel: string, flagNames: string[], mode: number): Promise<number> {
    let flags = 0;
    for (const f of flagNames) {
      const bit = FLAG_BITS[f];
      if (bit === undefined) throw new Error(`unknown open flag ${f}`);
      flags |= bit;
    }
    if (flags & O_CREAT) {
      // O_EXCL: a symbolic link in the last place is "exists", never followed
      const path = await this.walk(rel, (flags & O_EXCL) === 0);
      return this.vfs.create(path, mode, flags);
    }
    const path = await this.walk(rel, true);
    if (flagNames.includes('O_DIRECTORY') && fileType((await this.vfs.getattr(path)).mode) !== 'dir') throw new KernelError('ENOTDIR');
    return this.vfs.open(path, flags);
  }

  async step(s: Step): Promise<unknown> {
    const vfs = this.vfs;
    switch (s.op) {
      case 'open':
        this.fds.set(s.as, await this.open(s.path, s.flags, s.mode ?? 0o644));
        return null;
      case 'close': {
        const fh = this.fh(s.fd);
        this.fds.delete(s.fd);
        await this.close(fh);
        return null;
      }
      case 'read':
        return b64(await vfs.read(this.fh(s.fd), s.pos, s.len));
      case 'write':
        return vfs.write(this.fh(s.fd), s.pos, materialize(s.data));
      case 'fsync':
        await vfs.fsync(this.fh(s.fd));
        return null;
      case 'ftruncate':
        await vfs.ftruncate(this.fh(s.fd), s.size);
        return null;
      case 'fstat':
        return statView(await vfs.fgetattr(this.fh(s.fd)));
      case 'writeFile': {
        const fh = await this.open(s.path, ['O_CREAT', 'O_WRONLY', 'O_TRUNC'], s.mode ?? 0o644);
        try {
          await vfs.write(fh, 0, materialize(s.data));
        } finally {
          await this.close(fh);
        }
        return null;
      }
      case 'readFile': {
        const fh = await this.open(s.path, ['O_RDONLY'], 0);
        try {
          return b64(await this.readAll(fh));
        } finally {
          await this.close(fh);
        }
      }
      case 'stat':
        return statView(await vfs.getattr(await this.walk(s.path, true)));
      case 'lstat':
        return statView(await vfs.getattr(await this.walk(s.path, false)));
      case 'truncate':
        await vfs.truncate(await this.walk(s.path, true), s.size);
        return null;
      case 'mkdir':
        await vfs.mkdir(await this.walk(s.path, false), s.mode);
        return null;
      case 'rmdir':
        await vfs.rmdir(await this.walk(s.path, false));
        return null;
      case 'unlink':
        await vfs.unlink(await this.walk(s.path, false));
        return null;
      case 'rename':
        await vfs.rename(await this.walk(s.from, false), await this.walk(s.to, false), (s.noreplace ? 1 : 0) | (s.exchange ? 2 : 0));
        return null;
      case 'link':
        await vfs.link(await this.walk(s.from, false), await this.walk(s.to, false));
        return null;
      case 'symlink':
        await vfs.symlink(s.target, await this.walk(s.path, false));
        return null;
      case 'readlink':
        return vfs.readlink(await this.walk(s.path, false));
      case 'readdir':
        return (await vfs.readdir(await this.walk(s.path, true))).map((e) => e.name);
      case 'chmod':
        await vfs.chmod(await this.walk(s.path, true), s.mode);
        return null;
      case 'chown':
        await vfs.chown(await this.walk(s.path, !s.nofollow), s.uid, s.gid);
        return null;
      case 'utimens':
        await vfs.utimens(await this.walk(s.path, !s.nofollow), timeSet(s.atime), timeSet(s.mtime));
        return null;
      case 'setxattr': {
        const flag = s.flag === 'create' ? XATTR_CREATE : s.flag === 'replace' ? XATTR_REPLACE : 0;
        await vfs.setxattr(await this.walk(s.path, true), s.name, materialize(s.value), flag);
        return null;
      }
      case 'getxattr':
        return b64(await vfs.getxattr(await this.walk(s.path, true), s.name));
      case 'listxattr':
        return (await vfs.listxattr(await this.walk(s.path, true))).filter((n) => n.startsWith('user.'));
      case 'removexattr':
        await vfs.removexattr(await this.walk(s.path, true), s.name);
        return null;
      case 'mkfifo':
        await vfs.mknod(await this.walk(s.path, false), S_IFIFO | s.mode, 0);
        return null;
      case 'bind':
        // what the kernel asks of the filesystem: mknod(S_IFSOCK | 0777 & ~umask); the runners' umask is 0
        try {
          await vfs.mknod(await this.walk(s.path, false), S_IFSOCK | 0o777, 0);
        } catch (e) {
          // the kernel's unix_bind turns a taken name into EADDRINUSE
          if (isFsError(e, 'EEXIST')) throw new KernelError('EADDRINUSE');
          throw e;
        }
        return null;
      case 'mknod':
        {
          const kind = { file: S_IFREG, fifo: S_IFIFO, char: S_IFCHR, block: S_IFBLK, socket: S_IFSOCK }[s.type];
          const [major, minor] = s.dev ?? [0, 0];
          await vfs.mknod(await this.walk(s.path, false), kind | s.mode, (minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12));
        }
        return null;
    }
  }

  async run(steps: Step[], timeoutMs: number): Promise<{ steps: Outcome[]; cleanup: string[] }> {
    const out: Outcome[] = [];
    for (const s of steps) out.push(await outcome(this.step(s), timeoutMs));
    const cleanup: string[] = [];
    for (const [label, fh] of this.fds) {
      const o = await outcome(this.close(fh), timeoutMs);
      if (!o.ok) cleanup.push(`close(${label}): ${o.errno}${o.message ? ` ${o.message}` : ''}`);
    }
    this.fds.clear();
    return { steps: out, cleanup };
  }
}

async function outcome(p: Promise<unknown>, timeoutMs: number): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new KernelError('ETIMEDOUT')), timeoutMs);
  });
  try {
    return { ok: true, value: (await Promise.race([p, timeout])) ?? null };
  } catch (e) {
    if (isFsError(e)) return { ok: false, errno: e.errno, message: e.message };
    if (e instanceof KernelError) return { ok: false, errno: e.errno };
    return { ok: false, errno: 'EXCEPTION', message: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs one scenario in the fresh directory `dir` (absolute in the vfs, e.g.
 * "/s001"; created here with mode 0755, its parent must exist).
 */
export async function runScenarioOnVfs(vfs: Vfs, dir: string, scenario: RunnableScenario, opts: VfsRunOptions = {}): Promise<ScenarioResult> {
  await vfs.mkdir(dir, 0o755);
  const { steps, cleanup } = await new VfsScenario(vfs, dir).run(scenario.steps, opts.stepTimeoutMs ?? 10_000);
  return { name: scenario.name, steps, cleanup };
}
