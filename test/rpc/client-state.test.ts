// What a client tells its listener about the node's reachability: a node that
// was down from the first attempt is reported down once, and back when it
// answers (self-heal and hints start from "back").
import test from 'ava';
import { connect, startNode, writeCluster } from '../helpers/cluster.js';

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`not within 30 s: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a node unreachable from the first attempt is reported down once, then up when it answers, then down and up again', async (t) => {
  const cluster = await writeCluster(t, 1, { replication: 1 });
  const c = connect(t, cluster, 'n1');
  const seen: boolean[] = [];
  c.rpc.onStateChange = (up) => seen.push(up);
  c.rpc.connect();
  await until(() => seen.length > 0, 'the failed first attempt is reported');
  t.deepEqual(seen, [false]);
  // Retries while nothing listens are not reported again.
  const node = await startNode(t, cluster, 'n1');
  await until(() => seen.includes(true), 'the node answering is reported');
  t.deepEqual(seen, [false, true]);
  t.truthy(await c.stat());
  await node.stop();
  await until(() => seen.length >= 3, 'the node going away is reported');
  await startNode(t, cluster, 'n1');
  await until(() => seen.length >= 4, 'the node back is reported');
  t.deepEqual(seen, [false, true, false, true]);
});
