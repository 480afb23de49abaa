// Self-heal on real node processes: a node that was down while records and
// chunks were written gets them back with no command run (the other nodes'
// heal passes find it lacking and copy what it missed).
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { ClusterKeySpace } from '../../src/cluster/cluster-keyspace.js';
import { compareBallots } from '../../src/util/ballot.js';
import { silentLogger } from '../../src/util/log.js';
import { recordKey } from '../../src/keyspace/types.js';
import type { ChunkId } from '../../src/util/ids.js';
import { connect, startNode, writeCluster, type NodeProcess } from '../helpers/cluster.js';

const key = (i: number): Buffer => recordKey(Buffer.from(`h${i % 13}`), Buffer.from(`k${i}`));

for (const [label, interval] of [['passes every second', '1s'], ['a pass as soon as the others see it back (passes every 10 minutes)', '10m']] as const) test(`a node that missed writes while it was down gets every record and chunk back with no command run: ${label}`, async (t) => {
  const cluster = await writeCluster(t, 3);
  const heal = ['--heal-interval', interval];
  const nodes = new Map<string, NodeProcess>();
  for (const id of ['n1', 'n2', 'n3']) nodes.set(id, await startNode(t, cluster, id, heal));
  // No hints: the writer is gone before the node comes back, so only self-heal can bring it up to date.
  const ks = new ClusterKeySpace({
    clusterName: cluster.name,
    secret: cluster.secret,
    nodes: cluster.nodes.map((n) => ({ id: n.id, url: n.url, weight: 1, zone: null })),
    replication: 3,
    writeQuorum: 2,
    requestTimeoutMs: 5000,
    connectTimeoutMs: 1000,
    log: silentLogger(),
    hintIntervalMs: 0,
  });
  await ks.ready;
  for (let i = 0; i < 50; i++) await ks.change(key(i), () => Buffer.from(`a${i}`));
  const chunks: ChunkId[] = [];
  for (let i = 0; i < 5; i++) chunks.push(await ks.putChunk(randomBytes(5000 + i)));

  await nodes.get('n3')!.stop();
  for (let i = 0; i < 150; i++) await ks.change(key(i), () => Buffer.from(`b${i}`)); // 50 changed, 100 new
  for (let i = 0; i < 5; i++) chunks.push(await ks.putChunk(randomBytes(7000 + i)));
  await ks.close();

  nodes.set('n3', await startNode(t, cluster, 'n3', heal));
  const n1 = connect(t, cluster, 'n1');
  const n3 = connect(t, cluster, 'n3');
  n1.rpc.epoch = 1;
  n3.rpc.epoch = 1;
  const behind = async (): Promise<number> => {
    let missing = 0;
    for (let i = 0; i < 150; i++) {
      const [a, b] = await Promise.all([n1.read(key(i)), n3.read(key(i))]);
      if (b.value.kind !== a.value.kind || compareBallots(a.accepted, b.accepted) !== 0) missing++;
    }
    const has = await n3.hasChunks(chunks);
    return missing + has.filter((h) => !h).length;
  };
  t.true((await behind()) > 0, 'n3 starts behind');
  const until = Date.now() + 60_000;
  let left = await behind();
  while (left > 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 250));
    left = await behind();
  }
  t.is(left, 0, 'within 60 s every record and chunk is on n3 again');
  const heals = [...nodes.values()].flatMap((p) => p.logs).filter((l) => l.includes('heal pass repaired'));
  t.true(heals.length > 0, 'a heal pass reported what it repaired');
});
