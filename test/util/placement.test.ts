import test from 'ava';
import { place, type PlacementNode } from '../../src/util/placement.js';

const nodes = (n: number, extra: Partial<PlacementNode> = {}): PlacementNode[] =>
  Array.from({ length: n }, (_, i) => ({ id: `node-${i + 1}`, weight: 1, zone: null, ...extra }));
const key = (i: number) => Buffer.from(`key-${i}`);
const KEYS = 100_000;

test('placement is deterministic and gives R distinct nodes', (t) => {
  const ns = nodes(5);
  for (let i = 0; i < 1000; i++) {
    const a = place(ns, key(i), 3).map((n) => n.id);
    t.deepEqual(a, place([...ns].reverse(), key(i), 3).map((n) => n.id), 'order of the node list does not matter');
    t.is(new Set(a).size, 3);
  }
  t.throws(() => place(ns, key(0), 6), { instanceOf: RangeError });
});

for (const n of [3, 4, 5, 7, 10]) {
  test(`${n} nodes: ${KEYS} keys spread evenly (max/min primary load < 1.08, replica load < 1.05)`, (t) => {
    const ns = nodes(n);
    const primary = new Map<string, number>();
    const replicas = new Map<string, number>();
    for (let i = 0; i < KEYS; i++) {
      const set = place(ns, key(i), Math.min(3, n));
      primary.set(set[0]!.id, (primary.get(set[0]!.id) ?? 0) + 1);
      for (const x of set) replicas.set(x.id, (replicas.get(x.id) ?? 0) + 1);
    }
    const ratio = (m: Map<string, number>) => Math.max(...m.values()) / Math.min(...m.values());
    t.is(primary.size, n);
    // 100k keys over ≤10 nodes: ±3 sigma of a binomial is about ±3% per node.
    t.true(ratio(primary) < 1.08, `primary max/min ${ratio(primary).toFixed(3)}`);
    t.true(ratio(replicas) < 1.05, `replica max/min ${ratio(replicas).toFixed(3)}`);
  });
}

for (const n of [3, 5, 9]) {
  test(`adding a node to ${n} moves about 1/(N+1) of primaries and R/(N+1) of replica sets`, (t) => {
    const before = nodes(n);
    const after = nodes(n + 1);
    const r = 3;
    let movedPrimary = 0;
    let movedSets = 0;
    let movedCopies = 0;
    for (let i = 0; i < KEYS; i++) {
      const a = place(before, key(i), r).map((x) => x.id);
      const b = place(after, key(i), r).map((x) => x.id);
      if (a[0] !== b[0]) movedPrimary++;
      const lost = a.filter((x) => !b.includes(x)).length;
      if (lost > 0) movedSets++;
      movedCopies += lost;
      // only the new node can take a key: no copy moves between old nodes
      for (const x of b) if (!a.includes(x)) t.is(x, `node-${n + 1}`);
    }
    const p = movedPrimary / KEYS;
    const s = movedSets / KEYS;
    t.true(Math.abs(p - 1 / (n + 1)) < 0.01, `primaries moved ${p.toFixed(4)} vs ${(1 / (n + 1)).toFixed(4)}`);
    t.true(Math.abs(s - r / (n + 1)) < 0.015, `replica sets changed ${s.toFixed(4)} vs ${(r / (n + 1)).toFixed(4)}`);
    t.is(movedCopies, movedSets, 'each changed set moves exactly one copy');
  });
}

test('weights: a node of weight 2 takes about twice the primaries', (t) => {
  const ns = [...nodes(4), { id: 'big', weight: 2, zone: null }];
  const count = new Map<string, number>();
  for (let i = 0; i < KEYS; i++) {
    const p = place(ns, key(i), 1)[0]!.id;
    count.set(p, (count.get(p) ?? 0) + 1);
  }
  const share = count.get('big')! / KEYS;
  t.true(Math.abs(share - 2 / 6) < 0.01, `share ${share.toFixed(4)}`);
});

test('zones: replicas go to distinct zones while zones remain', (t) => {
  const ns: PlacementNode[] = [
    { id: 'a1', weight: 1, zone: 'a' },
    { id: 'a2', weight: 1, zone: 'a' },
    { id: 'a3', weight: 1, zone: 'a' },
    { id: 'b1', weight: 1, zone: 'b' },
    { id: 'b2', weight: 1, zone: 'b' },
    { id: 'c1', weight: 1, zone: 'c' },
  ];
  for (let i = 0; i < 5000; i++) {
    const set = place(ns, key(i), 3);
    t.is(new Set(set.map((x) => x.zone)).size, 3);
  }
  const two = ns.filter((x) => x.zone !== 'c');
  for (let i = 0; i < 2000; i++) {
    const zones = place(two, key(i), 3).map((x) => x.zone);
    t.true(zones.includes('a') && zones.includes('b'), 'both zones used when R exceeds the zone count');
  }
});

test('murmur32 matches the reference test vectors', async (t) => {
  const { murmur32 } = await import('../../src/util/placement.js');
  t.is(murmur32(Buffer.from(''), 0), 0);
  t.is(murmur32(Buffer.from('hello'), 0), 0x248bfa47);
  t.is(murmur32(Buffer.from(''), 1), 0x514e28b7);
});
