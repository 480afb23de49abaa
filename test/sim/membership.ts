// One seeded schedule of membership changes (src/util/membership.ts,
// src/cluster/transition.ts; docs/architecture.md "Membership"): clients run
// CASPaxos record operations (reads, writes, compare-and-sets) on a few keys
// while a mover adds, drains, removes and removes-as-dead nodes. The
// membership itself is a CASPaxos register on every member node, changed only
// through the pure transitions; every request carries its sender's
// membership and nodes fence older epochs. The nemesis crashes nodes (losing
// what they had not synced), stalls processes, cuts links, drops, duplicates
// and delays messages, kills the mover mid-change (a new one resumes from the
// record) and kills clients (they come back with the bootstrap membership,
// like a mount started from an old cluster.json). A node removed from the
// cluster is stopped for good, with its data.
//
// What must hold:
// - every record's history is linearizable, and no acknowledged write is lost
//   (checked directly too: the final value never predates an acknowledged
//   write);
// - an epoch names one membership, wherever it was learned;
// - once faults stop, every planned change finishes and the membership is the
//   planned one, and a client with the bootstrap membership reads every key.
//
// The proposer here is a small CASPaxos proposer over the pure rules (full
// rounds, the one-accept change and prepare-ahead within the epoch they were
// promised in, one-round-trip reads; no lineage: a write whose accept may
// have been taken somewhere ends unknown rather than retried), so that what
// is tested is the membership protocol.
//
// QFS_SIM_TRACE=1 prints the mover's steps, every write of the membership
// record (or of the key QFS_SIM_TRACE_KEY names) and, on a failure, each
// node's state.
import { ZERO_BALLOT, compareBallots, type Ballot } from '../../src/util/ballot.js';
import { EMPTY_VALUE, decideAccept, decidePrepare, type AcceptorState, type RecordValue } from '../../src/util/paxos.js';
import {
  admitEpoch,
  coversEveryMajority,
  decideInstall,
  decodeMembership,
  describeChange,
  encodeMembership,
  finishChange,
  initialMembership,
  markRewritten,
  departed,
  moverStep,
  requestChange,
  startQueued,
  targetNodes,
  applyChange,
  type Change,
  type MemberNode,
  type Membership,
} from '../../src/util/membership.js';
import { jointQuorumLost, jointQuorumReached } from '../../src/cluster/quorum.js';
import { moves, quorumSets } from '../../src/util/replica-sets.js';
import { Registers, type KeyQuorum, type RegisterOptions } from '../../src/cluster/registers.js';
import type { Acceptor, AcceptorCall } from '../../src/cluster/acceptor.js';
import { MEMBERSHIP_KEY, isMembershipGroup } from '../../src/cluster/membership-view.js';
import { KEEP, groupOf, recordKey } from '../../src/keyspace/types.js';
import type { ScanReply, Verdict } from '../../src/rpc/messages.js';
import { open, seal } from '../../src/util/envelope.js';
import { QfsError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/log.js';
import { checkLinearizable, describeEvent, type Event, type Op } from '../helpers/linearizability.js';
import { World } from './world.js';

export interface MembershipBugs {
  /** During a change, quorums are counted in the new replica set B only (no joint quorum). */
  noJoint?: boolean;
  /** The mover marks a change rewritten without rewriting the moved keys (A dropped before the rewrite). */
  skipRewrite?: boolean;
  /** Nodes answer requests of older epochs (no fencing). */
  noFence?: boolean;
  /** The mover goes on after one node listed its keys, instead of all but R − majority(R) of A. */
  listFromOne?: boolean;
  /** Nodes keep the membership they learned in memory only: after a crash they are back at the bootstrap one. */
  volatileEpoch?: boolean;
  /** A proposer's pre-promised next ballot is used after its membership changed (it was promised by other quorums). */
  keepPromises?: boolean;
  /**
   * Real proposer only: Registers counts a plain majority of A ∪ B instead of
   * a majority of each (RegisterOptions.injectBugs.unionMajority). (`noJoint`
   * with the real proposer is Registers counting B only: injectBugs.newSetOnly.)
   */
  unionMajority?: boolean;
  /**
   * Real proposer only: the mover judges whether a key moves by the whole
   * record key's placement instead of its group's, which is what the key is
   * placed by (as src/cluster/mover.ts `rewriteListed` does today).
   */
  moverPlacesByKey?: boolean;
}

export interface MembershipScheduleResult {
  seed: number;
  ok: boolean;
  failure?: string;
  shape: string;
  steps: number;
  simulatedMs: number;
  operations: number;
  okOperations: number;
  /** Changes finished (stable records written by the mover), keys rewritten, mover deaths, client deaths. */
  changes: number;
  rewrites: number;
  moverKills: number;
  clientKills: number;
  /** Requests refused for an older epoch (the sender then learned the newer membership). */
  staleRefusals: number;
  /** Changes made with one accept at a pre-promised ballot. */
  fastChanges: number;
  crashes: number;
}

const SIM_LIMIT_MS = 600_000;
const OP_DEADLINE_MS = 600;
const CALL_TIMEOUT_MS = 150;
const MEMBERS_KEY = Buffer.from('@members');

type Request =
  | { kind: 'prepare'; key: string; ballot: Ballot }
  | { kind: 'accept'; key: string; ballot: Ballot; value: RecordValue; promiseNext: boolean }
  | { kind: 'read'; key: string }
  /** The mover's: learn the sender's membership, then list the keys holding an accepted value. */
  | { kind: 'list' };

type Reply =
  | { kind: 'stale'; membership: Membership }
  /** The request names a newer epoch than the node's and came without it (its sender moved on meanwhile: nothing to hand over). */
  | { kind: 'behind' }
  | { kind: 'verdict'; ok: boolean; state: AcceptorState }
  | { kind: 'state'; state: AcceptorState }
  | { kind: 'keys'; keys: string[] };

const MEMBERS = MEMBERS_KEY.toString('latin1');
const FORMAT_BALLOT: Ballot = { counter: 1, proposer: '0000000000000000' };
const FRESH: AcceptorState = { promised: ZERO_BALLOT, accepted: ZERO_BALLOT, value: EMPTY_VALUE };
const bufOf = (k: string): Buffer => Buffer.from(k, 'latin1');
const valueOf = (s: AcceptorState): string | null => (s.value.kind === 'value' ? s.value.bytes.toString('latin1') : null);

/**
 * How a request names its membership: the epoch it was placed by, and that
 * membership itself when the sender still has it to hand over to a node that
 * is behind (on the wire: `epoch_ahead`, then an install and the call again).
 */
interface From {
  epoch: number;
  offer: Membership | null;
}

/**
 * Where the membership record lives and how values are stored: the own
 * proposer's raw values under "@members", or the real proposer's enveloped
 * values (src/util/envelope.ts) under the real record key (MEMBERSHIP_KEY).
 */
interface NodeLayout {
  members: string;
  sealed: boolean;
}

const OWN_LAYOUT: NodeLayout = { members: MEMBERS, sealed: false };

/**
 * A storage node: acceptor states and the newest membership it learned, both
 * written through a group commit (in order; a crash loses what was not yet
 * synced). Every answer leaves only once everything it was decided on is
 * durable.
 */
class Node {
  up = true;
  /** Stopped for good (removed from the cluster, or dead): never restarts. */
  gone = false;
  private incarnation = 0;
  private state = new Map<string, AcceptorState>();
  private readonly durable = new Map<string, AcceptorState>();
  membership: Membership;
  private durableMembership: Membership;
  private syncedUntil = 0;
  readonly stats = { crashes: 0, stale: 0 };

  constructor(
    readonly name: string,
    private readonly world: World,
    bootstrap: Membership,
    private readonly bugs: MembershipBugs,
    private readonly learned: (node: string, m: Membership) => void,
    private readonly violation: (what: string) => void,
    private readonly layout: NodeLayout = OWN_LAYOUT,
  ) {
    this.membership = bootstrap;
    this.durableMembership = bootstrap;
    // A bootstrap node holds the first membership record, as format writes it.
    if (bootstrap.nodes.some((n) => n.id === name)) {
      const bytes = encodeMembership(bootstrap);
      const s: AcceptorState = { promised: FORMAT_BALLOT, accepted: FORMAT_BALLOT, value: layout.sealed ? seal(bytes, []) : { kind: 'value', bytes } };
      this.state.set(layout.members, s);
      this.durable.set(layout.members, s);
    }
  }

  crash(): void {
    if (!this.up) return;
    this.up = false;
    this.incarnation++;
    this.stats.crashes++;
    this.state = new Map(this.durable);
    this.membership = this.durableMembership;
    this.syncedUntil = this.world.now;
  }

  restart(): void {
    if (!this.gone) this.up = true;
  }

  private sync(land: () => void): void {
    const incarnation = this.incarnation;
    const at = Math.max(this.syncedUntil, this.world.now + 0.05 + this.world.rng.next() * 1.5);
    this.syncedUntil = at;
    this.world.atTime(at, () => {
      if (this.incarnation === incarnation) land();
    });
  }

  private write(k: string, s: AcceptorState): void {
    const before = this.state.get(k) ?? FRESH;
    if (compareBallots(s.promised, before.promised) < 0 || compareBallots(s.accepted, before.accepted) < 0) this.violation(`${this.name}: ballots of ${k} went back`);
    this.state.set(k, s);
    if (process.env['QFS_SIM_TRACE'] && k === (process.env['QFS_SIM_TRACE_KEY'] ?? this.layout.members)) {
      let v = this.layout.sealed ? (open(s.value).payload?.toString('latin1') ?? null) : valueOf(s);
      if (k === this.layout.members && v !== null) v = `epoch ${decodeMembership(Buffer.from(v, 'latin1')).epoch}`;
      process.stdout.write(`${this.world.now.toFixed(2)} ${this.name}@${this.membership.epoch} ${k} p=${s.promised.counter}.${s.promised.proposer.slice(0, 4)} a=${s.accepted.counter}.${s.accepted.proposer.slice(0, 4)} v=${v}\n`);
    }
    this.sync(() => this.durable.set(k, s));
  }

  /** Answers once every write decided so far is durable; never if the node crashes first. */
  private answer(reply: () => Reply, send: (r: Reply) => void): void {
    const incarnation = this.incarnation;
    const r = reply();
    this.world.atTime(this.syncedUntil, () => {
      if (this.incarnation === incarnation && this.up) send(r);
    });
  }

  handle(from: From, req: Request, send: (r: Reply) => void): void {
    const newer = from.offer ? decideInstall(this.membership, from.offer) : null;
    if (newer) {
      this.membership = newer;
      this.learned(this.name, newer);
      if (!this.bugs.volatileEpoch) this.sync(() => (this.durableMembership = newer.epoch > this.durableMembership.epoch ? newer : this.durableMembership));
    }
    if (!this.bugs.noFence && admitEpoch(this.membership, from.epoch) === 'stale') {
      this.stats.stale++;
      const m = this.membership;
      return this.answer(() => ({ kind: 'stale', membership: m }), send);
    }
    if (admitEpoch(this.membership, from.epoch) === 'behind') return this.answer(() => ({ kind: 'behind' }), send);
    switch (req.kind) {
      case 'prepare': {
        const cur = this.state.get(req.key) ?? FRESH;
        const next = decidePrepare(cur, req.ballot);
        if (next) this.write(req.key, next);
        return this.answer(() => ({ kind: 'verdict', ok: next !== null, state: next ?? cur }), send);
      }
      case 'accept': {
        const cur = this.state.get(req.key) ?? FRESH;
        const next = decideAccept(cur, req.ballot, req.value, req.promiseNext);
        if (next) this.write(req.key, next);
        return this.answer(() => ({ kind: 'verdict', ok: next !== null, state: next ?? cur }), send);
      }
      case 'read': {
        const cur = this.state.get(req.key) ?? FRESH;
        return this.answer(() => ({ kind: 'state', state: cur }), send);
      }
      case 'list': {
        // Tombstones are values here (the real proposer writes them for deletes): they must be listed.
        const keys = [...this.state].filter(([k, s]) => s.value.kind !== 'empty' && k !== this.layout.members).map(([k]) => k);
        return this.answer(() => ({ kind: 'keys', keys }), send);
      }
    }
  }
}

class Killed extends Error {}

type RoundOutcome = { kind: 'ok'; value: string | null } | { kind: 'unknown' } | { kind: 'fail' };

/**
 * A proposer (a mount, a tool, or the mover) with the membership it knows.
 * It learns a newer one from every refusal, and from the membership record
 * when it reads or writes it.
 */
class Client {
  dead = false;
  private counter = 0;
  readonly proposer: string;
  staleSeen = 0;

  constructor(
    readonly name: string,
    private readonly world: World,
    private readonly nodes: ReadonlyMap<string, Node>,
    public membership: Membership,
    private readonly bugs: MembershipBugs,
  ) {
    this.proposer = world.rng.hex(8);
  }

  learn(m: Membership): void {
    if (m.epoch > this.membership.epoch) this.membership = m;
  }

  private check(): void {
    if (this.dead) throw new Killed(this.name);
  }

  private ballot(): Ballot {
    return { counter: ++this.counter, proposer: this.proposer };
  }

  /**
   * Per key, the next ballot a quorum promised this proposer with its last
   * accept, the value that accept wrote, and the epoch of the quorums that
   * promised it: its next change of the key can then be that one accept.
   * Good only under the same epoch: promised by A's majority, it says
   * nothing to a quorum of B alone.
   */
  private readonly known = new Map<string, { next: Ballot; value: RecordValue; epoch: number }>();
  stats = { fastChanges: 0 };

  private observe(b: Ballot): void {
    if (b.counter > this.counter) this.counter = b.counter;
  }

  sets(m: Membership, key: string): string[][] {
    const k = bufOf(key);
    const sets = quorumSets(m, k, key === MEMBERS);
    return this.bugs.noJoint ? [sets[sets.length - 1]!] : sets;
  }

  /** One request and its answer, or null after the call timeout (lost, crashed, cut off). */
  call(node: string, m: Membership, req: Request): Promise<Reply | null> {
    return callNode(this.world, this.nodes, this.name, node, m, req);
  }

  /**
   * One phase to every node of the key's quorum sets under `m`: done once the
   * yes answers make a joint quorum, or once that is impossible. `stale`: a
   * node refused the epoch (the newer membership is learned).
   */
  private phase(m: Membership, key: string, req: Request, yes: (r: Reply) => boolean, waitAll = false): Promise<{ ok: boolean; replies: Reply[]; stale: boolean; allRefused: boolean }> {
    const sets = this.sets(m, key);
    const targets = [...new Set(sets.flat())];
    return new Promise((resolve) => {
      const ayes = new Set<string>();
      const nays = new Set<string>();
      const replies: Reply[] = [];
      let stale = false;
      let settled = false;
      const check = (): void => {
        if (settled) return;
        const all = ayes.size + nays.size === targets.length;
        if (jointQuorumReached(sets, ayes)) {
          settled = true;
          resolve({ ok: true, replies, stale, allRefused: false });
        } else if ((jointQuorumLost(sets, nays) && !waitAll) || all) {
          settled = true;
          // Every target answered and none said yes: the request was taken nowhere.
          resolve({ ok: false, replies, stale, allRefused: all && ayes.size === 0 && replies.length === targets.length });
        }
      };
      for (const t of targets) {
        void this.call(t, m, req).then((r) => {
          if (r?.kind === 'stale') {
            stale = true;
            this.staleSeen++;
            this.learn(r.membership);
          }
          if (r) replies.push(r);
          if (r && r.kind !== 'stale' && yes(r)) ayes.add(t);
          else nays.add(t);
          check();
        });
      }
    });
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => this.world.at(ms, resolve));
  }

  /**
   * A CASPaxos change of `key`: `f` maps the current value to the new one, or
   * to undefined to keep it (a read, a rewrite). A change whose accept was
   * sent but reached no quorum ends unknown; one that never sent an accept
   * and runs out of time fails (it did nothing).
   */
  async change(key: string, f: (old: string | null) => string | null | undefined, deadlineMs = OP_DEADLINE_MS): Promise<RoundOutcome> {
    const deadline = this.world.now + deadlineMs;
    const known = this.known.get(key);
    this.known.delete(key);
    if (known && (known.epoch === this.membership.epoch || this.bugs.keepPromises)) {
      const wanted = f(valueOf({ ...FRESH, value: known.value }));
      if (wanted !== undefined) {
        const m = this.membership;
        const value: RecordValue = wanted === null ? EMPTY_VALUE : { kind: 'value', bytes: Buffer.from(wanted, 'latin1') };
        this.observe(known.next);
        const acc = await this.phase(m, key, { kind: 'accept', key, ballot: known.next, value, promiseNext: true }, (r) => r.kind === 'verdict' && r.ok, true);
        this.check();
        for (const r of acc.replies) if (r.kind === 'verdict') this.observe(r.state.promised);
        if (acc.ok) {
          this.stats.fastChanges++;
          this.known.set(key, { next: { counter: known.next.counter + 1, proposer: this.proposer }, value, epoch: m.epoch });
          return { kind: 'ok', value: wanted };
        }
        // Taken nowhere only if every node answered with a refusal showing an accepted ballot
        // below this one (accepted ballots only grow). A refusal alone proves nothing here: a
        // duplicated accept is refused by the node that took the first copy (it now promises the
        // next ballot, or has learned a newer epoch), and that refusal may be the answer that arrives.
        const nowhere = acc.allRefused && acc.replies.every((r) => r.kind === 'verdict' && !r.ok && compareBallots(r.state.accepted, known.next) < 0);
        if (!nowhere) return { kind: 'unknown' };
        // Taken nowhere: a full round, as if the fast path had not been tried.
      }
    }
    for (let attempt = 0; ; attempt++) {
      this.check();
      if (this.world.now >= deadline) return { kind: 'fail' };
      const m = this.membership;
      const ballot = this.ballot();
      const prep = await this.phase(m, key, { kind: 'prepare', key, ballot }, (r) => r.kind === 'verdict' && r.ok);
      this.check();
      for (const r of prep.replies) if (r.kind === 'verdict') this.observe(r.state.promised);
      if (prep.stale) continue; // the newer membership is learned: start over under it
      if (!prep.ok) {
        await this.pause(this.world.rng.next() * Math.min(100, 2 * 2 ** attempt));
        continue;
      }
      let best: AcceptorState | null = null;
      for (const r of prep.replies) if (r.kind === 'verdict' && r.ok && (!best || compareBallots(r.state.accepted, best.accepted) > 0)) best = r.state;
      const current = best ? valueOf(best) : null;
      const wanted = f(current);
      const value: RecordValue = wanted === undefined ? (best?.value ?? EMPTY_VALUE) : wanted === null ? EMPTY_VALUE : { kind: 'value', bytes: Buffer.from(wanted, 'latin1') };
      const acc = await this.phase(m, key, { kind: 'accept', key, ballot, value, promiseNext: true }, (r) => r.kind === 'verdict' && r.ok);
      this.check();
      for (const r of acc.replies) if (r.kind === 'verdict') this.observe(r.state.promised);
      if (acc.ok) {
        this.known.set(key, { next: { counter: ballot.counter + 1, proposer: this.proposer }, value, epoch: m.epoch });
        return { kind: 'ok', value: wanted === undefined ? current : wanted };
      }
      if (wanted !== undefined) return { kind: 'unknown' };
      await this.pause(this.world.rng.next() * Math.min(100, 2 * 2 ** attempt));
    }
  }

  /**
   * Prepare ahead (as `Registers.prepare`): phase one now, so that the next
   * change of the key is one accept. Writes only promises; failures are
   * ignored (the change then runs in full).
   */
  async prepare(key: string): Promise<void> {
    if (this.known.has(key)) return;
    const m = this.membership;
    const ballot = this.ballot();
    const prep = await this.phase(m, key, { kind: 'prepare', key, ballot }, (r) => r.kind === 'verdict' && r.ok);
    this.check();
    for (const r of prep.replies) if (r.kind === 'verdict') this.observe(r.state.promised);
    if (!prep.ok || prep.stale || this.known.has(key)) return;
    let best: AcceptorState | null = null;
    for (const r of prep.replies) if (r.kind === 'verdict' && r.ok && (!best || compareBallots(r.state.accepted, best.accepted) > 0)) best = r.state;
    this.known.set(key, { next: ballot, value: best?.value ?? EMPTY_VALUE, epoch: m.epoch });
  }

  /** A read: one round trip when a joint quorum reports one accepted ballot, else a full round that keeps the value. */
  async read(key: string): Promise<RoundOutcome> {
    this.check();
    const m = this.membership;
    const states: AcceptorState[] = [];
    const sets = this.sets(m, key);
    const byNode = new Map<string, AcceptorState>();
    const r = await new Promise<boolean>((resolve) => {
      const targets = [...new Set(sets.flat())];
      let answered = 0;
      let stale = false;
      for (const t of targets) {
        void this.call(t, m, { kind: 'read', key }).then((reply) => {
          answered++;
          if (reply?.kind === 'stale') {
            stale = true;
            this.learn(reply.membership);
          } else if (reply?.kind === 'state') {
            states.push(reply.state);
            byNode.set(t, reply.state);
          }
          if (answered === targets.length) resolve(!stale);
        });
      }
    });
    this.check();
    if (r) {
      for (const s of states) {
        const agree = new Set([...byNode].filter(([, o]) => compareBallots(o.accepted, s.accepted) === 0).map(([n]) => n));
        if (jointQuorumReached(sets, agree)) return { kind: 'ok', value: valueOf(s) };
      }
    }
    return this.change(key, () => undefined);
  }

  /** The mover's read of the membership record: a full round that keeps the value. */
  readRecord(key: string, deadlineMs: number): Promise<RoundOutcome> {
    return this.change(key, () => undefined, deadlineMs);
  }

  /** The audit's read of a key (a read falls back to a full round that retries until the deadline). */
  auditRead(key: string): Promise<RoundOutcome> {
    return this.read(key);
  }

  /** The mover's rewrite of a moved key: a full round that keeps its value (ok: it landed under this membership's quorums). */
  async rewrite(key: string, deadlineMs: number): Promise<boolean> {
    return (await this.change(key, () => undefined, deadlineMs)).kind === 'ok';
  }

  /** The mover's listing: every node of A and B learns `m` and lists its keys; null when a node refused `m` as stale. */
  async list(m: Membership): Promise<{ answered: Set<string>; keys: Set<string> } | null> {
    const r = await listKeys(this, m, this.bugs);
    this.check();
    return r;
  }
}

/** The mover's listing (either proposer's): every node of A and B learns `m` and lists its keys; null when a node refused `m` as stale. */
async function listKeys(
  c: { call(node: string, m: Membership, req: Request): Promise<Reply | null>; learn(m: Membership): void },
  m: Membership,
  bugs: MembershipBugs,
): Promise<{ answered: Set<string>; keys: Set<string> } | null> {
  const targets = [...new Set([...m.nodes, ...(m.transition?.next ?? [])].map((n) => n.id))];
  const answered = new Set<string>();
  const keys = new Set<string>();
  let stale = false;
  await Promise.all(
    targets.map(async (t) => {
      const r = await c.call(t, m, { kind: 'list' });
      if (r?.kind === 'stale') {
        stale = true;
        c.learn(r.membership);
      } else if (r?.kind === 'keys' && (!bugs.listFromOne || answered.size === 0)) {
        // (the bug: only the first node of A to answer is listed)
        if (bugs.listFromOne && !m.nodes.some((n) => n.id === t)) return;
        answered.add(t);
        for (const k of r.keys) keys.add(k);
      }
    }),
  );
  return stale ? null : { answered, keys };
}

/** One raw request to a node and its answer, or null after the call timeout (lost, crashed, cut off). */
function callNode(world: World, nodes: ReadonlyMap<string, Node>, from: string, node: string, m: Membership, req: Request): Promise<Reply | null> {
  const target = nodes.get(node);
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: Reply | null): void => {
      if (settled) return;
      settled = true;
      timer.cancel();
      resolve(r);
    };
    const timer = world.at(CALL_TIMEOUT_MS, () => done(null));
    if (!target) return;
    world.send(from, node, () => {
      if (!target.up) return;
      target.handle({ epoch: m.epoch, offer: m }, req, (r) => world.send(node, from, () => done(r)));
    });
  });
}

/**
 * The real proposer's handle on one simulated node (src/cluster/acceptor.ts),
 * as a Peer is on a storage node: each call names the epoch its quorum was
 * placed by. A node behind that epoch learns the membership first (the
 * request hands it over when the client still has it; on the wire that is
 * `epoch_ahead`, an install and the call again); a node ahead of it refuses
 * with `stale_epoch`, and the client learns the node's membership before the
 * error reaches the proposer (a Peer fetches it: src/cluster/peers.ts
 * `withMembership`). A dead client's calls never leave and never end.
 */
class MemberAcceptor implements Acceptor {
  latencyMs = 1;
  private consecutiveFailures = 0;
  private inflight = 0;
  private lastAnswerAt = 0;
  private busySince = 0;

  constructor(
    readonly id: string,
    private readonly owner: RealClient,
    private readonly world: World,
    private readonly node: Node | undefined,
  ) {}

  get up(): boolean {
    return this.node?.up ?? false;
  }

  get rank(): number {
    return this.consecutiveFailures * 1e6 + (this.silent ? 1e5 : 0) + this.latencyMs;
  }

  get silent(): boolean {
    return this.inflight > 0 && this.world.now - Math.max(this.lastAnswerAt, this.busySince) > 500;
  }

  /** As the real peer's: silent with a failure behind it, or silent for 2 s. */
  get cutOff(): boolean {
    return this.silent && (this.consecutiveFailures > 0 || this.world.now - Math.max(this.lastAnswerAt, this.busySince) > 2000);
  }

  private call<T>(call: AcceptorCall, req: Request, answer: (r: Reply) => T | null): Promise<T> {
    if (this.owner.dead) return new Promise<T>(() => {});
    const started = this.world.now;
    const remaining = call.deadline - started;
    if (remaining <= 0) return Promise.reject(new QfsError('timeout', 'deadline passed'));
    const epoch = call.epoch ?? 0;
    const offer = this.owner.membershipOf(epoch);
    if (this.inflight++ === 0) this.busySince = started;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const finish = (f: () => void): void => {
        if (settled || this.owner.dead) return;
        settled = true;
        timer.cancel();
        this.inflight--;
        f();
      };
      const timer = this.world.at(Math.min(remaining, CALL_TIMEOUT_MS), () =>
        finish(() => {
          this.consecutiveFailures++;
          reject(new QfsError('timeout', `${this.id}: no answer within ${Math.min(remaining, CALL_TIMEOUT_MS)} ms`));
        }),
      );
      const node = this.node;
      if (!node) return;
      const from = this.owner.name;
      this.world.send(from, this.id, () => {
        if (!node.up) return;
        node.handle({ epoch, offer }, req, (r) =>
          this.world.send(this.id, from, () =>
            finish(() => {
              this.lastAnswerAt = this.world.now;
              this.latencyMs += 0.2 * (this.world.now - started - this.latencyMs);
              this.consecutiveFailures = 0;
              if (r.kind === 'stale') {
                this.owner.refused(r.membership);
                return reject(new QfsError('stale_epoch', `${this.id}: the call is placed by epoch ${epoch}; the node knows epoch ${r.membership.epoch}`));
              }
              if (r.kind === 'behind') return reject(new QfsError('stale_epoch', `${this.id}: this client's membership moved on while the call ran`));
              const v = answer(r);
              if (v === null) return reject(new QfsError('internal', `${this.id}: unexpected answer ${r.kind}`));
              resolve(v);
            }),
          ),
        );
      });
    });
  }

  prepare(key: Buffer, ballot: Ballot, call: AcceptorCall): Promise<Verdict> {
    return this.call(call, { kind: 'prepare', key: key.toString('latin1'), ballot }, (r) => (r.kind === 'verdict' ? { ok: r.ok, state: r.state } : null));
  }

  accept(key: Buffer, ballot: Ballot, value: RecordValue, promiseNext: boolean, call: AcceptorCall): Promise<Verdict> {
    return this.call(call, { kind: 'accept', key: key.toString('latin1'), ballot, value, promiseNext }, (r) => (r.kind === 'verdict' ? { ok: r.ok, state: r.state } : null));
  }

  read(key: Buffer, call: AcceptorCall): Promise<AcceptorState> {
    return this.call(call, { kind: 'read', key: key.toString('latin1') }, (r) => (r.kind === 'state' ? r.state : null));
  }

  // Scans, purges and learns are not part of these schedules (no scopes, no deletes purged).
  scan(_start: Buffer, _end: Buffer | null, _limit: number, _call: AcceptorCall): Promise<ScanReply> {
    return Promise.reject(new QfsError('internal', 'scan is not simulated here'));
  }

  purge(_key: Buffer, _ballot: Ballot, _call: AcceptorCall): Promise<boolean> {
    return Promise.reject(new QfsError('internal', 'purge is not simulated here'));
  }

  learn(_key: Buffer, _ballot: Ballot, _call: AcceptorCall): Promise<boolean> {
    return Promise.reject(new QfsError('internal', 'learn is not simulated here'));
  }
}

/**
 * A client whose proposer is the real one (src/cluster/registers.ts): a
 * `Registers` on the simulated clock whose placement is a KeyQuorum from
 * `quorumSets` of the membership this client knows, over MemberAcceptor
 * handles. It learns memberships as a mount's MembershipView does: from
 * nodes' refusals and from the membership record, and tells its Registers
 * (`membershipChanged`) each time. Keys are real record keys (a length byte,
 * a group, a name); placement is by group, as on real mounts.
 */
class RealClient {
  private isDead = false;
  private readonly killed: Promise<never>;
  private kill!: (err: Error) => void;
  readonly registers: Registers;
  private readonly handles = new Map<string, MemberAcceptor>();
  staleSeen = 0;

  constructor(
    readonly name: string,
    private readonly world: World,
    private readonly nodes: ReadonlyMap<string, Node>,
    public membership: Membership,
    private readonly bugs: MembershipBugs,
  ) {
    this.killed = new Promise<never>((_, reject) => (this.kill = reject));
    this.killed.catch(() => {});
    const injectBugs: NonNullable<RegisterOptions['injectBugs']> = {};
    if (bugs.noJoint) injectBugs.newSetOnly = true;
    if (bugs.unionMajority) injectBugs.unionMajority = true;
    this.registers = new Registers((group) => this.keyQuorum(group), {
      replication: membership.r,
      requestTimeoutMs: OP_DEADLINE_MS,
      log: silentLogger(),
      clock: world.clock,
      ...(Object.keys(injectBugs).length > 0 ? { injectBugs } : {}),
    });
  }

  /** A killed client stops: its calls in flight never end and what it runs ends with Killed. */
  get dead(): boolean {
    return this.isDead;
  }

  set dead(v: boolean) {
    if (!v || this.isDead) return;
    this.isDead = true;
    this.kill(new Killed(this.name));
  }

  get stats(): { fastChanges: number } {
    return { fastChanges: this.registers.stats.fastChanges };
  }

  /** The membership a call placed by `epoch` can hand to a node behind it: only the current one (MembershipView.bytesOf). */
  membershipOf(epoch: number): Membership | null {
    return epoch === this.membership.epoch ? this.membership : null;
  }

  learn(m: Membership): void {
    if (m.epoch <= this.membership.epoch) return;
    this.membership = m;
    this.registers.membershipChanged();
  }

  /** A node refused a call as stale and handed over its membership. */
  refused(m: Membership): void {
    this.staleSeen++;
    this.learn(m);
  }

  private keyQuorum(group: Buffer): KeyQuorum {
    const m = this.membership;
    const sets = quorumSets(m, group, isMembershipGroup(group));
    return { acceptors: [...new Set(sets.flat())].map((id) => this.handle(id)), sets, epoch: m.epoch };
  }

  private handle(id: string): MemberAcceptor {
    let h = this.handles.get(id);
    if (!h) this.handles.set(id, (h = new MemberAcceptor(id, this, this.world, this.nodes.get(id))));
    return h;
  }

  /** Runs one proposer call unless or until this client is killed. */
  private run<T>(p: () => Promise<T>): Promise<T> {
    if (this.isDead) return Promise.reject(new Killed(this.name));
    return Promise.race([p(), this.killed]);
  }

  /** A change through Registers.change; an error leaves its effect unknown (the proposer promises no more). */
  async change(key: string, f: (old: string | null) => string | null | undefined, deadlineMs = OP_DEADLINE_MS): Promise<RoundOutcome> {
    try {
      const v = await this.run(() =>
        this.registers.change(
          bufOf(key),
          (old) => {
            const wanted = f(old === null ? null : old.toString('latin1'));
            return wanted === undefined ? KEEP : wanted === null ? null : Buffer.from(wanted, 'latin1');
          },
          { timeoutMs: deadlineMs },
        ),
      );
      return { kind: 'ok', value: v === null ? null : v.toString('latin1') };
    } catch (err) {
      if (err instanceof Killed) throw err;
      return { kind: 'unknown' };
    }
  }

  /** A read through Registers.read (one round trip when a quorum agrees); an error says nothing. */
  async read(key: string, deadlineMs = OP_DEADLINE_MS): Promise<RoundOutcome> {
    try {
      const v = await this.run(() => this.registers.read(bufOf(key), { timeoutMs: deadlineMs }));
      return { kind: 'ok', value: v === null ? null : v.toString('latin1') };
    } catch (err) {
      if (err instanceof Killed) throw err;
      if (process.env['QFS_SIM_TRACE']) process.stdout.write(`${this.world.now.toFixed(2)} ${this.name} (knows ${this.membership.epoch}) read of ${JSON.stringify(key)} failed: ${(err as Error).message}\n`);
      return { kind: 'fail' };
    }
  }

  /**
   * The mover's read of the membership record: Registers.read, as
   * src/cluster/mover.ts reads it. A read fails at once when its quorum cannot
   * form (say the two replicas it asked first timed out); like the real mover
   * (`patiently`) this one asks again until its deadline.
   */
  readRecord(key: string, deadlineMs: number): Promise<RoundOutcome> {
    return this.readPatiently(key, deadlineMs);
  }

  /** The audit's read of a key: again until the deadline, like readRecord. */
  auditRead(key: string): Promise<RoundOutcome> {
    return this.readPatiently(key, 2000);
  }

  private async readPatiently(key: string, deadlineMs: number): Promise<RoundOutcome> {
    const deadline = this.world.now + deadlineMs;
    for (;;) {
      const r = await this.read(key, deadline - this.world.now);
      if (r.kind === 'ok' || this.world.now >= deadline - 5) return r;
      await this.run(() => new Promise<void>((resolve) => this.world.at(5 + this.world.rng.next() * 20, resolve)));
    }
  }

  /** The mover's rewrite of a moved key: Registers.rewrite. */
  async rewrite(key: string, deadlineMs: number): Promise<boolean> {
    try {
      await this.run(() => this.registers.rewrite(bufOf(key), { timeoutMs: deadlineMs }));
      return true;
    } catch (err) {
      if (err instanceof Killed) throw err;
      return false;
    }
  }

  async prepare(key: string): Promise<void> {
    await this.run(() => this.registers.prepare(bufOf(key)));
  }

  call(node: string, m: Membership, req: Request): Promise<Reply | null> {
    return callNode(this.world, this.nodes, this.name, node, m, req);
  }

  async list(m: Membership): Promise<{ answered: Set<string>; keys: Set<string> } | null> {
    const r = await listKeys(this, m, this.bugs);
    if (this.isDead) throw new Killed(this.name);
    return r;
  }
}

type SimClient = Client | RealClient;

export interface MembershipOptions {
  /**
   * Whose proposer the clients, the mover's rewrites and the membership
   * record's compare-and-sets run: the simulator's own (default), or the real
   * `Registers` counting joint quorums (src/cluster/registers.ts).
   */
  proposer?: 'own' | 'real';
}

export async function runMembershipSchedule(seed: number, bugs: MembershipBugs = {}, options: MembershipOptions = {}): Promise<MembershipScheduleResult> {
  const real = options.proposer === 'real';
  const world = new World(seed);
  const rng = world.rng;
  const violations: string[] = [];
  const violation = (what: string): void => {
    if (violations.length < 5) violations.push(`${what} (at ${world.now.toFixed(2)} ms)`);
  };

  // The shape of this schedule.
  // R = 3 mostly; some seeds R = 5 (two replicas may be missing from a listing).
  const R = rng.chance(0.15) ? 5 : 3;
  const startCount = R === 5 ? rng.pick([5, 6, 7]) : rng.pick([3, 3, 4, 5]);
  const clientCount = rng.int(2, 3);
  // Mostly a few hot keys; some seeds spread over many, so that keys stay quiet through a change.
  const keyNames = Array.from({ length: rng.chance(0.3) ? rng.int(6, 12) : rng.int(2, 5) }, (_, i) => `k${i}`);
  const opsPerClient = rng.int(15, 40);
  const lossy = rng.chance(0.7);
  world.faults = lossy ? { drop: rng.next() * 0.05, duplicate: rng.next() * 0.05, delay: rng.next() * 0.1 } : { drop: 0, duplicate: 0, delay: 0 };
  const crashy = rng.chance(0.6);
  const cutty = rng.chance(0.5);
  const stally = rng.chance(0.4);
  const moverKilly = rng.chance(0.5);
  const clientKilly = rng.chance(0.5);
  const queueing = rng.chance(0.3);

  const urlOf = (id: string): string => `ws://${id}.sim:7400`;
  const bootstrap = initialMembership(
    Array.from({ length: startCount }, (_, i) => ({ id: `n${i + 1}`, url: urlOf(`n${i + 1}`), weight: 1, zone: null })),
    R,
  );

  // The plan: one to three changes, each valid after the ones before it.
  // stages[i] is the node set after the first i changes; a change that would
  // bring back an earlier node set is left out, so the record's node set
  // tells a mover how far the plan has come.
  const nodeSetKey = (ns: readonly MemberNode[]): string => ns.map((n) => `${n.id}:${n.state}:${n.weight}:${n.zone ?? '-'}`).sort().join(',');
  const plan: Change[] = [];
  let stageNodes: readonly MemberNode[] = bootstrap.nodes;
  const stages: string[] = [nodeSetKey(stageNodes)];
  let nextId = startCount + 1;
  const steps = rng.int(1, 3);
  for (let i = 0; i < steps; i++) {
    const active = stageNodes.filter((n) => n.state === 'active');
    const draining = stageNodes.filter((n) => n.state === 'draining');
    const options: string[] = ['add', 'add', 'weight', 'zone'];
    if (active.length > R) options.push('drain', 'dead');
    if (draining.length > 0) options.push('remove', 'remove');
    const what = rng.pick(options);
    let change: Change;
    if (what === 'add') {
      const id = `n${nextId++}`;
      change = { kind: 'add', id, url: urlOf(id), weight: rng.pick([1, 1, 2]), zone: null };
    } else if (what === 'weight') {
      const n = rng.pick(active);
      change = { kind: 'set', id: n.id, weight: rng.pick([0.5, 2, 3].filter((w) => w !== n.weight)) };
    } else if (what === 'zone') {
      change = { kind: 'set', id: rng.pick(active).id, zone: rng.pick(['z1', 'z2', 'z3']) };
    } else if (what === 'drain') {
      change = { kind: 'drain', id: rng.pick(active).id };
    } else {
      change = { kind: 'remove', id: rng.pick(what === 'remove' ? draining : active).id, dead: what === 'dead' };
    }
    let after: MemberNode[];
    try {
      after = applyChange(stageNodes, change, R);
    } catch {
      continue; // a change the rules refuse (too few zones, nothing to change): not part of the plan
    }
    if (stages.includes(nodeSetKey(after))) continue;
    plan.push(change);
    stages.push(nodeSetKey(after));
    stageNodes = after;
  }
  const shape = `${startCount} nodes, R = ${R}, ${clientCount} clients x ${opsPerClient} ops, ${keyNames.length} keys; plan [${plan.map(describeChange).join('; ')}]${queueing ? ' queued' : ''}; net ${lossy ? `drop ${world.faults.drop.toFixed(3)} dup ${world.faults.duplicate.toFixed(3)} delay ${world.faults.delay.toFixed(3)}` : 'clean'}${crashy ? ', crashes' : ''}${cutty ? ', cuts' : ''}${stally ? ', stalls' : ''}${moverKilly ? ', mover kills' : ''}${clientKilly ? ', client kills' : ''}`;

  // Nodes: the bootstrap ones, and every node the plan adds (running from the start, members once added).
  const byEpoch = new Map<number, string>();
  const learned = (node: string, m: Membership): void => {
    const bytes = encodeMembership(m).toString('hex');
    const seen = byEpoch.get(m.epoch);
    if (seen === undefined) byEpoch.set(m.epoch, bytes);
    else if (seen !== bytes) violation(`${node} learned a second membership for epoch ${m.epoch}: ${JSON.stringify(decodeMembership(Buffer.from(seen, 'hex')).nodes.map((n) => n.id))} then ${JSON.stringify(m.nodes.map((n) => n.id))}`);
  };
  learned('bootstrap', bootstrap);
  const nodes = new Map<string, Node>();
  const allIds = [...bootstrap.nodes.map((n) => n.id), ...plan.flatMap((c) => (c.kind === 'add' ? [c.id] : []))];
  // With the real proposer, keys are record keys (a length byte, the group, a name) placed by their group, and values are enveloped.
  const membersKey = real ? MEMBERSHIP_KEY.toString('latin1') : MEMBERS;
  const keyOf = (name: string): string => (real ? recordKey(Buffer.from(name, 'latin1'), Buffer.from('v')).toString('latin1') : name);
  /** The bytes a key is placed by (what the mover must judge "moves" on). */
  const placedBy = (k: string): Buffer => (real && !bugs.moverPlacesByKey ? groupOf(bufOf(k)) : bufOf(k));
  const layout: NodeLayout = real ? { members: membersKey, sealed: true } : OWN_LAYOUT;
  for (const id of allIds) nodes.set(id, new Node(id, world, bootstrap, bugs, learned, violation, layout));

  const stats = { changes: 0, rewrites: 0, moverKills: 0, clientKills: 0 };
  const events: Event[] = [];
  const record = (client: string, op: Op, call: number, outcome: Event['outcome'], ret: number | null): void => {
    events.push({ id: events.length, client, op, call, ret, outcome });
  };
  const pause = (ms: number): Promise<void> => new Promise((resolve) => world.at(ms, resolve));
  const clients: SimClient[] = [];
  const newClient = (name: string, m: Membership = bootstrap): SimClient => {
    const c = real ? new RealClient(name, world, nodes, m, bugs) : new Client(name, world, nodes, m, bugs);
    clients.push(c);
    return c;
  };

  // The mover: reads the membership record, resumes a change in progress, or starts the next planned one.
  let moverDone = false;
  let mover: SimClient | null = null;
  const readMembership = async (c: SimClient): Promise<Membership | null> => {
    const r = await c.readRecord(membersKey, 2000);
    if (r.kind !== 'ok' || r.value === null) return null;
    const m = decodeMembership(Buffer.from(r.value, 'latin1'));
    c.learn(m);
    return m;
  };
  /** A compare-and-set of the membership record: `f` gives the next membership or null (nothing to do). */
  const casMembership = async (c: SimClient, f: (m: Membership) => Membership | null): Promise<Membership | null> => {
    let wrote: Membership | null = null;
    const r = await c.change(
      membersKey,
      (old) => {
        wrote = null;
        if (old === null) return undefined;
        const next = f(decodeMembership(Buffer.from(old, 'latin1')));
        if (!next) return undefined;
        wrote = next;
        return encodeMembership(next).toString('latin1');
      },
      2000,
    );
    // (The real proposer may report an earlier attempt of this call that took effect: the record must be what was written.)
    if (r.kind !== 'ok' || !wrote || r.value !== encodeMembership(wrote).toString('latin1')) return null;
    c.learn(wrote);
    return wrote;
  };
  const trace = (what: string): void => {
    if (process.env['QFS_SIM_TRACE']) process.stdout.write(`${world.now.toFixed(2)} ${what}\n`);
  };
  const kill = (change: Change): void => {
    if (change.kind !== 'remove' || !change.dead) return;
    const victim = nodes.get(change.id)!;
    victim.crash();
    victim.gone = true;
  };
  const runMover = async (c: SimClient): Promise<void> => {
    for (;;) {
      const m = await readMembership(c);
      trace(`${c.name} (knows ${c.membership.epoch}) read the record: ${m ? `epoch ${m.epoch} ${m.nodes.map((n) => n.id).join(',')}${m.transition ? ` → ${m.transition.next.map((n) => n.id).join(',')} ${m.transition.phase}` : ''}${m.queued.length ? ` +${m.queued.length} queued` : ''}` : 'nothing'}`);
      if (!m) {
        await pause(5 + rng.next() * 30);
        continue;
      }
      const step = moverStep(m);
      if (step.kind === 'rewrite') {
        kill(m.transition!.change);
        if (!bugs.skipRewrite) {
          // Every node of A but at most R − majority(R) learns the joint epoch and lists its keys.
          const listing = await c.list(m);
          const covered = listing && (bugs.listFromOne ? listing.answered.size >= 1 : coversEveryMajority(m.nodes.map((n) => n.id), listing.answered, m.r));
          if (!listing || !covered) {
            await pause(5 + rng.next() * 30);
            continue;
          }
          // Each moved key: a joint round that keeps its value, which lands it on a majority of B.
          let all = true;
          for (const k of [...listing.keys].sort()) {
            if (!moves(m, placedBy(k))) continue;
            const ok = await c.rewrite(k, 2000);
            if (!ok || c.membership.epoch !== m.epoch) {
              all = false;
              break;
            }
            stats.rewrites++;
          }
          if (!all) continue;
        }
        await casMembership(c, (cur) => markRewritten(cur, step.epoch));
        continue;
      }
      if (step.kind === 'finish') {
        const done = await casMembership(c, (cur) => finishChange(cur, step.epoch));
        if (done) {
          stats.changes++;
          // Nodes no longer members are stopped for good, with their data.
          for (const id of departed(m, done)) {
            const n = nodes.get(id)!;
            n.crash();
            n.gone = true;
          }
          // Tell every member (best effort): clients that still use an older epoch are then refused and learn it.
          await c.list(done);
        }
        continue;
      }
      if (step.kind === 'start-queued') {
        await casMembership(c, (cur) => startQueued(cur)?.membership ?? null);
        continue;
      }
      // How much of the plan the record already holds (a killed mover's successor finds out here).
      const done = stages.indexOf(nodeSetKey(targetNodes(m)));
      if (done < 0) {
        violation(`the membership at epoch ${m.epoch} is no stage of the plan: ${nodeSetKey(targetNodes(m))}`);
        return;
      }
      if (done >= plan.length) {
        moverDone = true;
        return;
      }
      // Queueing on purpose: every remaining change is asked for at once; they run one after the other.
      const asked = queueing ? plan.slice(done) : [plan[done]!];
      // A node removed as dead is gone before its removal starts (a queued one: when its turn comes).
      kill(asked[0]!);
      await casMembership(c, (cur) => {
        if (cur.epoch !== m.epoch) return null;
        let next = requestChange(cur, asked[0]!);
        for (const later of asked.slice(1)) next = requestChange(next, later, { queue: true });
        return next;
      });
    }
  };
  const startMover = (): void => {
    mover = newClient(`mover${stats.moverKills + 1}`);
    void runMover(mover).catch((err: unknown) => {
      if (!(err instanceof Killed)) violation(`mover: ${(err as Error).stack ?? String(err)}`);
    });
  };

  // Clients: random reads, writes and compare-and-sets; a killed client comes back with the bootstrap membership.
  let running = 0;
  let serial = 0;
  const runClient = async (name: string): Promise<void> => {
    let c = newClient(name);
    let lastSeen = new Map<string, string | null>();
    for (let i = 0; i < opsPerClient; i++) {
      if (c.dead) {
        c = newClient(name);
        lastSeen = new Map();
      }
      const key = rng.pick(keyNames);
      // Now and then a key is prepared ahead of its next change (an inode number from the mount's pool).
      if (rng.chance(0.15)) {
        await c.prepare(keyOf(key)).catch((err: unknown) => {
          if (!(err instanceof Killed)) throw err;
        });
        if (c.dead) continue;
        await pause(rng.next() * 40);
      }
      const call = world.now;
      const roll = rng.next();
      const value = `${name}.${++serial}`;
      const expect = lastSeen.get(key) ?? null;
      const op: Op = roll < 0.35 ? { kind: 'read', key, value: null } : roll < 0.75 ? { kind: 'write', key, value } : { kind: 'cas', key, expect, value, ok: true };
      try {
        if (op.kind === 'read') {
          const r = await c.read(keyOf(key));
          if (r.kind === 'ok') {
            lastSeen.set(key, r.value);
            record(name, { ...op, value: r.value }, call, 'ok', world.now);
          }
        } else if (op.kind === 'write') {
          const r = await c.change(keyOf(key), () => value);
          record(name, op, call, r.kind, r.kind === 'ok' ? world.now : null);
        } else {
          const r = await c.change(keyOf(key), (old) => (old === expect ? value : undefined));
          if (r.kind === 'ok') {
            lastSeen.set(key, r.value);
            record(name, { kind: 'cas', key, expect, value, ok: r.value === value }, call, 'ok', world.now);
          } else record(name, op, call, r.kind, null);
        }
      } catch (err) {
        if (!(err instanceof Killed)) throw err;
        // Killed mid-operation: a change it started may or may not have happened.
        if (op.kind !== 'read') record(name, op, call, 'unknown', null);
      }
      await pause(rng.next() < 0.6 ? 0 : rng.next() * 40);
    }
  };
  for (let i = 1; i <= clientCount; i++) {
    running++;
    void runClient(`c${i}`)
      .catch((err: unknown) => violation(`c${i}: ${(err as Error).stack ?? String(err)}`))
      .finally(() => running--);
  }
  // The mover starts a little after the clients (or well into their run), so changes meet traffic.
  world.at(rng.next() * (rng.chance(0.5) ? 60 : 1500), startMover);

  // The nemesis: each kind of fault this seed allows gets its own weight (swarm testing), so some
  // seeds crash nodes often, others kill clients or movers often, others cut links.
  type Fault = 'crash' | 'restart' | 'mover' | 'client' | 'stall' | 'cut' | 'heal';
  const weights: Array<[Fault, number]> = [];
  if (crashy) weights.push(['crash', 0.05 + rng.next() * 0.3], ['restart', 0.2]);
  if (moverKilly) weights.push(['mover', 0.02 + rng.next() * 0.1]);
  if (clientKilly) weights.push(['client', 0.02 + rng.next() * 0.2]);
  if (stally) weights.push(['stall', 0.05 + rng.next() * 0.1]);
  if (cutty) weights.push(['cut', 0.05 + rng.next() * 0.2], ['heal', 0.1]);
  weights.push(['heal', 0.05]); // and quiet spells
  const totalWeight = weights.reduce((n, [, w]) => n + w, 0);
  const nemesis = async (): Promise<void> => {
    while (running > 0) {
      await pause(2 + rng.next() * 60);
      if (running === 0) return; // faults stop with the workload
      let r = rng.next() * totalWeight;
      const fault = weights.find(([, w]) => (r -= w) < 0)?.[0] ?? 'heal';
      const live = [...nodes.values()].filter((n) => !n.gone);
      if (fault === 'crash') {
        const victim = rng.pick(live);
        if (victim.up && live.filter((n) => !n.up).length === 0) victim.crash();
      } else if (fault === 'restart') {
        const down = live.filter((n) => !n.up);
        if (down.length > 0) rng.pick(down).restart();
      } else if (fault === 'mover') {
        if (mover && !mover.dead && !moverDone) {
          mover.dead = true;
          stats.moverKills++;
          world.at(rng.next() * 100, startMover);
        }
      } else if (fault === 'client') {
        const victim = rng.pick(clients.filter((c) => c.name.startsWith('c') && !c.dead));
        if (victim) {
          victim.dead = true;
          stats.clientKills++;
        }
      } else if (fault === 'stall') {
        const who = rng.chance(0.5) ? rng.pick(live).name : rng.pick(clients).name;
        world.stall(who, world.now + 20 + rng.next() * 300);
      } else if (fault === 'cut') {
        world.partition(rng.pick(clients).name, rng.pick(live).name);
      } else {
        world.heal();
      }
    }
  };
  void nemesis();

  const finished = await world.run(() => running === 0, SIM_LIMIT_MS);
  if (!finished) violation(`the clients did not finish within ${SIM_LIMIT_MS} ms of simulated time`);

  // Faults stop: every change must finish.
  world.heal();
  world.faults = { drop: 0, duplicate: 0, delay: 0 };
  for (const n of nodes.values()) n.restart();
  const m0 = mover as SimClient | null;
  if (!m0 || m0.dead) startMover();
  if (!(await world.run(() => moverDone, world.now + 120_000))) violation('the membership changes did not finish once faults stopped');

  // A client started from the bootstrap membership (an old cluster.json) reads the record and every key.
  const auditor = newClient('audit');
  let auditing = true;
  let finalMembership: Membership | null = null;
  const finals = new Map<string, string | null>();
  void (async () => {
    finalMembership = await readMembership(auditor);
    for (const k of keyNames) {
      const call = world.now;
      const r = await auditor.auditRead(keyOf(k));
      if (r.kind !== 'ok') violation(`the audit's read of ${k} failed with every fault healed`);
      else {
        finals.set(k, r.value);
        record('audit', { kind: 'read', key: k, value: r.value }, call, 'ok', world.now);
      }
    }
  })()
    .catch((err: unknown) => violation(`audit: ${(err as Error).stack ?? String(err)}`))
    .finally(() => (auditing = false));
  if (!(await world.run(() => !auditing, world.now + 60_000))) violation('the audit did not finish');
  const fm = finalMembership as Membership | null;
  if (!fm) violation('the audit could not read the membership record');
  else {
    if (fm.transition !== null || fm.queued.length > 0) violation(`the membership is not stable at the end: epoch ${fm.epoch}`);
    if (nodeSetKey(fm.nodes) !== stages[stages.length - 1]) violation(`the membership ends as ${nodeSetKey(fm.nodes)}, the plan says ${stages[stages.length - 1]}`);
  }

  // No acknowledged write lost: the final value of a key never comes from an
  // operation that returned before an acknowledged write of it was called.
  for (const [k, final] of finals) {
    const producer = events.find((e) => e.op.key === k && (e.op.kind === 'write' || e.op.kind === 'cas') && e.op.value === final && e.client !== 'audit');
    const ended = final === null ? -Infinity : producer?.outcome === 'ok' ? producer.ret! : Infinity;
    const lost = events.find((e) => e.op.key === k && e.outcome === 'ok' && (e.op.kind === 'write' || (e.op.kind === 'cas' && e.op.ok)) && e.call > ended);
    if (lost) violation(`acknowledged write lost: ${describeEvent(lost)}; ${k} ends as ${JSON.stringify(final)}`);
  }

  const allNodes = [...nodes.values()];
  const base = {
    seed,
    shape,
    steps: world.steps,
    simulatedMs: Math.round(world.now),
    operations: events.length,
    okOperations: events.filter((e) => e.outcome === 'ok').length,
    ...stats,
    staleRefusals: allNodes.reduce((n, x) => n + x.stats.stale, 0),
    fastChanges: clients.reduce((n, c) => n + c.stats.fastChanges, 0),
    crashes: allNodes.reduce((n, x) => n + x.stats.crashes, 0),
  };
  if (violations.length > 0 && process.env['QFS_SIM_TRACE']) violations.push(`  nodes: ${allNodes.map((n) => `${n.name}${n.gone ? ' gone' : n.up ? ' up' : ' down'} epoch ${n.membership.epoch}`).join('; ')}`);
  if (violations.length > 0) return { ...base, ok: false, failure: violations.join('\n') };
  const check = checkLinearizable(events);
  if (!check.ok) {
    const lines = [`key ${check.key}: ${check.message}`];
    if (!check.inconclusive && check.minimalPrefix) lines.push(...check.minimalPrefix.map((e) => `  ${describeEvent(e)}`));
    return { ...base, ok: false, failure: lines.join('\n') };
  }
  return { ...base, ok: true };
}

