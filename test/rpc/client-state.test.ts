// What a client tells its listener about the node's reachability: a node that
// was down from the first attempt is reported down once, and back when it
// answers (self-heal and hints start from "back").
import test from 'ava';
import { createServer, connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { connect, startNode, writeCluster } from '../helpers/cluster.js';
import { NodeClient } from '../../src/rpc/node-client.js';
import { silentLogger } from '../../src/util/log.js';
import { isQfsError } from '../../src/util/errors.js';

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

test('a connection whose node goes silent (packets lost, TCP still open) is dropped after a call times out and a ping goes unanswered, and comes back when the path does', async (t) => {
  const cluster = await writeCluster(t, 1, { replication: 1 });
  await startNode(t, cluster, 'n1');
  const target = new URL(cluster.nodes[0]!.url);
  // A TCP relay that can swallow every byte of the connections it holds without closing them.
  let silent = false;
  const sockets = new Set<Socket>();
  const relay = createServer((inbound) => {
    const outbound = netConnect(Number(target.port), target.hostname);
    for (const [from, to] of [[inbound, outbound], [outbound, inbound]] as const) {
      sockets.add(from);
      from.on('data', (b: Buffer) => {
        if (!silent) to.write(b);
      });
      from.on('error', () => {});
      from.on('close', () => to.destroy());
    }
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    relay.close();
  });
  const port = (relay.address() as AddressInfo).port;
  const c = new NodeClient({ url: `ws://127.0.0.1:${port}/rpc`, secret: cluster.secret, clusterName: cluster.name, log: silentLogger(), connectTimeoutMs: 1000 });
  t.teardown(() => c.close());
  t.truthy(await c.stat());
  t.true(c.rpc.isOpen);
  silent = true;
  const err = await c.stat({ timeoutMs: 500 }).then(
    () => null,
    (e: unknown) => e,
  );
  t.true(isQfsError(err, 'timeout'), String(err));
  await until(() => !c.rpc.isOpen, 'the silent connection is dropped');
  silent = false;
  t.truthy(await c.stat({ timeoutMs: 10_000 }), 'a new connection answers once the path is back');
});
