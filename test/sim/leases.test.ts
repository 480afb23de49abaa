// Scope leases and write-behind under deterministic simulation (test/sim/leases.ts):
// seeded schedules of mounts taking turns holding one scope's lease, committing
// changes behind their callers, recalled, cut off and taken over, with nodes
// crashing and a lossy network; each checked for exclusion in time and for a
// holder's model being the truth, and reads by mounts not holding it for seeing
// only what holders committed and released. Then the simulator proves itself:
// with each of seven protocol bugs switched on, it must find a failing seed. Longer
// soaks: `npm run sim -- --leases --seeds N`.
import test from 'ava';
import { runLeaseSchedule, type LeaseBugs } from './leases.js';

const SEEDS = Number(process.env['QFS_SIM_LEASE_SEEDS'] ?? 1000);

test.serial(`${SEEDS} seeded lease schedules keep exclusion and every holder's model true`, async (t) => {
  const started = performance.now();
  const totals = { tenures: 0, cleanReleases: 0, takeovers: 0, committed: 0, settledKeys: 0, visits: 0, crashes: 0, viaHolder: 0, holdersEnded: 0 };
  let bornOk = 0;
  for (let seed = 1; seed <= SEEDS; seed++) {
    const r = await runLeaseSchedule(seed);
    if (!r.ok) {
      t.fail(`seed ${seed} (${r.shape}) failed:\n${r.failure}\nreplay: npm run sim -- --leases --seed ${seed}`);
      return;
    }
    for (const k of Object.keys(totals) as Array<keyof typeof totals>) totals[k] += r[k];
    if (r.born === 'ok') bornOk++;
  }
  const secs = (performance.now() - started) / 1000;
  t.log(`${SEEDS} schedules in ${secs.toFixed(1)} s: ${JSON.stringify(totals)}`);
  // The schedules must reach what they mean to test: clean hand-overs, takeovers of silent holders, settling, commits.
  t.true(totals.cleanReleases > SEEDS, 'leases were released cleanly');
  t.true(totals.takeovers > SEEDS / 2, 'silent holders were taken over');
  t.true(totals.settledKeys > SEEDS / 2, 'new holders settled keys an earlier term left');
  t.true(totals.committed > SEEDS * 10, 'changes were committed behind their callers');
  t.true(totals.visits > SEEDS, 'mounts not holding the lease read the scope');
  t.true(bornOk > SEEDS / 4, `scopes were born leased (${bornOk})`);
  t.true(totals.viaHolder > totals.tenures / 2, 'most leases were renewed through holder records');
  t.true(totals.holdersEnded > SEEDS / 100, `contenders ended the holder records of silent sessions (${totals.holdersEnded})`);
});

test.serial("seed 13295: a settling scan that counted a settled term's leftover tag as untagged lost a chosen value", async (t) => {
  // Term 3's write was learned on two replicas of three; a later holder's settling round (term 11)
  // re-tagged one of them and was cut off; term 13's scan met the third replica's leftover tag-3
  // copy beside the untagged one and counted both as settled; term 15's round then saw only copies
  // its filter hides, and wrote nothing over the value. Found by a soak of 15 000 seeds.
  const fixed = await runLeaseSchedule(13295);
  t.true(fixed.ok, fixed.failure);
  const buggy = await runLeaseSchedule(13295, { settledTagsAsUntagged: true });
  t.false(buggy.ok, 'the old rule still fails this seed (the test would pass without the fix otherwise)');
  t.regex(buggy.failure ?? '', /found k1 = null/);
});

test.serial('a lease seed replays exactly', async (t) => {
  const a = await runLeaseSchedule(77);
  const b = await runLeaseSchedule(77);
  t.deepEqual(a, b);
  t.true(a.steps > 100);
});

for (const [name, bugs] of [
  ['acceptors that admit writes of an old lease term (no fence)', { ignoreFence: true }],
  ['proposers that adopt values of a settled term', { ignoreSettled: true }],
  ['a takeover without waiting a lease period', { noTakeoverWait: true }],
  ['acceptors that answer another session\'s reads of a held scope', { ignoreHeldReads: true }],
  ['a born-leased scope published before its lease record is chosen', { publishBeforeBorn: true }],
  ["a holder's commit tried again that ignores its failed call's attempts", { ignoreTrail: true }],
  ['a takeover of a lease held through a holder record that does not end the record first', { noHolderEnd: true }],
] as const) {
  test.serial(`the lease simulator finds ${name}`, async (t) => {
    // The holder record's race (a renewal sent just before the takeover, chosen after the contender's last look) is narrow.
    const budget = 'noHolderEnd' in bugs ? 3000 : 1000;
    for (let seed = 1; seed <= budget; seed++) {
      const r = await runLeaseSchedule(seed, bugs as LeaseBugs);
      if (r.ok) continue;
      t.log(`found at seed ${seed}: ${r.failure!.split('\n')[0]}`);
      // The same seed without the bug passes: the failure is the bug's.
      t.true((await runLeaseSchedule(seed)).ok);
      return;
    }
    t.fail(`no failing seed among the first ${budget}`);
  });
}
