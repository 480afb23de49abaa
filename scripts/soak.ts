// The long version of fault scenario 8 (test/faults/random-ops.test.ts): the
// same seeded random file operations on a local tree and on a mount, with one
// node at a time SIGKILLed and restarted (sometimes with `quorumfs repair`
// beside a batch), for as long as asked.
//
//   npm run soak -- [--seed N] [--duration 10m] [--ops-per-round K] [--epoch-ops M]
//
// The run is a series of epochs; epoch e is a fresh cluster, mount and local
// tree driven by seed N+e for M ops, then checked like the test (the trees on
// the mount and on a fresh mount, fsck clean). Fresh epochs keep the disk
// bounded and make every failure replayable on its own: the first mismatch, failed batch, tree difference or
// unclean fsck stops the run with exit 1 and prints the epoch's seed, the op
// index and the command that replays it. Exit 0 when the duration is over,
// 130/143 on Ctrl-C/SIGTERM. Nodes, mounts and temp dirs are removed on every
// way out.
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseDurationFlag } from '../src/cli/usage.js';
import { Scope } from '../test/helpers/e2e-fixtures.js';
import {
  describeDiffs,
  describeFailure,
  parseSeed,
  randomSeed,
  replaySoak,
  runCampaign,
  startSystem,
  verify,
  type System,
} from '../test/faults/random-ops-lib.js';

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    duration: { type: 'string', default: '10m' },
    'ops-per-round': { type: 'string', default: '50' },
    'epoch-ops': { type: 'string', default: '3000' },
    help: { type: 'boolean', short: 'h' },
  },
  strict: true,
});

if (values.help) {
  process.stdout.write('usage: npm run soak -- [--seed N] [--duration 10m] [--ops-per-round K] [--epoch-ops M]\n');
  process.exit(0);
}

function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) {
    process.stderr.write(`soak: ${flag}: expected a positive integer, got ${JSON.stringify(text)}\n`);
    process.exit(2);
  }
  return n;
}

const seed = parseSeed(values.seed) ?? randomSeed();
const durationMs = parseDurationFlag(values.duration, '--duration') ?? 600_000;
const opsPerRound = positiveInt(values['ops-per-round'], '--ops-per-round');
const epochOps = positiveInt(values['epoch-ops'], '--epoch-ops');

const t0 = Date.now();
const stamp = (): string => `[${((Date.now() - t0) / 1000).toFixed(0).padStart(5)} s]`;
const say = (line: string): void => {
  process.stdout.write(`${stamp()} ${line}\n`);
};

let scope: Scope | null = null;
let current: System | null = null;
let exiting = false;

// Last resort when the process exits without the async teardown (a second
// Ctrl-C, process.exit from elsewhere): synchronous, best effort.
process.on('exit', () => {
  const sys = current;
  if (!sys) return;
  for (const m of sys.mounts) {
    try {
      execFileSync('fusermount', ['-uz', m.dir], { stdio: 'ignore' });
    } catch {
      // not mounted any more
    }
    if (m.child.exitCode === null && m.child.signalCode === null) m.child.kill('SIGKILL');
  }
  for (const n of sys.rc.nodes.values()) n.kill('SIGKILL');
  rmSync(sys.local, { recursive: true, force: true });
  rmSync(sys.rc.cluster.dir, { recursive: true, force: true });
});

async function finish(code: number): Promise<never> {
  if (exiting) process.exit(code);
  exiting = true;
  const s = scope;
  scope = null;
  if (s) await s.close();
  current = null;
  process.exit(code);
}

process.on('SIGINT', () => {
  say(`interrupted; seed ${seed}; cleaning up`);
  void finish(130);
});
process.on('SIGTERM', () => void finish(143));
process.on('unhandledRejection', (err) => {
  process.stderr.write(`soak: ${(err as Error)?.stack ?? String(err)}\nseed ${seed}\n`);
  void finish(1);
});

async function fail(epochSeed: number, message: string): Promise<never> {
  process.stdout.write(`\nFAILED, epoch seed ${epochSeed} (run seed ${seed})\n${message}\nreplay: ${replaySoak(epochSeed, opsPerRound, epochOps)}\n`);
  return finish(1);
}

say(`soak: seed ${seed}, duration ${values.duration}, ${opsPerRound} ops per round, ${epochOps} ops per epoch`);
const deadline = t0 + durationMs;
let totalOps = 0;
let totalKills = 0;
for (let epoch = 0; Date.now() < deadline; epoch++) {
  const epochSeed = seed + epoch;
  scope = new Scope();
  const sys = await startSystem(scope.t);
  current = sys;
  say(`epoch ${epoch}: seed ${epochSeed}, cluster ${sys.rc.cluster.dir}`);
  const res = await runCampaign(sys, {
    seed: epochSeed,
    ops: epochOps,
    opsPerRound,
    upRounds: [1, 4],
    downRounds: [1, 4],
    log: (line) => say(`  ${line}`),
    stop: () => Date.now() >= deadline,
  });
  totalOps += res.applied;
  totalKills += res.kills;
  if (res.failure) await fail(epochSeed, describeFailure(res.failure));
  say(`epoch ${epoch}: ${res.applied} ops, ${res.kills} kills, ${res.repairs} repairs, ${res.gcs} gc runs; comparing`);
  const v = await verify(sys);
  const problems: string[] = [];
  if (v.first.length > 0) problems.push(`local tree vs the mount:\n${describeDiffs(v.first)}`);
  if (v.firstExit !== 0) problems.push(`the mount exited ${v.firstExit}`);
  if (v.remount.length > 0) problems.push(`local tree vs a fresh mount:\n${describeDiffs(v.remount)}`);
  if (v.fsck.code !== 0 || v.fsck.report?.clean !== true) problems.push(`fsck exit ${v.fsck.code}: ${v.fsck.stderr.slice(-1000)} ${v.fsck.stdout.slice(-3000)}`);
  if (problems.length > 0) await fail(epochSeed, `after op #${res.applied - 1}:\n${problems.join('\n')}`);
  say(`epoch ${epoch}: ${v.paths} paths equal on both mounts, fsck clean; ${totalOps} ops and ${totalKills} kills so far`);
  const s = scope;
  scope = null;
  await s.close();
  current = null;
}
say(`soak passed: seed ${seed}, ${totalOps} ops, ${totalKills} kills`);
await finish(0);
