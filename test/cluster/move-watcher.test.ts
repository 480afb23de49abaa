// Which node carries on a membership change that no command is moving
// (src/cluster/move-watcher.ts): pure rules, no processes.
import test from 'ava';
import { moverCandidates, takeoverDue } from '../../src/cluster/move-watcher.js';
import type { MoveProgress } from '../../src/cluster/mover.js';
import { initialMembership, requestChange, type Membership } from '../../src/util/membership.js';

const nodes = ['n1', 'n2', 'n3', 'n4'].map((id, i) => ({ id, url: `ws://127.0.0.1:${7400 + i}`, weight: 1, zone: null }));
const stable: Membership = initialMembership(nodes, 3);
const GRACE = 30_000;

function progress(epoch: number, updatedAt: number, extra: Partial<MoveProgress> = {}): MoveProgress {
  return { epoch, startedAt: updatedAt - 5000, updatedAt, recordsTotal: 0, chunksTotal: 0, phase: 'records', recordsListed: 0, recordsRewritten: 0, chunksListed: 0, chunksCopied: 0, bytesCopied: 0, chunksTrimmed: 0, recordsDropped: 0, ...extra };
}

test('nothing to carry: a stable membership with nothing queued is never taken over', (t) => {
  t.false(takeoverDue({ membership: stable, progress: null, selfId: 'n1', now: 1e9, seenSince: 0, graceMs: GRACE }));
});

test('candidates are the nodes the change leads to: a node on its way out never moves it, a draining one comes last', (t) => {
  const remove = requestChange(requestChange(stable, { kind: 'drain', id: 'n1' }), { kind: 'remove', id: 'n1', dead: false }, { queue: true });
  const drain = requestChange(stable, { kind: 'drain', id: 'n1' });
  t.deepEqual(moverCandidates(drain), ['n2', 'n3', 'n4', 'n1'], 'the draining node last');
  const dead = requestChange(stable, { kind: 'remove', id: 'n2', dead: true });
  t.deepEqual(moverCandidates(dead), ['n1', 'n3', 'n4']);
  t.false(takeoverDue({ membership: dead, progress: null, selfId: 'n2', now: 1e9, seenSince: 0, graceMs: GRACE }), 'the node being removed');
  t.true(remove.queued.length === 1, 'a queued change waits behind the drain');
});

test('the first candidate waits one grace after the last report (or after it saw the epoch), the next twice as long', (t) => {
  const m = requestChange(stable, { kind: 'add', id: 'n5', url: 'ws://127.0.0.1:7500', weight: 1, zone: null });
  const [first, second] = moverCandidates(m);
  const seenSince = 100_000;
  const due = (selfId: string, now: number, p: MoveProgress | null) => takeoverDue({ membership: m, progress: p, selfId, now, seenSince, graceMs: GRACE });
  // A command reporting progress: nobody takes over.
  const fresh = progress(m.epoch, 200_000);
  t.false(due(first!, 200_000 + GRACE - 1, fresh));
  t.true(due(first!, 200_000 + GRACE, fresh));
  t.false(due(second!, 200_000 + GRACE, fresh));
  t.true(due(second!, 200_000 + 2 * GRACE, fresh));
  // No report at all: counted from when this node saw the epoch, not from 0.
  t.false(due(first!, seenSince + GRACE - 1, null));
  t.true(due(first!, seenSince + GRACE, null));
  // A report older than the epoch this node saw does not make it due early.
  t.false(due(first!, seenSince + 1000, progress(m.epoch - 1, 0)));
});

test('a change left to the nodes (--no-wait) is taken at once by the first candidate, the others keep their turn', (t) => {
  const m = requestChange(stable, { kind: 'drain', id: 'n4' });
  const [first, second] = moverCandidates(m);
  const handed = progress(m.epoch, 500_000, { handedToNodes: true });
  const due = (selfId: string, now: number, p: MoveProgress) => takeoverDue({ membership: m, progress: p, selfId, now, seenSince: 500_000, graceMs: GRACE });
  t.true(due(first!, 500_000, handed));
  t.false(due(second!, 500_000 + GRACE - 1, handed));
  t.true(due(second!, 500_000 + GRACE, handed));
  // Handed over at an earlier epoch: a mover has run since, so the usual waits apply.
  t.false(due(first!, 500_000, { ...handed, epoch: m.epoch - 1 }));
});
