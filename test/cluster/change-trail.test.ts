// A change trail (CallOpts.trail) belongs to one change of one key; the calls
// that carry it may also read. A read that finds its quorum disagreeing
// settles the key with a round of its own (change with KEEP): that round must
// not take the caller's trail, or a lookup run again under its directory's
// scope (a lease record read, then the name) failed with "a change trail used
// for two keys" (random-operations seed 2860548). Fake acceptors that
// disagree on every key make every read take that path.
import test from 'ava';
import { Registers } from '../../src/cluster/registers.js';
import type { Acceptor } from '../../src/cluster/acceptor.js';
import { ChangeTrail, seal } from '../../src/util/envelope.js';
import { silentLogger } from '../../src/util/log.js';
import type { Ballot } from '../../src/util/ballot.js';
import type { AcceptorState } from '../../src/util/paxos.js';

const b = (counter: number): Ballot => ({ counter, proposer: '00000000000000aa' });

/** An acceptor that holds `key → value` at its own accepted ballot and takes every prepare and accept. */
function disagreeing(id: string, counter: number): Acceptor {
  let state: AcceptorState = { promised: b(counter), accepted: b(counter), value: seal(Buffer.from(id), [{ tag: '00000000000000' + counter.toString(16).padStart(2, '0'), counter }]) };
  return {
    id,
    up: true,
    rank: 0,
    latencyMs: 1,
    silent: false,
    cutOff: false,
    prepare: (_key, ballot) => {
      state = { ...state, promised: ballot };
      return Promise.resolve({ ok: true, state });
    },
    accept: (_key, ballot, value) => {
      state = { promised: ballot, accepted: ballot, value };
      return Promise.resolve({ ok: true, state });
    },
    read: () => Promise.resolve(state),
    scan: () => Promise.reject(new Error('not used')),
    purge: () => Promise.resolve(false),
    learn: () => Promise.resolve(true),
  };
}

test('reads that settle a disagreeing quorum leave the caller\'s trail alone; the trail still serves its one change', async (t) => {
  const perKey = new Map<string, Acceptor[]>();
  const registers = new Registers(
    (group) => {
      const g = group.toString('latin1');
      if (!perKey.has(g)) perKey.set(g, [disagreeing('n1', 1), disagreeing('n2', 2), disagreeing('n3', 3)]);
      return perKey.get(g)!;
    },
    { replication: 3, requestTimeoutMs: 2000, log: silentLogger() },
  );
  const trail = new ChangeTrail();
  const key = (g: string): Buffer => Buffer.from(`\x01${g}k`, 'latin1');
  // Two reads with one trail, of two keys: each settles its key (the highest value a majority holds).
  const a = await registers.read(key('a'), { trail });
  const b2 = await registers.read(key('b'), { trail });
  t.is(registers.stats.slowReads, 2, 'each read found its quorum disagreeing and settled it');
  t.true(a !== null && b2 !== null && /^n[23]$/.test(a.toString()) && /^n[23]$/.test(b2.toString()), `${String(a)} ${String(b2)}`);
  // Settled: read again, the key agrees with what the first read returned.
  t.deepEqual(await registers.read(key('a')), a);
  t.is(registers.stats.trailMisuses, 0);
  // The trail's own change runs, once; after it, the trail is spent: a second change with it
  // (a bug in its caller) runs without it and is counted, rather than fail or be taken as done.
  t.deepEqual(await registers.change(key('c'), () => Buffer.from('mine'), { trail }), Buffer.from('mine'));
  t.deepEqual(await registers.change(key('c'), () => Buffer.from('twice'), { trail }), Buffer.from('twice'));
  t.is(registers.stats.trailMisuses, 1);
});
