// Membership on real node processes (docs/architecture.md, "Membership"):
// nodes keep the membership they learn and refuse calls placed by an older
// one; clients learn it from the refusal; the mover carries a change through
// while the data stays readable.
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { ClusterKeySpace } from '../../src/cluster/cluster-keyspace.js';
import { MOVE_PROGRESS_KEY, Mover, decodeMoveProgress } from '../../src/cluster/mover.js';
import { replicaSet } from '../../src/util/replica-sets.js';
import { isMembershipGroup } from '../../src/cluster/membership-view.js';
import { QfsError, isQfsError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/log.js';
import { decodeMembership, encodeMembership, requestChange, markRewritten, finishChange } from '../../src/util/membership.js';
import { groupOf, recordKey } from '../../src/keyspace/types.js';
import { connect } from '../helpers/cluster.js';
import { startCluster, type RunningCluster } from '../helpers/keyspace.js';
import type { ChunkId } from '../../src/util/ids.js';

/** A key space whose cluster.json lists only `ids` (the rest of the test cluster is not in it). */
function keySpaceOver(t: ExecutionContext, rc: RunningCluster, ids: string[]): ClusterKeySpace {
  const ks = new ClusterKeySpace({
    clusterName: rc.cluster.name,
    secret: rc.cluster.secret,
    nodes: rc.cluster.nodes.filter((n) => ids.includes(n.id)).map((n) => ({ id: n.id, url: n.url, weight: 1, zone: null })),
    replication: 3,
    writeQuorum: 2,
    requestTimeoutMs: 5000,
    connectTimeoutMs: 1000,
    log: silentLogger(),
    hintIntervalMs: 0,
  });
  t.teardown(() => ks.close());
  return ks;
}

const key = (i: number): Buffer => recordKey(Buffer.from(`g${i % 97}`), Buffer.from(`k${i}`));

test('a node keeps the membership it learns, refuses older epochs with it, and asks for newer ones', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = keySpaceOver(t, rc, ['n1', 'n2', 'n3']);
  await ks.ready;
  // A node that knows no membership yet takes the client's (format's) on the first call.
  await ks.change(key(1), () => Buffer.from('one'));
  const n1 = connect(t, rc.cluster, 'n1');
  const learned = decodeMembership((await n1.getMembership())!);
  t.is(learned.epoch, 1);
  t.deepEqual(learned.nodes.map((n) => n.id), ['n1', 'n2', 'n3']);
  // A call that names no epoch (or an older one) is refused once the node has one.
  const err = await t.throwsAsync(n1.read(key(1)));
  t.true(isQfsError(err, 'stale_epoch'), String(err));
  // An install of something that is not a membership changes nothing.
  await t.throwsAsync(n1.installMembership(Buffer.from('junk')));
  t.is(decodeMembership((await n1.getMembership())!).epoch, 1);
  // A newer one is kept, durably: after a restart the node still refuses epoch 1.
  const epoch2 = requestChange(learned, { kind: 'set', id: 'n1', weight: 2 });
  t.is(await n1.installMembership(encodeMembership(epoch2)), 2);
  t.is(await n1.installMembership(encodeMembership(learned)), 2, 'an older membership is not taken');
  await rc.nodes.get('n1')!.stop();
  await rc.start('n1');
  const again = connect(t, rc.cluster, 'n1');
  t.is(decodeMembership((await again.getMembership())!).epoch, 2);
  again.rpc.epoch = 1;
  t.true(isQfsError(await t.throwsAsync(again.read(key(1))), 'stale_epoch'));
  again.rpc.epoch = 3;
  t.true(isQfsError(await t.throwsAsync(again.read(key(1))), 'epoch_ahead'));
  again.rpc.epoch = 2;
  t.truthy(await again.read(key(1)));
});

test('a client placed by an old membership is refused, learns the new one from the node and carries on', async (t) => {
  const rc = await startCluster(t, 3);
  const old = keySpaceOver(t, rc, ['n1', 'n2', 'n3']);
  await old.ready;
  for (let i = 0; i < 20; i++) await old.change(key(i), () => Buffer.from(`v${i}`));
  // Another client changes the membership (a weight: every node stays, the epoch moves three times).
  const admin = keySpaceOver(t, rc, ['n1', 'n2', 'n3']);
  await admin.ready;
  const mover = new Mover(admin, { log: silentLogger() });
  await mover.request({ kind: 'set', id: 'n2', weight: 3 });
  const done = await mover.run();
  t.is(done.epoch, 4);
  t.is(done.transition, null);
  t.is(old.membership.epoch, 1, 'the old client has not heard of it yet');
  for (let i = 0; i < 20; i++) t.is((await old.read(key(i)))?.toString(), `v${i}`);
  t.is(old.membership.epoch, 4, 'it learned the membership from a refusal');
  await old.change(key(0), () => Buffer.from('after'));
  t.is((await admin.read(key(0)))?.toString(), 'after');
  // A client started from a cluster.json that lists one old node learns the whole membership at start.
  const late = keySpaceOver(t, rc, ['n3']);
  await late.ready;
  t.is(late.membership.epoch, 4);
  t.deepEqual(late.peers.map((p) => p.id).sort(), ['n1', 'n2', 'n3']);
  t.is((await late.read(key(0)))?.toString(), 'after');
});

test('mistakes are refused with a clear error and change nothing', async (t) => {
  const rc = await startCluster(t, 3);
  const ks = keySpaceOver(t, rc, ['n1', 'n2', 'n3']);
  await ks.ready;
  const mover = new Mover(ks, { log: silentLogger() });
  const cases: Array<[string, Parameters<Mover['request']>[0], RegExp]> = [
    ['duplicate id', { kind: 'add', id: 'n2', url: 'ws://127.0.0.1:1', weight: 1, zone: null }, /already a member/],
    ['duplicate url', { kind: 'add', id: 'n9', url: rc.cluster.nodes[0]!.url, weight: 1, zone: null }, /already belongs/],
    ['fewer than R', { kind: 'drain', id: 'n1' }, /fewer than R/],
    ['unknown node', { kind: 'remove', id: 'n7', dead: true }, /no node n7/],
  ];
  for (const [label, change, message] of cases) {
    const err = await t.throwsAsync(mover.request(change), undefined, label);
    t.true(err instanceof QfsError && err.code === 'bad_request', `${label}: ${String(err)}`);
    t.regex(err!.message, message, label);
  }
  t.is((await mover.read()).epoch, 1);
});

test('grow 3 → 4 while the data is read: every record and chunk stays readable, the new node takes its share, old copies go', async (t) => {
  const rc = await startCluster(t, 4);
  const ks = keySpaceOver(t, rc, ['n1', 'n2', 'n3']);
  await ks.ready;
  const records = 300;
  for (let i = 0; i < records; i += 20) await Promise.all(Array.from({ length: 20 }, (_, j) => ks.change(key(i + j), () => Buffer.from(`v${i + j}`))));
  const chunks: Array<{ id: ChunkId; bytes: Buffer }> = [];
  for (let i = 0; i < 40; i++) {
    const bytes = randomBytes(8192 + i);
    chunks.push({ id: await ks.putChunk(bytes), bytes });
  }
  // A reader keeps reading through the change.
  let reading = true;
  let reads = 0;
  const readerKs = keySpaceOver(t, rc, ['n1', 'n2', 'n3']);
  await readerKs.ready;
  const reader = (async () => {
    while (reading) {
      const i = reads % records;
      const v = await readerKs.read(key(i));
      if (v?.toString() !== `v${i}`) throw new Error(`record ${i} read ${String(v)}`);
      const c = chunks[reads % chunks.length]!;
      if (!(await readerKs.getChunk(c.id)).equals(c.bytes)) throw new Error('chunk bytes differ');
      reads++;
    }
  })();
  const n4 = rc.cluster.nodes.find((n) => n.id === 'n4')!;
  const mover = new Mover(ks, { log: silentLogger() });
  await mover.request({ kind: 'add', id: 'n4', url: n4.url, weight: 1, zone: null });
  const done = await mover.run();
  reading = false;
  await reader;
  t.true(reads > 0);
  t.is(done.epoch, 4);
  t.deepEqual(done.nodes.map((n) => n.id), ['n1', 'n2', 'n3', 'n4']);
  t.is(readerKs.membership.epoch, 4, 'the reader followed');
  // Everything reads back through a client that learned the membership from one node.
  const fresh = keySpaceOver(t, rc, ['n2']);
  await fresh.ready;
  for (let i = 0; i < records; i++) t.is((await fresh.read(key(i)))?.toString(), `v${i}`);
  for (const c of chunks) t.true((await fresh.getChunk(c.id)).equals(c.bytes));
  // Each chunk is on exactly its nodes under the new membership: copied to n4 where it belongs, gone where it does not.
  const clients = Object.fromEntries(['n1', 'n2', 'n3', 'n4'].map((id) => {
    const c = connect(t, rc.cluster, id);
    c.rpc.epoch = 4;
    return [id, c];
  }));
  let onN4 = 0;
  for (const c of chunks) {
    const placed = replicaSet(done.nodes, 3, Buffer.from(c.id, 'hex'), false);
    for (const id of ['n1', 'n2', 'n3', 'n4']) {
      const [has] = await clients[id]!.hasChunks([c.id]);
      t.is(has, placed.includes(id), `chunk ${c.id.slice(0, 8)} on ${id}`);
      if (id === 'n4' && has) onN4++;
    }
  }
  t.true(onN4 >= 20 && onN4 <= 40, `n4 holds ${onN4} of 40 chunks (its share is 30)`);
  // The mover published its progress for status: the last report is the finished move.
  const progress = decodeMoveProgress(await fresh.read(MOVE_PROGRESS_KEY));
  t.is(progress?.phase, 'done');
  t.true((progress?.recordsListed ?? 0) >= records && (progress?.recordsRewritten ?? 0) > 0, JSON.stringify(progress));
  t.true((progress?.chunksCopied ?? 0) > 0 && (progress?.bytesCopied ?? 0) >= (progress?.chunksCopied ?? 0) * 8192);
  t.is(progress?.chunksTotal, 40, 'the chunks to walk, estimated from the nodes at the start');
  // Record copies: each node holds exactly the keys placed on it (old copies were dropped after the change).
  t.true((progress?.recordsDropped ?? 0) > 0, 'old record copies were dropped');
  for (const id of ['n1', 'n2', 'n3', 'n4']) {
    const { entries } = await clients[id]!.scan(Buffer.from([0]), null, 10_000);
    const misplaced = entries.filter((e) => !replicaSet(done.nodes, 3, groupOf(e.key), isMembershipGroup(groupOf(e.key))).includes(id));
    t.deepEqual(misplaced.map((e) => e.key.toString()), [], `${id} holds only its own keys`);
  }
  // Records the new node now holds: about its share of the keys.
  const stat = await clients['n4']!.stat();
  t.true(stat.records >= records * 0.5, `n4 holds ${stat.records} records`);
});

test('a change left half done by a mover that died is carried on by the next one', async (t) => {
  const rc = await startCluster(t, 4);
  const ks = keySpaceOver(t, rc, ['n1', 'n2', 'n3', 'n4']);
  await ks.ready;
  for (let i = 0; i < 100; i++) await ks.change(key(i), () => Buffer.from(`v${i}`));
  // The first mover asks for the drain and stops at once (it "died").
  const first = new Mover(ks, { log: silentLogger() });
  const asked = await first.request({ kind: 'drain', id: 'n4' });
  t.is(asked.transition?.phase, 'joint');
  // The next one, in another client, finds the change in the record and finishes it.
  const other = keySpaceOver(t, rc, ['n1']);
  await other.ready;
  const done = await new Mover(other, { log: silentLogger() }).run();
  t.is(done.transition, null);
  t.is(done.nodes.find((n) => n.id === 'n4')?.state, 'draining');
  for (let i = 0; i < 100; i++) t.is((await other.read(key(i)))?.toString(), `v${i}`);
  // A step of a stale mover changes nothing: markRewritten/finishChange name an epoch that is gone.
  t.is(markRewritten(done, asked.epoch), null);
  t.is(finishChange(done, asked.epoch), null);
  // Then the drained node can go, and reads still work with it stopped.
  const removed = await new Mover(other, { log: silentLogger() }).request({ kind: 'remove', id: 'n4', dead: false }).then(() => new Mover(other, { log: silentLogger() }).run());
  t.deepEqual(removed.nodes.map((n) => n.id), ['n1', 'n2', 'n3']);
  await rc.nodes.get('n4')!.stop();
  for (let i = 0; i < 100; i++) t.is((await ks.read(key(i)))?.toString(), `v${i}`);
});

test('a raw call placed by no epoch reaches a node that knows none, and is refused once it knows one', async (t) => {
  const rc = await startCluster(t, 1);
  const c = connect(t, rc.cluster, 'n1');
  await c.read(recordKey(Buffer.from('g'), Buffer.from('k'))); // epoch 0, no membership: answered
  t.is(await c.getMembership(), null);
  const m = decodeMembership(encodeMembership({ epoch: 5, r: 1, nodes: [{ id: 'n1', url: rc.cluster.nodes[0]!.url, weight: 1, zone: null, state: 'active' }], transition: null, queued: [] }));
  t.is(await c.installMembership(encodeMembership(m)), 5);
  t.true(isQfsError(await t.throwsAsync(c.read(recordKey(Buffer.from('g'), Buffer.from('k')))), 'stale_epoch'));
});
