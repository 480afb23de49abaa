import test from 'ava';
import { applyBatch } from '../../src/cluster/registers.js';
import { ChangeAttempts, ChangeTrail, MAX_ENTRIES, newTag, open, seal } from '../../src/util/envelope.js';
import { isQfsError } from '../../src/util/errors.js';

test('seal and open round-trip values and deletes with their lineage', (t) => {
  const lineage = [{ tag: newTag(), counter: 7 }, { tag: newTag(), counter: 2 ** 40 + 3 }];
  const v = open(seal(Buffer.from('payload'), lineage));
  t.deepEqual(v.payload, Buffer.from('payload'));
  t.deepEqual(v.lineage, lineage);
  const sealedDelete = seal(null, lineage);
  t.is(sealedDelete.kind, 'tombstone');
  t.is(open(sealedDelete).payload, null);
  t.deepEqual(open(sealedDelete).lineage, lineage);
  t.deepEqual(open({ kind: 'empty' }), { payload: null, lineage: [] });
  t.deepEqual(open({ kind: 'tombstone', bytes: Buffer.alloc(0) }), { payload: null, lineage: [] });
  // only the newest entries are kept
  const long = Array.from({ length: MAX_ENTRIES + 3 }, (_, i) => ({ tag: newTag(), counter: i }));
  t.deepEqual(open(seal(Buffer.alloc(0), long)).lineage, long.slice(-MAX_ENTRIES));
  t.true(isQfsError(t.throws(() => open({ kind: 'value', bytes: Buffer.from([9, 0]) })), 'corrupt'));
  t.true(isQfsError(t.throws(() => open({ kind: 'value', bytes: Buffer.from([1, 3, 0]) })), 'corrupt'));
});

test('a retry recognises its own earlier attempt in the lineage', (t) => {
  const a = new ChangeAttempts();
  const mine = newTag();
  a.record(mine, Buffer.from('mine'), 'meta');
  a.markUncertain(10);
  const lineage = [{ tag: newTag(), counter: 5 }, { tag: mine, counter: 10 }, { tag: newTag(), counter: 12 }];
  t.deepEqual(a.find(lineage), { value: Buffer.from('mine'), meta: 'meta' });
});

test('an uncertain attempt absent from a window that reaches back before it was not adopted', (t) => {
  const a = new ChangeAttempts();
  a.record(newTag(), Buffer.from('x'), null);
  a.markUncertain(10);
  // short lineage: the whole history is known
  t.is(a.find([{ tag: newTag(), counter: 11 }]), null);
  // full window whose oldest entry is older than the attempt
  const full = Array.from({ length: MAX_ENTRIES }, (_, i) => ({ tag: newTag(), counter: 9 + i }));
  t.is(a.find(full), null);
});

test('when the window no longer reaches back, the outcome is reported unknown instead of guessed', (t) => {
  const a = new ChangeAttempts();
  a.record(newTag(), Buffer.from('x'), null);
  a.markUncertain(10);
  const full = Array.from({ length: MAX_ENTRIES }, (_, i) => ({ tag: newTag(), counter: 10 + i }));
  t.true(isQfsError(t.throws(() => a.find(full)), 'timeout'));
  // attempts that certainly reached no acceptor never block a retry
  const b = new ChangeAttempts();
  b.record(newTag(), Buffer.from('x'), null);
  t.is(b.find(full), null);
});

test('a change trail serves one change of one key, until a call of it succeeds', (t) => {
  const trail = new ChangeTrail();
  t.is(trail.begin('k'), null);
  t.is(trail.begin('k'), null, 'the same change called again after a failed call');
  t.regex(trail.begin('other') ?? '', /two keys/);
  trail.end();
  t.regex(trail.begin('k') ?? '', /after its change succeeded/);
});

test('a queued change whose trail holds an attempt in the lineage reports that attempt and is not applied again', (t) => {
  const add = (n: number) => (old: Buffer | null) => Buffer.from(String(Number(old?.toString() ?? '0') + n));
  const retried = new ChangeTrail();
  const landed = newTag();
  retried.record(landed, Buffer.from('11'), { ok: true, value: Buffer.from('11') });
  retried.markUncertain(4);
  const lineage = [{ tag: newTag(), counter: 2 }, { tag: landed, counter: 4 }];
  // value 11 holds the retried +1 (10 → 11); a second change of the batch, +5, is new
  const batch = [{ fn: add(1), trail: retried }, { fn: add(5) }];
  const { next, meta } = applyBatch(batch, Buffer.from('11'), lineage);
  t.deepEqual(next, Buffer.from('16'));
  t.deepEqual(meta, [{ ok: true, value: Buffer.from('11') }, { ok: true, value: Buffer.from('16') }]);
  // without the trail lookup (the bug the simulator finds) the +1 lands twice
  t.deepEqual(applyBatch(batch, Buffer.from('11'), lineage, false).next, Buffer.from('17'));
  // an attempt absent from a lineage that reaches back before it never landed: the change runs
  t.deepEqual(applyBatch([{ fn: add(1), trail: retried }], Buffer.from('10'), [{ tag: newTag(), counter: 5 }]).next, Buffer.from('11'));
  // a window too short to tell fails that change alone, as unknown
  const full = Array.from({ length: MAX_ENTRIES }, (_, i) => ({ tag: newTag(), counter: 4 + i }));
  const unknown = applyBatch([{ fn: add(1), trail: retried }, { fn: add(5) }], Buffer.from('10'), full);
  t.false(unknown.meta[0]!.ok);
  t.true(isQfsError(unknown.meta[0]!.ok ? null : unknown.meta[0]!.error, 'timeout'));
  t.deepEqual(unknown.next, Buffer.from('15'));
});
