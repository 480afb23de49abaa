// Building the cluster key space from a config: the one place it is wired.
import { readFile } from 'node:fs/promises';
import { ClusterKeySpace } from '../cluster/cluster-keyspace.js';
import type { Logger } from '../util/log.js';
import { ConfigError, loadConfig, loadSecret, type ClusterConfig } from './config.js';

/** The config lists fewer nodes than R and none of them knew the membership (a node may wait for one). */
export class SeedsOnlyError extends ConfigError {}

export async function openCluster(configFile: string, log: Logger, extra: { hintIntervalMs?: number } = {}): Promise<{ config: ClusterConfig; ks: ClusterKeySpace }> {
  const config = await loadConfig(configFile);
  const secret = await loadSecret(config);
  let ca: Buffer | undefined;
  if (config.tls.caFile) {
    ca = await readFile(config.tls.caFile).catch((e: Error) => {
      throw new ConfigError(`config.tls.caFile: ${e.message}`);
    });
  }
  const ks = new ClusterKeySpace({
    clusterName: config.name,
    secret,
    nodes: config.nodes.map((n) => ({ id: n.id, url: n.url, weight: n.weight, zone: n.zone })),
    replication: config.replication,
    writeQuorum: config.writeQuorum,
    requestTimeoutMs: config.timeouts.requestMs,
    connectTimeoutMs: config.timeouts.connectMs,
    tombstoneGraceMs: config.timeouts.tombstoneGraceMs,
    log,
    ...(ca ? { ca } : {}),
    ...extra,
  });
  await ks.ready;
  if (ks.membership.epoch === 0) {
    await ks.close();
    throw new SeedsOnlyError(
      `config.nodes: ${config.nodes.length} node(s) listed, fewer than replication ${config.replication}, so they are only seeds, and none of them answered with the cluster's membership (are they up? was the cluster formatted?)`,
    );
  }
  return { config, ks };
}
