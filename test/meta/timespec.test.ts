import test from 'ava';
import { nowTimespec } from '../../src/meta/types.js';

const ns = (t: { sec: number; nsec: number }): bigint => BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec);

test('file times follow the wall clock and strictly increase, even within one millisecond', (t) => {
  let last = 0n;
  for (let i = 0; i < 20_000; i++) {
    const before = Date.now();
    const stamp = nowTimespec();
    const after = Date.now();
    const n = ns(stamp);
    if (n <= last) {
      t.fail(`stamp ${i} is not after the one before`);
      return;
    }
    last = n;
    if (stamp.nsec < 0 || stamp.nsec >= 1e9) {
      t.fail(`nsec ${stamp.nsec} out of range`);
      return;
    }
    // Within a few milliseconds of the wall clock read around it.
    const ms = Number(n / 1_000_000n);
    if (ms < before - 5 || ms > after + 5) {
      t.fail(`stamp ${ms} ms outside the wall clock ${before}..${after}`);
      return;
    }
  }
  t.pass();
});
