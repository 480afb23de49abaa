// The /metrics figures of self-heal and of moves a node carries on
// (backgroundMetrics in src/cli/cmd-node.ts), and how the node renders them.
import test from 'ava';
import { backgroundMetrics } from '../../src/cli/cmd-node.js';
import type { Healer } from '../../src/cluster/healer.js';
import type { MoveWatcher } from '../../src/cluster/move-watcher.js';
import { NodeMetrics } from '../../src/node/metrics.js';
import { connect, runCli, startNode, writeCluster } from '../helpers/cluster.js';

const counts = { recordsChecked: 500, recordsSuspect: 2, recordsLost: 0, recordsRepaired: 2, rangesAgreed: 9, rangesScanned: 1, chunksChecked: 40, chunksCopied: 3, bytesCopied: 3 << 20, failures: 0 };

test('a running heal pass and a running move show in /metrics, with what they did so far', (t) => {
  const healer = { totals: counts, passes: 4, current: { startedAt: 1_000, counts: { ...counts, recordsChecked: 120 } } } as unknown as Healer;
  const watcher = { moves: 1, progress: { recordsRewritten: 70, chunksCopied: 5, bytesCopied: 5 << 20 } } as unknown as MoveWatcher;
  const metrics = new NodeMetrics();
  metrics.more.push(() => backgroundMetrics(healer, watcher, 4_000));
  const text = metrics.render('n1', 'test', { chunks: 0, chunkBytes: 0, records: 0, recordsLost: 0, diskTotalBytes: 0, diskFreeBytes: 0, connections: 0, inFlight: 0 });
  t.regex(text, /^# TYPE quorumfs_heal_passes_total counter$/m);
  t.regex(text, /^quorumfs_heal_passes_total 4$/m);
  t.regex(text, /^quorumfs_heal_bytes_copied_total 3145728$/m);
  t.regex(text, /^quorumfs_heal_records_repaired_total 2$/m);
  t.regex(text, /^quorumfs_heal_ranges_agreed_total 9$/m);
  t.regex(text, /^quorumfs_heal_running 1$/m);
  t.regex(text, /^quorumfs_heal_pass_records_checked 120$/m);
  t.regex(text, /^quorumfs_heal_pass_seconds 3$/m);
  t.regex(text, /^quorumfs_mover_running 1$/m);
  t.regex(text, /^quorumfs_mover_bytes_copied 5242880$/m);
});

test('idle: no pass, no move; and a node without either adds nothing', (t) => {
  const healer = { totals: counts, passes: 4, current: null } as unknown as Healer;
  const watcher = { moves: 0, progress: null } as unknown as MoveWatcher;
  const idle = backgroundMetrics(healer, watcher);
  t.is(idle.find((m) => m.name === 'quorumfs_heal_running')?.value, 0);
  t.is(idle.find((m) => m.name === 'quorumfs_heal_pass_records_checked')?.value, 0);
  t.is(idle.find((m) => m.name === 'quorumfs_mover_running')?.value, 0);
  t.deepEqual(backgroundMetrics(null, null), []);
});

test('nodes of a cluster not formatted yet look for moves but hand nobody a membership; once formatted, their heal passes run', async (t) => {
  const cluster = await writeCluster(t, 3);
  for (const n of cluster.nodes) await startNode(t, cluster, n.id, ['--mover-grace', '1s', '--heal-interval', '1s']);
  const metric = async (port: number, name: string): Promise<number> => {
    const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((res) => res.text());
    return Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  };
  const waitFor = async (what: string, ok: () => Promise<boolean>): Promise<void> => {
    for (const until = Date.now() + 60_000; !(await ok()); ) {
      if (Date.now() > until) throw new Error(`not within 60 s: ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  // Each node's watcher has looked three times (every 250 ms with a 1 s grace).
  for (const n of cluster.nodes) await waitFor(`${n.id} looked three times`, async () => (await metric(n.port, 'quorumfs_mover_checks_total')) >= 3);
  for (const n of cluster.nodes) t.is(await connect(t, cluster, n.id).getMembership(), null, `${n.id} was handed no membership before format`);
  const f = await runCli(['format', '--config', cluster.configPath]);
  t.is(f.code, 0, f.stderr);
  await waitFor('a heal pass on every node after format', async () => {
    const passes = await Promise.all(cluster.nodes.map((n) => metric(n.port, 'quorumfs_heal_passes_total')));
    return passes.every((p) => p >= 1);
  });
  t.pass();
});

test('node: a bad --heal-rate is a one-line usage error with exit 2', async (t) => {
  for (const rate of ['fast', '0', '-3']) {
    const r = await runCli(['node', '--config', '/nonexistent.json', '--id', 'n1', `--heal-rate=${rate}`]);
    t.is(r.code, 2, r.stderr);
    t.regex(r.stderr, /--heal-rate: expected MB\/s above 0/);
    t.is(r.stderr.trim().split('\n').length, 1, 'one line');
  }
});
