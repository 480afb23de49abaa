// LockService (src/meta/locks.ts) over the in-memory key space: two services
// are two mounts of one filesystem. Conflicts between mounts and between owners
// of one mount, a wait woken by the other mount's release, EINTR from a
// signal, an unmount handing its locks over at once, a dead mount's session
// declared after its lease on a manual clock, and malformed records refused
// with EIO without breaking anything.
import test from 'ava';
import { MemoryKeySpace } from '../../src/keyspace/memory.js';
import { FsError } from '../../src/meta/errors.js';
import { LockService, type LockSpec } from '../../src/meta/locks.js';
import { lockKey, sessionKey } from '../../src/meta/schema.js';
import type { Ino } from '../../src/meta/types.js';
import { silentLogger } from '../../src/util/log.js';
import { QfsError } from '../../src/util/errors.js';

const INO = 7 as Ino;
const write = (owner: string, start = 0, end = Infinity): LockSpec => ({ owner, kind: 'posix', type: 'write', start, end, pid: 1 });
const read = (owner: string, start = 0, end = Infinity): LockSpec => ({ owner, kind: 'posix', type: 'read', start, end, pid: 1 });

function mounts(n: number, lease = { leaseMs: 10_000, inFlightMs: 0 }): { ks: MemoryKeySpace; m: LockService[] } {
  const ks = new MemoryKeySpace();
  const m = Array.from({ length: n }, () => new LockService(ks, { log: silentLogger(), lease, pollMaxMs: 20 }));
  return { ks, m };
}

async function errnoOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return err instanceof FsError ? err.errno : `not an FsError: ${String(err)}`;
  }
}

test('two mounts and two owners of one mount exclude each other; ranges and readers share', async (t) => {
  const { m } = mounts(2);
  t.teardown(() => Promise.all(m.map((x) => x.stop())));
  const [a, b] = m as [LockService, LockService];
  await a.set(INO, write('p1', 0, 10), false);
  t.is(await errnoOf(b.set(INO, write('p9', 5, 6), false)), 'EAGAIN');
  t.is(await errnoOf(a.set(INO, read('p2', 9, 10), false)), 'EAGAIN', 'another owner of the same mount');
  t.is(await errnoOf(b.set(INO, write('p9', 10, 20), false)), 'ok', 'a range that only touches');
  t.like(await b.test(INO, read('p9', 0, 1)), { owner: 'p1', type: 'write', start: 0, end: 10 });
  t.is(await b.test(INO, read('p9', 30, 40)), null);
  await a.set(INO, { ...write('p1', 0, 10), type: 'read' }, false);
  t.is(await errnoOf(b.set(INO, read('p8', 0, 10), false)), 'ok', 'readers share');
  t.true(a.mayHold(INO, 'p1', 'posix'));
  t.false(a.mayHold(INO, 'p2', 'posix'));
});

test('a wait is woken by the release on the other mount; a signal ends it with EINTR', async (t) => {
  const { m } = mounts(2);
  t.teardown(() => Promise.all(m.map((x) => x.stop())));
  const [a, b] = m as [LockService, LockService];
  await a.set(INO, write('p1'), false);
  let granted = false;
  const waiting = b.set(INO, write('p2'), true).then(() => (granted = true));
  await new Promise((r) => setTimeout(r, 100));
  t.false(granted);
  await a.releaseAll(INO, 'p1', 'posix');
  await waiting;
  t.true(granted);
  // now a waits for b, and is interrupted
  const ac = new AbortController();
  const interrupted = errnoOf(a.set(INO, read('p1'), true, ac.signal));
  setTimeout(() => ac.abort(), 50);
  t.is(await interrupted, 'EINTR');
});

test('an unmount hands its flock over at once', async (t) => {
  const { m } = mounts(2);
  const [a, b] = m as [LockService, LockService];
  t.teardown(() => b.stop());
  await a.set(INO, { owner: 'f1', kind: 'flock', type: 'write', start: 0, end: Infinity, pid: 1 }, false);
  t.is(await errnoOf(b.set(INO, { owner: 'f2', kind: 'flock', type: 'read', start: 0, end: Infinity, pid: 1 }, false)), 'EAGAIN');
  await a.stop();
  const t0 = Date.now();
  await b.set(INO, { owner: 'f2', kind: 'flock', type: 'read', start: 0, end: Infinity, pid: 1 }, true);
  t.true(Date.now() - t0 < 2000, 'no lease wait after a clean unmount');
});

test("a mount that stops renewing loses its locks after the lease, never before", async (t) => {
  const { m } = mounts(2, { leaseMs: 300, inFlightMs: 100 });
  const [a, b] = m as [LockService, LockService];
  t.teardown(() => b.stop());
  await a.set(INO, write('p1'), false);
  // a dies: its renewals stop (no stop(): a crash)
  (a as unknown as { renewTimer: { cancel(): void } | null }).renewTimer?.cancel();
  (a as unknown as { stopped: boolean }).stopped = true;
  const t0 = Date.now();
  t.is(await errnoOf(b.set(INO, write('p2'), false)), 'EAGAIN', 'still trusted: refused');
  await b.set(INO, write('p2'), true);
  const waited = Date.now() - t0;
  t.log(`taken over after ${waited} ms (lease 300 ms, in-flight 100 ms)`);
  t.true(waited >= 400, `${waited} ms: before (lease + in-flight)·(1+ρ)/(1−ρ)`);
  t.true(waited < 5000, `${waited} ms`);
});

test('malformed lock and session records are EIO, and the service goes on', async (t) => {
  const { ks, m } = mounts(2);
  t.teardown(() => Promise.all(m.map((x) => x.stop())));
  const [a, b] = m as [LockService, LockService];
  await ks.change(lockKey(INO), () => Buffer.from('{"v":1,"l":[["s","o",0,0,9,3,1]]}'));
  t.is(await errnoOf(a.set(INO, write('p1'), false)), 'EIO');
  t.is(await errnoOf(a.set(INO, write('p1'), true)), 'EIO', 'a waiting request does not spin on a broken record');
  await ks.change(lockKey(INO), () => null);
  await a.set(INO, write('p1'), false);
  // a holder whose session record is garbage: the waiter gets EIO, not a crash
  await ks.change(sessionKey(a.sessionId!), () => Buffer.from('garbage'));
  t.is(await errnoOf(b.set(INO, write('p2'), false)), 'EIO');
});

test('a waiting request interrupted after a change whose outcome was unknown leaves no lock behind (lock simulator, seed 3108)', async (t) => {
  const ks = new MemoryKeySpace();
  // The first change of the lock record lands but its answer is lost (a timeout); later ones answer.
  let lose = false;
  const flaky = {
    read: ks.read.bind(ks),
    change: async (key: Buffer, fn: (old: Buffer | null) => Buffer | null | typeof import('../../src/keyspace/types.js').KEEP, opts?: object) => {
      const r = await ks.change(key, fn, opts);
      if (lose && key.equals(lockKey(INO))) {
        lose = false;
        throw new QfsError('timeout', 'no answer within the deadline (it landed)');
      }
      return r;
    },
  };
  const a = new LockService(flaky as never, { log: silentLogger(), lease: { leaseMs: 10_000, inFlightMs: 0 }, pollMaxMs: 20 });
  const b = new LockService(ks, { log: silentLogger(), lease: { leaseMs: 10_000, inFlightMs: 0 }, pollMaxMs: 20 });
  t.teardown(() => Promise.all([a.stop(), b.stop()]));
  await a.set(INO, read('warm', 100, 101), false); // a's session exists before the flaky change
  lose = true;
  const ac = new AbortController();
  const waiting = errnoOf(a.set(INO, write('p1', 0, 10), true, ac.signal));
  // the change landed, its answer was lost: the request waits and retries; interrupt it
  while (lose) await new Promise((r) => setTimeout(r, 1));
  ac.abort();
  const outcome = await waiting;
  // Either it saw its grant before the signal (ok: it holds the lock) or it ended without (EINTR: it must hold nothing).
  if (outcome === 'ok') {
    t.is(await errnoOf(b.set(INO, write('q1', 0, 10), false)), 'EAGAIN', 'granted: the lock is held');
  } else {
    t.is(outcome, 'EINTR');
    t.is(await errnoOf(b.set(INO, write('q1', 0, 10), false)), 'ok', 'the interrupted request left no lock behind');
  }
});
