// The fsck and gc commands as an operator runs them: flags, exit codes, the
// summary lines and the JSON, on a real (one-node) cluster.
import test from 'ava';
import { runCli, startNode, writeCluster } from '../helpers/cluster.js';

test('fsck and gc: bad flags are one-line usage errors with exit 2', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['fsck'], /missing --config/],
    [['gc'], /missing --config/],
    [['gc', '--config', '/nonexistent.json', '--grace', 'soon'], /--grace: expected a duration/],
    [['fsck', '--config', '/nonexistent.json', '--grace', '-1'], /--grace/],
    [['fsck', '--config', '/nonexistent.json', '--frobnicate'], /Unknown option '--frobnicate'/],
  ];
  for (const [args, re] of cases) {
    const r = await runCli(args);
    t.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, re);
    t.is(r.stderr.trim().split('\n').length, 1, 'one line');
  }
});

test('fsck and gc on a fresh filesystem: clean, nothing to reclaim; text and JSON', async (t) => {
  const cluster = await writeCluster(t, 1, { replication: 1 });
  await startNode(t, cluster, 'n1');
  t.is((await runCli(['format', '--config', cluster.configPath])).code, 0);
  const f = await runCli(['fsck', '--config', cluster.configPath]);
  t.is(f.code, 0, f.stderr);
  t.regex(f.stdout, /fsck: 1 directories, 0 files/);
  t.regex(f.stdout, /fsck: clean: 0 errors, 0 leftovers/);
  const fj = await runCli(['fsck', '--config', cluster.configPath, '--json']);
  t.like(JSON.parse(fj.stdout), { clean: true, errors: 0, complete: true, findings: [] });
  const g = await runCli(['gc', '--config', cluster.configPath, '--grace', '0']);
  t.is(g.code, 0, g.stderr);
  t.regex(g.stdout, /gc: 0 B reclaimed/);
  const gj = JSON.parse((await runCli(['gc', '--config', cluster.configPath, '--dry-run', '--json'])).stdout) as { dryRun: boolean; chunksSwept: number; graceMs: number };
  t.like(gj, { dryRun: true, chunksSwept: 0, graceMs: 3600_000 });
});
