// The membership value, its codec and its pure transitions and acceptor rules
// (src/util/membership.ts), the joint quorum counting (src/cluster/quorum.ts)
// and the per-key quorum sets of a change (src/cluster/transition.ts).
import test from 'ava';
import { isQfsError } from '../../src/util/errors.js';
import {
  admitEpoch,
  applyChange,
  coversEveryMajority,
  decideInstall,
  decodeMembership,
  encodeMembership,
  finishChange,
  initialMembership,
  markRewritten,
  departed,
  moverStep,
  requestChange,
  startQueued,
  type Change,
  type Membership,
} from '../../src/util/membership.js';
import { jointQuorumLost, jointQuorumReached } from '../../src/cluster/quorum.js';
import { moves, quorumSets, replicasOf } from '../../src/util/replica-sets.js';

const node = (i: number, zone: string | null = null) => ({ id: `n${i}`, url: `ws://h${i}:7400`, weight: 1, zone });
const three = (): Membership => initialMembership([node(1), node(2), node(3)], 3);
const four = (): Membership => initialMembership([node(1), node(2), node(3), node(4)], 3);
const add = (i: number): Extract<Change, { kind: 'add' }> => ({ kind: 'add', id: `n${i}`, url: `ws://h${i}:7400`, weight: 1, zone: null });

function refuses(t: import('ava').ExecutionContext, f: () => unknown, code: string, match: RegExp): void {
  const err = t.throws(f);
  t.true(isQfsError(err) && err.code === code, `expected ${code}, got ${String(err)}`);
  t.regex(err!.message, match);
}

test('a membership round-trips through its codec, stable, in transition and with queued changes', (t) => {
  const m0 = initialMembership([node(1, 'a'), { ...node(2, 'b'), weight: 2.5 }, node(3)], 3);
  const m1 = requestChange(m0, add(4));
  const m2 = requestChange(m1, { kind: 'set', id: 'n2', zone: null, weight: 0.5 }, { queue: true });
  const m3 = requestChange(m2, { kind: 'remove', id: 'n3', dead: true }, { queue: true });
  const m4 = requestChange(m3, { kind: 'set', id: 'n1', zone: 'c' }, { queue: true });
  for (const m of [m0, m1, m2, m3, m4, markRewritten(m1, m1.epoch)!]) t.deepEqual(decodeMembership(encodeMembership(m)), m);
});

test('bytes that are not a membership are corrupt, never a membership', (t) => {
  const good = encodeMembership(requestChange(three(), add(4)));
  const bad = [Buffer.alloc(0), Buffer.from('hello'), Buffer.concat([good, Buffer.from([0])]), good.subarray(0, good.length - 1)];
  const version = Buffer.from(good);
  version[0] = 2;
  const epochZero = Buffer.from(good);
  epochZero.fill(0, 1, 9);
  const hugeEpoch = Buffer.from(good);
  hugeEpoch.writeUInt32BE(0x0020_0000, 1);
  const rZero = Buffer.from(good);
  rZero[9] = 0;
  for (const bytes of [...bad, version, epochZero, hugeEpoch, rZero]) {
    const err = t.throws(() => decodeMembership(bytes));
    t.true(isQfsError(err, 'corrupt'), String(err));
  }
  // A duplicate id inside well-formed bytes is refused too.
  const dup: Membership = { ...three(), nodes: [node(1), node(2), { ...node(3), id: 'n1' }].map((n) => ({ ...n, state: 'active' as const })) };
  t.throws(() => encodeMembership(dup));
});

test('mistakes are refused with a clear error and change nothing', (t) => {
  const m = three();
  const before = encodeMembership(m);
  refuses(t, () => requestChange(m, { ...add(4), id: 'n2' }), 'bad_request', /n2 is already a member/);
  refuses(t, () => requestChange(m, { ...add(4), url: 'ws://h1:7400' }), 'bad_request', /already belongs to node n1/);
  refuses(t, () => requestChange(m, { kind: 'drain', id: 'n1' }), 'bad_request', /fewer than R = 3/);
  refuses(t, () => requestChange(m, { kind: 'remove', id: 'n1', dead: true }), 'bad_request', /fewer than R = 3/);
  refuses(t, () => requestChange(four(), { kind: 'remove', id: 'n1', dead: false }), 'bad_request', /drain it first/);
  refuses(t, () => requestChange(m, { kind: 'drain', id: 'n9' }), 'bad_request', /no node n9/);
  refuses(t, () => requestChange(m, { kind: 'set', id: 'n1', weight: 1 }), 'bad_request', /already has that weight/);
  refuses(t, () => requestChange(m, { ...add(4), id: 'bad id!' }), 'bad_request', /invalid node id/);
  refuses(t, () => requestChange(m, { ...add(4), url: 'http://x' }), 'bad_request', /invalid url/);
  refuses(t, () => requestChange(m, { ...add(4), weight: 0 }), 'bad_request', /weight/);
  t.deepEqual(encodeMembership(m), before);
});

test('a change needs the zones the replicas need', (t) => {
  const m = initialMembership([node(1, 'a'), node(2, 'b'), node(3, 'c'), node(4, 'c')], 3);
  refuses(t, () => requestChange(m, { kind: 'set', id: 'n1', zone: 'b' }), 'bad_request', /zones/);
  t.notThrows(() => requestChange(m, { kind: 'drain', id: 'n4' }));
});

test('a change runs stable → joint → rewritten → stable, one epoch each; a second change is refused unless queued', (t) => {
  const m0 = four();
  const j = requestChange(m0, { kind: 'drain', id: 'n2' });
  t.is(j.epoch, 2);
  t.is(j.transition?.phase, 'joint');
  t.deepEqual(j.nodes, m0.nodes);
  refuses(t, () => requestChange(j, add(5)), 'busy', /in progress \(drain n2, joint, epoch 2\)/);
  t.is(finishChange(j, j.epoch), null, 'A is not dropped before the rewrite');
  t.is(markRewritten(j, j.epoch - 1), null, 'a mover with an old view changes nothing');
  const q = requestChange(j, add(5), { queue: true });
  t.is(q.epoch, 3);
  t.is(q.transition?.phase, 'joint');
  // A queued change is judged against where the changes before it lead.
  refuses(t, () => requestChange(q, add(5), { queue: true }), 'bad_request', /n5 is already a member/);
  const r = markRewritten(q, q.epoch)!;
  t.is(r.transition?.phase, 'rewritten');
  t.is(markRewritten(r, r.epoch), null);
  const s = finishChange(r, r.epoch)!;
  t.is(s.epoch, 5);
  t.is(s.transition, null);
  t.is(s.nodes.find((n) => n.id === 'n2')?.state, 'draining');
  const next = startQueued(s)!;
  t.deepEqual(next.dropped, []);
  t.is(next.membership.transition?.change.kind, 'add');
  t.is(next.membership.queued.length, 0);
  t.is(startQueued(next.membership), null);
  // Then n2 can go.
  const done = finishChange(markRewritten(next.membership, next.membership.epoch)!, next.membership.epoch + 1)!;
  const rm = requestChange(done, { kind: 'remove', id: 'n2', dead: false });
  t.false(rm.transition!.next.some((n) => n.id === 'n2'));
});

test('a queued change that no longer applies is dropped with its reason', (t) => {
  const j = requestChange(four(), add(5));
  const q = requestChange(j, { kind: 'drain', id: 'n1' }, { queue: true });
  // Someone removed n1 as dead in between (the record went on without the queue's knowledge).
  const stable = { ...finishChange(markRewritten(q, q.epoch)!, q.epoch + 1)!, nodes: q.transition!.next.filter((n) => n.id !== 'n1') };
  const r = startQueued(stable)!;
  t.is(r.dropped.length, 1);
  t.regex(r.dropped[0]!.reason, /no node n1/);
  t.is(r.membership.transition, null);
  t.is(r.membership.queued.length, 0);
});

test('acceptors refuse an older epoch and learn a newer one', (t) => {
  const m = requestChange(three(), add(4));
  t.is(admitEpoch(m, m.epoch), 'ok');
  t.is(admitEpoch(m, m.epoch - 1), 'stale');
  t.is(admitEpoch(m, m.epoch + 1), 'behind');
  t.is(decideInstall(m, three()), null, 'never back to an older membership');
  t.is(decideInstall(m, m), null);
  const newer = markRewritten(m, m.epoch)!;
  t.is(decideInstall(m, newer), newer);
  t.is(decideInstall(null, m), m);
});

test('joint quorums need a majority of A and of B; one lost side is enough to fail', (t) => {
  const a = ['n1', 'n2', 'n3'];
  const b = ['n2', 'n3', 'n4'];
  t.true(jointQuorumReached([a], new Set(['n1', 'n2'])));
  t.false(jointQuorumReached([a, b], new Set(['n1', 'n2'])), 'a majority of A alone is not enough');
  t.false(jointQuorumReached([a, b], new Set(['n3', 'n4'])), 'a majority of B alone is not enough');
  t.true(jointQuorumReached([a, b], new Set(['n2', 'n3'])));
  t.true(jointQuorumReached([a, b], new Set(['n1', 'n3', 'n4'])));
  t.false(jointQuorumReached([], new Set(['n1'])));
  t.false(jointQuorumLost([a, b], new Set(['n1'])));
  t.true(jointQuorumLost([a, b], new Set(['n3', 'n4'])), 'B can no longer have a majority');
  t.true(jointQuorumLost([a, b], new Set(['n1', 'n2'])), 'A can no longer have a majority');
  // Exhaustively, for every pair of replica sets of 5 nodes: any joint quorum meets every quorum of A and every quorum of B.
  const ids = ['n1', 'n2', 'n3', 'n4', 'n5'];
  const subsets = (xs: string[]): string[][] => xs.reduce<string[][]>((acc, x) => acc.concat(acc.map((s) => [...s, x])), [[]]);
  const triples = subsets(ids).filter((s) => s.length === 3);
  for (const A of triples) {
    for (const B of triples) {
      for (const q of subsets(ids)) {
        if (!jointQuorumReached([A, B], new Set(q))) continue;
        for (const other of subsets(A).filter((s) => s.length >= 2)) t.true(other.some((x) => q.includes(x)) || false);
        for (const other of subsets(B).filter((s) => s.length >= 2)) t.true(other.some((x) => q.includes(x)));
      }
    }
  }
});

test('listing and fencing must cover every majority: all but R − majority(R) members answer', (t) => {
  const members = ['n1', 'n2', 'n3', 'n4', 'n5'];
  t.true(coversEveryMajority(members, new Set(members), 3));
  t.true(coversEveryMajority(members, new Set(['n1', 'n2', 'n3', 'n4']), 3));
  t.false(coversEveryMajority(members, new Set(['n1', 'n2', 'n3']), 3));
  t.true(coversEveryMajority(members, new Set(['n1', 'n2', 'n3']), 5), 'R = 5 allows two missing');
  // What it promises: every majority of every R-subset has a node that answered.
  const subsets = (xs: string[]): string[][] => xs.reduce<string[][]>((acc, x) => acc.concat(acc.map((s) => [...s, x])), [[]]);
  for (const answered of subsets(members)) {
    const covered = coversEveryMajority(members, new Set(answered), 3);
    const really = subsets(members).filter((s) => s.length === 2).every((maj) => maj.some((x) => answered.includes(x)));
    t.is(covered, really, `answered ${answered.join(',')}`);
  }
});

test('quorum sets of a key: one set when stable or unmoved, A and B while it moves; the record lives on every member', (t) => {
  const m0 = three();
  const key = Buffer.from('k');
  t.is(quorumSets(m0, key).length, 1);
  t.deepEqual([...quorumSets(m0, key)[0]!].sort(), ['n1', 'n2', 'n3']);
  const j = requestChange(m0, add(4));
  let moved = 0;
  for (let i = 0; i < 200; i++) {
    const k = Buffer.from(`key${i}`);
    const sets = quorumSets(j, k);
    if (moves(j, k)) {
      moved++;
      t.is(sets.length, 2);
      t.true(sets[1]!.includes('n4'), 'only keys moving onto the new node move');
      t.is(replicasOf(j, k).length, 4);
    } else t.is(sets.length, 1);
  }
  // Adding a 4th node to 3 with R = 3 moves about 3/4 of the replica sets (each now includes n4 with probability 3/4).
  t.true(moved > 120 && moved < 180, `${moved} of 200 moved`);
  const membersKey = quorumSets(j, Buffer.from('@members'), true);
  t.deepEqual(membersKey, [['n1', 'n2', 'n3'], ['n1', 'n2', 'n3', 'n4']]);
  // A drained node's keys move off it; it stays in the record's set until removed.
  const d = finishChange(markRewritten(j, j.epoch)!, j.epoch + 1)!;
  const dj = requestChange(d, { kind: 'drain', id: 'n1' });
  for (let i = 0; i < 100; i++) t.false(quorumSets(dj, Buffer.from(`key${i}`)).at(-1)!.includes('n1'));
  t.is(quorumSets(dj, Buffer.from('@members'), true).length, 1);
});

test('applyChange returns the new node set and never mutates the old one', (t) => {
  const m = four();
  const copy = JSON.stringify(m.nodes);
  const out = applyChange(m.nodes, { kind: 'set', id: 'n3', weight: 2, zone: 'z' }, 3);
  t.is(out.find((n) => n.id === 'n3')?.weight, 2);
  t.is(out.find((n) => n.id === 'n3')?.zone, 'z');
  t.is(JSON.stringify(m.nodes), copy);
});

test('a mover\'s next step follows the record: rewrite at joint, finish once rewritten, then what is queued', (t) => {
  const m0 = four();
  t.deepEqual(moverStep(m0), { kind: 'idle' });
  const j = requestChange(m0, { kind: 'drain', id: 'n4' });
  t.deepEqual(moverStep(j), { kind: 'rewrite', epoch: j.epoch });
  const q = requestChange(j, add(5), { queue: true });
  t.deepEqual(moverStep(q), { kind: 'rewrite', epoch: q.epoch }, 'a queued change bumps the epoch: the listing is redone under it');
  const r = markRewritten(q, q.epoch)!;
  t.deepEqual(moverStep(r), { kind: 'finish', epoch: r.epoch });
  const s = finishChange(r, r.epoch)!;
  t.deepEqual(moverStep(s), { kind: 'start-queued' });
  t.deepEqual(departed(q, s), [], 'a drained node is still a member');
  const added = startQueued(s)!.membership;
  const s2 = finishChange(markRewritten(added, added.epoch)!, added.epoch + 1)!;
  t.deepEqual(moverStep(s2), { kind: 'idle' });
  const rm = requestChange(s2, { kind: 'remove', id: 'n4', dead: false });
  t.deepEqual(departed(rm, rm), [], 'nothing departs before the change is finished');
  const gone = finishChange(markRewritten(rm, rm.epoch)!, rm.epoch + 1)!;
  t.deepEqual(departed(rm, gone), ['n4']);
});
