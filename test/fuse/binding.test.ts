// The patched fuse-native binding through src/fuse/binding.ts, on real mounts.
//
// Each test mounts a small in-memory filesystem in a fresh temp dir, served by
// a CHILD process (this same file, run with QUORUMFS_FUSE_TEST_CHILD set): the
// serving process must never do I/O on its own mount. The child appends what
// its callbacks received to a log file outside the mount; the test does I/O on
// the mount (from this process and from commands it runs) and reads the log.
// Teardown unmounts even on failure (stop the child, then fusermount -u, then
// umount -l) and kills only the child it started.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, chmodSync, linkSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { FuseMount, type Caller, type FuseOps, type MountOptions, type Stat, type TimeSet, type Timespec } from '../../src/fuse/binding.js';

const CHILD_ENV = 'QUORUMFS_FUSE_TEST_CHILD';
const TMP_PREFIX = 'qfs-fuse-test-';
const INO_BASE = 2 ** 52; // inode numbers past 32 bits, as quorumfs allocates them

interface ChildConfig {
  mountpoint: string;
  log: string;
  options: Partial<MountOptions>;
}

type LogEntry =
  | { op: 'create' | 'mkdir'; path: string; caller: Caller }
  | { op: 'utimens'; path: string; atime: TimeSet; mtime: TimeSet }
  | { op: 'write'; path: string; len: number }
  | { op: 'rename'; path: string; to: string; flags: number }
  | { op: 'getxattr' | 'listxattr' | 'setxattr'; path: string }
  | { op: 'invalidate-root'; res: number };

// ---------------------------------------------------------------- the child

async function serveChild(config: ChildConfig): Promise<void> {
  process.stdout.on('error', () => {});
  const log = (e: LogEntry): void => appendFileSync(config.log, JSON.stringify(e) + '\n');
  const S_IFMT = 0o170000;
  const S_IFDIR = 0o040000;
  const S_IFREG = 0o100000;
  const fail = (code: keyof typeof osConstants.errno): never => {
    throw Object.assign(new Error(code), { code });
  };
  const now = (): Timespec => {
    const ms = Date.now();
    return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1e6 };
  };
  interface Inode {
    ino: number;
    mode: number;
    uid: number;
    gid: number;
    nlink: number;
    atime: Timespec;
    mtime: Timespec;
    ctime: Timespec;
    data: Buffer; // capacity; the file is data[0..size)
    size: number;
    xattrs?: Map<string, Buffer>;
  }
  let nextIno = INO_BASE + 1;
  const t0 = now();
  const names = new Map<string, Inode>([['/', { ino: 1, mode: S_IFDIR | 0o1777, uid: 0, gid: 0, nlink: 2, atime: t0, mtime: t0, ctime: t0, data: Buffer.alloc(0), size: 0 }]]);
  const get = (path: string): Inode => names.get(path) ?? fail('ENOENT');
  const parentOf = (path: string): string => path.slice(0, path.lastIndexOf('/')) || '/';
  const stat = (n: Inode): Stat => ({
    ino: n.ino,
    mode: n.mode,
    nlink: n.nlink,
    uid: n.uid,
    gid: n.gid,
    size: (n.mode & S_IFMT) === S_IFDIR ? 4096 : n.size,
    blocks: Math.ceil(n.size / 512),
    blksize: 4096,
    atime: n.atime,
    mtime: n.mtime,
    ctime: n.ctime,
    noXattrs: (n.xattrs?.size ?? 0) === 0,
  });
  const make = (c: Caller, path: string, mode: number): Inode => {
    if (names.has(path)) fail('EEXIST');
    get(parentOf(path));
    const t = now();
    const n: Inode = { ino: nextIno++, mode, uid: c.uid, gid: c.gid, nlink: (mode & S_IFMT) === S_IFDIR ? 2 : 1, atime: t, mtime: t, ctime: t, data: Buffer.alloc(0), size: 0 };
    names.set(path, n);
    return n;
  };
  const resize = (n: Inode, size: number): void => {
    if (size > n.data.length) {
      const data = Buffer.alloc(Math.max(size, 2 * n.data.length));
      n.data.copy(data, 0, 0, n.size);
      n.data = data;
    } else if (size < n.size) {
      n.data.fill(0, size, n.size);
    }
    n.size = size;
  };
  const drop = (path: string): void => {
    const n = get(path);
    n.nlink--;
    n.ctime = now();
    names.delete(path);
  };

  const ops: FuseOps = {
    getattr: (_c, path) => stat(get(path)),
    statfs: () => ({ bsize: 4096, frsize: 4096, blocks: 1 << 20, bfree: 1 << 20, bavail: 1 << 20, files: 1 << 20, ffree: 1 << 20, favail: 1 << 20, namemax: 255 }),
    readdir: (_c, path) => {
      get(path);
      return { names: [...names.keys()].filter((p) => p !== '/' && parentOf(p) === path).map((p) => p.slice(p.lastIndexOf('/') + 1)) };
    },
    create: (c, path, mode) => {
      log({ op: 'create', path, caller: c });
      make(c, path, S_IFREG | (mode & 0o7777));
      return 1;
    },
    mkdir: (c, path, mode) => {
      log({ op: 'mkdir', path, caller: c });
      make(c, path, S_IFDIR | (mode & 0o7777));
    },
    open: (_c, path) => {
      get(path);
      return 1;
    },
    read: (_c, path, _fh, buf, len, offset) => {
      const n = get(path);
      return offset >= n.size ? 0 : n.data.copy(buf, 0, offset, Math.min(offset + len, n.size));
    },
    write: (_c, path, _fh, buf, len, offset) => {
      log({ op: 'write', path, len });
      const n = get(path);
      if (offset + len > n.size) resize(n, offset + len);
      buf.copy(n.data, offset, 0, len);
      n.mtime = n.ctime = now();
      return len;
    },
    truncate: (_c, path, size) => {
      const n = get(path);
      resize(n, size);
      n.mtime = n.ctime = now();
    },
    utimens: (_c, path, atime, mtime) => {
      log({ op: 'utimens', path, atime, mtime });
      const n = get(path);
      const t = now();
      if (atime !== 'omit') n.atime = atime === 'now' ? t : atime;
      if (mtime !== 'omit') n.mtime = mtime === 'now' ? t : mtime;
      n.ctime = t;
    },
    chmod: (_c, path, mode) => {
      const n = get(path);
      n.mode = (n.mode & S_IFMT) | (mode & 0o7777);
      n.ctime = now();
    },
    chown: (_c, path, uid, gid) => {
      const n = get(path);
      if (uid !== 0xffffffff) n.uid = uid;
      if (gid !== 0xffffffff) n.gid = gid;
      n.ctime = now();
    },
    link: (_c, existing, path) => {
      const n = get(existing);
      if (names.has(path)) fail('EEXIST');
      n.nlink++;
      n.ctime = now();
      names.set(path, n);
    },
    unlink: (_c, path) => drop(path),
    rmdir: (_c, path) => {
      if ([...names.keys()].some((p) => p !== path && parentOf(p) === path)) fail('ENOTEMPTY');
      names.delete(path);
    },
    rename: (_c, from, to, flags) => {
      log({ op: 'rename', path: from, to, flags });
      const n = get(from);
      if (flags & 2) {
        // RENAME_EXCHANGE (files only here)
        names.set(from, get(to));
        names.set(to, n);
        return;
      }
      if (names.has(to)) drop(to);
      for (const [p, m] of [...names]) {
        if (p.startsWith(from + '/')) {
          names.delete(p);
          names.set(to + p.slice(from.length), m);
        }
      }
      names.delete(from);
      names.set(to, n);
      n.ctime = now();
    },
    getxattr: (_c, path, name) => {
      log({ op: 'getxattr', path });
      return get(path).xattrs?.get(name) ?? null;
    },
    listxattr: (_c, path) => {
      log({ op: 'listxattr', path });
      return [...(get(path).xattrs?.keys() ?? [])];
    },
    setxattr: (_c, path, name, value) => {
      log({ op: 'setxattr', path });
      const n = get(path);
      (n.xattrs ??= new Map()).set(name, Buffer.from(value));
      n.ctime = now();
    },
    flush: () => {},
    fsync: () => {},
    release: () => {},
  };

  let mount: FuseMount;
  try {
    mount = await FuseMount.mount(config.mountpoint, ops, config.options);
  } catch (err) {
    process.stderr.write(`test child: mount failed: ${(err as Error).message}\n`);
    process.exit(1);
  }
  log({ op: 'invalidate-root', res: mount.invalidate('/') });
  process.stdout.write('ready\n');
  const stop = async (): Promise<void> => {
    await mount.unmount().catch(() => {});
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() === 'stop') break;
  }
  await stop();
}

// ---------------------------------------------------------------- the tests

interface Served {
  dir: string;
  mnt: string;
  log: string;
  child: ChildProcess;
  entries(): LogEntry[];
}

function isMounted(mountpoint: string): boolean {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === mountpoint);
}

function exited(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function teardown(s: Served): Promise<void> {
  s.child.stdin?.end('stop\n');
  await exited(s.child, 5000);
  for (const cmd of [['fusermount', '-u', s.mnt], ['umount', '-l', s.mnt]]) {
    if (!isMounted(s.mnt)) break;
    try {
      execFileSync(cmd[0]!, cmd.slice(1), { stdio: 'ignore' });
    } catch {
      // try the next way
    }
  }
  if (s.child.exitCode === null && s.child.signalCode === null) {
    s.child.kill('SIGKILL');
    await exited(s.child, 5000);
  }
  if (!isMounted(s.mnt)) rmSync(s.dir, { recursive: true, force: true });
}

async function serve(t: ExecutionContext, options: Partial<MountOptions> = {}): Promise<Served> {
  const dir = mkdtempSync(join(tmpdir(), TMP_PREFIX));
  chmodSync(dir, 0o755); // other users reach the mount through it
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  const log = join(dir, 'callbacks.log');
  writeFileSync(log, '');
  const config: ChildConfig = { mountpoint: mnt, log, options };
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], {
    env: { ...process.env, [CHILD_ENV]: JSON.stringify(config) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const s: Served = {
    dir,
    mnt,
    log,
    child,
    entries: () =>
      readFileSync(log, 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as LogEntry),
  };
  t.teardown(() => teardown(s));
  const ready = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 15_000);
    child.once('exit', () => resolve(false));
    createInterface({ input: child.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      resolve(line === 'ready');
    });
  });
  if (!ready) throw new Error('the child did not mount');
  t.true(isMounted(mnt), 'mounted');
  return s;
}

async function declareTests(): Promise<void> {
  const { default: test } = await import('ava');
  const children = new Set<ChildProcess>();
  const served = async (t: ExecutionContext, options: Partial<MountOptions> = {}): Promise<Served> => {
    const s = await serve(t, options);
    children.add(s.child);
    return s;
  };

  test.serial('the layout check passes: invalidate() works on this libfuse', async (t) => {
    const s = await served(t);
    t.deepEqual(s.entries().find((e) => e.op === 'invalidate-root'), { op: 'invalidate-root', res: 0 });
  });

  test.serial('files made through an allow_other mount by another user arrive with that user as caller', async (t) => {
    const s = await served(t, { allowOther: true });
    const asNobody = (...cmd: string[]): void => {
      execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', ...cmd], { stdio: 'pipe' });
    };
    asNobody('touch', join(s.mnt, 'by-nobody'));
    asNobody('mkdir', join(s.mnt, 'dir-by-nobody'));
    writeFileSync(join(s.mnt, 'by-root'), 'x');

    const made = s.entries().filter((e): e is Extract<LogEntry, { caller: Caller }> => e.op === 'create' || e.op === 'mkdir');
    const byPath = new Map(made.map((e) => [e.path, e.caller]));
    t.like(byPath.get('/by-nobody'), { uid: 65534, gid: 65534 });
    t.like(byPath.get('/dir-by-nobody'), { uid: 65534, gid: 65534 });
    t.like(byPath.get('/by-root'), { uid: 0, gid: 0 });
    t.true((byPath.get('/by-nobody')?.pid ?? 0) > 0);
    // and the filesystem made them theirs, so their own permission checks work
    t.is(statSync(join(s.mnt, 'by-nobody')).uid, 65534);
    t.is(statSync(join(s.mnt, 'dir-by-nobody')).gid, 65534);
    asNobody('touch', join(s.mnt, 'dir-by-nobody', 'inner'));
    t.is(statSync(join(s.mnt, 'dir-by-nobody', 'inner')).uid, 65534);
  });

  test.serial('touch -m / -a and UTIME_OMIT set exactly the times asked for, to the nanosecond', async (t) => {
    const s = await served(t);
    const f = join(s.mnt, 'f');
    writeFileSync(f, 'x');
    const utimens = (): Array<Extract<LogEntry, { op: 'utimens' }>> =>
      s.entries().filter((e): e is Extract<LogEntry, { op: 'utimens' }> => e.op === 'utimens');

    execFileSync('touch', ['-m', '-d', '@1700000000.123456789', f]);
    t.deepEqual(utimens().at(-1), { op: 'utimens', path: '/f', atime: 'omit', mtime: { sec: 1700000000, nsec: 123456789 } });
    const afterM = statSync(f, { bigint: true });
    t.is(afterM.mtimeNs, 1700000000123456789n);

    execFileSync('touch', ['-a', '-d', '@1600000000.987654321', f]);
    t.deepEqual(utimens().at(-1), { op: 'utimens', path: '/f', atime: { sec: 1600000000, nsec: 987654321 }, mtime: 'omit' });
    const afterA = statSync(f, { bigint: true });
    t.is(afterA.atimeNs, 1600000000987654321n);
    t.is(afterA.mtimeNs, 1700000000123456789n, 'touch -a left the mtime alone');

    // both at once, and a time before 1970 (negative seconds)
    execFileSync('touch', ['-d', '1969-12-31 23:59:58.25 UTC', f]);
    t.deepEqual(utimens().at(-1), { op: 'utimens', path: '/f', atime: { sec: -2, nsec: 250000000 }, mtime: { sec: -2, nsec: 250000000 } });
    t.is(statSync(f, { bigint: true }).mtimeNs, -1750000000n);
  });

  // libfuse 3: writes of up to max_write (1 MiB by default, the most the kernel takes: max_pages 256)
  for (const [bigWrites, expected] of [[true, 1048576], [false, 4096]] as const) {
    test.serial(`dd bs=1M writes arrive in ${expected}-byte pieces with bigWrites ${bigWrites}`, async (t) => {
      const s = await served(t, { bigWrites });
      execFileSync('dd', ['if=/dev/zero', `of=${join(s.mnt, 'w')}`, 'bs=1M', 'count=8', 'conv=fsync'], { stdio: 'pipe' });
      const writes = s.entries().filter((e): e is Extract<LogEntry, { op: 'write' }> => e.op === 'write');
      t.is(writes.reduce((sum, w) => sum + w.len, 0), 8 * 1024 * 1024);
      t.is(Math.max(...writes.map((w) => w.len)), expected);
      t.is(statSync(join(s.mnt, 'w')).size, 8 * 1024 * 1024);
    });
  }

  // With 60 s attribute and entry caches, every name of a hard-linked file
  // keeps what the kernel last heard about it, unless we invalidate it.
  const hardLinkSteps = (t: ExecutionContext, mnt: string): { modeOfB: number; nlinkOfB: number[] } => {
    const p = (n: string): string => join(mnt, n);
    writeFileSync(p('a'), 'x');
    chmodSync(p('a'), 0o644);
    linkSync(p('a'), p('b'));
    const [a, b] = [statSync(p('a'), { bigint: true }), statSync(p('b'), { bigint: true })];
    t.is(b.nlink, 2n);
    t.is(a.ino, b.ino, 'use_ino: both names show the same st_ino');
    t.true(b.ino > BigInt(INO_BASE), 'inode numbers past 32 bits');

    chmodSync(p('a'), 0o600); // through a
    const modeOfB = statSync(p('b')).mode & 0o777;
    const nlinkOfB: number[] = [];
    linkSync(p('a'), p('c')); // through a: b is neither name
    nlinkOfB.push(statSync(p('b')).nlink);
    unlinkSync(p('a'));
    nlinkOfB.push(statSync(p('b')).nlink);
    writeFileSync(p('z'), 'y');
    renameSync(p('z'), p('c')); // replaces c
    nlinkOfB.push(statSync(p('b')).nlink);
    return { modeOfB, nlinkOfB };
  };

  test.serial('after chmod, link, unlink or rename through one name, the other names show it at once', async (t) => {
    const s = await served(t, { attrTimeout: 60, entryTimeout: 60 });
    const { modeOfB, nlinkOfB } = hardLinkSteps(t, s.mnt);
    t.is(modeOfB, 0o600);
    t.deepEqual(nlinkOfB, [3, 2, 1]);
  });

  test.serial('control: without hardLinkInvalidation the other names are stale (the defect it fixes)', async (t) => {
    const s = await served(t, { attrTimeout: 60, entryTimeout: 60, hardLinkInvalidation: false });
    const { modeOfB, nlinkOfB } = hardLinkSteps(t, s.mnt);
    t.is(modeOfB, 0o644);
    t.deepEqual(nlinkOfB, [2, 2, 2]);
  });

  // python3 (Node has no xattr calls): stat, then getxattr and listxattr of each path
  const xattrProbe = (paths: string[]): Array<{ get: string; list: string[] }> =>
    JSON.parse(
      execFileSync('python3', ['-c', XATTR_PROBE_PY, ...paths], { encoding: 'utf8' }),
    ) as Array<{ get: string; list: string[] }>;
  const xattrCalls = (s: Served, path: string): number => s.entries().filter((e) => (e.op === 'getxattr' || e.op === 'listxattr') && e.path === path).length;

  test.serial('getxattr/listxattr of a file getattr showed without xattrs are answered without JS; a setxattr is seen at once', async (t) => {
    const s = await served(t, { attrTimeout: 60, entryTimeout: 60 });
    writeFileSync(join(s.mnt, 'plain'), 'x');
    writeFileSync(join(s.mnt, 'tagged'), 'y');
    execFileSync('python3', ['-c', 'import os,sys; os.setxattr(sys.argv[1], "user.k", b"v1")', join(s.mnt, 'tagged')]);
    const before = xattrProbe([join(s.mnt, 'plain'), join(s.mnt, 'tagged')]);
    t.deepEqual(before, [
      { get: 'ENODATA', list: [] },
      { get: 'v1', list: ['user.k'] },
    ]);
    t.is(xattrCalls(s, '/plain'), 0, 'answered in C');
    t.true(xattrCalls(s, '/tagged') >= 2, 'a file with xattrs is asked in JS');
    // a new attribute on the plain file is visible to the very next call
    execFileSync('python3', ['-c', 'import os,sys; os.setxattr(sys.argv[1], "user.k", b"v2")', join(s.mnt, 'plain')]);
    t.deepEqual(xattrProbe([join(s.mnt, 'plain')]), [{ get: 'v2', list: ['user.k'] }]);
    t.true(xattrCalls(s, '/plain') >= 2);
    // a rename onto a known-plain name must not hide the renamed file's attributes
    writeFileSync(join(s.mnt, 'plain2'), 'z');
    t.deepEqual(xattrProbe([join(s.mnt, 'plain2')]), [{ get: 'ENODATA', list: [] }]);
    renameSync(join(s.mnt, 'tagged'), join(s.mnt, 'plain2'));
    t.deepEqual(xattrProbe([join(s.mnt, 'plain2')]), [{ get: 'v1', list: ['user.k'] }]);
  });

  test.serial('the kernel\'s security.capability check before each write is answered in C (a write drops the attributes, not the known absence of xattrs); a setxattr still shows', async (t) => {
    const s = await served(t, { attrTimeout: 60, entryTimeout: 60 });
    const f = join(s.mnt, 'w');
    writeFileSync(f, 'start');
    t.deepEqual(xattrProbe([f]), [{ get: 'ENODATA', list: [] }]);
    const before = xattrCalls(s, '/w');
    // 200 writes through one descriptor: each one is preceded by a getxattr from the kernel
    execFileSync('python3', ['-c', 'import os,sys\nfd=os.open(sys.argv[1], os.O_WRONLY)\nfor i in range(200): os.pwrite(fd, b"x", i)\nos.close(fd)', f]);
    t.is(xattrCalls(s, '/w') - before, 0, 'no getxattr reached JS');
    t.is(statSync(f).size, 200, 'the size after the writes is fresh');
    execFileSync('python3', ['-c', 'import os,sys; os.setxattr(sys.argv[1], "user.k", b"v")', f]);
    t.deepEqual(xattrProbe([f]), [{ get: 'v', list: ['user.k'] }]);
  });

  test.serial('a getxattr that JS answers ENODATA on a file without xattrs teaches the C cache: the writes after it, with no stat between, ask nothing in JS', async (t) => {
    const s = await served(t, { attrTimeout: 60, entryTimeout: 60 });
    writeFileSync(join(s.mnt, 'w'), 'start');
    writeFileSync(join(s.mnt, 'a'), 'a');
    const getxattrs = (): number => s.entries().filter((e) => e.op === 'getxattr' && e.path === '/w').length;
    const before = getxattrs();
    // a rename empties the C cache, so nothing is known of /w until JS is asked once
    const py = [
      'import os,sys,errno',
      'd=sys.argv[1]; f=d+"/w"',
      'os.rename(d+"/a", d+"/b")',
      'try:\n  os.getxattr(f, "user.other"); sys.exit("no ENODATA")',
      'except OSError as e:\n  assert e.errno == errno.ENODATA, e',
      'fd=os.open(f, os.O_WRONLY)',
      'for i in range(200): os.pwrite(fd, b"x", i)',
      'os.close(fd)',
    ].join('\n');
    execFileSync('python3', ['-c', py, s.mnt]);
    t.is(getxattrs() - before, 1, 'only the first getxattr reached JS, not the 200 security.capability checks of the writes');
    t.is(statSync(join(s.mnt, 'w')).size, 200);
    // and an attribute set afterwards still shows at once
    execFileSync('python3', ['-c', 'import os,sys; os.setxattr(sys.argv[1], "user.k", b"v")', join(s.mnt, 'w')]);
    t.deepEqual(xattrProbe([join(s.mnt, 'w')]), [{ get: 'v', list: ['user.k'] }]);
  });

  test.serial('renameat2: RENAME_NOREPLACE and RENAME_EXCHANGE reach JS with their flags; RENAME_WHITEOUT is refused with EINVAL before JS', async (t) => {
    const s = await served(t);
    writeFileSync(join(s.mnt, 'a'), 'A');
    writeFileSync(join(s.mnt, 'b'), 'B');
    const py = [
      'import ctypes, os, sys, errno',
      'libc = ctypes.CDLL(None, use_errno=True)',
      'def r2(a, b, flags):',
      '  if libc.renameat2(-100, os.fsencode(a), -100, os.fsencode(b), ctypes.c_uint(flags)) != 0: return errno.errorcode[ctypes.get_errno()]',
      '  return "ok"',
      'd = sys.argv[1]',
      'print(r2(d + "/a", d + "/c", 1), r2(d + "/b", d + "/c", 2), r2(d + "/b", d + "/c", 4))',
    ].join('\n');
    t.is(execFileSync('python3', ['-c', py, s.mnt], { encoding: 'utf8' }).trim(), 'ok ok EINVAL');
    const renames = s.entries().filter((e) => e.op === 'rename');
    t.deepEqual(renames, [
      { op: 'rename', path: '/a', to: '/c', flags: 1 },
      { op: 'rename', path: '/b', to: '/c', flags: 2 },
    ]);
    // swapped, and the kernel's view follows (libfuse swapped its nodes)
    t.is(readFileSync(join(s.mnt, 'b'), 'utf8'), 'A');
    t.is(readFileSync(join(s.mnt, 'c'), 'utf8'), 'B');
  });

  test.serial('with a stat racing every write, each write is seen by the next stat (the C attribute cache never keeps a size older than a finished write)', async (t) => {
    const s = await served(t, { attrTimeout: 60, entryTimeout: 60 });
    const stale = execFileSync('python3', ['-c', WRITE_VS_STAT_PY, join(s.mnt, 'grow'), '1500'], { encoding: 'utf8' });
    t.is(stale.trim(), '0 stale of 1500');
  });

  test.serial('control: with cacheXattrs off every getxattr reaches JS', async (t) => {
    const s = await served(t, { cacheXattrs: false });
    writeFileSync(join(s.mnt, 'plain'), 'x');
    const n0 = xattrCalls(s, '/plain'); // the kernel's security.capability check before the write
    t.deepEqual(xattrProbe([join(s.mnt, 'plain')]), [{ get: 'ENODATA', list: [] }]);
    t.is(xattrCalls(s, '/plain'), n0 + 2);
  });

  test.serial('a bad mount option fails the mount and leaves nothing mounted', async (t) => {
    const err = await t.throwsAsync(served(t, { extraOptions: ['no_such_option'] }));
    t.truthy(err);
  });

  test.after.always('no mount and no child left behind', async () => {
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });

  test.serial('last: no mount or child process left behind', async (t) => {
    // every earlier test's teardown has run by now (serial)
    const leftovers = readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .filter((l) => l.includes(TMP_PREFIX));
    t.deepEqual(leftovers, []);
    t.deepEqual([...children].filter((c) => c.exitCode === null && c.signalCode === null).map((c) => c.pid), []);
  });
}

const XATTR_PROBE_PY = `
import errno, json, os, sys
out = []
for p in sys.argv[1:]:
    os.stat(p)
    try:
        got = os.getxattr(p, 'user.k').decode()
    except OSError as e:
        got = errno.errorcode[e.errno]
    out.append({'get': got, 'list': sorted(os.listxattr(p))})
print(json.dumps(out))
`;

// One process appends 10 bytes at a time and stats the file after each append,
// while a second process stats it in a loop (getattrs racing the writes).
const WRITE_VS_STAT_PY = `
import os, sys, multiprocessing
path, n = sys.argv[1], int(sys.argv[2])
open(path, 'wb').close()
def hammer(stop):
    while not stop.is_set():
        os.stat(path)
stop = multiprocessing.Event()
p = multiprocessing.Process(target=hammer, args=(stop,))
p.start()
stale = 0
with open(path, 'ab', buffering=0) as f:
    for i in range(1, n + 1):
        f.write(b'0123456789')
        if os.stat(path).st_size != 10 * i:
            stale += 1
stop.set()
p.join()
print(f'{stale} stale of {n}')
`;

const childConfig = process.env[CHILD_ENV];
if (childConfig !== undefined) {
  await serveChild(JSON.parse(childConfig) as ChildConfig);
} else {
  await declareTests();
}
