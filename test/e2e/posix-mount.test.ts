// The POSIX scenario table on a real mount over three real nodes: the same
// python runner as the reference, run as a child process against the mount.
import test, { type ExecutionContext } from 'ava';
import { runScenariosInDir } from '../helpers/posix-python.js';
import { checkScenario, knownFor, runnable, scenarioTitle, trace, type ScenarioResult } from '../helpers/posix-steps.js';
import { mountedCluster } from '../helpers/mount.js';
import { SCENARIOS } from '../posix/scenarios.js';

let results: ScenarioResult[] = [];
let root = '';

// Hooks cannot register teardowns: collect them and run them after all tests.
const teardowns: Array<() => unknown> = [];
const hookContext = { teardown: (fn: () => unknown) => teardowns.push(fn) } as unknown as ExecutionContext;

test.before(async () => {
  const { mount } = await mountedCluster(hookContext);
  root = mount.dir;
  results = await runScenariosInDir(root, SCENARIOS.map(runnable));
});

test.after.always(async () => {
  for (const fn of teardowns.reverse()) await fn();
});

SCENARIOS.forEach((s, k) => {
  const known = knownFor(s, 'mount');
  const title = `mount ${scenarioTitle(s)}${known ? ` [known: ${known.slice(0, 120)}]` : ''}`;
  (known ? test.failing : test)(title, (t) => {
    const r = results[k];
    if (!r) return t.fail(`${scenarioTitle(s)}: no result from the runner`);
    const mismatches = checkScenario(s, r);
    if (mismatches.length === 0) return t.pass();
    t.log(`trace:\n${trace(s, r)}`);
    t.fail(`${scenarioTitle(s)} (mount, ${root}/s${String(k).padStart(3, '0')}):\n${mismatches.join('\n')}`);
  });
});
