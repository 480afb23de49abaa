// One seeded schedule of the lock protocol (src/meta/locks.ts, lock-lease.ts)
// in the deterministic simulator: simulated nodes (test/sim/acceptor.ts), and
// 2–4 mounts, each a real LockService over its own real `Registers`, each on
// its own clock running fast or slow by up to the stated drift bound. Their
// processes (lock owners) take, hold and release fcntl ranges and flocks on one
// file, some waits cut short by "signals". A nemesis loses, duplicates and
// delays messages, crashes nodes, isolates a mount from every node for a while
// (longer than its lease, sometimes), and kills mounts for good.
//
// Checked: mutual exclusion, on the world's (real) time: an owner believes it
// holds a lock from the moment its request was granted until it asks to
// release it, and only while its mount trusts its session (from a renewal's
// success until the lapse timer fires on the mount's own clock, or the
// session is declared dead); no two owners ever believe at one instant that
// they hold conflicting locks. No orphans: once the workload is done and every
// fault has healed, within UNDO_BOUND_MS no live session holds a lock that none
// of its processes believes it holds (an interrupted request whose change may
// have landed is undone). Liveness: once every fault has healed, a mount
// gets a whole-file write lock (fcntl and flock) that dead mounts held within
// the stated bound (releaseBoundMs) plus the backoff's slack. Fencing: a
// process holding a write lock appends its grant's number to a data register
// now and then, through LockService.publishGate as the mount's publishes do;
// in the register's final log no entry of a grant may follow an entry of a
// later grant that conflicts with it (a lost lock's late write landing after
// the next holder's).
import { Registers } from '../../src/cluster/registers.js';
import { FsError } from '../../src/meta/errors.js';
import { LockService, decodeLocks, decodeSession, type LockSpec, type SessionEvent } from '../../src/meta/locks.js';
import { lockKey, mapPageKey, sessionKey } from '../../src/meta/schema.js';
import { releaseBoundMs, type LeaseParams } from '../../src/meta/lock-lease.js';
import type { Ino } from '../../src/meta/types.js';
import type { Clock } from '../../src/util/clock.js';
import { silentLogger, type Logger } from '../../src/util/log.js';
import { pino } from 'pino';
import { SimAcceptor, SimNode } from './acceptor.js';
import { World } from './world.js';

export interface LockBugs {
  /** Sessions seen unchanged are treated as dead without the compare-and-set that stops their renewals. */
  noDeclare?: boolean;
  /** Writes under a lock are published without the gate (no trust check, no deadline). */
  noFence?: boolean;
}

export interface LockScheduleResult {
  seed: number;
  ok: boolean;
  failure?: string;
  shape: string;
  steps: number;
  simulatedMs: number;
  /** Locks granted, waits interrupted, sessions declared dead or lost, mounts killed. */
  granted: number;
  interrupted: number;
  lost: number;
  killed: number;
  /** The final whole-file lock's wait after every fault healed, and the bound it was held to. */
  finalWaitMs: number;
  boundMs: number;
  /** How long the undos of interrupted requests still pending took to land after the faults healed. */
  undoMs: number;
  /** Writes under locks that landed in the data register, and those the gate refused or that failed. */
  writes: number;
  writesRefused: number;
}

const INO = 42 as Ino;
/** The register the lock holders write to (the file's first map page, which publishes change): a log of grant numbers, 4 bytes each. */
const DATA = mapPageKey(INO, 0);
/** The lease the mounts use here, on simulated time (the ratios are the production ones). */
const LEASE: LeaseParams = { leaseMs: 300, inFlightMs: 150, drift: 0.01 };
const REQUEST_MS = 150;
const POLL_MAX_MS = 40;
const SIM_LIMIT_MS = 600_000;
/**
 * After the faults heal, how long an undo still pending may take to land: it is
 * retried every pollMax at most (jittered up to 1.25×) and the first attempt on
 * a healed network answers within a round trip; a request already in flight
 * when the faults healed may still run out its deadline first. Two deadlines
 * and two pauses cover both.
 */
const UNDO_BOUND_MS = 2 * (REQUEST_MS + 1.25 * POLL_MAX_MS);

/** A clock that runs at `rate` times the world's (within the drift bound), from its own origin. */
function driftingClock(world: World, rate: number, origin: number): Clock {
  return {
    now: () => origin + world.now * rate,
    after: (ms, fn) => world.at(ms / rate, fn),
    soon: (fn) => void world.at(0, fn),
    random: () => world.rng.next(),
    randomHex: (bytes) => world.rng.hex(bytes),
  };
}

interface Belief {
  /** Its grant's number, in the order of grants on world time. */
  grant: number;
  who: string;
  session: string;
  spec: LockSpec;
  from: number;
  to: number;
}

function conflicts(a: LockSpec, b: LockSpec): boolean {
  if (a.kind !== b.kind) return false;
  if (a.type === 'read' && b.type === 'read') return false;
  return a.start < b.end && b.start < a.end;
}

/** Runs lock schedule `seed` and checks it. Deterministic. */
export async function runLockSchedule(seed: number, bugs: LockBugs = {}, trace?: (line: string) => void): Promise<LockScheduleResult> {
  const world = new World(seed);
  const rng = world.rng;
  const violations: string[] = [];
  const violation = (what: string): void => {
    if (violations.length < 5) violations.push(what);
  };

  const nodeCount = rng.chance(0.3) ? 5 : 3;
  const mountCount = rng.int(2, 4);
  const ownersPer = rng.int(1, 2);
  const cyclesPer = rng.int(4, 12);
  const lossy = rng.chance(0.6);
  world.faults = lossy ? { drop: rng.next() * 0.05, duplicate: rng.next() * 0.05, delay: rng.next() * 0.05 } : { drop: 0, duplicate: 0, delay: 0 };
  const crashy = rng.chance(0.5);
  const isolating = rng.chance(0.7);
  const killing = rng.chance(0.5);
  const shape = `${nodeCount} nodes, ${mountCount}x${ownersPer} owners, ${cyclesPer} cycles; net ${lossy ? `drop ${world.faults.drop.toFixed(3)} dup ${world.faults.duplicate.toFixed(3)} delay ${world.faults.delay.toFixed(3)}` : 'clean'}${crashy ? ', node crashes' : ''}${isolating ? ', isolations' : ''}${killing ? ', mount kills' : ''}`;

  const nodes: SimNode[] = [];
  for (let i = 1; i <= nodeCount; i++) nodes.push(new SimNode(`n${i}`, world, violation, () => nodes));

  // Trust periods per session, from the services' own events, on world time.
  const trustFrom = new Map<string, number>();
  const trust = new Map<string, Array<[number, number]>>();
  const endTrust = (session: string): void => {
    const from = trustFrom.get(session);
    if (from === undefined) return;
    trustFrom.delete(session);
    let list = trust.get(session);
    if (!list) trust.set(session, (list = []));
    list.push([from, world.now]);
  };
  let lostSessions = 0;
  const onEvent = (e: SessionEvent): void => {
    trace?.(`${world.now.toFixed(2)} ${JSON.stringify(e)}`);
    if (e.kind === 'trusted') {
      if (!trustFrom.has(e.session)) trustFrom.set(e.session, world.now);
    } else {
      if (e.kind === 'lost') lostSessions++;
      endTrust(e.session);
    }
  };

  interface SimMount {
    name: string;
    locks: LockService;
    registers: Registers;
    alive: boolean;
    /** Aborted when the mount is killed: its processes' waits end with it. */
    death: AbortController;
  }
  const mounts: SimMount[] = [];
  for (let i = 1; i <= mountCount; i++) {
    const name = `m${i}`;
    const clock = driftingClock(world, 1 + (rng.next() * 2 - 1) * LEASE.drift, rng.next() * 1e6);
    const raw = nodes.map((n) => new SimAcceptor(world, name, n, 100));
    // replaying one seed with QFS_TRACE_CALLS=1 also shows every acceptor call of the mounts
    const handles = trace && process.env['QFS_TRACE_CALLS'] ? raw.map((h) => tracedAcceptor(h, world, name, trace)) : raw;
    const registers = new Registers(() => handles, { replication: nodeCount, requestTimeoutMs: REQUEST_MS, log: silentLogger(), clock });
    const locks = new LockService(registers, {
      log: trace ? traceLogger(world, name, trace) : silentLogger(),
      clock,
      lease: LEASE,
      requestMs: REQUEST_MS,
      pollMaxMs: POLL_MAX_MS,
      ...(bugs.noDeclare ? { injectBugs: { noDeclare: true } } : {}),
    });
    locks.onEvent = onEvent;
    mounts.push({ name, locks, registers, alive: true, death: new AbortController() });
  }

  const beliefs: Belief[] = [];
  const grants: Belief[] = [];
  const open = new Map<string, Belief>();
  let writes = 0;
  let writesRefused = 0;
  /** One write under the lock of grant `b`, published as the mount publishes a file's changes. */
  const writeUnder = async (m: SimMount, b: Belief): Promise<void> => {
    try {
      const gate = bugs.noFence ? undefined : await m.locks.publishGate(INO);
      const entry = Buffer.alloc(4);
      entry.writeUInt32BE(b.grant);
      await m.registers.change(DATA, (old) => Buffer.concat([old ?? Buffer.alloc(0), entry]), { timeoutMs: REQUEST_MS, ...(gate ? { deadline: gate.deadline } : {}) });
      writes++;
      trace?.(`${world.now.toFixed(2)} ${b.who} wrote under grant ${b.grant}`);
    } catch (err) {
      writesRefused++;
      trace?.(`${world.now.toFixed(2)} ${b.who} write under grant ${b.grant} failed: ${(err as Error).message}`);
    }
  };
  let granted = 0;
  let interrupted = 0;
  let killed = 0;

  const randomSpec = (owner: string): LockSpec => {
    if (rng.chance(0.25)) return { owner: `f${owner}`, kind: 'flock', type: rng.chance(0.5) ? 'read' : 'write', start: 0, end: Infinity, pid: 1 };
    const start = rng.int(0, 3) * 10;
    return { owner: `p${owner}`, kind: 'posix', type: rng.chance(0.4) ? 'read' : 'write', start, end: rng.chance(0.2) ? Infinity : start + rng.int(1, 3) * 10, pid: 1 };
  };

  let running = 0;
  for (const m of mounts) {
    for (let o = 0; o < ownersPer; o++) {
      const who = `${m.name}.${o}`;
      running++;
      void (async () => {
        for (let c = 0; c < cyclesPer && m.alive; c++) {
          const spec = randomSpec(who);
          const ac = new AbortController();
          // now and then a signal ends the wait
          if (rng.chance(0.2)) world.at(rng.next() * 400, () => ac.abort());
          try {
            trace?.(`${world.now.toFixed(2)} ${who} asks ${JSON.stringify(spec)}`);
            await m.locks.set(INO, spec, rng.chance(0.8), AbortSignal.any([ac.signal, m.death.signal]));
            trace?.(`${world.now.toFixed(2)} ${who} granted`);
          } catch (err) {
            trace?.(`${world.now.toFixed(2)} ${who} refused: ${(err as Error).message}`);
            if (err instanceof FsError && err.errno === 'EINTR') interrupted++;
            // Any other failure: the process closes the file, which releases what the owner may hold.
            if (!(err instanceof FsError && (err.errno === 'EINTR' || err.errno === 'EAGAIN'))) {
              while (m.alive) {
                try {
                  await m.locks.releaseAll(INO, spec.owner, spec.kind);
                  break;
                } catch {
                  await pause(world, 20);
                }
              }
            }
            await pause(world, rng.next() * 30);
            continue;
          }
          if (!m.alive) break;
          granted++;
          const session = m.locks.sessionId!;
          const b: Belief = { grant: grants.length, who, session, spec, from: world.now, to: Infinity };
          grants.push(b);
          open.set(who, b);
          // mostly short; now and then held across a whole isolation (a long transaction)
          const r = rng.next();
          const hold = r < 0.7 ? rng.next() * 20 : r < 0.93 ? rng.next() * 400 : rng.next() * 2000;
          const until = world.now + hold;
          // a writer writes now and then while it holds the lock (the last one may run past the hold)
          for (let k = spec.type === 'write' ? rng.int(0, 3) : 0; k > 0 && m.alive && world.now < until; k--) {
            await pause(world, rng.next() * (until - world.now));
            if (m.alive) await writeUnder(m, b);
          }
          if (world.now < until) await pause(world, until - world.now);
          if (!m.alive) break;
          b.to = world.now;
          open.delete(who);
          beliefs.push(b);
          // released: an unlock that fails (faults) is retried, as a later close would
          while (m.alive) {
            try {
              trace?.(`${world.now.toFixed(2)} ${who} releases`);
              await m.locks.releaseAll(INO, spec.owner, spec.kind);
              trace?.(`${world.now.toFixed(2)} ${who} released`);
              break;
            } catch (err) {
              trace?.(`${world.now.toFixed(2)} ${who} release failed: ${(err as Error).message}`);
              await pause(world, 20);
            }
          }
          await pause(world, rng.next() * 30);
        }
      })().finally(() => running--);
    }
  }

  // The nemesis.
  const isolated = new Set<string>();
  const isolate = (m: SimMount): void => {
    isolated.add(m.name);
    for (const n of nodes) world.partition(m.name, n.name);
  };
  let healed = false;
  const reconnect = (m: SimMount): void => {
    if (!m.alive || healed) return;
    isolated.delete(m.name);
    for (const n of nodes) world.heal(m.name, n.name);
  };
  const nemesis = async (): Promise<void> => {
    while (running > 0 && !healed) {
      await pause(world, 5 + rng.next() * 80);
      if (running === 0 || healed) break; // the faults heal once the workload is done
      const r = rng.next();
      if (crashy && r < 0.25) {
        const down = nodes.filter((n) => !n.up).length;
        const victim = rng.pick(nodes);
        if (victim.up && down < Math.floor(nodeCount / 2)) {
          trace?.(`${world.now.toFixed(2)} crash ${victim.name}`);
          victim.crash();
        }
      } else if (crashy && r < 0.45) {
        const down = nodes.filter((n) => !n.up);
        if (down.length > 0) {
          const n = rng.pick(down);
          trace?.(`${world.now.toFixed(2)} restart ${n.name}`);
          n.restart();
        }
      } else if (isolating && r < 0.6) {
        const m = rng.pick(mounts);
        if (m.alive && !isolated.has(m.name)) {
          isolate(m);
          // sometimes for longer than its lease
          world.at(rng.chance(0.5) ? rng.next() * LEASE.leaseMs : LEASE.leaseMs + rng.next() * 4 * LEASE.leaseMs, () => reconnect(m));
        }
      } else if (killing && r < 0.64 && killed < mountCount - 1) {
        const m = rng.pick(mounts.filter((x) => x.alive));
        // killed: cut off for good, its processes stop; what it believed it held it believes until its trust ends
        m.alive = false;
        trace?.(`${world.now.toFixed(2)} killed ${m.name}`);
        m.death.abort();
        killed++;
        isolate(m);
      }
    }
  };
  void nemesis();

  if (!(await world.run(() => running === 0, SIM_LIMIT_MS))) violation(`the workload did not finish within ${SIM_LIMIT_MS} ms (running: ${running})`);

  // Beliefs still open (killed mounts) last until their trust ends.
  for (const b of open.values()) beliefs.push(b);

  // Heal every fault (killed mounts stay cut off); then one live mount takes the whole file.
  world.faults = { drop: 0, duplicate: 0, delay: 0 };
  for (const n of nodes) n.restart();
  for (const m of mounts) if (m.alive) reconnect(m);
  healed = true;
  const boundMs = releaseBoundMs(LEASE, 50) + 2 * POLL_MAX_MS;
  const survivor = mounts.find((m) => m.alive)!;
  // No orphans. Every process of a live mount has finished: it released what it
  // was granted (retrying until that landed) or closed the file after an error, so
  // none believes it holds anything; a lock of a live session still in the record
  // is one that no process knows of, and others would wait on it for as long as
  // the mount lives. Pending undos of interrupted requests must land first.
  const healedAt = world.now;
  const live = mounts.filter((m) => m.alive);
  await world.run(() => live.every((m) => m.locks.pendingUndos() === 0), world.now + 60_000);
  const undoMs = world.now - healedAt;
  if (undoMs > UNDO_BOUND_MS) violation(`undos of interrupted requests took ${undoMs.toFixed(1)} ms after the faults healed, over ${UNDO_BOUND_MS} ms`);
  let orphansRead = false;
  let reading = true;
  void (async () => {
    for (let tries = 0; tries < 20 && !orphansRead; tries++) {
      try {
        const record = decodeLocks(await survivor.registers.read(lockKey(INO), { timeoutMs: REQUEST_MS }));
        const found: string[] = [];
        for (const m of live) {
          const session = m.locks.sessionId;
          if (session === null) continue;
          // a session declared dead lost its locks (the next change drops them)
          const rec = decodeSession(await survivor.registers.read(sessionKey(session), { timeoutMs: REQUEST_MS }));
          if (rec === null || rec.dead) continue;
          const orphans = record.filter((l) => l.session === session);
          if (orphans.length > 0) found.push(`${orphans.length} lock(s) of ${m.name}'s live session ${session} that no process believes it holds, ${undoMs.toFixed(1)} ms after the faults healed: ${JSON.stringify(orphans)}`);
        }
        orphansRead = true;
        for (const f of found) violation(f);
      } catch {
        await pause(world, 20);
      }
    }
  })().finally(() => (reading = false));
  await world.run(() => !reading, world.now + 60_000);
  if (!orphansRead) violation('could not read the lock record with every fault healed');
  // Fencing: the data register's log, read with every fault healed.
  let log: number[] | null = null;
  let readingLog = true;
  void (async () => {
    for (let tries = 0; tries < 20 && log === null; tries++) {
      try {
        const v = (await survivor.registers.read(DATA, { timeoutMs: REQUEST_MS })) ?? Buffer.alloc(0);
        log = Array.from({ length: v.length / 4 }, (_, i) => v.readUInt32BE(4 * i));
      } catch {
        await pause(world, 20);
      }
    }
  })().finally(() => (readingLog = false));
  await world.run(() => !readingLog, world.now + 60_000);
  if (log === null) violation('could not read the data register with every fault healed');
  else {
    const entries: number[] = log;
    // the latest grant seen so far, per entry: an entry of an earlier conflicting grant may not follow it
    for (let j = 1; j < entries.length; j++) {
      const late = grants[entries[j]!]!;
      for (let i = 0; i < j; i++) {
        const earlier = grants[entries[i]!]!;
        if (earlier.who !== late.who && conflicts(earlier.spec, late.spec) && late.from < earlier.from) {
          violation(
            `a write under ${late.who}'s grant ${late.grant} (granted at ${late.from.toFixed(2)} ms, session ${late.session}) landed after a write under ${earlier.who}'s conflicting grant ${earlier.grant} (granted at ${earlier.from.toFixed(2)} ms, session ${earlier.session})`,
          );
          j = entries.length;
          break;
        }
      }
    }
  }
  // Processes of live mounts that could not release during the faults close their files now.
  let closing = true;
  void (async () => {
    for (const m of mounts.filter((x) => x.alive)) {
      for (let o = 0; o < ownersPer; o++) {
        for (const [owner, kind] of [[`p${m.name}.${o}`, 'posix'], [`f${m.name}.${o}`, 'flock']] as const) {
          for (let tries = 0; tries < 20; tries++) {
            try {
              await m.locks.releaseAll(INO, owner, kind);
              break;
            } catch {
              await pause(world, 20);
            }
          }
        }
      }
    }
  })().finally(() => (closing = false));
  if (!(await world.run(() => !closing, world.now + 60_000))) violation('the live mounts could not release their locks with every fault healed');
  let finalWaitMs = -1;
  trace?.(`${world.now.toFixed(2)} healed; final lock by ${survivor.name} (session ${survivor.locks.sessionId})`);
  let finishing = true;
  const final = (async () => {
    const whole: LockSpec[] = [
      { owner: 'pfinal', kind: 'posix', type: 'write', start: 0, end: Infinity, pid: 1 },
      { owner: 'ffinal', kind: 'flock', type: 'write', start: 0, end: Infinity, pid: 1 },
    ];
    // each request is held to the bound from its own start (the later of the deaths and the request)
    for (const spec of whole) {
      const asked = world.now;
      await survivor.locks.set(INO, spec, true);
      finalWaitMs = Math.max(finalWaitMs, world.now - asked);
      trace?.(`${world.now.toFixed(2)} final ${spec.kind} granted to ${survivor.name}`);
    }
    const session = survivor.locks.sessionId!;
    for (const spec of whole) beliefs.push({ grant: -1, who: `${survivor.name}.final`, session, spec, from: world.now, to: Infinity });
  })()
    .catch((err: Error) => violation(`the final lock failed with every fault healed: ${err.message}`))
    .finally(() => (finishing = false));
  // (awaited only once finished: nothing moves the world outside world.run, so an unfinished one never settles)
  if (!(await world.run(() => !finishing, world.now + 60_000))) violation('the final lock did not finish');
  else await final;
  if (finalWaitMs > boundMs) violation(`a final whole-file lock took ${finalWaitMs.toFixed(1)} ms after it was asked for, over the bound ${boundMs} ms`);
  // let trust periods of the dead run out, so that every belief is cut where it ends
  await world.run(() => false, world.now + 4 * LEASE.leaseMs);
  for (const s of [...trustFrom.keys()]) endTrust(s);

  // Mutual exclusion on world time: belief ∩ the session's trust periods.
  const pieces: Array<{ b: Belief; from: number; to: number }> = [];
  for (const b of beliefs) {
    for (const [f, t] of trust.get(b.session) ?? []) {
      const from = Math.max(f, b.from);
      const to = Math.min(t, b.to);
      if (from < to) pieces.push({ b, from, to });
    }
  }
  for (let i = 0; i < pieces.length; i++) {
    for (let j = i + 1; j < pieces.length; j++) {
      const x = pieces[i]!;
      const y = pieces[j]!;
      if (x.b.who === y.b.who || !conflicts(x.b.spec, y.b.spec)) continue;
      if (Math.max(x.from, y.from) < Math.min(x.to, y.to)) {
        violation(
          `${x.b.who} and ${y.b.who} both believed they held conflicting locks from ${Math.max(x.from, y.from).toFixed(2)} to ${Math.min(x.to, y.to).toFixed(2)} ms: ` +
            `${JSON.stringify(x.b.spec)} (session ${x.b.session}) and ${JSON.stringify(y.b.spec)} (session ${y.b.session})`,
        );
      }
    }
  }

  const base = {
    seed,
    shape,
    steps: world.steps,
    simulatedMs: Math.round(world.now),
    granted,
    interrupted,
    lost: lostSessions,
    killed,
    finalWaitMs: Math.round(finalWaitMs),
    boundMs,
    undoMs: Math.round(undoMs),
    writes,
    writesRefused,
  };
  if (violations.length > 0) return { ...base, ok: false, failure: violations.join('\n') };
  return { ...base, ok: true };
}

function tracedAcceptor(h: SimAcceptor, world: World, mount: string, trace: (line: string) => void): SimAcceptor {
  return new Proxy(h, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function' || !['prepare', 'accept', 'read'].includes(String(prop))) return v;
      return (...args: unknown[]) => {
        const t0 = world.now;
        const key = (args[0] as Buffer).toString('latin1').replace(/[^ -~]/g, '.');
        const p = (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        p.then(
          (r) => trace(`${world.now.toFixed(2)} ${mount}->${h.id} ${String(prop)} ${key} ok ${JSON.stringify(r).slice(0, 120)} (${(world.now - t0).toFixed(2)} ms)`),
          (e: Error) => trace(`${world.now.toFixed(2)} ${mount}->${h.id} ${String(prop)} ${key} failed ${e.message} (${(world.now - t0).toFixed(2)} ms)`),
        );
        return p;
      };
    },
  });
}

/** A logger for replaying one seed: every line with the world's time and the mount. */
function traceLogger(world: World, mount: string, trace: (line: string) => void): Logger {
  return pino(
    { level: 'debug', base: null, timestamp: false },
    { write: (line: string) => trace(`${world.now.toFixed(2)} ${mount} ${line.trim()}`) },
  );
}

function pause(world: World, ms: number): Promise<void> {
  return new Promise((resolve) => world.at(ms, resolve));
}
