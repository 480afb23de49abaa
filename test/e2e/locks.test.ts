// Locks between two mounts of one cluster (issue 12): flock(1) and flock(2)
// exclusion, fcntl range conflicts, splits and merges as another mount sees
// them, a blocked F_SETLKW woken by the release on the other mount, a signal
// ending a blocked wait, and a mount killed with SIGKILL while holding a lock
// whose lock the other mount gets within the stated bound. Each test starts
// its own nodes and mounts (fresh directories); teardown unmounts and kills
// only its own pids.
import test, { type ExecutionContext } from 'ava';
import { runCli } from '../helpers/cluster.js';
import { startCluster } from '../helpers/keyspace.js';
import { Locker } from '../helpers/locker.js';
import { mountCluster, sh, shCode, type Mount } from '../helpers/mount.js';
import { DEFAULT_LEASE, releaseBoundMs } from '../../src/meta/lock-lease.js';

/** The lease of the SIGKILL test's mounts (-o lock_lease=2): short, so that a dead mount's locks go quickly. The others keep the default (10 s): a short lease lapses on a loaded machine. */
const LEASE_MS = 2000;
/** The test cluster's requestMs is 5000: a mount's operation deadline is max(10 s, 2 x that). */
const IN_FLIGHT_MS = 10_000;

async function twoMounts(t: ExecutionContext, leaseMs?: number): Promise<{ a: Mount; b: Mount }> {
  const rc = await startCluster(t, 3);
  const f = await runCli(['format', '--config', rc.cluster.configPath]);
  if (f.code !== 0) throw new Error(`format failed: ${f.stderr}`);
  const opts = leaseMs === undefined ? [] : ['-o', `lock_lease=${leaseMs / 1000}`];
  const a = await mountCluster(t, rc, 'a', opts);
  const b = await mountCluster(t, rc, 'b', opts);
  return { a, b };
}

/** Resolves with true when `p` settles within `ms`, false otherwise (p keeps running). */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([p.then(() => true, () => true), new Promise<boolean>((res) => (timer = setTimeout(() => res(false), ms)))]);
  clearTimeout(timer);
  return r;
}

test.serial('flock(1) excludes across mounts; flock(2) shared and exclusive between mounts and descriptions', async (t) => {
  const { a, b } = await twoMounts(t);
  await sh(`echo x > ${a.dir}/f`);
  // Held for as long as the holder's sleep runs; the other mount's -n attempt fails meanwhile.
  const holder = await Locker.start(t, `${a.dir}/f`);
  t.like(await holder.send({ op: 'flock', type: 'exclusive', nb: true }), { ok: true });
  const busy = await shCode(`flock -n ${b.dir}/f true`);
  t.is(busy.code, 1, 'flock -n on the other mount fails while the lock is held');
  const sameMount = await shCode(`flock -n ${a.dir}/f true`);
  t.is(sameMount.code, 1, 'flock -n on the same mount (another process) fails too');
  t.like(await holder.send({ op: 'flock', type: 'unlock' }), { ok: true });
  t.is((await shCode(`flock -n ${b.dir}/f true`)).code, 0, 'free after the unlock');

  // Shared locks coexist; an exclusive one waits for both.
  const r1 = await Locker.start(t, `${a.dir}/f`);
  const r2 = await Locker.start(t, `${b.dir}/f`);
  t.like(await r1.send({ op: 'flock', type: 'shared', nb: true }), { ok: true });
  t.like(await r2.send({ op: 'flock', type: 'shared', nb: true }), { ok: true });
  const w = await Locker.start(t, `${b.dir}/f`);
  t.like(await w.send({ op: 'flock', type: 'exclusive', nb: true }), { ok: false, errno: 'EAGAIN' });
  // flock locks follow the open file description: a second open of the same process conflicts
  const second = await r1.send({ op: 'open' });
  t.like(await r1.send({ op: 'flock', type: 'exclusive', nb: true, fd: second.fd! }), { ok: false, errno: 'EAGAIN' });
  // closing the descriptions that hold them frees the file. The kernel sends
  // FUSE's RELEASE (which drops a description's flock locks) after close()
  // has returned, so the file is free shortly after, not at once: wait for it.
  await r1.send({ op: 'close' });
  await r2.send({ op: 'close' });
  let got = await w.send({ op: 'flock', type: 'exclusive', nb: true });
  for (let i = 0; i < 250 && !got.ok; i++) {
    await new Promise((r) => setTimeout(r, 20));
    got = await w.send({ op: 'flock', type: 'exclusive', nb: true });
  }
  t.like(got, { ok: true }, 'the exclusive lock is granted once the closed descriptions are released');
  // flock(1) mutual exclusion: two critical sections on two mounts never overlap
  const log = `${a.dir}/log`;
  await w.send({ op: 'flock', type: 'unlock' });
  const section = (m: Mount, tag: string): string =>
    `for i in 1 2 3 4 5; do flock ${m.dir}/f sh -c 'echo ${tag}-in >> ${m.dir}/log; sleep 0.05; echo ${tag}-out >> ${m.dir}/log'; done`;
  await Promise.all([sh(section(a, 'a')), sh(section(b, 'b'))]);
  const lines = (await sh(`cat ${log}`)).stdout.trim().split('\n');
  t.is(lines.length, 20);
  for (let i = 0; i < lines.length; i += 2) {
    const tag = lines[i]!.split('-')[0];
    t.deepEqual([lines[i], lines[i + 1]], [`${tag}-in`, `${tag}-out`], `sections interleaved at line ${i}: ${lines.join(' ')}`);
  }
});

test.serial('fcntl byte ranges across mounts: conflicts, F_GETLK, splits and merges', async (t) => {
  const { a, b } = await twoMounts(t);
  await sh(`echo x > ${a.dir}/f`);
  const pa = await Locker.start(t, `${a.dir}/f`);
  const pb = await Locker.start(t, `${b.dir}/f`);
  const pa2 = await Locker.start(t, `${a.dir}/f`);
  t.like(await pa.send({ op: 'setlk', type: 'write', start: 0, len: 100 }), { ok: true });
  // another mount: overlapping write and read conflict, a disjoint range does not
  t.like(await pb.send({ op: 'setlk', type: 'write', start: 50, len: 10 }), { ok: false, errno: 'EAGAIN' });
  t.like(await pb.send({ op: 'setlk', type: 'read', start: 99, len: 1 }), { ok: false, errno: 'EAGAIN' });
  t.like(await pb.send({ op: 'setlk', type: 'write', start: 100, len: 10 }), { ok: true });
  // the same mount, another process: excluded too
  t.like(await pa2.send({ op: 'setlk', type: 'read', start: 10, len: 1 }), { ok: false, errno: 'EAGAIN' });
  // F_GETLK reports the holder's range and type (and its pid on the same mount)
  const remote = await pb.send({ op: 'getlk', type: 'read', start: 10, len: 1 });
  t.like(remote, { ok: true, type: 'write', start: 0, len: 100 });
  // a holder on another mount has no pid here: the binding answers 0, and Linux then shows the asker's own pid
  t.log(`F_GETLK from the other mount shows pid ${remote.pid} (asker ${pb.pid}, holder ${pa.pid})`);
  t.not(remote.pid, pa.pid);
  t.like(await pa2.send({ op: 'getlk', type: 'read', start: 10, len: 1 }), { ok: true, type: 'write', start: 0, len: 100, pid: pa.pid });
  t.like(await pb.send({ op: 'getlk', type: 'write', start: 200, len: 0 }), { ok: true, type: 'unlock' });
  // split: unlocking the middle leaves [0,40) and [60,100)
  t.like(await pa.send({ op: 'setlk', type: 'unlock', start: 40, len: 20 }), { ok: true });
  t.like(await pb.send({ op: 'setlk', type: 'write', start: 45, len: 10 }), { ok: true });
  t.like(await pb.send({ op: 'getlk', type: 'write', start: 30, len: 20 }), { ok: true, type: 'write', start: 0, len: 40 });
  t.like(await pb.send({ op: 'getlk', type: 'write', start: 58, len: 10 }), { ok: true, type: 'write', start: 60, len: 40 });
  // downgrade the middle of [60,100) to read: the other mount may read-lock it, not write-lock it
  t.like(await pa.send({ op: 'setlk', type: 'read', start: 70, len: 10 }), { ok: true });
  t.like(await pb.send({ op: 'getlk', type: 'read', start: 70, len: 10 }), { ok: true, type: 'unlock' });
  t.like(await pb.send({ op: 'getlk', type: 'write', start: 72, len: 1 }), { ok: true, type: 'read', start: 70, len: 10 });
  // merge: writing [40,45) and [55,60) back joins [0,45) ... the owner's adjacent write ranges
  await pb.send({ op: 'setlk', type: 'unlock', start: 45, len: 10 });
  t.like(await pa.send({ op: 'setlk', type: 'write', start: 40, len: 30 }), { ok: true });
  t.like(await pb.send({ op: 'getlk', type: 'read', start: 0, len: 70 }), { ok: true, type: 'write', start: 0, len: 70 });
  // closing any descriptor of the file releases the process's locks
  const other = await pa.send({ op: 'open' });
  await pa.send({ op: 'close', fd: other.fd! });
  t.like(await pb.send({ op: 'getlk', type: 'write', start: 0, len: 0 }), { ok: true, type: 'unlock' }, "pa's locks went with its close (pb's own lock is no conflict for pb)");
  t.like(await pa2.send({ op: 'getlk', type: 'write', start: 0, len: 0 }), { ok: true, type: 'write', start: 100, len: 10 });
});

test.serial('a blocked F_SETLKW on one mount is woken by the release on the other, and a signal ends a wait', async (t) => {
  const { a, b } = await twoMounts(t);
  await sh(`echo x > ${a.dir}/f`);
  const holder = await Locker.start(t, `${a.dir}/f`);
  const waiter = await Locker.start(t, `${b.dir}/f`);
  t.like(await holder.send({ op: 'setlk', type: 'write', start: 0, len: 0 }), { ok: true });
  const waited = waiter.send({ op: 'setlkw', type: 'write', start: 10, len: 10 });
  t.false(await settlesWithin(waited, 1500), 'still waiting while the lock is held');
  const released = Date.now();
  t.like(await holder.send({ op: 'setlk', type: 'unlock', start: 0, len: 0 }), { ok: true });
  t.like(await waited, { ok: true });
  const wokeMs = Date.now() - released;
  t.log(`woken ${wokeMs} ms after the release on the other mount`);
  t.true(wokeMs < 5000);
  // now the holder waits, and SIGUSR1 (a handler that raises) interrupts its F_SETLKW: EINTR
  const blocked = holder.send({ op: 'setlkw', type: 'read', start: 15, len: 1 });
  t.false(await settlesWithin(blocked, 1000));
  holder.signal('SIGUSR1');
  t.like(await blocked, { ok: false, errno: 'EINTR' });
  // and the same for flock
  t.like(await waiter.send({ op: 'flock', type: 'exclusive', nb: true }), { ok: true });
  const fl = holder.send({ op: 'flock', type: 'shared' });
  t.false(await settlesWithin(fl, 1000));
  holder.signal('SIGUSR1');
  t.like(await fl, { ok: false, errno: 'EINTR' });
});

test.serial('a mount killed with SIGKILL while holding a lock: the other mount gets it within the stated bound', async (t) => {
  const { a, b } = await twoMounts(t, LEASE_MS);
  await sh(`echo x > ${a.dir}/f`);
  const holder = await Locker.start(t, `${b.dir}/f`);
  t.like(await holder.send({ op: 'setlk', type: 'write', start: 0, len: 0 }), { ok: true });
  t.like(await holder.send({ op: 'flock', type: 'exclusive', nb: true }), { ok: true });
  const waiter = await Locker.start(t, `${a.dir}/f`);
  t.like(await waiter.send({ op: 'setlk', type: 'write', start: 0, len: 1 }), { ok: false, errno: 'EAGAIN' });
  b.child.kill('SIGKILL');
  await b.exited;
  const killed = Date.now();
  const bound = releaseBoundMs({ leaseMs: LEASE_MS, inFlightMs: IN_FLIGHT_MS, drift: DEFAULT_LEASE.drift });
  t.like(await waiter.send({ op: 'setlkw', type: 'write', start: 0, len: 1 }), { ok: true });
  const posixMs = Date.now() - killed;
  t.like(await waiter.send({ op: 'flock', type: 'exclusive' }), { ok: true });
  const flockMs = Date.now() - killed;
  t.log(`the dead mount's locks went after ${posixMs} ms (fcntl) and ${flockMs} ms (flock); stated bound ${bound} ms`);
  t.true(posixMs <= bound, `${posixMs} ms > ${bound} ms`);
  t.true(flockMs <= bound, `${flockMs} ms > ${bound} ms`);
  // never while it is alive: before the kill, the lock was refused (above)
});

test.serial('SQLite with a writer on each mount: every increment counted, integrity_check ok', async (t) => {
  const { a, b } = await twoMounts(t);
  const N = 300;
  await sh(`sqlite3 ${a.dir}/db "PRAGMA journal_mode=TRUNCATE; CREATE TABLE c(n INTEGER NOT NULL); INSERT INTO c VALUES (0);"`);
  // journal_mode=TRUNCATE: the journal stays a file (DELETE mode needs -o entry_timeout=0 across mounts:
  // the kernel may keep the deleted journal's name for entry_timeout; docs/architecture.md, "Locks").
  // One sqlite3 process per mount keeps the database open across its transactions
  // (the hard case: its kernel's cached pages must not outlive the other mount's commits).
  const script = `${a.dir}/../txns.sql`;
  await sh(`echo "PRAGMA journal_mode=TRUNCATE;" > ${script}; for i in $(seq ${N}); do echo "BEGIN IMMEDIATE; UPDATE c SET n = n + 1; COMMIT;"; done >> ${script}`);
  const started = Date.now();
  const [ra, rb] = await Promise.all([
    shCode(`sqlite3 -bail -cmd ".timeout 120000" ${a.dir}/db < ${script}`, { timeoutMs: 280_000 }),
    shCode(`sqlite3 -bail -cmd ".timeout 120000" ${b.dir}/db < ${script}`, { timeoutMs: 280_000 }),
  ]);
  t.log(`${2 * N} transactions on two mounts in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  t.is(ra.code, 0, ra.stderr);
  t.is(rb.code, 0, rb.stderr);
  t.is((await sh(`sqlite3 ${b.dir}/db "SELECT n FROM c;"`)).stdout.trim(), String(2 * N));
  t.is((await sh(`sqlite3 ${a.dir}/db "PRAGMA integrity_check;"`)).stdout.trim(), 'ok');
  t.is((await sh(`sqlite3 ${a.dir}/db "SELECT n FROM c;"`)).stdout.trim(), String(2 * N));
});

test.serial('twenty blocked F_SETLKW on one mount: the mount keeps serving, and each gets the lock in turn', async (t) => {
  const { a, b } = await twoMounts(t);
  await sh(`echo x > ${a.dir}/f`);
  const holder = await Locker.start(t, `${a.dir}/f`);
  t.like(await holder.send({ op: 'setlk', type: 'write', start: 0, len: 0 }), { ok: true });
  const waiters = await Promise.all(Array.from({ length: 20 }, () => Locker.start(t, `${b.dir}/f`)));
  const granted = waiters.map((w) => w.send({ op: 'setlkw', type: 'write', start: 0, len: 0 }).then(async (r) => {
    // hold it briefly, then pass it on
    await w.send({ op: 'write', offset: 0, data: 'y' });
    await w.send({ op: 'setlk', type: 'unlock', start: 0, len: 0 });
    return r;
  }));
  // every waiter occupies a FUSE thread; the mount still answers other requests
  t.false(await settlesWithin(Promise.all(granted), 1000));
  t.is((await sh(`echo z > ${b.dir}/g && cat ${b.dir}/g && stat -c %s ${b.dir}/f`, { timeoutMs: 20_000 })).stdout, 'z\n2\n');
  t.like(await holder.send({ op: 'setlk', type: 'unlock', start: 0, len: 0 }), { ok: true });
  const results = await Promise.all(granted);
  t.true(results.every((r) => r.ok), JSON.stringify(results.filter((r) => !r.ok)));
});
