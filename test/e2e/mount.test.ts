// End-to-end tests of real mounts over three real node processes, driven by
// ordinary tools (coreutils, tar, git, python3) in child processes, never from
// this process. Four groups, each on its own cluster, one group at a time
// (serial tests; run the e2e files one at a time: npm run test:e2e):
//   1. shell tools on one mount
//   2. two mounts of one cluster
//   3. a node SIGKILLed during cp -a
//   4. another user through an allow_other mount
// Known bugs are `test.failing` with a comment naming the bug: the suite stays
// green and the bug stays visible (ava lists them as known failures).
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { Fixtures, asNobody, must, python, quote, run } from '../helpers/e2e-fixtures.js';
import type { RunningCluster } from '../helpers/keyspace.js';
import { mountCluster, mountedCluster, type Mount } from '../helpers/mount.js';

const REPO = new URL('../../..', import.meta.url).pathname.replace(/\/$/, '');
const fixtures = new Fixtures();
let live: Mount[] = [];

interface One {
  rc: RunningCluster;
  m: string;
  mount: Mount;
}
interface Two {
  rc: RunningCluster;
  a: string;
  b: string;
}

async function one(): Promise<One> {
  return fixtures.use('one', async (t) => {
    const { rc, mount } = await mountedCluster(t);
    live = [mount];
    return { rc, m: mount.dir, mount };
  });
}

async function two(): Promise<Two> {
  return fixtures.use('two', async (t) => {
    const { rc, mount } = await mountedCluster(t);
    const second = await mountCluster(t, rc, 'mnt2');
    live = [mount, second];
    return { rc, a: mount.dir, b: second.dir };
  });
}

async function other(): Promise<One> {
  return fixtures.use('other', async (t) => {
    const { rc, mount } = await mountedCluster(t, { mountArgs: ['-o', 'allow_other'] });
    // mkdtemp made the cluster directory 0700: uid 65534 must be able to reach the mountpoint.
    await chmod(rc.cluster.dir, 0o711);
    live = [mount];
    return { rc, m: mount.dir, mount };
  });
}

/** A scratch directory outside the mounts, removed after the test. */
async function scratch(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'qfs-e2e-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test.afterEach.always((t) => {
  if (t.passed) return;
  for (const m of live) t.log(`mount ${m.dir} (pid ${m.pid}, exit ${String(m.child.exitCode)}):\n${m.logs().split('\n').slice(-30).join('\n')}`);
});

test.after.always(async () => {
  await fixtures.close();
});

const secs = (t0: number): string => `${((Date.now() - t0) / 1000).toFixed(1)} s`;

// ---------------------------------------------------------------------------
// 1. Shell tools on one mount
// ---------------------------------------------------------------------------

interface LsEntry {
  mode: string;
  acl: boolean;
  nlink: number;
  owner: string;
  group: string;
  size: number;
  name: string;
}

function parseLs(out: string): Map<string, LsEntry> {
  const entries = new Map<string, LsEntry>();
  for (const line of out.split('\n')) {
    const m = /^([-dlpcbs][-rwxsStT]{9})(\+?)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\d+)\s+\d+\s+(.+)$/.exec(line);
    if (!m) continue;
    entries.set(m[7]!, { mode: m[1]!, acl: m[2] === '+', nlink: Number(m[3]), owner: m[4]!, group: m[5]!, size: Number(m[6]), name: m[7]! });
  }
  return entries;
}

test.serial('1 ls -l shows sizes, modes and link counts', async (t) => {
  const { m } = await one();
  const d = `${m}/ls`;
  await must(`umask 022 && mkdir ${d} && cd ${d} && ln -s one sym && : > empty && printf x > one && ln one one.link &&
    head -c 5000 /dev/zero > five && head -c 70000 /dev/urandom > seventy && head -c 2097152 /dev/urandom > two &&
    chmod 600 one && chmod 755 five && chmod 4755 seventy && chmod 640 two && mkdir -p sub1/a sub2 && chmod 750 sub1`);
  const ls = parseLs(await must(`ls -l --time-style=+%s ${d}`));
  const want: Record<string, [string, number, number | null]> = {
    empty: ['-rw-r--r--', 1, 0],
    one: ['-rw-------', 2, 1],
    'one.link': ['-rw-------', 2, 1],
    five: ['-rwxr-xr-x', 1, 5000],
    seventy: ['-rwsr-xr-x', 1, 70000],
    two: ['-rw-r-----', 1, 2097152],
    sub1: ['drwxr-x---', 3, null],
    sub2: ['drwxr-xr-x', 2, null],
    'sym -> one': ['lrwxrwxrwx', 1, 3],
  };
  t.deepEqual([...ls.keys()].sort(), Object.keys(want).sort());
  for (const [name, [mode, nlink, size]] of Object.entries(want)) {
    const e = ls.get(name);
    t.truthy(e, name);
    if (!e) continue;
    t.is(e.mode, mode, `${name} mode`);
    t.false(e.acl, `${name} has no ACL mark`);
    t.is(e.nlink, nlink, `${name} link count`);
    t.is(`${e.owner}:${e.group}`, 'root:root', `${name} owner`);
    if (size !== null) t.is(e.size, size, `${name} size`);
  }
  // the directory itself: 2 + its two subdirectories
  t.regex(await must(`ls -ld ${d}`), /^drwxr-xr-x 4 root root /);
});

test.serial('1 cp -a of a real tree: diff -r clean, times and owners kept; cat', async (t) => {
  const { m } = await one();
  const src = `${REPO}/node_modules/ws`;
  await must(`cp -a ${src} ${m}/ws && diff -r ${src} ${m}/ws`);
  const list = (dir: string): Promise<string> => must(`cd ${dir} && find . -printf '%P %y %s %T@ %U:%G %l\\n' | grep -v '^ d' | sort`);
  // directory sizes differ by design (0 here, 4096 on ext4): compare files' sizes only
  const strip = (s: string): string => s.replace(/^(\S+ d) \d+ /gm, '$1 - ');
  t.is(strip(await list(`${m}/ws`)), strip(await list(src)));
  t.is(await must(`cat ${m}/ws/package.json`), await must(`cat ${src}/package.json`));
});

// BUG (vfs setxattr): cp -a creates files 0600 / dirs 0700, then sets the mode with
// fsetxattr("system.posix_acl_access"); the vfs stores that as a plain xattr and
// answers success, so the mode is never set (and ls -l shows a "+").
test.serial('1 cp -a keeps modes (system.* xattrs are refused, so cp falls back to chmod)', async (t) => {
  const { m } = await one();
  const src = `${REPO}/node_modules/ws`;
  if ((await run(`test -d ${m}/ws`)).code !== 0) await must(`cp -a ${src} ${m}/ws`);
  const modes = (dir: string): Promise<string> => must(`cd ${dir} && find . -printf '%P %m\\n' | sort`);
  t.is(await modes(`${m}/ws`), await modes(src));
  const ls = parseLs(await must(`ls -l ${m}/ws`));
  t.deepEqual([...ls.values()].filter((e) => e.acl).map((e) => e.name), []);
});

test.serial('1 cat, mv, rm -rf', async (t) => {
  const { m } = await one();
  const d = `${m}/mv`;
  await must(`mkdir ${d} && cd ${d} && printf 'hello\\nworld\\n' > f && printf 'more\\n' >> f`);
  t.is(await must(`cat ${d}/f`), 'hello\nworld\nmore\n');
  // rename in place, into a directory, a directory into another, and over an existing file
  await must(`cd ${d} && mv f g && test ! -e f && mkdir d1 d2 && mv g d1/ && mv d1 d2/ && echo new > n && echo old > o && mv -f n o`);
  t.is(await must(`cat ${d}/d2/d1/g`), 'hello\nworld\nmore\n');
  t.is(await must(`cat ${d}/o`), 'new\n');
  t.is(await must(`ls -A ${d}`), 'd2\no\n');
  t.is(await must(`ls -A ${d}/d2`), 'd1\n');
  // a populated tree
  await must(`cp -r ${REPO}/node_modules/ws ${d}/d2/d1/ws && rm -rf ${d}/d2`);
  t.is(await must(`ls -A ${d}`), 'o\n');
  await must(`rm -rf ${d}`);
  t.is((await run(`ls ${d}`)).code, 2);
});

test.serial('1 ln: hard links share the inode and link count; chmod through one name shows through the other at once', async (t) => {
  const { m } = await one();
  const d = `${m}/ln`;
  // `a` is looked up (its attributes cached by the kernel) before the link is made
  await must(`mkdir ${d} && echo data > ${d}/a && stat ${d}/a > /dev/null`);
  // each step right away, no sleep
  const [ia, ib] = (await must(`ln ${d}/a ${d}/b && stat -c '%i %h' ${d}/a ${d}/b`)).trim().split('\n');
  t.is(ia, ib, 'same inode number and link count through both names');
  t.regex(ia!, /^\d+ 2$/);
  t.is(await must(`chmod 600 ${d}/b && stat -c %a ${d}/a`), '600\n');
  t.is(await must(`chmod 640 ${d}/a && stat -c %a ${d}/b`), '640\n');
  t.is(await must(`echo more >> ${d}/b && cat ${d}/a && stat -c %s ${d}/a`), 'data\nmore\n10\n');
  t.is(await must(`ln ${d}/b ${d}/c && stat -c %h ${d}/a ${d}/b ${d}/c`), '3\n3\n3\n');
  t.is(await must(`rm ${d}/a && stat -c '%h %a' ${d}/b ${d}/c && cat ${d}/c`), '2 640\n2 640\ndata\nmore\n');
  t.is(await must(`rm ${d}/b && stat -c %h ${d}/c`), '1\n');
});

test.serial('1 ln -s and readlink', async (t) => {
  const { m } = await one();
  const d = `${m}/sym`;
  await must(`mkdir -p ${d}/sub && echo x > ${d}/sub/file && cd ${d} && ln -s sub/file rel && ln -s ${d}/sub abs && ln -s nowhere dangling`);
  t.is(await must(`readlink ${d}/rel ${d}/abs ${d}/dangling`), `sub/file\n${d}/sub\nnowhere\n`);
  t.is(await must(`cat ${d}/rel ${d}/abs/file`), 'x\nx\n');
  t.is(await must(`readlink -f ${d}/rel`), `${d}/sub/file\n`);
  t.is(await must(`stat -c '%F %s' ${d}/rel && stat -L -c '%F %s' ${d}/rel`), 'symbolic link 8\nregular file 2\n');
  const r = await run(`cat ${d}/dangling`);
  t.not(r.code, 0);
  t.regex(r.stderr, /No such file or directory/);
  t.is(await must(`rm ${d}/rel && ls ${d}/sub`), 'file\n');
});

test.serial('1 chmod', async (t) => {
  const { m } = await one();
  const d = `${m}/chmod`;
  await must(`mkdir ${d} && cd ${d} && touch f && mkdir dd`);
  for (const mode of ['0', '600', '755', '4755', '2755', '6711', '1644', '777']) {
    t.is(await must(`chmod ${mode} ${d}/f && stat -c %a ${d}/f`), `${mode}\n`);
  }
  t.is(await must(`chmod 644 ${d}/f && chmod g+w,o-r,u+x ${d}/f && stat -c %A ${d}/f`), '-rwxrw----\n');
  t.is(await must(`chmod 1777 ${d}/dd && stat -c '%a %A' ${d}/dd`), '1777 drwxrwxrwt\n');
  t.is(await must(`chmod 2750 ${d}/dd && stat -c '%a' ${d}/dd`), '2750\n');
});

test.serial('1 touch -d sets exact ns times; touch -m / -a change only one time', async (t) => {
  const { m } = await one();
  const f = `${m}/touched`;
  const env = { TZ: 'UTC' };
  const times = (): Promise<string> => must(`stat -c '%y|%x' ${f}`, { env });
  await must(`echo x > ${f} && touch -d '2001-02-03 04:05:06.123456789' ${f}`, { env });
  t.is(await times(), '2001-02-03 04:05:06.123456789 +0000|2001-02-03 04:05:06.123456789 +0000\n');
  await must(`touch -m -d '2002-03-04 05:06:07.5' ${f}`, { env });
  t.is(await times(), '2002-03-04 05:06:07.500000000 +0000|2001-02-03 04:05:06.123456789 +0000\n');
  await must(`touch -a -d '2003-04-05 06:07:08.000000001' ${f}`, { env });
  t.is(await times(), '2002-03-04 05:06:07.500000000 +0000|2003-04-05 06:07:08.000000001 +0000\n');
  // to "now": only the named time moves
  await must(`touch -m ${f}`);
  const [mt, at] = (await times()).trim().split('|');
  t.is(at, '2003-04-05 06:07:08.000000001 +0000');
  t.true(Math.abs(Number(await must(`stat -c %Y ${f}`)) - Date.now() / 1000) < 60, `mtime now, got ${mt}`);
  const mtimeBefore = await must(`stat -c %y ${f}`);
  await must(`touch -a ${f}`);
  t.is(await must(`stat -c %y ${f}`), mtimeBefore);
  t.true(Math.abs(Number(await must(`stat -c %X ${f}`)) - Date.now() / 1000) < 60);
  // before 1970
  await must(`touch -d '1960-01-02 03:04:05.25' ${f}`, { env });
  t.is(await times(), '1960-01-02 03:04:05.250000000 +0000|1960-01-02 03:04:05.250000000 +0000\n');
});

test.serial('1 truncate -s grows and shrinks (inline and chunked files)', async (t) => {
  const { m } = await one();
  const tmp = await scratch(t);
  const f = `${m}/trunc`;
  await must(`printf 'hello world' > ${f} && truncate -s 100000 ${f}`);
  t.is(await must(`stat -c %s ${f}`), '100000\n');
  await must(`cmp ${f} <(printf 'hello world'; head -c 99989 /dev/zero)`);
  await must(`truncate -s 5 ${f} && truncate -s 20 ${f}`);
  await must(`cmp ${f} <(printf 'hello'; head -c 15 /dev/zero)`);
  // across chunk boundaries (1 MiB chunks)
  const g = `${m}/trunc-big`;
  await must(`head -c 3145728 /dev/urandom > ${tmp}/r && cp ${tmp}/r ${g} && truncate -s 1572864 ${g}`);
  t.is(await must(`stat -c %s ${g}`), '1572864\n');
  await must(`cmp ${g} <(head -c 1572864 ${tmp}/r)`);
  await must(`truncate -s 4194304 ${g}`);
  await must(`cmp ${g} <(head -c 1572864 ${tmp}/r; head -c 2621440 /dev/zero)`);
  await must(`truncate -s 0 ${g}`);
  t.is(await must(`stat -c %s ${g} && wc -c < ${g}`), '0\n0\n');
});

const SPARSE = 100 * 1024 * 1024;

test.serial('1 dd seek= makes a sparse file that reads zeros', async (t) => {
  const { m } = await one();
  const f = `${m}/sparse`;
  await must(`printf head > ${f} && printf tail | dd of=${f} bs=1 seek=${SPARSE} conv=notrunc status=none`);
  t.is(await must(`stat -c %s ${f}`), `${SPARSE + 4}\n`);
  await must(`cmp ${f} <(printf head; head -c ${SPARSE - 4} /dev/zero; printf tail)`);
});

// BUG (vfs toStat): st_blocks is ceil(size / 512) whatever is stored, so a 100 MiB
// file with 8 bytes of data shows 100 MiB in du (holes are counted as allocated).
test.serial('1 du of a sparse file is small (st_blocks counts stored chunks only)', async (t) => {
  const { m } = await one();
  const f = `${m}/sparse`;
  if ((await run(`test -f ${f}`)).code !== 0) await must(`printf head > ${f} && printf tail | dd of=${f} bs=1 seek=${SPARSE} conv=notrunc status=none`);
  const kib = Number((await must(`du -k ${f}`)).split('\t')[0]);
  t.true(kib < 4096, `du -k says ${kib} KiB for ${SPARSE + 4} bytes with 8 written`);
});

test.serial('1 tar round trip keeps modes, ns times, symlinks and hard links', async (t) => {
  const { m } = await one();
  const tmp = await scratch(t);
  const env = { TZ: 'UTC' };
  await must(
    `umask 022 && mkdir -p ${m}/tar/tr/sub/deeper && cd ${m}/tar/tr && printf 'one\\n' > f1 && ln f1 hl && printf 'two\\n' > sub/f2 &&
     head -c 200000 /dev/urandom > sub/big && ln -s sub/f2 sl && ln -s ../f1 sub/up && : > empty &&
     chmod 640 f1 && chmod 755 sub/f2 && chmod 4711 sub/big && chmod 750 sub && chmod 1777 sub/deeper && chmod 600 empty &&
     touch -d '2005-06-07 08:09:10.25' f1 && touch -d '2006-01-01 00:00:00.123456789' sub/f2 sub/big empty &&
     touch -h -d '2001-02-03 04:05:06.5' sl sub/up && touch -d '2010-01-01 00:00:00.75' sub/deeper sub . `,
    { env },
  );
  await must(`tar --format=posix -cf ${tmp}/t.tar -C ${m}/tar tr && mkdir ${tmp}/out && tar -xpf ${tmp}/t.tar -C ${tmp}/out`);
  // the archive against the mount, and against the extracted copy
  await must(`cd ${m}/tar && tar --compare -f ${tmp}/t.tar`);
  await must(`cd ${tmp}/out && tar --compare -f ${tmp}/t.tar`);
  const list = (dir: string): Promise<string> =>
    must(`cd ${dir} && find . -printf '%P %y %m %n %T@ %l %s\\n' | sed -E 's/^(\\S* d .*) [0-9]+$/\\1 -/' | sort`);
  t.is(await list(`${tmp}/out/tr`), await list(`${m}/tar/tr`));
  t.regex(await must(`tar -tvf ${tmp}/t.tar`), /^hrw-r----- .* tr\/hl link to tr\/f1$/m);
  const [i1, i2] = (await must(`stat -c %i ${tmp}/out/tr/f1 ${tmp}/out/tr/hl`)).trim().split('\n');
  t.is(i1, i2, 'the hard link came back as a hard link');
  await must(`diff -r ${m}/tar/tr ${tmp}/out/tr`);
  // and back onto the mount: extract there and compare again
  await must(`mkdir ${m}/tar/back && tar -xpf ${tmp}/t.tar -C ${m}/tar/back && cd ${m}/tar/back && tar --compare -f ${tmp}/t.tar`);
  t.is(await list(`${m}/tar/back/tr`), await list(`${tmp}/out/tr`));
});

test.serial('1 tar round trip of a fifo and of character and block devices keeps their types, modes and numbers; a socket is left out by tar, as on a local disk', async (t) => {
  const { m } = await one();
  const tmp = await scratch(t);
  await must(
    `umask 022 && mkdir -p ${m}/tar/sp && cd ${m}/tar/sp && mkfifo -m 640 fifo && mknod -m 620 tty c 4 64 && mknod -m 660 loop b 7 200 &&
     python3 -c 'import socket; s = socket.socket(socket.AF_UNIX); s.bind("sock")'`,
  );
  const types = (dir: string): Promise<string> => must(`cd ${dir} && stat -c '%n %F %a %t:%T' * | sort`);
  t.is(
    await types(`${m}/tar/sp`),
    ['fifo fifo 640 0:0', 'loop block special file 660 7:c8', 'sock socket 755 0:0', 'tty character special file 620 4:40', ''].join('\n'),
  );
  const made = await run(`tar --format=posix -cf ${tmp}/sp.tar -C ${m}/tar sp`);
  t.regex(made.stderr, /socket ignored/, 'GNU tar skips the socket');
  await must(`mkdir ${tmp}/out && tar -xpf ${tmp}/sp.tar -C ${tmp}/out && mkdir ${m}/tar/spback && tar -xpf ${tmp}/sp.tar -C ${m}/tar/spback`);
  const want = ['fifo fifo 640 0:0', 'loop block special file 660 7:c8', 'tty character special file 620 4:40', ''].join('\n');
  t.is(await types(`${tmp}/out/sp`), want, 'extracted on a local disk');
  t.is(await types(`${m}/tar/spback/sp`), want, 'extracted onto the mount');
  await must(`cd ${m}/tar/spback && tar --compare -f ${tmp}/sp.tar`);
});

test.serial('1 git init / add / commit / log on the mount', async (t) => {
  const { m } = await one();
  const tmp = await scratch(t);
  const git = 'git -c user.name=e2e -c user.email=e2e@example.com -c init.defaultBranch=main';
  await must(`mkdir ${m}/repo && cd ${m}/repo && ${git} init -q && cp -r ${REPO}/src/vfs ${REPO}/src/meta . && ${git} add -A && ${git} commit -qm first &&
    echo '// more' >> vfs/lru.ts && git mv meta metadata && ${git} commit -qam second`);
  t.is(await must(`cd ${m}/repo && git log --format=%s`), 'second\nfirst\n');
  t.is(await must(`cd ${m}/repo && git status --porcelain`), '');
  await must(`cd ${m}/repo && git fsck --strict --no-progress`);
  await must(`git clone -q ${m}/repo ${tmp}/clone && diff -r -x .git ${m}/repo ${tmp}/clone`);
  t.is(await must(`cd ${m}/repo && git show HEAD:vfs/lru.ts | tail -1`), '// more\n');
});

test.serial('1 a 1 GiB file written from /dev/urandom reads back with the same sha256', async (t) => {
  t.timeout(5 * 60_000);
  const { m } = await one();
  const size = 1024 * 1024 * 1024;
  let t0 = Date.now();
  const written = (await must(`set -o pipefail; head -c ${size} /dev/urandom | tee ${m}/big | sha256sum`, { timeoutMs: 240_000 })).split(' ')[0];
  t.log(`write 1 GiB: ${secs(t0)}`);
  t.is(await must(`stat -c %s ${m}/big`), `${size}\n`);
  t0 = Date.now();
  const read = (await must(`sha256sum ${m}/big`, { timeoutMs: 240_000 })).split(' ')[0];
  t.log(`read 1 GiB: ${secs(t0)}`);
  t.is(read, written);
  await must(`rm ${m}/big`);
});

test.serial('1 10 000 files in one directory are all listed', async (t) => {
  t.timeout(5 * 60_000);
  const { m } = await one();
  const n = 10_000;
  const t0 = Date.now();
  const r = await python(
    `import os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.mkdir(d)
for i in range(n):
    os.close(os.open(f'{d}/f{i:05d}', os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))`,
    [`${m}/many`, String(n)],
    { timeoutMs: 280_000 },
  );
  t.is(r.code, 0, r.stderr);
  t.log(`create ${n}: ${secs(t0)}`);
  t.is(await must(`ls ${m}/many | wc -l`), `${n}\n`);
  const names = Array.from({ length: n }, (_, i) => `f${String(i).padStart(5, '0')}`);
  t.is(await must(`LC_ALL=C ls -f ${m}/many | grep -v '^\\.\\.\\?$' | LC_ALL=C sort`), names.join('\n') + '\n');
  t.is(await must(`find ${m}/many -type f | wc -l`), `${n}\n`);
});

test.serial('1 60 levels of directories, a file at the bottom, find', async (t) => {
  const { m } = await one();
  const rel = Array.from({ length: 60 }, (_, i) => `level${String(i + 1).padStart(2, '0')}`).join('/');
  await must(`mkdir -p ${m}/deep/${rel} && echo bottom > ${m}/deep/${rel}/file`);
  t.is(await must(`find ${m}/deep -type f`), `${m}/deep/${rel}/file\n`);
  t.is(await must(`find ${m}/deep -mindepth 1 -type d | wc -l`), '60\n');
  t.is(await must(`cat ${m}/deep/${rel}/file`), 'bottom\n');
  t.is(await must(`cd ${m}/deep/${rel} && pwd && cat file`), `${m}/deep/${rel}\nbottom\n`);
  await must(`mv ${m}/deep/level01 ${m}/deep/top && cat ${m}/deep/top/${rel.split('/').slice(1).join('/')}/file`);
  await must(`rm -rf ${m}/deep`);
  t.is((await run(`test -e ${m}/deep`)).code, 1);
});

test.serial('1 non-ASCII names: created, listed, renamed, removed', async (t) => {
  const { m } = await one();
  const d = `${m}/names`;
  const names = ['é.txt', 'e\u0301.txt', '日本語', '🦊 fox', 'Ünïcödé dir'];
  const env = { LC_ALL: 'C.UTF-8' };
  await must(`mkdir ${d} && cd ${d} && for n in ${names.slice(0, 4).map(quote).join(' ')}; do printf '%s' "$n" > "$n"; done && mkdir ${quote(names[4]!)}`, { env });
  const ls = async (): Promise<string[]> => (await must(`ls -1 ${d}`, { env })).split('\n').filter(Boolean).sort();
  t.deepEqual(await ls(), [...names].sort(), 'composed and decomposed é are two names');
  t.is(await must(`cat ${d}/${quote('日本語')}`, { env }), '日本語');
  await must(`cd ${d} && mv 'é.txt' 'ñandú.txt' && mv '日本語' 'Ünïcödé dir/中文' && mv '🦊 fox' '🐉'`, { env });
  t.deepEqual(await ls(), ['e\u0301.txt', 'ñandú.txt', 'Ünïcödé dir', '🐉'].sort());
  t.is(await must(`cat ${d}/'Ünïcödé dir/中文' ${d}/'ñandú.txt' ${d}/🐉`, { env }), '日本語é.txt🦊 fox');
  t.is(await must(`find ${d} -name '中*'`, { env }), `${d}/Ünïcödé dir/中文\n`);
  await must(`cd ${d} && rm 'ñandú.txt' 'e\u0301.txt' '🐉' && rm -r 'Ünïcödé dir'`, { env });
  t.deepEqual(await ls(), []);
});

test.serial('1 a name of 255 bytes works, 256 gives "File name too long"', async (t) => {
  const { m } = await one();
  const d = `${m}/long`;
  await must(`mkdir ${d}`);
  const n255 = 'a'.repeat(255);
  const k255 = '日'.repeat(85); // 255 bytes in UTF-8
  await must(`cd ${d} && echo ok > ${n255} && mkdir ${k255} && echo deep > ${k255}/${n255}`);
  t.is(await must(`cat ${d}/${k255}/${n255} ${d}/${n255}`), 'deep\nok\n');
  t.deepEqual((await must(`ls ${d}`)).split('\n').filter(Boolean).sort(), [n255, k255].sort());
  for (const cmd of [`touch ${d}/${n255}b`, `mkdir ${d}/${k255}日`, `mv ${d}/${n255} ${d}/${n255}c`, `ln -s x ${d}/${'b'.repeat(256)}`]) {
    const r = await run(cmd);
    t.is(r.code, 1, cmd);
    t.regex(r.stderr, /File name too long/, cmd);
  }
  t.is(await must(`ls ${d} | wc -l`), '2\n');
});

// ---------------------------------------------------------------------------
// 2. Two mounts of one cluster
// ---------------------------------------------------------------------------

test.serial('2 close-to-open: what one mount writes and closes, the other opens and reads', async (t) => {
  const { a, b } = await two();
  const tmp = await scratch(t);
  await must(`mkdir ${a}/cto`);
  // each step: write on one side, read on the other right away (inline, chunked, multi-chunk sizes; both directions)
  const steps: Array<[string, string, number]> = [
    [a, b, 3],
    [a, b, 300_000],
    [b, a, 3_500_000],
    [a, b, 0],
    [b, a, 10],
    [a, b, 2_000_000],
  ];
  let k = 0;
  for (const [w, r, size] of steps) {
    const src = `${tmp}/v${k}`;
    await must(`head -c ${size} /dev/urandom > ${src} && cat ${src} > ${w}/cto/f${k}`);
    t.is(await must(`sha256sum < ${r}/cto/f${k}`), await must(`sha256sum < ${src}`), `step ${k}: ${size} bytes written on ${w}, read on ${r}`);
    k++;
  }
  // a rewrite of the same size: no stale pages on the reading side
  for (let i = 0; i < 3; i++) {
    await must(`head -c 200000 /dev/urandom > ${tmp}/same && cat ${tmp}/same > ${a}/cto/same`);
    t.is(await must(`sha256sum < ${b}/cto/same`), await must(`sha256sum < ${tmp}/same`), `same-size rewrite ${i}`);
  }
  // a file read whole on b, appended to on a, read whole on b again
  await must(`printf 'head\n' > ${a}/cto/app && cat ${b}/cto/app > /dev/null && printf 'tail\n' >> ${a}/cto/app`);
  t.is(await must(`cat ${b}/cto/app`), 'head\ntail\n');
});

// BUG (close-to-open vs the kernel's attribute cache): a stat on the reading mount
// caches the size for attr_timeout (1 s); open does not refresh it (vfs.open fetches
// the fresh inode, but nothing tells the kernel), so after the other mount rewrites
// the file longer and closes it, an open + read returns the old length: `cat`
// shows the new content cut at the old size, `tail -c` (fstat + lseek) shows old bytes.
// libfuse hides an open file that is unlinked as .fuse_hidden…; the vfs turns that
// into the unlink itself, so no mount ever lists the hidden name, and the directory
// can be removed while the file is still open.
test.serial('2 a file unlinked while open: no .fuse_hidden name on either mount, its directory can go, the open file keeps working', async (t) => {
  const { a, b } = await two();
  const r = await python(
    `import os, sys
a, b = sys.argv[1], sys.argv[2]
os.mkdir(a + '/uo')
fd = os.open(a + '/uo/f', os.O_CREAT | os.O_RDWR)
os.pwrite(fd, b'x' * 300000, 0)
os.unlink(a + '/uo/f')
print(sorted(os.listdir(a + '/uo')), sorted(os.listdir(b + '/uo')))
st = os.fstat(fd)
print(st.st_nlink, st.st_size)
os.pwrite(fd, b'tail', 300000)
print(len(os.pread(fd, 400000, 0)))
os.rmdir(b + '/uo')
print(os.pread(fd, 4, 300000).decode())
os.close(fd)
print(sorted(n for n in os.listdir(a) if n.startswith('.fuse_hidden')))`,
    [a, b],
  );
  t.is(r.stdout, '[] []\n0 300000\n300004\ntail\n[]\n', r.stderr);
});

test.serial('2 close-to-open after a stat on the reading mount: a longer rewrite is read whole (open drops stale kernel attributes)', async (t) => {
  const { a, b } = await two();
  await must(`mkdir -p ${a}/cto2 && echo short > ${a}/cto2/f && sleep 1.1`);
  await must(`stat ${b}/cto2/f > /dev/null && echo 'a longer line now' > ${a}/cto2/f`);
  t.is(await must(`cat ${b}/cto2/f`), 'a longer line now\n');
  await must(`stat ${b}/cto2/f > /dev/null && printf 'tail' >> ${a}/cto2/f`);
  t.is(await must(`tail -c 4 ${b}/cto2/f`), 'tail');
});

test.serial('2 sequential reads: concurrent readers agree; after the other mount rewrites and closes, the read-ahead serves only the new bytes', async (t) => {
  const { a, b } = await two();
  const tmp = await scratch(t);
  const mib = 24; // enough chunks for the read-ahead to grow past its first two
  await must(`mkdir -p ${a}/ra && head -c ${mib}M /dev/urandom > ${tmp}/v1 && head -c ${mib}M /dev/urandom > ${tmp}/v2 && cat ${tmp}/v1 > ${a}/ra/f`);
  const v1 = await must(`sha256sum < ${tmp}/v1`);
  const v2 = await must(`sha256sum < ${tmp}/v2`);
  // three readers at once on the other mount, each from the start
  const sums = await must(`for i in 1 2 3; do sha256sum < ${b}/ra/f & done; wait`);
  t.deepEqual(sums.trim().split('\n'), [v1.trim(), v1.trim(), v1.trim()]);
  // a reader that stops halfway has chunks of v1 fetched ahead in b's cache
  await must(`head -c ${mib / 2}M ${b}/ra/f > /dev/null`);
  await must(`cat ${tmp}/v2 > ${a}/ra/f`);
  t.is(await must(`sha256sum < ${b}/ra/f`), v2, 'the rewrite is read whole, no chunk of the old content');
  // and the writer's own mount reads what it wrote
  t.is(await must(`sha256sum < ${a}/ra/f`), v2);
});

const CREATE_MANY = `import os, sys
d, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    name = f'{prefix}{i:04d}'
    fd = os.open(f'{d}/{name}', os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.write(fd, name.encode())
    os.close(fd)`;

const CHECK_MANY = `import os, sys
d = sys.argv[1]
bad = [n for n in sorted(os.listdir(d)) if open(os.path.join(d, n), 'rb').read() != n.encode()]
print(len(os.listdir(d)), ' '.join(bad[:10]))`;

test.serial('2 both mounts creating 500 files in one directory at once lose none', async (t) => {
  t.timeout(3 * 60_000);
  const { a, b } = await two();
  await must(`mkdir ${a}/both`);
  const t0 = Date.now();
  const [ra, rb] = await Promise.all([python(CREATE_MANY, [`${a}/both`, 'a', '500'], { timeoutMs: 150_000 }), python(CREATE_MANY, [`${b}/both`, 'b', '500'], { timeoutMs: 150_000 })]);
  t.log(`1000 creates: ${secs(t0)}`);
  t.is(ra.code, 0, ra.stderr);
  t.is(rb.code, 0, rb.stderr);
  const want = [...['a', 'b'].flatMap((p) => Array.from({ length: 500 }, (_, i) => `${p}${String(i).padStart(4, '0')}`))].join('\n') + '\n';
  for (const m of [a, b]) {
    t.is(await must(`ls ${m}/both | wc -l`), '1000\n', m);
    t.is(await must(`LC_ALL=C ls ${m}/both`), want, m);
    const check = await python(CHECK_MANY, [`${m}/both`]);
    t.is(check.stdout, '1000 \n', `${m}: count and files whose content is not their name`);
  }
});

// Both children race through the same names: O_CREAT|O_EXCL, and a loser opens the
// name right away (for the failing test below).
const EXCL_RACE = `import os, sys, time, errno
d, tag, n, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
while time.time() < start:
    time.sleep(0.001)
for i in range(n):
    p = f'{d}/n{i:03d}'
    try:
        fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.write(fd, tag.encode())
        os.close(fd)
        print('won', i)
    except FileExistsError:
        try:
            open(p, 'rb').close()
            print('lost', i, 'open-ok')
        except OSError as e:
            print('lost', i, 'open-' + errno.errorcode.get(e.errno, str(e.errno)))
    except OSError as e:
        print('error', i, errno.errorcode.get(e.errno, str(e.errno)))`;

let exclLoserOpens: string[] | null = null;

test.serial('2 an O_EXCL race on one name from both mounts has exactly one winner', async (t) => {
  const { a, b } = await two();
  await must(`mkdir ${a}/excl`);
  const n = 20;
  const start = String(Date.now() / 1000 + 1);
  const [ra, rb] = await Promise.all([python(EXCL_RACE, [`${a}/excl`, 'A', String(n), start]), python(EXCL_RACE, [`${b}/excl`, 'B', String(n), start])]);
  t.is(ra.code, 0, ra.stderr);
  t.is(rb.code, 0, rb.stderr);
  const lines = (s: string): string[][] => s.trim().split('\n').map((l) => l.split(' '));
  const wonBy = new Map<number, string[]>();
  const loserOpens: string[] = [];
  for (const [tag, out] of [['A', ra.stdout], ['B', rb.stdout]] as const) {
    for (const [what, i, how] of lines(out)) {
      t.not(what, 'error', `${tag} n${i}: ${how}`);
      if (what === 'won') wonBy.set(Number(i), [...(wonBy.get(Number(i)) ?? []), tag]);
      if (what === 'lost') loserOpens.push(`${tag} n${i} ${how}`);
    }
  }
  for (let i = 0; i < n; i++) t.is(wonBy.get(i)?.length, 1, `n${i}: winners ${JSON.stringify(wonBy.get(i) ?? [])}`);
  t.is(loserOpens.length, n);
  exclLoserOpens = loserOpens;
  t.log(`A won ${[...wonBy.values()].filter((w) => w[0] === 'A').length}, B won ${[...wonBy.values()].filter((w) => w[0] === 'B').length}`);
  // each file holds its winner's tag, seen alike from both mounts (past the caches' 1 s)
  await new Promise((r) => setTimeout(r, 1100));
  const want = Array.from({ length: n }, (_, i) => wonBy.get(i)?.[0] ?? '?').join('');
  t.is(await must(`cd ${a}/excl && cat n*`), want);
  t.is(await must(`cd ${b}/excl && cat n*`), want);
});

// BUG (vfs createNode / lookup cache): the kernel's LOOKUP before CREATE caches "no such
// name" in the vfs entry cache (1 s); when meta.create then finds the name taken and
// throws EEXIST, the negative entry is not dropped, so the next open of the name on
// that mount says ENOENT: EEXIST, then ENOENT for the same name.
test.serial('2 after losing an O_EXCL race, the name opens at once (EEXIST forgets the cached missing name)', (t) => {
  t.truthy(exclLoserOpens, 'the race test ran');
  t.deepEqual((exclLoserOpens ?? []).filter((s) => !s.endsWith('open-ok')), []);
});

const SAVE_LOOP = `d=$1; ms=$2; i=1; end=$(( $(date +%s%3N) + ms ))
while [ $(date +%s%3N) -lt $end ]; do
  yes "v$i" | head -c 100000 > $d/a.tmp && mv -f $d/a.tmp $d/a || { echo "save $i failed" >&2; exit 1; }
  i=$((i + 1))
done
echo $((i - 1))`;

const READ_LOOP = `import sys, time, errno
p, secs = sys.argv[1], float(sys.argv[2])
end = time.time() + secs
reads, errors, bad = 0, {}, []
while time.time() < end:
    try:
        with open(p, 'rb') as f:
            s = f.read()
    except OSError as e:
        k = errno.errorcode.get(e.errno, str(e.errno))
        errors[k] = errors.get(k, 0) + 1
        continue
    reads += 1
    tag = s.split(b'\\n', 1)[0]
    if not tag.startswith(b'v') or s != ((tag + b'\\n') * 100000)[:100000]:
        bad.append(s[:20].decode('latin1') + '... %d bytes' % len(s))
print(reads, sum(errors.values()), errors, len(bad), bad[:3])`;

// BUG (vfs name/inode caches): the reading mount keeps name -> inode for 1 s
// (entry cache); after the other mount's rename replaced the name and dropped the
// old inode, open resolves to the old inode, getInode finds nothing and answers
// ENOENT, although the name always existed. A fresh lookup racing the rename has
// the same window (lookup sees the old dirent, the inode is gone by getInode); seen
// even on a single mount, rarely (1 ENOENT in ~1500 reads), so not tested here.
test.serial('2 atomic save (mv -f a.tmp a) on one mount: reads of a on the other never fail (a dropped inode makes the name be looked up again)', async (t) => {
  t.timeout(60_000);
  const { a, b } = await two();
  await must(`mkdir ${a}/save && yes v0 | head -c 100000 > ${a}/save/a`);
  await must(`cat ${b}/save/a > /dev/null`);
  const [w, r] = await Promise.all([run(SAVE_LOOP.replace(/\$1/g, `${a}/save`).replace(/\$2/g, '5000')), python(READ_LOOP, [`${b}/save/a`, '5'])]);
  t.is(w.code, 0, w.stderr);
  t.is(r.code, 0, r.stderr);
  t.log(`saves: ${w.stdout.trim()}; reads, errors, by errno, bad, samples: ${r.stdout.trim()}`);
  const [reads, errors, , badCount] = r.stdout.trim().split(' ');
  t.true(Number(w.stdout) > 3, 'the writer saved several versions');
  t.true(Number(reads) > 10, 'the reader read');
  t.is(Number(errors), 0, `failed opens/reads: ${r.stdout.trim()}`);
  t.is(Number(badCount), 0, 'every read returned one whole version');
});

// ---------------------------------------------------------------------------
// 3. A node SIGKILLed during cp -a
// ---------------------------------------------------------------------------

test.serial('3 a node killed during cp -a: the copy finishes (exit 0) and diff -r is clean', async (t) => {
  t.timeout(5 * 60_000);
  const { rc, m } = await fixtures.use('kill', async (ft) => {
    const { rc, mount } = await mountedCluster(ft);
    live = [mount];
    return { rc, m: mount.dir, mount };
  });
  // A snapshot first: node_modules may change under the test (others rebuild it).
  const tmp = await scratch(t);
  const src = `${tmp}/tree`;
  // a few thousand files: node_modules without its four biggest packages (and the links into them)
  await must(`mkdir ${src} && cp -a ${REPO}/node_modules/. ${src}/ && rm -rf ${src}/{lodash,tar,pino,typescript} && find ${src} -xtype l -delete`);
  const files = Number(await must(`find ${src} | wc -l`));
  t.log(`${files} entries`);
  t.true(files > 2000);
  const t0 = Date.now();
  let finished = false;
  const copy = run(`cp -a ${src} ${m}/copy`, { timeoutMs: 240_000 }).finally(() => (finished = true));
  await new Promise((r) => setTimeout(r, 1000));
  t.false(finished, 'cp still running when n2 is killed');
  rc.nodes.get('n2')!.kill('SIGKILL');
  await rc.nodes.get('n2')!.exited;
  const r = await copy;
  t.log(`cp -a with n2 killed after 1 s: ${secs(t0)}`);
  t.is(r.code, 0, r.stderr.slice(-2000));
  const t1 = Date.now();
  const diff = await run(`diff -r ${src} ${m}/copy`, { timeoutMs: 120_000 });
  t.log(`diff -r: ${secs(t1)}`);
  t.is(diff.code, 0, (diff.stdout + diff.stderr).slice(-2000));
  // n2 back: the mount keeps working
  await rc.start('n2');
  await must(`head -c 3000000 /dev/urandom > ${tmp}/after && cp ${tmp}/after ${m}/after && cmp ${tmp}/after ${m}/after`);
  t.is(await must(`ls ${m}`), 'after\ncopy\n');
});

// ---------------------------------------------------------------------------
// 4. Another user through an allow_other mount
// ---------------------------------------------------------------------------

test.serial('4 files and directories created by uid 65534 belong to 65534:65534', async (t) => {
  const { m } = await other();
  t.regex(await must(`grep ' ${m} ' /proc/mounts`), /allow_other/);
  await must(`mkdir ${m}/pub && chmod 777 ${m}/pub`);
  t.is(await must(asNobody(`id -u && echo hi > ${m}/pub/uf && mkdir ${m}/pub/ud && ln -s uf ${m}/pub/ul && cat ${m}/pub/uf`)), '65534\nhi\n');
  t.is(await must(`stat -c '%u:%g %n' ${m}/pub/uf ${m}/pub/ud && stat -c '%u:%g' ${m}/pub/ul`), `65534:65534 ${m}/pub/uf\n65534:65534 ${m}/pub/ud\n65534:65534\n`);
  // the owner may chmod its own file
  t.is(await must(asNobody(`chmod 600 ${m}/pub/uf && stat -c %a ${m}/pub/uf`)), '600\n');
});

test.serial('4 uid 65534 gets EACCES on a root 0600 file and in a root 0755 directory', async (t) => {
  const { m } = await other();
  await must(`echo secret > ${m}/private && chmod 600 ${m}/private && echo open > ${m}/public && chmod 644 ${m}/public && mkdir -m 755 ${m}/rootdir`);
  t.is(await must(asNobody(`cat ${m}/public`)), 'open\n');
  for (const cmd of [`cat ${m}/private`, `echo x >> ${m}/public`, `touch ${m}/rootdir/x`, `mkdir ${m}/rootdir/d`, `rm ${m}/public`]) {
    const r = await run(asNobody(cmd));
    t.not(r.code, 0, cmd);
    t.regex(r.stderr, /Permission denied/, cmd);
  }
  t.is(await must(`ls -A ${m}/rootdir && cat ${m}/public`), 'open\n');
});

test.serial('4 uid 65534 gets EPERM on chmod / chown of a root file', async (t) => {
  const { m } = await other();
  await must(`echo r > ${m}/rootfile && chmod 666 ${m}/rootfile`);
  for (const cmd of [`chmod 777 ${m}/rootfile`, `chown 65534 ${m}/rootfile`, `chown 65534:65534 ${m}/rootfile`, `chgrp 65534 ${m}/rootfile`, `touch -d 2001-01-01 ${m}/rootfile`]) {
    const r = await run(asNobody(cmd));
    t.not(r.code, 0, cmd);
    t.regex(r.stderr, /Operation not permitted/, cmd);
  }
  t.is(await must(`stat -c '%a %u:%g' ${m}/rootfile`), '666 0:0\n');
});

test.serial('4 a user may chgrp its file to a group it holds only as a supplementary group, and keep setgid there; not to any other group', async (t) => {
  const { m } = await other();
  await must(`mkdir -p ${m}/grp && chmod 777 ${m}/grp`);
  // uid 65534, primary group 65534, supplementary group 4242
  const as = (cmd: string) => `setpriv --reuid=65534 --regid=65534 --groups=4242 bash -c ${quote(cmd)}`;
  t.is(await must(as(`echo x > ${m}/grp/f && chgrp 4242 ${m}/grp/f && chmod 2755 ${m}/grp/f && stat -c '%g %a' ${m}/grp/f`)), '4242 2755\n');
  const r = await run(as(`chgrp 4343 ${m}/grp/f`));
  t.not(r.code, 0);
  t.regex(r.stderr, /Operation not permitted/);
  t.is(await must(`stat -c '%u:%g %a' ${m}/grp/f`), '65534:4242 2755\n');
});

test.serial('4 a write or truncate by uid 65534 clears setuid and setgid of a root file, as Linux does, and succeeds', async (t) => {
  const { m } = await other();
  await must(`echo a > ${m}/suid && chmod 6777 ${m}/suid && echo a > ${m}/suid2 && chmod 6747 ${m}/suid2 && echo a > ${m}/suid3 && chmod 4777 ${m}/suid3`);
  await must(asNobody(`echo b >> ${m}/suid && truncate -s 1 ${m}/suid3`));
  // setgid goes only with group-execute set (without it, it marks mandatory locking and stays)
  await must(asNobody(`echo b >> ${m}/suid2`));
  t.is(await must(`stat -c '%a %s' ${m}/suid ${m}/suid2 ${m}/suid3`), '777 4\n2747 4\n777 1\n');
});

test.serial('4 sticky 1777 directory: uid 65534 cannot delete root\'s file, can delete its own', async (t) => {
  const { m } = await other();
  await must(`mkdir ${m}/sticky && chmod 1777 ${m}/sticky && echo r > ${m}/sticky/rootf && chmod 666 ${m}/sticky/rootf`);
  for (const cmd of [`rm -f ${m}/sticky/rootf`, `mv ${m}/sticky/rootf ${m}/sticky/mine`]) {
    const r = await run(asNobody(cmd));
    t.not(r.code, 0, cmd);
    t.regex(r.stderr, /Operation not permitted/, cmd);
  }
  // writing into it is allowed (0666), deleting is not
  await must(asNobody(`echo u >> ${m}/sticky/rootf`));
  t.is(await must(`cat ${m}/sticky/rootf`), 'r\nu\n');
  await must(asNobody(`echo mine > ${m}/sticky/userf && mv ${m}/sticky/userf ${m}/sticky/userf2 && rm ${m}/sticky/userf2`));
  t.is(await must(`ls -A ${m}/sticky`), 'rootf\n');
});
