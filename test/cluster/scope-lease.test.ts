// ScopeLease over real node processes: a holder's session, a recall pushed by
// the nodes when another session's read is refused, a clean release, and the
// next holder finding what the first committed.
import test from 'ava';
import { recordKey } from '../../src/keyspace/types.js';
import type { ScopeCall } from '../../src/util/lease.js';
import { systemClock } from '../../src/util/clock.js';
import { ScopeLease, readLease, type ScopeLeaseConfig } from '../../src/cluster/scope-lease.js';
import type { ClusterKeySpace } from '../../src/cluster/cluster-keyspace.js';
import { clusterKeySpace, startCluster } from '../helpers/keyspace.js';

const GROUP = Buffer.from('scope-lease');
const LEASE = recordKey(GROUP, Buffer.from('@lease'));
const key = (s: string) => recordKey(GROUP, Buffer.from(s));

const config = (ks: ClusterKeySpace): ScopeLeaseConfig => ({
  registers: ks.registers,
  lease: LEASE,
  group: Buffer.concat([Buffer.from([GROUP.length]), GROUP]),
  start: key('k'),
  end: key('l'),
  periodMs: 2000,
  drift: 0.05,
  clock: systemClock,
});

/** Whether every node holds the key's value at one ballot, tagged with no term after the first holder's (2). */
async function heldEverywhere(ks: ClusterKeySpace, k: Buffer, scope: ScopeCall): Promise<boolean> {
  const states = await Promise.all(ks.peers.map((p) => p.client.read(k, { scope, timeoutMs: 2000 }).catch(() => null)));
  const ballots = new Set(states.map((st) => (st ? `${st.accepted.counter}.${st.accepted.proposer}` : 'none')));
  return ballots.size === 1 && !ballots.has('none') && states.every((st) => st !== null && st.value.kind === 'value' && (st.tag === undefined || st.tag <= 2));
}

test.serial('a read by another session makes the nodes recall the lease; the holder flushes and releases; the next holder finds its changes', async (t) => {
  const rc = await startCluster(t, 3);
  const a = clusterKeySpace(t, rc);
  const b = clusterKeySpace(t, rc);
  await Promise.all([a.waitForPeers(5000), b.waitForPeers(5000)]);

  const la = await ScopeLease.acquire(config(a), 'a#1', 5000);
  t.truthy(la);
  t.is(la!.term, 2, 'a fresh scope is free at term 1');
  t.false(la!.tookOver);
  t.is(await la!.settle(), 0, 'a fresh scope has nothing to settle');
  await a.change(key('k1'), () => Buffer.from('from a'), { scope: la!.scope });
  t.true(la!.trusted());

  // The holder gives the lease back when the nodes ask for it.
  let released: Promise<boolean> | null = null;
  a.onLeaseRecall((lease) => {
    if (lease.equals(LEASE)) released ??= la!.release();
  });
  const refused = await b.read(key('k1'), { scope: { lease: LEASE, term: 2, session: 'b~1' } }).then(
    () => false,
    () => true,
  );
  t.true(refused, "another session's read of the held scope is refused");
  for (let i = 0; i < 250 && released === null; i++) await new Promise((r) => setTimeout(r, 20));
  t.truthy(released, 'the holder was asked to give the lease back');
  t.true(await released!, 'released clean: every change learned');
  t.false(la!.trusted());
  const free = await readLease(b.registers, LEASE);
  t.deepEqual(free, { term: 3, holder: null, settled: 2, renewals: free.renewals });

  // Now the read goes through, and the next holder starts from what a committed.
  t.deepEqual(await b.read(key('k1'), { scope: { lease: LEASE, term: 3, session: 'b~1' } }), Buffer.from('from a'));
  const lb = await ScopeLease.acquire(config(b), 'b#1', 5000);
  t.is(lb?.term, 4);
  // "Clean" means learned on a majority: the third replica's accept or learn may still
  // be on its way, and a settling scan that meets it there runs a round. Wait for it.
  for (let i = 0; i < 500 && !(await heldEverywhere(b, key('k1'), lb!.scope)); i++) await new Promise((r) => setTimeout(r, 10));
  t.true(await heldEverywhere(b, key('k1'), lb!.scope), 'every replica got the value');
  t.is(await lb!.settle(), 0, 'a clean release leaves nothing to settle');
  t.deepEqual(await b.read(key('k1'), { scope: lb!.scope }), Buffer.from('from a'));
  // a, with its old term, is fenced
  const late = await a.change(key('k1'), () => Buffer.from('late'), { scope: la!.scope }).then(
    () => null,
    (e: unknown) => e,
  );
  t.truthy(late, "the old holder's late write is refused");
  t.true(await lb!.release());
});
