import test from 'ava';
import { gatherQuorum, hedgedQuorum } from '../../src/cluster/quorum.js';
import { QfsError, isQfsError } from '../../src/util/errors.js';
import { systemClock } from '../../src/util/clock.js';

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

test('hedgedQuorum: asks only a majority when it answers in time and agrees', async (t) => {
  const ran: string[] = [];
  const call = (key: string, ms: number, v: number) => ({ key, run: () => (ran.push(key), later(ms, v)) });
  // The hedge is far beyond any answer, loaded machine or not: only agreement can end this early.
  const r = await hedgedQuorum([call('a', 5, 1), call('b', 10, 1), call('c', 5, 1)], 2, (vs) => vs.every((v) => v === vs[0]), 60_000);
  t.deepEqual(r, [1, 1]);
  await later(30, 0);
  t.deepEqual(ran, ['a', 'b'], 'the third replica was never asked');
});

test('hedgedQuorum: a failure or a disagreement brings in the next replica', async (t) => {
  const ran: string[] = [];
  const call = (key: string, run: () => Promise<number>) => ({ key, run: () => (ran.push(key), run()) });
  // A hedge no answer comes near: what brings in the next replica here is the failure or the disagreement, not the clock.
  const same = (vs: readonly number[]) => vs.filter((v) => v === vs[0]).length >= 2 || vs.filter((v) => v === vs[1]).length >= 2;
  t.deepEqual((await hedgedQuorum([call('a', () => failLater(2)), call('b', () => later(5, 7)), call('c', () => later(5, 7))], 2, same, 60_000)).sort(), [7, 7]);
  t.deepEqual(ran, ['a', 'b', 'c']);
  ran.length = 0;
  const r = await hedgedQuorum([call('a', () => later(2, 1)), call('b', () => later(4, 2)), call('c', () => later(6, 2))], 2, same, 60_000);
  t.deepEqual(r, [1, 2, 2], 'disagreeing answers wait for the rest');
  t.deepEqual(ran, ['a', 'b', 'c']);
  // every answer in and still no agreement: resolves with what there is
  t.deepEqual(await hedgedQuorum([call('a', () => later(1, 1)), call('b', () => later(2, 2)), call('c', () => later(3, 3))], 2, same, 60_000), [1, 2, 3]);
});

test('hedgedQuorum: a silent replica costs the hedge delay, not the deadline', async (t) => {
  const t0 = Date.now();
  const r = await hedgedQuorum(
    [
      { key: 'a', run: () => later(2, 1) },
      { key: 'b', run: () => later(5000, 1) },
      { key: 'c', run: () => later(2, 1) },
    ],
    2,
    () => true,
    30,
  );
  t.deepEqual(r, [1, 1]);
  const took = Date.now() - t0;
  t.true(took >= 25 && took < 1000, `took ${took} ms`);
});

test('hedgedQuorum: fails once a majority cannot answer, with every reason', async (t) => {
  const err = await t.throwsAsync(
    hedgedQuorum(
      [
        { key: 'a', run: () => failLater(1) },
        { key: 'b', run: () => later(3, 1) },
        { key: 'c', run: () => failLater(2, 'no_space') },
      ],
      2,
      () => true,
      100,
    ),
  );
  t.true(isQfsError(err, 'no_space'), String(err));
  t.regex(String(err), /a: down/);
});

test('hedgedQuorum: while the replicas asked are still answering, the hedge waits instead of asking the rest', async (t) => {
  const ran: string[] = [];
  let answering = true;
  const call = (key: string, ms: number) => ({ key, run: () => (ran.push(key), later(ms, 1)) });
  const r = await hedgedQuorum([call('a', 5), call('b', 80), call('c', 1)], 2, () => true, 10, () => answering);
  t.deepEqual(r, [1, 1]);
  t.deepEqual(ran, ['a', 'b'], 'busy but answering: the third was not asked');
  // once the slow one counts as silent, the next hedge asks the rest
  ran.length = 0;
  setTimeout(() => (answering = false), 30);
  const t0 = Date.now();
  await hedgedQuorum([call('a', 5), call('b', 5000), call('c', 1)], 2, () => true, 10, () => answering);
  t.deepEqual(ran, ['a', 'b', 'c']);
  t.true(Date.now() - t0 < 1000);
});

test('a short quorum can wait a bounded time for the remaining answers (refused by all is worth knowing)', async (t) => {
  // A clock whose timers fire only when the test says so.
  const timers: Array<() => void> = [];
  const clock = { ...systemClock, after: (_ms: number, fn: () => void) => (timers.push(fn), { cancel: () => {} }) };
  let answerThird!: (v: boolean) => void;
  const third = new Promise<boolean>((r) => (answerThird = r));
  const all = gatherQuorum(
    [
      { key: 'a', run: () => Promise.resolve(false) },
      { key: 'b', run: () => Promise.resolve(false) },
      { key: 'c', run: () => third },
    ],
    2,
    (v) => v,
    undefined,
    { withinMs: 250, clock },
  );
  await new Promise((r) => setImmediate(r));
  t.is(timers.length, 1, 'two refusals: short, and waiting for the third');
  answerThird(false);
  const r = await all;
  t.is(r.rejected.length, 3, 'the third answer was waited for');

  // A silent third: the wait ends when its timer fires, with the two refusals.
  const silent = gatherQuorum(
    [
      { key: 'a', run: () => Promise.resolve(false) },
      { key: 'b', run: () => Promise.resolve(false) },
      { key: 'c', run: () => new Promise<boolean>(() => {}) },
    ],
    2,
    (v) => v,
    undefined,
    { withinMs: 250, clock },
  );
  await new Promise((r) => setImmediate(r));
  t.is(timers.length, 2);
  timers[1]!();
  const s = await silent;
  t.is(s.rejected.length, 2);
  t.is(s.oks.length, 0);
});

test('a quorum that a refusal leaves depending on a silent acceptor ends at once; one that does not still waits for it', async (t) => {
  // Joint rule in miniature: 2 of 3, the third cut off (its call never ends) and said to be silent.
  const never = () => new Promise<boolean>(() => {});
  const silentC = { cutOff: (k: string) => k === 'c', clock: systemClock };
  const refused = await gatherQuorum(
    [
      { key: 'a', run: () => Promise.resolve(true) },
      { key: 'b', run: () => Promise.resolve(false) },
      { key: 'c', run: never },
    ],
    2,
    (v) => v,
    undefined,
    undefined,
    silentC,
  );
  t.deepEqual(refused.oks.map((o) => o.key), ['a']);
  t.deepEqual(refused.rejected.map((o) => o.key), ['b'], 'settled without the silent one: the round is not done');

  // Without a refusal the silent one is never needed to judge: two answers reach the quorum.
  const fine = await gatherQuorum(
    [
      { key: 'a', run: () => Promise.resolve(true) },
      { key: 'b', run: () => Promise.resolve(true) },
      { key: 'c', run: never },
    ],
    2,
    (v) => v,
    undefined,
    undefined,
    silentC,
  );
  t.is(fine.oks.length, 2);

  // A silent acceptor that answers ok still counts towards the quorum.
  const answered = await gatherQuorum(
    [
      { key: 'a', run: () => later(20, true) },
      { key: 'b', run: () => later(1, true) },
      { key: 'c', run: never },
    ],
    2,
    (v) => v,
    undefined,
    undefined,
    { cutOff: (k) => k === 'a' || k === 'c', clock: systemClock },
  );
  t.deepEqual(answered.oks.map((o) => o.key).sort(), ['a', 'b'], 'with nothing refused, silent ones are waited for, and their answers count');
});

test('a replica that becomes cut off while the quorum waits on it is given up on without another answer coming', async (t) => {
  let cut = false;
  const r = gatherQuorum(
    [
      { key: 'a', run: () => Promise.resolve(true) },
      { key: 'b', run: () => Promise.resolve(false) },
      { key: 'c', run: () => new Promise<boolean>(() => {}) },
    ],
    2,
    (v) => v,
    undefined,
    undefined,
    { cutOff: (k) => cut && k === 'c', clock: systemClock },
  );
  let done = false;
  void r.then(() => (done = true));
  await later(150, 0);
  t.false(done, 'still waiting: c is only slow');
  cut = true;
  const settled = await r;
  t.deepEqual(settled.rejected.map((x) => x.key), ['b']);
});
