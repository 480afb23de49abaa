// Several proposer processes change and read shared registers while nodes are
// killed and restarted; the recorded history must be linearizable.
import test from 'ava';
import { prng } from '../helpers/raw-rpc.js';
import { clusterKeySpace, startCluster } from '../helpers/keyspace.js';
import { checkProposers, startProposers } from '../helpers/proposers.js';


test.serial('registers stay linearizable while nodes are killed and restarted', async (t) => {
  const seed = Number(process.env['QFS_SEED'] ?? Date.now() % 1_000_000);
  t.log(`seed ${seed} (replay with QFS_SEED=${seed})`);
  const random = prng(seed);
  const rc = await startCluster(t, 3);
  const durationMs = 8000;
  const proposers = startProposers(t, rc.cluster, { count: 4, seed, durationMs });

  // Chaos: kill a random node with SIGKILL, bring it back, now and then two at once.
  const chaosEnd = Date.now() + durationMs - 1000;
  let kills = 0;
  while (Date.now() < chaosEnd) {
    await new Promise((r) => setTimeout(r, 300 + random() * 700));
    const ids = ['n1', 'n2', 'n3'];
    const victims = random() < 0.2 ? ids.filter(() => random() < 0.67).slice(0, 2) : [ids[Math.floor(random() * 3)]!];
    for (const id of victims) rc.nodes.get(id)!.kill('SIGKILL');
    kills += victims.length;
    await Promise.all(victims.map((id) => rc.nodes.get(id)!.exited));
    await new Promise((r) => setTimeout(r, 200 + random() * 800));
    await Promise.all(victims.map((id) => rc.start(id)));
  }
  await Promise.all(proposers.map((p) => p.done));
  t.true(kills > 0);

  const ks = clusterKeySpace(t, rc);
  await ks.waitForPeers(5000);
  const operations = await checkProposers(t, proposers, ks, { seed, groups: 1, minOk: 100 });
  t.log(`${operations} operations, ${kills} node kills`);
});
