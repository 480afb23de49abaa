// CASPaxos proposer (Rystsov 2018): every record is a register whose acceptors
// are the R nodes that placement picks for the key's group. No leader, no log.
//
//   change(key, f): prepare(b) on all R, wait for a majority of promises, take the
//   value with the highest accepted ballot, accept(b, f(value)) on all R, wait
//   for a majority. A refused ballot retries higher after a jittered backoff.
//
// Two shortcuts, each safe on its own terms:
// - Read in one round trip: when a majority reports the same accepted ballot,
//   that value is chosen; otherwise a full round (change with KEEP) settles it.
// - Change in one round trip: an accept can also promise this proposer's next
//   ballot (counter+1). While this proposer is the key's only writer, its next
//   change skips the prepare and sends accept(next) with the value it knows. Any
//   other proposer that prepared meanwhile holds a higher promise on a majority,
//   so that accept is refused and the full round runs.
// - Prepare ahead: the first phase of a round may run before the change is
//   known (prepare()). It writes only a promise, so it can overlap earlier
//   steps of a multi-record operation without breaking their order; the change
//   that follows is then the round's second phase, one accept.
import type { Ballot } from '../util/ballot.js';
import { ZERO_BALLOT, compareBallots, formatBallot } from '../util/ballot.js';
import { sleep, systemClock, type Clock, type Timer } from '../util/clock.js';
import { QfsError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { EMPTY_VALUE, type AcceptorState, type RecordValue } from '../util/paxos.js';
import { settledOf, withoutSettled, type ScopeCall } from '../util/lease.js';
import type { ScanReply, Verdict } from '../rpc/messages.js';
import { KEEP, callDeadline, groupOf, type Behind, type CallOpts, type ChangeFn, type ChangeResult, type ScanEntry, type ScanPage } from '../keyspace/types.js';
import { byHealth, type Acceptor, type AcceptorCall } from './acceptor.js';
import { countRule, gatherQuorum, hedgedQuorumKeyed, setsRule, type QuorumRule } from './quorum.js';
import { isQfsError } from '../util/errors.js';
import { ChangeAttempts, MAX_ENTRIES, newTag, open, seal, type ChangeOutcome, type ChangeTrail, type LineageEntry } from '../util/envelope.js';

export interface RegisterOptions {
  replication: number;
  requestTimeoutMs: number;
  log: Logger;
  /** Maximum retries of a conflicted round before giving up with `conflict`. */
  maxAttempts?: number;
  /** Keys whose last ballot this proposer remembers for the one-round-trip change. */
  fastPathKeys?: number;
  /** Time, timers and chance (the simulator's own; the system's by default). */
  clock?: Clock;
  /**
   * How long a tombstone must be seen settled on every replica before it is
   * purged; longer than any change call's deadline (default: 60 s, or twice
   * the request timeout if that is longer).
   */
  tombstoneGraceMs?: number;
  /**
   * Test-only: reintroduces a fixed bug, so that the simulator shows it finds
   * it. `ignoreLineage`: a retry never looks for its own earlier attempt in the
   * value's lineage and runs the change again (the double-applied retry).
   * `ignoreSettled`: values tagged with a settled lease term are adopted like
   * any other (a fenced write that a minority took comes back).
   * `unionMajority`: a KeyQuorum with two sets (a key moving from A to B) is
   * counted as a plain majority of A ∪ B instead of a majority of each;
   * `newSetOnly`: as a majority of its last set (B) only. Either lets a quorum
   * miss a majority of one set (docs/architecture.md, "Membership").
   * `ignoreTrail`: a change its caller runs again after a failed call does not
   * look for the failed call's attempts (CallOpts.trail).
   */
  injectBugs?: { ignoreLineage?: boolean; ignoreSettled?: boolean; unionMajority?: boolean; newSetOnly?: boolean; ignoreTrail?: boolean; settledTagsAsUntagged?: boolean };
}

/**
 * What this proposer may send as a single accept: a ballot a majority has
 * promised it and the value that accept must build on (the highest accepted one
 * that majority reported).
 */
interface Known {
  next: Ballot;
  value: RecordValue;
  /** The membership epoch the promise was made under: it says nothing to another epoch's quorums. */
  epoch: number;
}

/**
 * Where a key's calls go and what makes a quorum of them: its acceptors (every
 * node of its replica sets), the sets a quorum needs a majority of (one when
 * stable; A and B while the key moves), and the membership epoch the calls are
 * placed by (docs/architecture.md, "Membership").
 */
export interface KeyQuorum {
  acceptors: Acceptor[];
  sets: string[][];
  epoch: number;
}

interface Placed {
  acceptors: Acceptor[];
  rule: QuorumRule;
  epoch: number;
}

export function nextOf(b: Ballot): Ballot {
  return { counter: b.counter + 1, proposer: b.proposer };
}

/** The highest accepted (ballot, value) among acceptor states: what a new round must carry on. */
export function highestAccepted(states: readonly AcceptorState[]): AcceptorState | null {
  let best: AcceptorState | null = null;
  for (const s of states) if (!best || compareBallots(s.accepted, best.accepted) > 0) best = s;
  return best;
}

/** Pure: is one accepted ballot reported by at least `quorum` of the states? */
export function agreedValue(states: readonly AcceptorState[], quorum: number): AcceptorState | null {
  for (const s of states) {
    const same = states.filter((o) => compareBallots(o.accepted, s.accepted) === 0).length;
    if (same >= quorum) return s;
  }
  return null;
}

/** Pure: is one accepted ballot reported by acceptors that make a quorum under `rule`? */
export function agreedAmong(states: ReadonlyArray<{ key: string; state: AcceptorState }>, rule: QuorumRule): AcceptorState | null {
  for (const s of states) {
    const same = states.filter((o) => compareBallots(o.state.accepted, s.state.accepted) === 0).map((o) => o.key);
    if (rule.reached(same)) return s.state;
  }
  return null;
}

/** Changes queued on one key, run together by one round. */
interface QueuedChange {
  fn: ChangeFn;
  resolve(v: Buffer | null): void;
  reject(e: unknown): void;
  deadline: number;
  signal?: AbortSignal;
  scope?: ScopeCall;
  behind?: Behind;
  trail?: ChangeTrail;
}

type Compute<T> = (old: Buffer | null, lineage: readonly LineageEntry[]) => { next: ChangeResult; meta: T };

const MAX_BATCH = 256;
/** Records whose change missed a replica, kept for that replica's return (each a key and a node id). */
const MAX_RECORD_HINTS = 100_000;
/** How long a change chosen under a lease waits before it is learned, so that learns go out in batches. */
const LEARN_DELAY_MS = 2;
/** How long a refused accept waits for the acceptors that have not answered yet. */
const REFUSAL_WAIT_MS = 250;
/** Settled tombstones whose grace this proposer is timing. */
const MAX_SETTLED_TOMBSTONES = 1_000_000;

/**
 * Applies queued changes in order; each one's result or exception is its own.
 * A change whose trail shows an earlier call of it in `lineage` took effect
 * then: it reports that call's outcome and is not applied again.
 */
export function applyBatch(
  batch: ReadonlyArray<{ fn: ChangeFn; trail?: ChangeTrail }>,
  old: Buffer | null,
  lineage: readonly LineageEntry[] = [],
  trails = true,
): { next: ChangeResult; meta: ChangeOutcome[] } {
  let cur = old;
  let changed = false;
  const meta: ChangeOutcome[] = [];
  for (const { fn, trail } of batch) {
    try {
      const landed = trails ? trail?.find(lineage) : null;
      if (landed) {
        meta.push(landed.meta);
        continue;
      }
      const r = fn(cur);
      if (r !== KEEP) {
        cur = r;
        changed = true;
      }
      meta.push({ ok: true, value: cur });
    } catch (error) {
      meta.push({ ok: false, error });
    }
  }
  return { next: changed ? cur : KEEP, meta };
}

function visible<S extends AcceptorState>(states: readonly S[]): readonly S[] {
  if (!states.some((s) => s.tag !== undefined)) return states;
  return withoutSettled(states, settledOf(states));
}

/**
 * Each acceptor answered a scan with its first keys up to its own cut-off;
 * only keys below the smallest cut-off are complete in every answer (null:
 * every answer reached the end of the range).
 */
function horizonOf(replies: ReadonlyArray<{ next: Buffer | null }>): Buffer | null {
  let horizon: Buffer | null = null;
  for (const r of replies) if (r.next && (!horizon || Buffer.compare(r.next, horizon) < 0)) horizon = r.next;
  return horizon;
}

function sameScope(a: ScopeCall | undefined, b: ScopeCall | undefined): boolean {
  if (!a || !b) return a === b;
  return a.term === b.term && a.session === b.session && a.settling === b.settling && a.lease.equals(b.lease);
}

function fencedError(): QfsError {
  return new QfsError('fenced', 'the lease term of this write is no longer current');
}

/** How long a read waits for its chosen replicas before asking the others too. */
export function hedgeDelayMs(chosen: readonly Acceptor[]): number {
  const slowest = Math.max(0, ...chosen.map((p) => p.latencyMs));
  return Math.min(50, Math.max(2, 3 * slowest));
}

/** Which of `acceptors` (by id) are cut off: a round does not wait for them once a refusal makes it need them. */
function silentIn(acceptors: readonly Acceptor[], clock: Clock): { cutOff: (id: string) => boolean; clock: Clock } {
  return { cutOff: (id) => acceptors.some((p) => p.id === id && p.cutOff), clock };
}

/** Whether a hedged read should keep waiting on the replicas it chose: none of them has gone silent. */
function stillAnswering(chosen: readonly Acceptor[]): () => boolean {
  return () => chosen.every((p) => !p.silent);
}

/**
 * Whether a value sent in an accept at `ballot` (written by the attempt
 * tagged `tag`) that did not reach a quorum can never be adopted, so that a
 * retry may run the change again:
 * - every acceptor refused it: it reached none of them; or
 * - a majority refused it while holding accepted values above `ballot` that
 *   provably do not build on it: each one's lineage lacks `tag` yet reaches
 *   back before `ballot` (or is whole). Any later prepare quorum meets one of
 *   them, which reports at least that value (accepted ballots only grow); by
 *   induction on ballots, no value built on ours can be the highest such a
 *   quorum sees, so nothing adopts it (docs/architecture.md, "Registers").
 * A higher accepted ballot alone proves nothing: another proposer may have
 * prepared on the acceptor that took our value and carried it on (the
 * simulator found that: seed 1181 applied an increment twice once the tag
 * had left the lineage window). A refusal for a promise alone proves nothing
 * either; such an attempt stays uncertain.
 */
export function definitelyNotAdopted(
  r: { oks: unknown[]; rejected: Array<{ key?: string; value: Verdict }>; errors: unknown[] },
  total: number,
  quorum: number | QuorumRule,
  ballot: Ballot,
  tag: string,
): boolean {
  if (r.oks.length === 0 && r.errors.length === 0 && r.rejected.length === total) return true;
  const unrelated = r.rejected.filter((x) => {
    const state = x.value.state;
    if (compareBallots(state.accepted, ballot) <= 0) return false;
    let lineage;
    try {
      lineage = open(state.value).lineage;
    } catch {
      return false;
    }
    if (lineage.some((e) => e.tag === tag)) return false;
    return lineage.length < MAX_ENTRIES || lineage[0]!.counter < ballot.counter;
  });
  return typeof quorum === 'number' ? unrelated.length >= quorum : quorum.reached(unrelated.map((x) => x.key ?? ''));
}

/** A batch's attempts, each also recorded in the trail of every queued change in the batch that has one. */
class BatchAttempts extends ChangeAttempts<ChangeOutcome[]> {
  constructor(private readonly batch: readonly QueuedChange[]) {
    super();
  }

  override record(tag: string, value: Buffer | null, meta: ChangeOutcome[]): void {
    super.record(tag, value, meta);
    this.batch.forEach((op, i) => op.trail?.record(tag, value, meta[i]!));
  }

  override markUncertain(counter: number): void {
    super.markUncertain(counter);
    for (const op of this.batch) op.trail?.markUncertain(counter);
  }
}

export class Registers {
  readonly proposer: string;
  private readonly clock: Clock;
  private counter = 0;
  private readonly known = new Map<string, Known>();
  private readonly queues = new Map<string, QueuedChange[]>();
  private readonly settledTombstones = new Map<string, { ballot: Ballot; since: number }>();
  readonly tombstoneGraceMs: number;
  /**
   * Changes that reached a quorum but not every replica (a node down, cut off
   * or timing out): by key and node. drainHints() repairs each key once its
   * node answers again, so a returning node catches up on what this proposer
   * changed meanwhile without a full repair. Bounded: past the bound new
   * hints are dropped and `hintsDropped` counts them (run repair).
   */
  readonly hints = new Map<string, { key: Buffer; node: string }>();
  private learnTimer: Timer | null = null;
  /** Scope keys whose latest change this proposer saw chosen under a lease term, not yet learned on a majority. */
  private readonly learnable = new Map<string, { key: Buffer; ballot: Ballot; scope: ScopeCall }>();
  /** Keys whose background learn is on its way, with the ballot it learns: the next background batch leaves them to it. */
  private readonly learning = new Map<string, Ballot>();
  hintsDropped = 0;
  private readonly quorum: number;
  /** Counters for status and tests. */
  readonly stats = { fastChanges: 0, trailMisuses: 0, fullRounds: 0, conflicts: 0, fastReads: 0, slowReads: 0, recognised: 0, prepared: 0 };

  /**
   * `placement`: a key group's acceptors, all of them one replica set counted
   * by a majority of R (the simulator's), or a KeyQuorum from the membership.
   */
  constructor(
    private readonly placement: (group: Buffer) => Acceptor[] | KeyQuorum,
    private readonly opts: RegisterOptions,
  ) {
    this.quorum = Math.floor(opts.replication / 2) + 1;
    this.clock = opts.clock ?? systemClock;
    this.tombstoneGraceMs = opts.tombstoneGraceMs ?? Math.max(60_000, 2 * opts.requestTimeoutMs);
    this.proposer = this.clock.randomHex(8); // a ballot's proposer: 16 hex characters
  }

  private placed(group: Buffer): Placed {
    const p = this.placement(group);
    if (Array.isArray(p)) return { acceptors: p, rule: countRule(this.quorum, p.length), epoch: 0 };
    const bugs = this.opts.injectBugs;
    if (bugs?.newSetOnly && p.sets.length > 1) return { acceptors: p.acceptors, rule: setsRule([p.sets[p.sets.length - 1]!]), epoch: p.epoch };
    if (bugs?.unionMajority && p.sets.length > 1) return { acceptors: p.acceptors, rule: setsRule([[...new Set(p.sets.flat())]]), epoch: p.epoch };
    return { acceptors: p.acceptors, rule: setsRule(p.sets), epoch: p.epoch };
  }

  /**
   * The membership changed: ballots promised under the old one say nothing to
   * the new quorums (docs/architecture.md, "Membership"), so every change runs
   * a full round first.
   */
  membershipChanged(): void {
    this.known.clear();
  }

  private observe(b: Ballot): void {
    if (b.counter > this.counter) this.counter = b.counter;
  }

  private freshBallot(): Ballot {
    this.counter += 1;
    return { counter: this.counter, proposer: this.proposer };
  }

  private remember(key: Buffer, k: Known | null): void {
    const id = key.toString('latin1');
    this.known.delete(id);
    if (!k) return;
    // A fresh ballot must never be one a quorum already promised us ahead:
    // they would refuse its prepare (equal, not higher), and when the entry is
    // dropped unused (a membership change drops them all) nothing else would
    // have raised the counter past it.
    this.observe(k.next);
    this.known.set(id, k);
    const max = this.opts.fastPathKeys ?? 10_000;
    if (this.known.size > max) this.known.delete(this.known.keys().next().value!);
  }

  /**
   * Phase one of this proposer's next change of `key`, run now. A later change
   * then costs one accept, unless another proposer prepared the key meanwhile
   * (its higher promise refuses the accept, and the change runs a full round).
   * Writes no value. Failures are ignored: the change just runs in full.
   */
  async prepare(key: Buffer, opts?: CallOpts): Promise<void> {
    const id = key.toString('latin1');
    if (this.known.has(id) || this.queues.has(id)) return;
    const deadline = this.deadline(opts);
    const ballot = this.freshBallot();
    const q = this.placed(groupOf(key));
    let prep;
    try {
      prep = await gatherQuorum<Verdict, string>(
        q.acceptors.map((p) => ({ key: p.id, run: () => p.prepare(key, ballot, { deadline, signal: opts?.signal, scope: opts?.scope, epoch: q.epoch, ...(opts?.behind ? { behind: opts.behind } : {}) }) })),
        q.rule,
        (v) => v.ok,
      );
    } catch {
      return;
    }
    if (prep.rejected.some((x) => x.value.fenced)) return;
    for (const x of [...prep.oks, ...prep.rejected]) {
      this.observe(x.value.state.promised);
      this.observe(x.value.state.accepted);
    }
    // A change that started meanwhile ran its own round with a higher ballot.
    if (!q.rule.reached(prep.oks.map((o) => o.key)) || this.known.has(id) || this.queues.has(id)) return;
    this.stats.prepared++;
    const current = highestAccepted(this.visible(prep.oks.map((o) => o.value.state)));
    this.remember(key, { next: ballot, value: current ? current.value : { kind: 'empty' }, epoch: q.epoch });
  }

  /** Runs a read-only call again when a node refused it for a newer membership (which the refusal taught us). */
  private async overEpochs<T>(deadline: number, run: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await run();
      } catch (err) {
        if (!isQfsError(err, 'stale_epoch') || attempt >= 8 || this.clock.now() >= deadline) throw err;
      }
    }
  }

  private deadline(opts?: CallOpts): number {
    return callDeadline(this.clock.now(), opts, this.opts.requestTimeoutMs);
  }

  async read(key: Buffer, opts?: CallOpts): Promise<Buffer | null> {
    const deadline = this.deadline(opts);
    return this.overEpochs(deadline, () => this.readOnce(key, deadline, opts));
  }

  private async readOnce(key: Buffer, deadline: number, opts?: CallOpts): Promise<Buffer | null> {
    // A majority of the healthiest replicas first; the rest only if those fail,
    // disagree or are slow.
    const q = this.placed(groupOf(key));
    const acceptors = byHealth(q.acceptors);
    const agreedOf = (oks: ReadonlyArray<{ key: string; value: AcceptorState }>): AcceptorState | null => {
      const shown = new Set<AcceptorState>(this.visible(oks.map((o) => o.value)));
      return agreedAmong(oks.filter((o) => shown.has(o.value)).map((o) => ({ key: o.key, state: o.value })), q.rule);
    };
    const states = await hedgedQuorumKeyed(
      acceptors.map((p) => ({ key: p.id, run: () => p.read(key, { deadline, signal: opts?.signal, scope: opts?.scope, epoch: q.epoch }) })),
      q.rule,
      (oks) => agreedOf(oks) !== null,
      hedgeDelayMs(acceptors.slice(0, q.rule.size)),
      stillAnswering(acceptors.slice(0, q.rule.size)),
      this.clock,
    );
    for (const s of states) this.observe(s.value.promised);
    const agreed = agreedOf(states);
    if (agreed) {
      this.stats.fastReads++;
      return open(agreed.value).payload;
    }
    this.stats.slowReads++;
    // The full round that settles it runs within this read's deadline, not a fresh one. It is
    // the read's own, not a change of the caller's: a trail the caller passed stays out of it.
    const { trail: _callersChange, ...settle } = opts ?? {};
    return this.change(key, () => KEEP, { ...settle, deadline });
  }

  /**
   * Changes of one key from this proposer queue up and run in batches: one
   * CASPaxos round applies every queued function in order and writes once.
   * Concurrent changes from one mount then cost one round between them instead
   * of fighting each other with conflicting ballots.
   */
  change(key: Buffer, fn: ChangeFn, opts?: CallOpts): Promise<Buffer | null> {
    return new Promise((resolve, reject) => {
      const id = key.toString('latin1');
      let trail = opts?.trail;
      const misuse = trail?.begin(id);
      if (misuse) {
        // A bug in the caller: the change runs without the trail (as before trails) rather than fail.
        this.stats.trailMisuses++;
        this.opts.log.error({ key: key.toString('hex'), err: misuse }, 'internal error: the change runs without its trail');
        trail = undefined;
      }
      const op: QueuedChange = { fn, resolve, reject, deadline: this.deadline(opts), ...(opts?.signal ? { signal: opts.signal } : {}), ...(opts?.scope ? { scope: opts.scope } : {}), ...(opts?.behind ? { behind: opts.behind } : {}), ...(trail ? { trail } : {}) };
      const queue = this.queues.get(id);
      if (queue) {
        queue.push(op);
        // Someone waits behind a change written behind: whatever of it is held back to batch goes now.
        if (!op.behind) for (const a of this.placed(groupOf(key)).acceptors) a.expedite?.();
        return;
      }
      this.queues.set(id, [op]);
      void this.drain(key, id);
    });
  }

  private async drain(key: Buffer, id: string): Promise<void> {
    const queue = this.queues.get(id)!;
    while (queue.length > 0) {
      // One round writes under one scope call: a batch stops where the scope changes.
      let same = 1;
      while (same < Math.min(queue.length, MAX_BATCH) && sameScope(queue[same]!.scope, queue[0]!.scope)) same++;
      const scope = queue[0]!.scope;
      const batch = queue.splice(0, same).filter((op) => {
        if (op.signal?.aborted || this.clock.now() >= op.deadline) {
          op.reject(new QfsError('timeout', 'deadline passed while queued behind other changes of the key'));
          return false;
        }
        return true;
      });
      if (batch.length === 0) continue;
      const deadline = Math.min(...batch.map((op) => op.deadline));
      const signals = batch.flatMap((op) => (op.signal ? [op.signal] : []));
      const signal = signals.length === 0 ? undefined : signals.length === 1 ? signals[0] : AbortSignal.any(signals);
      try {
        // Written behind only when nobody in the batch waits on it; without the gather window if one will soon.
        const behind: Behind = batch.every((op) => op.behind) && (batch.some((op) => op.behind === 'soon') ? 'soon' : true);
        const trails = !this.opts.injectBugs?.ignoreTrail;
        const { meta } = await this.runChange(key, (old, lineage) => applyBatch(batch, old, lineage, trails), { deadline, signal, scope, behind }, new BatchAttempts(batch));
        meta.forEach((o, i) => {
          const op = batch[i]!;
          if (o.ok) {
            op.trail?.end();
            op.resolve(o.value);
          } else {
            // Not spent: an outcome the trail could not tell (`timeout`) may be asked again, and is told the same.
            op.reject(o.error);
          }
        });
      } catch (err) {
        for (const op of batch) op.reject(err);
      }
    }
    this.queues.delete(id);
  }

  private async runChange<T>(key: Buffer, compute: Compute<T>, call: AcceptorCall, attempts: ChangeAttempts<T>): Promise<{ value: Buffer | null; meta: T }> {
    const { deadline, signal } = call;
    let q = this.placed(groupOf(key));
    const maxAttempts = this.opts.maxAttempts ?? 30;
    const known = this.known.get(key.toString('latin1'));
    if (known) {
      const result = await this.fastChange(key, compute, known, q, attempts, call);
      if (result !== undefined) return result;
    }
    for (let attempt = 0; ; attempt++) {
      signal?.throwIfAborted();
      let outcome;
      try {
        outcome = await this.round(key, compute, q, attempts, call);
      } catch (err) {
        // A node knew a newer membership; the refusal taught it to us: run the round again under it.
        if (!isQfsError(err, 'stale_epoch') || attempt + 1 >= maxAttempts || this.clock.now() >= deadline) throw err;
        q = this.placed(groupOf(key));
        continue;
      }
      if (outcome.done) return outcome;
      this.stats.conflicts++;
      if (attempt + 1 >= maxAttempts) throw new QfsError('conflict', `gave up after ${maxAttempts} conflicting rounds`);
      const wait = this.clock.random() * Math.min(200, 2 * 2 ** attempt);
      if (this.clock.now() + wait >= deadline) throw new QfsError('timeout', `no quorum for the change within the deadline (${attempt + 1} conflicts)`);
      await sleep(this.clock, wait);
    }
  }

  /** One accept with the pre-promised next ballot. undefined: fall back to a full round. */
  private async fastChange<T>(
    key: Buffer,
    compute: Compute<T>,
    known: Known,
    q: Placed,
    attempts: ChangeAttempts<T>,
    call: AcceptorCall,
  ): Promise<{ value: Buffer | null; meta: T } | undefined> {
    const ballot = known.next;
    this.observe(ballot); // a fallback round must use a ballot above this one
    this.remember(key, null);
    if (known.epoch !== q.epoch) return undefined; // promised under another membership: a full round
    const current = open(known.value);
    const { next, meta } = compute(current.payload, current.lineage);
    if (next === KEEP) return undefined; // a read-repair wants a fresh look, not the cached value
    const tag = newTag(this.clock);
    const value = seal(next, [...current.lineage, { tag, counter: ballot.counter }]);
    attempts.record(tag, next, meta);
    const r = await this.accept(key, ballot, value, q, call).catch(() => null);
    const taken = r !== null && q.rule.reached(r.oks.map((o) => o.key));
    if (r && !taken && r.rejected.some((x) => x.value.fenced)) throw fencedError();
    if (!r || !taken) {
      if (!r || !definitelyNotAdopted(r, q.acceptors.length, q.rule, ballot, tag)) attempts.markUncertain(ballot.counter);
      return undefined;
    }
    this.stats.fastChanges++;
    this.chosenUnder(key, ballot, call.scope);
    this.remember(key, { next: nextOf(ballot), value, epoch: q.epoch });
    return { value: next, meta };
  }

  /** States as a quorum reported them, minus values tagged with a lease term that one of them reports settled (src/util/lease.ts). */
  private visible<S extends AcceptorState>(states: readonly S[]): readonly S[] {
    if (this.opts.injectBugs?.ignoreSettled || !states.some((s) => s.tag !== undefined)) return states;
    return withoutSettled(states, settledOf(states));
  }

  private notDone(acc: { rejected: Array<{ key: string; value: Verdict }>; oks: Array<{ key: string }>; errors: Array<{ key: string; error: QfsError }> }, key?: Buffer, ballot?: Ballot): { done: false } {
    if (key && ballot) this.logRefused(key, 'accept', ballot, acc);
    if (acc.rejected.some((x) => x.value.fenced)) throw fencedError();
    return { done: false };
  }

  /** Who refused a round and why: a change that keeps conflicting is otherwise a bare EIO. */
  private logRefused(key: Buffer, phase: string, ballot: Ballot, r: { rejected: Array<{ key: string; value: Verdict }>; oks: Array<{ key: string }>; errors: Array<{ key: string; error: QfsError }> }): void {
    const log = this.opts.log;
    if (!log?.isLevelEnabled('debug')) return;
    log.debug(
      {
        key: key.toString('hex'),
        phase,
        ballot: formatBallot(ballot),
        oks: r.oks.map((o) => o.key),
        refused: r.rejected.map((x) => `${x.key}: ${x.value.fenced ? 'fenced' : `promised ${formatBallot(x.value.state.promised)}`}`),
        errors: r.errors.map((x) => `${x.key}: ${x.error.code}`),
      },
      'round refused',
    );
  }

  private chosenUnder(key: Buffer, ballot: Ballot, scope: ScopeCall | undefined): void {
    if (!scope) return;
    this.learnable.set(key.toString('latin1'), { key, ballot, scope });
    // Learn in the background, a batch at a time: a holder that is cut off then
    // leaves only its last few writes for the next holder to settle.
    this.learnTimer ??= this.clock.after(LEARN_DELAY_MS, () => {
      this.learnTimer = null;
      void this.learnChosen(undefined, undefined, true).catch(() => {});
    });
  }

  /** Scope keys changed under a lease whose tags are not yet learned on a majority. */
  get unlearned(): number {
    return this.learnable.size;
  }

  /**
   * Tells every replica of each scope key this proposer changed under a lease
   * that its latest value was chosen, so they drop its tag. Returns how many
   * keys are still not learned on a majority (0: the term is clean of this
   * proposer's writes, see releaseLease).
   */
  async learnChosen(opts?: CallOpts, only?: Buffer, background = false): Promise<number> {
    const deadline = this.deadline(opts);
    // With opts.scope, only that lease's keys (one session may hold several scopes).
    const lease = opts?.scope?.lease;
    const mine = lease ? [...this.learnable].filter(([, l]) => l.scope.lease.equals(lease)) : [...this.learnable];
    let which = only ? mine.filter(([id]) => id === only.toString('latin1')) : mine;
    // A background batch does not send a learn again while the same one is on its way (it
    // used to: every 2 ms batch resent each key not yet learned on a majority, two or three
    // learns per key under a stream of changes). A caller that waits (a release, a settle)
    // still sends its own, so it never waits on a learn sent with another deadline.
    if (background) which = which.filter(([id, l]) => { const b = this.learning.get(id); return !b || compareBallots(b, l.ballot) !== 0; });
    await Promise.all(
      which.map(async ([id, { key, ballot, scope }]) => {
        if (background) this.learning.set(id, ballot);
        try {
          const q = this.placed(groupOf(key));
          const results = await Promise.allSettled(q.acceptors.map((p) => p.learn(key, ballot, { deadline, signal: opts?.signal, scope, epoch: q.epoch, behind: background })));
          const learned = q.acceptors.filter((_, i) => {
            const r = results[i]!;
            return r.status === 'fulfilled' && r.value;
          });
          if (q.rule.reached(learned.map((a) => a.id)) && this.learnable.get(id)?.ballot === ballot) this.learnable.delete(id);
        } finally {
          if (background && this.learning.get(id) === ballot) this.learning.delete(id);
        }
      }),
    );
    return lease ? [...this.learnable.values()].filter((l) => l.scope.lease.equals(lease)).length : this.learnable.size;
  }

  /** Forgets unlearned keys (a lease lost: its next holder settles them); only that lease's when given. */
  dropUnlearned(lease?: Buffer): void {
    if (lease) {
      for (const [id, l] of this.learnable) if (l.scope.lease.equals(lease)) this.learnable.delete(id);
      return;
    }
    this.learnable.clear();
    this.learnTimer?.cancel();
    this.learnTimer = null;
  }

  /**
   * The settling scan of a new lease holder: the keys in [start, end) of
   * `group` that a majority of replicas at the holder's term (opts.scope, with
   * `settling`) do not all hold as the same untagged value: a value tagged with
   * a term above `settled` on any of them, or a key they disagree on. A write
   * of an unsettled term that may have been chosen is on some replica of that
   * majority; tagged there, it is found; learned (untagged) there, either the
   * whole majority holds it untagged, and it needs nothing, or the key
   * differs between them, and it is found. (Settling only the tagged keys
   * loses a chosen value whose learn reached a minority: the simulator found
   * it, seed 131.)
   */
  async unsettledKeys(group: Buffer, start: Buffer, end: Buffer | null, settled: number, opts: CallOpts & { scope: ScopeCall }): Promise<Buffer[]> {
    const found = new Map<string, Buffer>();
    let from = start;
    for (;;) {
      const deadline = this.deadline(opts);
      const q = this.placed(group);
      const acceptors = byHealth(q.acceptors);
      let r;
      try {
        r = await gatherQuorum<ScanReply, string>(
          acceptors.map((p) => ({ key: p.id, run: () => p.scan(from, end, 1000, { deadline, signal: opts.signal, scope: { ...opts.scope, settling: true }, epoch: q.epoch }) })),
          q.rule,
        );
      } catch (err) {
        if (isQfsError(err, 'stale_epoch') && this.clock.now() < deadline) continue; // placed by an old membership: again under the new one
        throw err;
      }
      const horizon = horizonOf(r.oks.map((o) => o.value));
      const seen = new Map<string, { key: Buffer; ballots: Set<string>; replies: number; tagged: boolean }>();
      for (const { value } of r.oks) {
        for (const e of value.entries) {
          if (horizon && Buffer.compare(e.key, horizon) >= 0) continue;
          const id = e.key.toString('latin1');
          let k = seen.get(id);
          if (!k) seen.set(id, (k = { key: e.key, ballots: new Set(), replies: 0, tagged: false }));
          k.replies++;
          k.ballots.add(`${e.state.accepted.counter}.${e.state.accepted.proposer}`);
          // Any tag, a settled term's too, makes the key unsettled: every proposer's filter
          // hides a settled term's copy (withoutSettled), so it does not count towards the
          // majority that keeps the value visible. (For a while a settled term's leftover
          // tag counted as no tag, to spare a round when one replica's learn was still on
          // its way: with a later settling round's copy on another replica, tagged with a
          // term settled afterwards, a chosen value was then visible on one replica of
          // three and a later round adopted nothing: lease simulator seed 13295.)
          if (e.state.tag !== undefined && (e.state.tag > settled || !this.opts.injectBugs?.settledTagsAsUntagged)) k.tagged = true;
        }
      }
      for (const [id, k] of seen) if (k.tagged || k.ballots.size > 1 || k.replies < r.oks.length) found.set(id, k.key);
      if (!horizon) break;
      from = horizon;
    }
    return [...found.values()].sort(Buffer.compare);
  }

  /**
   * Settles one scope key for a new lease holder: a full round that adopts
   * whatever a majority makes current and accepts it again under the holder's
   * term, then learns it. Afterwards no older write of the key can be chosen
   * and the value is untagged on a majority.
   */
  async settleKey(key: Buffer, opts: CallOpts & { scope: ScopeCall }): Promise<void> {
    const deadline = this.deadline(opts);
    const call: AcceptorCall = { deadline, signal: opts.signal, scope: opts.scope };
    this.remember(key, null);
    for (let attempt = 0; ; attempt++) {
      const q = this.placed(groupOf(key));
      const ballot = this.freshBallot();
      let done = false;
      try {
        const prep = await this.phaseOne(key, ballot, q, call);
        if (q.rule.reached(prep.oks.map((o) => o.key))) {
          const current = highestAccepted(this.visible(prep.oks.map((o) => o.value.state)));
          const acc = await this.accept(key, ballot, current ? current.value : { kind: 'empty' }, q, call);
          if (q.rule.reached(acc.oks.map((o) => o.key))) {
            this.chosenUnder(key, ballot, opts.scope);
            done = true;
          } else this.notDone(acc);
        } else this.notDone(prep);
      } catch (err) {
        if (!isQfsError(err, 'stale_epoch')) throw err; // placed by an old membership: again under the new one
      }
      if (done) break;
      const wait = this.clock.random() * Math.min(200, 2 * 2 ** attempt);
      if (this.clock.now() + wait >= deadline) throw new QfsError('timeout', 'could not settle a scope key within the deadline');
      await sleep(this.clock, wait);
    }
    await this.learnChosen(opts, key);
    if (this.learnable.has(key.toString('latin1'))) throw new QfsError('unavailable', 'a settled scope key was not learned on a majority');
  }

  /**
   * The mover's identity change of one key (docs/architecture.md,
   * "Membership"): a full round under the current quorums (a majority of A
   * and of B while the key moves) that accepts again, at a new ballot, the
   * value a quorum makes current, so that it sits on a majority of every set
   * with a ballot above anything an older epoch could still finish. A key that
   * holds only promises has nothing to carry (false).
   */
  async rewrite(key: Buffer, opts?: CallOpts): Promise<boolean> {
    const deadline = this.deadline(opts);
    const call: AcceptorCall = { deadline, signal: opts?.signal };
    this.remember(key, null);
    for (let attempt = 0; ; attempt++) {
      opts?.signal?.throwIfAborted();
      const q = this.placed(groupOf(key));
      const ballot = this.freshBallot();
      try {
        const prep = await this.phaseOne(key, ballot, q, call);
        if (q.rule.reached(prep.oks.map((o) => o.key))) {
          const current = highestAccepted(this.visible(prep.oks.map((o) => o.value.state)));
          if (!current || current.value.kind === 'empty') return false;
          const acc = await this.accept(key, ballot, current.value, q, call);
          if (q.rule.reached(acc.oks.map((o) => o.key))) return true;
        }
      } catch (err) {
        if (!isQfsError(err, 'stale_epoch')) throw err;
      }
      const wait = this.clock.random() * Math.min(200, 2 * 2 ** attempt);
      if (this.clock.now() + wait >= deadline) throw new QfsError('timeout', `could not rewrite a key within the deadline (${attempt + 1} rounds)`);
      await sleep(this.clock, wait);
    }
  }

  private hint(key: Buffer, node: string): void {
    const id = `${node}\u0000${key.toString('latin1')}`;
    if (this.hints.has(id)) return;
    if (this.hints.size >= MAX_RECORD_HINTS) {
      this.hintsDropped++;
      return;
    }
    this.hints.set(id, { key, node });
  }

  /**
   * Repairs hinted keys whose missing replica is up again (at most `limit`
   * keys a call). Returns how many keys every replica now holds.
   */
  async drainHints(limit = 1024): Promise<number> {
    let healed = 0;
    const byKey = new Map<string, Buffer>();
    for (const h of this.hints.values()) {
      if (byKey.size >= limit) break;
      const k = h.key.toString('latin1');
      if (byKey.has(k)) continue;
      const node = this.placed(groupOf(h.key)).acceptors.find((a) => a.id === h.node);
      if (!node) {
        this.hints.delete(`${h.node}\u0000${k}`); // placement changed: a full repair handles it
        continue;
      }
      if (node.up) byKey.set(k, h.key);
    }
    for (const [k, key] of byKey) {
      try {
        const r = await this.repair(key);
        if (r !== null && r.acked < r.of) continue;
        for (const a of this.placed(groupOf(key)).acceptors) this.hints.delete(`${a.id}\u0000${k}`);
        healed++;
      } catch (err) {
        this.opts.log.debug({ key: key.toString('hex'), err: (err as Error).message }, 'record hint not drained yet');
      }
    }
    return healed;
  }

  private accept(key: Buffer, ballot: Ballot, value: RecordValue, q: Placed, call: AcceptorCall) {
    // Every acceptor that takes it also promises the next ballot, taken or not
    // by a quorum: a fresh ballot after a failed accept must be above that.
    this.observe(nextOf(ballot));
    return gatherQuorum<Verdict, string>(
      q.acceptors.map((p) => ({ key: p.id, run: () => p.accept(key, ballot, value, true, { ...call, epoch: q.epoch }) })),
      q.rule,
      (verdict) => verdict.ok,
      // A replica that failed to take the change gets it later from drainHints.
      (node, outcome) => {
        if ('error' in outcome) this.hint(key, node);
      },
      // A refused accept waits a little for the other acceptors' answers:
      // refused by all is the one refusal that proves the value landed nowhere
      // (definitelyNotAdopted), and a stale fast-path ballot is refused by
      // every acceptor that has seen the newer changes. A node down fails at
      // once; one cut off costs at most this wait, and the attempt then stays
      // uncertain.
      { withinMs: REFUSAL_WAIT_MS, clock: this.clock },
      silentIn(q.acceptors, this.clock),
    ).then((r) => {
      if (q.rule.reached(r.oks.map((o) => o.key))) for (const e of r.errors) this.hint(key, e.key);
      for (const x of r.rejected) {
        this.observe(x.value.state.promised);
        this.observe(x.value.state.accepted);
      }
      return r;
    });
  }

  /** Prepare on every replica until a majority promises or that is impossible; every ballot seen raises ours. */
  private async phaseOne(key: Buffer, ballot: Ballot, q: Placed, call: AcceptorCall) {
    const prep = await gatherQuorum<Verdict, string>(
      q.acceptors.map((p) => ({ key: p.id, run: () => p.prepare(key, ballot, { ...call, epoch: q.epoch }) })),
      q.rule,
      (v) => v.ok,
      undefined,
      undefined,
      silentIn(q.acceptors, this.clock),
    );
    for (const x of [...prep.oks, ...prep.rejected]) {
      this.observe(x.value.state.promised);
      this.observe(x.value.state.accepted);
    }
    return prep;
  }

  private async round<T>(
    key: Buffer,
    compute: Compute<T>,
    q: Placed,
    attempts: ChangeAttempts<T>,
    call: AcceptorCall,
  ): Promise<{ done: true; value: Buffer | null; meta: T } | { done: false }> {
    this.stats.fullRounds++;
    const ballot = this.freshBallot();
    const prep = await this.phaseOne(key, ballot, q, call);
    const promised = q.rule.reached(prep.oks.map((o) => o.key));
    if (!promised) {
      this.logRefused(key, 'prepare', ballot, prep);
      if (prep.rejected.some((x) => x.value.fenced)) throw fencedError();
      return { done: false };
    }
    const shown = new Set<AcceptorState>(this.visible(prep.oks.map((o) => o.value.state)));
    const states = [...shown];
    const current = highestAccepted(states);
    const currentValue: RecordValue = current ? current.value : { kind: 'empty' };
    const env = open(currentValue);
    const agreed = agreedAmong(prep.oks.filter((o) => shown.has(o.value.state)).map((o) => ({ key: o.key, state: o.value.state })), q.rule);
    const chosen = agreed !== null && (current === null || compareBallots(agreed.accepted, current.accepted) === 0);
    // A value of this term found chosen (an earlier attempt's accept whose answers were lost) must be learned too.
    if (chosen && current && call.scope && current.tag === call.scope.term) this.chosenUnder(key, current.accepted, call.scope);

    // An earlier attempt of this very call is in the value's lineage: the change
    // took effect once already. Make sure that value is chosen, and report it.
    const mine = this.opts.injectBugs?.ignoreLineage ? null : attempts.find(env.lineage);
    if (mine) {
      this.stats.recognised++;
      if (!chosen) {
        const acc = await this.accept(key, ballot, currentValue, q, call);
        if (!q.rule.reached(acc.oks.map((o) => o.key))) return this.notDone(acc, key, ballot);
        this.chosenUnder(key, ballot, call.scope);
      }
      return { done: true, ...mine };
    }

    const { next, meta } = compute(env.payload, env.lineage);
    if (next === KEEP) {
      if (chosen) return { done: true, value: env.payload, meta };
      const acc = await this.accept(key, ballot, currentValue, q, call);
      if (!q.rule.reached(acc.oks.map((o) => o.key))) return this.notDone(acc, key, ballot);
      this.chosenUnder(key, ballot, call.scope);
      this.remember(key, { next: nextOf(ballot), value: currentValue, epoch: q.epoch });
      return { done: true, value: env.payload, meta };
    }
    const tag = newTag(this.clock);
    const value = seal(next, [...env.lineage, { tag, counter: ballot.counter }]);
    attempts.record(tag, next, meta);
    const acc = await this.accept(key, ballot, value, q, call).catch((err: unknown) => {
      attempts.markUncertain(ballot.counter);
      throw err;
    });
    if (!q.rule.reached(acc.oks.map((o) => o.key))) {
      if (!definitelyNotAdopted(acc, q.acceptors.length, q.rule, ballot, tag)) attempts.markUncertain(ballot.counter);
      return this.notDone(acc, key, ballot);
    }
    this.chosenUnder(key, ballot, call.scope);
    this.remember(key, { next: nextOf(ballot), value, epoch: q.epoch });
    return { done: true, value: next, meta };
  }

  /** Entries of one group from a majority of its acceptors, merged by highest accepted ballot. */
  /** `group` is the encoded group prefix (length byte + group); start/end are whole keys. */
  async scan(group: Buffer, start: Buffer, end: Buffer | null, limit: number, opts?: CallOpts): Promise<ScanPage> {
    const deadline = this.deadline(opts);
    return this.overEpochs(deadline, () => this.scanOnce(group, start, end, limit, deadline, opts));
  }

  private async scanOnce(group: Buffer, start: Buffer, end: Buffer | null, limit: number, deadline: number, opts?: CallOpts): Promise<ScanPage> {
    const q = this.placed(group);
    const acceptors = byHealth(q.acceptors);
    const replies = (
      await hedgedQuorumKeyed(
        acceptors.map((p) => ({ key: p.id, run: () => p.scan(start, end, limit, { deadline, signal: opts?.signal, scope: opts?.scope, epoch: q.epoch }) })),
        q.rule,
        () => true,
        hedgeDelayMs(acceptors.slice(0, q.rule.size)),
        stillAnswering(acceptors.slice(0, q.rule.size)),
        this.clock,
      )
    ).map((o) => o.value);
    const horizon = horizonOf(replies);
    const settled = settledOf(replies);
    const merged = new Map<string, { key: Buffer; state: AcceptorState }>();
    for (const reply of replies) {
      for (const e of reply.entries) {
        if (horizon && Buffer.compare(e.key, horizon) >= 0) continue;
        if (e.state.tag !== undefined && e.state.tag <= settled && !this.opts.injectBugs?.ignoreSettled) continue; // a settled term's leftover: see src/util/lease.ts
        const id = e.key.toString('latin1');
        const prev = merged.get(id);
        if (!prev || compareBallots(e.state.accepted, prev.state.accepted) > 0) merged.set(id, e);
      }
    }
    const entries: ScanEntry[] = [];
    for (const e of [...merged.values()].sort((a, b) => Buffer.compare(a.key, b.key))) {
      const payload = open(e.state.value).payload;
      if (payload !== null) entries.push({ key: e.key, value: payload });
    }
    return { entries, next: horizon ? horizon.subarray(group.length) : null };
  }

  /** The acceptor states of a key on every replica that answers (repair, status). */
  async states(key: Buffer, opts?: CallOpts): Promise<Array<{ peer: Acceptor; state: AcceptorState | null; error: string | null }>> {
    const deadline = this.deadline(opts);
    const q = this.placed(groupOf(key));
    return Promise.all(
      q.acceptors.map(async (p) => {
        try {
          return { peer: p, state: await p.read(key, { deadline, signal: opts?.signal, epoch: q.epoch }), error: null };
        } catch (err) {
          return { peer: p, state: null, error: (err as Error).message };
        }
      }),
    );
  }

  /**
   * A full round that writes the chosen value to every replica, not just a
   * majority (repair). Returns how many replicas hold it afterwards, or null
   * when the key holds nothing anywhere (only promises, no accepted value).
   */
  async repair(key: Buffer, opts?: CallOpts): Promise<{ acked: number; of: number } | null> {
    const deadline = this.deadline(opts);
    for (let attempt = 0; attempt < 10; attempt++) {
      const q = this.placed(groupOf(key));
      const acceptors = q.acceptors;
      const ballot = this.freshBallot();
      let prep;
      try {
        prep = await gatherQuorum<Verdict, string>(
          acceptors.map((p) => ({ key: p.id, run: () => p.prepare(key, ballot, { deadline, signal: opts?.signal, epoch: q.epoch }) })),
          q.rule,
          (v) => v.ok,
        );
      } catch (err) {
        if (isQfsError(err, 'stale_epoch')) continue; // learned a newer membership: again under it
        throw err;
      }
      for (const x of [...prep.oks, ...prep.rejected]) {
        this.observe(x.value.state.promised);
        this.observe(x.value.state.accepted);
      }
      if (!q.rule.reached(prep.oks.map((o) => o.key))) {
        await sleep(this.clock, this.clock.random() * 20 * (attempt + 1));
        continue;
      }
      const current = highestAccepted(prep.oks.map((o) => o.value.state));
      if (!current || current.value.kind === 'empty') {
        // Nothing was chosen. A replica that did not promise may hold a lost
        // copy (a state that failed its checksum), which only an accept above
        // its ceiling heals: accept "nothing" at this ballot there. Safe as any
        // phase 2: a majority's promises at this ballot saw no value, so
        // whatever such a replica held was never chosen.
        const promised = new Set(prep.oks.map((o) => o.key));
        const others = acceptors.filter((p) => !promised.has(p.id));
        if (others.length === 0) return null;
        const results = await Promise.allSettled(others.map((p) => p.accept(key, ballot, EMPTY_VALUE, false, { deadline, signal: opts?.signal, epoch: q.epoch })));
        const refused = results.filter((r): r is PromiseFulfilledResult<Verdict> => r.status === 'fulfilled' && !r.value.ok);
        for (const r of refused) this.observe(r.value.state.promised);
        if (refused.length === 0 || attempt >= 9) {
          const took = results.filter((r) => r.status === 'fulfilled' && r.value.ok).length;
          return took === others.length ? null : { acked: acceptors.length - others.length + took, of: acceptors.length };
        }
        continue;
      }
      const value = current.value;
      const results = await Promise.allSettled(
        acceptors.map((p) => p.accept(key, ballot, value, false, { deadline, signal: opts?.signal, epoch: q.epoch })),
      );
      const ackedBy = acceptors.filter((_, i) => {
        const r = results[i]!;
        return r.status === 'fulfilled' && r.value.ok;
      });
      const acked = ackedBy.length;
      // A replica that refused (it promised higher: another proposer, or a purge floor raised
      // while this round was prepared without it) gets another round at a ballot above it.
      const refused = results.filter((r): r is PromiseFulfilledResult<Verdict> => r.status === 'fulfilled' && !r.value.ok);
      for (const r of refused) {
        this.observe(r.value.state.promised);
        this.observe(r.value.state.accepted);
      }
      if (q.rule.reached(ackedBy.map((a) => a.id)) && (refused.length === 0 || attempt >= 9)) {
        this.remember(key, null);
        return { acked, of: acceptors.length };
      }
    }
    throw new QfsError('conflict', 'repair round kept conflicting');
  }

  /**
   * Removes a tombstone once every replica has held the same one for the
   * tombstone grace, as this proposer saw it: only then can no stale copy of
   * the old value come back, and no change call still retrying an attempt from
   * before the delete can be misled. A purge turns the key back into "never
   * written" and takes its lineage with it, so a retry that came after it
   * could not find its own earlier attempt and would run the change again (the
   * simulator found that: a write applied twice, seed 2319). Retries end at
   * their call's deadline, which started before the delete; the grace is
   * longer than any deadline. `retryInMs` > 0: settled, but not yet for the
   * grace; ask again then.
   */
  async purgeSettledTombstone(key: Buffer, opts?: CallOpts): Promise<{ purged: boolean; retryInMs: number }> {
    const id = key.toString('latin1');
    const states = await this.states(key, opts);
    const first = states[0]?.state;
    const settled = !!first && first.value.kind === 'tombstone' && states.every((s) => s.state && s.state.value.kind === 'tombstone' && compareBallots(s.state.accepted, first.accepted) === 0);
    if (!settled || !first) {
      this.settledTombstones.delete(id);
      return { purged: false, retryInMs: 0 };
    }
    if (this.tombstoneGraceMs > 0) {
      const now = this.clock.now();
      const seen = this.settledTombstones.get(id);
      if (!seen || compareBallots(seen.ballot, first.accepted) !== 0) {
        this.settledTombstones.delete(id);
        this.settledTombstones.set(id, { ballot: first.accepted, since: now });
        if (this.settledTombstones.size > MAX_SETTLED_TOMBSTONES) this.settledTombstones.delete(this.settledTombstones.keys().next().value!);
        return { purged: false, retryInMs: this.tombstoneGraceMs };
      }
      if (now - seen.since < this.tombstoneGraceMs) return { purged: false, retryInMs: seen.since + this.tombstoneGraceMs - now };
    }
    const deadline = this.deadline(opts);
    const epoch = this.placed(groupOf(key)).epoch;
    const results = await Promise.allSettled(states.map((s) => s.peer.purge(key, first.accepted, { deadline, signal: opts?.signal, epoch })));
    this.remember(key, null);
    this.settledTombstones.delete(id);
    return { purged: results.every((r) => r.status === 'fulfilled' && r.value), retryInMs: 0 };
  }

  /** Forget the fast-path ballot of a key (after an error whose effect is unknown). */
  forget(key: Buffer): void {
    this.remember(key, null);
  }

  get zeroBallot(): Ballot {
    return ZERO_BALLOT;
  }
}
