// repair and status as an operator runs them: the CLI against real nodes.
import test from 'ava';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { recordKey } from '../../src/keyspace/types.js';
import type { ChunkId } from '../../src/util/ids.js';
import { runCli } from '../helpers/cluster.js';
import { clusterKeySpace, startCluster } from '../helpers/keyspace.js';

const key = (i: number) => recordKey(Buffer.from(`dir${i % 13}`), Buffer.from(`name-${i}`));
const value = (i: number) => Buffer.from(`value of ${i} `.repeat(1 + (i % 5)));
const chunk = (i: number) => Buffer.alloc(20_000 + i * 13, (i * 31) % 256);

test.serial('wipe a node, restart it empty, repair, then lose another node: everything is readable', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = clusterKeySpace(t, rc);
  await ks.waitForPeers(5000);
  for (let i = 0; i < 150; i++) await ks.change(key(i), () => value(i));
  const ids: ChunkId[] = [];
  for (let i = 0; i < 25; i++) ids.push(await ks.putChunk(chunk(i)));
  await new Promise((r) => setTimeout(r, 300)); // let straggling third copies land

  await rc.nodes.get('n2')!.stop();
  await rm(rc.cluster.nodes[1]!.dataDir, { recursive: true, force: true });
  await rc.start('n2');
  await ks.waitForPeers(5000);
  t.is((await ks.peer('n2')!.client.stat()).records, 0, 'n2 starts empty');

  const state = join(rc.cluster.dir, 'repair-state.json');
  const r = await runCli(['repair', '--config', rc.cluster.configPath, '--state', state, '--json'], { timeoutMs: 120_000 });
  t.is(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout);
  t.is(summary.recordsRepaired, 150);
  t.is(summary.chunksRepaired, 25);
  t.is(summary.failures, 0);
  const n2 = await ks.peer('n2')!.client.stat();
  t.is(n2.records, 150);
  t.is(n2.chunks, 25);

  // a second run finds nothing to do
  const again = JSON.parse((await runCli(['repair', '--config', rc.cluster.configPath, '--state', state, '--json'])).stdout);
  t.is(again.recordsRepaired, 0);
  t.is(again.chunksRepaired, 0);

  await rc.nodes.get('n1')!.stop();
  for (let i = 0; i < 150; i++) t.deepEqual(await ks.read(key(i)), value(i));
  for (let i = 0; i < 25; i++) t.deepEqual(await ks.getChunk(ids[i]!), chunk(i));
});

test.serial('repair resumes from its checkpoint and reclaims finished deletes', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = clusterKeySpace(t, rc);
  await ks.waitForPeers(5000);
  for (let i = 0; i < 30; i++) await ks.change(key(i), () => value(i));
  for (let i = 0; i < 10; i++) await ks.delete(key(i));
  await new Promise((r) => setTimeout(r, 200));
  const state = join(rc.cluster.dir, 'state.json');
  // as if an earlier run had been interrupted in the chunk phase
  await writeFile(state, JSON.stringify({ phase: 'chunks', node: 1, cursor: null }));
  const resumed = await runCli(['repair', '--config', rc.cluster.configPath, '--state', state, '--json']);
  t.is(resumed.code, 0, resumed.stderr);
  t.regex(resumed.stderr, /resuming from chunks on node n2/);
  t.is(JSON.parse(resumed.stdout).recordsScanned, 0, 'the record phase was not redone');

  const full = await runCli(['repair', '--config', rc.cluster.configPath, '--state', state, '--json']);
  const summary = JSON.parse(full.stdout);
  t.is(summary.tombstonesPurged, 10);
  for (const p of ks.peers) t.is((await p.client.stat()).records, 20, `tombstones gone from ${p.id}`);
  for (let i = 0; i < 10; i++) t.is(await ks.read(key(i)), null);
  for (let i = 10; i < 30; i++) t.deepEqual(await ks.read(key(i)), value(i));
  // a purged key can be created again
  await ks.change(key(3), (old) => (old === null ? Buffer.from('reborn') : old));
  t.deepEqual(await ks.read(key(3)), Buffer.from('reborn'));
});

test.serial('status: a row per node, exit 1 when one is down, --deep counts under-replication', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = clusterKeySpace(t, rc);
  await ks.waitForPeers(5000);
  const ok = await runCli(['status', '--config', rc.cluster.configPath]);
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stdout, /3\/3 nodes up/);
  for (const id of ['n1', 'n2', 'n3']) t.regex(ok.stdout, new RegExp(`^${id}\\s+up\\s+[\\d.]+ ms`, 'm'));

  await rc.nodes.get('n3')!.stop();
  for (let i = 0; i < 20; i++) await ks.change(key(i), () => value(i));
  await ks.putChunk(chunk(1));
  const down = await runCli(['status', '--config', rc.cluster.configPath, '--json']);
  t.is(down.code, 1);
  const j = JSON.parse(down.stdout);
  t.deepEqual(j.nodes.map((n: { id: string; up: boolean }) => [n.id, n.up]), [['n1', true], ['n2', true], ['n3', false]]);
  t.is(j.totals.up, 2);

  await rc.start('n3');
  const deep = await runCli(['status', '--config', rc.cluster.configPath, '--deep', '--json']);
  t.is(deep.code, 0, deep.stderr);
  const d = JSON.parse(deep.stdout).deep;
  t.is(d.underReplicatedRecords, 20);
  t.is(d.underReplicatedChunks, 1);
});
