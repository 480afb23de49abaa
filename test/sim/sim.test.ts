// The replication core under deterministic simulation (test/sim/): thousands of
// seeded schedules with crashes, lost, duplicated and reordered messages and
// partitions, each history checked for linearizability and every acceptor
// change for its invariants. Then the simulator proves itself: with each of
// five known protocol bugs switched back on, it must find a failing seed
// within a budget. Longer soaks: `npm run sim -- --seeds N`.
import test from 'ava';
import { runSchedule, type Bugs, type ScheduleResult, type ShapeOptions } from './schedule.js';

const SEEDS = Number(process.env['QFS_SIM_SEEDS'] ?? 4000);
const FIRST = Number(process.env['QFS_SIM_FROM'] ?? 1);

test.serial(`${SEEDS} seeded schedules of the replication core are linearizable and keep every acceptor invariant`, async (t) => {
  const started = performance.now();
  let ops = 0;
  let okOps = 0;
  let crashes = 0;
  let purges = 0;
  let rotted = 0;
  let healed = 0;
  for (let seed = FIRST; seed < FIRST + SEEDS; seed++) {
    const r = await runSchedule(seed);
    if (!r.ok) {
      t.fail(`seed ${seed} (${r.shape}) failed:\n${r.failure}\nreplay: npm run sim -- --seed ${seed}`);
      return;
    }
    ops += r.operations;
    okOps += r.okOperations;
    crashes += r.crashes;
    purges += r.purges;
    rotted += r.rotted;
    healed += r.healed;
  }
  const secs = (performance.now() - started) / 1000;
  t.log(`${SEEDS} schedules in ${secs.toFixed(1)} s (${(SEEDS / secs).toFixed(0)}/s): ${ops} operations (${okOps} ok), ${crashes} crashes, ${purges} tombstone copies purged, ${rotted} stored states rotted (${healed} healed by an accept above the ceiling)`);
  // The workload must reach the code it means to test, not time out everywhere.
  t.true(okOps > ops * 0.8, `${okOps} of ${ops} operations succeeded`);
  t.true(crashes > SEEDS, 'nodes crashed');
  t.true(purges > 0, 'the gc purged tombstones');
  t.true(rotted > 0 && healed > 0, 'stored states rotted and were healed');
});

test.serial('a seed replays exactly', async (t) => {
  const a = await runSchedule(1181);
  const b = await runSchedule(1181);
  t.deepEqual(a, b);
  t.true(a.steps > 100);
});

/** Runs seeds from 1 until one fails; the seed and how many it took. */
async function hunt(bugs: Bugs, shape: ShapeOptions, budget: number): Promise<{ seed: number; result: ScheduleResult } | null> {
  for (let seed = 1; seed <= budget; seed++) {
    const result = await runSchedule(seed, bugs, shape);
    if (!result.ok) return { seed, result };
  }
  return null;
}

for (const [name, bugs, shape, budget] of [
  ['the double-applied retry (a retry ignores its own attempt in the lineage)', { ignoreLineage: true }, {}, 500],
  ['the double-applied call (a change called again ignores the attempts of its failed call)', { ignoreTrail: true }, {}, 500],
  ['acceptors taking an accept below their promise', { acceptBelowPromise: true }, {}, 500],
  // every schedule purges tombstones: the bug cannot show in one that does not
  ['tombstones purged without a grace (a retry meets a purged delete)', { noTombstoneGrace: true }, { purging: true }, 3000],
  // every schedule rots stored states
  ['a rotted record treated as never written (an amnesiac acceptor)', { lostAsAbsent: true }, { rotting: true }, 3000],
] as const) {
  test.serial(`the simulator finds ${name}`, async (t) => {
    const found = await hunt(bugs, shape, budget);
    if (!found) {
      t.fail(`no failing seed among the first ${budget}`);
      return;
    }
    t.log(`found at seed ${found.seed}: ${found.result.failure!.split('\n')[0]}`);
    t.false(found.result.ok);
    // The same seed without the bug passes: the failure is the bug's.
    t.true((await runSchedule(found.seed, {}, shape)).ok);
  });
}
