// One seeded schedule of scope leases and write-behind (src/util/lease.ts,
// docs/architecture.md "Leases"): mounts take turns holding the lease of one
// scope (a directory's entries) and, while they hold it, change its keys
// without a synchronous round: each change lands in the mount's own model at
// once and is committed later, in batches, one batch after the other.
// Contenders recall the lease from its holder, or take it over once the holder
// has been silent for a lease period; every clock runs at its own rate within
// the stated drift. The nemesis crashes nodes, drops, duplicates and delays
// messages and cuts mounts off from nodes (a cut-off holder goes on sending
// until its own clock says its lease is over).
//
// What must hold:
// - Exclusion: the intervals (in real time) in which two holders trusted the
//   lease never overlap.
// - A holder's model is the truth: every committed change finds the value the
//   holder's model expected (nothing else changed the key meanwhile: no fenced
//   write of an earlier holder landed), and what a new holder reads when it
//   starts is what the previous holder committed: all of it after a clean
//   release, and after a lost lease every batch it saw committed plus, per
//   key, either nothing or everything of the one batch it had in flight.
import { Registers } from '../../src/cluster/registers.js';
import { recordKey } from '../../src/keyspace/types.js';
import { ChangeTrail } from '../../src/util/envelope.js';
import { toQfsError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/log.js';
import type { LeaseRecord } from '../../src/util/lease.js';
import { LeaseHolder, LeaseLostError, ScopeLease, readLease as readLeaseRecord, type ScopeLeaseConfig } from '../../src/cluster/scope-lease.js';
import type { Clock } from '../../src/util/clock.js';
import { SimAcceptor, SimNode } from './acceptor.js';
import { World } from './world.js';

export interface LeaseBugs {
  /** Acceptors answer another session's reads of a held scope. */
  ignoreHeldReads?: boolean;
  /** Acceptors admit scope writes of any term. */
  ignoreFence?: boolean;
  /** Proposers adopt values tagged with settled terms. */
  ignoreSettled?: boolean;
  /** A contender takes a held lease over as soon as it sees it, without waiting a lease period. */
  noTakeoverWait?: boolean;
  /** A scope born leased is published (other mounts reach it) before its lease record is chosen. */
  publishBeforeBorn?: boolean;
  /** A holder's failed commit, tried again, does not look for the failed call's attempts (CallOpts.trail). */
  ignoreTrail?: boolean;
  /** A contender takes over a lease held through a holder record after watching that record unchanged, without ending it first. */
  noHolderEnd?: boolean;
  /** A settling scan counts a copy tagged with an already settled term as untagged (Registers.unsettledKeys). */
  settledTagsAsUntagged?: boolean;
}

export interface LeaseScheduleResult {
  seed: number;
  ok: boolean;
  failure?: string;
  shape: string;
  steps: number;
  simulatedMs: number;
  /** Tenures (a lease held by one session) and how they ended. */
  tenures: number;
  cleanReleases: number;
  takeovers: number;
  /** Writes committed under a lease, and batches. */
  committed: number;
  batches: number;
  /** Keys a new holder had to settle. */
  settledKeys: number;
  /** Reads by mounts not holding the lease that went through (after recalls). */
  visits: number;
  /** Changes by mounts not holding the lease, at its free term, that returned. */
  freeWrites: number;
  /** The scope was born leased (its first holder made it, ScopeLease.born), and whether the record landed. */
  born: 'no' | 'ok' | 'failed';
  /** Tenures held through a holder record (one renewal for every lease of a session), and holder records ended by contenders. */
  viaHolder: number;
  holdersEnded: number;
  crashes: number;
}

const SIM_LIMIT_MS = 600_000;
const DEADLINE_MS = 600;
/** The lease period and the drift every clock stays within. */
const PERIOD_MS = 200;
const DRIFT = 0.05;

type Model = Map<string, string | null>;

interface Tenure {
  term: number;
  session: string;
  mount: string;
  /** What the holder read when it started. */
  start: Model;
  /** Per committed batch, the values it wrote. */
  committed: Model[];
  /** The batch in flight when the tenure ended, if any. */
  inFlight: Model | null;
  ended: 'clean' | 'lost' | null;
  /** It read the scope and checked it (a tenure can be lost while it settles). */
  started: boolean;
  /** Real time the holder began and stopped trusting the lease (trustTo: filled in at the end, from trustEnd). */
  trustFrom: number;
  trustTo: number;
  trustEnd: () => number;
}

interface FreeWrite {
  k: string;
  v: string;
  /** The lease's free term it was made under. */
  term: number;
  start: number;
  /** When it returned (Infinity: it failed, and may have landed or not). */
  end: number;
  ok: boolean;
}

/**
 * Tenures newest first: by term, then by when they began. Two tenures share a
 * term only when a born lease's record failed to land (its session stopped
 * trusting it before the scope was published) and the next holder took the
 * lease free at that same term: the born one came first.
 */
const newerFirst = (a: Tenure, b: Tenure): number => b.term - a.term || b.trustFrom - a.trustFrom;

const GROUP = Buffer.from('d');
const LEASE_KEY = recordKey(GROUP, Buffer.from('@lease'));
const scopeKey = (name: string): Buffer => recordKey(GROUP, Buffer.from(name));
const SCOPE_START = scopeKey('k');
const SCOPE_END = scopeKey('l');
/** Holder records live apart from the scope (in a mount, in the holder's own group). */
const holderKey = (session: string): Buffer => recordKey(Buffer.from('h'), Buffer.from(session));

/** A change function found a value other than the holder's model: thrown so that a speculative attempt (on a cached value) falls back to a full round, and reported only if the real round finds it too. */
class NotTheModel extends Error {}

export async function runLeaseSchedule(seed: number, bugs: LeaseBugs = {}): Promise<LeaseScheduleResult> {
  const world = new World(seed);
  const rng = world.rng;
  const violations: string[] = [];
  const violation = (what: string): void => {
    if (violations.length < 5) violations.push(`${what} (at ${world.now.toFixed(2)} ms)`);
  };

  const nodeCount = rng.chance(0.25) ? 5 : 3;
  const mountCount = rng.int(2, 3);
  const keyNames = Array.from({ length: rng.int(2, 5) }, (_, i) => `k${i}`);
  const tenuresPerMount = rng.int(2, 5);
  const lossy = rng.chance(0.7);
  world.faults = lossy ? { drop: rng.next() * 0.06, duplicate: rng.next() * 0.05, delay: rng.next() * 0.1 } : { drop: 0, duplicate: 0, delay: 0 };
  const crashy = rng.chance(0.6);
  const cutty = rng.chance(0.6);
  const stally = rng.chance(0.5);
  // Half the schedules model a directory made by m1: born with its lease held, reached by the others only once published.
  const bornScope = rng.chance(0.5) || bugs.publishBeforeBorn === true;
  const shape = `${nodeCount} nodes, ${mountCount} mounts x ${tenuresPerMount} tenures, ${keyNames.length} keys; net ${lossy ? `drop ${world.faults.drop.toFixed(3)} dup ${world.faults.duplicate.toFixed(3)} delay ${world.faults.delay.toFixed(3)}` : 'clean'}${crashy ? ', crashes' : ''}${cutty ? ', cut-offs' : ''}${stally ? ', pauses' : ''}${bornScope ? ', born leased' : ''}`;

  const nodes: SimNode[] = [];
  const nodeBugs = { ...(bugs.ignoreFence ? { ignoreFence: true } : {}), ...(bugs.ignoreHeldReads ? { ignoreHeldReads: true } : {}) };
  for (let i = 1; i <= nodeCount; i++) nodes.push(new SimNode(`n${i}`, world, violation, () => nodes, nodeBugs));
  const newRegisters = (name: string): Registers => {
    const handles = nodes.map((n) => new SimAcceptor(world, name, n, 150));
    return new Registers(() => handles, {
      replication: nodeCount,
      requestTimeoutMs: DEADLINE_MS,
      log: silentLogger(),
      clock: world.clock,
      ...(bugs.ignoreSettled || bugs.ignoreTrail || bugs.settledTagsAsUntagged
        ? { injectBugs: { ...(bugs.ignoreSettled ? { ignoreSettled: true } : {}), ...(bugs.ignoreTrail ? { ignoreTrail: true } : {}), ...(bugs.settledTagsAsUntagged ? { settledTagsAsUntagged: true } : {}) } }
        : {}),
    });
  };

  const tenures: Tenure[] = [];
  /** Writes by mounts not holding the lease, at its free term (a create in a directory nobody holds). */
  const freeWrites: FreeWrite[] = [];
  const stats = { cleanReleases: 0, takeovers: 0, committed: 0, batches: 0, settledKeys: 0, visits: 0, freeWrites: 0, born: 'no' as 'no' | 'ok' | 'failed', viaHolder: 0, holdersEnded: 0 };
  /**
   * A born scope is published (its name committed, in a mount) only once its
   * lease record is chosen; nobody else touches it before. When that write
   * fails, the scope is never published (a mount gives the directory up and
   * its name is never committed), and only the auditor comes: the record may
   * be absent, or held by a session that stopped trusting it (a minority took
   * it and a later round adopted it), and the scope must read empty.
   */
  let publish!: (ok: boolean) => void;
  const published: Promise<boolean> = bornScope ? new Promise<boolean>((resolve) => (publish = resolve)) : Promise.resolve(true);
  /** Sessions that were asked to give the lease back. */
  const recalled = new Set<string>();
  const pause = (ms: number): Promise<void> => new Promise((resolve) => world.at(ms, resolve));
  const str = (b: Buffer | null): string | null => (b === null ? null : b.toString());

  /** What a new holder must find after `prev`: per key, the values it may legally hold. */
  const allowed = (prev: Tenure): Map<string, Set<string | null>> => {
    const out = new Map<string, Set<string | null>>();
    for (const k of keyNames) {
      let v = prev.start.get(k) ?? null;
      for (const b of prev.committed) if (b.has(k)) v = b.get(k)!;
      const set = new Set<string | null>([v]);
      if (prev.ended !== 'clean' && prev.inFlight?.has(k)) set.add(prev.inFlight.get(k)!);
      out.set(k, set);
    }
    return out;
  };

  /**
   * What a holder of `term` may find in key k after the tenure `prev` (the one
   * before it; none: nothing before): prev's values, unless free writes came
   * between them (terms above prev's, below this one). A free write that
   * returned may be the last one unless another that returned began after it
   * ended; one that failed may have landed or not, so it always may be.
   */
  const allowedAfter = (prev: Tenure | undefined, term: number, k: string): Set<string | null> => {
    const between = freeWrites.filter((w) => w.k === k && w.term < term && (!prev || w.term > prev.term));
    const done = between.filter((w) => w.ok);
    const out = new Set<string | null>();
    if (done.length === 0) for (const v of prev ? allowed(prev).get(k)! : [null]) out.add(v);
    for (const w of done) if (!done.some((y) => y.start > w.end)) out.add(w.v);
    for (const w of between) if (!w.ok) out.add(w.v);
    return out;
  };

  let running = 0;
  const mount = async (name: string, rate: number, rounds: number, audit: boolean, viaHolder: boolean): Promise<void> => {
    const registers = newRegisters(name);
    const local = (): number => world.now * rate;
    const realOf = (localMs: number): number => localMs / rate;
    let sessions = 0;

    const readLease = (): Promise<LeaseRecord> => readLeaseRecord(registers, LEASE_KEY);
    const recall = (holder: string): void => {
      const relay = rng.pick(nodes).name;
      world.send(name, relay, () => world.send(relay, holder.split('#')[0]!, () => recalled.add(holder)));
    };
    // This mount's own clock, running at its own rate: the lease's trust and waits are measured on it.
    const localClock: Clock = {
      now: local,
      after: (ms, fn) => world.at(ms / rate, fn),
      soon: (fn) => void world.at(0, fn),
      random: () => rng.next(),
      randomHex: (bytes) => rng.hex(bytes),
    };
    const leaseConfig: ScopeLeaseConfig = {
      registers,
      lease: LEASE_KEY,
      group: GROUP_PREFIX,
      start: SCOPE_START,
      end: SCOPE_END,
      periodMs: PERIOD_MS,
      drift: DRIFT,
      clock: localClock,
      recall,
      holderKey,
      ...(bugs.noTakeoverWait || bugs.noHolderEnd ? { injectBugs: { ...(bugs.noTakeoverWait ? { noTakeoverWait: true } : {}), ...(bugs.noHolderEnd ? { noHolderEnd: true } : {}) } } : {}),
    };
    /**
     * A mount renewing every lease it holds through one holder record (as real
     * mounts do) keeps one session across tenures until a contender ends that
     * record; then it starts another.
     */
    let holder: LeaseHolder | null = null;
    const holderFor = (): LeaseHolder => {
      if (!holder || holder.ended) {
        if (holder) stats.holdersEnded++;
        const id = `${name}#${++sessions}`;
        holder = new LeaseHolder({ registers, key: holderKey(id), periodMs: PERIOD_MS, drift: DRIFT, clock: localClock }, id);
      }
      return holder;
    };

    /**
     * A visit: this mount reads a scope key without holding the lease (a
     * lookup in another mount's directory). Refused while the scope is held:
     * it recalls the lease and tries again. What it reads must be everything
     * the holders before it committed (see allowed()).
     */
    let visits = 0;
    const visit = async (): Promise<void> => {
      const session = `${name}~${++visits}`;
      for (let attempt = 0; attempt < 40; attempt++) {
        let cur: LeaseRecord;
        try {
          cur = await readLease();
        } catch {
          await pause(5 + rng.next() * 20);
          continue;
        }
        if (cur.holder !== null) {
          recall(cur.holder);
          await pause(5 + rng.next() * 20);
          continue;
        }
        const k = rng.pick(keyNames);
        const started = world.now;
        if (rng.chance(0.4)) {
          // A change without the lease, at its free term: fenced once a holder's term is chosen.
          const w: FreeWrite = { k, v: `${session}.w`, term: cur.term, start: started, end: Infinity, ok: false };
          freeWrites.push(w);
          try {
            await registers.change(scopeKey(k), () => Buffer.from(w.v), { scope: { lease: LEASE_KEY, term: cur.term, session } });
            w.ok = true;
            w.end = world.now;
            stats.freeWrites++;
            return;
          } catch {
            await pause(5 + rng.next() * 20);
            continue;
          }
        }
        let v: string | null;
        try {
          v = str(await registers.read(scopeKey(k), { scope: { lease: LEASE_KEY, term: cur.term, session } }));
        } catch {
          await pause(5 + rng.next() * 20);
          continue;
        }
        stats.visits++;
        // The read takes effect at one instant of its call, while the scope is free
        // there: after the holder before its start, or after one that began and
        // ended during it (not while one holds it: that is the point).
        const before = tenures.filter((t) => t.started && t.trustFrom <= started).sort(newerFirst);
        let prev = before[0];
        // Still holding at the end of the read, with nobody after it: the read took effect before it began.
        if (prev && prev.ended === null && !tenures.some((t) => t.term > prev!.term && t.trustFrom <= world.now)) prev = before[1];
        const during = tenures.filter((t) => t.started && t.trustFrom > started && t.ended !== null);
        const ok = new Set<string | null>(prev ? allowed(prev).get(k)! : [null]);
        for (const t of during) for (const x of allowed(t).get(k)!) ok.add(x);
        // Free writes since that holder (their order against this read is not known here).
        for (const w of freeWrites) if (w.k === k && (!prev || w.term > prev.term) && w.start <= world.now) ok.add(w.v);
        if (!ok.has(v)) violation(`${session} read ${k} = ${JSON.stringify(v)} (${started.toFixed(2)}..${world.now.toFixed(2)} ms); after ${prev ? `${prev.session} (term ${prev.term}, ${prev.ended ?? 'still running'})` : 'no holder'}${during.length ? ` or ${during.map((t) => t.session).join(', ')}` : ''} it may only be one of ${JSON.stringify([...ok])}`);
        return;
      }
    };

    // Visits go on beside this mount's own tenures (a lookup from another process on the mount).
    let visiting = !audit && rng.chance(0.7);
    const visitor = (async () => {
      if (!(bugs.publishBeforeBorn === true) && !(await published)) return;
      while (visiting) {
        await pause(10 + rng.next() * 150);
        if (visiting) await visit();
      }
    })();

    const bornHere = bornScope && name === 'm1';
    if (!bornHere && !bugs.publishBeforeBorn && !audit && !(await published)) rounds = 0;
    for (let round = 0; round < rounds; round++) {
      const birth = bornHere && round === 0;
      if (bornHere && round === 1 && !(await published)) break;
      if (!birth) await pause(rng.next() * 100);
      const via = viaHolder ? holderFor() : null;
      const session = via ? via.session : `${name}#${++sessions}`;
      const config: ScopeLeaseConfig = via ? { ...leaseConfig, holder: via } : leaseConfig;
      recalled.delete(session);
      let lease: ScopeLease | null;
      let ready: Promise<void> | null = null;
      if (birth) {
        // The scope is new and reached by nobody else yet: its lease is born held, with nothing to settle or read.
        ({ lease, ready } = ScopeLease.born(config, session));
        void ready.then(
          () => {
            stats.born = 'ok';
            publish(true);
          },
          () => {
            stats.born = 'failed';
            publish(false);
          },
        );
        if (bugs.publishBeforeBorn) publish(true);
      } else lease = await ScopeLease.acquire(config, session, 5000 * rate);
      if (!lease) continue;
      if (lease.tookOver) stats.takeovers++;
      if (via) stats.viaHolder++;
      const { term, scope } = lease;
      const trusted = (): boolean => lease.trusted();
      const tenure: Tenure = { term, session, mount: name, start: new Map(), committed: [], inFlight: null, ended: null, started: false, trustFrom: world.now, trustTo: Infinity, trustEnd: () => realOf(lease.trustEnd) };
      tenures.push(tenure);

      const model: Model = new Map();
      try {
        if (birth) {
          // Known empty: the first holder reads nothing (its commits check that nothing was there).
          for (const k of keyNames) model.set(k, null);
        } else {
        // Settle what earlier terms may have left, then read the scope.
        stats.settledKeys += await lease.settle();
        for (const k of keyNames) model.set(k, str(await registers.read(scopeKey(k), { scope })));
        if (process.env['QFS_SIM_TRACE_KEY']) process.stdout.write(`${world.now.toFixed(2)} ${session} term ${term} read ${JSON.stringify([...model])}\n`);
        lease.check();
        tenure.start = new Map(model);
        // The previous holder's work must be exactly what this one finds.
        const prev = tenures.filter((t) => t.started && t.term < term).sort(newerFirst)[0];
        for (const k of keyNames) {
          const ok = allowedAfter(prev, term, k);
          if (!ok.has(model.get(k) ?? null)) {
            violation(`${session} (term ${term}) found ${k} = ${JSON.stringify(model.get(k))}; after ${prev ? `${prev.session} (term ${prev.term}, ${prev.ended ?? 'still running'})` : 'no holder'} and the free writes since, it may only be one of ${JSON.stringify([...ok])}`);
          }
        }
        }
        tenure.started = true;

        // Write-behind: changes land in the model at once; a flusher commits them a batch at a time.
        const queue: Array<{ key: string; value: string | null }> = [];
        let appDone = false;
        const flusher = (async () => {
          const committedState: Model = new Map(model);
          // A born lease: nothing is sent under it before its record is chosen.
          if (ready) await ready.catch(() => lease.check());
          for (;;) {
            if (queue.length === 0) {
              if (appDone) return;
              await pause(0.5 + rng.next() * 3);
              continue;
            }
            lease.check();
            const batch: Model = new Map();
            for (const op of queue.splice(0)) batch.set(op.key, op.value);
            tenure.inFlight = batch;
            const results = await Promise.allSettled(
              [...batch].map(async ([k, v]) => {
                const expected = committedState.get(k) ?? null;
                // A failed commit is tried again while the lease is trusted, as the directory
                // layer does (DirScopes.retryLagging, commitQueued): its calls share one trail.
                const trail = new ChangeTrail();
                for (let calls = 1; ; calls++) {
                  try {
                    return await registers.change(
                      scopeKey(k),
                      (old) => {
                        if (str(old) !== expected) throw new NotTheModel(`${session} (term ${term}) committing ${k} = ${JSON.stringify(v)} found ${JSON.stringify(str(old))}, its model says ${JSON.stringify(expected)}`);
                        return v === null ? null : Buffer.from(v);
                      },
                      { scope, trail },
                    );
                  } catch (err) {
                    if (err instanceof NotTheModel || calls >= 3 || !trusted()) throw err;
                    await pause(1 + rng.next() * 10);
                  }
                }
              }),
            );
            for (const r of results) if (r.status === 'rejected' && r.reason instanceof NotTheModel) violation(r.reason.message);
            if (results.some((r) => r.status === 'rejected')) throw new LeaseLostError('a batch failed');
            for (const [k, v] of batch) committedState.set(k, v);
            tenure.committed.push(batch);
            tenure.inFlight = null;
            stats.batches++;
            stats.committed += batch.size;
          }
        })();
        flusher.catch(() => {});

        if (!audit) {
          const ops = rng.int(3, 25);
          for (let i = 0; i < ops && trusted() && !recalled.has(session); i++) {
            const k = rng.pick(keyNames);
            const v = rng.chance(0.2) ? null : `${session}.${i}`;
            model.set(k, v);
            queue.push({ key: k, value: v });
            await pause(rng.next() * 6);
          }
        }
        appDone = true;
        await flusher;
        lease.check();
        const clean = await lease.release((c) => (tenure.ended = c ? 'clean' : 'lost'));
        if (clean) stats.cleanReleases++;
      } catch (err) {
        if (!(err instanceof LeaseLostError) && toQfsError(err).code === 'internal') violation(`${session}: ${String(err)}`);
        // Lost (or unsure): stop trusting; what was not committed is lost, as in a crash.
        lease.lose();
        tenure.ended = 'lost';
        await lease.release();
      }
    }
    visiting = false;
    await visitor;
    // Unmount: the session ends (its record says so), after every lease it held was given back.
    if (holder) await (holder as LeaseHolder).end();
  };

  const rates = Array.from({ length: mountCount }, () => 1 - DRIFT + rng.next() * 2 * DRIFT);
  // Most mounts renew their leases through a holder record, as real mounts do; some renew each lease itself.
  const viaHolder = rates.map(() => rng.chance(0.75) || bugs.noHolderEnd === true);
  const loops = rates.map((rate, i) => {
    running++;
    return mount(`m${i + 1}`, rate, tenuresPerMount, false, viaHolder[i]!).finally(() => running--);
  });

  const nemesis = async (): Promise<void> => {
    while (running > 0) {
      await pause(2 + rng.next() * 80);
      const r = rng.next();
      if (crashy && r < 0.25) {
        const victim = rng.pick(nodes);
        if (victim.up && nodes.filter((n) => !n.up).length < Math.floor(nodeCount / 2)) victim.crash();
      } else if (crashy && r < 0.5) {
        const down = nodes.filter((n) => !n.up);
        if (down.length > 0) rng.pick(down).restart();
      } else if (stally && r < 0.6) {
        // A mount's process pauses (GC, a stalled VM): its clock runs on, its sends wait and leave late.
        world.stall(`m${rng.int(1, mountCount)}`, world.now + 50 + rng.next() * 500);
      } else if (cutty && r < 0.7) {
        // A mount cut off from every node (its lease runs out while it still sends), or one link.
        const m = `m${rng.int(1, mountCount)}`;
        if (rng.chance(0.5)) for (const n of nodes) world.partition(m, n.name);
        else world.partition(m, rng.pick(nodes).name);
      } else if (cutty) {
        world.heal();
      }
    }
  };
  void nemesis();

  const finished = await world.run(() => running === 0, SIM_LIMIT_MS);
  if (!finished) violation(`the mounts did not finish within ${SIM_LIMIT_MS} ms of simulated time`);
  await Promise.allSettled(loops);

  // Heal everything; an auditor takes the lease and checks what the last holder left.
  world.heal();
  world.faults = { drop: 0, duplicate: 0, delay: 0 };
  for (const n of nodes) n.restart();
  const before = tenures.length;
  let auditing = true;
  void mount('audit', 1, 1, true, rng.chance(0.5)).finally(() => (auditing = false));
  if (!(await world.run(() => !auditing, world.now + 60_000))) violation('the audit did not finish');
  if (tenures.length === before) violation('the auditor could not take the lease with every fault healed');
  // Exclusion: in term order, each holder stopped trusting before the next began.
  for (const t of tenures) t.trustTo = t.trustEnd();
  const byTerm = [...tenures].sort((a, b) => newerFirst(b, a));
  for (let i = 1; i < byTerm.length; i++) {
    const [a, b] = [byTerm[i - 1]!, byTerm[i]!];
    if (a.trustTo > b.trustFrom) violation(`${b.session} (term ${b.term}) trusted the lease from ${b.trustFrom.toFixed(2)} ms while ${a.session} (term ${a.term}) trusted it until ${a.trustTo.toFixed(2)} ms`);
  }

  const base = {
    seed,
    shape,
    steps: world.steps,
    simulatedMs: Math.round(world.now),
    tenures: tenures.length,
    ...stats,
    crashes: nodes.reduce((n, x) => n + x.stats.crashes, 0),
  };
  if (violations.length > 0 && process.env['QFS_SIM_TRACE']) {
    for (const t of byTerm) violations.push(`  term ${t.term} ${t.session} ${t.ended} started=${t.started} trust ${t.trustFrom.toFixed(1)}..${t.trustTo.toFixed(1)} start=${JSON.stringify([...t.start])} committed=${JSON.stringify(t.committed.map((b) => [...b]))} inFlight=${JSON.stringify(t.inFlight ? [...t.inFlight] : null)}`);
  }
  return violations.length > 0 ? { ...base, ok: false, failure: violations.join('\n') } : { ...base, ok: true };
}

const GROUP_PREFIX = Buffer.concat([Buffer.from([GROUP.length]), GROUP]);
