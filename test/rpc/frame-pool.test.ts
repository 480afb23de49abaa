// FramePool: one size at a time, bounded, a buffer kept once.
import test from 'ava';
import { FramePool } from '../../src/rpc/frame-pool.js';

test('take rounds up to 64 KiB and gives back what was given; a bigger size drops the smaller buffers', (t) => {
  const pool = new FramePool(2);
  const a = pool.take(1024 * 1024 + 50);
  t.is(a.length, 1024 * 1024 + 65_536);
  const b = pool.take(1000);
  t.is(b.length, a.length, 'one size: the largest so far');
  pool.give(a);
  pool.give(a);
  t.is(pool.kept, 1, 'a buffer is kept once');
  pool.give(b);
  pool.give(Buffer.alloc(a.length));
  t.is(pool.kept, 2, 'at most keep buffers');
  t.true([a, b].includes(pool.take(10)));
  const big = pool.take(2 * 1024 * 1024);
  t.is(big.length, 2 * 1024 * 1024);
  t.is(pool.kept, 0, 'the smaller ones were dropped');
  pool.give(a);
  t.is(pool.kept, 0, 'a buffer of another size is not kept');
});
