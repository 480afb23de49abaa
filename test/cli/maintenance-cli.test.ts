// The fsck and gc commands as an operator runs them: flags, exit codes, the
// summary lines and the JSON, on a real (one-node) cluster.
import test from 'ava';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
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

test('a cluster.json listing fewer nodes than copies names seeds: commands learn the membership from them; format refuses it; seeds that know nothing are a clear error', async (t) => {
  const cluster = await writeCluster(t, 3);
  const nodes = [];
  for (const n of cluster.nodes) nodes.push(await startNode(t, cluster, n.id));
  t.is((await runCli(['format', '--config', cluster.configPath])).code, 0);
  const full = JSON.parse(await readFile(cluster.configPath, 'utf8')) as { nodes: Array<{ id: string }> };
  const seeds = join(cluster.dir, 'seeds.json');
  await writeFile(seeds, JSON.stringify({ ...full, nodes: full.nodes.filter((n) => n.id === 'n2') }));
  const status = await runCli(['status', '--config', seeds, '--json']);
  t.is(status.code, 0, status.stderr);
  const s = JSON.parse(status.stdout) as { nodes: Array<{ id: string; up: boolean }> };
  t.deepEqual(s.nodes.map((n) => n.id).sort(), ['n1', 'n2', 'n3'], 'all three nodes, learned from n2');
  t.true(s.nodes.every((n) => n.up));
  const fsck = await runCli(['fsck', '--config', seeds]);
  t.is(fsck.code, 0, fsck.stderr);
  t.regex(fsck.stdout, /fsck: clean/);
  const format = await runCli(['format', '--config', seeds, '--force']);
  t.is(format.code, 2);
  t.regex(format.stderr, /config\.replication: 3 copies need at least 3 nodes, the config lists 1/);
  // The only seed down: nothing to learn the membership from.
  await nodes[1]!.stop();
  const lost = await runCli(['fsck', '--config', seeds]);
  t.is(lost.code, 2, lost.stderr);
  t.regex(lost.stderr, /1 node\(s\) listed, fewer than replication 3, so they are only seeds, and none of them answered/);
});
