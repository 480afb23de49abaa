// POSIX behaviour of the vfs over the in-memory key space.
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { isFsError } from '../../src/meta/errors.js';
import { O_CREAT, O_EXCL, O_RDWR, O_TRUNC, O_WRONLY, O_APPEND, XATTR_CREATE, XATTR_REPLACE } from '../../src/vfs/vfs.js';
import { memoryVfs } from '../helpers/memfs.js';
import { FsMeta } from '../../src/meta/fs-meta.js';
import { Vfs } from '../../src/vfs/vfs.js';
import { silentLogger } from '../../src/util/log.js';
import { mapPageKey } from '../../src/meta/schema.js';
import type { Ino } from '../../src/meta/types.js';
import type { CallOpts } from '../../src/keyspace/types.js';

const errno = async (p: Promise<unknown>) => {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (isFsError(e)) return e.errno;
    throw e;
  }
};

test('create, write, close, reopen, read back; small files stay inline, large ones use chunks', async (t) => {
  const { vfs, ks } = await memoryVfs({ chunkSize: 64 * 1024 });
  const fh = await vfs.create('/small', 0o644, O_CREAT | O_WRONLY);
  await vfs.write(fh, 0, Buffer.from('hello world'));
  await vfs.release(fh);
  t.is(ks.chunkCount, 0, 'inline: no chunk stored');
  const r = await vfs.open('/small', 0);
  t.is((await vfs.read(r, 0, 100)).toString(), 'hello world');
  t.is((await vfs.read(r, 6, 3)).toString(), 'wor');
  await vfs.release(r);

  const big = randomBytes(300_000);
  const w = await vfs.create('/big', 0o644, O_CREAT | O_WRONLY);
  for (let off = 0; off < big.length; off += 4096) await vfs.write(w, off, big.subarray(off, off + 4096));
  await vfs.release(w);
  t.is(ks.chunkCount, 5, '300 000 bytes in 64 KiB chunks');
  t.is((await vfs.getattr('/big')).size, big.length);
  const rb = await vfs.open('/big', 0);
  const back = await vfs.read(rb, 0, big.length + 10);
  t.is(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(big).digest('hex'));
  await vfs.release(rb);
});

test('sparse files read zeros and store nothing for holes', async (t) => {
  const { vfs, ks } = await memoryVfs({ chunkSize: 64 * 1024 });
  const fh = await vfs.create('/sparse', 0o644, O_CREAT | O_RDWR);
  await vfs.write(fh, 0, Buffer.alloc(20_000, 1)); // past inline: chunked
  await vfs.write(fh, 10 * 64 * 1024, Buffer.from('end'));
  await vfs.release(fh);
  t.is((await vfs.getattr('/sparse')).size, 10 * 64 * 1024 + 3);
  t.is(ks.chunkCount, 2);
  const r = await vfs.open('/sparse', 0);
  t.deepEqual(await vfs.read(r, 5 * 64 * 1024, 10), Buffer.alloc(10));
  t.is((await vfs.read(r, 10 * 64 * 1024, 10)).toString(), 'end');
  await vfs.release(r);
});

test('a read into a buffer that holds other bytes (as FUSE hands it) gets zeros in holes, within a slot and across slots', async (t) => {
  const cs = 64 * 1024;
  const { vfs } = await memoryVfs({ chunkSize: cs });
  const fh = await vfs.create('/holes', 0o644, O_CREAT | O_RDWR);
  await vfs.write(fh, 0, Buffer.alloc(20_000, 1));
  await vfs.write(fh, 30_000, Buffer.alloc(10_000, 2)); // a hole inside slot 0
  await vfs.write(fh, 3 * cs + 5, Buffer.alloc(10, 3)); // slots 1 and 2 are holes
  await vfs.release(fh);
  const r = await vfs.open('/holes', 0);
  const want = Buffer.alloc(3 * cs + 15);
  want.fill(1, 0, 20_000).fill(2, 30_000, 40_000).fill(3, 3 * cs + 5, 3 * cs + 15);
  const into = Buffer.alloc(want.length + 100, 0xee);
  const got = await vfs.read(r, 0, want.length + 100, into);
  t.is(got.length, want.length);
  t.true(got.equals(want));
  await vfs.release(r);
});

test('truncate shrinks and grows; a grown tail reads zeros', async (t) => {
  const { vfs } = await memoryVfs({ chunkSize: 64 * 1024 });
  const fh = await vfs.create('/t', 0o644, O_CREAT | O_RDWR);
  await vfs.write(fh, 0, Buffer.alloc(200_000, 7));
  await vfs.ftruncate(fh, 100_000);
  await vfs.ftruncate(fh, 150_000);
  await vfs.flush(fh);
  const back = await vfs.read(fh, 0, 200_000);
  t.is(back.length, 150_000);
  t.true(back.subarray(0, 100_000).every((b) => b === 7));
  t.true(back.subarray(100_000).every((b) => b === 0));
  await vfs.release(fh);
  await vfs.truncate('/t', 3);
  t.is((await vfs.getattr('/t')).size, 3);
});

test('a publish that runs while a truncate or a write is on its way does not lose the rest of it', async (t) => {
  const { vfs, ks } = await memoryVfs({ chunkSize: 64 * 1024 });
  // Holds reads of one chunk-map page until released: the truncate or write that
  // turns an inline file into a chunked one reads it on its way, and waits there.
  let held: { key: Buffer; release: () => void; reached: () => void } | null = null;
  const read = ks.read.bind(ks);
  ks.read = async (key, opts) => {
    const h = held;
    if (h && key.equals(h.key)) {
      h.reached();
      await new Promise<void>((r) => (h.release = r));
    }
    return read(key, opts);
  };
  const midway = async (path: string, change: (fh: number) => Promise<unknown>): Promise<void> => {
    const made = await vfs.create(path, 0o644, O_CREAT | O_RDWR);
    await vfs.write(made, 0, Buffer.from('abc'));
    await vfs.release(made);
    const fh = await vfs.open(path, O_RDWR); // a fresh open file: it reads the map page when it needs it
    let reached!: () => void;
    const there = new Promise<void>((r) => (reached = r));
    const h = (held = { key: mapPageKey((await vfs.getattr(path)).ino as Ino, 0), release: () => {}, reached });
    const changing = change(fh);
    await there;
    held = null;
    await vfs.flush(fh); // publishes what is there so far, while the change waits
    h.release();
    await changing;
    await vfs.release(fh);
  };
  await midway('/grown', (fh) => vfs.ftruncate(fh, 200_000));
  await midway('/written', (fh) => vfs.write(fh, 100_000, Buffer.alloc(5000, 9)));
  // What was published, as another mount sees it.
  const other = new Vfs(new FsMeta(ks, await FsMeta.load(ks)), ks, { log: silentLogger(), attrTtlMs: 0, entryTtlMs: 0 });
  t.is((await other.getattr('/grown')).size, 200_000);
  t.is((await other.getattr('/written')).size, 105_000);
  const r = await other.open('/written', 0);
  const back = await other.read(r, 0, 200_000);
  await other.release(r);
  t.is(back.length, 105_000);
  t.is(back.subarray(0, 3).toString(), 'abc');
  t.true(back.subarray(3, 100_000).every((b) => b === 0));
  t.true(back.subarray(100_000).every((b) => b === 9));
});

test('O_EXCL, O_TRUNC and O_APPEND', async (t) => {
  const { vfs } = await memoryVfs();
  await vfs.release(await vfs.create('/f', 0o644, O_CREAT | O_EXCL | O_WRONLY));
  t.is(await errno(vfs.create('/f', 0o644, O_CREAT | O_EXCL | O_WRONLY)), 'EEXIST');
  const a = await vfs.open('/f', O_WRONLY | O_APPEND);
  await vfs.write(a, 0, Buffer.from('one'));
  await vfs.write(a, 0, Buffer.from('two'));
  await vfs.release(a);
  const r = await vfs.open('/f', 0);
  t.is((await vfs.read(r, 0, 10)).toString(), 'onetwo');
  await vfs.release(r);
  await vfs.release(await vfs.open('/f', O_WRONLY | O_TRUNC));
  t.is((await vfs.getattr('/f')).size, 0);
});

test('directories: mkdir, readdir, rmdir ENOTEMPTY, nlink', async (t) => {
  const { vfs } = await memoryVfs();
  await vfs.mkdir('/d', 0o755);
  await vfs.mkdir('/d/sub', 0o755);
  await vfs.release(await vfs.create('/d/f', 0o644, O_CREAT | O_WRONLY));
  t.deepEqual((await vfs.readdir('/d')).map((e) => e.name).sort(), ['f', 'sub']);
  t.is((await vfs.getattr('/d')).nlink, 3);
  t.is(await errno(vfs.rmdir('/d')), 'ENOTEMPTY');
  t.is(await errno(vfs.rmdir('/d/f')), 'ENOTDIR');
  t.is(await errno(vfs.unlink('/d/sub')), 'EISDIR');
  t.is(await errno(vfs.mkdir('/d', 0o755)), 'EEXIST');
  t.is(await errno(vfs.mkdir('/nope/x', 0o755)), 'ENOENT');
  t.is(await errno(vfs.mkdir('/d/f/x', 0o755)), 'ENOTDIR');
  t.is(await errno(vfs.mkdir('/' + 'n'.repeat(256), 0o755)), 'ENAMETOOLONG');
  await vfs.rmdir('/d/sub');
  await vfs.unlink('/d/f');
  await vfs.rmdir('/d');
  t.is(await errno(vfs.getattr('/d')), 'ENOENT');
});

test('rename: replace a file, a directory onto an empty one, ENOTEMPTY, EINVAL into itself', async (t) => {
  const { vfs } = await memoryVfs();
  const w = async (p: string, s: string) => {
    const fh = await vfs.create(p, 0o644, O_CREAT | O_WRONLY | O_TRUNC);
    await vfs.write(fh, 0, Buffer.from(s));
    await vfs.release(fh);
  };
  const r = async (p: string) => {
    const fh = await vfs.open(p, 0);
    const b = await vfs.read(fh, 0, 100);
    await vfs.release(fh);
    return b.toString();
  };
  await w('/a', 'A');
  await w('/b', 'B');
  await vfs.rename('/a', '/b');
  t.is(await r('/b'), 'A');
  t.is(await errno(vfs.getattr('/a')), 'ENOENT');
  await vfs.mkdir('/d1', 0o755);
  await vfs.mkdir('/d2', 0o755);
  await w('/d1/x', 'X');
  await vfs.rename('/d1', '/d2');
  t.is(await r('/d2/x'), 'X');
  await vfs.mkdir('/d3', 0o755);
  t.is(await errno(vfs.rename('/d3', '/d2')), 'ENOTEMPTY');
  t.is(await errno(vfs.rename('/d2', '/d2/inner')), 'EINVAL');
  t.is(await errno(vfs.rename('/b', '/d3')), 'EISDIR');
  t.is(await errno(vfs.rename('/d3', '/b')), 'ENOTDIR');
  await vfs.mkdir('/d2/deep', 0o755);
  t.is(await errno(vfs.rename('/d2', '/d2/deep/x')), 'EINVAL');
  await vfs.rename('/d2/x', '/d3/x');
  t.is(await r('/d3/x'), 'X');
});

test('hard links share an inode and count links; symlinks read back', async (t) => {
  const { vfs } = await memoryVfs();
  await vfs.release(await vfs.create('/f', 0o644, O_CREAT | O_WRONLY));
  await vfs.link('/f', '/g');
  t.is((await vfs.getattr('/f')).nlink, 2);
  t.is((await vfs.getattr('/f')).ino, (await vfs.getattr('/g')).ino);
  await vfs.unlink('/f');
  t.is((await vfs.getattr('/g')).nlink, 1);
  await vfs.symlink('/g', '/s');
  t.is(await vfs.readlink('/s'), '/g');
  t.is(await errno(vfs.readlink('/g')), 'EINVAL');
  await vfs.mkdir('/d', 0o755);
  t.is(await errno(vfs.link('/d', '/d2')), 'EPERM');
});

test('xattrs: create/replace flags, ENODATA, size limits', async (t) => {
  const { vfs } = await memoryVfs();
  await vfs.release(await vfs.create('/f', 0o644, O_CREAT | O_WRONLY));
  await vfs.setxattr('/f', 'user.a', Buffer.from('1'), 0);
  t.is(await errno(vfs.setxattr('/f', 'user.a', Buffer.from('2'), XATTR_CREATE)), 'EEXIST');
  t.is(await errno(vfs.setxattr('/f', 'user.b', Buffer.from('2'), XATTR_REPLACE)), 'ENODATA');
  await vfs.setxattr('/f', 'user.a', Buffer.from('3'), XATTR_REPLACE);
  t.is((await vfs.getxattr('/f', 'user.a')).toString(), '3');
  t.deepEqual(await vfs.listxattr('/f'), ['user.a']);
  t.is(await errno(vfs.getxattr('/f', 'user.none')), 'ENODATA');
  t.is(await errno(vfs.setxattr('/f', 'user.big', Buffer.alloc(65 * 1024), 0)), 'E2BIG');
  await vfs.removexattr('/f', 'user.a');
  t.is(await errno(vfs.removexattr('/f', 'user.a')), 'ENODATA');
});

test('chmod, chown permissions and utimens with omit', async (t) => {
  const { vfs } = await memoryVfs();
  await vfs.release(await vfs.create('/f', 0o644, O_CREAT | O_WRONLY, { uid: 1000, gid: 1000, pid: 1 }));
  await vfs.chmod('/f', 0o600, { uid: 1000, gid: 1000, pid: 1 });
  t.is((await vfs.getattr('/f')).mode & 0o7777, 0o600);
  t.is(await errno(vfs.chmod('/f', 0o777, { uid: 1001, gid: 1001, pid: 1 })), 'EPERM');
  t.is(await errno(vfs.chown('/f', 1001, 1000, { uid: 1000, gid: 1000, pid: 1 })), 'EPERM');
  await vfs.chown('/f', 1001, 1001);
  t.is((await vfs.getattr('/f')).uid, 1001);
  const before = await vfs.getattr('/f');
  await vfs.utimens('/f', 'omit', { sec: 1_700_000_000, nsec: 123_456_789 });
  const after = await vfs.getattr('/f');
  t.deepEqual(after.mtime, { sec: 1_700_000_000, nsec: 123_456_789 });
  t.deepEqual(after.atime, before.atime);
});

test('a file written for long without fsync or close has its uploaded chunks published (gc counts their age from the upload)', async (t) => {
  const { MemoryKeySpace } = await import('../../src/keyspace/memory.js');
  const { FsMeta } = await import('../../src/meta/fs-meta.js');
  const { Vfs } = await import('../../src/vfs/vfs.js');
  const { silentLogger } = await import('../../src/util/log.js');
  const ks = new MemoryKeySpace();
  const sb = await FsMeta.format(ks, { chunkSize: 64 * 1024, replication: 1 });
  const writer = new Vfs(new FsMeta(ks, sb), ks, { log: silentLogger(), publishAfterMs: 50 });
  const reader = new Vfs(new FsMeta(ks, sb), ks, { log: silentLogger(), attrTtlMs: 0, entryTtlMs: 0, publishAfterMs: 0 });
  t.teardown(() => {
    writer.close();
    reader.close();
  });
  const fh = await writer.create('/log', 0o644, O_CREAT | O_WRONLY);
  const data = randomBytes(3 * 64 * 1024);
  await writer.write(fh, 0, data); // three full chunks: uploaded in the background
  let seen = 0;
  for (let i = 0; i < 100 && seen < data.length; i++) {
    await new Promise((r) => setTimeout(r, 20));
    seen = (await reader.getattr('/log')).size;
  }
  t.is(seen, data.length, 'published while still open');
  const r = await reader.open('/log', 0);
  t.deepEqual(await reader.read(r, 0, data.length), data);
  await reader.release(r);
  await writer.release(fh);
});

test('a stat whose name entry expired reads the name and the inode it named at once, and still follows a name that changed', async (t) => {
  const { MemoryKeySpace } = await import('../../src/keyspace/memory.js');
  const { FsMeta } = await import('../../src/meta/fs-meta.js');
  const { Vfs } = await import('../../src/vfs/vfs.js');
  const { silentLogger } = await import('../../src/util/log.js');
  let inFlight = 0;
  let most = 0;
  let reads = 0;
  class SlowReads extends MemoryKeySpace {
    override async read(key: Buffer, opts?: CallOpts): Promise<Buffer | null> {
      reads++;
      inFlight++;
      most = Math.max(most, inFlight);
      try {
        await new Promise((r) => setTimeout(r, 15));
        return await super.read(key, opts);
      } finally {
        inFlight--;
      }
    }
  }
  const ks = new SlowReads();
  const sb = await FsMeta.format(ks, { chunkSize: 64 * 1024, replication: 1 });
  const writer = new Vfs(new FsMeta(ks, sb), ks, { log: silentLogger() });
  // 1 ms caches: every answer has expired by the next call (0 would keep nothing, not even the last answer)
  const reader = new Vfs(new FsMeta(ks, sb), ks, { log: silentLogger(), attrTtlMs: 1, entryTtlMs: 1 });
  t.teardown(() => {
    writer.close();
    reader.close();
  });
  for (const name of ['/f', '/g']) await writer.release(await writer.create(name, 0o644, O_CREAT | O_WRONLY));
  const f = await reader.getattr('/f'); // the reader has seen /f once
  await new Promise((r) => setTimeout(r, 5)); // and what it saw has expired
  most = 0;
  reads = 0;
  t.is((await reader.getattr('/f')).ino, f.ino);
  t.is(reads, 2, 'the name and the inode');
  t.is(most, 2, 'read at the same time');

  // another mount changes the inode: the answer is fresh
  await writer.chmod('/f', 0o600);
  await new Promise((r) => setTimeout(r, 5));
  t.is((await reader.getattr('/f')).mode & 0o777, 0o600);
  // another mount puts a different inode under the name: the guess is dropped
  const g = await writer.getattr('/g');
  await writer.rename('/g', '/f');
  await new Promise((r) => setTimeout(r, 5));
  const now = await reader.getattr('/f');
  t.is(now.ino, g.ino);
  t.not(now.ino, f.ino);
});

test('device nodes need root (CAP_MKNOD); sockets and fifos do not; an unknown file type is EINVAL', async (t) => {
  const { vfs } = await memoryVfs();
  const user = { uid: 1000, gid: 1000, pid: 1 };
  await vfs.chmod('/', 0o777);
  t.is(await errno(vfs.mknod('/c', 0o020000 | 0o600, 0x103, user)), 'EPERM');
  t.is(await errno(vfs.mknod('/b', 0o060000 | 0o600, 0x801, user)), 'EPERM');
  t.is(await errno(vfs.mknod('/s', 0o140000 | 0o600, 0, user)), 'ok');
  t.is(await errno(vfs.mknod('/p', 0o010000 | 0o600, 0, user)), 'ok');
  t.is(await errno(vfs.mknod('/x', 0o170000 | 0o600, 0)), 'EINVAL');
  const st = await vfs.mknod('/c', 0o020000 | 0o600, 0x103);
  t.is(st.rdev, 0x103, 'the device numbers are kept');
  t.is((await vfs.getattr('/s')).rdev, 0, 'no device numbers on a socket');
});

test('chown to a supplementary group of the caller is allowed, to another group EPERM; chmod keeps setgid for a member', async (t) => {
  const { vfs } = await memoryVfs();
  await vfs.chmod('/', 0o777);
  const user = { uid: 1000, gid: 1000, pid: 1, groups: [50, 60] };
  const fh = await vfs.create('/f', 0o644, O_CREAT | O_WRONLY, user);
  await vfs.release(fh);
  t.is(await errno(vfs.chown('/f', -1, 60, user)), 'ok');
  t.is((await vfs.getattr('/f')).gid, 60);
  t.is(await errno(vfs.chown('/f', -1, 70, user)), 'EPERM');
  t.is(await errno(vfs.chown('/f', -1, 70, { uid: 1000, gid: 1000, pid: 1 })), 'EPERM');
  await vfs.chmod('/f', 0o2755, user);
  t.is((await vfs.getattr('/f')).mode & 0o7777, 0o2755, 'a member keeps setgid');
  await vfs.chmod('/f', 0o2755, { ...user, groups: [] });
  t.is((await vfs.getattr('/f')).mode & 0o7777, 0o755, 'a non-member loses it');
});

test('the kernel\'s kill-priv chmod on a write by another user clears setuid/setgid; any other chmod by a non-owner is EPERM', async (t) => {
  const { vfs } = await memoryVfs();
  const fh = await vfs.create('/s', 0o6777, O_CREAT | O_WRONLY);
  await vfs.release(fh);
  const other = { uid: 1000, gid: 1000, pid: 1 };
  t.is(await errno(vfs.chmod('/s', 0o0777, other)), 'ok');
  t.is((await vfs.getattr('/s')).mode & 0o7777, 0o777);
  await vfs.chmod('/s', 0o6777);
  t.is(await errno(vfs.chmod('/s', 0o2777, other)), 'ok', 'setuid alone (a file without group-execute keeps setgid)');
  t.is(await errno(vfs.chmod('/s', 0o2775, other)), 'EPERM', 'a permission bit too');
  t.is(await errno(vfs.chmod('/s', 0o6777, other)), 'EPERM', 'adding back');
  t.is((await vfs.getattr('/s')).mode & 0o7777, 0o2777);
});
