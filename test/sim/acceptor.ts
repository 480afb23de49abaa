// A storage node's record store in memory, as the simulator's acceptor. It
// follows the real one (src/store/record-store.ts) where safety lives:
// - decisions are the shared pure rules (src/util/paxos.ts), made against the
//   newest state including writes not yet synced (the overlay);
// - an acknowledgement leaves only once its write is durable; writes become
//   durable in order, a batch at a time (group commit after a sync delay);
// - a refusal waits for the key's write in flight, so it never answers before
//   the state it reports is durable;
// - reads and scans report durable state only;
// - purging a tombstone raises a store-wide floor that later prepares must
//   exceed;
// - a crash loses the overlay, every write not yet synced and every answer
//   not yet sent.
// - a key's durable state can rot (a failed checksum): the node keeps only its
//   ballot ceiling and treats the key by the lost-key rules (src/util/paxos.ts,
//   lostState) until an accept above the ceiling lands.
// Each durable change is checked against the acceptor invariants as it lands.
import { QfsError } from '../../src/util/errors.js';
import { ZERO_BALLOT, compareBallots, formatBallot, maxBallot, type Ballot } from '../../src/util/ballot.js';
import { EMPTY_VALUE, ceilingAfter, decideAccept, decideLearn, decideLostAccept, decidePrepare, decidePurge, lostState, type AcceptorBugs, type AcceptorState, type RecordValue } from '../../src/util/paxos.js';
import { FRESH_LEASE, admitScopeRead, admitScopeWrite, admitSettlingScan, decodeLease, type LeaseRecord, type ScopeCall } from '../../src/util/lease.js';
import { open } from '../../src/util/envelope.js';
import type { Acceptor, AcceptorCall } from '../../src/cluster/acceptor.js';
import type { ScanReply, Verdict } from '../../src/rpc/messages.js';
import type { World } from './world.js';

const id = (key: Buffer): string => key.toString('latin1');
const TRACE = process.env['QFS_SIM_TRACE_KEY'];

interface Pending {
  /** null: a purge. */
  state: AcceptorState | null;
  seq: number;
  waiters: Array<() => void>;
}

/**
 * Test-only bugs of the lease rules. `ignoreFence`: scope writes are admitted
 * whatever their term. `ignoreHeldReads`: another session's reads of a held
 * scope are answered (they see a holder's batches half committed).
 */
export interface SimNodeBugs extends AcceptorBugs {
  ignoreFence?: boolean;
  ignoreHeldReads?: boolean;
  /** A rotted key is treated as never written (the amnesia the ceiling rules prevent). */
  lostAsAbsent?: boolean;
}

export class SimNode {
  up = true;
  /** Bumped by every crash: work started before it is dropped. */
  private incarnation = 0;
  private readonly durable = new Map<string, AcceptorState>();
  private durableFloor: Ballot = ZERO_BALLOT;
  private floor: Ballot = ZERO_BALLOT;
  private readonly pending = new Map<string, Pending>();
  private seq = 0;
  /** When the last queued write becomes durable: writes sync in order. */
  private syncedUntil = 0;
  /** Per key, the highest ballot ever purged: a later accepted ballot must be above it. */
  private readonly purgedAt = new Map<string, Ballot>();
  /** Keys whose durable state rotted (the durable map keeps the old state for the invariant checks only). */
  private readonly lost = new Set<string>();
  /** At least every ballot of every state written: including writes in flight, and as synced. */
  private ceiling: Ballot = ZERO_BALLOT;
  private durableCeiling: Ballot = ZERO_BALLOT;
  /** Counters for reports. */
  readonly stats = { writes: 0, crashes: 0, purges: 0, rotted: 0, healed: 0 };

  constructor(
    readonly name: string,
    private readonly world: World,
    private readonly violation: (what: string) => void,
    private readonly peersOf: () => readonly SimNode[],
    private readonly bugs: SimNodeBugs = {},
  ) {}

  crash(): void {
    if (!this.up) return;
    this.up = false;
    this.incarnation++;
    this.stats.crashes++;
    this.pending.clear();
    this.floor = this.durableFloor;
    this.ceiling = this.durableCeiling;
    this.syncedUntil = this.world.now;
  }

  restart(): void {
    this.up = true;
  }

  /** Whether this node's copy of a key is lost now (rotted, not healed). */
  isLost(k: string): boolean {
    return this.lost.has(k) && !this.pending.has(k);
  }

  /** Whether the durable copy is rotted (a heal may be in flight). */
  holdsRotted(k: string): boolean {
    return this.lost.has(k);
  }

  /** The key's durable state fails its checksum from now on; false if there is nothing durable or a write is in flight. */
  rot(k: string): boolean {
    if (!this.durable.has(k) || this.pending.has(k) || this.lost.has(k)) return false;
    this.lost.add(k);
    this.stats.rotted++;
    return true;
  }

  /** Durable state of a key, as a read reports it. */
  committed(k: string): AcceptorState {
    return this.durable.get(k) ?? { promised: this.durableFloor, accepted: ZERO_BALLOT, value: EMPTY_VALUE };
  }

  /** The highest tombstone ballot this node purged for a key (ZERO_BALLOT if none). */
  purgedBallot(k: string): Ballot {
    return this.purgedAt.get(k) ?? ZERO_BALLOT;
  }

  private decisionState(k: string): AcceptorState {
    const p = this.pending.get(k);
    if (p) return p.state ?? { promised: this.floor, accepted: ZERO_BALLOT, value: EMPTY_VALUE };
    return this.durable.get(k) ?? { promised: this.floor, accepted: ZERO_BALLOT, value: EMPTY_VALUE };
  }

  /** Calls `fn` once the key's write in flight (if any) is durable; never if the node crashes first. */
  private afterSettled(k: string, fn: () => void): void {
    const p = this.pending.get(k);
    if (p) p.waiters.push(fn);
    else fn();
  }

  /** Queues a write; `onDurable` runs when it is synced, unless the node crashed before. */
  private write(k: string, state: AcceptorState | null, floor: Ballot | null, onDurable: () => void): void {
    const seq = ++this.seq;
    const entry: Pending = { state, seq, waiters: [] };
    this.pending.set(k, entry);
    if (floor) this.floor = floor;
    if (state) this.ceiling = ceilingAfter(this.ceiling, state);
    const incarnation = this.incarnation;
    // Group commit: this write lands with the batch that syncs next.
    const syncAt = Math.max(this.syncedUntil, this.world.now + 0.05 + this.world.rng.next() * 1.5);
    this.syncedUntil = syncAt;
    this.world.atTime(syncAt, () => {
      if (this.incarnation !== incarnation) return;
      this.land(k, state, floor);
      this.stats.writes++;
      if (this.pending.get(k)?.seq === seq) this.pending.delete(k);
      for (const w of entry.waiters) w();
      onDurable();
    });
  }

  private land(k: string, state: AcceptorState | null, floor: Ballot | null): void {
    const before = this.durable.get(k);
    if (state === null) {
      if (!before || before.value.kind !== 'tombstone') this.violation(`${this.name}: purged ${JSON.stringify(k)}, which holds no tombstone`);
      // No tombstone purged while a replica lacks it: every other replica's durable state holds it or something newer.
      for (const other of this.peersOf()) {
        if (other === this || !before) continue;
        const theirs = other.committed(k);
        if (compareBallots(theirs.accepted, before.accepted) < 0 && compareBallots(other.purgedBallot(k), before.accepted) < 0) {
          this.violation(`${this.name}: purged the tombstone of ${JSON.stringify(k)} at ${formatBallot(before.accepted)} while ${other.name} holds ${formatBallot(theirs.accepted)}`);
        }
      }
      if (before) this.purgedAt.set(k, maxBallot(this.purgedAt.get(k) ?? ZERO_BALLOT, before.accepted));
      this.durable.delete(k);
      if (floor) this.durableFloor = maxBallot(this.durableFloor, floor);
      this.stats.purges++;
      return;
    }
    // Ballots only grow; promised >= accepted; after a purge, only higher ballots are accepted.
    const old = before ?? { promised: this.durableFloor, accepted: ZERO_BALLOT, value: EMPTY_VALUE };
    if (compareBallots(state.promised, old.promised) < 0) this.violation(`${this.name}: promise of ${JSON.stringify(k)} went back from ${formatBallot(old.promised)} to ${formatBallot(state.promised)}`);
    if (compareBallots(state.accepted, old.accepted) < 0) this.violation(`${this.name}: accepted ballot of ${JSON.stringify(k)} went back from ${formatBallot(old.accepted)} to ${formatBallot(state.accepted)}`);
    if (compareBallots(state.accepted, state.promised) > 0) this.violation(`${this.name}: ${JSON.stringify(k)} accepted ${formatBallot(state.accepted)} above its promise ${formatBallot(state.promised)}`);
    // A late copy of the purged tombstone's own accept may land again at that
    // ballot (the floor is the promise, which the accept meets): a delete
    // again, harmless. A value at or below it would bring old data back.
    const purged = this.purgedAt.get(k);
    if (purged && state.value.kind === 'value' && compareBallots(state.accepted, purged) <= 0) {
      this.violation(`${this.name}: ${JSON.stringify(k)} accepted ${formatBallot(state.accepted)}, not above its purged tombstone ${formatBallot(purged)}`);
    }
    this.durable.set(k, state);
    this.durableCeiling = ceilingAfter(this.durableCeiling, state);
    if (this.lost.delete(k)) this.stats.healed++;
    if (TRACE && (k.endsWith(TRACE) || k.includes('@lease'))) {
      const payload = open(state.value).payload;
      process.stdout.write(`${this.world.now.toFixed(2)} ${this.name} ${k.slice(2)} p=${formatBallot(state.promised)} a=${formatBallot(state.accepted)} tag=${state.tag} v=${k.includes('@lease') && payload ? JSON.stringify(decodeLease(payload)) : payload?.toString()}\n`);
    }
  }

  /** This node's copy of a scope's lease record: the newest (decisions) or the durable one. */
  private lease(scope: ScopeCall, durable: boolean): LeaseRecord {
    const k = id(scope.lease);
    const state = durable ? this.committed(k) : this.decisionState(k);
    try {
      return decodeLease(open(state.value).payload);
    } catch {
      return FRESH_LEASE;
    }
  }

  /** A reply about a scope key carries this node's settled term of the scope's lease. */
  private annotate(state: AcceptorState, scope: ScopeCall | undefined): AcceptorState {
    return scope ? { ...state, settled: this.lease(scope, false).settled } : state;
  }

  private fenced(scope: ScopeCall | undefined): boolean {
    return !!scope && !this.bugs.ignoreFence && admitScopeWrite(this.lease(scope, false), scope) !== 'ok';
  }

  /** The state decisions use for a lost key under the bug switch: as if never written. */
  private absent(): AcceptorState {
    return { promised: this.floor, accepted: ZERO_BALLOT, value: EMPTY_VALUE };
  }

  prepare(key: Buffer, ballot: Ballot, scope: ScopeCall | undefined, reply: (v: Verdict) => void): void {
    const k = id(key);
    if (this.isLost(k) && !this.bugs.lostAsAbsent) return reply({ ok: false, state: lostState(this.ceiling) });
    const cur = this.isLost(k) ? this.absent() : this.decisionState(k);
    if (this.fenced(scope)) return this.afterSettled(k, () => reply({ ok: false, state: this.annotate(cur, scope), fenced: true }));
    const decided = decidePrepare(cur, ballot);
    if (!decided) return this.afterSettled(k, () => reply({ ok: false, state: this.annotate(cur, scope) }));
    this.write(k, decided, null, () => reply({ ok: true, state: this.annotate(decided, scope) }));
  }

  accept(key: Buffer, ballot: Ballot, value: RecordValue, promiseNext: boolean, scope: ScopeCall | undefined, reply: (v: Verdict) => void): void {
    const k = id(key);
    const copy0: RecordValue = value.kind === 'empty' ? value : { kind: value.kind, bytes: Buffer.from(value.bytes) };
    if (this.isLost(k) && !this.bugs.lostAsAbsent) {
      const healed = decideLostAccept(this.ceiling, ballot, copy0, promiseNext, scope?.term);
      if (!healed) return reply({ ok: false, state: lostState(this.ceiling) });
      return this.write(k, healed, null, () => reply({ ok: true, state: this.annotate(healed, scope) }));
    }
    const cur = this.isLost(k) ? this.absent() : this.decisionState(k);
    if (this.fenced(scope)) return this.afterSettled(k, () => reply({ ok: false, state: this.annotate(cur, scope), fenced: true }));
    const copy: RecordValue = value.kind === 'empty' ? value : { kind: value.kind, bytes: Buffer.from(value.bytes) };
    const decided = decideAccept(cur, ballot, copy, promiseNext, this.bugs, scope?.term);
    if (!decided) return this.afterSettled(k, () => reply({ ok: false, state: this.annotate(cur, scope) }));
    this.write(k, decided, null, () => reply({ ok: true, state: this.annotate(decided, scope) }));
  }

  learn(key: Buffer, ballot: Ballot, reply: (learned: boolean) => void): void {
    const k = id(key);
    if (this.isLost(k)) return reply(false);
    const cur = this.decisionState(k);
    const decided = decideLearn(cur, ballot);
    if (!decided) return this.afterSettled(k, () => reply(cur.tag === undefined && compareBallots(cur.accepted, ballot) === 0));
    this.write(k, decided, null, () => reply(true));
  }

  read(key: Buffer, scope: ScopeCall | undefined, reply: (s: AcceptorState | QfsError) => void): void {
    if (scope && !scope.settling && !this.bugs.ignoreHeldReads && admitScopeRead(this.lease(scope, true), scope.session) !== 'ok') {
      return reply(new QfsError('fenced', `${this.name}: the scope is held by another session`));
    }
    if (this.lost.has(id(key))) {
      if (!this.bugs.lostAsAbsent) return reply(new QfsError('corrupt', `${this.name}: the stored state fails its checksum`));
      return reply({ promised: this.durableFloor, accepted: ZERO_BALLOT, value: EMPTY_VALUE });
    }
    reply(this.annotate(this.committed(id(key)), scope));
  }

  scan(start: Buffer, end: Buffer | null, limit: number, scope: ScopeCall | undefined, reply: (r: ScanReply | QfsError) => void): void {
    if (scope?.settling && !this.bugs.ignoreFence && admitSettlingScan(this.lease(scope, true), scope) !== 'ok') {
      return reply(new QfsError('fenced', `${this.name}: not at the settling scan's lease term`));
    }
    if (scope && !scope.settling && !this.bugs.ignoreHeldReads && admitScopeRead(this.lease(scope, true), scope.session) !== 'ok') {
      return reply(new QfsError('fenced', `${this.name}: the scope is held by another session`));
    }
    const keys = [...this.durable.keys()]
      .map((k) => Buffer.from(k, 'latin1'))
      .filter((k) => Buffer.compare(k, start) >= 0 && (end === null || Buffer.compare(k, end) < 0))
      .sort(Buffer.compare);
    const entries: ScanReply['entries'] = [];
    for (const k of keys) {
      if (this.lost.has(id(k))) {
        if (this.bugs.lostAsAbsent) continue;
        return reply(new QfsError('corrupt', `${this.name}: a stored state in the range fails its checksum`));
      }
      const state = this.durable.get(id(k))!;
      if (state.value.kind === 'empty') continue;
      if (entries.length === limit) return reply(scope ? { entries, next: k, settled: this.lease(scope, false).settled } : { entries, next: k });
      entries.push({ key: k, state });
    }
    reply(scope ? { entries, next: null, settled: this.lease(scope, false).settled } : { entries, next: null });
  }

  purge(key: Buffer, ballot: Ballot, reply: (ok: boolean) => void): void {
    const k = id(key);
    if (this.isLost(k)) return reply(false);
    const cur = this.decisionState(k);
    const floor = decidePurge(cur, ballot, this.floor);
    if (!floor) return this.afterSettled(k, () => reply(false));
    this.write(k, null, floor, () => reply(true));
  }
}

/** A proposer's handle on one simulated node: calls travel over the simulated network. */
export class SimAcceptor implements Acceptor {
  readonly id: string;
  latencyMs = 1;
  private consecutiveFailures = 0;
  private inflight = 0;
  private lastAnswerAt = 0;
  private busySince = 0;

  constructor(
    private readonly world: World,
    private readonly from: string,
    private readonly node: SimNode,
    private readonly callTimeoutMs: number,
  ) {
    this.id = node.name;
  }

  get up(): boolean {
    return this.node.up;
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

  /** One request and its answer over the network, bounded by the call's deadline and the per-call timeout. */
  private call<T>(call: AcceptorCall, serve: (node: SimNode, reply: (v: T) => void) => void): Promise<T> {
    const started = this.world.now;
    const remaining = call.deadline - started;
    if (remaining <= 0) return Promise.reject(new QfsError('timeout', 'deadline passed'));
    if (this.inflight++ === 0) this.busySince = started;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const finish = (f: () => void): void => {
        if (settled) return;
        settled = true;
        timer.cancel();
        this.inflight--;
        f();
      };
      const timer = this.world.at(Math.min(remaining, this.callTimeoutMs), () =>
        finish(() => {
          this.consecutiveFailures++;
          reject(new QfsError('timeout', `${this.id}: no answer within ${Math.min(remaining, this.callTimeoutMs)} ms`));
        }),
      );
      this.world.send(this.from, this.node.name, () => {
        if (!this.node.up) return;
        serve(this.node, (v) =>
          this.world.send(this.node.name, this.from, () =>
            finish(() => {
              this.lastAnswerAt = this.world.now;
              this.latencyMs += 0.2 * (this.world.now - started - this.latencyMs);
              this.consecutiveFailures = 0;
              if (v instanceof QfsError) reject(v);
              else resolve(v);
            }),
          ),
        );
      });
    });
  }

  prepare(key: Buffer, ballot: Ballot, call: AcceptorCall): Promise<Verdict> {
    return this.call(call, (n, reply) => n.prepare(key, ballot, call.scope, reply));
  }

  accept(key: Buffer, ballot: Ballot, value: RecordValue, promiseNext: boolean, call: AcceptorCall): Promise<Verdict> {
    return this.call(call, (n, reply) => n.accept(key, ballot, value, promiseNext, call.scope, reply));
  }

  read(key: Buffer, call: AcceptorCall): Promise<AcceptorState> {
    return this.call<AcceptorState>(call, (n, reply) => n.read(key, call.scope, reply as (s: AcceptorState | QfsError) => void));
  }

  scan(start: Buffer, end: Buffer | null, limit: number, call: AcceptorCall): Promise<ScanReply> {
    return this.call<ScanReply>(call, (n, reply) => n.scan(start, end, limit, call.scope, reply as (r: ScanReply | QfsError) => void));
  }

  purge(key: Buffer, ballot: Ballot, call: AcceptorCall): Promise<boolean> {
    return this.call(call, (n, reply) => n.purge(key, ballot, reply));
  }

  learn(key: Buffer, ballot: Ballot, call: AcceptorCall): Promise<boolean> {
    return this.call(call, (n, reply) => n.learn(key, ballot, reply));
  }
}
