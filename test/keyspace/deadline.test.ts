import test from 'ava';
import { callDeadline } from '../../src/keyspace/types.js';
import { MemoryKeySpace } from '../../src/keyspace/memory.js';

test('a call gets the earlier of the operation deadline and its own timeout', (t) => {
  t.is(callDeadline(1000, undefined, 5000), 6000);
  t.is(callDeadline(1000, { timeoutMs: 200 }, 5000), 1200);
  t.is(callDeadline(1000, { deadline: 3000 }, 5000), 3000, 'the operation ends first');
  t.is(callDeadline(1000, { deadline: 9000 }, 5000), 6000, 'the call ends first');
  t.is(callDeadline(1000, { deadline: 900, timeoutMs: 200 }, 5000), 900);
});

test('a call whose operation deadline has passed fails with timeout', async (t) => {
  const ks = new MemoryKeySpace();
  const key = Buffer.from('\x01gk', 'latin1');
  await t.throwsAsync(ks.read(key, { deadline: Date.now() - 1 }), { message: /deadline passed/ });
  t.is(await ks.read(key, { deadline: Date.now() + 60_000 }), null);
});
