// The scenario table against Linux: every scenario through the python runner
// in a fresh directory of a local filesystem (with user xattrs). A failure
// here is a wrong expectation in the table, not a quorumfs bug.
import test from 'ava';
import { rm } from 'node:fs/promises';
import { referenceDir, runScenariosInDir } from '../helpers/posix-python.js';
import { checkScenario, runnable, scenarioTitle, trace, type ScenarioResult } from '../helpers/posix-steps.js';
import { SCENARIOS } from './scenarios.js';

let results: ScenarioResult[] = [];
let root = '';

test.before(async () => {
  root = await referenceDir();
  results = await runScenariosInDir(root, SCENARIOS.map(runnable));
});

test.after.always(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

SCENARIOS.forEach((s, k) => {
  test(scenarioTitle(s), (t) => {
    const r = results[k];
    if (!r) return t.fail(`${scenarioTitle(s)}: no result from the runner`);
    t.is(r.name, s.name);
    const mismatches = checkScenario(s, r);
    if (mismatches.length === 0) return t.pass();
    t.log(`trace:\n${trace(s, r)}`);
    t.fail(`${scenarioTitle(s)} (reference, ${root}/s${String(k).padStart(3, '0')}):\n${mismatches.join('\n')}`);
  });
});
