// One node's self-heal pass over a running cluster: by bucket digests (the
// default; the first such pass has every node build its digests from one walk
// of its store), by range digests per page, and key by key, in turn: how long the pass takes, what it walked, and how
// many bytes the other nodes sent for it (their /metrics, before and after).
// The cluster should be idle meanwhile (a pass over replicas that agree is
// the case digests are for); start one with `quorumfs dev` and fill it.
//
// usage: node dist/scripts/bench/heal-pass.js --config F [--node ID] [--rounds N]
import { parseArgs } from 'node:util';
import { Healer, type HealCounts } from '../../src/cluster/healer.js';
import { openCluster } from '../../src/cli/wiring.js';
import { silentLogger } from '../../src/util/log.js';

const { values } = parseArgs({
  options: {
    config: { type: 'string' },
    node: { type: 'string', default: 'n1' },
    rounds: { type: 'string', default: '3' },
  },
});
if (!values.config) {
  process.stderr.write('usage: heal-pass --config FILE [--node ID] [--rounds N]\n');
  process.exit(2);
}
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds: expected a positive integer');

const { ks } = await openCluster(values.config, silentLogger(), { hintIntervalMs: 0 });
await ks.waitForPeers(5000);
const others = ks.peers.filter((p) => p.id !== values.node);

/** Response bytes the other nodes have sent so far (quorumfs_rpc_sent_bytes_total). */
async function sentByOthers(): Promise<number> {
  let sum = 0;
  for (const p of others) {
    const url = p.url.replace(/^ws/, 'http').replace(/\/rpc$/, '') + '/metrics';
    const text = await (await fetch(url)).text();
    const m = /^quorumfs_rpc_sent_bytes_total (\d+)/m.exec(text);
    if (!m) throw new Error(`${p.id}: no quorumfs_rpc_sent_bytes_total in ${url}`);
    sum += Number(m[1]);
  }
  return sum;
}

const rows: string[] = [];
for (let round = 0; round < rounds; round++) {
  for (const digests of ['buckets', 'pages', false] as const) {
    const healer = new Healer(ks, values.node, { intervalMs: 3_600_000, log: silentLogger(), digests });
    const before = await sentByOthers();
    const t0 = performance.now();
    const c: HealCounts = await healer.pass();
    const ms = performance.now() - t0;
    const bytes = (await sentByOthers()) - before;
    rows.push(
      `| ${digests === 'buckets' ? 'bucket digests' : digests === 'pages' ? 'range digests per page' : 'key by key'} | ${c.recordsChecked} | ${c.rangesAgreed} | ${c.rangesScanned} | ${c.recordsSuspect} | ${ms.toFixed(0)} | ${(bytes / 1048576).toFixed(2)} |`,
    );
  }
}
process.stdout.write(
  [
    `self-heal pass of ${values.node} (${others.length} other nodes)`,
    '',
    '| pass | records checked | buckets or pages agreed by digest | compared key by key | suspects | ms | MiB sent by the other nodes |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...rows,
    '',
  ].join('\n'),
);
await ks.close();
