// fsck and gc over the in-memory key space: a filesystem built through the
// vfs, then damaged record by record the way crashes and lost nodes damage it.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { KEEP } from '../../src/keyspace/types.js';
import type { MemoryKeySpace } from '../../src/keyspace/memory.js';
import { fsck } from '../../src/meta/fsck.js';
import { gc } from '../../src/meta/gc.js';
import { LEASE_HOLDERS, collectSessions } from '../../src/meta/sessions-gc.js';
import { decodeHolder, encodeHolder, holderRecordKey, renewHolder } from '../../src/util/lease.js';
import { decodeSession, encodeSession } from '../../src/meta/locks.js';
import { DEFAULT_LEASE, deadAfterMs, renew } from '../../src/meta/lock-lease.js';
import { direntKey, gcCandidateKey, inodeKey, intentKey, mapPageKey, sessionKey } from '../../src/meta/schema.js';
import { decodeMapPage, chunksOfPage } from '../../src/meta/extents.js';
import { decodeDirent, decodeInode, encodeDirent, encodeInode, encodeIntent, ROOT_INO, S_IFDIR, S_IFREG, type Ino } from '../../src/meta/types.js';
import type { ChunkId } from '../../src/util/ids.js';
import { O_CREAT, O_WRONLY, type Vfs } from '../../src/vfs/vfs.js';
import { memoryVfs } from '../helpers/memfs.js';

const CHUNK = 64 * 1024;

async function writeFile(vfs: Vfs, path: string, data: Buffer): Promise<void> {
  const fh = await vfs.create(path, 0o644, O_CREAT | O_WRONLY);
  await vfs.write(fh, 0, data);
  await vfs.release(fh);
}

async function readFile(vfs: Vfs, path: string): Promise<Buffer> {
  const fh = await vfs.open(path, 0);
  try {
    return await vfs.read(fh, 0, 1 << 24);
  } finally {
    await vfs.release(fh);
  }
}

/** /a/x (chunked, 3 chunks), /a/y (inline), /a/sub/, /link → same inode as /a/x, /s → symlink. */
async function sample(): Promise<{ vfs: Vfs; ks: MemoryKeySpace; big: Buffer }> {
  const { vfs, ks } = await memoryVfs({ chunkSize: CHUNK });
  await vfs.mkdir('/a', 0o755);
  await vfs.mkdir('/a/sub', 0o755);
  const big = randomBytes(3 * CHUNK - 100);
  await writeFile(vfs, '/a/x', big);
  await writeFile(vfs, '/a/y', Buffer.from('small'));
  await vfs.link('/a/x', '/link');
  await vfs.symlink('/a/y', '/s');
  await vfs.fsyncdir(); // background directory updates settle
  return { vfs, ks, big };
}

async function inoOf(ks: MemoryKeySpace, dir: Ino, name: string): Promise<Ino> {
  const b = await ks.read(direntKey(dir, Buffer.from(name)));
  if (!b) throw new Error(`no ${name}`);
  return decodeDirent(b).ino;
}

async function editInode(ks: MemoryKeySpace, ino: Ino, fn: (i: ReturnType<typeof decodeInode>) => void): Promise<void> {
  await ks.change(inodeKey(ino), (old) => {
    if (!old) return KEEP;
    const i = decodeInode(old);
    fn(i);
    return encodeInode(i);
  });
}

const kinds = (r: { findings: Array<{ kind: string }> }): string[] => r.findings.map((f) => f.kind).sort();

test('a healthy filesystem is clean, with nothing to report; counts match what was built', async (t) => {
  const { ks } = await sample();
  const r = await fsck(ks, { graceMs: 0 });
  t.true(r.clean);
  t.deepEqual(r.findings, []);
  t.is(r.counts.directories, 3);
  t.is(r.counts.names, 6, 'a, sub, x, y, link, s');
  t.is(r.counts.chunksReferenced, 3);
  t.is(r.counts.chunksStored, 3);
});

test('a name whose inode is gone is an error; --repair drops the name; the inode\'s chunk maps are a leftover for gc', async (t) => {
  const { vfs, ks } = await sample();
  const a = await inoOf(ks, ROOT_INO, 'a');
  const y = await inoOf(ks, a, 'y');
  await ks.delete(inodeKey(y));
  const r = await fsck(ks, { graceMs: 0 });
  t.false(r.clean);
  t.deepEqual(kinds(r), ['dangling-dirent']);
  t.is(r.findings[0]!.where, '/a/y');
  const fixed = await fsck(ks, { graceMs: 0, repair: true });
  t.is(fixed.findings[0]!.repair, 'fixed');
  t.true(fixed.clean, 'clean once the error is fixed');
  t.is(await ks.read(direntKey(a, Buffer.from('y'))), null);
  t.deepEqual((await vfs.readdir('/a')).map((e) => e.name).filter((n) => n !== '.' && n !== '..').sort(), ['sub', 'x']);
  t.true((await fsck(ks, { graceMs: 0 })).clean);
});

test('link counts: too low is an error, too high a leftover; repair sets them to the names counted', async (t) => {
  const { ks } = await sample();
  const a = await inoOf(ks, ROOT_INO, 'a');
  const x = await inoOf(ks, a, 'x');
  const y = await inoOf(ks, a, 'y');
  await editInode(ks, x, (i) => (i.nlink = 1)); // two names
  await editInode(ks, y, (i) => (i.nlink = 3)); // one name
  const r = await fsck(ks, { graceMs: 0 });
  t.deepEqual(kinds(r), ['nlink-high', 'nlink-low']);
  t.is(r.errors, 1);
  t.false(r.clean);
  await fsck(ks, { graceMs: 0, repair: true });
  t.is(decodeInode((await ks.read(inodeKey(x)))!).nlink, 2);
  t.is(decodeInode((await ks.read(inodeKey(y)))!).nlink, 1);
  t.deepEqual((await fsck(ks, { graceMs: 0 })).findings, []);
});

test('a change within the grace period is work in flight: not reported, not repaired', async (t) => {
  const { ks } = await sample();
  const a = await inoOf(ks, ROOT_INO, 'a');
  const x = await inoOf(ks, a, 'x');
  await editInode(ks, x, (i) => (i.nlink = 1)); // ctime of x is from just now
  const r = await fsck(ks, { graceMs: 3600_000, repair: true });
  t.deepEqual(kinds(r), []);
  t.true(r.inFlight >= 1);
  t.is(decodeInode((await ks.read(inodeKey(x)))!).nlink, 1, 'left alone');
});

test('a chunk map naming a chunk no node holds is an error that repair cannot fix', async (t) => {
  const { ks } = await sample();
  const a = await inoOf(ks, ROOT_INO, 'a');
  const x = await inoOf(ks, a, 'x');
  const page = decodeMapPage((await ks.read(mapPageKey(x, 0)))!);
  const lost = page.get(1)![0]!.src;
  t.is((await ks.sweepChunk(lost, 0)).copies, 1);
  const r = await fsck(ks, { graceMs: 0, repair: true });
  t.deepEqual(kinds(r), ['missing-chunk']);
  t.true(r.findings[0]!.detail.includes(lost));
  t.true(r.findings[0]!.repair!.startsWith('not fixed'));
  t.false(r.clean);
  t.is(r.unrepaired, 1);
});

test('directory link count, parent and a file\'s chunk count out of step are leftovers that repair fixes', async (t) => {
  const { ks } = await sample();
  const a = await inoOf(ks, ROOT_INO, 'a');
  const sub = await inoOf(ks, a, 'sub');
  const x = await inoOf(ks, a, 'x');
  // changed an hour ago: "recent" compares inode times (hrtime anchored to the wall
  // clock once) with Date.now(), which can be a millisecond behind them
  const hourAgo = { sec: Math.floor(Date.now() / 1000) - 3600, nsec: 0 };
  await editInode(ks, a, (i) => ((i.nlink = 7), (i.ctime = hourAgo)));
  await editInode(ks, sub, (i) => ((i.parent = ROOT_INO), (i.ctime = hourAgo)));
  await editInode(ks, x, (i) => ((i.chunks = 9), (i.ctime = hourAgo), (i.mtime = hourAgo)));
  const r = await fsck(ks, { graceMs: 0 });
  t.true(r.clean, 'leftovers are not errors');
  t.deepEqual(kinds(r), ['chunk-count', 'dir-nlink', 'dir-parent']);
  await fsck(ks, { graceMs: 0, repair: true });
  t.is(decodeInode((await ks.read(inodeKey(a)))!).nlink, 3);
  t.is(decodeInode((await ks.read(inodeKey(sub)))!).parent, a);
  t.is(decodeInode((await ks.read(inodeKey(x)))!).chunks, 3);
  t.deepEqual((await fsck(ks, { graceMs: 0 })).findings, []);
});

test('a wrong entry type and an undecodable record are errors', async (t) => {
  const { ks } = await sample();
  const a = await inoOf(ks, ROOT_INO, 'a');
  const y = await inoOf(ks, a, 'y');
  await ks.change(direntKey(a, Buffer.from('y')), () => encodeDirent({ ino: y, type: 0o040000 }));
  await ks.change(direntKey(a, Buffer.from('junk')), () => Buffer.from([1, 2, 3]));
  const r = await fsck(ks, { graceMs: 0, repair: true });
  t.deepEqual(kinds(r), ['type-mismatch', 'undecodable']);
  t.is(r.findings.find((f) => f.kind === 'type-mismatch')!.repair, 'fixed');
  t.is(decodeDirent((await ks.read(direntKey(a, Buffer.from('y'))))!).type, S_IFREG);
  t.false(r.clean, 'the undecodable record remains');
});

test('interrupted renames: one that replaced its destination is finished, one that did not is undone', async (t) => {
  const { vfs, ks } = await sample();
  const a = await inoOf(ks, ROOT_INO, 'a');
  const y = await inoOf(ks, a, 'y');
  const sub = await inoOf(ks, a, 'sub');
  const old = Date.now() - 3600_000;
  // Crash after the destination name was written: /a/y is also /a/sub/y2.
  await ks.change(intentKey(Buffer.alloc(16, 1)), () =>
    encodeIntent({ srcDir: a, srcName: Buffer.from('y'), dstDir: sub, dstName: Buffer.from('y2'), ino: y, type: S_IFREG, createdAt: old }),
  );
  await ks.change(direntKey(sub, Buffer.from('y2')), () => encodeDirent({ ino: y, type: S_IFREG }));
  // Crash right after the intent: nothing else happened.
  const x = await inoOf(ks, a, 'x');
  await ks.change(intentKey(Buffer.alloc(16, 2)), () =>
    encodeIntent({ srcDir: a, srcName: Buffer.from('x'), dstDir: ROOT_INO, dstName: Buffer.from('x3'), ino: x, type: S_IFREG, createdAt: old }),
  );
  const r = await fsck(ks, { graceMs: 60_000 });
  t.deepEqual(kinds(r), ['stale-intent', 'stale-intent']);
  const fixed = await fsck(ks, { graceMs: 60_000, repair: true });
  t.deepEqual(fixed.findings.map((f) => f.repair), ['fixed', 'fixed']);
  t.is((await readFile(vfs, '/a/sub/y2')).toString(), 'small');
  t.is(await ks.read(direntKey(a, Buffer.from('y'))), null, 'the finished rename dropped the source name');
  t.truthy(await ks.read(direntKey(a, Buffer.from('x'))), 'the undone rename kept the source name');
  t.is(await ks.read(direntKey(ROOT_INO, Buffer.from('x3'))), null);
  t.deepEqual((await fsck(ks, { graceMs: 0 })).findings, []);
});

test('interrupted exchanges (RENAME_EXCHANGE): one whose destination took the source is finished, swapping the other name and a moved directory\'s parent; one that did not is undone', async (t) => {
  const { ks } = await sample();
  const a = await inoOf(ks, ROOT_INO, 'a');
  const sub = await inoOf(ks, a, 'sub');
  const x = await inoOf(ks, ROOT_INO, 'link');
  const old = Date.now() - 3600_000;
  // /a/sub (a directory) and /link (a file) exchanged; crash after the destination was written.
  await ks.change(intentKey(Buffer.alloc(16, 3)), () =>
    encodeIntent({ srcDir: a, srcName: Buffer.from('sub'), dstDir: ROOT_INO, dstName: Buffer.from('link'), ino: sub, type: S_IFDIR, createdAt: old, exchange: { ino: x, type: S_IFREG } }),
  );
  await ks.change(direntKey(ROOT_INO, Buffer.from('link')), () => encodeDirent({ ino: sub, type: S_IFDIR }));
  // /a/x and /a/y exchanged; crash right after the intent.
  const ax = await inoOf(ks, a, 'x');
  const ay = await inoOf(ks, a, 'y');
  await ks.change(intentKey(Buffer.alloc(16, 4)), () =>
    encodeIntent({ srcDir: a, srcName: Buffer.from('x'), dstDir: a, dstName: Buffer.from('y'), ino: ax, type: S_IFREG, createdAt: old, exchange: { ino: ay, type: S_IFREG } }),
  );
  const r = await fsck(ks, { graceMs: 60_000, repair: true });
  t.deepEqual(r.findings.filter((f) => f.kind === 'stale-intent').map((f) => f.repair), ['fixed', 'fixed']);
  t.is(await inoOf(ks, a, 'sub'), x, 'the source name took the other inode');
  t.is(await inoOf(ks, ROOT_INO, 'link'), sub, 'and the destination keeps the source');
  t.is(decodeInode((await ks.read(inodeKey(sub)))!).parent, ROOT_INO, "the moved directory's parent is its new one");
  t.is(await inoOf(ks, a, 'x'), ax, 'the undone exchange left both names');
  t.is(await inoOf(ks, a, 'y'), ay);
  await fsck(ks, { graceMs: 0, repair: true }); // link counts of the two parents, derived
  t.deepEqual((await fsck(ks, { graceMs: 0 })).findings, []);
});

test('orphans: an inode no name reaches is a leftover, unless it is younger than the grace period (a create in flight)', async (t) => {
  const { ks } = await sample();
  const orphan = 0x1234567 as Ino;
  const base = decodeInode((await ks.read(inodeKey(ROOT_INO)))!);
  const old = { sec: Math.floor(Date.now() / 1000) - 7200, nsec: 0 };
  await ks.change(inodeKey(orphan), () => encodeInode({ ...base, ino: orphan, mode: S_IFREG | 0o644, nlink: 1, ctime: old, mtime: old }));
  const r = await fsck(ks, { graceMs: 60_000, repair: true });
  t.deepEqual(kinds(r), ['orphan-inode']);
  t.is(r.findings[0]!.repair, 'left for gc');
  t.true(r.clean);
  const young = await fsck(ks, { graceMs: 3 * 3600_000 });
  t.deepEqual(kinds(young), []);
  t.is(young.inFlight, 1);
});

test('gc: unreferenced chunks go, referenced ones stay, files read back whole; bytes reclaimed are counted', async (t) => {
  const { vfs, ks, big } = await sample();
  const stray = randomBytes(5000);
  await ks.putChunk(stray);
  const kept = await gc(ks, { graceMs: 3600_000 });
  t.is(kept.chunksSwept, 0, 'a chunk younger than the grace period stays');
  t.is(kept.chunksTooYoung, 1);
  // older than the time gc takes to run (its own runtime is added to the grace)
  ks.ageChunks(3600_000);
  const c = await gc(ks, { graceMs: 0 });
  t.is(c.chunksReferenced, 3);
  t.is(c.chunksSwept, 1);
  t.is(c.bytesReclaimed, 5000);
  t.is(ks.chunkCount, 3);
  t.deepEqual(await readFile(vfs, '/a/x'), big);
  t.deepEqual(await readFile(vfs, '/link'), big);
  t.deepEqual((await fsck(ks, { graceMs: 0 })).findings, []);
});

test('gc: a deleted file\'s chunk maps and chunks are reclaimed; a chunk another file shares stays', async (t) => {
  const { vfs, ks, big } = await sample();
  await writeFile(vfs, '/copy', big); // same bytes: same chunks
  await vfs.unlink('/a/x');
  await vfs.unlink('/link');
  await vfs.fsyncdir();
  const before = await fsck(ks, { graceMs: 0 });
  t.deepEqual(kinds(before), ['orphan-records'], 'the unlinked inode left its chunk maps');
  const c = await gc(ks, { graceMs: 0 });
  t.is(c.orphansReclaimed, 1);
  t.is(c.chunksSwept, 0, 'every chunk is still referenced by /copy');
  t.deepEqual(await readFile(vfs, '/copy'), big);
  await vfs.unlink('/copy');
  await vfs.fsyncdir();
  ks.ageChunks(3600_000);
  const c2 = await gc(ks, { graceMs: 0 });
  t.is(c2.chunksSwept, 3);
  t.is(c2.bytesReclaimed, big.length);
  t.is(ks.chunkCount, 0);
  t.deepEqual((await fsck(ks, { graceMs: 0 })).findings, []);
});

test('gc with a grace period: an orphan is recorded first and reclaimed only by a run a grace period later', async (t) => {
  const { vfs, ks } = await sample();
  await vfs.unlink('/a/x');
  await vfs.unlink('/link');
  await vfs.fsyncdir();
  const first = await gc(ks, { graceMs: 60_000 });
  t.is(first.candidatesRecorded, 1);
  t.is(first.orphansReclaimed, 0);
  const second = await gc(ks, { graceMs: 60_000 });
  t.is(second.candidatesRecorded, 0);
  t.is(second.orphansReclaimed, 0, 'not yet a grace period later');
  // As if the first run had been a minute ago.
  const orphan = [...(await ks.listRecords(null, 1000)).records].find((r) => r.key.subarray(0, 3).equals(gcCandidateKey(1 as Ino).subarray(0, 3)))!;
  await ks.change(orphan.key, () => Buffer.from(String(Date.now() - 61_000)));
  const third = await gc(ks, { graceMs: 60_000 });
  t.is(third.orphansReclaimed, 1);
  t.true(third.recordsDeleted >= 1);
  t.is((await ks.listRecords(null, 1000)).records.filter((r) => r.key.subarray(0, 3).equals(gcCandidateKey(1 as Ino).subarray(0, 3))).length, 0, 'candidate record removed');
});

test('gc dry run deletes nothing', async (t) => {
  const { vfs, ks } = await sample();
  await ks.putChunk(randomBytes(100));
  await vfs.unlink('/a/y');
  await vfs.fsyncdir();
  const n = ks.chunkCount;
  const records = (await ks.listRecords(null, 1000)).records.length;
  const c = await gc(ks, { graceMs: 0, dryRun: true });
  t.is(c.chunksSwept, 1);
  t.is(ks.chunkCount, n);
  t.is((await ks.listRecords(null, 1000)).records.length, records);
});

test('gc refuses to delete anything without the root inode', async (t) => {
  const { ks } = await sample();
  await ks.putChunk(randomBytes(100));
  await ks.delete(inodeKey(ROOT_INO));
  const n = ks.chunkCount;
  await t.throwsAsync(gc(ks, { graceMs: 0 }), { message: /root directory inode is missing/ });
  t.is(ks.chunkCount, n);
});

test('chunk ids in map pages survive a gc when the page is referenced (sanity of the mark)', async (t) => {
  const { ks } = await sample();
  const a = await inoOf(ks, ROOT_INO, 'a');
  const x = await inoOf(ks, a, 'x');
  const ids = [...chunksOfPage(decodeMapPage((await ks.read(mapPageKey(x, 0)))!))];
  await gc(ks, { graceMs: 0 });
  for (const id of ids) t.true(await ks.hasChunk(id));
});

test('gc deletes the lock-session records of mounts that ended or died, never one that is still renewed', async (t) => {
  const { ks } = await sample();
  const rec = (counter: number, dead: boolean) => encodeSession({ counter, leaseMs: 1000, inFlightMs: 1000, dead });
  await ks.change(sessionKey('ended'), () => rec(7, true));
  await ks.change(sessionKey('crashed'), () => rec(3, false));
  await ks.change(sessionKey('live'), () => rec(1, false));
  let clock = 1_000_000;
  let renewals = 0;
  const keys = [sessionKey('ended'), sessionKey('crashed'), sessionKey('live')];
  const r = await collectSessions(ks, keys, {
    dryRun: false,
    now: () => clock,
    // Time passes only while gc waits; meanwhile the live mount renews, the crashed one does not.
    sleep: async (ms) => {
      clock += ms;
      renewals++;
      await ks.change(sessionKey('live'), (old) => encodeSession(renew(decodeSession(old))));
    },
  });
  t.deepEqual(r, { deleted: 2, live: 1 });
  t.is(await ks.read(sessionKey('ended')), null);
  t.is(await ks.read(sessionKey('crashed')), null);
  t.is(decodeSession(await ks.read(sessionKey('live')))!.counter, 1 + renewals);
  // The crashed session went only after gc had seen its counter unchanged for the whole bound.
  t.true(clock - 1_000_000 >= deadAfterMs({ leaseMs: 1000, inFlightMs: 1000 }, DEFAULT_LEASE.drift), `${clock - 1_000_000} ms waited`);
});

test('gc does not delete a silent session before the bound, and a dry run deletes nothing', async (t) => {
  const { ks } = await sample();
  await ks.change(sessionKey('quiet'), () => encodeSession({ counter: 5, leaseMs: 1000, inFlightMs: 1000, dead: false }));
  await ks.change(sessionKey('ended'), () => encodeSession({ counter: 2, leaseMs: 1000, inFlightMs: 1000, dead: true }));
  let clock = 0;
  const opts = { now: () => clock, sleep: async (ms: number) => void (clock += ms) };
  const dry = await collectSessions(ks, [sessionKey('quiet'), sessionKey('ended')], { ...opts, dryRun: true });
  t.deepEqual(dry, { deleted: 1, live: 1 });
  t.not(await ks.read(sessionKey('ended')), null, 'the dry run left it');
  // gc may wait at most 1 s: the quiet session is left for a later run.
  const short = await collectSessions(ks, [sessionKey('quiet'), sessionKey('ended')], { ...opts, dryRun: false, maxWaitMs: 1000 });
  t.deepEqual(short, { deleted: 1, live: 1 });
  t.is(decodeSession(await ks.read(sessionKey('quiet')))!.counter, 5);
  t.is(await ks.read(sessionKey('ended')), null);
  // And gc() itself collects: the survey finds session records.
  await ks.change(sessionKey('ended2'), () => encodeSession({ counter: 1, leaseMs: 1000, inFlightMs: 1000, dead: true }));
  const c = await gc(ks, { graceMs: 0, sessionWaitMs: 0 });
  t.is(c.sessionsDeleted, 1);
  t.is(c.sessionsLive, 1);
  t.is(await ks.read(sessionKey('ended2')), null);
});

test('gc deletes the lease-holder records of mounts that ended or died, after the wait each record states, never one still renewed; fsck stays clean', async (t) => {
  const { ks } = await sample();
  const rec = (renewals: number, ended: boolean) => encodeHolder({ renewals, ended, waitMs: 3000 });
  await ks.change(holderRecordKey('ended'), () => rec(7, true));
  await ks.change(holderRecordKey('crashed'), () => rec(3, false));
  await ks.change(holderRecordKey('live'), () => rec(1, false));
  let clock = 1_000_000;
  const keys = ['ended', 'crashed', 'live'].map(holderRecordKey);
  const r = await collectSessions(
    ks,
    keys,
    {
      dryRun: false,
      now: () => clock,
      sleep: async (ms) => {
        clock += ms;
        await ks.change(holderRecordKey('live'), (old) => encodeHolder(renewHolder(decodeHolder(old))!));
      },
    },
    LEASE_HOLDERS,
  );
  t.deepEqual(r, { deleted: 2, live: 1 });
  t.is(await ks.read(holderRecordKey('ended')), null);
  t.is(await ks.read(holderRecordKey('crashed')), null);
  t.false(decodeHolder(await ks.read(holderRecordKey('live')))!.ended);
  t.true(clock - 1_000_000 >= 3000, `the crashed mount's record went only after its stated wait (${clock - 1_000_000} ms)`);
  // gc() finds them in its survey, and fsck does not take them for anything of the tree.
  await ks.change(holderRecordKey('ended2'), () => rec(1, true));
  const c = await gc(ks, { graceMs: 0, sessionWaitMs: 0 });
  t.is(c.sessionsDeleted, 1);
  t.is(c.sessionsLive, 1);
  t.is(await ks.read(holderRecordKey('ended2')), null);
  t.true((await fsck(ks, { graceMs: 0 })).clean);
});

test('session records are not an inode group: gc keeps a live one whose id begins with d or m, and fsck stays clean', async (t) => {
  const { ks } = await sample();
  // "sessions" is 8 bytes, like an inode group; taken for an orphan, its "d…"/"m…" names looked like entries and maps.
  for (const id of ['d00dfeed', 'm0123456', 'a1b2c3d4']) await ks.change(sessionKey(id), () => encodeSession({ counter: 1, leaseMs: 1000, inFlightMs: 1000, dead: false }));
  const c = await gc(ks, { graceMs: 0, sessionWaitMs: 0 });
  t.is(c.orphanGroups, 0);
  t.is(c.sessionsLive, 3);
  for (const id of ['d00dfeed', 'm0123456', 'a1b2c3d4']) t.not(await ks.read(sessionKey(id)), null, id);
  const f = await fsck(ks);
  t.true(f.clean, JSON.stringify(f.findings));
});
