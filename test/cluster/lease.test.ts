// Scope leases over real node processes (the protocol itself is checked in the
// simulator, test/sim/leases.ts): a holder's writes are tagged and learned, a
// takeover fences the old term on the nodes, and the new holder settles what
// the old one left.
import test from 'ava';
import { KEEP, recordKey } from '../../src/keyspace/types.js';
import { isQfsError } from '../../src/util/errors.js';
import { acquireFree, decodeLease, encodeLease, markSettled, takeOver, type LeaseRecord, type ScopeCall } from '../../src/util/lease.js';
import { clusterKeySpace, startCluster } from '../helpers/keyspace.js';

const GROUP = Buffer.from('lease-test');
const LEASE = recordKey(GROUP, Buffer.from('@lease'));
const key = (s: string) => recordKey(GROUP, Buffer.from(s));
const GROUP_PREFIX = Buffer.concat([Buffer.from([GROUP.length]), GROUP]);

test.serial('a takeover fences the old holder on the nodes; the new holder settles and finds its chosen writes', async (t) => {
  const rc = await startCluster(t, 3);
  const a = clusterKeySpace(t, rc);
  const b = clusterKeySpace(t, rc);
  await Promise.all([a.waitForPeers(5000), b.waitForPeers(5000)]);
  const changeLease = async (ks: typeof a, step: (l: LeaseRecord) => LeaseRecord | null): Promise<LeaseRecord | null> => {
    let out: LeaseRecord | null = null;
    await ks.change(LEASE, (old) => {
      out = step(decodeLease(old));
      return out ? encodeLease(out) : KEEP;
    });
    return out;
  };

  const held = await changeLease(a, (l) => acquireFree(l, 'a#1'));
  t.deepEqual(held, { term: 2, holder: 'a#1', settled: 0, renewals: 0 }, 'a fresh scope is free at term 1');
  const scopeA: ScopeCall = { lease: LEASE, term: 2, session: 'a#1' };
  await a.change(key('k1'), () => Buffer.from('one'), { scope: scopeA });
  await a.change(key('k2'), () => Buffer.from('two'), { scope: scopeA });
  // written under term 2: tagged with it until learned (learning runs in the background too)
  t.true((await a.registers.states(key('k1'))).every((s) => s.state !== null && (s.state.tag === 2 || s.state.tag === undefined)));
  t.is(await a.registers.learnChosen(), 0, 'both learned on a majority');
  t.true((await a.registers.states(key('k1'))).filter((s) => s.state && s.state.tag === undefined).length >= 2);
  // a write a never learns (its learning is dropped before it runs): k3 stays tagged with term 2
  await a.change(key('k3'), () => Buffer.from('three'), { scope: scopeA });
  a.registers.dropUnlearned();
  t.true((await a.registers.states(key('k3'))).filter((s) => s.state?.tag === 2).length >= 2, 'k3 is tagged on a majority');

  // b takes the lease over (the test plays the silent holder's expiry)
  const observed = decodeLease(await b.read(LEASE));
  const taken = await changeLease(b, (l) => takeOver(l, observed, 'b#1'));
  t.is(taken?.term, 3);
  // a, late, under its old term: fenced on the nodes, and not retried
  const err = await a.change(key('k1'), () => Buffer.from('late'), { scope: scopeA }).then(
    () => null,
    (e: unknown) => e,
  );
  t.true(isQfsError(err, 'fenced'), `a late write of term 2 is fenced: ${String(err)}`);

  // b settles terms 1 and 2: k3 is still tagged, so it is found and rewritten under term 3
  const scopeB: ScopeCall = { lease: LEASE, term: 3, session: 'b#1' };
  const unsettled = await b.registers.unsettledKeys(GROUP_PREFIX, key('k'), key('l'), taken!.settled, { scope: scopeB });
  t.true(unsettled.some((k) => k.equals(key('k3'))), `k3 needs settling: ${unsettled.map((k) => k.toString('latin1')).join(', ')}`);
  for (const k of unsettled) await b.registers.settleKey(k, { scope: scopeB });
  t.deepEqual(await changeLease(b, (l) => markSettled(l, 'b#1', 3, 2)), { term: 3, holder: 'b#1', settled: 2, renewals: 0 });
  for (const [k, v] of [
    ['k1', 'one'],
    ['k2', 'two'],
    ['k3', 'three'],
  ] as const) {
    t.deepEqual(await b.read(key(k), { scope: scopeB }), Buffer.from(v), `${k} as a committed it`);
  }
  // another mount's read while b holds the scope is refused (it must recall the lease first),
  // and the nodes ask b, on its own connection, to give the lease back
  const recalls: Buffer[] = [];
  b.onLeaseRecall((lease) => recalls.push(lease));
  const visitor = await a.read(key('k1'), { scope: { lease: LEASE, term: 3, session: 'c#1' } }).then(
    () => null,
    (e: unknown) => e,
  );
  t.truthy(visitor, 'a read by another session of a held scope fails');
  for (let i = 0; i < 250 && recalls.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.true(recalls.length > 0 && recalls.every((l) => l.equals(LEASE)), `b was asked to give the lease back (${recalls.length} recalls)`);
  // and a settling scan at a term the nodes do not hold is refused
  const stale = await a.registers.unsettledKeys(GROUP_PREFIX, key('k'), key('l'), 0, { scope: scopeA }).then(
    () => null,
    (e: unknown) => e,
  );
  t.truthy(stale, 'a settling scan at the old term finds no majority');
});
