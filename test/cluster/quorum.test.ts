import test from 'ava';
import { gatherQuorum } from '../../src/cluster/quorum.js';
import { QfsError, isQfsError } from '../../src/util/errors.js';

const later = <T>(ms: number, v: T) => new Promise<T>((r) => setTimeout(() => r(v), ms));
const failLater = (ms: number, code: 'unavailable' | 'no_space' = 'unavailable') =>
  new Promise<never>((_, rej) => setTimeout(() => rej(new QfsError(code, 'down')), ms));

test('resolves at the quorum without waiting for the straggler, and reports it late', async (t) => {
  const late: string[] = [];
  const t0 = Date.now();
  const r = await gatherQuorum(
    [
      { key: 'a', run: () => later(5, 1) },
      { key: 'b', run: () => later(10, 2) },
      { key: 'c', run: () => later(300, 3) },
    ],
    2,
    () => true,
    (k) => late.push(k),
  );
  t.true(Date.now() - t0 < 250);
  t.deepEqual(r.oks.map((o) => o.key).sort(), ['a', 'b']);
  await later(350, 0);
  t.deepEqual(late, ['c']);
});

test('fails fast once the quorum is impossible, naming every reason', async (t) => {
  const err = await t.throwsAsync(
    gatherQuorum(
      [
        { key: 'a', run: () => failLater(5) },
        { key: 'b', run: () => failLater(5) },
        { key: 'c', run: () => later(1000, 1) },
      ],
      2,
    ),
  );
  t.true(isQfsError(err, 'unavailable'));
  t.regex(err!.message, /a: down; b: down/);
});

test('no_space from any replica wins the summary; refusals resolve instead of rejecting', async (t) => {
  const err = await t.throwsAsync(
    gatherQuorum(
      [
        { key: 'a', run: () => failLater(1, 'no_space') },
        { key: 'b', run: () => failLater(1) },
        { key: 'c', run: () => later(1, 1) },
      ],
      2,
    ),
  );
  t.true(isQfsError(err, 'no_space'));
  const r = await gatherQuorum(
    [
      { key: 'a', run: () => later(1, { ok: false }) },
      { key: 'b', run: () => later(1, { ok: false }) },
      { key: 'c', run: () => later(1, { ok: true }) },
    ],
    2,
    (v) => v.ok,
  );
  // two refusals out of three make the quorum impossible: it settles without waiting for the third
  t.is(r.rejected.length, 2);
  t.true(r.oks.length <= 1);
  // a throwing run() counts as a failure, not a crash
  const r2 = await gatherQuorum(
    [
      { key: 'a', run: () => { throw new Error('sync'); } },
      { key: 'b', run: () => later(1, 1) },
      { key: 'c', run: () => later(1, 1) },
    ],
    2,
  );
  t.is(r2.oks.length, 2);
});
