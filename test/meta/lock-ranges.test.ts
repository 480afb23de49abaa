// The lock arithmetic (src/meta/lock-ranges.ts, decideLock in src/meta/locks.ts)
// against Linux itself: random sequences of non-blocking fcntl and flock
// requests of three owners run through test/helpers/lock_reference.py on a
// local file, which reports each outcome and the file's locks from /proc/locks;
// the pure functions must give the same outcome and the same locks after
// every step. Then the record codec's refusals and the lease verdicts.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rangeOf, lengthOf, type LockRequest, type RangeLock } from '../../src/meta/lock-ranges.js';
import { decideLock, decodeLocks, decodeSession, encodeLocks } from '../../src/meta/locks.js';
import { FsError } from '../../src/meta/errors.js';
import { deadAfterMs, declareDead, observe, renew, sessionVerdict, SessionLostError, type SessionRecord } from '../../src/meta/lock-lease.js';
import { Rng } from '../sim/world.js';

const REFERENCE = fileURLToPath(new URL('../../../test/helpers/lock_reference.py', import.meta.url));

interface Step {
  owner: number;
  kind: 'posix' | 'flock';
  type: 'read' | 'write' | 'unlock';
  start: number;
  len: number;
}
interface Outcome {
  ok: boolean;
  errno?: string;
  locks: Array<[number, string, string, number, number | null]>;
}

function runLinux(file: string, owners: number, steps: Step[]): Promise<Outcome[]> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', [REFERENCE], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`lock_reference.py exited ${code}: ${err}`));
      resolve(out.trim().split('\n').map((l) => JSON.parse(l) as Outcome));
    });
    child.stdin.end(JSON.stringify({ file, owners, steps }));
  });
}

function randomSteps(rng: Rng, n: number): Step[] {
  const steps: Step[] = [];
  for (let i = 0; i < n; i++) {
    const kind = rng.chance(0.15) ? 'flock' : 'posix';
    const type = rng.pick(['read', 'write', 'unlock'] as const);
    // small offsets, so that ranges touch, overlap and nest often
    steps.push({ owner: rng.int(0, 2), kind, type, start: rng.int(0, 24), len: rng.chance(0.15) ? 0 : rng.int(1, 12) });
  }
  return steps;
}

/** Our locks in /proc/locks' shape, sorted the same way. */
function shape(locks: readonly RangeLock[]): Outcome['locks'] {
  return locks
    .map((l): [number, string, string, number, number | null] => [Number(l.owner), l.kind, l.type, l.start, l.end === Infinity ? null : l.end])
    .sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0) || a[3] - b[3]);
}

test('fcntl and flock arithmetic matches Linux on 40 random sequences of 60 requests', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qfs-locks-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  let granted = 0;
  let refused = 0;
  for (let seq = 1; seq <= 40; seq++) {
    const steps = randomSteps(new Rng(seq), 60);
    const linux = await runLinux(join(dir, `f${seq}`), 3, steps);
    let locks: RangeLock[] = [];
    for (let i = 0; i < steps.length; i++) {
      const s = steps[i]!;
      const r = s.kind === 'flock' ? { start: 0, end: Infinity } : rangeOf(s.start, s.len);
      const req: LockRequest = { session: 's', owner: String(s.owner), kind: s.kind, type: s.type, start: r.start, end: r.end, pid: s.owner };
      const d = decideLock(locks, req, new Set());
      locks = d.locks;
      const ref = linux[i]!;
      const ours: Outcome = { ok: d.granted, ...(d.granted ? {} : { errno: 'EAGAIN' }), locks: shape(locks) };
      if (ref.ok) granted++;
      else refused++;
      if (JSON.stringify(ours) !== JSON.stringify({ ok: ref.ok, ...(ref.errno ? { errno: ref.errno } : {}), locks: ref.locks })) {
        t.fail(`sequence ${seq} step ${i} (${JSON.stringify(s)}):\n linux ${JSON.stringify(ref)}\n ours  ${JSON.stringify(ours)}\n steps so far ${JSON.stringify(steps.slice(0, i + 1))}`);
        return;
      }
    }
  }
  t.log(`${granted} requests granted, ${refused} refused, every outcome and lock list as Linux's`);
  t.true(granted > 500 && refused > 100);
});

test('ranges: len 0 is to the end of the file; bad ranges are refused', (t) => {
  t.deepEqual(rangeOf(5, 0), { start: 5, end: Infinity });
  t.deepEqual(rangeOf(5, 10), { start: 5, end: 15 });
  t.is(lengthOf({ start: 5, end: Infinity }), 0);
  t.deepEqual(rangeOf(2 ** 53 - 10, 2 ** 62), { start: 2 ** 53 - 10, end: Infinity });
  t.throws(() => rangeOf(-1, 1), { instanceOf: RangeError });
  t.throws(() => rangeOf(1.5, 1), { instanceOf: RangeError });
  t.throws(() => rangeOf(2 ** 60, 1), { instanceOf: RangeError });
});

test('lock records round-trip; malformed ones are a clear EIO, not a crash', (t) => {
  const locks: RangeLock[] = [
    { session: 'a', owner: 'p1', kind: 'posix', type: 'write', start: 0, end: 10, pid: 7 },
    { session: 'b', owner: 'f2', kind: 'flock', type: 'read', start: 0, end: Infinity, pid: 8 },
  ];
  t.deepEqual(decodeLocks(encodeLocks(locks)), locks);
  t.is(encodeLocks([]), null);
  t.deepEqual(decodeLocks(null), []);
  for (const bad of ['nope', '{"v":2,"l":[]}', '{"v":1,"l":[["a","b",0,0,5,3,1]]}', '{"v":1,"l":[["a","b",3,0,0,3,1]]}', '{"v":1,"l":[["a",1,0,0,0,3,1]]}', '{"v":1,"l":[["a","b",0,0,-1,3,1]]}']) {
    const err = t.throws(() => decodeLocks(Buffer.from(bad)), { instanceOf: FsError });
    t.is(err?.errno, 'EIO', bad);
  }
  t.throws(() => decodeSession(Buffer.from('{"c":1}')), { instanceOf: FsError });
  t.throws(() => decodeSession(Buffer.from('{"c":1,"l":0,"f":0,"d":false}')), { instanceOf: FsError });
});

test('lease verdicts: dead only after the counter stood still for deadAfterMs on the observer\'s clock', (t) => {
  const rec: SessionRecord = { counter: 5, leaseMs: 1000, inFlightMs: 500, dead: false };
  const after = deadAfterMs(rec, 0.01);
  t.is(after, Math.ceil((1500 * 1.01) / 0.99));
  let seen = observe(undefined, rec, 100);
  t.like(sessionVerdict(rec, seen, 100, 0.01), { kind: 'alive' });
  t.like(sessionVerdict(rec, seen, 100 + after - 1, 0.01), { kind: 'alive' });
  t.deepEqual(sessionVerdict(rec, seen, 100 + after, 0.01), { kind: 'expired', counter: 5 });
  // a renewal restarts the wait
  const renewed = renew(rec);
  t.is(renewed.counter, 6);
  seen = observe(seen, renewed, 100 + after);
  t.is(seen.since, 100 + after);
  t.like(sessionVerdict(renewed, seen, 100 + after + 10, 0.01), { kind: 'alive' });
  // the declaration is a compare-and-set on the counter seen
  t.is(declareDead(renewed, 5), renewed);
  t.true(declareDead(renewed, 6)!.dead);
  t.throws(() => renew(declareDead(renewed, 6)), { instanceOf: SessionLostError });
  t.throws(() => renew(null), { instanceOf: SessionLostError });
  t.deepEqual(sessionVerdict(null, undefined, 0, 0.01), { kind: 'dead' });
  t.throws(() => deadAfterMs(rec, 1));
});
