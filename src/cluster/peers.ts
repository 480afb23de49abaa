// The cluster's view of its nodes: one RPC client per node, with health that
// steers reads to the fast and healthy replicas.
import { NodeClient } from '../rpc/node-client.js';
import type { CallOptions } from '../rpc/client.js';
import type { Logger } from '../util/log.js';
import { QfsError, toQfsError } from '../util/errors.js';
import type { PlacementNode } from '../util/placement.js';
import type { Ballot } from '../util/ballot.js';
import type { AcceptorState, RecordValue } from '../util/paxos.js';
import { MAX_ACCEPTS_PER_REQUEST, MAX_LEARNS_PER_REQUEST, MAX_READS_PER_REQUEST, type AcceptRequest, type ReadRequest, type ScanReply, type Verdict } from '../rpc/messages.js';
import { byHealth, type Acceptor, type AcceptorCall } from './acceptor.js';

export { byHealth };

export interface PeerSpec extends PlacementNode {
  /** Base URL, ws://host:port or wss://host:port. */
  readonly url: string;
}

export interface PeerOptions {
  secret: Buffer;
  clusterName: string;
  log: Logger;
  ca?: Buffer;
  requestTimeoutMs: number;
  connectTimeoutMs: number;
  /** How long a call waits for a disconnected node before giving up on it. */
  connectWaitMs: number;
  /** The membership this client places calls by (absent: calls name no epoch). */
  membership?: MembershipHooks;
  /** How long accepts written behind wait for company (default BEHIND_GATHER_MS). */
  behindGatherMs?: number;
  /** How long a background learn or prepare waits to leave with other frames to its node (default RIDE_MS). */
  rideMs?: number;
}

/** What a peer needs from the client's membership (src/cluster/membership-view.ts). */
export interface MembershipHooks {
  /** The encoded membership of exactly `epoch`, to hand a node that is behind it; null if this client has moved on. */
  bytesOf(epoch: number): Buffer | null;
  /** The current epoch (what a call that names none is placed by). */
  readonly epoch: number;
  /** A node refused a call for a newer membership and handed it over (encoded): learn it when it is newer. */
  learn(bytes: Buffer, from: string): void;
}

const EWMA_ALPHA = 0.2;
/** A node seen down is tried again at most this often by calls that need it, and they wait this long for it. */
const DOWN_RETRY_MS = 100;
/**
 * A node with calls in flight and no answer for this long is read from last.
 * Long enough for a burst: 1000 reads issued in one tick reach a node together
 * and its first answers come back 150–250 ms later on this 2-core machine.
 */
const SILENT_MS = 500;
/** Silent this long with calls in flight: taken for cut off even before a call has timed out (a loaded node answers within it). */
const CUT_OFF_MS = 2000;

/** An accept bigger than this (a big inline value) goes in a frame of its own. */
const BEHIND_ITEM_MAX_BYTES = 256 * 1024;
/** A frame of accepts written behind holds about this much at most (the frame limit is far above). */
const BEHIND_FRAME_BYTES = 4 * 1024 * 1024;
/**
 * Accepts written behind wait this long for company before they leave, unless
 * someone waits for one of them (`expedite`) or a frame's worth is there. A
 * node's cost is per frame more than per accept (a transaction, a device
 * flush, wake-ups): 2000 unlinks written behind went in 1177 accept frames
 * without the wait and 328 with it, and the nodes' CPU per unlink halved
 * (docs/performance.md, nineteenth session). A change written behind is due
 * within the write-behind window (1 s), so the wait costs nothing anyone sees.
 */
export const BEHIND_GATHER_MS = 10;

/**
 * How long a background frame (a learn or a prepare ahead: nobody waits on
 * it) waits to leave with other frames to its node. Alone it costs the mount
 * a socket write and the node a wake-up and a transaction of its own (a
 * device flush); beside an accept or a read it costs neither.
 */
export const RIDE_MS = 10;

function acceptBytes(a: { key: Buffer; value: RecordValue }): number {
  return a.key.length + (a.value.kind === 'empty' ? 0 : a.value.bytes.length) + 64;
}

interface AcceptBatch {
  epoch: number | undefined;
  /** What its accepts weigh on the wire, about. */
  bytes: number;
  /** The earliest deadline of its accepts: the frame's. */
  deadline: number;
  items: AcceptRequest[];
  waiters: { resolve: (v: Verdict) => void; reject: (err: unknown) => void }[];
}

interface ReadBatch {
  deadline: number;
  epoch: number | undefined;
  signal: AbortSignal | undefined;
  items: ReadRequest[];
  waiters: { resolve: (state: AcceptorState) => void; reject: (err: unknown) => void }[];
}

interface LearnBatch {
  deadline: number;
  epoch: number | undefined;
  signal: AbortSignal | undefined;
  /** A caller waits on one of them (a release, a settle): not a background learn (`AcceptorCall.behind`). */
  waited: boolean;
  items: { key: Buffer; ballot: Ballot }[];
  waiters: { resolve: (learned: boolean) => void; reject: (err: unknown) => void }[];
}

export class Peer implements PlacementNode, Acceptor {
  readonly id: string;
  readonly weight: number;
  readonly zone: string | null;
  readonly url: string;
  readonly client: NodeClient;
  /** Smoothed latency of successful calls, ms. */
  latencyMs = 1;
  consecutiveFailures = 0;
  lastError: string | null = null;
  calls = 0;
  failures = 0;
  /** Calls in flight, and when the node last answered anything (performance.now()). */
  private inflight = 0;
  private lastAnswerAt = performance.now();
  /** When the node last went from no call in flight to one. */
  private busySince = 0;
  /**
   * Set once the node was seen unreachable (a connection lost or refused);
   * calls to it then fail at once instead of waiting for a reconnect, so a
   * dead node costs nothing. Cleared when the connection is back.
   */
  down = false;
  private readonly backListeners: Array<(p: Peer) => void> = [];

  /** Calls `fn` each time the node answers again after it was seen unreachable. */
  onBack(fn: (p: Peer) => void): void {
    this.backListeners.push(fn);
  }

  constructor(spec: PeerSpec, private readonly opts: PeerOptions) {
    this.id = spec.id;
    this.weight = spec.weight;
    this.zone = spec.zone;
    this.url = spec.url;
    this.client = new NodeClient({
      url: `${spec.url}/rpc`,
      secret: opts.secret,
      clusterName: opts.clusterName,
      log: opts.log,
      ...(opts.ca ? { ca: opts.ca } : {}),
      defaultTimeoutMs: opts.requestTimeoutMs,
      connectTimeoutMs: opts.connectTimeoutMs,
      // A storage node that comes back should be used again within half a second.
      backoffMinMs: 25,
      backoffMaxMs: 500,
    });
    this.client.rpc.onStateChange = (up) => {
      if (up && this.down) for (const fn of this.backListeners) fn(this);
      this.down = !up;
    };
  }

  get up(): boolean {
    return this.client.rpc.isOpen;
  }

  /**
   * Lower is better: down nodes last, then recent failures, then a node that
   * holds calls but has answered none for a while (stopped, or cut off, before
   * any call timed out), then latency.
   */
  get rank(): number {
    return (this.up ? 0 : 1e9) + this.consecutiveFailures * 1e6 + (this.silent ? 1e5 : 0) + this.latencyMs;
  }

  /** Holds calls but has answered none for a while: stopped, cut off or down, not merely busy. */
  get silent(): boolean {
    return !this.up || (this.inflight > 0 && performance.now() - Math.max(this.lastAnswerAt, this.busySince) > SILENT_MS);
  }

  get cutOff(): boolean {
    if (!this.silent) return false;
    return this.consecutiveFailures > 0 || !this.up || performance.now() - Math.max(this.lastAnswerAt, this.busySince) > CUT_OFF_MS;
  }

  /** Call options bounded by an overall deadline, placed by `epoch` when given. */
  callOpts(deadline: number, signal?: AbortSignal, epoch?: number): CallOptions {
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new QfsError('timeout', 'deadline passed');
    return {
      timeoutMs: Math.min(remaining, this.opts.requestTimeoutMs),
      connectWaitMs: this.down ? this.retryDown() : this.opts.connectWaitMs,
      ...(signal ? { signal } : {}),
      ...(epoch ? { epoch } : {}),
    };
  }

  private lastRetry = 0;

  /**
   * A call to a node seen down: try its connection now rather than at the end
   * of the backoff (at most every DOWN_RETRY_MS), and give the call that long
   * to find it back. A node restarted a moment ago then serves the call; a
   * dead one costs at most DOWN_RETRY_MS, and only to a call that cannot
   * reach its quorum without it (the others resolve at the quorum).
   */
  private retryDown(): number {
    const now = performance.now();
    if (now - this.lastRetry < DOWN_RETRY_MS) return 0;
    this.lastRetry = now;
    this.client.rpc.reconnectNow();
    return DOWN_RETRY_MS;
  }

  /**
   * Runs one call and keeps the health figures. A node behind the call's
   * membership epoch is handed the membership and asked again; a node ahead of
   * it hands its own over (learned here) and the call fails `stale_epoch`, for
   * its caller to place again.
   */
  async track<T>(fn: (c: NodeClient) => Promise<T>, epoch?: number): Promise<T> {
    // Background frames waiting for company leave now, in the same write as this call.
    if (this.riding.length > 0) this.sendRiding();
    const t0 = performance.now();
    this.calls++;
    if (this.inflight++ === 0) this.busySince = t0;
    try {
      const r = await this.withMembership(fn, epoch);
      this.lastAnswerAt = performance.now();
      this.latencyMs += EWMA_ALPHA * (this.lastAnswerAt - t0 - this.latencyMs);
      this.consecutiveFailures = 0;
      return r;
    } catch (err) {
      const e = toQfsError(err);
      if (e.code !== 'timeout' && e.code !== 'unavailable' && e.code !== 'closed') this.lastAnswerAt = performance.now();
      // A node's own verdicts (conflict, not_found, corrupt, bad_request) are answers, not ill health.
      if (e.code === 'unavailable' || e.code === 'timeout' || e.code === 'busy' || e.code === 'closed' || e.code === 'internal') {
        this.failures++;
        this.consecutiveFailures++;
        this.lastError = e.message;
        if (e.code === 'unavailable' && !this.up) this.down = true;
      }
      throw e;
    } finally {
      this.inflight--;
    }
  }

  private async withMembership<T>(fn: (c: NodeClient) => Promise<T>, epoch: number | undefined): Promise<T> {
    const hooks = this.opts.membership;
    for (let handed = 0; ; handed++) {
      try {
        return await fn(this.client);
      } catch (err) {
        if (!hooks || !(err instanceof QfsError)) throw err;
        if (err.code === 'stale_epoch') {
          const bytes = await this.client.getMembership().catch(() => null);
          if (bytes) hooks.learn(bytes, this.id);
          throw err;
        }
        if (err.code !== 'epoch_ahead' || handed >= 2) throw err;
        const bytes = hooks.bytesOf(epoch ?? hooks.epoch);
        if (!bytes) throw new QfsError('stale_epoch', `${this.id}: this client's membership moved on while the call ran`);
        await this.client.installMembership(bytes);
      }
    }
  }

  prepare(key: Buffer, ballot: Ballot, call: AcceptorCall): Promise<Verdict> {
    const send = () => this.track((c) => c.prepare(key, ballot, { ...this.callOpts(call.deadline, call.signal, call.epoch), scope: call.scope }), call.epoch);
    // A prepare ahead nobody waits on yet (an inode number for a later create) leaves with the next frame to this node.
    if (call.behind && !call.signal) return new Promise((resolve, reject) => this.ride({ learns: 0, prepares: 1, send: () => void send().then(resolve, reject) }));
    return send();
  }

  accept(key: Buffer, ballot: Ballot, value: RecordValue, promiseNext: boolean, call: AcceptorCall): Promise<Verdict> {
    if (call.behind && !call.signal && acceptBytes({ key, value }) <= BEHIND_ITEM_MAX_BYTES) return this.acceptBehind({ key, ballot, value, promiseNext, scope: call.scope }, call);
    return this.track((c) => c.accept(key, ballot, value, { ...this.callOpts(call.deadline, call.signal, call.epoch), promiseNext, scope: call.scope }), call.epoch);
  }

  /**
   * Accepts nobody waits on yet gather for BEHIND_GATHER_MS, and while one
   * frame of them is on its way to this node, then leave together (at once
   * when someone comes to wait: `expedite`, or when a frame's worth is
   * there): a stream of changes written behind becomes a few frames, each one
   * transaction on the node.
   */
  private acceptBehind(item: AcceptRequest, call: AcceptorCall): Promise<Verdict> {
    const epoch = call.epoch;
    let batch = this.behindWaiting.find((b) => b.epoch === epoch);
    if (!batch) {
      batch = { epoch, items: [], waiters: [], deadline: call.deadline, bytes: 0 };
      this.behindWaiting.push(batch);
    }
    batch.items.push(item);
    batch.bytes += acceptBytes(item);
    batch.deadline = Math.min(batch.deadline, call.deadline);
    const p = new Promise<Verdict>((resolve, reject) => batch.waiters.push({ resolve, reject }));
    // Someone will wait on a 'soon' accept shortly: it goes with what is held, without the window.
    if (call.behind === 'soon') this.soonWaiting = true;
    if (batch.items.length >= MAX_ACCEPTS_PER_REQUEST || batch.bytes >= BEHIND_FRAME_BYTES) this.sendBehindSoon();
    else if (this.behindInFlight === 0) this.sendBehindNext();
    return p;
  }

  private readonly behindWaiting: AcceptBatch[] = [];
  private behindInFlight = 0;
  private behindScheduled = false;
  private behindTimer: ReturnType<typeof setTimeout> | null = null;
  /** A held accept is 'soon' (CallOpts.behind): the held ones leave without the window. */
  private soonWaiting = false;
  /** Learns asked while accepts were held back: they follow those accepts on the connection. */
  private readonly learnsAfterBehind: LearnBatch[] = [];

  /** Background learn batches waiting to follow the held accepts. */
  get learnsHeld(): number {
    return this.learnsAfterBehind.length;
  }

  /** Accepts written behind held back now, waiting for company or for someone to wait on them. */
  get heldBehind(): number {
    return this.behindWaiting.reduce((n, b) => n + b.items.length, 0);
  }

  /** What is held leaves now if one of them is 'soon', else after the gather window. */
  private sendBehindNext(): void {
    if (this.soonWaiting) this.sendBehindSoon();
    else this.sendBehindLater();
  }

  /** After the gather window (BEHIND_GATHER_MS), or sooner if something comes to wait. */
  private sendBehindLater(): void {
    this.behindTimer ??= setTimeout(() => {
      this.behindTimer = null;
      this.sendBehindSoon();
    }, this.opts.behindGatherMs ?? BEHIND_GATHER_MS);
  }

  /** At the end of this tick, so that the accepts of one turn share a frame. */
  private sendBehindSoon(): void {
    if (this.behindScheduled) return;
    this.behindScheduled = true;
    process.nextTick(() => {
      this.behindScheduled = false;
      this.sendBehind();
    });
  }

  /** Sends every accept held back: someone waits for one of them. */
  expedite(): void {
    if (this.behindWaiting.length > 0) this.sendBehind();
  }

  private sendBehind(): void {
    if (this.behindTimer) {
      clearTimeout(this.behindTimer);
      this.behindTimer = null;
    }
    this.soonWaiting = false;
    const batches = this.behindWaiting.splice(0);
    for (const batch of batches) {
      // Frames of at most MAX_ACCEPTS_PER_REQUEST accepts and about BEHIND_FRAME_BYTES.
      for (const [at, end] of framesOf(batch.items, MAX_ACCEPTS_PER_REQUEST, BEHIND_FRAME_BYTES, acceptBytes)) {
        const items = batch.items.slice(at, end);
        this.behindInFlight++;
        const opts = this.callOpts(batch.deadline, undefined, batch.epoch);
        const sent =
          items.length === 1
            ? this.track((c) => c.accept(items[0]!.key, items[0]!.ballot, items[0]!.value, { ...opts, promiseNext: items[0]!.promiseNext, scope: items[0]!.scope }), batch.epoch).then((v) => [v])
            : this.track((c) => c.acceptMany(items, opts), batch.epoch);
        void answerEach(`${this.id}: accepts`, batch.waiters.slice(at, end), sent).finally(() => {
          this.behindInFlight--;
          if (this.behindInFlight === 0 && this.behindWaiting.length > 0) this.sendBehindNext();
        });
      }
    }
    for (const learns of this.learnsAfterBehind.splice(0)) this.sendLearnFrames(learns);
  }

  /**
   * Reads asked in the same tick under the same epoch and signal leave in one
   * `record_read_many` frame at the end of the tick (a listing reads every
   * entry's inode at once: one frame per key was most of the requests of
   * `rm -rf`'s readdirs). The frame's deadline is the earliest of them. Each
   * is answered by the node as a separate read would be.
   */
  read(key: Buffer, call: AcceptorCall): Promise<AcceptorState> {
    let batch = this.readBatches.find((b) => b.epoch === call.epoch && b.signal === call.signal);
    if (!batch) {
      const fresh: ReadBatch = { deadline: call.deadline, epoch: call.epoch, signal: call.signal, items: [], waiters: [] };
      this.readBatches.push(fresh);
      process.nextTick(() => this.sendReads(fresh));
      batch = fresh;
    }
    batch.deadline = Math.min(batch.deadline, call.deadline);
    batch.items.push(call.scope ? { key, scope: call.scope } : { key });
    return new Promise<AcceptorState>((resolve, reject) => batch.waiters.push({ resolve, reject }));
  }

  private readonly readBatches: ReadBatch[] = [];

  private sendReads(batch: ReadBatch): void {
    this.readBatches.splice(this.readBatches.indexOf(batch), 1);
    for (const [at, end] of framesOf(batch.items, MAX_READS_PER_REQUEST)) {
      const items = batch.items.slice(at, end);
      const opts = this.callOpts(batch.deadline, batch.signal, batch.epoch);
      const sent =
        items.length === 1
          ? this.track((c) => c.read(items[0]!.key, { ...opts, scope: items[0]!.scope }), batch.epoch).then((s) => [s])
          : this.track((c) => c.readMany(items, opts), batch.epoch);
      void answerEach(`${this.id}: reads`, batch.waiters.slice(at, end), sent);
    }
  }

  scan(start: Buffer, end: Buffer | null, limit: number, call: AcceptorCall): Promise<ScanReply> {
    return this.track((c) => c.scan(start, end, limit, { ...this.callOpts(call.deadline, call.signal, call.epoch), scope: call.scope }), call.epoch);
  }

  purge(key: Buffer, ballot: Ballot, call: AcceptorCall): Promise<boolean> {
    return this.track((c) => c.purge(key, ballot, this.callOpts(call.deadline, call.signal, call.epoch)), call.epoch);
  }

  /**
   * Learns asked in the same tick with the same bounds leave in one
   * `record_learn_many` frame (a proposer learns a batch of keys every 2 ms;
   * one frame per key was about a third of the requests of a stream of
   * unlinks). Each is judged alone by the node, as separate learns would be.
   */
  learn(key: Buffer, ballot: Ballot, call: AcceptorCall): Promise<boolean> {
    let batch = this.learnBatches.find((b) => b.deadline === call.deadline && b.epoch === call.epoch && b.signal === call.signal);
    if (!batch) {
      const fresh: LearnBatch = { deadline: call.deadline, epoch: call.epoch, signal: call.signal, waited: false, items: [], waiters: [] };
      this.learnBatches.push(fresh);
      process.nextTick(() => this.sendLearns(fresh));
      batch = fresh;
    }
    if (!call.behind) batch.waited = true;
    batch.items.push({ key, ballot });
    return new Promise<boolean>((resolve, reject) => batch.waiters.push({ resolve, reject }));
  }

  private readonly learnBatches: LearnBatch[] = [];

  private sendLearns(batch: LearnBatch): void {
    this.learnBatches.splice(this.learnBatches.indexOf(batch), 1);
    // A learn judges the value this node accepted: its accept, if held back to batch, goes
    // first on the connection (the node reads frames in order), or the learn finds nothing.
    // Background learns wait with the accepts held back rather than send them early; a learn
    // someone waits on (a release, a settle) sends them now, then itself.
    if (this.behindWaiting.length > 0) {
      if (!batch.waited) {
        this.learnsAfterBehind.push(batch);
        return;
      }
      this.expedite();
    }
    // A background learn waits for the next frame to this node (or RIDE_MS) and leaves with it.
    if (!batch.waited) this.ride({ learns: batch.items.length, prepares: 0, send: () => this.sendLearnFrames(batch) });
    else this.sendLearnFrames(batch);
  }

  /** Background frames (learns, prepares ahead) waiting to leave with the next frame to this node. */
  private readonly riding: { learns: number; prepares: number; send: () => void }[] = [];
  private rideTimer: ReturnType<typeof setTimeout> | null = null;

  private ride(frame: { learns: number; prepares: number; send: () => void }): void {
    this.riding.push(frame);
    this.rideTimer ??= setTimeout(() => {
      this.rideTimer = null;
      this.sendRiding();
    }, this.opts.rideMs ?? RIDE_MS);
  }

  /** Background learns waiting for company (tests). */
  get learnsRiding(): number {
    return this.riding.reduce((n, f) => n + f.learns, 0);
  }

  /** Prepares ahead waiting for company (tests). */
  get preparesRiding(): number {
    return this.riding.reduce((n, f) => n + f.prepares, 0);
  }

  private sendRiding(): void {
    if (this.rideTimer) {
      clearTimeout(this.rideTimer);
      this.rideTimer = null;
    }
    for (const frame of this.riding.splice(0)) frame.send();
  }

  private sendLearnFrames(batch: LearnBatch): void {
    for (const [at, end] of framesOf(batch.items, MAX_LEARNS_PER_REQUEST)) {
      const items = batch.items.slice(at, end);
      const opts = this.callOpts(batch.deadline, batch.signal, batch.epoch);
      const sent =
        items.length === 1
          ? this.track((c) => c.learn(items[0]!.key, items[0]!.ballot, opts), batch.epoch).then((b) => [b])
          : this.track((c) => c.learnMany(items, opts), batch.epoch);
      void answerEach(`${this.id}: learns`, batch.waiters.slice(at, end), sent);
    }
  }

  connect(): void {
    this.client.rpc.connect();
  }

  close(): void {
    this.client.close();
    // What was held back to gather fails now (the client is closed), not at the end of the window.
    if (this.behindWaiting.length > 0) this.sendBehind();
    if (this.riding.length > 0) this.sendRiding();
  }
}

/**
 * The [at, end) ranges that cut `items` into frames of at most `maxItems`, and
 * (with `sizeOf`) of at most about `maxBytes`: an item bigger than that goes alone.
 */
function* framesOf<T>(items: readonly T[], maxItems: number, maxBytes = Infinity, sizeOf: (item: T) => number = () => 0): Generator<[number, number]> {
  for (let at = 0, end = 0; at < items.length; at = end) {
    let bytes = 0;
    for (end = at; end < items.length && end - at < maxItems && (end === at || bytes + sizeOf(items[end]!) <= maxBytes); end++) bytes += sizeOf(items[end]!);
    yield [at, end];
  }
}

/**
 * Hands each waiter its own answer from one batched call: an error answer
 * rejects that waiter alone; a failed call, or a count of answers that does
 * not match, rejects them all. Never rejects itself.
 */
function answerEach<R>(what: string, waiters: ReadonlyArray<{ resolve(r: R): void; reject(e: unknown): void }>, sent: Promise<ReadonlyArray<R | QfsError>>): Promise<void> {
  return sent
    .then((answers) => {
      if (answers.length !== waiters.length) throw new QfsError('internal', `${what}: ${answers.length} answers to ${waiters.length} requests`);
      waiters.forEach((w, i) => {
        const a = answers[i]!;
        if (a instanceof QfsError) w.reject(a);
        else w.resolve(a);
      });
    })
    .catch((err: unknown) => {
      for (const w of waiters) w.reject(err);
    });
}

/**
 * By health, but the healthy ones (up, no recent failure, not silent) taken in
 * an order that `spread` (any number, e.g. from a chunk id) rotates: reads of
 * different chunks start on different replicas, so a sequential reader with
 * several chunks in flight keeps every replica's disk and CPU busy, not only
 * the one with the lowest latency.
 */
export function bySpread<P extends Peer>(peers: readonly P[], spread: number): P[] {
  const ranked = byHealth(peers);
  let healthy = 0;
  while (healthy < ranked.length && ranked[healthy]!.rank < 1e5) healthy++;
  if (healthy < 2) return ranked;
  const k = spread % healthy;
  return [...ranked.slice(k, healthy), ...ranked.slice(0, k), ...ranked.slice(healthy)];
}

