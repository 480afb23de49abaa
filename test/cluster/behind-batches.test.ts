// Changes written behind (CallOpts.behind): their accepts travel to each node
// in `record_accept_many` frames, self-clocked (one frame in flight per node,
// the rest gather), and each accept is judged alone, as it would be in a frame
// of its own. Over real node processes.
import test, { type ExecutionContext } from 'ava';
import { recordKey } from '../../src/keyspace/types.js';
import { clusterKeySpace, startCluster } from '../helpers/keyspace.js';
import { ScopeLease } from '../../src/cluster/scope-lease.js';
import { systemClock } from '../../src/util/clock.js';
import { isQfsError } from '../../src/util/errors.js';

const key = (s: string) => recordKey(Buffer.from('behind'), Buffer.from(s));
const frames = (ks: ReturnType<typeof clusterKeySpace>) => ks.peers.reduce((n, p) => n + p.calls, 0);

/** Session a#1 takes the lease of `group`'s keys k… (2 s period). */
const leaseOn = (ks: ReturnType<typeof clusterKeySpace>, group: Buffer) =>
  ScopeLease.acquire(
    { registers: ks.registers, lease: recordKey(group, Buffer.from('@lease')), group: Buffer.concat([Buffer.from([group.length]), group]), start: recordKey(group, Buffer.from('k')), end: recordKey(group, Buffer.from('l')), periodMs: 2000, drift: 0.05, clock: systemClock },
    'a#1',
    5000,
  );

/** A key space with `opts` whose session a#1 holds the lease of `group`'s keys k… (and k1, its first key). */
async function leasedKeySpace(t: ExecutionContext, opts: Parameters<typeof clusterKeySpace>[2], group: Buffer) {
  const rc = await startCluster(t, 3);
  const a = clusterKeySpace(t, rc, opts);
  await a.waitForPeers(5000);
  const lease = await leaseOn(a, group);
  t.truthy(lease);
  return { rc, a, lease: lease!, k1: recordKey(group, Buffer.from('k1')) };
}

/** Waits until `done()` holds, for 10 s at most (the assertion after it says what failed). */
async function until(done: () => boolean): Promise<void> {
  for (const end = Date.now() + 10_000; !done() && Date.now() < end; ) await new Promise((r) => setTimeout(r, 5));
}

test.serial('a stream of changes written behind reaches every node in a few frames, and reads back whole from another proposer', async (t) => {
  const rc = await startCluster(t, 3);
  const a = clusterKeySpace(t, rc);
  const b = clusterKeySpace(t, rc);
  await Promise.all([a.waitForPeers(5000), b.waitForPeers(5000)]);
  const n = 300;
  // Each key changed twice by a: the second change is one accept (promised by the first).
  await Promise.all(Array.from({ length: n }, (_, i) => a.change(key(`k${i}`), () => Buffer.from(`v${i}`))));
  const before = frames(a);
  await Promise.all(Array.from({ length: n }, (_, i) => a.change(key(`k${i}`), (old) => Buffer.concat([old ?? Buffer.from('?'), Buffer.from('+')]), { behind: true })));
  const behindFrames = frames(a) - before;
  t.true(behindFrames < n, `${n} one-accept changes to 3 nodes took ${behindFrames} frames`);
  for (let i = 0; i < n; i += 7) t.deepEqual(await b.read(key(`k${i}`)), Buffer.from(`v${i}+`));
  // The same changes not written behind: a frame per accept per node.
  const before2 = frames(a);
  await Promise.all(Array.from({ length: n }, (_, i) => a.change(key(`k${i}`), (old) => Buffer.concat([old ?? Buffer.from('?'), Buffer.from('!')]))));
  t.true(frames(a) - before2 >= 2 * n, `unbatched: ${frames(a) - before2} frames`);
  t.deepEqual(await b.read(key('k0')), Buffer.from('v0+!'));
});

test.serial('big values written behind are split into frames under the frame limit (or sent alone), and all land', async (t) => {
  const rc = await startCluster(t, 3);
  const a = clusterKeySpace(t, rc);
  const b = clusterKeySpace(t, rc);
  await Promise.all([a.waitForPeers(5000), b.waitForPeers(5000)]);
  // 100 × 200 KiB (20 MiB per node, over the 16 MiB frame limit) and 8 × 600 KiB, all at once.
  const value = (i: number, size: number) => Buffer.alloc(size, i % 251);
  // Written once first: the changes behind are then one accept each, all in one tick.
  await Promise.all(Array.from({ length: 100 }, (_, i) => a.change(key(`big${i}`), () => Buffer.from('first'))));
  await Promise.all([
    ...Array.from({ length: 100 }, (_, i) => a.change(key(`big${i}`), () => value(i, 200 * 1024), { behind: true })),
    ...Array.from({ length: 8 }, (_, i) => a.change(key(`huge${i}`), () => value(i, 600 * 1024), { behind: true })),
  ]);
  for (let i = 0; i < 100; i += 11) t.deepEqual(await b.read(key(`big${i}`)), value(i, 200 * 1024));
  for (let i = 0; i < 8; i += 3) t.deepEqual(await b.read(key(`huge${i}`)), value(i, 600 * 1024));
});

test.serial('accepts written behind are judged one by one: a rival change in between makes one of them run a full round; nothing is lost or applied twice', async (t) => {
  const rc = await startCluster(t, 3);
  const a = clusterKeySpace(t, rc);
  const b = clusterKeySpace(t, rc);
  await Promise.all([a.waitForPeers(5000), b.waitForPeers(5000)]);
  const add = (old: Buffer | null) => Buffer.from(String(Number(old?.toString() ?? '0') + 1));
  for (const k of ['x', 'y', 'z']) await a.change(key(k), add);
  await b.change(key('y'), add); // a's promise on y is stale now; x and z still hold theirs
  const rounds = a.registers.stats.fullRounds;
  await Promise.all(['x', 'y', 'z'].map((k) => a.change(key(k), add, { behind: true })));
  t.true(a.registers.stats.fullRounds > rounds, 'the refused accept fell back to a full round');
  t.deepEqual(await b.read(key('x')), Buffer.from('2'));
  t.deepEqual(await b.read(key('y')), Buffer.from('3'));
  t.deepEqual(await b.read(key('z')), Buffer.from('2'));
  // Concurrent increments of one key written behind: batched per key, each applied once.
  await Promise.all(Array.from({ length: 50 }, () => a.change(key('c'), add, { behind: true })));
  t.deepEqual(await b.read(key('c')), Buffer.from('50'));
});

test.serial('with a node stopped, changes written behind still reach their quorum, and the node holds them once it is back (hints)', async (t) => {
  const rc = await startCluster(t, 3);
  const a = clusterKeySpace(t, rc, { requestTimeoutMs: 3000, hintIntervalMs: 200 });
  await a.waitForPeers(5000);
  await rc.nodes.get('n3')!.stop();
  await Promise.all(Array.from({ length: 100 }, (_, i) => a.change(key(`d${i}`), () => Buffer.from(`w${i}`), { behind: true })));
  await rc.start('n3');
  await a.waitForPeers(5000);
  // Every hinted key repaired: n3's own copy of each equals n2's (same ballot, same bytes).
  while (a.registers.hints.size > 0) await new Promise((r) => setTimeout(r, 50));
  const peer = (id: string) => a.peers.find((p) => p.id === id)!;
  for (let i = 0; i < 100; i += 9) {
    const call = { deadline: Date.now() + 5000 };
    const [s2, s3] = await Promise.all([peer('n2').read(key(`d${i}`), call), peer('n3').read(key(`d${i}`), call)]);
    t.is(s3.value.kind, 'value', `d${i} on n3`);
    t.deepEqual(s3.accepted, s2.accepted);
    t.deepEqual(s3.value, s2.value);
  }
});

test.serial('learns of keys changed under a lease go to each node in batches, once per change, and leave every copy untagged', async (t) => {
  const rc = await startCluster(t, 3);
  const a = clusterKeySpace(t, rc);
  await a.waitForPeers(5000);
  const group = Buffer.from('behind-lease');
  const lease = await leaseOn(a, group);
  t.truthy(lease);
  // Count the learn frames each node is sent.
  let single = 0;
  let many = 0;
  let items = 0;
  for (const p of a.peers) {
    const learn = p.client.learn.bind(p.client);
    const learnMany = p.client.learnMany.bind(p.client);
    p.client.learn = (...args) => {
      single++;
      items++;
      return learn(...args);
    };
    p.client.learnMany = (list, opts) => {
      many++;
      items += list.length;
      return learnMany(list, opts);
    };
  }
  const n = 200;
  const k = (i: number) => recordKey(group, Buffer.from(`k${i}`));
  await Promise.all(Array.from({ length: n }, (_, i) => a.change(k(i), () => Buffer.from(`v${i}`), { scope: lease!.scope, behind: true })));
  while (a.registers.unlearned > 0) await new Promise((r) => setTimeout(r, 20));
  t.true(many > 0, 'batched learns were sent');
  t.true(single + many < n, `${n} keys learned on 3 nodes in ${single} single and ${many} batched frames`);
  t.true(items >= 2 * n, 'each key learned on a majority at least');
  t.true(items <= 3 * n + 30, `${items} learns sent for ${n} keys on 3 nodes: hardly any sent twice`);
  for (const p of a.peers) {
    for (let i = 0; i < n; i += 13) {
      const s = await p.read(k(i), { deadline: Date.now() + 5000 });
      t.is(s.tag, undefined, `k${i} untagged on ${p.id}`);
    }
  }
  t.true(await lease!.release());
});

test.serial('reads asked in one tick reach each node in record_read_many frames, answered one by one: a refused scoped read fails alone', async (t) => {
  const rc = await startCluster(t, 3);
  const a = clusterKeySpace(t, rc);
  const b = clusterKeySpace(t, rc);
  await Promise.all([a.waitForPeers(5000), b.waitForPeers(5000)]);
  const n = 300;
  await Promise.all(Array.from({ length: n }, (_, i) => a.change(key(`r${i}`), () => Buffer.from(`v${i}`))));
  let single = 0;
  let many = 0;
  for (const p of b.peers) {
    const read = p.client.read.bind(p.client);
    const readMany = p.client.readMany.bind(p.client);
    p.client.read = (...args) => {
      single++;
      return read(...args);
    };
    p.client.readMany = (list, opts) => {
      many++;
      return readMany(list, opts);
    };
  }
  const values = await Promise.all(Array.from({ length: n }, (_, i) => b.read(key(`r${i}`))));
  values.forEach((v, i) => t.deepEqual(v, Buffer.from(`v${i}`)));
  t.true(many > 0 && single + many < n, `${n} quorum reads took ${single} single and ${many} batched frames`);
  // One frame, three reads: a key, a key in a scope another session holds (fenced), a key never written.
  const group = Buffer.from('reads-lease');
  const lease = await leaseOn(a, group);
  t.truthy(lease);
  // The lease is held once a majority accepted it: ask the nodes in turn until one that knows it answers
  // (a node the lease record has not reached yet admits the read; that is not what is tested here).
  const frame = [
    { key: key('r1') },
    { key: recordKey(group, Buffer.from('k1')), scope: { ...lease!.scope, session: 'b#1' } },
    { key: key('never') },
  ];
  let p = b.peers[0]!;
  let answers = await p.client.readMany(frame);
  for (let i = 1, until = Date.now() + 10_000; !isQfsError(answers[1], 'fenced') && Date.now() < until; i++) {
    p = b.peers[i % b.peers.length]!;
    answers = await p.client.readMany(frame);
  }
  t.is(answers.length, 3);
  t.deepEqual(answers[0], await p.client.read(key('r1')), 'as a read of its own answers');
  t.true(isQfsError(answers[1], 'fenced'), String(answers[1]));
  t.false(answers[2] instanceof Error);
  t.is((answers[2] as { value: { kind: string } }).value.kind, 'empty');
  t.true(await lease!.release());
});

test.serial('accepts written behind wait in the gather window until someone waits on them: a later change of the key that is waited on, or an expedite, sends them at once', async (t) => {
  const rc = await startCluster(t, 3);
  // A window far longer than the test: whatever leaves early was sent by an expedite.
  const a = clusterKeySpace(t, rc, { behindGatherMs: 600_000 });
  const b = clusterKeySpace(t, rc);
  await Promise.all([a.waitForPeers(5000), b.waitForPeers(5000)]);
  const add = (old: Buffer | null) => Buffer.from(String(Number(old?.toString() ?? '0') + 1));
  await a.change(key('g'), add);
  await a.change(key('h'), add);
  const held = async (n: number): Promise<void> => {
    await until(() => a.peers.every((p) => p.heldBehind >= n));
  };
  // Accept frames only (learns of the changes above may still be on their way).
  let acceptFrames = 0;
  for (const p of a.peers) {
    const accept = p.client.accept.bind(p.client);
    const acceptMany = p.client.acceptMany.bind(p.client);
    p.client.accept = (...args) => {
      acceptFrames++;
      return accept(...args);
    };
    p.client.acceptMany = (...args) => {
      acceptFrames++;
      return acceptMany(...args);
    };
  }
  // A change written behind is held by every node's peer, and not sent.
  const before = acceptFrames;
  let behindDone = false;
  const behind = a.change(key('g'), add, { behind: true }).then((v) => (behindDone = true) && v);
  await held(1);
  t.deepEqual(a.peers.map((p) => p.heldBehind), [1, 1, 1]);
  t.is(acceptFrames, before, 'nothing left while nobody waited');
  t.false(behindDone);
  // A change of the same key that is waited on: the held accept goes first, then it.
  t.deepEqual(await a.change(key('g'), add), Buffer.from('3'));
  t.deepEqual(await behind, Buffer.from('2'));
  t.deepEqual(await b.read(key('g')), Buffer.from('3'));
  // Another held change, sent by an expedite (what a flush, an fsync or a reader of the key does).
  const second = a.change(key('h'), add, { behind: true });
  await held(1);
  t.deepEqual(a.peers.map((p) => p.heldBehind), [1, 1, 1]);
  a.expedite();
  t.deepEqual(a.peers.map((p) => p.heldBehind), [0, 0, 0]);
  t.deepEqual(await second, Buffer.from('2'));
  t.deepEqual(await b.read(key('h')), Buffer.from('2'));
  // 'soon' (a created file's name, which its close will wait for): no window, and what is held goes with it.
  const held3 = a.change(key('g'), add, { behind: true });
  await held(1);
  const sent = acceptFrames;
  t.deepEqual(await a.change(key('h'), add, { behind: 'soon' }), Buffer.from('3'));
  t.deepEqual(await held3, Buffer.from('4'));
  // Every node got both (one frame each, or the 'soon' one after a frame still on its way): nothing is left held.
  await until(() => a.peers.every((p) => p.heldBehind === 0));
  t.deepEqual(a.peers.map((p) => p.heldBehind), [0, 0, 0]);
  t.true(acceptFrames - sent <= 3, `${acceptFrames - sent} accept frames`);
});

test.serial('background learns wait with held accepts; a learn someone waits on (a release) sends the held accepts and itself at once', async (t) => {
  // A window far longer than the test: whatever leaves early was sent because someone waited.
  const { a, lease, k1 } = await leasedKeySpace(t, { behindGatherMs: 600_000 }, Buffer.from('learn-waits'));
  await a.change(key('other'), () => Buffer.from('o1'));
  // A change of another key written behind, held on every node's peer.
  const held = a.change(key('other'), () => Buffer.from('o2'), { behind: true });
  await until(() => a.peers.every((p) => p.heldBehind >= 1));
  t.deepEqual(a.peers.map((p) => p.heldBehind), [1, 1, 1]);
  // A change under the lease that is waited on (not held); its background learn, 2 ms later, waits with the held accept.
  await a.change(k1, () => Buffer.from('v1'), { scope: lease.scope });
  await until(() => a.peers.every((p) => p.learnsHeld >= 1));
  t.deepEqual(a.peers.map((p) => p.learnsHeld), [1, 1, 1]);
  t.deepEqual(a.peers.map((p) => p.heldBehind), [1, 1, 1], 'a background learn sent nothing early');
  // Learns a caller waits on (what a release does): they go now, with the held accept before them.
  t.is(await a.registers.learnChosen({ scope: lease.scope }), 0, 'k1 learned on a majority');
  t.deepEqual(a.peers.map((p) => p.heldBehind), [0, 0, 0]);
  t.deepEqual(await held, Buffer.from('o2'));
  t.true(await lease.release());
});

test.serial('a background learn or prepare ahead leaves with the next frame to its node, or after the ride window; a learn someone waits on goes at once', async (t) => {
  // A ride window far longer than the test: a learn that leaves went with other traffic.
  const { rc, a, lease, k1 } = await leasedKeySpace(t, { rideMs: 600_000 }, Buffer.from('learn-rides'));
  await a.change(k1, () => Buffer.from('v1'), { scope: lease.scope });
  // Its background learn (2 ms later) waits for company on every node's peer.
  await until(() => a.peers.every((p) => p.learnsRiding >= 1));
  t.deepEqual(a.peers.map((p) => p.learnsRiding), [1, 1, 1]);
  t.true(a.registers.unlearned > 0, 'not learned yet');
  // Any call to the nodes takes it along.
  await a.change(key('other'), () => Buffer.from('o1'));
  t.deepEqual(a.peers.map((p) => p.learnsRiding), [0, 0, 0]);
  await until(() => a.registers.unlearned === 0);
  t.is(a.registers.unlearned, 0, 'k1 learned on a majority once its learns left with the change');

  // A prepare ahead nobody waits on (FsMeta's inode numbers) waits for company too.
  const prepared = a.registers.stats.prepared;
  const ahead = a.prepare(key('ahead'), { behind: true });
  await until(() => a.peers.every((p) => p.preparesRiding >= 1));
  t.deepEqual(a.peers.map((p) => p.preparesRiding), [1, 1, 1]);
  t.is(a.registers.stats.prepared, prepared);
  await a.read(key('other'));
  await ahead;
  t.is(a.registers.stats.prepared, prepared + 1, 'the prepare left with the read and was answered');
  t.true(a.peers.filter((p) => p.preparesRiding === 0).length >= 2, 'it left with the read to the nodes the read went to (a majority at least)');
  // The prepared key's change is one accept now.
  const fast = a.registers.stats.fastChanges;
  await a.change(key('ahead'), () => Buffer.from('a1'));
  t.is(a.registers.stats.fastChanges, fast + 1);

  // A learn a caller waits on (a release) does not wait for company.
  await a.change(k1, () => Buffer.from('v2'), { scope: lease.scope });
  t.is(await a.registers.learnChosen({ scope: lease.scope }), 0, 'k1 learned on a majority');
  t.true(await lease.release());

  // With the product's window, a learn with no company leaves by itself.
  const b = clusterKeySpace(t, rc);
  await b.waitForPeers(5000);
  const lease2 = await leaseOn(b, Buffer.from('learn-alone'));
  t.truthy(lease2);
  await b.change(recordKey(Buffer.from('learn-alone'), Buffer.from('k1')), () => Buffer.from('w1'), { scope: lease2!.scope });
  await until(() => b.registers.unlearned === 0);
  t.is(b.registers.unlearned, 0);
  t.deepEqual(b.peers.map((p) => p.learnsRiding), [0, 0, 0]);
  t.true(await lease2!.release());
});
