// The key space contract over three real node processes.
import test from 'ava';
import { keyspaceConformance } from '../keyspace/conformance.js';
import { clusterKeySpace, startCluster } from '../helpers/keyspace.js';

keyspaceConformance(test.serial, 'cluster of 3', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = clusterKeySpace(t, rc);
  await ks.waitForPeers(5000);
  return ks;
});
