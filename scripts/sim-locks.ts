// npm run sim:locks -- [--seeds N] [--from S] [--seed S [--trace]] [--bug no-declare|no-fence]
// Runs seeded schedules of the lock protocol in the deterministic simulator
// (test/sim/locks.ts). `--seed S --trace` replays one schedule and prints what
// every mount and lock owner did, on the world's time.
import { parseArgs } from 'node:util';
import { runLockSchedule, type LockBugs } from '../test/sim/locks.js';

const { values } = parseArgs({
  options: { seeds: { type: 'string' }, from: { type: 'string' }, seed: { type: 'string' }, trace: { type: 'boolean' }, bug: { type: 'string' } },
  strict: true,
});
const bugs: LockBugs = values.bug === undefined ? {} : values.bug === 'no-declare' ? { noDeclare: true } : values.bug === 'no-fence' ? { noFence: true } : (() => {
  process.stderr.write(`sim-locks: unknown bug ${values.bug} (no-declare, no-fence)\n`);
  process.exit(2);
})();
const first = Number(values.seed ?? values.from ?? 1);
const count = values.seed !== undefined ? 1 : Number(values.seeds ?? 300);
if (!Number.isInteger(first) || !Number.isInteger(count) || count < 1) {
  process.stderr.write('sim-locks: --seed/--from/--seeds take positive integers\n');
  process.exit(2);
}
const started = performance.now();
let failed = 0;
for (let seed = first; seed < first + count; seed++) {
  const r = await runLockSchedule(seed, bugs, values.trace ? (line) => process.stdout.write(line + '\n') : undefined);
  if (!r.ok) {
    failed++;
    process.stdout.write(`seed ${seed} failed (${r.shape}):\n${r.failure}\nreplay: npm run sim:locks -- --seed ${seed} --trace${values.bug ? ` --bug ${values.bug}` : ''}\n`);
    break;
  }
  if (count === 1) process.stdout.write(JSON.stringify(r) + '\n');
}
const secs = (performance.now() - started) / 1000;
process.stdout.write(`${count} lock schedules from seed ${first}: ${failed === 0 ? 'all passed' : 'a failure'} in ${secs.toFixed(1)} s\n`);
process.exit(failed === 0 ? 0 : 1);
