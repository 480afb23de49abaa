// The system clock's random hex (tags of every change's attempts) comes from a pooled draw.
import test from 'ava';
import { systemClock } from '../../src/util/clock.js';

test('randomHex: the asked length, hex only, and no repeats across pool refills', (t) => {
  const seen = new Set<string>();
  // 8-byte tags: 10 000 of them cross the 4 KiB pool about twenty times.
  for (let i = 0; i < 10_000; i++) {
    const h = systemClock.randomHex(8);
    t.regex(h, /^[0-9a-f]{16}$/);
    seen.add(h);
  }
  t.is(seen.size, 10_000, 'no tag drawn twice');
  t.is(systemClock.randomHex(5000).length, 10_000, 'a draw larger than the pool still has its length');
  t.not(systemClock.randomHex(12), systemClock.randomHex(12));
});
