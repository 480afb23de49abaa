// A ClusterKeySpace over real node processes started by the test.
import type { ExecutionContext } from 'ava';
import { ClusterKeySpace } from '../../src/cluster/cluster-keyspace.js';
import { silentLogger } from '../../src/util/log.js';
import { startNode, writeCluster, type NodeProcess, type TestCluster } from './cluster.js';

export interface RunningCluster {
  cluster: TestCluster;
  nodes: Map<string, NodeProcess>;
  /** Starts (or restarts) a node by id. */
  start(id: string): Promise<NodeProcess>;
}

export async function startCluster(t: ExecutionContext, count = 3, extra: Record<string, unknown> = {}, nodeArgs: string[] = []): Promise<RunningCluster> {
  const cluster = await writeCluster(t, count, extra);
  const nodes = new Map<string, NodeProcess>();
  const start = async (id: string): Promise<NodeProcess> => {
    const p = await startNode(t, cluster, id, nodeArgs);
    nodes.set(id, p);
    return p;
  };
  await Promise.all(cluster.nodes.map((n) => start(n.id)));
  return { cluster, nodes, start };
}

export function clusterKeySpace(
  t: ExecutionContext,
  rc: RunningCluster,
  opts: { requestTimeoutMs?: number; replication?: number; hintIntervalMs?: number; scopeLeaseMs?: number; behindGatherMs?: number; rideMs?: number } = {},
): ClusterKeySpace {
  const ks = new ClusterKeySpace({
    clusterName: rc.cluster.name,
    secret: rc.cluster.secret,
    nodes: rc.cluster.nodes.map((n) => ({ id: n.id, url: n.url, weight: 1, zone: null })),
    replication: opts.replication ?? Math.min(3, rc.cluster.nodes.length),
    writeQuorum: Math.floor((opts.replication ?? Math.min(3, rc.cluster.nodes.length)) / 2) + 1,
    requestTimeoutMs: opts.requestTimeoutMs ?? 3000,
    connectTimeoutMs: 1000,
    log: silentLogger(),
    hintIntervalMs: opts.hintIntervalMs ?? 0,
    ...(opts.scopeLeaseMs !== undefined ? { scopeLeaseMs: opts.scopeLeaseMs } : {}),
    ...(opts.behindGatherMs !== undefined ? { behindGatherMs: opts.behindGatherMs } : {}),
    ...(opts.rideMs !== undefined ? { rideMs: opts.rideMs } : {}),
  });
  t.teardown(() => ks.close());
  return ks;
}
