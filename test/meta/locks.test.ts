// LockService (src/meta/locks.ts) over the in-memory key space: two services
// are two mounts of one filesystem. Conflicts between mounts and between owners
// of one mount, a wait woken by the other mount's release, EINTR from a
// signal, an unmount handing its locks over at once, a dead mount's session
// declared after its lease on a manual clock, and malformed records refused
// with EIO without breaking anything.
import test from 'ava';
import { MemoryKeySpace } from '../../src/keyspace/memory.js';
import { FsError } from '../../src/meta/errors.js';
import { KEEP } from '../../src/keyspace/types.js';
import { LockService, decodeLocks, type LockSpec } from '../../src/meta/locks.js';
import { lockKey, sessionKey } from '../../src/meta/schema.js';
import type { Ino } from '../../src/meta/types.js';
import { deadAfterMs, releaseBoundMs } from '../../src/meta/lock-lease.js';
import type { Clock } from '../../src/util/clock.js';
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
    await until(() => a.pendingUndos() === 0); // the undo runs behind the EINTR
    t.is(await errnoOf(b.set(INO, write('q1', 0, 10), false)), 'ok', 'the interrupted request left no lock behind');
  }
});

/** Resolves once `cond` holds, looking after every turn of the event loop (no fixed sleeps). */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}

type ChangeFn = Parameters<MemoryKeySpace['change']>[1];

/**
 * A key space whose changes of the lock record can be made to fail: `lose`
 * applies them and loses the answer (a timeout after it landed), `down` fails
 * them without applying (no quorum). `tried` is called with the record each
 * failed change would have stored.
 */
function flakyLocks(ks: MemoryKeySpace): {
  ks: Pick<MemoryKeySpace, 'read' | 'change'>;
  mode: { v: 'up' | 'lose' | 'down' };
  failed: () => number;
  tried: { fn: ((would: ReturnType<typeof decodeLocks>) => void) | null };
} {
  const mode = { v: 'up' as 'up' | 'lose' | 'down' };
  const tried = { fn: null as ((would: ReturnType<typeof decodeLocks>) => void) | null };
  let failed = 0;
  return {
    mode,
    tried,
    failed: () => failed,
    ks: {
      read: ks.read.bind(ks),
      change: async (key: Buffer, fn: ChangeFn, opts?: object) => {
        if (mode.v === 'up' || !key.equals(lockKey(INO))) return ks.change(key, fn, opts);
        const old = await ks.read(lockKey(INO));
        const out = fn(old);
        tried.fn?.(out === KEEP ? decodeLocks(old) : decodeLocks(out));
        if (mode.v === 'lose') await ks.change(key, fn, opts);
        failed++;
        throw new QfsError('timeout', mode.v === 'lose' ? 'no answer within the deadline (it landed)' : 'no quorum within the deadline');
      },
    },
  };
}

test('the undo of an interrupted request is retried until the cluster answers again, and the owner\'s next request waits for it (lock simulator, seed 4936)', async (t) => {
  const ks = new MemoryKeySpace();
  const f = flakyLocks(ks);
  const a = new LockService(f.ks as never, { log: silentLogger(), lease: { leaseMs: 60_000, inFlightMs: 0 }, pollMaxMs: 20 });
  const b = new LockService(ks, { log: silentLogger(), lease: { leaseMs: 60_000, inFlightMs: 0 }, pollMaxMs: 20 });
  t.teardown(() => Promise.all([a.stop(), b.stop()]));
  await a.set(INO, read('warm', 100, 101), false);
  // The request's change lands but its answer is lost; then the cluster stops answering.
  f.mode.v = 'lose';
  const ac = new AbortController();
  const waiting = errnoOf(a.set(INO, write('p1', 0, 10), true, ac.signal));
  await until(() => f.failed() >= 1);
  f.mode.v = 'down';
  await until(() => f.failed() >= 2);
  ac.abort();
  t.is(await waiting, 'EINTR');
  // The undo fails too (the old code tried it once and left the lock for good); it keeps trying.
  const atAbort = f.failed();
  await until(() => f.failed() >= atAbort + 2 || a.pendingUndos() === 0);
  t.is(a.pendingUndos(), 1, 'the undo is still being tried after failing twice');
  t.is(await errnoOf(b.set(INO, write('q1', 0, 10), false)), 'EAGAIN', 'the landed grant is still in the record');
  // The same owner asks again for the same range: nothing of it may reach the record before the undo has landed,
  // or the undo would take back the new grant.
  let early = 0;
  f.tried.fn = (would) => {
    if (would.some((l) => l.owner === 'p1')) early++;
  };
  let again = false;
  const asking = a.set(INO, write('p1', 0, 10), true).then(() => (again = true));
  const before = f.failed();
  await until(() => f.failed() >= before + 2);
  t.is(early, 0, 'the new request waited for the undo');
  t.false(again);
  f.tried.fn = null;
  f.mode.v = 'up';
  await asking;
  t.is(a.pendingUndos(), 0);
  t.deepEqual(a.ownerLocks(INO, 'p1', 'posix').map((l) => [l.type, l.start, l.end]), [['write', 0, 10]], 'the new grant stands');
  t.is(await errnoOf(b.set(INO, write('q1', 0, 10), false)), 'EAGAIN', 'and excludes the other mount');
  await a.releaseAll(INO, 'p1', 'posix');
  t.is(await errnoOf(b.set(INO, write('q1', 0, 10), false)), 'ok', 'nothing is left after the release');
});

test('another owner\'s change of unknown outcome does not keep an interrupted request from being undone', async (t) => {
  const ks = new MemoryKeySpace();
  const f = flakyLocks(ks);
  const a = new LockService(f.ks as never, { log: silentLogger(), lease: { leaseMs: 60_000, inFlightMs: 0 }, pollMaxMs: 20 });
  const b = new LockService(ks, { log: silentLogger(), lease: { leaseMs: 60_000, inFlightMs: 0 }, pollMaxMs: 20 });
  t.teardown(() => Promise.all([a.stop(), b.stop()]));
  await a.set(INO, read('warm', 200, 201), false);
  // Every change lands and loses its answer: p0's request fails with the file's state unknown for p0 ...
  f.mode.v = 'lose';
  t.not(await errnoOf(a.set(INO, write('p0', 100, 110), false)), 'ok');
  // ... then p1 waits, its changes land, and a signal ends the wait. p1's own state was known when it asked.
  const ac = new AbortController();
  const waiting = errnoOf(a.set(INO, write('p1', 0, 10), true, ac.signal));
  const before = f.failed();
  await until(() => f.failed() >= before + 2);
  ac.abort();
  t.is(await waiting, 'EINTR');
  f.mode.v = 'up';
  await until(() => a.pendingUndos() === 0);
  t.is(await errnoOf(b.set(INO, write('q1', 0, 10), false)), 'ok', "p1's landed grant was undone");
  t.is(await errnoOf(b.set(INO, write('q0', 100, 110), false)), 'ok', "p0's landed grant was undone");
});

/** A clock that moves only when told: timers fire in order, each after the work they started has run. */
function manualClock(): { clock: Clock; runUntil: (cond: () => boolean, limitMs: number) => Promise<void> } {
  let now = 0;
  let ids = 0;
  const timers: Array<{ at: number; fn: () => void; cancelled: boolean }> = [];
  const clock: Clock = {
    now: () => now,
    after(ms, fn) {
      const t = { at: now + ms, fn, cancelled: false };
      timers.push(t);
      return { cancel: () => (t.cancelled = true) };
    },
    soon: (fn) => void setImmediate(fn),
    random: () => 0.5,
    randomHex: (bytes) => (++ids).toString(16).padStart(bytes * 2, '0'),
  };
  const runUntil = async (cond: () => boolean, limitMs: number): Promise<void> => {
    for (;;) {
      await new Promise((r) => setImmediate(r)); // the memory key space answers in microtasks
      if (cond()) return;
      const live = timers.filter((t) => !t.cancelled).sort((x, y) => x.at - y.at);
      const next = live[0];
      if (next === undefined || next.at > limitMs) throw new Error(`nothing left to run before ${limitMs} ms (now ${now})`);
      next.cancelled = true;
      now = Math.max(now, next.at);
      next.fn();
    }
  };
  return { clock, runUntil };
}

test("a holder that dies while watched, leaving its last renewal on a minority of replicas, is released within the bound from its death (lock simulator, seed 6363)", async (t) => {
  const ks = new MemoryKeySpace();
  const { clock, runUntil } = manualClock();
  // The holder's last renewal reached a minority only: quorum reads still agree on the
  // older record, but the next round of any proposer adopts it (CASPaxos takes the
  // highest accepted value it finds), and the counter moves by one.
  let minority: string | null = null;
  let adopted = 0;
  // (deadlines are on the manual clock, the memory key space checks them on the wall clock: dropped)
  const replicas = {
    read: (key: Buffer) => ks.read(key),
    change: async (key: Buffer, fn: ChangeFn) => {
      if (minority !== null && key.equals(sessionKey(minority))) {
        minority = null;
        adopted++;
        await ks.change(key, (old) => {
          const r = JSON.parse(old!.toString('utf8')) as { c: number };
          return Buffer.from(JSON.stringify({ ...r, c: r.c + 1 }));
        });
      }
      return ks.change(key, fn);
    },
  };
  const lease = { leaseMs: 1000, inFlightMs: 500, drift: 0.01 };
  const a = new LockService(replicas as never, { log: silentLogger(), clock, lease, pollMaxMs: 20 });
  const b = new LockService(replicas as never, { log: silentLogger(), clock, lease, pollMaxMs: 20 });
  await a.set(INO, write('p1'), false);
  let granted = -1;
  void b.set(INO, write('p2'), true).then(() => (granted = clock.now()));
  // b watches a while a lives and renews
  await runUntil(() => granted >= 0 || clock.now() >= 1500, 2000);
  t.is(granted, -1, 'not granted while the holder renews');
  // a dies, its last renewal left on a minority
  (a as unknown as { renewTimer: { cancel(): void } | null }).renewTimer?.cancel();
  (a as unknown as { stopped: boolean }).stopped = true;
  const died = clock.now();
  minority = a.sessionId;
  await runUntil(() => granted >= 0, died + 10_000);
  const waited = granted - died;
  const bound = releaseBoundMs(lease, 0) + 2 * 20;
  t.log(`released ${waited} ms after the death (bound ${bound} ms, declaration wait ${deadAfterMs(lease, lease.drift)} ms)`);
  t.is(adopted, 1, 'a look or the declaration adopted the renewal');
  t.true(waited >= deadAfterMs(lease, lease.drift), `${waited} ms: not before the declaration wait`);
  t.true(waited <= bound, `${waited} ms: over the bound ${bound} ms`);
});

test("an undo that finds nothing to unlock still writes, so the request's change left on a minority never comes back (lock simulator, seed 5457)", async (t) => {
  // The lock record as CASPaxos keeps it when a change reached one replica of three:
  // rounds whose prepare misses that replica see the old value; a round that
  // keeps the value writes nothing, so the next round that meets the replica
  // adopts the change; a round that writes (a higher ballot on a majority) ends it.
  const ks = new MemoryKeySpace();
  let minority: Buffer | null | undefined; // undefined: none
  let losing = false;
  let roundsSince = 0;
  const replicas = {
    read: ks.read.bind(ks),
    change: async (key: Buffer, fn: ChangeFn, opts?: object) => {
      if (!key.equals(lockKey(INO))) return ks.change(key, fn, opts);
      if (losing) {
        losing = false;
        const out = fn(await ks.read(key));
        minority = out === KEEP ? undefined : out;
        throw new QfsError('timeout', 'accepted by one replica of three; no answer within the deadline');
      }
      if (minority !== undefined && roundsSince++ >= 1) {
        // this round's prepare meets the replica: it adopts the change first
        const adopted = minority;
        minority = undefined;
        await ks.change(key, () => adopted);
      }
      let wrote = false;
      const r = await ks.change(key, (old) => {
        const out = fn(old);
        wrote = out !== KEEP;
        return out;
      }, opts);
      if (wrote) minority = undefined;
      return r;
    },
  };
  const a = new LockService(replicas as never, { log: silentLogger(), lease: { leaseMs: 60_000, inFlightMs: 0 }, pollMaxMs: 20 });
  const b = new LockService(ks, { log: silentLogger(), lease: { leaseMs: 60_000, inFlightMs: 0 }, pollMaxMs: 20 });
  t.teardown(() => Promise.all([a.stop(), b.stop()]));
  await a.set(INO, read('warm', 100, 101), false);
  losing = true;
  t.not(await errnoOf(a.set(INO, write('p1', 0, 10), false)), 'ok', 'the request failed with its outcome unknown');
  await until(() => a.pendingUndos() === 0);
  t.is(minority, undefined, 'the undo fenced the change off');
  // the next round on the record meets the replica that took the change
  await a.set(INO, read('other', 200, 201), false);
  t.deepEqual(a.ownerLocks(INO, 'p1', 'posix'), [], 'p1 holds nothing');
  t.is(await errnoOf(b.set(INO, write('q1', 0, 10), false)), 'ok', 'the failed request left no lock behind');
});
