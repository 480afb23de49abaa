// A separate lease-holder process for the takeover test: takes a scope lease,
// then commits batches (every key of the scope set to the batch number, in
// parallel, under the lease) one after the other, printing "committed N" once
// batch N is chosen, until it is killed. Not a test file (ava runs *.test.js only).
import { ClusterKeySpace } from '../../src/cluster/cluster-keyspace.js';
import { ScopeLease } from '../../src/cluster/scope-lease.js';
import { recordKey } from '../../src/keyspace/types.js';
import { systemClock } from '../../src/util/clock.js';
import { silentLogger } from '../../src/util/log.js';

interface WorkerArgs {
  clusterName: string;
  secret: string;
  nodes: Array<{ id: string; url: string }>;
  group: string;
  keys: string[];
  periodMs: number;
  session: string;
}

const args = JSON.parse(process.argv[2]!) as WorkerArgs;
const group = Buffer.from(args.group);
const key = (s: string): Buffer => recordKey(group, Buffer.from(s));
const ks = new ClusterKeySpace({
  clusterName: args.clusterName,
  secret: Buffer.from(args.secret),
  nodes: args.nodes.map((n) => ({ ...n, weight: 1, zone: null })),
  replication: 3,
  writeQuorum: 2,
  requestTimeoutMs: 1500,
  connectTimeoutMs: 500,
  log: silentLogger(),
  hintIntervalMs: 0,
});
await ks.waitForPeers(5000);
const lease = await ScopeLease.acquire(
  {
    registers: ks.registers,
    lease: recordKey(group, Buffer.from('@lease')),
    group: Buffer.concat([Buffer.from([group.length]), group]),
    start: key('k'),
    end: key('l'),
    periodMs: args.periodMs,
    drift: 0.05,
    clock: systemClock,
  },
  args.session,
  10_000,
);
if (!lease) {
  process.stdout.write('no lease\n');
  process.exit(1);
}
await lease.settle();
process.stdout.write(`term ${lease.term}\n`);
for (let n = 1; ; n++) {
  lease.check();
  await Promise.all(args.keys.map((k) => ks.change(key(k), () => Buffer.from(String(n)), { scope: lease.scope })));
  process.stdout.write(`committed ${n}\n`);
}
