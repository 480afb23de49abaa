// Where a key lives: weighted rendezvous (highest random weight) hashing.
// Pure and deterministic: every client computes the same replica set from the
// same node list, with no coordination. Adding a node moves only the keys for
// which the new node scores into the top R (about R/(N+1) of placements).

export interface PlacementNode {
  readonly id: string;
  readonly weight: number;
  readonly zone: string | null;
}

// Placement runs on every operation for every node, so it uses a fast
// non-cryptographic hash (murmur3's 32-bit mixing, two lanes for 52 bits)
// rather than SHA-256: the key is hashed once, then mixed with each node's seed.

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** murmur3_32 of the bytes with a seed. */
export function murmur32(key: Uint8Array, seed: number): number {
  let h = seed >>> 0;
  const n = key.length;
  const blocks = n & ~3;
  for (let i = 0; i < blocks; i += 4) {
    let k = key[i]! | (key[i + 1]! << 8) | (key[i + 2]! << 16) | (key[i + 3]! << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = n & 3;
  if (tail > 0) {
    let k = key[blocks]!;
    if (tail > 1) k ^= key[blocks + 1]! << 8;
    if (tail > 2) k ^= key[blocks + 2]! << 16;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  return fmix32(h ^ n);
}

const seeds = new Map<string, [number, number]>();

function nodeSeeds(id: string): [number, number] {
  let s = seeds.get(id);
  if (!s) {
    const b = Buffer.from(id, 'utf8');
    s = [murmur32(b, 0x9747b28c), murmur32(b, 0x5bd1e995)];
    seeds.set(id, s);
  }
  return s;
}

/** A uniform number in (0, 1) from the node id and the key's two hash lanes. */
function unitHash(nodeId: string, h1: number, h2: number): number {
  const [s1, s2] = nodeSeeds(nodeId);
  const hi = fmix32(h1 ^ s1) >>> 12; // 20 bits
  const lo = fmix32((h2 ^ s2) + 0x27d4eb2f); // 32 bits
  // 52 bits → an exact double; the +1 and +2 keep it strictly inside (0, 1), so log() is finite.
  return (hi * 0x1_0000_0000 + lo + 1) / (2 ** 52 + 2);
}

function keyHashes(key: Uint8Array): [number, number] {
  return [murmur32(key, 0x1b873593), murmur32(key, 0xcc9e2d51)];
}

/**
 * Weighted rendezvous score (logarithmic method): -w / ln(u). The node with the
 * highest score wins; a node with twice the weight wins twice as often.
 */
export function score(node: PlacementNode, key: Uint8Array): number {
  const [h1, h2] = keyHashes(key);
  return -node.weight / Math.log(unitHash(node.id, h1, h2));
}

/**
 * The `r` nodes that hold `key`, best first. Replicas go to distinct zones
 * while there are zones left to use; nodes without a zone count as their own zone.
 */
export function place<N extends PlacementNode>(nodes: readonly N[], key: Uint8Array, r: number): N[] {
  if (r > nodes.length) throw new RangeError(`replication ${r} exceeds ${nodes.length} nodes`);
  const [h1, h2] = keyHashes(key);
  const ranked = nodes.map((n) => ({ n, s: -n.weight / Math.log(unitHash(n.id, h1, h2)) })).sort((a, b) => b.s - a.s || (a.n.id < b.n.id ? -1 : 1));
  const zones = new Set(nodes.map((n) => n.zone ?? `\0${n.id}`));
  if (zones.size <= 1) return ranked.slice(0, r).map((x) => x.n);
  // First pass: at most ceil(r / zones) per zone; second pass fills what is left in rank order.
  const perZone = Math.ceil(r / zones.size);
  const used = new Map<string, number>();
  const chosen: N[] = [];
  const rest: N[] = [];
  for (const { n } of ranked) {
    const z = n.zone ?? `\0${n.id}`;
    const c = used.get(z) ?? 0;
    if (chosen.length < r && c < perZone) {
      chosen.push(n);
      used.set(z, c + 1);
    } else {
      rest.push(n);
    }
  }
  for (const n of rest) {
    if (chosen.length >= r) break;
    chosen.push(n);
  }
  return chosen;
}
