// Membership: the cluster's nodes, their weights and zones, and R, as one
// replicated value with an epoch (docs/architecture.md, "Membership"). Pure:
// the value, its codec, the transitions an operator asks for, and the rules an
// acceptor applies to the epoch a request carries. The membership record is
// changed only through these transitions, run as compare-and-set changes of
// its register, so each epoch names exactly one membership.
//
// A change moves the cluster from the node set A (`nodes`) to the node set B
// (`next`) in three records, each one epoch later than the one before:
//   stable A  ──begin──▶  joint A→B  ──rewritten──▶  rewritten A→B  ──finish──▶  stable B
// While `next` is set, every key whose replica set differs between A and B
// needs a majority of its replicas in A and a majority in B (joint quorums).
// The mover (src/cluster, and test/sim/membership.ts first) makes every node
// of A but at most R − majority(R) learn the joint epoch and list its keys,
// rewrites each moved key in a joint round (so its value sits on a majority
// of B), records `rewritten`, and only then `finish` drops A.
import { Decoder, Encoder } from './codec.js';
import { QfsError } from './errors.js';
import { isNodeId } from './ids.js';

export type NodeState = 'active' | 'draining';

export interface MemberNode {
  readonly id: string;
  readonly url: string;
  /** Relative share of the keys (placement), > 0. */
  readonly weight: number;
  readonly zone: string | null;
  /** `draining`: a member that placement gives no keys (it is emptied, then removed). */
  readonly state: NodeState;
}

/** What an operator asks for. */
export type Change =
  | { readonly kind: 'add'; readonly id: string; readonly url: string; readonly weight: number; readonly zone: string | null }
  | { readonly kind: 'set'; readonly id: string; readonly weight?: number; readonly zone?: string | null }
  | { readonly kind: 'drain'; readonly id: string }
  | { readonly kind: 'remove'; readonly id: string; readonly dead: boolean };

export type Phase = 'joint' | 'rewritten';

export interface Membership {
  /** Bumped by every change of the record. */
  readonly epoch: number;
  readonly r: number;
  /** The node set A: the current one, or the one being left during a change. */
  readonly nodes: readonly MemberNode[];
  /** During a change, the node set B and how far the change has come; null when stable. */
  readonly transition: { readonly next: readonly MemberNode[]; readonly phase: Phase; readonly change: Change } | null;
  /** Changes asked for while another was in progress, on purpose (`queue`); started in order. */
  readonly queued: readonly Change[];
}

export const MAX_NODES = 1024;
export const MAX_R = 15;
export const MAX_QUEUED = 16;
const MAX_URL_BYTES = 1024;
const MAX_ZONE_BYTES = 64;
const MAX_WEIGHT = 1_000_000;
const VERSION = 1;

const fail = (message: string): never => {
  throw new QfsError('bad_request', message);
};

export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

/** Nodes that placement gives keys to. */
export function placeable(nodes: readonly MemberNode[]): MemberNode[] {
  return nodes.filter((n) => n.state === 'active');
}

/** Distinct zones of the placeable nodes (a node without a zone is its own). */
function zoneCount(nodes: readonly MemberNode[]): number {
  return new Set(placeable(nodes).map((n) => n.zone ?? `\0${n.id}`)).size;
}

function checkNodeFields(n: { id: string; url: string; weight: number; zone: string | null }): void {
  if (!isNodeId(n.id)) fail(`invalid node id ${JSON.stringify(n.id.slice(0, 80))}: use 1-63 letters, digits, '_', '.', '-'`);
  if (!/^wss?:\/\/[^\s/]+/.test(n.url) || Buffer.byteLength(n.url) > MAX_URL_BYTES) fail(`node ${n.id}: invalid url ${JSON.stringify(n.url.slice(0, 80))} (ws:// or wss://)`);
  if (!Number.isFinite(n.weight) || n.weight <= 0 || n.weight > MAX_WEIGHT) fail(`node ${n.id}: weight must be above 0 and at most ${MAX_WEIGHT}, not ${n.weight}`);
  if (n.zone !== null && (n.zone.length === 0 || Buffer.byteLength(n.zone) > MAX_ZONE_BYTES)) fail(`node ${n.id}: zone must be 1-${MAX_ZONE_BYTES} bytes`);
}

/** Throws `bad_request` unless `nodes` is a node set a membership may hold with this R. */
export function checkNodeSet(nodes: readonly MemberNode[], r: number): void {
  if (nodes.length > MAX_NODES) fail(`${nodes.length} nodes, more than ${MAX_NODES}`);
  const ids = new Set<string>();
  const urls = new Set<string>();
  for (const n of nodes) {
    checkNodeFields(n);
    if (ids.has(n.id)) fail(`duplicate node id ${n.id}`);
    if (urls.has(n.url)) fail(`duplicate node url ${n.url}`);
    ids.add(n.id);
    urls.add(n.url);
  }
  if (placeable(nodes).length < r) fail(`${placeable(nodes).length} active nodes, fewer than R = ${r}`);
}

/** Throws `bad_request` unless `m` is a well-formed membership. */
export function checkMembership(m: Membership): void {
  if (!Number.isSafeInteger(m.epoch) || m.epoch < 1) fail(`invalid epoch ${m.epoch}`);
  if (!Number.isInteger(m.r) || m.r < 1 || m.r > MAX_R) fail(`R must be 1-${MAX_R}, not ${m.r}`);
  checkNodeSet(m.nodes, m.r);
  if (m.transition) checkNodeSet(m.transition.next, m.r);
  if (m.queued.length > MAX_QUEUED) fail(`${m.queued.length} queued changes, more than ${MAX_QUEUED}`);
}

/** The first membership of a cluster (format, or `cluster.json`'s node list): epoch 1, stable. */
export function initialMembership(nodes: ReadonlyArray<Omit<MemberNode, 'state'>>, r: number): Membership {
  const m: Membership = { epoch: 1, r, nodes: nodes.map((n) => ({ ...n, state: 'active' })), transition: null, queued: [] };
  checkMembership(m);
  return m;
}

/**
 * The node set a change leads to, from `nodes`; throws `bad_request` for a
 * mistake, and changes nothing then: a duplicate id or url, an unknown node, a
 * change that changes nothing, fewer than R active nodes (or fewer zones than
 * there were, up to R) afterwards, removing a node that still holds keys
 * without `dead`.
 */
export function applyChange(nodes: readonly MemberNode[], change: Change, r: number): MemberNode[] {
  const find = (id: string): MemberNode => nodes.find((n) => n.id === id) ?? fail(`no node ${id} in the membership`);
  let out: MemberNode[];
  switch (change.kind) {
    case 'add': {
      if (nodes.some((n) => n.id === change.id)) fail(`node id ${change.id} is already a member`);
      if (nodes.some((n) => n.url === change.url)) fail(`url ${change.url} already belongs to node ${nodes.find((n) => n.url === change.url)!.id}`);
      out = [...nodes, { id: change.id, url: change.url, weight: change.weight, zone: change.zone, state: 'active' }];
      break;
    }
    case 'set': {
      const n = find(change.id);
      const next = { ...n, ...(change.weight !== undefined ? { weight: change.weight } : {}), ...(change.zone !== undefined ? { zone: change.zone } : {}) };
      if (next.weight === n.weight && next.zone === n.zone) fail(`node ${change.id} already has that weight and zone`);
      out = nodes.map((x) => (x.id === change.id ? next : x));
      break;
    }
    case 'drain': {
      const n = find(change.id);
      if (n.state === 'draining') fail(`node ${change.id} is already drained`);
      out = nodes.map((x) => (x.id === change.id ? { ...x, state: 'draining' as const } : x));
      break;
    }
    case 'remove': {
      const n = find(change.id);
      if (n.state === 'active' && !change.dead) fail(`node ${change.id} still holds keys: drain it first, or remove it as dead if it is gone for good`);
      out = nodes.filter((x) => x.id !== change.id);
      break;
    }
  }
  if (placeable(out).length < r) fail(`that would leave ${placeable(out).length} active nodes, fewer than R = ${r}`);
  if (zoneCount(out) < Math.min(r, zoneCount(nodes))) fail(`that would leave ${zoneCount(out)} zones, fewer than the ${Math.min(r, zoneCount(nodes))} replicas need`);
  checkNodeSet(out, r);
  return out;
}

/** The node set the membership ends at once its change and every queued one is done (where a new change is judged). */
export function targetNodes(m: Membership): readonly MemberNode[] {
  let nodes = m.transition ? m.transition.next : m.nodes;
  for (const c of m.queued) nodes = applyChange(nodes, c, m.r);
  return nodes;
}

/**
 * An operator's change. Stable: it starts (joint phase, next epoch). While
 * another change is in progress it is refused (`busy`) unless `queue`, which
 * appends it, checked against the node set the changes before it lead to.
 */
export function requestChange(m: Membership, change: Change, opts: { queue?: boolean } = {}): Membership {
  if (m.transition === null) {
    const next = applyChange(m.nodes, change, m.r);
    return { epoch: m.epoch + 1, r: m.r, nodes: m.nodes, transition: { next, phase: 'joint', change }, queued: m.queued };
  }
  if (!opts.queue) {
    throw new QfsError('busy', `a change is in progress (${describeChange(m.transition.change)}, ${m.transition.phase}, epoch ${m.epoch}); wait for it, or queue this one on purpose`);
  }
  if (m.queued.length >= MAX_QUEUED) throw new QfsError('busy', `${MAX_QUEUED} changes are queued already`);
  applyChange(targetNodes(m), change, m.r);
  return { ...m, epoch: m.epoch + 1, queued: [...m.queued, change] };
}

/** The mover rewrote every moved key onto B (still joint quorums). Null when `m` is not at the joint phase of epoch `epoch`. */
export function markRewritten(m: Membership, epoch: number): Membership | null {
  if (m.epoch !== epoch || m.transition?.phase !== 'joint') return null;
  return { ...m, epoch: m.epoch + 1, transition: { ...m.transition, phase: 'rewritten' } };
}

/** Drops A: B becomes the node set. Null unless `m` is rewritten at epoch `epoch`. */
export function finishChange(m: Membership, epoch: number): Membership | null {
  if (m.epoch !== epoch || m.transition?.phase !== 'rewritten') return null;
  return { epoch: m.epoch + 1, r: m.r, nodes: m.transition.next, transition: null, queued: m.queued };
}

/**
 * Starts the first queued change on a stable membership. A queued change that
 * no longer applies is dropped with its reason (`dropped`). Null when there is
 * nothing to start.
 */
export function startQueued(m: Membership): { membership: Membership; dropped: Array<{ change: Change; reason: string }> } | null {
  if (m.transition !== null || m.queued.length === 0) return null;
  const dropped: Array<{ change: Change; reason: string }> = [];
  for (let i = 0; i < m.queued.length; i++) {
    const change = m.queued[i]!;
    try {
      const next = applyChange(m.nodes, change, m.r);
      return { membership: { epoch: m.epoch + 1, r: m.r, nodes: m.nodes, transition: { next, phase: 'joint', change }, queued: m.queued.slice(i + 1) }, dropped };
    } catch (err) {
      dropped.push({ change, reason: (err as Error).message });
    }
  }
  return { membership: { ...m, epoch: m.epoch + 1, queued: [] }, dropped };
}

/**
 * What a mover does next with the record it read (and does again after any
 * failure, its own or its predecessor's: each step is idempotent, and the
 * record's compare-and-sets make a step taken on an old view a no-op):
 * - `rewrite`: the joint phase; make all but R − majority(R) of A's nodes
 *   learn this epoch and list their keys (coversEveryMajority), rewrite each
 *   listed key that moves in a joint round, then markRewritten(epoch);
 * - `finish`: finishChange(epoch), then tell the members;
 * - `start-queued`: startQueued;
 * - `idle`: stable, nothing queued.
 */
export type MoverStep = { readonly kind: 'rewrite' | 'finish'; readonly epoch: number } | { readonly kind: 'start-queued' | 'idle' };

export function moverStep(m: Membership): MoverStep {
  if (m.transition?.phase === 'joint') return { kind: 'rewrite', epoch: m.epoch };
  if (m.transition?.phase === 'rewritten') return { kind: 'finish', epoch: m.epoch };
  return m.queued.length > 0 ? { kind: 'start-queued' } : { kind: 'idle' };
}

/** Nodes of `before` that `after` no longer has: their data may go once `after` is stable. */
export function departed(before: Membership, after: Membership): string[] {
  if (after.transition !== null) return [];
  return before.nodes.filter((n) => !after.nodes.some((x) => x.id === n.id)).map((n) => n.id);
}

export function describeChange(c: Change): string {
  switch (c.kind) {
    case 'add':
      return `add ${c.id} (${c.url})`;
    case 'set':
      return `set ${c.id}${c.weight !== undefined ? ` weight ${c.weight}` : ''}${c.zone !== undefined ? ` zone ${c.zone ?? '-'}` : ''}`;
    case 'drain':
      return `drain ${c.id}`;
    case 'remove':
      return `remove ${c.id}${c.dead ? ' (dead)' : ''}`;
  }
}

// Acceptor rules. Every prepare, accept, read and scan of a record carries
// the epoch of the membership its sender used. A node keeps the newest
// membership it has learned (durably, before it answers under it).

export type EpochAdmission = 'ok' | 'stale' | 'behind';

/**
 * `stale`: the request's epoch is older than the node's: refuse it and hand the
 * node's membership back (its sender may be using quorums that no longer
 * intersect the current ones). `behind`: the node must learn the request's
 * membership first (install it; the request carries it or the node asks).
 */
export function admitEpoch(mine: Membership, requestEpoch: number): EpochAdmission {
  if (requestEpoch < mine.epoch) return 'stale';
  if (requestEpoch > mine.epoch) return 'behind';
  return 'ok';
}

/** The membership a node keeps after being offered `offered`: it, when newer; else null (keep its own). */
export function decideInstall(mine: Membership | null, offered: Membership): Membership | null {
  return mine === null || offered.epoch > mine.epoch ? offered : null;
}

/**
 * Whether the nodes that `answered` (each after learning the joint epoch)
 * meet every majority of every replica set drawn from `members` with this R:
 * at most R − majority(R) members are missing. Then no quorum of an older
 * epoch can form any more (it would need a node that now refuses it), and a
 * key with a value chosen under an older epoch is in some answer's listing.
 * The membership key (all nodes) is covered too: its majorities are bigger.
 */
export function coversEveryMajority(members: readonly string[], answered: ReadonlySet<string>, r: number): boolean {
  const missing = members.filter((id) => !answered.has(id)).length;
  return missing <= r - majority(r);
}

// Codec: version, epoch, R, node set A, transition (B, phase, change), queued changes.

function encodeNodes(e: Encoder, nodes: readonly MemberNode[]): void {
  e.u16(nodes.length);
  for (const n of nodes) {
    e.str(n.id).str(n.url);
    const w = Buffer.alloc(8);
    w.writeDoubleBE(n.weight);
    e.raw(w);
    e.u8(n.zone === null ? 0 : 1);
    if (n.zone !== null) e.str(n.zone);
    e.u8(n.state === 'active' ? 0 : 1);
  }
}

function decodeNodes(d: Decoder): MemberNode[] {
  const count = d.u16('node count');
  if (count > MAX_NODES) fail(`${count} nodes, more than ${MAX_NODES}`);
  const out: MemberNode[] = [];
  for (let i = 0; i < count; i++) {
    const id = d.str(63, 'node id');
    const url = d.str(MAX_URL_BYTES, 'node url');
    const weight = d.raw(8, 'weight').readDoubleBE(0);
    const hasZone = d.bool('zone flag');
    const zone = hasZone ? d.str(MAX_ZONE_BYTES, 'zone') : null;
    const s = d.u8('node state');
    if (s > 1) fail(`invalid node state ${s}`);
    out.push({ id, url, weight, zone, state: s === 0 ? 'active' : 'draining' });
  }
  return out;
}

const CHANGE_KINDS = ['add', 'set', 'drain', 'remove'] as const;

function encodeChange(e: Encoder, c: Change): void {
  e.u8(CHANGE_KINDS.indexOf(c.kind)).str(c.id);
  switch (c.kind) {
    case 'add': {
      e.str(c.url);
      const w = Buffer.alloc(8);
      w.writeDoubleBE(c.weight);
      e.raw(w).u8(c.zone === null ? 0 : 1);
      if (c.zone !== null) e.str(c.zone);
      break;
    }
    case 'set': {
      const w = Buffer.alloc(8);
      w.writeDoubleBE(c.weight ?? 0);
      e.u8(c.weight !== undefined ? 1 : 0).raw(w);
      e.u8(c.zone === undefined ? 0 : c.zone === null ? 1 : 2);
      if (typeof c.zone === 'string') e.str(c.zone);
      break;
    }
    case 'drain':
      break;
    case 'remove':
      e.bool(c.dead);
      break;
  }
}

function decodeChange(d: Decoder): Change {
  const k = d.u8('change kind');
  const kind = CHANGE_KINDS[k] ?? fail(`invalid change kind ${k}`);
  const id = d.str(63, 'change node id');
  if (!isNodeId(id)) fail(`invalid node id in a change`);
  switch (kind) {
    case 'add': {
      const url = d.str(MAX_URL_BYTES, 'change url');
      const weight = d.raw(8, 'change weight').readDoubleBE(0);
      const zone = d.bool('change zone flag') ? d.str(MAX_ZONE_BYTES, 'change zone') : null;
      checkNodeFields({ id, url, weight, zone });
      return { kind, id, url, weight, zone };
    }
    case 'set': {
      const hasWeight = d.bool('set weight flag');
      const weight = d.raw(8, 'set weight').readDoubleBE(0);
      const z = d.u8('set zone flag');
      if (z > 2) fail(`invalid zone flag ${z}`);
      const zone = z === 2 ? d.str(MAX_ZONE_BYTES, 'set zone') : null;
      if (hasWeight && (!Number.isFinite(weight) || weight <= 0 || weight > MAX_WEIGHT)) fail(`invalid weight ${weight} in a change`);
      return { kind, id, ...(hasWeight ? { weight } : {}), ...(z > 0 ? { zone } : {}) };
    }
    case 'drain':
      return { kind, id };
    case 'remove':
      return { kind, id, dead: d.bool('dead flag') };
  }
}

export function encodeMembership(m: Membership): Buffer {
  checkMembership(m);
  const e = new Encoder(64 + 128 * (m.nodes.length + (m.transition?.next.length ?? 0)));
  e.u8(VERSION).u53(m.epoch).u8(m.r);
  encodeNodes(e, m.nodes);
  e.u8(m.transition === null ? 0 : m.transition.phase === 'joint' ? 1 : 2);
  if (m.transition) {
    encodeNodes(e, m.transition.next);
    encodeChange(e, m.transition.change);
  }
  e.u8(m.queued.length);
  for (const c of m.queued) encodeChange(e, c);
  return e.finish();
}

/** Throws `corrupt` for bytes that are not a well-formed membership. */
export function decodeMembership(bytes: Buffer): Membership {
  try {
    const d = new Decoder(bytes);
    const version = d.u8('version');
    if (version !== VERSION) fail(`membership format ${version}, expected ${VERSION}`);
    const epoch = d.u53('epoch');
    const r = d.u8('R');
    const nodes = decodeNodes(d);
    const p = d.u8('phase');
    if (p > 2) fail(`invalid phase ${p}`);
    let transition: Membership['transition'] = null;
    if (p > 0) {
      const next = decodeNodes(d);
      const change = decodeChange(d);
      transition = { next, phase: p === 1 ? 'joint' : 'rewritten', change };
    }
    const q = d.u8('queued count');
    if (q > MAX_QUEUED) fail(`${q} queued changes, more than ${MAX_QUEUED}`);
    const queued: Change[] = [];
    for (let i = 0; i < q; i++) queued.push(decodeChange(d));
    d.end();
    const m: Membership = { epoch, r, nodes, transition, queued };
    checkMembership(m);
    return m;
  } catch (err) {
    throw new QfsError('corrupt', `not a membership record: ${(err as Error).message}`, { cause: err });
  }
}
