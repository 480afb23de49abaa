// The POSIX scenario table: operations × expected results and errnos, one
// category per system call. Pure data in the step language of
// test/helpers/posix-steps.ts. Every scenario runs as root (uid 0) with umask 0
// in a fresh directory of its own; paths are relative to it ("." is that
// directory). The reference run (reference.test.ts) checks the table itself
// against Linux on a local filesystem; memory.test.ts runs it on the vfs over
// the in-memory key space; a real mount runs it through the same python runner.
//
// Sizes: the in-memory vfs keeps files up to 16 KiB inline and cuts larger
// ones in 64 KiB chunks, so "small" and "chunked" variants cross both paths.
import type { Category, Data, Fails, Scenario, Step, Time } from '../helpers/posix-steps.js';

const fails = (errno: string): Fails => ({ errno });

const T1: Time = { sec: 1_600_000_000, nsec: 123_456_789 };
const T2: Time = { sec: 1_700_000_001, nsec: 987_654_321 };
const T3: Time = { sec: 1_500_000_000, nsec: 1 };

/** A 10-byte pattern, repeated: any misplaced byte shows. */
const pat = (len: number, from = 0): Data => {
  const p = 'abcdefghij';
  const k = from % p.length;
  return { fill: p.slice(k) + p.slice(0, k), len };
};
const BIG = 200_000; // past the inline limit, across three 64 KiB chunks

const N255 = 'n'.repeat(255);
const N256 = 'n'.repeat(256);
const U255 = 'é'.repeat(127) + 'a'; // 254 + 1 bytes
const U256 = 'é'.repeat(128); // 128 characters, 256 bytes
const E255 = '🙂'.repeat(63) + 'abc'; // 252 + 3 bytes
const E256 = '🙂'.repeat(64);

const file = (path: string, data: Data = '', mode?: number): Step => (mode === undefined ? { op: 'writeFile', path, data } : { op: 'writeFile', path, data, mode });
const dir = (path: string, mode = 0o755): Step => ({ op: 'mkdir', path, mode });

/** A directory's times pinned to T1 first, so a change made by the step under test shows. */
const pinned = (path: string): Step => ({ op: 'utimens', path, atime: T1, mtime: T1 });
const mtimeRecent = (path: string): Step => ({ op: 'stat', path, expect: { mtime: 'recent' } });

const open: Scenario[] = [
  {
    name: 'O_CREAT creates an empty file with the given mode',
    category: 'open',
    run: { op: 'open', path: 'f', flags: ['O_CREAT', 'O_WRONLY'], mode: 0o640, as: 'fd' },
    check: [
      { op: 'fstat', fd: 'fd', expect: { type: 'file', size: 0, nlink: 1, mode: 0o640, uid: 0, gid: 0 } },
      { op: 'close', fd: 'fd' },
      { op: 'stat', path: 'f', expect: { type: 'file', size: 0, mode: 0o640 } },
    ],
  },
  {
    name: 'O_CREAT keeps setuid and sticky bits of the mode (root)',
    category: 'open',
    run: { op: 'open', path: 'f', flags: ['O_CREAT', 'O_WRONLY'], mode: 0o5755, as: 'fd' },
    check: [{ op: 'stat', path: 'f', expect: { mode: 0o5755 } }],
  },
  {
    name: 'O_CREAT|O_EXCL on an existing file: EEXIST, the file untouched',
    category: 'open',
    setup: [file('f', 'abc')],
    run: { op: 'open', path: 'f', flags: ['O_CREAT', 'O_EXCL', 'O_WRONLY'], mode: 0o644, as: 'fd', expect: fails('EEXIST') },
    check: [{ op: 'readFile', path: 'f', expect: { data: 'abc' } }],
  },
  {
    name: 'O_CREAT without O_EXCL opens an existing file, keeping its bytes and mode',
    category: 'open',
    setup: [file('f', 'abc', 0o600)],
    run: { op: 'open', path: 'f', flags: ['O_CREAT', 'O_RDWR'], mode: 0o777, as: 'fd' },
    check: [
      { op: 'read', fd: 'fd', pos: 0, len: 10, expect: { data: 'abc' } },
      { op: 'fstat', fd: 'fd', expect: { mode: 0o600, size: 3 } },
    ],
  },
  {
    name: 'O_TRUNC empties an existing file',
    category: 'open',
    setup: [file('f', 'hello')],
    run: { op: 'open', path: 'f', flags: ['O_WRONLY', 'O_TRUNC'], as: 'fd' },
    check: [{ op: 'fstat', fd: 'fd', expect: { size: 0 } }, { op: 'close', fd: 'fd' }, { op: 'readFile', path: 'f', expect: { data: '' } }],
  },
  {
    name: 'O_CREAT|O_TRUNC empties a chunked file; its old bytes never come back',
    category: 'open',
    setup: [file('f', pat(BIG))],
    run: { op: 'open', path: 'f', flags: ['O_CREAT', 'O_RDWR', 'O_TRUNC'], as: 'fd' },
    check: [
      { op: 'fstat', fd: 'fd', expect: { size: 0 } },
      { op: 'write', fd: 'fd', pos: 70_000, data: 'x' },
      { op: 'close', fd: 'fd' },
      { op: 'readFile', path: 'f', expect: { data: [{ zeros: 70_000 }, 'x'] } },
    ],
  },
  {
    name: 'O_APPEND writes at the end whatever the position',
    category: 'open',
    setup: [file('f', 'abc'), { op: 'open', path: 'f', flags: ['O_WRONLY', 'O_APPEND'], as: 'fd' }],
    run: { op: 'write', fd: 'fd', pos: 0, data: 'def', expect: { value: 3 } },
    check: [{ op: 'write', fd: 'fd', pos: 1, data: 'gh' }, { op: 'close', fd: 'fd' }, { op: 'readFile', path: 'f', expect: { data: 'abcdefgh' } }],
  },
  {
    name: 'a missing name without O_CREAT: ENOENT',
    category: 'open',
    run: { op: 'open', path: 'nope', flags: ['O_RDONLY'], as: 'fd', expect: fails('ENOENT') },
  },
  {
    name: 'O_CREAT in a missing directory: ENOENT',
    category: 'open',
    run: { op: 'open', path: 'nodir/f', flags: ['O_CREAT', 'O_WRONLY'], as: 'fd', expect: fails('ENOENT') },
  },
  {
    name: 'a directory opened for writing: EISDIR',
    category: 'open',
    setup: [dir('d')],
    run: { op: 'open', path: 'd', flags: ['O_WRONLY'], as: 'fd', expect: fails('EISDIR') },
  },
  {
    name: 'a directory opened read-write: EISDIR',
    category: 'open',
    setup: [dir('d')],
    run: { op: 'open', path: 'd', flags: ['O_RDWR'], as: 'fd', expect: fails('EISDIR') },
  },
  {
    name: 'a directory opened read-only succeeds',
    category: 'open',
    setup: [dir('d')],
    run: { op: 'open', path: 'd', flags: ['O_RDONLY'], as: 'fd' },
    check: [{ op: 'fstat', fd: 'fd', expect: { type: 'dir' } }, { op: 'close', fd: 'fd' }],
  },
  {
    name: 'O_CREAT on an existing directory: EISDIR',
    category: 'open',
    setup: [dir('d')],
    run: { op: 'open', path: 'd', flags: ['O_CREAT', 'O_WRONLY'], as: 'fd', expect: fails('EISDIR') },
  },
  {
    name: 'O_CREAT|O_EXCL on an existing directory: EEXIST',
    category: 'open',
    setup: [dir('d')],
    run: { op: 'open', path: 'd', flags: ['O_CREAT', 'O_EXCL', 'O_WRONLY'], as: 'fd', expect: fails('EEXIST') },
  },
  {
    name: 'O_DIRECTORY on a regular file: ENOTDIR',
    category: 'open',
    setup: [file('f', 'x')],
    run: { op: 'open', path: 'f', flags: ['O_RDONLY', 'O_DIRECTORY'], as: 'fd', expect: fails('ENOTDIR') },
  },
  {
    name: 'O_DIRECTORY on a directory succeeds',
    category: 'open',
    setup: [dir('d')],
    run: { op: 'open', path: 'd', flags: ['O_RDONLY', 'O_DIRECTORY'], as: 'fd' },
    check: [{ op: 'close', fd: 'fd' }],
  },
  {
    name: 'a regular file in the middle of the path: ENOTDIR',
    category: 'open',
    setup: [file('f', 'x')],
    run: { op: 'open', path: 'f/x', flags: ['O_RDONLY'], as: 'fd', expect: fails('ENOTDIR') },
  },
  {
    name: 'O_CREAT under a regular file: ENOTDIR',
    category: 'open',
    setup: [file('f', 'x')],
    run: { op: 'open', path: 'f/x', flags: ['O_CREAT', 'O_WRONLY'], as: 'fd', expect: fails('ENOTDIR') },
  },
  {
    name: 'creating a file moves the directory\'s mtime',
    category: 'open',
    setup: [dir('d'), pinned('d')],
    run: { op: 'open', path: 'd/f', flags: ['O_CREAT', 'O_WRONLY'], as: 'fd' },
    check: [mtimeRecent('d')],
  },
  {
    name: 'O_CREAT|O_EXCL on a dangling symlink: EEXIST (not followed)',
    category: 'open',
    setup: [{ op: 'symlink', target: 'target', path: 'l' }],
    run: { op: 'open', path: 'l', flags: ['O_CREAT', 'O_EXCL', 'O_WRONLY'], as: 'fd', expect: fails('EEXIST') },
    check: [{ op: 'lstat', path: 'target', expect: fails('ENOENT') }],
  },
  {
    name: 'O_CREAT through a dangling symlink creates its target',
    category: 'open',
    setup: [{ op: 'symlink', target: 'target', path: 'l' }],
    run: { op: 'open', path: 'l', flags: ['O_CREAT', 'O_WRONLY'], mode: 0o600, as: 'fd' },
    check: [
      { op: 'lstat', path: 'target', expect: { type: 'file', mode: 0o600 } },
      { op: 'lstat', path: 'l', expect: { type: 'symlink' } },
    ],
  },
];

const readWrite: Scenario[] = [
  {
    name: 'write then read back through the same descriptor',
    category: 'read-write',
    setup: [{ op: 'open', path: 'f', flags: ['O_CREAT', 'O_RDWR'], as: 'fd' }],
    run: { op: 'write', fd: 'fd', pos: 0, data: 'hello world', expect: { value: 11 } },
    check: [
      { op: 'read', fd: 'fd', pos: 0, len: 100, expect: { data: 'hello world' } },
      { op: 'read', fd: 'fd', pos: 6, len: 3, expect: { data: 'wor' } },
    ],
  },
  {
    name: 'a read at or past the end of file returns nothing; across it, the rest',
    category: 'read-write',
    setup: [file('f', 'abc'), { op: 'open', path: 'f', flags: ['O_RDONLY'], as: 'fd' }],
    run: { op: 'read', fd: 'fd', pos: 3, len: 10, expect: { data: '' } },
    check: [
      { op: 'read', fd: 'fd', pos: 1000, len: 10, expect: { data: '' } },
      { op: 'read', fd: 'fd', pos: 1, len: 100, expect: { data: 'bc' } },
    ],
  },
  {
    name: 'a write past the end leaves a hole that reads zeros (small file)',
    category: 'read-write',
    setup: [{ op: 'open', path: 'f', flags: ['O_CREAT', 'O_RDWR'], as: 'fd' }, { op: 'write', fd: 'fd', pos: 0, data: 'ab' }],
    run: { op: 'write', fd: 'fd', pos: 10, data: 'cd' },
    check: [
      { op: 'fstat', fd: 'fd', expect: { size: 12 } },
      { op: 'read', fd: 'fd', pos: 0, len: 100, expect: { data: ['ab', { zeros: 8 }, 'cd'] } },
      { op: 'close', fd: 'fd' },
      { op: 'readFile', path: 'f', expect: { data: ['ab', { zeros: 8 }, 'cd'] } },
    ],
  },
  {
    name: 'a sparse file: a hole of many chunks reads zeros',
    category: 'read-write',
    setup: [{ op: 'open', path: 'f', flags: ['O_CREAT', 'O_RDWR'], as: 'fd' }, { op: 'write', fd: 'fd', pos: 0, data: pat(20_000) }],
    run: { op: 'write', fd: 'fd', pos: 1_048_576, data: 'end', expect: { value: 3 } },
    check: [
      { op: 'fstat', fd: 'fd', expect: { size: 1_048_579 } },
      { op: 'close', fd: 'fd' },
      { op: 'open', path: 'f', flags: ['O_RDONLY'], as: 'r' },
      { op: 'read', fd: 'r', pos: 19_990, len: 20, expect: { data: [pat(10, 19_990), { zeros: 10 }] } },
      { op: 'read', fd: 'r', pos: 500_000, len: 100, expect: { data: { zeros: 100 } } },
      { op: 'read', fd: 'r', pos: 1_048_570, len: 100, expect: { data: [{ zeros: 6 }, 'end'] } },
    ],
  },
  {
    name: 'a file that is one hole and one byte reads zeros',
    category: 'read-write',
    setup: [{ op: 'open', path: 'f', flags: ['O_CREAT', 'O_WRONLY'], as: 'fd' }],
    run: { op: 'write', fd: 'fd', pos: 300_000, data: 'z' },
    check: [{ op: 'close', fd: 'fd' }, { op: 'readFile', path: 'f', expect: { data: [{ zeros: 300_000 }, 'z'] } }],
  },
  {
    name: 'an overwrite in the middle keeps the rest (small file)',
    category: 'read-write',
    setup: [file('f', 'hello world'), { op: 'open', path: 'f', flags: ['O_WRONLY'], as: 'fd' }],
    run: { op: 'write', fd: 'fd', pos: 6, data: 'WORLD' },
    check: [{ op: 'close', fd: 'fd' }, { op: 'readFile', path: 'f', expect: { data: 'hello WORLD' } }],
  },
  {
    name: 'an overwrite across a chunk boundary keeps the rest (chunked file)',
    category: 'read-write',
    setup: [file('f', pat(BIG)), { op: 'open', path: 'f', flags: ['O_WRONLY'], as: 'fd' }],
    run: { op: 'write', fd: 'fd', pos: 65_530, data: 'XXXXXXXXXXXX' },
    check: [{ op: 'close', fd: 'fd' }, { op: 'readFile', path: 'f', expect: { data: [pat(65_530), 'XXXXXXXXXXXX', pat(BIG - 65_542, 65_542)] } }],
  },
  {
    name: 'one large write across several chunks reads back exactly',
    category: 'read-write',
    setup: [{ op: 'open', path: 'f', flags: ['O_CREAT', 'O_RDWR'], as: 'fd' }],
    run: { op: 'write', fd: 'fd', pos: 0, data: pat(300_001), expect: { value: 300_001 } },
    check: [
      { op: 'read', fd: 'fd', pos: 131_067, len: 10, expect: { data: pat(10, 131_067) } },
      { op: 'fstat', fd: 'fd', expect: { size: 300_001 } },
      { op: 'close', fd: 'fd' },
      { op: 'readFile', path: 'f', expect: { data: pat(300_001) } },
    ],
  },
  {
    name: 'a write far past a small file turns it into a large one',
    category: 'read-write',
    setup: [file('f', 'hello'), { op: 'open', path: 'f', flags: ['O_WRONLY'], as: 'fd' }],
    run: { op: 'write', fd: 'fd', pos: 20_000, data: 'world' },
    check: [{ op: 'close', fd: 'fd' }, { op: 'readFile', path: 'f', expect: { data: ['hello', { zeros: 19_995 }, 'world'] } }],
  },
  {
    name: 'O_APPEND appends after what another descriptor wrote',
    category: 'read-write',
    setup: [
      { op: 'open', path: 'f', flags: ['O_CREAT', 'O_WRONLY'], as: 'a' },
      { op: 'open', path: 'f', flags: ['O_WRONLY', 'O_APPEND'], as: 'b' },
      { op: 'write', fd: 'a', pos: 0, data: 'aaaa' },
    ],
    run: { op: 'write', fd: 'b', pos: 0, data: 'bb' },
    check: [{ op: 'close', fd: 'a' }, { op: 'close', fd: 'b' }, { op: 'readFile', path: 'f', expect: { data: 'aaaabb' } }],
  },
  {
    name: 'a read from a write-only descriptor: EBADF',
    category: 'read-write',
    setup: [file('f', 'abc'), { op: 'open', path: 'f', flags: ['O_WRONLY'], as: 'fd' }],
    run: { op: 'read', fd: 'fd', pos: 0, len: 3, expect: fails('EBADF') },
  },
  {
    name: 'a write to a read-only descriptor: EBADF',
    category: 'read-write',
    setup: [file('f', 'abc'), { op: 'open', path: 'f', flags: ['O_RDONLY'], as: 'fd' }],
    run: { op: 'write', fd: 'fd', pos: 0, data: 'x', expect: fails('EBADF') },
    check: [{ op: 'readFile', path: 'f', expect: { data: 'abc' } }],
  },
  {
    name: 'a second descriptor reads what the first wrote, before any close',
    category: 'read-write',
    setup: [
      { op: 'open', path: 'f', flags: ['O_CREAT', 'O_WRONLY'], as: 'w' },
      { op: 'open', path: 'f', flags: ['O_RDONLY'], as: 'r' },
      { op: 'write', fd: 'w', pos: 0, data: pat(BIG) },
    ],
    run: { op: 'read', fd: 'r', pos: 65_536, len: 20, expect: { data: pat(20, 65_536) } },
    check: [{ op: 'stat', path: 'f', expect: { size: BIG } }],
  },
  {
    name: 'an empty write far out does not grow the file',
    category: 'read-write',
    setup: [{ op: 'open', path: 'f', flags: ['O_CREAT', 'O_RDWR'], as: 'fd' }],
    run: { op: 'write', fd: 'fd', pos: 1000, data: '', expect: { value: 0 } },
    check: [{ op: 'fstat', fd: 'fd', expect: { size: 0 } }, { op: 'close', fd: 'fd' }, { op: 'stat', path: 'f', expect: { size: 0 } }],
  },
  {
    name: 'an unlinked open file stays readable (small)',
    category: 'read-write',
    setup: [file('f', 'data'), { op: 'open', path: 'f', flags: ['O_RDONLY'], as: 'r' }, { op: 'unlink', path: 'f' }],
    run: { op: 'read', fd: 'r', pos: 0, len: 10, expect: { data: 'data' } },
  },
  {
    name: 'an unlinked open file stays readable (chunked)',
    category: 'read-write',
    setup: [file('f', pat(BIG)), { op: 'open', path: 'f', flags: ['O_RDONLY'], as: 'r' }, { op: 'unlink', path: 'f' }],
    run: { op: 'read', fd: 'r', pos: 100_000, len: 10, expect: { data: pat(10, 100_000) } },
    check: [{ op: 'fstat', fd: 'r', expect: { nlink: 0, size: BIG } }],
  },
  {
    name: 'an unlinked open file stays writable and readable',
    category: 'read-write',
    setup: [{ op: 'open', path: 'f', flags: ['O_CREAT', 'O_RDWR'], as: 'fd' }, { op: 'unlink', path: 'f' }],
    run: { op: 'write', fd: 'fd', pos: 0, data: pat(100_000) },
    check: [
      { op: 'read', fd: 'fd', pos: 99_990, len: 100, expect: { data: pat(10, 99_990) } },
      { op: 'fsync', fd: 'fd' },
      { op: 'fstat', fd: 'fd', expect: { nlink: 0, size: 100_000 } },
      { op: 'readdir', path: '.', expect: { value: [] } },
    ],
  },
  {
    name: 'a directory whose only file is unlinked while open can be removed; the file stays usable',
    category: 'rmdir',
    setup: [dir('d'), { op: 'open', path: 'd/f', flags: ['O_CREAT', 'O_RDWR'], as: 'fd' }, { op: 'write', fd: 'fd', pos: 0, data: 'kept' }, { op: 'unlink', path: 'd/f' }],
    run: { op: 'rmdir', path: 'd' },
    check: [
      { op: 'readdir', path: '.', expect: { value: [] } },
      { op: 'write', fd: 'fd', pos: 4, data: ' on' },
      { op: 'read', fd: 'fd', pos: 0, len: 20, expect: { data: 'kept on' } },
    ],
  },
  {
    name: 'fstat of an unlinked open file whose directory was removed',
    known: { mount: "libfuse's high-level API computes no path for a file whose directory is gone and answers the kernel's GETATTR (which carries no handle for fstat) ESTALE itself" },
    category: 'rmdir',
    setup: [dir('d'), { op: 'open', path: 'd/f', flags: ['O_CREAT', 'O_RDWR'], as: 'fd' }, { op: 'write', fd: 'fd', pos: 0, data: 'kept' }, { op: 'unlink', path: 'd/f' }, { op: 'rmdir', path: 'd' }],
    run: { op: 'fstat', fd: 'fd', expect: { nlink: 0, size: 4 } },
  },
  {
    name: 'a file replaced by rename while open for writing keeps taking writes through its descriptor',
    category: 'rename',
    setup: [file('a', 'new'), { op: 'open', path: 'b', flags: ['O_CREAT', 'O_RDWR'], as: 'fd' }, { op: 'write', fd: 'fd', pos: 0, data: 'old' }],
    run: { op: 'rename', from: 'a', to: 'b' },
    check: [
      { op: 'write', fd: 'fd', pos: 3, data: '+' },
      { op: 'read', fd: 'fd', pos: 0, len: 10, expect: { data: 'old+' } },
      { op: 'fstat', fd: 'fd', expect: { nlink: 0, size: 4 } },
      { op: 'close', fd: 'fd' },
      { op: 'readFile', path: 'b', expect: { data: 'new' } },
      { op: 'readdir', path: '.', expect: { value: ['b'] } },
    ],
  },
  {
    name: 'O_APPEND across the inline limit and a chunk boundary',
    category: 'read-write',
    setup: [
      file('f', pat(10_000)),
      { op: 'open', path: 'f', flags: ['O_WRONLY', 'O_APPEND'], as: 'fd' },
      { op: 'write', fd: 'fd', pos: 0, data: pat(10_000, 10_000) },
    ],
    run: { op: 'write', fd: 'fd', pos: 0, data: pat(50_000, 20_000), expect: { value: 50_000 } },
    check: [{ op: 'close', fd: 'fd' }, { op: 'readFile', path: 'f', expect: { data: pat(70_000) } }],
  },
  {
    name: 'a sparse write past 16 MiB (a second chunk-map page), then shrink and unlink',
    category: 'read-write',
    setup: [file('f', pat(100_000)), { op: 'open', path: 'f', flags: ['O_RDWR'], as: 'fd' }],
    run: { op: 'write', fd: 'fd', pos: 20 * 1_048_576, data: 'far' },
    check: [
      { op: 'close', fd: 'fd' },
      { op: 'stat', path: 'f', expect: { size: 20 * 1_048_576 + 3 } },
      { op: 'open', path: 'f', flags: ['O_RDWR'], as: 'r' },
      { op: 'read', fd: 'r', pos: 20 * 1_048_576 - 2, len: 10, expect: { data: [{ zeros: 2 }, 'far'] } },
      { op: 'read', fd: 'r', pos: 99_995, len: 10, expect: { data: [pat(5, 99_995), { zeros: 5 }] } },
      { op: 'ftruncate', fd: 'r', size: 50 },
      { op: 'ftruncate', fd: 'r', size: 20 * 1_048_576 + 3 },
      { op: 'read', fd: 'r', pos: 20 * 1_048_576 - 2, len: 10, expect: { data: { zeros: 5 } } },
      { op: 'read', fd: 'r', pos: 40, len: 20, expect: { data: [pat(10, 40), { zeros: 10 }] } },
      { op: 'close', fd: 'r' },
      { op: 'unlink', path: 'f' },
      { op: 'readdir', path: '.', expect: { value: [] } },
    ],
  },
  {
    name: 'xattrs set while unflushed writes wait survive the close',
    category: 'read-write',
    setup: [{ op: 'open', path: 'f', flags: ['O_CREAT', 'O_WRONLY'], as: 'fd' }, { op: 'write', fd: 'fd', pos: 0, data: pat(80_000) }],
    run: { op: 'setxattr', path: 'f', name: 'user.k', value: 'v' },
    check: [
      { op: 'setxattr', path: 'f', name: 'user.k', value: 'w', flag: 'create', expect: fails('EEXIST') },
      { op: 'removexattr', path: 'f', name: 'user.none', expect: fails('ENODATA') },
      { op: 'close', fd: 'fd' },
      { op: 'getxattr', path: 'f', name: 'user.k', expect: { data: 'v' } },
      { op: 'readFile', path: 'f', expect: { data: pat(80_000) } },
    ],
  },
  {
    name: 'fsync, close, reopen: the bytes are there',
    category: 'read-write',
    setup: [{ op: 'open', path: 'f', flags: ['O_CREAT', 'O_WRONLY'], as: 'fd' }, { op: 'write', fd: 'fd', pos: 0, data: pat(70_000) }],
    run: { op: 'fsync', fd: 'fd' },
    check: [{ op: 'close', fd: 'fd' }, { op: 'readFile', path: 'f', expect: { data: pat(70_000) } }],
  },
];

const truncate: Scenario[] = [
  {
    name: 'growing a small file: the new tail reads zeros',
    category: 'truncate',
    setup: [file('f', 'abc')],
    run: { op: 'truncate', path: 'f', size: 10 },
    check: [{ op: 'stat', path: 'f', expect: { size: 10 } }, { op: 'readFile', path: 'f', expect: { data: ['abc', { zeros: 7 }] } }],
  },
  {
    name: 'growing across chunks: the new tail reads zeros',
    category: 'truncate',
    setup: [file('f', 'abc')],
    run: { op: 'truncate', path: 'f', size: BIG },
    check: [{ op: 'stat', path: 'f', expect: { size: BIG } }, { op: 'readFile', path: 'f', expect: { data: ['abc', { zeros: BIG - 3 }] } }],
  },
  {
    name: 'shrinking a small file',
    category: 'truncate',
    setup: [file('f', 'hello world')],
    run: { op: 'truncate', path: 'f', size: 5 },
    check: [{ op: 'stat', path: 'f', expect: { size: 5 } }, { op: 'readFile', path: 'f', expect: { data: 'hello' } }],
  },
  {
    name: 'shrinking a chunked file into its first chunk',
    category: 'truncate',
    setup: [file('f', pat(BIG))],
    run: { op: 'truncate', path: 'f', size: 12_345 },
    check: [{ op: 'stat', path: 'f', expect: { size: 12_345 } }, { op: 'readFile', path: 'f', expect: { data: pat(12_345) } }],
  },
  {
    name: 'shrink then grow reads zeros, not the old bytes (small file)',
    category: 'truncate',
    setup: [file('f', 'hello world'), { op: 'truncate', path: 'f', size: 2 }],
    run: { op: 'truncate', path: 'f', size: 11 },
    check: [{ op: 'readFile', path: 'f', expect: { data: ['he', { zeros: 9 }] } }],
  },
  {
    name: 'shrink then grow reads zeros, not the old bytes (chunked file)',
    category: 'truncate',
    setup: [file('f', pat(BIG)), { op: 'truncate', path: 'f', size: 70_000 }],
    run: { op: 'truncate', path: 'f', size: BIG },
    check: [{ op: 'readFile', path: 'f', expect: { data: [pat(70_000), { zeros: BIG - 70_000 }] } }],
  },
  {
    name: 'shrink to a chunk boundary then grow reads zeros',
    category: 'truncate',
    setup: [file('f', pat(BIG)), { op: 'truncate', path: 'f', size: 65_536 }],
    run: { op: 'truncate', path: 'f', size: 131_072 },
    check: [{ op: 'readFile', path: 'f', expect: { data: [pat(65_536), { zeros: 65_536 }] } }],
  },
  {
    name: 'to zero, then to the same size again',
    category: 'truncate',
    setup: [file('f', pat(BIG))],
    run: { op: 'truncate', path: 'f', size: 0 },
    check: [
      { op: 'truncate', path: 'f', size: 0 },
      { op: 'stat', path: 'f', expect: { size: 0 } },
      { op: 'readFile', path: 'f', expect: { data: '' } },
    ],
  },
  {
    name: 'a shrink moves mtime',
    category: 'truncate',
    setup: [file('f', 'hello'), { op: 'utimens', path: 'f', atime: T1, mtime: T1 }],
    run: { op: 'truncate', path: 'f', size: 1 },
    check: [mtimeRecent('f')],
  },
  {
    name: 'a negative length: EINVAL',
    category: 'truncate',
    setup: [file('f', 'abc')],
    run: { op: 'truncate', path: 'f', size: -1, expect: fails('EINVAL') },
    check: [{ op: 'readFile', path: 'f', expect: { data: 'abc' } }],
  },
  {
    name: 'a directory: EISDIR',
    category: 'truncate',
    setup: [dir('d')],
    run: { op: 'truncate', path: 'd', size: 0, expect: fails('EISDIR') },
  },
  {
    name: 'a missing file: ENOENT',
    category: 'truncate',
    run: { op: 'truncate', path: 'nope', size: 0, expect: fails('ENOENT') },
  },
  {
    name: 'ftruncate, then a write past the new end: zeros between',
    category: 'truncate',
    setup: [{ op: 'open', path: 'f', flags: ['O_CREAT', 'O_RDWR'], as: 'fd' }, { op: 'write', fd: 'fd', pos: 0, data: pat(100) }],
    run: { op: 'ftruncate', fd: 'fd', size: 10 },
    check: [
      { op: 'fstat', fd: 'fd', expect: { size: 10 } },
      { op: 'write', fd: 'fd', pos: 20, data: 'x' },
      { op: 'read', fd: 'fd', pos: 0, len: 100, expect: { data: [pat(10), { zeros: 10 }, 'x'] } },
    ],
  },
  {
    name: 'ftruncate of a read-only descriptor: EINVAL',
    category: 'truncate',
    setup: [file('f', 'abc'), { op: 'open', path: 'f', flags: ['O_RDONLY'], as: 'fd' }],
    run: { op: 'ftruncate', fd: 'fd', size: 0, expect: fails('EINVAL') },
    check: [{ op: 'close', fd: 'fd' }, { op: 'readFile', path: 'f', expect: { data: 'abc' } }],
  },
  {
    name: 'ftruncate to a negative length: EINVAL',
    category: 'truncate',
    setup: [{ op: 'open', path: 'f', flags: ['O_CREAT', 'O_RDWR'], as: 'fd' }],
    run: { op: 'ftruncate', fd: 'fd', size: -5, expect: fails('EINVAL') },
  },
  {
    name: 'truncate by path while a descriptor holds unflushed writes',
    category: 'truncate',
    setup: [{ op: 'open', path: 'f', flags: ['O_CREAT', 'O_RDWR'], as: 'fd' }, { op: 'write', fd: 'fd', pos: 0, data: 'hello world' }],
    run: { op: 'truncate', path: 'f', size: 5 },
    check: [
      { op: 'fstat', fd: 'fd', expect: { size: 5 } },
      { op: 'read', fd: 'fd', pos: 0, len: 20, expect: { data: 'hello' } },
      { op: 'close', fd: 'fd' },
      { op: 'readFile', path: 'f', expect: { data: 'hello' } },
    ],
  },
];

const mkdir: Scenario[] = [
  {
    name: 'creates an empty directory with the mode and two links',
    category: 'mkdir',
    run: { op: 'mkdir', path: 'd', mode: 0o750 },
    check: [{ op: 'lstat', path: 'd', expect: { type: 'dir', mode: 0o750, nlink: 2, uid: 0, gid: 0 } }, { op: 'readdir', path: 'd', expect: { value: [] } }],
  },
  {
    name: 'the sticky bit of the mode is kept',
    category: 'mkdir',
    run: { op: 'mkdir', path: 'd', mode: 0o1777 },
    check: [{ op: 'lstat', path: 'd', expect: { mode: 0o1777 } }],
  },
  {
    name: 'the setgid bit of the mode is ignored under a plain parent',
    category: 'mkdir',
    run: { op: 'mkdir', path: 'd', mode: 0o2755 },
    check: [{ op: 'lstat', path: 'd', expect: { mode: 0o755 } }],
  },
  {
    name: 'the parent gains a link per subdirectory',
    category: 'mkdir',
    setup: [dir('d'), { op: 'stat', path: 'd', expect: { nlink: 2 } }],
    run: dir('d/a'),
    check: [{ op: 'stat', path: 'd', expect: { nlink: 3 } }, dir('d/b'), { op: 'stat', path: 'd', expect: { nlink: 4 } }],
  },
  {
    name: 'moves the parent\'s mtime',
    category: 'mkdir',
    setup: [dir('d'), pinned('d')],
    run: dir('d/e'),
    check: [mtimeRecent('d')],
  },
  {
    name: 'an existing directory: EEXIST',
    category: 'mkdir',
    setup: [dir('d')],
    run: { op: 'mkdir', path: 'd', mode: 0o755, expect: fails('EEXIST') },
  },
  {
    name: 'an existing file: EEXIST',
    category: 'mkdir',
    setup: [file('f')],
    run: { op: 'mkdir', path: 'f', mode: 0o755, expect: fails('EEXIST') },
    check: [{ op: 'lstat', path: 'f', expect: { type: 'file' } }],
  },
  {
    name: 'a dangling symlink: EEXIST',
    category: 'mkdir',
    setup: [{ op: 'symlink', target: 'nowhere', path: 'l' }],
    run: { op: 'mkdir', path: 'l', mode: 0o755, expect: fails('EEXIST') },
    check: [{ op: 'lstat', path: 'nowhere', expect: fails('ENOENT') }],
  },
  {
    name: 'a missing parent: ENOENT',
    category: 'mkdir',
    run: { op: 'mkdir', path: 'nope/d', mode: 0o755, expect: fails('ENOENT') },
  },
  {
    name: 'a regular file as the parent: ENOTDIR',
    category: 'mkdir',
    setup: [file('f')],
    run: { op: 'mkdir', path: 'f/d', mode: 0o755, expect: fails('ENOTDIR') },
  },
  {
    name: 'a regular file deeper in the path: ENOTDIR',
    category: 'mkdir',
    setup: [file('f')],
    run: { op: 'mkdir', path: 'f/x/d', mode: 0o755, expect: fails('ENOTDIR') },
  },
];

const rmdir: Scenario[] = [
  {
    name: 'removes an empty directory; the parent loses a link',
    category: 'rmdir',
    setup: [dir('d'), dir('d/sub'), { op: 'stat', path: 'd', expect: { nlink: 3 } }, { op: 'stat', path: 'd/sub' }],
    run: { op: 'rmdir', path: 'd/sub' },
    check: [{ op: 'lstat', path: 'd/sub', expect: fails('ENOENT') }, { op: 'stat', path: 'd', expect: { nlink: 2 } }, { op: 'readdir', path: 'd', expect: { value: [] } }],
  },
  {
    name: 'moves the parent\'s mtime',
    category: 'rmdir',
    setup: [dir('d'), dir('d/e'), pinned('d')],
    run: { op: 'rmdir', path: 'd/e' },
    check: [mtimeRecent('d')],
  },
  {
    name: 'a directory holding a file: ENOTEMPTY',
    category: 'rmdir',
    setup: [dir('d'), file('d/f', 'x')],
    run: { op: 'rmdir', path: 'd', expect: fails('ENOTEMPTY') },
    check: [{ op: 'readFile', path: 'd/f', expect: { data: 'x' } }],
  },
  {
    name: 'a directory holding a directory: ENOTEMPTY',
    category: 'rmdir',
    setup: [dir('d'), dir('d/e')],
    run: { op: 'rmdir', path: 'd', expect: fails('ENOTEMPTY') },
    check: [{ op: 'stat', path: 'd', expect: { nlink: 3 } }],
  },
  {
    name: 'a regular file: ENOTDIR',
    category: 'rmdir',
    setup: [file('f')],
    run: { op: 'rmdir', path: 'f', expect: fails('ENOTDIR') },
  },
  {
    name: 'a symlink to a directory: ENOTDIR',
    category: 'rmdir',
    setup: [dir('d'), { op: 'symlink', target: 'd', path: 'l' }],
    run: { op: 'rmdir', path: 'l', expect: fails('ENOTDIR') },
    check: [{ op: 'lstat', path: 'd', expect: { type: 'dir' } }],
  },
  {
    name: 'a missing name: ENOENT',
    category: 'rmdir',
    run: { op: 'rmdir', path: 'nope', expect: fails('ENOENT') },
  },
  {
    name: 'a directory emptied by unlink and rename can go',
    category: 'rmdir',
    setup: [dir('d'), file('d/a'), file('d/b'), { op: 'unlink', path: 'd/a' }, { op: 'rename', from: 'd/b', to: 'b' }],
    run: { op: 'rmdir', path: 'd' },
    check: [{ op: 'readdir', path: '.', expect: { value: ['b'] } }],
  },
  {
    name: 'the name is free again at once, for an empty directory',
    category: 'rmdir',
    setup: [dir('d'), dir('d/x'), { op: 'rmdir', path: 'd/x' }, { op: 'rmdir', path: 'd' }],
    run: dir('d'),
    check: [{ op: 'stat', path: 'd', expect: { nlink: 2 } }, { op: 'readdir', path: 'd', expect: { value: [] } }, { op: 'lstat', path: 'd/x', expect: fails('ENOENT') }],
  },
];

const unlink: Scenario[] = [
  {
    name: 'removes the name',
    category: 'unlink',
    setup: [file('f', 'x'), file('g', 'y')],
    run: { op: 'unlink', path: 'f' },
    check: [{ op: 'lstat', path: 'f', expect: fails('ENOENT') }, { op: 'readdir', path: '.', expect: { value: ['g'] } }],
  },
  {
    name: 'moves the parent\'s mtime',
    category: 'unlink',
    setup: [dir('d'), file('d/f'), pinned('d')],
    run: { op: 'unlink', path: 'd/f' },
    check: [mtimeRecent('d')],
  },
  {
    name: 'a directory: EISDIR',
    category: 'unlink',
    setup: [dir('d')],
    run: { op: 'unlink', path: 'd', expect: fails('EISDIR') },
    check: [{ op: 'lstat', path: 'd', expect: { type: 'dir' } }],
  },
  {
    name: 'a missing name: ENOENT',
    category: 'unlink',
    run: { op: 'unlink', path: 'nope', expect: fails('ENOENT') },
  },
  {
    name: 'a regular file as the parent: ENOTDIR',
    category: 'unlink',
    setup: [file('f')],
    run: { op: 'unlink', path: 'f/x', expect: fails('ENOTDIR') },
  },
  {
    name: 'a symlink goes, its target stays',
    category: 'unlink',
    setup: [file('t', 'x'), { op: 'symlink', target: 't', path: 'l' }],
    run: { op: 'unlink', path: 'l' },
    check: [{ op: 'lstat', path: 'l', expect: fails('ENOENT') }, { op: 'readFile', path: 't', expect: { data: 'x' } }],
  },
  {
    name: 'one of two hard links: the other keeps the bytes with one link',
    category: 'unlink',
    setup: [file('a', pat(BIG)), { op: 'link', from: 'a', to: 'b' }, { op: 'stat', path: 'b', expect: { nlink: 2 } }],
    run: { op: 'unlink', path: 'a' },
    check: [{ op: 'stat', path: 'b', expect: { nlink: 1, size: BIG } }, { op: 'readFile', path: 'b', expect: { data: pat(BIG) } }],
  },
  {
    name: 'the name is free again at once',
    category: 'unlink',
    setup: [file('f', 'old'), { op: 'unlink', path: 'f' }],
    run: file('f', 'new'),
    check: [{ op: 'readFile', path: 'f', expect: { data: 'new' } }, { op: 'stat', path: 'f', expect: { nlink: 1, size: 3 } }],
  },
];

const rename: Scenario[] = [
  {
    name: 'renames a file',
    category: 'rename',
    setup: [file('a', 'A'), { op: 'stat', path: 'a', save: 'a' }],
    run: { op: 'rename', from: 'a', to: 'b' },
    check: [{ op: 'lstat', path: 'a', expect: fails('ENOENT') }, { op: 'stat', path: 'b', expect: { ino: 'a', nlink: 1 } }, { op: 'readFile', path: 'b', expect: { data: 'A' } }],
  },
  {
    name: 'replaces an existing file',
    category: 'rename',
    setup: [file('a', 'A'), file('b', 'B'), { op: 'stat', path: 'a', save: 'a' }, { op: 'stat', path: 'b', save: 'b' }],
    run: { op: 'rename', from: 'a', to: 'b' },
    check: [
      { op: 'readFile', path: 'b', expect: { data: 'A' } },
      { op: 'stat', path: 'b', expect: { ino: 'a' } },
      { op: 'readdir', path: '.', expect: { value: ['b'] } },
    ],
  },
  {
    name: 'the replaced file loses one link; its other name keeps it',
    category: 'rename',
    setup: [file('a', 'A'), file('b', 'B'), { op: 'link', from: 'b', to: 'c' }, { op: 'stat', path: 'c', expect: { nlink: 2 } }],
    run: { op: 'rename', from: 'a', to: 'b' },
    check: [{ op: 'stat', path: 'c', expect: { nlink: 1 } }, { op: 'readFile', path: 'c', expect: { data: 'B' } }],
  },
  {
    name: 'a directory onto an empty directory',
    category: 'rename',
    setup: [dir('d1'), file('d1/x', 'X'), dir('d2'), { op: 'stat', path: 'd1', save: 'd1' }, { op: 'stat', path: 'd2' }, { op: 'stat', path: '.', expect: { nlink: 4 } }],
    run: { op: 'rename', from: 'd1', to: 'd2' },
    check: [
      { op: 'stat', path: 'd2', expect: { ino: 'd1' } },
      { op: 'readFile', path: 'd2/x', expect: { data: 'X' } },
      { op: 'lstat', path: 'd1', expect: fails('ENOENT') },
      { op: 'stat', path: '.', expect: { nlink: 3 } },
    ],
  },
  {
    name: 'a directory onto a non-empty directory: ENOTEMPTY',
    category: 'rename',
    setup: [dir('d1'), dir('d2'), file('d2/x', 'X')],
    run: { op: 'rename', from: 'd1', to: 'd2', expect: fails('ENOTEMPTY') },
    check: [{ op: 'lstat', path: 'd1', expect: { type: 'dir' } }, { op: 'readFile', path: 'd2/x', expect: { data: 'X' } }],
  },
  {
    name: 'a file onto a directory: EISDIR',
    category: 'rename',
    setup: [file('f'), dir('d')],
    run: { op: 'rename', from: 'f', to: 'd', expect: fails('EISDIR') },
    check: [{ op: 'lstat', path: 'f', expect: { type: 'file' } }, { op: 'lstat', path: 'd', expect: { type: 'dir' } }],
  },
  {
    name: 'a directory onto a file: ENOTDIR',
    category: 'rename',
    setup: [file('f'), dir('d')],
    run: { op: 'rename', from: 'd', to: 'f', expect: fails('ENOTDIR') },
  },
  {
    name: 'a directory into itself: EINVAL',
    category: 'rename',
    setup: [dir('d')],
    run: { op: 'rename', from: 'd', to: 'd/x', expect: fails('EINVAL') },
    check: [{ op: 'readdir', path: 'd', expect: { value: [] } }],
  },
  {
    name: 'a directory into its own subtree: EINVAL',
    category: 'rename',
    setup: [dir('d'), dir('d/s'), dir('d/s/t')],
    run: { op: 'rename', from: 'd', to: 'd/s/t/x', expect: fails('EINVAL') },
    check: [{ op: 'readdir', path: '.', expect: { value: ['d'] } }],
  },
  {
    name: 'a directory onto its own parent: ENOTEMPTY',
    category: 'rename',
    setup: [dir('a'), dir('a/b')],
    run: { op: 'rename', from: 'a/b', to: 'a', expect: fails('ENOTEMPTY') },
  },
  {
    name: 'onto the same name: nothing happens',
    category: 'rename',
    setup: [file('a', 'A')],
    run: { op: 'rename', from: 'a', to: 'a' },
    check: [{ op: 'readFile', path: 'a', expect: { data: 'A' } }, { op: 'stat', path: 'a', expect: { nlink: 1 } }],
  },
  {
    name: 'between two hard links of one file: nothing happens',
    category: 'rename',
    setup: [file('a', 'A'), { op: 'link', from: 'a', to: 'b' }],
    run: { op: 'rename', from: 'a', to: 'b' },
    check: [
      { op: 'stat', path: 'a', expect: { nlink: 2 } },
      { op: 'stat', path: 'b', expect: { nlink: 2 } },
      { op: 'readdir', path: '.', expect: { value: ['a', 'b'] } },
    ],
  },
  {
    name: 'a file across directories',
    category: 'rename',
    setup: [dir('d1'), dir('d2'), file('d1/f', 'F')],
    run: { op: 'rename', from: 'd1/f', to: 'd2/g' },
    check: [{ op: 'readdir', path: 'd1', expect: { value: [] } }, { op: 'readFile', path: 'd2/g', expect: { data: 'F' } }],
  },
  {
    name: 'a directory across directories moves one link between the parents',
    category: 'rename',
    setup: [dir('p1'), dir('p2'), dir('p1/d'), file('p1/d/f', 'F'), { op: 'stat', path: 'p1', expect: { nlink: 3 } }, { op: 'stat', path: 'p2', expect: { nlink: 2 } }],
    run: { op: 'rename', from: 'p1/d', to: 'p2/d' },
    check: [
      { op: 'stat', path: 'p1', expect: { nlink: 2 } },
      { op: 'stat', path: 'p2', expect: { nlink: 3 } },
      { op: 'stat', path: 'p2/d', expect: { nlink: 2 } },
      { op: 'readFile', path: 'p2/d/f', expect: { data: 'F' } },
    ],
  },
  {
    name: 'a directory across directories onto an empty one',
    category: 'rename',
    setup: [dir('p1'), dir('p2'), dir('p1/d'), dir('p2/e')],
    run: { op: 'rename', from: 'p1/d', to: 'p2/e' },
    check: [
      { op: 'stat', path: 'p1', expect: { nlink: 2 } },
      { op: 'stat', path: 'p2', expect: { nlink: 3 } },
      { op: 'readdir', path: 'p2', expect: { value: ['e'] } },
    ],
  },
  {
    name: 'across directories moves both parents\' mtimes',
    category: 'rename',
    setup: [dir('p1'), dir('p2'), file('p1/f'), pinned('p1'), pinned('p2')],
    run: { op: 'rename', from: 'p1/f', to: 'p2/f' },
    check: [mtimeRecent('p1'), mtimeRecent('p2')],
  },
  {
    name: 'after a move, the new ancestry decides what is a subtree (EINVAL)',
    category: 'rename',
    setup: [dir('x'), dir('y'), dir('y/z'), { op: 'rename', from: 'y', to: 'x/y' }],
    run: { op: 'rename', from: 'x', to: 'x/y/z/w', expect: fails('EINVAL') },
    check: [{ op: 'readdir', path: '.', expect: { value: ['x'] } }],
  },
  {
    name: 'after a move, the old ancestry no longer blocks',
    category: 'rename',
    setup: [dir('a'), dir('a/b'), { op: 'rename', from: 'a/b', to: 'b' }],
    run: { op: 'rename', from: 'a', to: 'b/a' },
    check: [{ op: 'readdir', path: '.', expect: { value: ['b'] } }, { op: 'stat', path: 'b', expect: { nlink: 3 } }, { op: 'stat', path: 'b/a', expect: { type: 'dir', nlink: 2 } }],
  },
  {
    name: 'a missing source: ENOENT',
    category: 'rename',
    run: { op: 'rename', from: 'nope', to: 'b', expect: fails('ENOENT') },
  },
  {
    name: 'into a missing directory: ENOENT',
    category: 'rename',
    setup: [file('a')],
    run: { op: 'rename', from: 'a', to: 'nodir/b', expect: fails('ENOENT') },
    check: [{ op: 'lstat', path: 'a', expect: { type: 'file' } }],
  },
  {
    name: 'a symlink is renamed, not its target',
    category: 'rename',
    setup: [file('t', 'T'), { op: 'symlink', target: 't', path: 'l' }],
    run: { op: 'rename', from: 'l', to: 'm' },
    check: [{ op: 'readlink', path: 'm', expect: { value: 't' } }, { op: 'readFile', path: 'm', expect: { data: 'T' } }, { op: 'readdir', path: '.', expect: { value: ['m', 't'] } }],
  },
  {
    name: 'RENAME_NOREPLACE onto a taken name: EEXIST',
    category: 'rename',
    setup: [file('a', 'A'), file('b', 'B')],
    run: { op: 'rename', from: 'a', to: 'b', noreplace: true, expect: fails('EEXIST') },
    check: [{ op: 'readFile', path: 'a', expect: { data: 'A' } }, { op: 'readFile', path: 'b', expect: { data: 'B' } }],
  },
  {
    name: 'RENAME_NOREPLACE to a free name',
    category: 'rename',
    setup: [file('a', 'A')],
    run: { op: 'rename', from: 'a', to: 'b', noreplace: true },
    check: [{ op: 'readdir', path: '.', expect: { value: ['b'] } }],
  },
  {
    name: 'RENAME_NOREPLACE of a directory into another directory, to a free name',
    category: 'rename',
    setup: [dir('d'), file('d/f', 'F'), dir('e')],
    run: { op: 'rename', from: 'd', to: 'e/d2', noreplace: true },
    check: [{ op: 'readdir', path: 'e', expect: { value: ['d2'] } }, { op: 'readFile', path: 'e/d2/f', expect: { data: 'F' } }, { op: 'readdir', path: '.', expect: { value: ['e'] } }],
  },
  {
    name: 'RENAME_EXCHANGE of two files in one directory swaps their contents and modes',
    category: 'rename',
    setup: [file('a', 'A', 0o600), file('b', pat(BIG), 0o644)],
    run: { op: 'rename', from: 'a', to: 'b', exchange: true },
    check: [
      { op: 'readFile', path: 'a', expect: { data: pat(BIG) } },
      { op: 'readFile', path: 'b', expect: { data: 'A' } },
      { op: 'stat', path: 'a', expect: { mode: 0o644 } },
      { op: 'stat', path: 'b', expect: { mode: 0o600 } },
      { op: 'readdir', path: '.', expect: { value: ['a', 'b'] } },
    ],
  },
  {
    name: 'RENAME_EXCHANGE of a file and a directory in two directories: each takes the other place, link counts follow',
    category: 'rename',
    setup: [dir('p'), dir('q'), file('p/f', 'F'), dir('q/d'), file('q/d/x', 'X')],
    run: { op: 'rename', from: 'p/f', to: 'q/d', exchange: true },
    check: [
      { op: 'readFile', path: 'q/d', expect: { data: 'F' } },
      { op: 'readFile', path: 'p/f/x', expect: { data: 'X' } },
      { op: 'stat', path: 'p', expect: { nlink: 3 } },
      { op: 'stat', path: 'q', expect: { nlink: 2 } },
      { op: 'stat', path: 'p/f', expect: { type: 'dir' } },
    ],
  },
  {
    name: 'RENAME_EXCHANGE with a missing name: ENOENT, nothing moves',
    category: 'rename',
    setup: [file('a', 'A')],
    run: { op: 'rename', from: 'a', to: 'b', exchange: true, expect: fails('ENOENT') },
    check: [{ op: 'readdir', path: '.', expect: { value: ['a'] } }],
  },
  {
    name: 'RENAME_EXCHANGE of a directory with a name inside it: EINVAL',
    category: 'rename',
    setup: [dir('d'), file('d/f', 'F')],
    run: { op: 'rename', from: 'd', to: 'd/f', exchange: true, expect: fails('EINVAL') },
    check: [{ op: 'readFile', path: 'd/f', expect: { data: 'F' } }],
  },
  {
    name: 'RENAME_EXCHANGE together with RENAME_NOREPLACE: EINVAL',
    category: 'rename',
    setup: [file('a', 'A'), file('b', 'B')],
    run: { op: 'rename', from: 'a', to: 'b', exchange: true, noreplace: true, expect: fails('EINVAL') },
    check: [{ op: 'readFile', path: 'a', expect: { data: 'A' } }, { op: 'readFile', path: 'b', expect: { data: 'B' } }],
  },
  {
    name: 'a replaced file still open for reading keeps its bytes for the descriptor',
    category: 'rename',
    setup: [file('a', 'A'), file('b', pat(BIG)), { op: 'open', path: 'b', flags: ['O_RDONLY'], as: 'r' }],
    run: { op: 'rename', from: 'a', to: 'b' },
    check: [{ op: 'read', fd: 'r', pos: 100_000, len: 10, expect: { data: pat(10, 100_000) } }, { op: 'readFile', path: 'b', expect: { data: 'A' } }],
  },
  {
    name: 'a file renamed while being written keeps every write',
    category: 'rename',
    setup: [{ op: 'open', path: 'f', flags: ['O_CREAT', 'O_WRONLY'], as: 'fd' }, { op: 'write', fd: 'fd', pos: 0, data: pat(100_000) }],
    run: { op: 'rename', from: 'f', to: 'g' },
    check: [
      { op: 'write', fd: 'fd', pos: 100_000, data: pat(50_000, 100_000) },
      { op: 'stat', path: 'g', expect: { size: 150_000 } },
      { op: 'close', fd: 'fd' },
      { op: 'readFile', path: 'g', expect: { data: pat(150_000) } },
      { op: 'lstat', path: 'f', expect: fails('ENOENT') },
    ],
  },
  {
    name: 'the entries of a moved directory are found under the new name only',
    category: 'rename',
    setup: [dir('d'), file('d/f', 'F'), { op: 'stat', path: 'd/f' }],
    run: { op: 'rename', from: 'd', to: 'e' },
    check: [{ op: 'lstat', path: 'd/f', expect: fails('ENOENT') }, { op: 'lstat', path: 'd', expect: fails('ENOENT') }, { op: 'readFile', path: 'e/f', expect: { data: 'F' } }],
  },
];

const link: Scenario[] = [
  {
    name: 'a second name shares the inode; both count two links',
    category: 'link',
    setup: [file('a', 'A'), { op: 'stat', path: 'a', save: 'a' }],
    run: { op: 'link', from: 'a', to: 'b' },
    check: [
      { op: 'stat', path: 'a', expect: { nlink: 2 } },
      { op: 'stat', path: 'b', expect: { nlink: 2, ino: 'a' } },
      { op: 'readFile', path: 'b', expect: { data: 'A' } },
    ],
  },
  {
    name: 'moves the directory\'s mtime',
    category: 'link',
    setup: [file('a'), dir('d'), pinned('d')],
    run: { op: 'link', from: 'a', to: 'd/b' },
    check: [mtimeRecent('d')],
  },
  {
    name: 'a taken name: EEXIST, no link counted',
    category: 'link',
    setup: [file('a'), file('b')],
    run: { op: 'link', from: 'a', to: 'b', expect: fails('EEXIST') },
    check: [{ op: 'stat', path: 'a', expect: { nlink: 1 } }],
  },
  {
    name: 'a directory: EPERM',
    category: 'link',
    setup: [dir('d')],
    run: { op: 'link', from: 'd', to: 'e', expect: fails('EPERM') },
    check: [{ op: 'lstat', path: 'e', expect: fails('ENOENT') }],
  },
  {
    name: 'a missing source: ENOENT',
    category: 'link',
    run: { op: 'link', from: 'nope', to: 'b', expect: fails('ENOENT') },
  },
  {
    name: 'into a missing directory: ENOENT',
    category: 'link',
    setup: [file('a')],
    run: { op: 'link', from: 'a', to: 'nodir/b', expect: fails('ENOENT') },
    check: [{ op: 'stat', path: 'a', expect: { nlink: 1 } }],
  },
  {
    name: 'in another directory; writes through one name show through the other',
    category: 'link',
    setup: [file('a', 'hello'), dir('d')],
    run: { op: 'link', from: 'a', to: 'd/b' },
    check: [
      { op: 'open', path: 'd/b', flags: ['O_WRONLY'], as: 'fd' },
      { op: 'write', fd: 'fd', pos: 0, data: 'J' },
      { op: 'close', fd: 'fd' },
      { op: 'readFile', path: 'a', expect: { data: 'Jello' } },
      { op: 'stat', path: 'a', expect: { nlink: 2 } },
    ],
  },
  {
    name: 'three names, two removed: one link left',
    category: 'link',
    setup: [file('a', 'A'), { op: 'link', from: 'a', to: 'b' }, { op: 'link', from: 'a', to: 'c' }, { op: 'stat', path: 'a', expect: { nlink: 3 } }],
    run: { op: 'unlink', path: 'a' },
    check: [{ op: 'unlink', path: 'b' }, { op: 'stat', path: 'c', expect: { nlink: 1 } }, { op: 'readFile', path: 'c', expect: { data: 'A' } }],
  },
  {
    name: 'a hard link to a symlink links the symlink itself',
    category: 'link',
    setup: [{ op: 'symlink', target: 'somewhere', path: 'l' }],
    run: { op: 'link', from: 'l', to: 'm' },
    check: [{ op: 'lstat', path: 'm', expect: { type: 'symlink', nlink: 2 } }, { op: 'readlink', path: 'm', expect: { value: 'somewhere' } }],
  },
];

const symlink: Scenario[] = [
  {
    name: 'readlink gives the target back; lstat shows a link of the target\'s length',
    category: 'symlink',
    run: { op: 'symlink', target: 'some/target', path: 'l' },
    check: [
      { op: 'readlink', path: 'l', expect: { value: 'some/target' } },
      { op: 'lstat', path: 'l', expect: { type: 'symlink', size: 11, nlink: 1, mode: 0o777, uid: 0 } },
    ],
  },
  {
    name: 'a dangling link: lstat works, stat is ENOENT',
    category: 'symlink',
    setup: [{ op: 'symlink', target: 'nowhere', path: 'l' }],
    run: { op: 'stat', path: 'l', expect: fails('ENOENT') },
    check: [{ op: 'lstat', path: 'l', expect: { type: 'symlink' } }, { op: 'readlink', path: 'l', expect: { value: 'nowhere' } }],
  },
  {
    name: 'an absolute target is stored as given',
    category: 'symlink',
    run: { op: 'symlink', target: '/nonexistent/abs/target', path: 'l' },
    check: [{ op: 'readlink', path: 'l', expect: { value: '/nonexistent/abs/target' } }],
  },
  {
    name: 'a taken name: EEXIST',
    category: 'symlink',
    setup: [file('f', 'x')],
    run: { op: 'symlink', target: 't', path: 'f', expect: fails('EEXIST') },
    check: [{ op: 'readFile', path: 'f', expect: { data: 'x' } }],
  },
  {
    name: 'readlink of a regular file: EINVAL',
    category: 'symlink',
    setup: [file('f')],
    run: { op: 'readlink', path: 'f', expect: fails('EINVAL') },
  },
  {
    name: 'readlink of a directory: EINVAL',
    category: 'symlink',
    setup: [dir('d')],
    run: { op: 'readlink', path: 'd', expect: fails('EINVAL') },
  },
  {
    name: 'readlink of a missing name: ENOENT',
    category: 'symlink',
    run: { op: 'readlink', path: 'nope', expect: fails('ENOENT') },
  },
  {
    name: 'a 4095-byte target works; 4096 bytes: ENAMETOOLONG',
    category: 'symlink',
    run: { op: 'symlink', target: 't'.repeat(4095), path: 'l' },
    check: [
      { op: 'readlink', path: 'l', expect: { value: 't'.repeat(4095) } },
      { op: 'lstat', path: 'l', expect: { size: 4095 } },
      { op: 'symlink', target: 't'.repeat(4096), path: 'm', expect: fails('ENAMETOOLONG') },
    ],
  },
  {
    name: 'an empty target: ENOENT',
    category: 'symlink',
    run: { op: 'symlink', target: '', path: 'l', expect: fails('ENOENT') },
  },
  {
    name: 'in a missing directory: ENOENT',
    category: 'symlink',
    run: { op: 'symlink', target: 't', path: 'nodir/l', expect: fails('ENOENT') },
  },
  {
    name: 'stat and open follow a link to a file',
    category: 'symlink',
    setup: [file('t', 'hello'), { op: 'symlink', target: 't', path: 'l' }],
    run: { op: 'stat', path: 'l', expect: { type: 'file', size: 5 } },
    check: [{ op: 'readFile', path: 'l', expect: { data: 'hello' } }],
  },
  {
    name: 'a path through a link to a directory',
    category: 'symlink',
    setup: [dir('d'), file('d/f', 'F'), { op: 'symlink', target: 'd', path: 'l' }],
    run: { op: 'readFile', path: 'l/f', expect: { data: 'F' } },
    check: [{ op: 'readdir', path: 'l', expect: { value: ['f'] } }, { op: 'stat', path: 'l', expect: { type: 'dir' } }],
  },
  {
    name: 'a relative target with .. and a chain of links',
    category: 'symlink',
    setup: [file('t', 'T'), dir('d'), { op: 'symlink', target: '../t', path: 'd/l1' }, { op: 'symlink', target: 'd/l1', path: 'l2' }],
    run: { op: 'readFile', path: 'l2', expect: { data: 'T' } },
    check: [{ op: 'readlink', path: 'l2', expect: { value: 'd/l1' } }],
  },
  {
    name: 'a non-ASCII target round-trips',
    category: 'symlink',
    run: { op: 'symlink', target: 'cible-é-日本語-🙂', path: 'l' },
    check: [{ op: 'readlink', path: 'l', expect: { value: 'cible-é-日本語-🙂' } }, { op: 'lstat', path: 'l', expect: { size: Buffer.byteLength('cible-é-日本語-🙂') } }],
  },
  {
    name: 'truncate through a link truncates the target',
    category: 'symlink',
    setup: [file('t', 'hello'), { op: 'symlink', target: 't', path: 'l' }],
    run: { op: 'truncate', path: 'l', size: 2 },
    check: [{ op: 'readFile', path: 't', expect: { data: 'he' } }, { op: 'lstat', path: 'l', expect: { type: 'symlink', size: 1 } }],
  },
];

const readdir: Scenario[] = [
  {
    name: 'an empty directory lists nothing (no . or ..)',
    category: 'readdir',
    setup: [dir('d')],
    run: { op: 'readdir', path: 'd', expect: { value: [] } },
  },
  {
    name: 'lists files, directories, links and fifos',
    category: 'readdir',
    setup: [file('f'), dir('d'), { op: 'symlink', target: 'f', path: 'l' }, { op: 'mkfifo', path: 'p', mode: 0o644 }],
    run: { op: 'readdir', path: '.', expect: { value: ['d', 'f', 'l', 'p'] } },
  },
  {
    name: 'more names than one page',
    category: 'readdir',
    setup: Array.from({ length: 1200 }, (_, k): Step => ({ op: 'mknod', path: `n${k}`, type: 'file', mode: 0o644 })),
    run: { op: 'readdir', path: '.', expect: { value: Array.from({ length: 1200 }, (_, k) => `n${k}`) } },
  },
  {
    name: 'removed and renamed names are gone',
    category: 'readdir',
    setup: [file('a'), file('b'), file('c'), { op: 'unlink', path: 'a' }, { op: 'rename', from: 'b', to: 'z' }],
    run: { op: 'readdir', path: '.', expect: { value: ['c', 'z'] } },
  },
  {
    name: 'a regular file: ENOTDIR',
    category: 'readdir',
    setup: [file('f')],
    run: { op: 'readdir', path: 'f', expect: fails('ENOTDIR') },
  },
  {
    name: 'a missing directory: ENOENT',
    category: 'readdir',
    run: { op: 'readdir', path: 'nope', expect: fails('ENOENT') },
  },
];

const chmod: Scenario[] = [
  {
    name: 'sets the permission bits of a file',
    category: 'chmod',
    setup: [file('f', 'x', 0o644)],
    run: { op: 'chmod', path: 'f', mode: 0o600 },
    check: [{ op: 'stat', path: 'f', expect: { mode: 0o600, type: 'file', size: 1 } }],
  },
  {
    name: 'setuid on a file (root)',
    category: 'chmod',
    setup: [file('f')],
    run: { op: 'chmod', path: 'f', mode: 0o4755 },
    check: [{ op: 'stat', path: 'f', expect: { mode: 0o4755 } }],
  },
  {
    name: 'setgid on a file without group execute (root)',
    category: 'chmod',
    setup: [file('f')],
    run: { op: 'chmod', path: 'f', mode: 0o2644 },
    check: [{ op: 'stat', path: 'f', expect: { mode: 0o2644 } }],
  },
  {
    name: 'setgid on a directory',
    category: 'chmod',
    setup: [dir('d')],
    run: { op: 'chmod', path: 'd', mode: 0o2755 },
    check: [{ op: 'stat', path: 'd', expect: { mode: 0o2755, type: 'dir' } }],
  },
  {
    name: 'sticky on a directory',
    category: 'chmod',
    setup: [dir('d')],
    run: { op: 'chmod', path: 'd', mode: 0o1777 },
    check: [{ op: 'stat', path: 'd', expect: { mode: 0o1777 } }],
  },
  {
    name: 'every bit, then none',
    category: 'chmod',
    setup: [file('f')],
    run: { op: 'chmod', path: 'f', mode: 0o7777 },
    check: [{ op: 'stat', path: 'f', expect: { mode: 0o7777 } }, { op: 'chmod', path: 'f', mode: 0 }, { op: 'stat', path: 'f', expect: { mode: 0, type: 'file' } }],
  },
  {
    name: 'through a symlink changes the target, not the link',
    category: 'chmod',
    setup: [file('t', '', 0o644), { op: 'symlink', target: 't', path: 'l' }],
    run: { op: 'chmod', path: 'l', mode: 0o600 },
    check: [{ op: 'lstat', path: 't', expect: { mode: 0o600 } }, { op: 'lstat', path: 'l', expect: { mode: 0o777 } }],
  },
  {
    name: 'a missing name: ENOENT',
    category: 'chmod',
    run: { op: 'chmod', path: 'nope', mode: 0o644, expect: fails('ENOENT') },
  },
  {
    name: 'an open file with unflushed writes keeps them',
    category: 'chmod',
    setup: [{ op: 'open', path: 'f', flags: ['O_CREAT', 'O_WRONLY'], as: 'fd' }, { op: 'write', fd: 'fd', pos: 0, data: 'abc' }],
    run: { op: 'chmod', path: 'f', mode: 0o640 },
    check: [{ op: 'close', fd: 'fd' }, { op: 'stat', path: 'f', expect: { mode: 0o640, size: 3 } }, { op: 'readFile', path: 'f', expect: { data: 'abc' } }],
  },
];

const chown: Scenario[] = [
  {
    name: 'sets owner and group (root)',
    category: 'chown',
    setup: [file('f')],
    run: { op: 'chown', path: 'f', uid: 1234, gid: 5678 },
    check: [{ op: 'stat', path: 'f', expect: { uid: 1234, gid: 5678 } }],
  },
  {
    name: '-1 keeps the owner or the group',
    category: 'chown',
    setup: [file('f'), { op: 'chown', path: 'f', uid: 1234, gid: 5678 }],
    run: { op: 'chown', path: 'f', uid: -1, gid: 42 },
    check: [{ op: 'stat', path: 'f', expect: { uid: 1234, gid: 42 } }, { op: 'chown', path: 'f', uid: 7, gid: -1 }, { op: 'stat', path: 'f', expect: { uid: 7, gid: 42 } }],
  },
  {
    name: 'clears setuid of a file',
    category: 'chown',
    setup: [file('f'), { op: 'chmod', path: 'f', mode: 0o4755 }],
    run: { op: 'chown', path: 'f', uid: 1000, gid: 1000 },
    check: [{ op: 'stat', path: 'f', expect: { mode: 0o755 } }],
  },
  {
    name: 'clears setgid of a group-executable file',
    category: 'chown',
    setup: [file('f'), { op: 'chmod', path: 'f', mode: 0o2755 }],
    run: { op: 'chown', path: 'f', uid: 1000, gid: 1000 },
    check: [{ op: 'stat', path: 'f', expect: { mode: 0o755 } }],
  },
  {
    name: 'keeps setgid of a file without group execute (root)',
    category: 'chown',
    setup: [file('f'), { op: 'chmod', path: 'f', mode: 0o2644 }],
    run: { op: 'chown', path: 'f', uid: 1000, gid: 1000 },
    check: [{ op: 'stat', path: 'f', expect: { mode: 0o2644 } }],
  },
  {
    name: 'clears setuid even when owner and group stay the same',
    category: 'chown',
    setup: [file('f'), { op: 'chmod', path: 'f', mode: 0o4755 }],
    run: { op: 'chown', path: 'f', uid: 0, gid: 0 },
    check: [{ op: 'stat', path: 'f', expect: { mode: 0o755, uid: 0, gid: 0 } }],
  },
  {
    name: 'keeps setgid of a directory',
    category: 'chown',
    setup: [dir('d'), { op: 'chmod', path: 'd', mode: 0o2775 }],
    run: { op: 'chown', path: 'd', uid: 1000, gid: 1000 },
    check: [{ op: 'stat', path: 'd', expect: { mode: 0o2775, uid: 1000, gid: 1000 } }],
  },
  {
    name: 'a setgid directory passes its group to new files and its bit to new directories',
    category: 'chown',
    setup: [dir('d'), { op: 'chown', path: 'd', uid: 0, gid: 77 }, { op: 'chmod', path: 'd', mode: 0o2775 }],
    run: file('d/f'),
    check: [
      { op: 'stat', path: 'd/f', expect: { gid: 77, uid: 0, mode: 0o644 } },
      dir('d/s'),
      { op: 'stat', path: 'd/s', expect: { gid: 77, mode: 0o2755 } },
      { op: 'mkfifo', path: 'd/p', mode: 0o600 },
      { op: 'lstat', path: 'd/p', expect: { gid: 77, mode: 0o600 } },
    ],
  },
  {
    name: 'lchown changes the link, not its target',
    category: 'chown',
    setup: [file('t'), { op: 'symlink', target: 't', path: 'l' }],
    run: { op: 'chown', path: 'l', uid: 1234, gid: 4321, nofollow: true },
    check: [{ op: 'lstat', path: 'l', expect: { uid: 1234, gid: 4321 } }, { op: 'stat', path: 't', expect: { uid: 0, gid: 0 } }],
  },
  {
    name: 'chown through a link changes the target',
    category: 'chown',
    setup: [file('t'), { op: 'symlink', target: 't', path: 'l' }],
    run: { op: 'chown', path: 'l', uid: 1234, gid: 4321 },
    check: [{ op: 'lstat', path: 'l', expect: { uid: 0, gid: 0 } }, { op: 'stat', path: 't', expect: { uid: 1234, gid: 4321 } }],
  },
  {
    name: 'a missing name: ENOENT',
    category: 'chown',
    run: { op: 'chown', path: 'nope', uid: 1, gid: 1, expect: fails('ENOENT') },
  },
];

const utimens: Scenario[] = [
  {
    name: 'sets both times to the nanosecond',
    category: 'utimens',
    setup: [file('f', 'x')],
    run: { op: 'utimens', path: 'f', atime: T1, mtime: T2 },
    check: [{ op: 'stat', path: 'f', expect: { atime: T1, mtime: T2 } }],
  },
  {
    name: 'UTIME_OMIT for atime keeps it',
    category: 'utimens',
    setup: [file('f', 'x'), { op: 'utimens', path: 'f', atime: T1, mtime: T1 }],
    run: { op: 'utimens', path: 'f', atime: 'omit', mtime: T2 },
    check: [{ op: 'stat', path: 'f', expect: { atime: T1, mtime: T2 } }],
  },
  {
    name: 'UTIME_OMIT for mtime keeps it',
    category: 'utimens',
    setup: [file('f', 'x'), { op: 'utimens', path: 'f', atime: T1, mtime: T1 }],
    run: { op: 'utimens', path: 'f', atime: T3, mtime: 'omit' },
    check: [{ op: 'stat', path: 'f', expect: { atime: T3, mtime: T1 } }],
  },
  {
    name: 'UTIME_NOW sets the current time',
    category: 'utimens',
    setup: [file('f', 'x'), { op: 'utimens', path: 'f', atime: T1, mtime: T1 }],
    run: { op: 'utimens', path: 'f', atime: 'now', mtime: 'now' },
    check: [{ op: 'stat', path: 'f', expect: { atime: 'recent', mtime: 'recent' } }],
  },
  {
    name: 'a time before 1970',
    category: 'utimens',
    setup: [file('f')],
    run: { op: 'utimens', path: 'f', atime: { sec: -1_000_000, nsec: 5 }, mtime: { sec: -86_400, nsec: 999_999_999 } },
    check: [{ op: 'stat', path: 'f', expect: { atime: { sec: -1_000_000, nsec: 5 }, mtime: { sec: -86_400, nsec: 999_999_999 } } }],
  },
  {
    name: 'a time after 2038',
    category: 'utimens',
    setup: [file('f')],
    run: { op: 'utimens', path: 'f', atime: { sec: 4_102_444_800, nsec: 999_999_999 }, mtime: { sec: 4_102_444_801, nsec: 0 } },
    check: [{ op: 'stat', path: 'f', expect: { atime: { sec: 4_102_444_800, nsec: 999_999_999 }, mtime: { sec: 4_102_444_801, nsec: 0 } } }],
  },
  {
    name: 'on a directory',
    category: 'utimens',
    setup: [dir('d')],
    run: { op: 'utimens', path: 'd', atime: T1, mtime: T2 },
    check: [{ op: 'stat', path: 'd', expect: { atime: T1, mtime: T2 } }],
  },
  {
    name: 'AT_SYMLINK_NOFOLLOW sets the link\'s times, not the target\'s',
    category: 'utimens',
    setup: [file('t'), { op: 'utimens', path: 't', atime: T1, mtime: T1 }, { op: 'symlink', target: 't', path: 'l' }],
    run: { op: 'utimens', path: 'l', atime: T2, mtime: T2, nofollow: true },
    check: [{ op: 'lstat', path: 'l', expect: { atime: T2, mtime: T2 } }, { op: 'stat', path: 't', expect: { atime: T1, mtime: T1 } }],
  },
  {
    name: 'through a link sets the target\'s times',
    category: 'utimens',
    setup: [file('t'), { op: 'symlink', target: 't', path: 'l' }],
    run: { op: 'utimens', path: 'l', atime: T1, mtime: T2 },
    check: [{ op: 'stat', path: 't', expect: { atime: T1, mtime: T2 } }],
  },
  {
    name: 'a missing name: ENOENT',
    category: 'utimens',
    run: { op: 'utimens', path: 'nope', atime: T1, mtime: T1, expect: fails('ENOENT') },
  },
  {
    name: 'times set after unflushed writes survive the close',
    category: 'utimens',
    setup: [{ op: 'open', path: 'f', flags: ['O_CREAT', 'O_WRONLY'], as: 'fd' }, { op: 'write', fd: 'fd', pos: 0, data: pat(30_000) }],
    run: { op: 'utimens', path: 'f', atime: T1, mtime: T2 },
    check: [{ op: 'close', fd: 'fd' }, { op: 'stat', path: 'f', expect: { atime: T1, mtime: T2, size: 30_000 } }],
  },
  {
    name: 'a write after utimens moves mtime to now',
    category: 'utimens',
    setup: [file('f', 'x'), { op: 'utimens', path: 'f', atime: T1, mtime: T1 }, { op: 'open', path: 'f', flags: ['O_WRONLY'], as: 'fd' }],
    run: { op: 'write', fd: 'fd', pos: 0, data: 'y' },
    check: [{ op: 'close', fd: 'fd' }, { op: 'stat', path: 'f', expect: { mtime: 'recent' } }],
  },
];

const xattr: Scenario[] = [
  {
    name: 'set then get',
    category: 'xattr',
    setup: [file('f')],
    run: { op: 'setxattr', path: 'f', name: 'user.a', value: 'one' },
    check: [{ op: 'getxattr', path: 'f', name: 'user.a', expect: { data: 'one' } }],
  },
  {
    name: 'list shows every name',
    category: 'xattr',
    setup: [file('f'), { op: 'setxattr', path: 'f', name: 'user.b', value: '2' }, { op: 'setxattr', path: 'f', name: 'user.a', value: '1' }],
    run: { op: 'listxattr', path: 'f', expect: { value: ['user.a', 'user.b'] } },
  },
  {
    name: 'a file without any lists none',
    category: 'xattr',
    setup: [file('f')],
    run: { op: 'listxattr', path: 'f', expect: { value: [] } },
  },
  {
    name: 'remove, then get: ENODATA; list: gone',
    category: 'xattr',
    setup: [file('f'), { op: 'setxattr', path: 'f', name: 'user.a', value: '1' }, { op: 'setxattr', path: 'f', name: 'user.b', value: '2' }],
    run: { op: 'removexattr', path: 'f', name: 'user.a' },
    check: [{ op: 'getxattr', path: 'f', name: 'user.a', expect: fails('ENODATA') }, { op: 'listxattr', path: 'f', expect: { value: ['user.b'] } }],
  },
  {
    name: 'XATTR_CREATE on an existing name: EEXIST',
    category: 'xattr',
    setup: [file('f'), { op: 'setxattr', path: 'f', name: 'user.a', value: '1' }],
    run: { op: 'setxattr', path: 'f', name: 'user.a', value: '2', flag: 'create', expect: fails('EEXIST') },
    check: [{ op: 'getxattr', path: 'f', name: 'user.a', expect: { data: '1' } }],
  },
  {
    name: 'XATTR_CREATE on a new name',
    category: 'xattr',
    setup: [file('f')],
    run: { op: 'setxattr', path: 'f', name: 'user.a', value: '1', flag: 'create' },
    check: [{ op: 'getxattr', path: 'f', name: 'user.a', expect: { data: '1' } }],
  },
  {
    name: 'XATTR_REPLACE on a missing name: ENODATA',
    category: 'xattr',
    setup: [file('f')],
    run: { op: 'setxattr', path: 'f', name: 'user.a', value: '1', flag: 'replace', expect: fails('ENODATA') },
    check: [{ op: 'listxattr', path: 'f', expect: { value: [] } }],
  },
  {
    name: 'XATTR_REPLACE on an existing name',
    category: 'xattr',
    setup: [file('f'), { op: 'setxattr', path: 'f', name: 'user.a', value: 'old' }],
    run: { op: 'setxattr', path: 'f', name: 'user.a', value: 'new', flag: 'replace' },
    check: [{ op: 'getxattr', path: 'f', name: 'user.a', expect: { data: 'new' } }],
  },
  {
    name: 'a plain set overwrites',
    category: 'xattr',
    setup: [file('f'), { op: 'setxattr', path: 'f', name: 'user.a', value: 'a longer old value' }],
    run: { op: 'setxattr', path: 'f', name: 'user.a', value: 'short' },
    check: [{ op: 'getxattr', path: 'f', name: 'user.a', expect: { data: 'short' } }],
  },
  {
    name: 'get of a missing name: ENODATA',
    category: 'xattr',
    setup: [file('f')],
    run: { op: 'getxattr', path: 'f', name: 'user.none', expect: fails('ENODATA') },
  },
  {
    name: 'remove of a missing name: ENODATA',
    category: 'xattr',
    setup: [file('f')],
    run: { op: 'removexattr', path: 'f', name: 'user.none', expect: fails('ENODATA') },
  },
  {
    name: 'an empty value',
    category: 'xattr',
    setup: [file('f')],
    run: { op: 'setxattr', path: 'f', name: 'user.empty', value: '' },
    check: [{ op: 'getxattr', path: 'f', name: 'user.empty', expect: { data: '' } }, { op: 'listxattr', path: 'f', expect: { value: ['user.empty'] } }],
  },
  {
    name: 'a binary value with zero bytes',
    category: 'xattr',
    setup: [file('f')],
    run: { op: 'setxattr', path: 'f', name: 'user.bin', value: { hex: '00ff00fe7f80' } },
    check: [{ op: 'getxattr', path: 'f', name: 'user.bin', expect: { data: { hex: '00ff00fe7f80' } } }],
  },
  {
    name: 'on a directory',
    category: 'xattr',
    setup: [dir('d')],
    run: { op: 'setxattr', path: 'd', name: 'user.d', value: 'dir' },
    check: [{ op: 'getxattr', path: 'd', name: 'user.d', expect: { data: 'dir' } }],
  },
  {
    name: 'through a symlink, on the target',
    category: 'xattr',
    setup: [file('t'), { op: 'symlink', target: 't', path: 'l' }],
    run: { op: 'setxattr', path: 'l', name: 'user.a', value: 'via link' },
    check: [{ op: 'getxattr', path: 't', name: 'user.a', expect: { data: 'via link' } }],
  },
  {
    name: 'shared by hard links, kept by rename',
    category: 'xattr',
    setup: [file('a'), { op: 'setxattr', path: 'a', name: 'user.a', value: 'v' }, { op: 'link', from: 'a', to: 'b' }],
    run: { op: 'rename', from: 'a', to: 'c' },
    check: [{ op: 'getxattr', path: 'b', name: 'user.a', expect: { data: 'v' } }, { op: 'getxattr', path: 'c', name: 'user.a', expect: { data: 'v' } }],
  },
  {
    name: 'a name without a namespace: ENOTSUP',
    category: 'xattr',
    setup: [file('f')],
    run: { op: 'setxattr', path: 'f', name: 'plain', value: 'x', expect: fails('ENOTSUP') },
  },
  {
    name: 'a name longer than 255 bytes: ERANGE',
    category: 'xattr',
    setup: [file('f')],
    run: { op: 'setxattr', path: 'f', name: `user.${'x'.repeat(251)}`, value: 'x', expect: fails('ERANGE') },
  },
  {
    name: 'a value over 64 KiB: E2BIG',
    category: 'xattr',
    setup: [file('f')],
    run: { op: 'setxattr', path: 'f', name: 'user.big', value: { zeros: 65_537 }, expect: fails('E2BIG') },
  },
  {
    name: 'a missing file: ENOENT',
    category: 'xattr',
    run: { op: 'getxattr', path: 'nope', name: 'user.a', expect: fails('ENOENT') },
  },
];

const mknod: Scenario[] = [
  {
    name: 'mkfifo makes a fifo with the mode',
    category: 'mknod',
    run: { op: 'mkfifo', path: 'p', mode: 0o640 },
    check: [{ op: 'lstat', path: 'p', expect: { type: 'fifo', mode: 0o640, nlink: 1, size: 0, uid: 0 } }],
  },
  {
    name: 'mknod S_IFIFO makes a fifo',
    category: 'mknod',
    run: { op: 'mknod', path: 'p', type: 'fifo', mode: 0o600 },
    check: [{ op: 'lstat', path: 'p', expect: { type: 'fifo', mode: 0o600 } }],
  },
  {
    name: 'mknod S_IFREG makes an empty regular file',
    category: 'mknod',
    run: { op: 'mknod', path: 'f', type: 'file', mode: 0o600 },
    check: [{ op: 'lstat', path: 'f', expect: { type: 'file', mode: 0o600, size: 0, nlink: 1 } }, { op: 'readFile', path: 'f', expect: { data: '' } }],
  },
  {
    name: 'mknod S_IFCHR makes a character device with its numbers',
    category: 'mknod',
    run: { op: 'mknod', path: 'null', type: 'char', mode: 0o666, dev: [1, 3] },
    check: [{ op: 'lstat', path: 'null', expect: { type: 'char', mode: 0o666, rdev: [1, 3], size: 0, nlink: 1 } }],
  },
  {
    name: 'mknod S_IFBLK makes a block device; a large major and minor survive',
    category: 'mknod',
    run: { op: 'mknod', path: 'disk', type: 'block', mode: 0o660, dev: [259, 70000] },
    check: [{ op: 'lstat', path: 'disk', expect: { type: 'block', mode: 0o660, rdev: [259, 70000] } }],
  },
  {
    name: 'mknod S_IFSOCK makes a socket file',
    category: 'mknod',
    run: { op: 'mknod', path: 's', type: 'socket', mode: 0o600 },
    check: [{ op: 'lstat', path: 's', expect: { type: 'socket', mode: 0o600, size: 0 } }],
  },
  {
    name: 'bind() of a Unix socket makes a socket file (ssh-agent, tmux)',
    category: 'mknod',
    run: { op: 'bind', path: 'agent.sock' },
    check: [{ op: 'lstat', path: 'agent.sock', expect: { type: 'socket', mode: 0o777, nlink: 1 } }],
  },
  {
    name: 'bind() on a taken name: EADDRINUSE',
    category: 'mknod',
    setup: [file('f', 'x')],
    run: { op: 'bind', path: 'f', expect: fails('EADDRINUSE') },
    check: [{ op: 'lstat', path: 'f', expect: { type: 'file' } }],
  },
  {
    name: 'a device is renamed, linked and unlinked like a file, keeping its numbers',
    category: 'mknod',
    setup: [{ op: 'mknod', path: 'd', type: 'char', mode: 0o600, dev: [4, 64] }, { op: 'rename', from: 'd', to: 'tty' }, { op: 'link', from: 'tty', to: 'tty2' }],
    run: { op: 'unlink', path: 'tty' },
    check: [{ op: 'lstat', path: 'tty2', expect: { type: 'char', rdev: [4, 64], nlink: 1 } }],
  },
  {
    name: 'a taken name: EEXIST',
    category: 'mknod',
    setup: [file('f', 'x')],
    run: { op: 'mkfifo', path: 'f', mode: 0o644, expect: fails('EEXIST') },
    check: [{ op: 'lstat', path: 'f', expect: { type: 'file' } }],
  },
  {
    name: 'in a missing directory: ENOENT',
    category: 'mknod',
    run: { op: 'mkfifo', path: 'nodir/p', mode: 0o644, expect: fails('ENOENT') },
  },
  {
    name: 'a fifo is renamed and unlinked like a file',
    category: 'mknod',
    setup: [{ op: 'mkfifo', path: 'p', mode: 0o644 }, { op: 'rename', from: 'p', to: 'q' }],
    run: { op: 'unlink', path: 'q' },
    check: [{ op: 'readdir', path: '.', expect: { value: [] } }],
  },
];

const names: Scenario[] = [
  {
    name: 'a 255-byte name works',
    category: 'names',
    run: file(N255, 'x'),
    check: [{ op: 'readdir', path: '.', expect: { value: [N255] } }, { op: 'readFile', path: N255, expect: { data: 'x' } }],
  },
  {
    name: 'a 256-byte name: ENAMETOOLONG from open O_CREAT',
    category: 'names',
    run: { op: 'open', path: N256, flags: ['O_CREAT', 'O_WRONLY'], as: 'fd', expect: fails('ENAMETOOLONG') },
    check: [{ op: 'readdir', path: '.', expect: { value: [] } }],
  },
  {
    name: 'a 256-byte name: ENAMETOOLONG from mkdir',
    category: 'names',
    run: { op: 'mkdir', path: N256, mode: 0o755, expect: fails('ENAMETOOLONG') },
  },
  {
    name: 'a 256-byte name: ENAMETOOLONG from stat',
    category: 'names',
    run: { op: 'lstat', path: N256, expect: fails('ENAMETOOLONG') },
  },
  {
    name: 'a 256-byte name: ENAMETOOLONG as a rename target',
    category: 'names',
    setup: [file('a')],
    run: { op: 'rename', from: 'a', to: N256, expect: fails('ENAMETOOLONG') },
    check: [{ op: 'readdir', path: '.', expect: { value: ['a'] } }],
  },
  {
    name: 'a 256-byte name: ENAMETOOLONG from symlink and link',
    category: 'names',
    setup: [file('a')],
    run: { op: 'symlink', target: 'a', path: N256, expect: fails('ENAMETOOLONG') },
    check: [{ op: 'link', from: 'a', to: N256, expect: fails('ENAMETOOLONG') }, { op: 'mkfifo', path: N256, mode: 0o644, expect: fails('ENAMETOOLONG') }],
  },
  {
    name: 'a UTF-8 name: create, list, stat, rename',
    category: 'names',
    run: file('héllo wörld 日本語 🙂', 'u'),
    check: [
      { op: 'readdir', path: '.', expect: { value: ['héllo wörld 日本語 🙂'] } },
      { op: 'stat', path: 'héllo wörld 日本語 🙂', expect: { size: 1 } },
      { op: 'rename', from: 'héllo wörld 日本語 🙂', to: 'ünïcödé' },
      { op: 'readFile', path: 'ünïcödé', expect: { data: 'u' } },
    ],
  },
  {
    name: '255 bytes of two-byte characters work',
    category: 'names',
    run: dir(U255),
    check: [{ op: 'readdir', path: '.', expect: { value: [U255] } }],
  },
  {
    name: '128 two-byte characters are 256 bytes: ENAMETOOLONG',
    category: 'names',
    run: { op: 'mkdir', path: U256, mode: 0o755, expect: fails('ENAMETOOLONG') },
  },
  {
    name: '255 bytes with four-byte characters work; 256 do not',
    category: 'names',
    run: file(E255, 'e'),
    check: [
      { op: 'readFile', path: E255, expect: { data: 'e' } },
      { op: 'open', path: E256, flags: ['O_CREAT', 'O_WRONLY'], as: 'fd', expect: fails('ENAMETOOLONG') },
    ],
  },
  {
    name: 'composed and decomposed é are two names',
    category: 'names',
    setup: [file('caf\u00e9', '1')],
    run: file('cafe\u0301', '2'),
    check: [
      { op: 'readdir', path: '.', expect: { value: ['caf\u00e9', 'cafe\u0301'] } },
      { op: 'readFile', path: 'caf\u00e9', expect: { data: '1' } },
      { op: 'readFile', path: 'cafe\u0301', expect: { data: '2' } },
    ],
  },
  {
    name: 'names differing in case are different',
    category: 'names',
    setup: [file('Name', 'upper')],
    run: file('name', 'lower'),
    check: [{ op: 'readFile', path: 'Name', expect: { data: 'upper' } }, { op: 'readdir', path: '.', expect: { value: ['Name', 'name'] } }],
  },
  {
    name: 'spaces, newlines, backslashes, colons, dashes and dots are plain bytes',
    category: 'names',
    setup: [file(' lead space'), file('new\nline'), file('back\\slash'), file('co:lon'), file('-dash'), file('.hidden')],
    run: file('...'),
    check: [{ op: 'readdir', path: '.', expect: { value: [' lead space', 'new\nline', 'back\\slash', 'co:lon', '-dash', '.hidden', '...'] } }],
  },
  {
    name: 'a UTF-8 directory in the middle of a path',
    category: 'names',
    setup: [dir('répertoire'), dir('répertoire/子')],
    run: file('répertoire/子/f', 'deep'),
    check: [{ op: 'readFile', path: 'répertoire/子/f', expect: { data: 'deep' } }, { op: 'stat', path: 'répertoire', expect: { nlink: 3 } }],
  },
];

const stat: Scenario[] = [
  {
    name: 'a new file: regular, empty, one link, root\'s',
    category: 'stat',
    setup: [file('f', '', 0o644)],
    run: { op: 'stat', path: 'f', expect: { type: 'file', size: 0, nlink: 1, mode: 0o644, uid: 0, gid: 0 } },
  },
  {
    name: 'the scenario directory itself',
    category: 'stat',
    run: { op: 'stat', path: '.', expect: { type: 'dir', nlink: 2, mode: 0o755, uid: 0, gid: 0 } },
  },
  {
    name: 'a directory counts 2 + its subdirectories, not its files',
    category: 'stat',
    setup: [dir('d'), dir('d/a'), dir('d/b'), file('d/f'), { op: 'symlink', target: 'a', path: 'd/l' }, { op: 'mkfifo', path: 'd/p', mode: 0o644 }],
    run: { op: 'stat', path: 'd', expect: { type: 'dir', nlink: 4 } },
  },
  {
    name: 'a removed subdirectory takes one link off',
    category: 'stat',
    setup: [dir('d'), dir('d/a'), dir('d/b'), { op: 'rmdir', path: 'd/a' }],
    run: { op: 'stat', path: 'd', expect: { nlink: 3 } },
  },
  {
    name: 'size follows writes, past the inline limit',
    category: 'stat',
    setup: [file('f', pat(12_345)), file('g', pat(123_457))],
    run: { op: 'stat', path: 'f', expect: { size: 12_345 } },
    check: [{ op: 'stat', path: 'g', expect: { size: 123_457 } }],
  },
  {
    name: 'fstat and stat agree on an open file',
    category: 'stat',
    setup: [{ op: 'open', path: 'f', flags: ['O_CREAT', 'O_RDWR'], mode: 0o600, as: 'fd' }, { op: 'write', fd: 'fd', pos: 0, data: 'abcdef' }, { op: 'stat', path: 'f', save: 'f' }],
    run: { op: 'fstat', fd: 'fd', expect: { type: 'file', size: 6, mode: 0o600, nlink: 1, ino: 'f' } },
  },
  {
    name: 'lstat sees the link, stat the target',
    category: 'stat',
    setup: [dir('d'), { op: 'symlink', target: 'd', path: 'l' }],
    run: { op: 'lstat', path: 'l', expect: { type: 'symlink', size: 1 } },
    check: [{ op: 'stat', path: 'l', expect: { type: 'dir', nlink: 2 } }],
  },
  {
    name: 'a name that failed a lookup shows up once any call creates it',
    category: 'stat',
    setup: [
      file('src'),
      dir('d'),
      ...['f', 'd2', 'l', 'h', 'r', 'p'].map((n): Step => ({ op: 'lstat', path: n, expect: fails('ENOENT') })),
      file('f'),
      dir('d2'),
      { op: 'symlink', target: 'f', path: 'l' },
      { op: 'link', from: 'src', to: 'h' },
      { op: 'rename', from: 'd', to: 'r' },
    ],
    run: { op: 'mkfifo', path: 'p', mode: 0o644 },
    check: [
      { op: 'lstat', path: 'f', expect: { type: 'file' } },
      { op: 'lstat', path: 'd2', expect: { type: 'dir' } },
      { op: 'lstat', path: 'l', expect: { type: 'symlink' } },
      { op: 'lstat', path: 'h', expect: { type: 'file', nlink: 2 } },
      { op: 'lstat', path: 'r', expect: { type: 'dir' } },
      { op: 'lstat', path: 'p', expect: { type: 'fifo' } },
      { op: 'lstat', path: 'd', expect: fails('ENOENT') },
    ],
  },
  {
    name: 'a missing name: ENOENT',
    category: 'stat',
    run: { op: 'stat', path: 'nope', expect: fails('ENOENT') },
  },
  {
    name: 'a regular file in the middle of the path: ENOTDIR',
    category: 'stat',
    setup: [file('f')],
    run: { op: 'stat', path: 'f/x', expect: fails('ENOTDIR') },
  },
];

export const SCENARIOS: readonly Scenario[] = [
  ...open,
  ...readWrite,
  ...truncate,
  ...mkdir,
  ...rmdir,
  ...unlink,
  ...rename,
  ...link,
  ...symlink,
  ...readdir,
  ...chmod,
  ...chown,
  ...utimens,
  ...xattr,
  ...mknod,
  ...names,
  ...stat,
];

export function scenariosByCategory(): Map<Category, Scenario[]> {
  const m = new Map<Category, Scenario[]>();
  for (const s of SCENARIOS) {
    const list = m.get(s.category) ?? [];
    list.push(s);
    m.set(s.category, list);
  }
  return m;
}
