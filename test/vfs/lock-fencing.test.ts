// A mount cut off from the cluster while a process on it holds a lock and has
// written under it: once another mount has declared its lock session dead and
// taken the lock, what the cut-off mount wrote is never published (its fsync
// answers EIO, as an NFS client does after a lost lock), so it cannot land over
// the next holder's writes. A lapse that ends in a renewal, with no contender,
// loses nothing. Two Vfs over one in-memory key space are two mounts; the
// cut-off mount's lock service talks to the key space through a switch.
import { Buffer } from 'node:buffer';
import test from 'ava';
import { MemoryKeySpace } from '../../src/keyspace/memory.js';
import type { CallOpts, ChangeFn, RegisterSpace } from '../../src/keyspace/types.js';
import { FsError } from '../../src/meta/errors.js';
import { FsMeta } from '../../src/meta/fs-meta.js';
import { LockService } from '../../src/meta/locks.js';
import type { Ino } from '../../src/meta/types.js';
import { QfsError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/log.js';
import { O_CREAT, O_RDWR, Vfs } from '../../src/vfs/vfs.js';

/** Short, so that another mount declares a silent session dead within half a second. */
const LEASE = { leaseMs: 300, inFlightMs: 100, drift: 0.01 };
/** For the tests where nobody declares: a long in-flight bound, so that a publish waits (D + F) for a renewal far longer than any step of the test takes. */
const PATIENT = { leaseMs: 300, inFlightMs: 60_000, drift: 0.01 };
const SIZE = 4096;

async function errno(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return err instanceof FsError ? err.errno : `not an FsError: ${String(err)}`;
  }
}

/** Waits for a condition (polling), failing after a generous bound. */
async function until(what: string, cond: () => boolean | Promise<boolean>, limitMs = 20_000): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > limitMs) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function setup(lease = LEASE): Promise<{ a: Vfs; b: Vfs; cut: { on: boolean }; close: () => void }> {
  const ks = new MemoryKeySpace();
  const sb = await FsMeta.format(ks, { chunkSize: 64 * 1024, replication: 1 });
  const cut = { on: false };
  const unreachable = (): Promise<never> => Promise.reject(new QfsError('unavailable', 'cut off (test)'));
  // Only the lock service of mount a is cut off: its data path stays up, which is the
  // hardest case for fencing (nothing else stops a's publish from landing).
  const aLocks: Pick<RegisterSpace, 'read' | 'change'> = {
    read: (key: Buffer, opts?: CallOpts) => (cut.on ? unreachable() : ks.read(key, opts)),
    change: (key: Buffer, fn: ChangeFn, opts?: CallOpts) => (cut.on ? unreachable() : ks.change(key, fn, opts)),
  };
  const log = silentLogger();
  const a = new Vfs(new FsMeta(ks, sb), ks, { log, locks: new LockService(aLocks, { log, lease, pollMaxMs: 20, requestMs: 200 }), attrTtlMs: 0, entryTtlMs: 0 });
  const b = new Vfs(new FsMeta(ks, sb), ks, { log, locks: new LockService(ks, { log, lease, pollMaxMs: 20, requestMs: 200 }), attrTtlMs: 0, entryTtlMs: 0 });
  return {
    a,
    b,
    cut,
    close: () => {
      cut.on = false;
      a.close();
      b.close();
      void a.locks.stop();
      void b.locks.stop();
    },
  };
}

const whole = { start: 0, len: 0, pid: 1 };

test.serial("a cut-off mount's writes under a lock another mount took after declaring it dead are dropped, not published over the new holder's", async (t) => {
  const { a, b, cut, close } = await setup();
  t.teardown(close);
  const fa = await a.create('/db', 0o644, O_CREAT | O_RDWR);
  await a.write(fa, 0, Buffer.alloc(SIZE, 'o'));
  await a.fsync(fa);
  await a.setlk(fa, 'pa', { type: 'write', ...whole }, false);
  await a.write(fa, 0, Buffer.alloc(SIZE, 'a')); // written under the lock, not yet published

  cut.on = true;
  const fb = await b.open('/db', O_RDWR);
  await b.setlk(fb, 'pb', { type: 'write', ...whole }, true); // waits for a's session to be declared dead
  await b.write(fb, 0, Buffer.alloc(SIZE, 'b'));
  await b.fsync(fb);
  await b.setlk(fb, 'pb', { type: 'unlock', ...whole }, false);

  cut.on = false;
  t.is(await errno(a.fsync(fa)), 'EIO', "a's fsync says its writes are lost");
  t.true(a.locks.isFenced((await a.getattr('/db')).ino as Ino));
  t.is(await errno(a.write(fa, 0, Buffer.alloc(1, 'z'))), 'EIO', 'and so does every later write through a handle opened before');
  const fc = await b.open('/db', O_RDWR);
  t.deepEqual(await b.read(fc, 0, SIZE), Buffer.alloc(SIZE, 'b'), "the new holder's bytes stand");
  await b.release(fc);
  await b.release(fb);

  await a.release(fa).catch(() => {});
  t.false(a.locks.isFenced((await a.getattr('/db')).ino as Ino), 'closed everywhere on a: the file is usable again');
  const fa2 = await a.open('/db', O_RDWR);
  t.deepEqual(await a.read(fa2, 0, SIZE), Buffer.alloc(SIZE, 'b'));
  await a.write(fa2, 0, Buffer.alloc(SIZE, 'c'));
  await a.release(fa2);
  const fc2 = await b.open('/db', O_RDWR);
  t.deepEqual(await b.read(fc2, 0, SIZE), Buffer.alloc(SIZE, 'c'));
  await b.release(fc2);
});

test.serial('a lapse that ends in a renewal (no other mount wanted the lock) loses nothing: the fsync waits for the renewal and publishes', async (t) => {
  const { a, b, cut, close } = await setup(PATIENT);
  t.teardown(close);
  const fa = await a.create('/db', 0o644, O_CREAT | O_RDWR);
  await a.setlk(fa, 'pa', { type: 'write', ...whole }, false);
  await a.write(fa, 0, Buffer.alloc(SIZE, 'a'));
  cut.on = true;
  await until("a's lock session lapses", () => !a.locks.trusted());
  let synced = null as string | null;
  const sync = errno(a.fsync(fa)).then((e) => (synced = e));
  // Not published while the session is lapsed.
  const fb = await b.open('/db', O_RDWR);
  t.is((await b.getattr('/db')).size, 0, 'nothing published during the lapse');
  t.is(synced, null, 'the fsync waits');
  await b.release(fb);
  cut.on = false;
  await sync;
  t.is(synced, 'ok');
  t.true(a.locks.trusted(), 'renewed');
  const fc = await b.open('/db', O_RDWR);
  t.deepEqual(await b.read(fc, 0, SIZE), Buffer.alloc(SIZE, 'a'));
  await b.release(fc);
  await a.release(fa);
});

test.serial('a file this mount holds no lock on is published as before while the lock session is lapsed', async (t) => {
  const { a, b, cut, close } = await setup(PATIENT);
  t.teardown(close);
  const locked = await a.create('/locked', 0o644, O_CREAT | O_RDWR);
  await a.setlk(locked, 'pa', { type: 'write', ...whole }, false);
  const free = await a.create('/free', 0o644, O_CREAT | O_RDWR);
  await a.write(free, 0, Buffer.alloc(SIZE, 'f'));
  cut.on = true;
  await until("a's lock session lapses", () => !a.locks.trusted());
  t.is(await errno(a.fsync(free)), 'ok');
  const fb = await b.open('/free', O_RDWR);
  t.deepEqual(await b.read(fb, 0, SIZE), Buffer.alloc(SIZE, 'f'));
  await b.release(fb);
  cut.on = false;
  await a.release(free);
  await a.release(locked).catch(() => {});
});
