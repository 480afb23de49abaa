// The scenario table on the vfs over the in-memory key space, each scenario on
// a fresh filesystem in a fresh directory, twice:
//   memory           attribute and name caches on (1 s), as in a mount
//   memory-uncached  no caches: every answer comes from the records, as
//                    another mount (or this one, a second later) sees them
// Scenarios marked `known` for a runner show a vfs/meta bug: they run as ava
// test.failing with the reason in the title, and turn red once the bug is
// fixed (then drop the mark).
import test, { type ExecutionContext } from 'ava';
import { memoryVfs } from '../helpers/memfs.js';
import { checkScenario, knownFor, runnable, scenarioTitle, trace, type Runner, type Scenario } from '../helpers/posix-steps.js';
import { runScenarioOnVfs } from '../helpers/posix-vfs.js';
import { SCENARIOS } from './scenarios.js';

const VARIANTS: Array<{ runner: Runner; attrTtlMs: number }> = [
  { runner: 'memory', attrTtlMs: 1000 },
  { runner: 'memory-uncached', attrTtlMs: 0 },
];

async function run(t: ExecutionContext, s: Scenario, runner: Runner, attrTtlMs: number): Promise<void> {
  const { vfs } = await memoryVfs({ attrTtlMs });
  const r = await runScenarioOnVfs(vfs, '/s', runnable(s));
  const mismatches = checkScenario(s, r);
  if (mismatches.length === 0) {
    t.pass();
    return;
  }
  t.log(`trace:\n${trace(s, r)}`);
  if (knownFor(s, runner) !== undefined) t.log(`differs from Linux:\n${mismatches.join('\n')}`); // shown for expected failures too
  t.fail(`${scenarioTitle(s)} (${runner}):\n${mismatches.join('\n')}`);
}

for (const { runner, attrTtlMs } of VARIANTS) {
  for (const s of SCENARIOS) {
    const title = `${runner} ${scenarioTitle(s)}`;
    const known = knownFor(s, runner);
    if (known !== undefined) test.failing(`${title} [known bug: ${known}]`, run, s, runner, attrTtlMs);
    else test(title, run, s, runner, attrTtlMs);
  }
}
