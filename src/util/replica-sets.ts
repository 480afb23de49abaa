// Which nodes a key's quorums are counted in under a membership
// (src/util/membership.ts; docs/architecture.md, "Membership"): one replica
// set when stable, or the set A under the old nodes and the set B under the
// new ones during a change (joint quorums: a majority of each). The
// membership record itself lives on every member node. Pure.
import { placeable, type Membership, type MemberNode } from './membership.js';
import { place } from './placement.js';
import { groupOf, recordKey } from './record-key.js';

/** The record that holds the membership: group "members", empty name; its replicas are every member node. */
export const MEMBERSHIP_GROUP = Buffer.from('members');
export const MEMBERSHIP_KEY = recordKey(MEMBERSHIP_GROUP, Buffer.alloc(0));
const MEMBERSHIP_GROUP_PREFIX = MEMBERSHIP_KEY; // an empty name: the key is the encoded group itself

export function isMembershipGroup(encodedGroup: Buffer): boolean {
  return encodedGroup.equals(MEMBERSHIP_GROUP_PREFIX);
}

/** A key's replica set under one node set: the R best placeable nodes, or every node for the membership record. */
export function replicaSet(nodes: readonly MemberNode[], r: number, key: Uint8Array, membershipKey: boolean): string[] {
  if (membershipKey) return nodes.map((n) => n.id);
  return place(placeable(nodes), key, r).map((n) => n.id);
}

/** The sets a key's quorums must each have a majority of: [A] when stable or unmoved, [A, B] while it moves. */
export function quorumSets(m: Membership, key: Uint8Array, membershipKey = false): string[][] {
  const a = replicaSet(m.nodes, m.r, key, membershipKey);
  if (!m.transition) return [a];
  const b = replicaSet(m.transition.next, m.r, key, membershipKey);
  return sameSet(a, b) ? [a] : [a, b];
}

/** Every node a key's requests go to: the union of its quorum sets. */
export function replicasOf(m: Membership, key: Uint8Array, membershipKey = false): string[] {
  return [...new Set(quorumSets(m, key, membershipKey).flat())];
}

/** Whether a key's replica set moves in the membership's change (the mover rewrites it). */
export function moves(m: Membership, key: Uint8Array): boolean {
  return quorumSets(m, key).length > 1;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

/** Every node that holds a record key under `m` (placed by its group). */
export function holdersOfRecord(m: Membership, key: Buffer): string[] {
  const group = groupOf(key);
  return replicasOf(m, group, isMembershipGroup(group));
}

/** Every node that should hold a chunk under `m`: its R nodes under the node set the membership is going to (where chunks are written). */
export function holdersOfChunk(m: Membership, id: Uint8Array): string[] {
  return replicaSet(m.transition?.next ?? m.nodes, m.r, id, false);
}
