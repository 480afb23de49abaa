import test from 'ava';
import { ChangeAttempts, MAX_ENTRIES, newTag, open, seal } from '../../src/util/envelope.js';
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
