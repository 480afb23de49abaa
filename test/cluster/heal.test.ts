// Self-heal on real node processes: a node that was down while records and
// chunks were written gets them back with no command run (the other nodes'
// heal passes find it lacking and copy what it missed).
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { ClusterKeySpace } from '../../src/cluster/cluster-keyspace.js';
import { Healer, type HealCounts } from '../../src/cluster/healer.js';
import { holdersOfRecord } from '../../src/util/replica-sets.js';
import { compareBallots } from '../../src/util/ballot.js';
import { silentLogger } from '../../src/util/log.js';
import { recordKey } from '../../src/keyspace/types.js';
import type { ChunkId } from '../../src/util/ids.js';
import { connect, runCli, startNode, writeCluster, type NodeProcess, type TestCluster } from '../helpers/cluster.js';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isQfsError } from '../../src/util/errors.js';
import { open } from '../../src/util/envelope.js';
import type { AcceptorState } from '../../src/util/paxos.js';

/** A key space over the test's nodes without hints: only self-heal brings a node that was away up to date. */
const keySpace = (cluster: TestCluster, writeQuorum: number): ClusterKeySpace =>
  new ClusterKeySpace({
    clusterName: cluster.name,
    secret: cluster.secret,
    nodes: cluster.nodes.map((n) => ({ id: n.id, url: n.url, weight: 1, zone: null })),
    replication: 3,
    writeQuorum,
    requestTimeoutMs: 5000,
    connectTimeoutMs: 1000,
    log: silentLogger(),
    hintIntervalMs: 0,
  });

const key = (i: number): Buffer => recordKey(Buffer.from(`h${i % 13}`), Buffer.from(`k${i}`));

for (const [label, interval] of [['passes every second', '1s'], ['a pass as soon as the others see it back (passes every 10 minutes)', '10m']] as const) test(`a node that missed writes while it was down gets every record and chunk back with no command run: ${label}`, async (t) => {
  const cluster = await writeCluster(t, 3);
  const heal = ['--heal-interval', interval];
  const nodes = new Map<string, NodeProcess>();
  for (const id of ['n1', 'n2', 'n3']) nodes.set(id, await startNode(t, cluster, id, heal));
  // No hints: the writer is gone before the node comes back, so only self-heal can bring it up to date.
  const ks = keySpace(cluster, 2);
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
  // What the passes did is in the nodes' /metrics: summed over the three, they repaired records and copied chunks.
  let repaired = 0;
  let copied = 0;
  for (const n of cluster.nodes) {
    const text = await fetch(`http://127.0.0.1:${n.port}/metrics`).then((res) => res.text());
    t.regex(text, /^quorumfs_heal_running [01]$/m);
    t.regex(text, /^quorumfs_mover_running 0$/m);
    repaired += Number(/^quorumfs_heal_records_repaired_total (\d+)$/m.exec(text)?.[1] ?? NaN);
    copied += Number(/^quorumfs_heal_chunks_copied_total (\d+)$/m.exec(text)?.[1] ?? NaN);
  }
  t.true(repaired > 0, `records repaired by self-heal, by /metrics: ${repaired}`);
  t.true(copied > 0, `chunks copied by self-heal, by /metrics: ${copied}`);
});

/** Flips a bit in every copy of `marker` in a stopped node's record store (lmdb keeps stale page copies too). */
async function rotRecord(dataDir: string, marker: string): Promise<number> {
  const file = join(dataDir, 'records', 'data.mdb');
  const bytes = await readFile(file);
  let copies = 0;
  for (let at = bytes.indexOf(Buffer.from(marker)); at >= 0; at = bytes.indexOf(Buffer.from(marker), at + 1)) {
    bytes[at + 3]! ^= 0x10;
    copies++;
  }
  await writeFile(file, bytes);
  return copies;
}

test('a flipped byte in a stored record is detected, reads still answer from the replicas, and scrub or self-heal writes the chosen value back', async (t) => {
  const cluster = await writeCluster(t, 3);
  const nodes = new Map<string, NodeProcess>();
  // Self-heal off at first, so that scrub's finding is scrub's own.
  const off = ['--heal-interval', '0'];
  for (const id of ['n1', 'n2', 'n3']) nodes.set(id, await startNode(t, cluster, id, off));
  const ks = keySpace(cluster, 3);
  t.teardown(() => ks.close());
  await ks.ready;
  const byScrub = key(1);
  const byHeal = key(2);
  await ks.change(byScrub, () => Buffer.from('ROT-MARKER-healed-by-scrub'));
  await ks.change(byHeal, () => Buffer.from('ROT-MARKER-healed-by-self-heal'));
  for (let i = 3; i < 30; i++) await ks.change(key(i), () => Buffer.from(`v${i}`));
  // Every replica holds both (W = 3 above), so the damage below is all that differs.
  const payload = (s: AcceptorState): string | null => (s.value.kind === 'value' ? (open(s.value).payload?.toString() ?? null) : null);

  await nodes.get('n3')!.stop();
  t.true((await rotRecord(cluster.nodes[2]!.dataDir, 'ROT-MARKER-healed-by-scrub')) > 0);
  nodes.set('n3', await startNode(t, cluster, 'n3', off));
  const n3 = connect(t, cluster, 'n3');
  n3.rpc.epoch = 1;
  const err = await n3.read(byScrub).then(
    () => null,
    (e: unknown) => e,
  );
  t.true(isQfsError(err, 'corrupt'), `n3 does not answer with the damaged state: ${String(err)}`);
  t.is((await ks.read(byScrub))?.toString(), 'ROT-MARKER-healed-by-scrub', 'a read answers from the other replicas');
  const r = await runCli(['scrub', '--config', cluster.configPath, '--json', '--node', 'n3'], { timeoutMs: 120_000 });
  t.is(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout) as { records: { checked: number; lost: number; healed: number; failed: number } };
  t.like(summary.records, { lost: 1, healed: 1, failed: 0 });
  t.true(summary.records.checked >= 29);
  t.is(payload(await n3.read(byScrub)), 'ROT-MARKER-healed-by-scrub', 'scrub wrote the chosen value back to n3');
  const metrics = await fetch(`http://127.0.0.1:${cluster.nodes[2]!.port}/metrics`).then((res) => res.text());
  t.regex(metrics, /^quorumfs_records_lost_total [1-9]/m);

  // Self-heal: n2 comes back with a damaged record and its own pass finds and heals it.
  await nodes.get('n2')!.stop();
  t.true((await rotRecord(cluster.nodes[1]!.dataDir, 'ROT-MARKER-healed-by-self-heal')) > 0);
  nodes.set('n2', await startNode(t, cluster, 'n2', ['--heal-interval', '1s']));
  const n2 = connect(t, cluster, 'n2');
  n2.rpc.epoch = 1;
  const until = Date.now() + 60_000;
  let state: AcceptorState | null = null;
  while (Date.now() < until) {
    state = await n2.read(byHeal).catch(() => null);
    if (state) break;
    await new Promise((res) => setTimeout(res, 250));
  }
  t.truthy(state, 'within 60 s, with no command run, n2 holds a good copy again');
  t.is(state ? payload(state) : null, 'ROT-MARKER-healed-by-self-heal');
});

const spread = (i: number): Buffer => recordKey(Buffer.from(`d${i % 97}`), Buffer.from(`k${i}`));

/** Four nodes with no heal passes or movers of their own (the tests run the passes they count), and a key space over them. */
async function fourNodes(t: ExecutionContext): Promise<{ cluster: TestCluster; args: string[]; nodes: Map<string, NodeProcess>; ks: ClusterKeySpace }> {
  const cluster = await writeCluster(t, 4);
  const args = ['--heal-interval', '0', '--mover-grace', '0'];
  const nodes = new Map<string, NodeProcess>();
  for (const id of ['n1', 'n2', 'n3', 'n4']) nodes.set(id, await startNode(t, cluster, id, args));
  const ks = keySpace(cluster, 2);
  t.teardown(() => ks.close());
  await ks.ready;
  return { cluster, args, nodes, ks };
}

test('self-heal by range digests per page (the full walk): once replicas agree no page is compared key by key; after a node missed writes only the pages that differ are, and healing them brings every page back to agreeing', async (t) => {
  const { cluster, args, nodes, ks } = await fourNodes(t);
  for (let i = 0; i < 1200; i++) await ks.change(spread(i), () => Buffer.from(`a${i}`));
  const healer = new Healer(ks, 'n1', { intervalMs: 3_600_000, settleMs: 200, pageSize: 100, log: silentLogger(), digests: 'pages' });
  /** Passes until one finds every page agreeing (the last accepts of the writes land meanwhile). */
  const passUntilAgreed = async (): Promise<{ first: HealCounts; last: HealCounts; passes: number }> => {
    const first = await healer.pass();
    let last = first;
    let passes = 1;
    for (const until = Date.now() + 60_000; last.rangesScanned > 0 || last.recordsSuspect > 0; passes++) {
      if (Date.now() > until) throw new Error(`pages still differ after 60 s: ${JSON.stringify(last)}`);
      last = await healer.pass();
    }
    return { first, last, passes };
  };
  const idle = await passUntilAgreed();
  t.true(idle.last.rangesAgreed >= 12, `every page of n1's records agreed with each other replica by digest: ${JSON.stringify(idle.last)}`);
  t.is(idle.last.recordsRepaired, 0);
  // The same pass without digests compares every page key by key.
  const keyByKey = await new Healer(ks, 'n1', { intervalMs: 3_600_000, settleMs: 200, pageSize: 100, log: silentLogger(), digests: false }).pass();
  t.is(keyByKey.rangesAgreed, 0);
  t.is(keyByKey.rangesScanned, idle.last.rangesAgreed, 'as many pages as the digests settled');

  // n4 misses changes of a few keys.
  await nodes.get('n4')!.stop();
  for (let i = 0; i < 30; i++) await ks.change(spread(i), () => Buffer.from(`b${i}`));
  nodes.set('n4', await startNode(t, cluster, 'n4', args));
  const n4 = ks.peer('n4')!;
  for (const until = Date.now() + 30_000; !n4.up; ) {
    if (Date.now() > until) throw new Error('n4 did not come back up in 30 s');
    n4.connect();
    await new Promise((r) => setTimeout(r, 100));
  }
  const healed = await passUntilAgreed();
  t.true(healed.first.rangesScanned > 0, 'the pages holding what n4 missed were compared key by key');
  t.true(healed.first.rangesAgreed > 0, 'the rest agreed by digest');
  t.true(healed.first.recordsRepaired > 0, `n1 repaired what n4 missed: ${JSON.stringify(healed.first)}`);
  const m = ks.view.membership;
  for (let i = 0; i < 30; i++) {
    const holders = holdersOfRecord(m, spread(i));
    if (!holders.includes('n1') || !holders.includes('n4')) continue; // another node's heal pass would carry it
    const copies = (await ks.registers.states(spread(i))).filter((s) => s.peer.id === 'n4' && s.state);
    t.is(copies.length, 1);
    for (const h of copies) t.is(open(h.state!.value).payload?.toString(), `b${i}`, `n4's copy of key ${i}`);
  }
});

/** A node's /metrics series with this name (and labels, if any), or 0. */
async function metricOf(url: string, series: string): Promise<number> {
  const text = await (await fetch(url.replace(/^ws/, 'http').replace(/\/rpc$/, '') + '/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

test('self-heal by bucket digests kept as records change: an idle pass reads no record anywhere; after a node missed writes only the buckets that differ are read, from both sides, and the node that missed them heals itself too', async (t) => {
  const { cluster, args, nodes, ks } = await fourNodes(t);
  for (let i = 0; i < 1200; i++) await ks.change(spread(i), () => Buffer.from(`a${i}`));
  const healerOf = (id: string): Healer => new Healer(ks, id, { intervalMs: 3_600_000, settleMs: 200, log: silentLogger() });
  const n1 = healerOf('n1');
  const passUntilAgreed = async (h: Healer): Promise<{ first: HealCounts; last: HealCounts }> => {
    const first = await h.pass();
    let last = first;
    for (const until = Date.now() + 60_000; last.rangesScanned > 0 || last.recordsSuspect > 0 || last.failures > 0; ) {
      if (Date.now() > until) throw new Error(`buckets still differ after 60 s: ${JSON.stringify(last)}`);
      last = await h.pass();
    }
    return { first, last };
  };
  await passUntilAgreed(n1);
  const scans = async (): Promise<number> => {
    let sum = 0;
    for (const n of cluster.nodes) {
      for (const op of ['record_scan', 'record_bucket_scan', 'record_digest', 'chunk_list', 'chunk_has', 'chunk_bucket_list']) sum += await metricOf(n.url, `quorumfs_rpc_requests_total{op="${op}",status="ok"}`);
    }
    return sum;
  };
  const builds = async (): Promise<number> => {
    let sum = 0;
    for (const n of cluster.nodes) sum += await metricOf(n.url, 'quorumfs_record_digest_builds_total');
    return sum;
  };
  const [scansBefore, buildsBefore] = [await scans(), await builds()];
  t.true(buildsBefore >= 1, 'the digests were built');
  const idle = await n1.pass();
  t.is(idle.rangesScanned, 0, JSON.stringify(idle));
  t.is(idle.rangesAgreed, 3 * 1024, 'every bucket agreed with each of the three other nodes');
  t.true(idle.recordsChecked >= 600, `the digests covered n1's records: ${JSON.stringify(idle)}`);
  t.is(await scans(), scansBefore, 'an idle pass read no record and listed no chunk on any node');
  t.is(await builds(), buildsBefore, 'and no node walked its store again: the digests were kept as records changed');

  // n4 misses changes of 30 keys and 40 new ones.
  await nodes.get('n4')!.stop();
  for (let i = 0; i < 30; i++) await ks.change(spread(i), () => Buffer.from(`b${i}`));
  for (let i = 1200; i < 1240; i++) await ks.change(spread(i), () => Buffer.from(`c${i}`));
  const missed: ChunkId[] = [];
  for (let i = 0; i < 12; i++) missed.push(await ks.putChunk(randomBytes(3000 + i)));
  nodes.set('n4', await startNode(t, cluster, 'n4', args));
  const p4 = ks.peer('n4')!;
  for (const until = Date.now() + 30_000; !p4.up; ) {
    if (Date.now() > until) throw new Error('n4 did not come back up in 30 s');
    p4.connect();
    await new Promise((r) => setTimeout(r, 100));
  }
  // n4 heals itself: it finds in the others' buckets what it lacks.
  const self4 = await passUntilAgreed(healerOf('n4'));
  t.true(self4.first.rangesScanned > 0 && self4.first.rangesScanned <= 3 * 70, `only buckets holding what n4 missed were read: ${JSON.stringify(self4.first)}`);
  t.true(self4.first.recordsRepaired > 0, `n4 repaired what it missed: ${JSON.stringify(self4.first)}`);
  const m = ks.view.membership;
  let placedOnN4 = 0;
  for (let i = 0; i < 1240; i++) {
    if (i >= 30 && i < 1200) continue;
    if (!holdersOfRecord(m, spread(i)).includes('n4')) continue;
    placedOnN4++;
    const copy = (await ks.registers.states(spread(i))).find((s) => s.peer.id === 'n4')?.state;
    t.is(copy ? open(copy.value).payload?.toString() : null, i < 30 ? `b${i}` : `c${i}`, `n4's copy of key ${i}`);
  }
  t.true(placedOnN4 > 0);
  t.true(self4.first.chunksCopied > 0, `n4 copied to itself the chunks it missed: ${JSON.stringify(self4.first)}`);
  const n4 = connect(t, cluster, 'n4');
  n4.rpc.epoch = m.epoch;
  const placedChunks = missed.filter((id) => ks.chunks.replicasOf(id).some((p) => p.id === 'n4'));
  t.true(placedChunks.length > 0);
  t.deepEqual(await n4.hasChunks(placedChunks), placedChunks.map(() => true), 'every chunk placed on n4 is there');
  // And n1's next pass agrees with everyone.
  const after = await passUntilAgreed(n1);
  t.is(after.last.rangesScanned, 0);
});

test('a heal pass with a rate copies what a node missed no faster than the rate (--heal-rate)', async (t) => {
  const cluster = await writeCluster(t, 3);
  const args = ['--heal-interval', '0', '--mover-grace', '0'];
  const nodes = new Map<string, NodeProcess>();
  for (const id of ['n1', 'n2', 'n3']) nodes.set(id, await startNode(t, cluster, id, args));
  const ks = keySpace(cluster, 2);
  t.teardown(() => ks.close());
  await ks.ready;
  await nodes.get('n3')!.stop();
  for (let i = 0; i < 4; i++) await ks.putChunk(randomBytes(40_000 + i));
  nodes.set('n3', await startNode(t, cluster, 'n3', args));
  const p3 = ks.peer('n3')!;
  for (const until = Date.now() + 30_000; !p3.up; ) {
    if (Date.now() > until) throw new Error('n3 did not come back up in 30 s');
    p3.connect();
    await new Promise((r) => setTimeout(r, 100));
  }
  const rate = 80_000;
  const healer = new Healer(ks, 'n1', { intervalMs: 3_600_000, log: silentLogger(), rateBytesPerSec: rate });
  const started = Date.now();
  const c = await healer.pass();
  const elapsed = Date.now() - started;
  t.is(c.chunksCopied, 4, JSON.stringify(c));
  t.true(c.bytesCopied >= 160_000, JSON.stringify(c));
  // A lower bound the throttle guarantees (it waits until bytes / rate have passed), not a speed.
  t.true(elapsed >= (c.bytesCopied / rate) * 1000 - 20, `${elapsed} ms for ${c.bytesCopied} bytes at ${rate} B/s`);
});
