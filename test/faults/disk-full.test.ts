// Fault scenario 7: nodes' disks fill up (small tmpfs data directories). While
// one node is full, writes go on to the other two (W = 2 of 3); when two are
// full, writes fail with ENOSPC (not EIO, not a hang). Nothing stored is
// damaged, no node crashes, and once space returns the same mount writes
// again and repair brings every chunk back to R copies.
import test from 'ava';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { must, quote, run } from '../helpers/e2e-fixtures.js';
import { runCli, startNode, writeCluster, type NodeProcess } from '../helpers/cluster.js';
import { assertFsckClean, chunkFiles, runJson, startWriter, verifyClosed } from '../helpers/faults.js';
import type { RunningCluster } from '../helpers/keyspace.js';
import { mountCluster } from '../helpers/mount.js';

const MiB = 1024 * 1024;
const canMountTmpfs = process.getuid?.() === 0;

(canMountTmpfs ? test.serial : test.skip)(`7 full disks: one full node is written around, two give ENOSPC; nothing is damaged; space back: writes resume, repair restores R copies${canMountTmpfs ? '' : ' (skipped: mounting a tmpfs needs root)'}`, async (t) => {
  const cluster = await writeCluster(t, 3);
  // n1 fills first, then n2; each keeps a 4 MiB reserve so its records always have room.
  const sizes: Record<string, number> = { n1: 24, n2: 48 };
  const config = JSON.parse(await readFile(cluster.configPath, 'utf8')) as { nodes: Array<{ id: string; reserveBytes: number }> };
  for (const n of config.nodes) if (sizes[n.id]) n.reserveBytes = 4 * MiB;
  await writeFile(cluster.configPath, JSON.stringify(config, null, 2));
  for (const [id, mib] of Object.entries(sizes)) {
    const dir = cluster.nodes.find((n) => n.id === id)!.dataDir;
    await mkdir(dir, { recursive: true });
    await must(`mount -t tmpfs -o size=${mib}m qfs-test-full ${quote(dir)}`);
    t.teardown(() => run(`umount ${quote(dir)} || umount -l ${quote(dir)}`));
  }
  const nodes = new Map<string, NodeProcess>();
  for (const n of cluster.nodes) nodes.set(n.id, await startNode(t, cluster, n.id));
  const rc: RunningCluster = {
    cluster,
    nodes,
    start: async (id) => {
      const p = await startNode(t, cluster, id);
      nodes.set(id, p);
      return p;
    },
  };
  t.is((await runCli(['format', '--config', cluster.configPath])).code, 0);
  const mount = await mountCluster(t, rc);

  const w = startWriter(t, join(mount.dir, 'w'), { seed: 7, count: 70, minSize: MiB, maxSize: MiB, keepGoing: true });
  t.is(await w.done, 0);
  t.log(`${w.closed.length} files of 1 MiB closed; ${w.errors.length} failed: ${[...new Set(w.errors.map((e) => e.errno))].join(', ')}`);
  t.true(w.closed.length > 30, `writes went on after n1 (24 MiB) was full: ${w.closed.length} MiB closed`);
  t.true(w.errors.length > 0, 'writes failed once n1 and n2 were both full');
  t.deepEqual([...new Set(w.errors.map((e) => e.errno))], ['ENOSPC'], 'and they failed with ENOSPC');
  for (const [id, p] of nodes) t.is(p.child.exitCode, null, `${id} is still running`);
  t.deepEqual(await verifyClosed(w.closed), [], 'every file closed before the disks filled reads back whole');
  const full = await runCli(['status', '--config', cluster.configPath]);
  t.is(full.code, 0, `status with full disks: ${full.stdout}${full.stderr}`);

  // Space returns: the same mount writes again (the nodes re-read free space within a second).
  for (const [id, mib] of Object.entries(sizes)) await must(`mount -o remount,size=${mib * 8}m ${quote(cluster.nodes.find((n) => n.id === id)!.dataDir)}`);
  let resumed = false;
  for (let i = 0; i < 50 && !resumed; i++) {
    resumed = (await run(`head -c 3000000 /dev/urandom > ${quote(mount.dir)}/after && sync ${quote(mount.dir)}/after`)).code === 0;
    if (!resumed) await new Promise((r) => setTimeout(r, 200));
  }
  t.true(resumed, 'a write succeeds once space is back');

  let runs = 0;
  for (; runs < 3; runs++) {
    const r = await runJson<{ recordsRepaired: number; chunksRepaired: number; failures: number }>(['repair', '--config', cluster.configPath, '--restart']);
    t.is(r.code, 0, r.stderr);
    if (r.json.chunksRepaired === 0 && r.json.recordsRepaired === 0) break;
  }
  t.true(runs < 3, 'repair converged');
  const sets = await Promise.all(cluster.nodes.map((n) => chunkFiles(n.dataDir)));
  for (let i = 1; i < sets.length; i++) t.deepEqual(sets[i], sets[0], `${cluster.nodes[i]!.id} holds the same chunks as n1`);
  t.deepEqual(await verifyClosed(w.closed), []);
  await assertFsckClean(t, cluster.configPath, ['--grace', '0']);
});
