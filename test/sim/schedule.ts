// One seeded schedule of the replication core: simulated nodes (acceptors),
// several proposers (mounts, each a real `Registers` on the simulated clock)
// running random reads, writes, deletes, compare-and-sets and increments on
// a few shared keys, a gc actor purging settled tombstones, and a nemesis that
// crashes and restarts nodes, cuts links and makes the network lossy. At the
// end every fault heals and each proposer reads every key; the history must be
// linearizable and no acceptor invariant may have broken on the way.
import { Registers } from '../../src/cluster/registers.js';
import { KEEP } from '../../src/keyspace/types.js';
import { ChangeTrail } from '../../src/util/envelope.js';
import { toQfsError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/log.js';
import { checkLinearizable, describeEvent, type Event, type Op } from '../helpers/linearizability.js';
import { SimAcceptor, SimNode } from './acceptor.js';
import { World } from './world.js';

export interface Bugs {
  /** A retry re-runs its change without looking for its own earlier attempt (the double-applied retry). */
  ignoreLineage?: boolean;
  /** A change its caller calls again after a failed call does not look for that call's attempts (CallOpts.trail). */
  ignoreTrail?: boolean;
  /** Acceptors take an accept below their promise. */
  acceptBelowPromise?: boolean;
  /** Tombstones are purged as soon as every replica holds them, with no grace. */
  noTombstoneGrace?: boolean;
  /** A node treats a key whose state rotted as never written, instead of by the lost-key rules. */
  lostAsAbsent?: boolean;
}

/** Parts of a schedule's shape fixed instead of drawn (the rest still comes from the seed). */
export interface ShapeOptions {
  /** Always run the gc actor that purges tombstones. */
  purging?: boolean;
  /** Always let the nemesis rot stored states (failed checksums). */
  rotting?: boolean;
}

export interface ScheduleResult {
  seed: number;
  ok: boolean;
  /** What broke: a non-linearizable key, an invariant, or a run that could not finish. */
  failure?: string;
  /** The shape the seed chose, for the report. */
  shape: string;
  steps: number;
  simulatedMs: number;
  operations: number;
  okOperations: number;
  /** What the faults and the gc did: node crashes, purged tombstone copies, messages lost and duplicated. */
  crashes: number;
  purges: number;
  /** Stored states rotted by the nemesis, and rotted copies healed by a later accept. */
  rotted: number;
  healed: number;
  lost: number;
  duplicated: number;
}

const SIM_LIMIT_MS = 600_000;
/** Each change or read call's deadline on the simulated clock. */
const DEADLINE_MS = 600;

/** Runs schedule `seed` to the end and checks it. Deterministic: the same seed gives the same result. */
export async function runSchedule(seed: number, bugs: Bugs = {}, fixed: ShapeOptions = {}): Promise<ScheduleResult> {
  const world = new World(seed);
  const rng = world.rng;
  const violations: string[] = [];
  const violation = (what: string): void => {
    if (violations.length < 5) violations.push(what);
  };

  // The shape of this schedule.
  const nodeCount = rng.chance(0.25) ? 5 : 3;
  const proposerCount = rng.int(2, 4);
  const threadsPer = rng.int(1, 2);
  const registerKeys = rng.int(1, 3);
  const counterKeys = rng.int(0, 2);
  const opsPerThread = rng.int(6, 20);
  const lossy = rng.chance(0.7);
  world.faults = lossy ? { drop: rng.next() * 0.08, duplicate: rng.next() * 0.05, delay: rng.next() * 0.1 } : { drop: 0, duplicate: 0, delay: 0 };
  const crashy = rng.chance(0.7);
  const cutty = rng.chance(0.5);
  const purging = rng.chance(0.6) || fixed.purging === true;
  const repairing = rng.chance(0.4);
  // Not drawn from the rng, so that the schedules without rot stay what they were.
  const rotting = seed % 3 === 0 || fixed.rotting === true;
  // Register ops: 30% reads, 30% writes, then compare-and-sets, and deletes (more of them when gc runs).
  const deleteAbove = purging ? 0.75 : 0.9;
  const shape = `${nodeCount} nodes, ${proposerCount}x${threadsPer} proposers, ${registerKeys}+${counterKeys} keys, ${opsPerThread} ops; net ${lossy ? `drop ${world.faults.drop.toFixed(3)} dup ${world.faults.duplicate.toFixed(3)} delay ${world.faults.delay.toFixed(3)}` : 'clean'}${crashy ? ', crashes' : ''}${cutty ? ', partitions' : ''}${purging ? ', purges' : ''}${repairing ? ', repairs' : ''}${rotting ? ', rot' : ''}`;

  const nodes: SimNode[] = [];
  for (let i = 1; i <= nodeCount; i++) nodes.push(new SimNode(`n${i}`, world, violation, () => nodes, { ...(bugs.acceptBelowPromise ? { acceptBelowPromise: true } : {}), ...(bugs.lostAsAbsent ? { lostAsAbsent: true } : {}) }));
  const callTimeoutMs = 150;
  const newProposer = (name: string): Registers => {
    const handles = nodes.map((n) => new SimAcceptor(world, name, n, callTimeoutMs));
    return new Registers(() => handles, {
      replication: nodeCount,
      requestTimeoutMs: DEADLINE_MS,
      log: silentLogger(),
      clock: world.clock,
      tombstoneGraceMs: bugs.noTombstoneGrace ? 0 : DEADLINE_MS + 100,
      ...(bugs.ignoreLineage || bugs.ignoreTrail ? { injectBugs: { ...(bugs.ignoreLineage ? { ignoreLineage: true } : {}), ...(bugs.ignoreTrail ? { ignoreTrail: true } : {}) } } : {}),
    });
  };
  const proposers = Array.from({ length: proposerCount }, (_, i) => ({ name: `p${i + 1}`, registers: newProposer(`p${i + 1}`) }));

  const keys = [
    ...Array.from({ length: registerKeys }, (_, i) => ({ name: `r${i}`, counter: false })),
    ...Array.from({ length: counterKeys }, (_, i) => ({ name: `c${i}`, counter: true })),
  ];
  const keyBytes = (name: string): Buffer => Buffer.from(`\x01g${name}`, 'latin1');

  const events: Event[] = [];
  const record = (client: string, op: Op, call: number, outcome: Event['outcome'], ret: number | null): void => {
    events.push({ id: events.length, client, op, call, ret, outcome });
  };

  let serial = 0;
  const runOp = async (client: string, registers: Registers, lastSeen: Map<string, string | null>): Promise<void> => {
    const key = rng.pick(keys);
    const k = keyBytes(key.name);
    const call = world.now;
    const roll = rng.next();
    if (key.counter) {
      if (roll < 0.3) {
        try {
          const v = await registers.read(k);
          record(client, { kind: 'read', key: key.name, value: v === null ? null : v.toString() }, call, 'ok', world.now);
        } catch {
          // An unknown read says nothing.
        }
        return;
      }
      // Every value the change function saw: a call whose outcome is unknown
      // took effect at most once, but through any one of its attempts.
      const seen = new Set<number>();
      const increment = (old: Buffer | null): Buffer => {
        const before = old === null ? 0 : Number(old.toString());
        seen.add(before);
        return Buffer.from(String(before + 1));
      };
      // A failed increment is called again, up to three calls, with one trail,
      // as the directory layer runs a fenced change again: the increment still
      // takes effect at most once over all of its calls.
      const trail = new ChangeTrail();
      try {
        let v: Buffer | null = null;
        for (let calls = 1; ; calls++) {
          try {
            v = await registers.change(k, increment, { trail });
            break;
          } catch (err) {
            if (calls >= 3) throw err;
          }
        }
        const after = Number(v!.toString());
        record(client, { kind: 'incr', key: key.name, before: after - 1, after }, call, 'ok', world.now);
      } catch {
        // One optional increment per value seen (none: it never ran, so it did nothing).
        // More than one lets the checker apply several, which is more lenient than
        // the truth, never stricter: a correct history is never rejected.
        for (const before of seen) record(client, { kind: 'incr', key: key.name, before, after: before + 1 }, call, 'unknown', null);
      }
      return;
    }
    if (roll < 0.3) {
      try {
        const v = await registers.read(k);
        const value = v === null ? null : v.toString();
        lastSeen.set(key.name, value);
        record(client, { kind: 'read', key: key.name, value }, call, 'ok', world.now);
      } catch {
        // An unknown read says nothing.
      }
    } else if (roll < 0.6 || roll >= deleteAbove) {
      const value = roll >= deleteAbove ? null : `${client}.${++serial}`;
      try {
        await registers.change(k, () => (value === null ? null : Buffer.from(value)));
        record(client, { kind: 'write', key: key.name, value }, call, 'ok', world.now);
      } catch {
        record(client, { kind: 'write', key: key.name, value }, call, 'unknown', null);
      }
    } else {
      const expect = lastSeen.get(key.name) ?? null;
      const value = `${client}.${++serial}`;
      try {
        const v = await registers.change(k, (old) => ((old === null ? null : old.toString()) === expect ? Buffer.from(value) : KEEP));
        const now = v === null ? null : v.toString();
        lastSeen.set(key.name, now);
        record(client, { kind: 'cas', key: key.name, expect, value, ok: now === value }, call, 'ok', world.now);
      } catch {
        record(client, { kind: 'cas', key: key.name, expect, value, ok: true }, call, 'unknown', null);
      }
    }
  };

  let running = 0;
  const threads: Array<Promise<void>> = [];
  for (const p of proposers) {
    for (let t = 0; t < threadsPer; t++) {
      running++;
      const lastSeen = new Map<string, string | null>();
      threads.push(
        (async () => {
          for (let i = 0; i < opsPerThread; i++) {
            await runOp(p.name, p.registers, lastSeen);
            // Mostly back to back; now and then a quiet spell, long enough for gc to purge a delete.
            const quiet = rng.next();
            await pause(world, quiet < 0.5 ? 0 : quiet < 0.93 ? rng.next() * 20 : rng.next() * 1000);
          }
        })().finally(() => running--),
      );
    }
  }

  // gc: purges a settled tombstone now and then, from its own proposer.
  if (purging) {
    const gc = newProposer('gc');
    const loop = async (): Promise<void> => {
      while (running > 0) {
        await pause(world, 5 + rng.next() * 40);
        const key = rng.pick(keys);
        await gc.purgeSettledTombstone(keyBytes(key.name)).catch(() => null);
      }
    };
    void loop();
  }

  // repair: rewrites a key's chosen value to every replica now and then (quorumfs repair),
  // and drains a proposer's hints (what a mount does every 2 s).
  if (repairing) {
    const repairer = newProposer('repair');
    const loop = async (): Promise<void> => {
      while (running > 0) {
        await pause(world, 5 + rng.next() * 60);
        await repairer.repair(keyBytes(rng.pick(keys).name)).catch(() => null);
        // and a mount's background repair of the records it could not write everywhere
        await rng.pick(proposers).registers.drainHints().catch(() => 0);
      }
    };
    void loop();
  }

  // The nemesis.
  const endpoints = [...proposers.map((p) => p.name), 'gc', 'repair'];
  const nemesis = async (): Promise<void> => {
    while (running > 0) {
      await pause(world, 2 + rng.next() * 60);
      if (running === 0) break; // the faults end with the workload: the final phase runs on a healed cluster
      if (rotting && rng.chance(0.25)) {
        // A stored state fails its checksum; at most a minority of a key's copies
        // at once, so a majority of good copies stays (more is data loss, not a bug).
        const k = keyBytes(rng.pick(keys).name).toString('latin1');
        if (nodes.filter((n) => n.holdsRotted(k)).length < Math.floor((nodeCount - 1) / 2)) rng.pick(nodes).rot(k);
        continue;
      }
      const r = rng.next();
      if (crashy && r < 0.3) {
        const victim = rng.pick(nodes);
        const down = nodes.filter((n) => !n.up).length;
        // Mostly a minority down; now and then a majority, for a while.
        if (victim.up && (down < Math.floor(nodeCount / 2) || rng.chance(0.1))) victim.crash();
      } else if (crashy && r < 0.6) {
        const down = nodes.filter((n) => !n.up);
        if (down.length > 0) rng.pick(down).restart();
      } else if (cutty && r < 0.8) {
        world.partition(rng.pick(endpoints), rng.pick(nodes).name);
      } else if (cutty) {
        world.heal();
      }
    }
  };
  void nemesis();

  const finished = await world.run(() => running === 0, SIM_LIMIT_MS);
  if (!finished) violation(`the workload did not finish within ${SIM_LIMIT_MS} ms of simulated time (running: ${running})`);

  // Heal everything, then every proposer reads every key: an acknowledged
  // change that was lost shows up here at the latest.
  world.heal();
  world.faults = { drop: 0, duplicate: 0, delay: 0 };
  for (const n of nodes) n.restart();
  // Rotted copies are healed first, as a node's self-heal pass would: a repair
  // round per key, again until no copy is left rotted (a lost copy takes only
  // an accept above its node's ceiling; the repair's retry gets there).
  if (rotting) {
    const healer = newProposer('heal');
    let healing = true;
    const healAll = (async () => {
      for (const key of keys) {
        const k = keyBytes(key.name);
        for (let attempt = 0; attempt < 20 && nodes.some((n) => n.holdsRotted(k.toString('latin1'))); attempt++) {
          await healer.repair(k).catch(() => null);
        }
        const left = nodes.filter((n) => n.holdsRotted(k.toString('latin1'))).map((n) => n.name);
        if (left.length > 0) violation(`${key.name}: rotted copies on ${left.join(', ')} not healed by 20 repair rounds with every fault healed`);
      }
    })().finally(() => (healing = false));
    if (!(await world.run(() => !healing, world.now + 60_000))) violation('healing the rotted copies did not finish');
    await healAll.catch(() => {});
  }
  let reading = true;
  const finalReads = (async () => {
    for (const p of proposers) {
      for (const key of keys) {
        const call = world.now;
        try {
          const v = await p.registers.read(keyBytes(key.name));
          record(p.name, { kind: 'read', key: key.name, value: v === null ? null : v.toString() }, call, 'ok', world.now);
        } catch (err) {
          violation(`${p.name}: final read of ${key.name} failed with every fault healed: ${toQfsError(err).message}`);
        }
      }
    }
  })().finally(() => (reading = false));
  if (!(await world.run(() => !reading, world.now + 60_000))) violation('the final reads did not finish');
  await finalReads.catch(() => {});

  const operations = events.length;
  const okOperations = events.filter((e) => e.outcome === 'ok').length;
  const base = {
    seed,
    shape,
    steps: world.steps,
    simulatedMs: Math.round(world.now),
    operations,
    okOperations,
    crashes: nodes.reduce((n, x) => n + x.stats.crashes, 0),
    purges: nodes.reduce((n, x) => n + x.stats.purges, 0),
    rotted: nodes.reduce((n, x) => n + x.stats.rotted, 0),
    healed: nodes.reduce((n, x) => n + x.stats.healed, 0),
    lost: world.net.lost,
    duplicated: world.net.duplicated,
  };
  if (violations.length > 0) return { ...base, ok: false, failure: violations.join('\n') };
  const check = checkLinearizable(events);
  if (!check.ok) {
    const lines = [`key ${check.key}: ${check.message}`];
    if (!check.inconclusive && check.minimalPrefix) lines.push(...check.minimalPrefix.map((e) => `  ${describeEvent(e)}`));
    return { ...base, ok: false, failure: lines.join('\n') };
  }
  return { ...base, ok: true };
}

function pause(world: World, ms: number): Promise<void> {
  return new Promise((resolve) => world.at(ms, resolve));
}

