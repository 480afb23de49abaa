// The acceptor half of CASPaxos for every record key this node holds, over lmdb.
//
// Durability: the lmdb-js README says that with `overlappingSync` (its
// default on Linux) a write's promise resolves when the transaction is
// committed and visible, and only `db.flushed` waits for the fsync. An acceptor
// must not answer before its promise or acceptance is on disk, so the env is
// opened with `overlappingSync: false` and without noSync/noMetaSync/mapAsync:
// each transaction is then a plain mdb_txn_commit that fdatasyncs the data
// pages and writes the meta page through an O_DSYNC descriptor before lmdb-js
// flags it committed and resolves its puts (checked with strace: one
// fdatasync and one meta pwrite between a call and its resolution, and with
// fdatasync delayed 300 ms the promise resolves after 300 ms). lmdb-js 3.5.6
// happens to sync before resolving with overlappingSync too, but that is not
// what it documents, so we don't lean on it.
// Throughput comes from lmdb-js batching queued async writes into one
// transaction, so one sync covers many operations (100 concurrent prepares:
// one fdatasync). `eventTurnBatching` is off: with it on, lmdb-js 3.5 starts
// each batch with an internal promise nobody awaits, and when the commit fails
// (disk full) that promise rejects unhandled, which kills a Node 20 process.
// Without it lmdb-js still batches (a transaction starts after
// txnStartThreshold writes or at the next turn; writes queued meanwhile join
// the next one); measured throughput is the same within noise.
//
// Every write goes through lmdb-js's queue of single operations (put, remove,
// and `batch` for several at once), never `transaction(callback)`: by default
// lmdb-js runs queued transaction callbacks after the queued single writes, so
// a callback's write could land after a later put of the same key.
//
// Concurrency: a decision reads the latest state of its key including writes
// of this process that are not committed yet (the `pending` overlay), and sets
// the overlay synchronously, before the next await. lmdb-js commits async
// writes in call order, so when an operation's own put resolves, every earlier
// write for that key is committed too; an operation that writes nothing waits
// for the key's latest pending write before it answers.
//
// Purge floor: purging a tombstone turns the key back into "never written",
// but a proposer holding an old promise must still be refused there. A
// store-wide floor ballot, kept in the `meta` sub-database next to `records` so
// no user key can reach it, is raised to the purged key's promised ballot in
// the same transaction as the delete. A key with no stored state reads as
// promised = floor, so prepare must exceed it and accept must reach it.
//
// Checksums and the ceiling: every state is stored with a CRC-32
// (record-codec.ts). A state that fails it is *lost*: this node no longer
// knows what it promised or accepted for that key. The `meta` sub-database
// also keeps a ballot ceiling, at least every ballot any stored state holds,
// raised in the same transaction as a state that would pass it (in steps of
// 2^20 counters, so almost no write carries it). A lost key is treated as
// promised = ceiling with an unknown accepted value (src/util/paxos.ts,
// lostState): refusing prepares, answering no read or scan, taking an accept
// only above the ceiling, which heals it.
//
// Buckets: self-heal compares records bucket by bucket (src/util/range-digest.ts,
// recordBucket), so the store keeps a second sub-database, `buckets`, with one
// empty entry per stored key under (bucket, key), written in the same batch
// as the key's first state and removed in the same batch as the key: a
// bucket's keys are then one range read, whatever the key order. And it
// tells a listener, synchronously and in call order, every change of a key's
// accepted ballot as decisions see it, so the node can keep bucket digests
// up to date instead of reading the store on every pass; a write that fails
// and rolls back makes the listener unsure (it rebuilds).
import { mkdir, statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { QfsError, toQfsError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { compareBallots, isValidBallot, maxBallot, ZERO_BALLOT, type Ballot } from '../util/ballot.js';
import { decideAccept, decideLearn, decideLostAccept, decidePrepare, decidePurge, lostState } from '../util/paxos.js';
import { admitScopeRead, admitScopeWrite, admitSettlingScan, decodeLease, type LeaseRecord, type ScopeCall } from '../util/lease.js';
import { open as openEnvelope } from '../util/envelope.js';
import { crc32 } from 'node:zlib';
import { recordBucket, RECORD_BUCKETS } from '../util/range-digest.js';
import { RecordChecksumError, decodeBallot, decodeState, encodeBallot, encodeState } from './record-codec.js';
import { EMPTY_VALUE, MAX_KEY_BYTES, MAX_VALUE_BYTES, type AcceptorState, type RecordValue } from './types.js';
import { fsyncDir } from './durable-files.js';

export interface Verdict {
  ok: boolean;
  state: AcceptorState;
  /** Refused: the call's lease term or session is not this node's (src/util/lease.ts). */
  fenced?: boolean;
}

export interface ScanResult {
  entries: Array<{ key: Buffer; state: AcceptorState }>;
  /** Where to continue (inclusive); null only when the range is exhausted. */
  next: Buffer | null;
  /** For a scope's scan: this node's settled term of the scope's lease. */
  settled?: number;
  /** Keys in the page's range whose state failed its checksum (scans that ask for them). */
  lost?: Buffer[];
}

/** What a key's copy holds for self-heal's digests: the ballot it accepted, nothing (null), or a copy that fails its checksum. */
export type AcceptedMark = Ballot | null | 'lost';

export interface AcceptedListener {
  /** A key's accepted ballot, as decisions see it, goes from `before` to `after` (synchronously, in call order). */
  changed(key: Buffer, before: AcceptedMark, after: AcceptedMark): void;
  /** A write failed and was rolled back: what `changed` said since the last rebuild may not hold. */
  unsure(): void;
}

interface Pending {
  /** null: the key is being purged. */
  readonly state: AcceptorState | null;
  readonly seq: number;
  /** Settles (never rejects) when the write is committed or has failed. */
  readonly done: Promise<void>;
}

const FLOOR_KEY = 'purge-floor';
const CEILING_KEY = 'ballot-ceiling';
/** Set once every stored key has its entry in `buckets` (stores from before buckets are indexed at open). */
const BUCKETS_KEY = 'bucket-index';
/** The ceiling rises this many counters past the ballot that passed it. */
const CEILING_STEP = 2 ** 20;
/** Above every proposer id: a ballot of counter C with it is at least every ballot of counter C. */
const TOP_PROPOSER = 'ffffffffffffffff';
/** Marks a key whose stored state failed its checksum. */
const LOST: unique symbol = Symbol('lost');
type Stored = AcceptorState | null | typeof LOST;
// Promise-only keys a scan may step over before it returns a short page.
const MAX_SCAN_SKIPPED = 10_000;
// lmdb errno values: ENOSPC, EDQUOT, MDB_MAP_FULL.
const NO_SPACE_CODES: ReadonlySet<unknown> = new Set([28, 122, -30792, 'ENOSPC', 'EDQUOT']);
const EIO = 5;
const NEARLY_FULL_BYTES = 16 * 1024 * 1024;

export class RecordStore {
  private readonly pending = new Map<string, Pending>();
  private seq = 0;
  /** Floor including purges in flight: what decisions use. */
  private floor: Ballot;
  /** Floor as committed: what reads report. */
  private durableFloor: Ballot;
  private floorSeq = 0;
  /** The ceiling's counter as committed, and the highest any write in flight carries. */
  private durableCeiling: number;
  private ceilingTarget: number;
  /** Lost keys this process has met (reads, decisions, scans), for /metrics. */
  lostSeen = 0;
  private closing: Promise<void> | null = null;
  private listener: AcceptedListener | null = null;

  private constructor(
    private readonly dir: string,
    private readonly env: RootDatabase,
    private readonly records: Database<Buffer, Buffer>,
    private readonly meta: Database<Buffer, string>,
    private readonly buckets: Database<Buffer, Buffer>,
    floor: Ballot,
    ceiling: number,
    private readonly log: Logger,
  ) {
    this.floor = floor;
    this.durableFloor = floor;
    this.durableCeiling = ceiling;
    this.ceilingTarget = ceiling;
  }

  static async open(dir: string, log: Logger): Promise<RecordStore> {
    let env: RootDatabase | undefined;
    try {
      await mkdir(dir, { recursive: true });
      env = open({ path: dir, noSubdir: false, overlappingSync: false, noSync: false, eventTurnBatching: false, maxDbs: 4 });
      const records = env.openDB<Buffer, Buffer>({ name: 'records', keyEncoding: 'binary', encoding: 'binary' });
      const meta = env.openDB<Buffer, string>({ name: 'meta', encoding: 'binary' });
      const buckets = env.openDB<Buffer, Buffer>({ name: 'buckets', keyEncoding: 'binary', encoding: 'binary' });
      // lmdb creates data.mdb and lock.mdb but never syncs the directory that names them.
      await fsyncDir(dir);
      await fsyncDir(dirname(dir));
      const stored = meta.get(FLOOR_KEY);
      const floor = stored ? decodeBallot(stored) : ZERO_BALLOT;
      const ceiling = await loadCeiling(env, records, meta, floor, log);
      await indexBuckets(env, records, meta, buckets, log);
      const store = new RecordStore(dir, env, records, meta, buckets, floor, ceiling, log);
      log.debug({ dir, records: store.count(), floor, ceiling }, 'record store open');
      return store;
    } catch (err) {
      await env?.close().catch(() => {});
      throw storeError(err);
    }
  }

  async prepare(key: Buffer, ballot: Ballot, scope?: ScopeCall): Promise<Verdict> {
    this.checkOpen();
    checkKey(key);
    checkBallot(ballot);
    const k = key.toString('latin1');
    const found = this.decisionState(k, key);
    // A lost key promises nothing: the accepted value it would report is unknown.
    if (found === LOST) return { ok: false, state: lostState(this.ceiling()) };
    const cur = found;
    if (scope && !this.admits(scope)) {
      await this.settled(k);
      return { ok: false, state: this.annotate(cur, scope), fenced: true };
    }
    const decided = decidePrepare(cur, copyBallot(ballot));
    if (!decided) {
      await this.settled(k);
      return { ok: false, state: this.annotate(cur, scope) };
    }
    const next = this.persistState(k, key, decided, cur);
    await next.written;
    return { ok: true, state: this.annotate(next.state, scope) };
  }

  /**
   * `promiseNext` also promises (counter + 1, same proposer): the CASPaxos
   * one-round-trip optimisation, where this accept doubles as the prepare of
   * that proposer's next change of the key.
   */
  async accept(key: Buffer, ballot: Ballot, value: RecordValue, promiseNext = false, scope?: ScopeCall): Promise<Verdict> {
    this.checkOpen();
    checkKey(key);
    checkBallot(ballot);
    checkValue(value);
    const k = key.toString('latin1');
    const found = this.decisionState(k, key);
    if (found === LOST) {
      const healed = decideLostAccept(this.ceiling(), copyBallot(ballot), value, promiseNext, scope?.term);
      if (!healed) return { ok: false, state: lostState(this.ceiling()) };
      const next = this.persistState(k, key, healed, LOST);
      await next.written;
      this.log.info({ key: key.toString('hex') }, 'record store: a lost key was healed by an accept above the ceiling');
      return { ok: true, state: this.annotate(next.state, scope) };
    }
    const cur = found;
    if (scope && !this.admits(scope)) {
      await this.settled(k);
      return { ok: false, state: this.annotate(cur, scope), fenced: true };
    }
    const decided = decideAccept(cur, copyBallot(ballot), value, promiseNext, undefined, scope?.term);
    if (!decided) {
      await this.settled(k);
      return { ok: false, state: this.annotate(cur, scope) };
    }
    const next = this.persistState(k, key, decided, cur);
    await next.written;
    return { ok: true, state: this.annotate(next.state, scope) };
  }

  /**
   * Drops the lease tag of the value accepted at `ballot` (its writer saw it
   * chosen). True when this node now holds that value untagged.
   */
  async learn(key: Buffer, ballot: Ballot): Promise<boolean> {
    this.checkOpen();
    checkKey(key);
    checkBallot(ballot);
    const k = key.toString('latin1');
    const cur = this.decisionState(k, key);
    if (cur === LOST) return false;
    const decided = decideLearn(cur, copyBallot(ballot));
    if (!decided) {
      await this.settled(k);
      return cur.tag === undefined && compareBallots(cur.accepted, ballot) === 0;
    }
    await this.persistState(k, key, decided, cur).written;
    return true;
  }

  /** This node's copy of a scope's lease: the newest (decisions) or the committed one; null if it is not a lease record. */
  private lease(scope: ScopeCall, committed: boolean): LeaseRecord | null {
    checkKey(scope.lease);
    const k = scope.lease.toString('latin1');
    const state = committed ? (this.stored(scope.lease) ?? absentState(this.durableFloor)) : this.decisionState(k, scope.lease);
    if (state === LOST) return null; // fences every scope write until healed
    try {
      return decodeLease(openEnvelope(state.value).payload);
    } catch {
      return null;
    }
  }

  private admits(scope: ScopeCall): boolean {
    const lease = this.lease(scope, false);
    return lease !== null && admitScopeWrite(lease, scope) === 'ok';
  }

  /** An answer about a scope key carries this node's settled term of the scope's lease. */
  private annotate(state: AcceptorState, scope: ScopeCall | undefined): AcceptorState {
    const settled = scope ? this.lease(scope, false)?.settled : undefined;
    return settled === undefined ? state : { ...state, settled };
  }

  /**
   * The committed state, not the overlay: a one-round-trip read may treat a
   * value found on a majority as chosen, which is only true once it is on disk.
   * Every acknowledged write is committed, so this never misses one.
   */
  read(key: Buffer, scope?: ScopeCall): AcceptorState {
    this.checkOpen();
    checkKey(key);
    if (scope) this.checkReader(scope);
    const state = this.stored(key) ?? absentState(this.durableFloor);
    if (state === LOST) throw lostError();
    return this.annotate(state, scope);
  }

  /** The session holding a scope's lease as this node has it committed, or null. */
  leaseHolder(scope: ScopeCall): string | null {
    this.checkOpen();
    return this.lease(scope, true)?.holder ?? null;
  }

  /** Another session's read of a held scope is refused: it must wait for the recall (src/util/lease.ts, admitScopeRead). */
  private checkReader(scope: ScopeCall): void {
    if (scope.settling) return;
    const lease = this.lease(scope, true);
    if (!lease || admitScopeRead(lease, scope.session) !== 'ok') throw new QfsError('fenced', 'the scope is held by another session');
  }

  /**
   * Committed states of keys in [start, end), byte order; promise-only keys are
   * skipped. A page with a lost key in it fails (`corrupt`) unless `withLost`:
   * a scan that silently left the key out could hide a chosen value from a
   * quorum of answers. Self-heal and scrub ask with `withLost` and get the lost
   * keys listed beside the entries; other walks (fsck, gc, repair) count the
   * node as not answering that page.
   */
  scan(start: Buffer, end: Buffer | null, limit: number, scope?: ScopeCall, withLost = false): ScanResult {
    this.checkOpen();
    // A settling scan is answered only at the scanner's term, from committed state (src/util/lease.ts).
    if (scope?.settling) {
      const lease = this.lease(scope, true);
      if (!lease || admitSettlingScan(lease, scope) !== 'ok') throw new QfsError('fenced', 'this node is not at the settling scan\'s lease term');
    }
    if (scope) this.checkReader(scope);
    const page = this.scanPage(start, end, limit);
    if (page.lost && !withLost) throw lostError();
    const settled = scope ? this.lease(scope, false)?.settled : undefined;
    return settled === undefined ? page : { ...page, settled };
  }

  private scanPage(start: Buffer, end: Buffer | null, limit: number): ScanResult {
    if (!Buffer.isBuffer(start) || start.length > MAX_KEY_BYTES) throw new QfsError('bad_request', 'scan start must be a key of at most MAX_KEY_BYTES');
    if (end !== null && (!Buffer.isBuffer(end) || end.length > MAX_KEY_BYTES)) throw new QfsError('bad_request', 'scan end must be null or a key of at most MAX_KEY_BYTES');
    if (!Number.isSafeInteger(limit) || limit < 1) throw new QfsError('bad_request', `scan limit ${limit} must be a positive integer`);
    const entries: ScanResult['entries'] = [];
    if (end !== null && Buffer.compare(start, end) >= 0) return { entries, next: null };
    const range: { start?: Buffer; end?: Buffer } = {};
    if (start.length > 0) range.start = start;
    if (end !== null) range.end = end;
    return this.collect(
      entries,
      limit,
      (function* (records: Database<Buffer, Buffer>) {
        for (const { key, value } of records.getRange(range)) yield { key: Buffer.from(key), value };
      })(this.records),
    );
  }

  /**
   * A scan's page from (key, stored bytes) in key order: lost keys listed
   * beside the entries, promise-only keys stepped over (at most
   * MAX_SCAN_SKIPPED), cut at `limit` with the next key to start from.
   */
  private collect(entries: ScanResult['entries'], limit: number, rows: Iterable<{ key: Buffer; value: Buffer }>): ScanResult {
    let skipped = 0;
    const lost: Buffer[] = [];
    const page = (next: Buffer | null): ScanResult => (lost.length > 0 ? { entries, next, lost } : { entries, next });
    try {
      for (const { key, value } of rows) {
        let state: AcceptorState;
        try {
          state = decodeState(value);
        } catch (err) {
          if (!(err instanceof RecordChecksumError)) throw err;
          this.noteLost(key);
          if (entries.length + lost.length === limit) return page(key);
          lost.push(key);
          continue;
        }
        if (state.value.kind === 'empty') {
          if (++skipped > MAX_SCAN_SKIPPED) return page(key);
          continue;
        }
        if (entries.length + lost.length === limit) return page(key);
        entries.push({ key, state });
      }
    } catch (err) {
      throw this.fail(err, 'scan');
    }
    return page(null);
  }

  /** Deletes a tombstone accepted at exactly `ballot`; raises the purge floor. */
  async purge(key: Buffer, ballot: Ballot): Promise<boolean> {
    this.checkOpen();
    checkKey(key);
    checkBallot(ballot);
    const k = key.toString('latin1');
    const cur = this.decisionState(k, key);
    if (cur === LOST) return false;
    const floor = decidePurge(cur, ballot, this.floor);
    if (!floor) {
      await this.settled(k);
      return false;
    }
    await this.removeRaisingFloor(k, key, floor, cur);
    return true;
  }

  /** Removes `key` and raises the purge floor to `floor` in one durable commit. */
  private async removeRaisingFloor(k: string, key: Buffer, floor: Ballot, before: AcceptorState | typeof LOST): Promise<void> {
    const floorBytes = encodeBallot(floor);
    this.floor = floor;
    const floorSeq = ++this.floorSeq;
    const indexKey = bucketIndexKey(key);
    try {
      this.tell(key, before, null);
      await this.persist(k, null, () =>
        this.env.batch(() => {
          this.meta.put(FLOOR_KEY, floorBytes);
          this.records.remove(key);
          this.buckets.remove(indexKey);
        }),
      );
    } catch (err) {
      // Roll back unless a later purge has raised the floor again since.
      if (this.floorSeq === floorSeq) this.floor = this.durableFloor;
      throw err;
    }
    this.durableFloor = maxBallot(this.durableFloor, floor);
  }

  /**
   * Forgets this node's copy of `key` (the membership no longer places it
   * here: the mover's trim, docs/architecture.md "Membership"). The purge
   * floor rises to the highest ballot the copy held, so that if the key is
   * placed here again this node still promises nothing below what it had
   * promised. True when a copy was there.
   */
  async drop(key: Buffer): Promise<boolean> {
    this.checkOpen();
    checkKey(key);
    const k = key.toString('latin1');
    const cur = this.decisionState(k, key);
    if (this.stored(key) === null && !this.pending.has(k)) return false;
    const held = cur === LOST ? this.ceiling() : maxBallot(cur.promised, cur.accepted);
    const floor = maxBallot(this.floor, held);
    await this.removeRaisingFloor(k, key, floor, cur);
    return true;
  }

  /** Keys stored on disk, promise-only ones included. */
  count(): number {
    this.checkOpen();
    const stats = this.records.getStats() as { entryCount?: number };
    return stats.entryCount ?? 0;
  }

  /** Waits for writes in flight; later calls throw `closed`. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.env.close().then(
      () => this.pending.clear(),
      (err: unknown) => {
        this.log.warn({ err }, 'closing the record store failed');
      },
    );
    return this.closing;
  }

  private checkOpen(): void {
    if (this.closing) throw new QfsError('closed', 'record store is closed');
  }

  private stored(key: Buffer): Stored {
    let buf: Buffer | undefined;
    try {
      buf = this.records.get(key);
    } catch (err) {
      throw this.fail(err, 'read');
    }
    if (!buf) return null;
    try {
      return decodeState(buf);
    } catch (err) {
      if (!(err instanceof RecordChecksumError)) throw err;
      this.noteLost(key);
      return LOST;
    }
  }

  private decisionState(k: string, key: Buffer): AcceptorState | typeof LOST {
    const p = this.pending.get(k);
    if (p) return p.state ?? absentState(this.floor);
    return this.stored(key) ?? absentState(this.floor);
  }

  /** The ceiling as decisions use it: including raises in flight (higher is the safe side). */
  private ceiling(): Ballot {
    return { counter: this.ceilingTarget, proposer: TOP_PROPOSER };
  }

  private noteLost(key: Buffer | Uint8Array): void {
    this.lostSeen++;
    this.log.warn({ key: Buffer.from(key).toString('hex') }, 'record store: a stored state fails its checksum; the key is lost here until a repair heals it');
  }

  private async settled(k: string): Promise<void> {
    await this.pending.get(k)?.done;
  }

  private persistState(k: string, key: Buffer, state: AcceptorState, before: AcceptorState | typeof LOST): { state: AcceptorState; written: Promise<void> } {
    const encoded = encodeState(state);
    // Value bytes in the reply and the overlay are a view of the encoded buffer: no second copy.
    const shared = decodeState(encoded, true);
    const highest = Math.max(state.promised.counter, state.accepted.counter);
    // A key's first state brings its bucket entry, in the same batch.
    const pending = this.pending.get(k);
    const indexKey = (pending ? pending.state === null : !this.exists(key)) ? bucketIndexKey(key) : null;
    // Told first: a write that fails, at once or at its commit, is followed by `unsure`.
    this.tell(key, before, shared);
    let written: Promise<void>;
    if (highest < this.durableCeiling) {
      written = this.persist(k, shared, () =>
        indexKey
          ? this.env.batch(() => {
              this.buckets.put(indexKey, EMPTY);
              this.records.put(key, encoded);
            })
          : this.records.put(key, encoded),
      );
    } else {
      // Past the ceiling: it rises in the same transaction. Targets only grow and
      // lmdb commits in call order, so the stored ceiling never goes back. A batch,
      // not a transaction callback: lmdb-js runs queued transaction callbacks after
      // the queued single writes, so an older state written in one would land after
      // a newer plain put of the same key (a CI run caught exactly that: a map page
      // going back after a truncate). A batch's writes keep their call order.
      this.ceilingTarget = Math.max(this.ceilingTarget, Math.min(highest + CEILING_STEP, Number.MAX_SAFE_INTEGER));
      const ceilingBytes = encodeCeiling(this.ceilingTarget);
      const target = this.ceilingTarget;
      written = this.persist(k, shared, () =>
        this.env.batch(() => {
          this.meta.put(CEILING_KEY, ceilingBytes);
          if (indexKey) this.buckets.put(indexKey, EMPTY);
          this.records.put(key, encoded);
        }),
      ).then(() => {
        this.durableCeiling = Math.max(this.durableCeiling, target);
      });
    }
    return { state: shared, written };
  }

  private exists(key: Buffer): boolean {
    try {
      return this.records.doesExist(key);
    } catch (err) {
      throw this.fail(err, 'read');
    }
  }

  /** Tells the listener of a change of the accepted ballot (the overlay has just been set). */
  private tell(key: Buffer, before: AcceptorState | typeof LOST, after: AcceptorState | null): void {
    if (!this.listener) return;
    const was = markOf(before);
    const now = after ? markOf(after) : null;
    if (was === now || (was !== null && was !== 'lost' && now !== null && now !== 'lost' && compareBallots(was, now) === 0)) return;
    this.listener.changed(key, was, now);
  }

  /** Sets the listener of accepted-ballot changes (told synchronously, in call order). */
  listen(listener: AcceptedListener | null): void {
    this.listener = listener;
  }

  /**
   * Every key's mark as decisions see it now, handed out a slice at a time
   * (`take`) over as many event turns as the caller likes: the committed
   * states come from one lmdb read snapshot started here, and the overlay of
   * writes in flight is copied here. A listener set in the same turn hears
   * every change after this instant, so walk plus changes is exact whenever
   * the walk is consumed (changes are XOR deltas, in any order).
   */
  snapshotMarks(): { take(n: number): Array<[Buffer, Exclude<AcceptedMark, null>]> } {
    this.checkOpen();
    const inFlight = new Map(this.pending);
    let iterator: Iterator<{ key: Buffer; value: Buffer }>;
    let first: IteratorResult<{ key: Buffer; value: Buffer }>;
    try {
      iterator = this.records.getRange({ snapshot: true })[Symbol.iterator]() as Iterator<{ key: Buffer; value: Buffer }>;
      first = iterator.next(); // the read snapshot starts now
    } catch (err) {
      throw this.fail(err, 'scan');
    }
    let rest: Array<[string, Pending]> | null = null;
    return {
      take: (n: number) => {
        const out: Array<[Buffer, Exclude<AcceptedMark, null>]> = [];
        try {
          while (out.length < n && !first.done) {
            const { key, value } = first.value;
            first = iterator.next();
            const k = Buffer.from(key).toString('latin1');
            const p = inFlight.get(k);
            let mark: AcceptedMark;
            if (p) {
              inFlight.delete(k);
              mark = p.state ? markOf(p.state) : null;
            } else {
              try {
                mark = markOf(decodeState(value));
              } catch (err) {
                if (!(err instanceof RecordChecksumError)) throw err;
                mark = 'lost';
              }
            }
            if (mark !== null) out.push([Buffer.from(key), mark]);
          }
        } catch (err) {
          throw this.fail(err, 'scan');
        }
        // Then the keys only the overlay has (written, not yet committed).
        if (first.done) {
          rest ??= [...inFlight];
          while (out.length < n && rest.length > 0) {
            const [k, p] = rest.pop()!;
            const mark = p.state ? markOf(p.state) : null;
            if (mark !== null) out.push([Buffer.from(k, 'latin1'), mark]);
          }
        }
        return out;
      },
    };
  }

  /**
   * Committed states of the keys of one bucket (src/util/range-digest.ts,
   * recordBucket) from `start` on, in key order; as `scan` with lost keys
   * listed, for self-heal.
   */
  scanBucket(bucket: number, start: Buffer, limit: number): ScanResult {
    this.checkOpen();
    if (!Number.isInteger(bucket) || bucket < 0 || bucket >= RECORD_BUCKETS) throw new QfsError('bad_request', `bucket ${bucket} is not in 0..${RECORD_BUCKETS - 1}`);
    if (!Buffer.isBuffer(start) || start.length > MAX_KEY_BYTES) throw new QfsError('bad_request', 'bucket scan start must be a key of at most MAX_KEY_BYTES');
    if (!Number.isSafeInteger(limit) || limit < 1) throw new QfsError('bad_request', `scan limit ${limit} must be a positive integer`);
    const head = Buffer.alloc(2);
    head.writeUInt16BE(bucket);
    const range: { start: Buffer; end?: Buffer } = { start: Buffer.concat([head, start]) };
    if (bucket + 1 < RECORD_BUCKETS) {
      const end = Buffer.alloc(2);
      end.writeUInt16BE(bucket + 1);
      range.end = end;
    }
    return this.collect(
      [],
      limit,
      (function* (buckets: Database<Buffer, Buffer>, records: Database<Buffer, Buffer>) {
        for (const indexKey of buckets.getKeys(range)) {
          const key = Buffer.from(indexKey.subarray(2));
          const value = records.get(key);
          if (value) yield { key, value };
        }
      })(this.buckets, this.records),
    );
  }

  /** Records `state` in the overlay while `write` is in flight; drops it once that write settles unless a newer one replaced it. */
  private persist(k: string, state: AcceptorState | null, write: () => Promise<unknown>): Promise<void> {
    let written: Promise<unknown>;
    try {
      written = write();
    } catch (err) {
      this.listener?.unsure();
      return Promise.reject(this.fail(err, 'write'));
    }
    const seq = ++this.seq;
    const settle = (): void => {
      // On failure this is the rollback: the key reads from disk again.
      if (this.pending.get(k)?.seq === seq) this.pending.delete(k);
    };
    const result = written.then(settle, async (err: unknown) => {
      settle();
      this.listener?.unsure();
      throw this.fail(await this.writeFailure(err), 'write');
    });
    this.pending.set(k, { state, seq, done: result.catch(() => {}) });
    return result;
  }

  /**
   * LMDB reports a short write as EIO, and a full disk makes short writes; an
   * EIO with the disk (nearly) full is reported as no_space.
   */
  private async writeFailure(err: unknown): Promise<unknown> {
    const cause = await commitCause(err);
    if ((cause as { code?: unknown } | null)?.code !== EIO) return cause;
    const free = await statfs(this.dir).then(
      (s) => s.bavail * s.bsize,
      () => Infinity,
    );
    return free < NEARLY_FULL_BYTES ? new QfsError('no_space', `record store: disk full (${free} bytes free)`, { cause }) : cause;
  }

  private fail(err: unknown, what: string): QfsError {
    const e = storeError(err);
    if (e.code === 'internal') this.log.error({ err }, `record store ${what} failed`);
    else this.log.warn({ code: e.code, msg: e.message }, `record store ${what} failed`);
    return e;
  }
}

function lostError(): QfsError {
  return new QfsError('corrupt', "this node's copy of the record fails its checksum; a repair round heals it");
}

function encodeCeiling(counter: number): Buffer {
  const b = Buffer.allocUnsafe(12);
  b.writeUInt32BE(Math.floor(counter / 2 ** 32), 0);
  b.writeUInt32BE(counter % 2 ** 32, 4);
  b.writeUInt32BE(crc32(b.subarray(0, 8)), 8);
  return b;
}

/**
 * The stored ceiling; on a store from before checksums, the highest ballot of
 * any state (and the floor) plus a step, written once. A ceiling that fails
 * its own checksum is rebuilt the same way with a wide margin and logged: the
 * states it bounded are still there to bound it again, unless one of them is
 * lost too.
 */
async function loadCeiling(env: RootDatabase, records: Database<Buffer, Buffer>, meta: Database<Buffer, string>, floor: Ballot, log: Logger): Promise<number> {
  const stored = meta.get(CEILING_KEY);
  if (stored && stored.length === 12 && crc32(stored.subarray(0, 8)) === stored.readUInt32BE(8)) return stored.readUInt32BE(0) * 2 ** 32 + stored.readUInt32BE(4);
  let highest = floor.counter;
  for (const { value } of records.getRange({})) {
    try {
      const s = decodeState(value);
      highest = Math.max(highest, s.promised.counter, s.accepted.counter);
    } catch {
      // lost or undecodable: bounded by the margin below
    }
  }
  const margin = stored ? 2 ** 32 : CEILING_STEP;
  if (stored) log.error({ rebuilt: highest + margin }, 'record store: the ballot ceiling fails its checksum; rebuilt from the stored states with a wide margin');
  if (highest === 0 && !stored) return 0;
  const ceiling = highest + margin;
  await env.batch(() => {
    meta.put(CEILING_KEY, encodeCeiling(ceiling));
  });
  return ceiling;
}

const EMPTY = Buffer.alloc(0);

function bucketIndexKey(key: Buffer): Buffer {
  const b = Buffer.allocUnsafe(2 + key.length);
  b.writeUInt16BE(recordBucket(key), 0);
  key.copy(b, 2);
  return b;
}

/** What self-heal's digests count of a state: the accepted ballot of a value or tombstone. */
function markOf(s: AcceptorState | typeof LOST): AcceptedMark {
  if (s === LOST) return 'lost';
  return s.accepted.counter > 0 && s.value.kind !== 'empty' ? s.accepted : null;
}

/** A store from before buckets: every key gets its bucket entry, once, before the store serves. */
async function indexBuckets(env: RootDatabase, records: Database<Buffer, Buffer>, meta: Database<Buffer, string>, buckets: Database<Buffer, Buffer>, log: Logger): Promise<void> {
  if (meta.get(BUCKETS_KEY)) return;
  let keys: Buffer[] = [];
  let total = 0;
  const flush = async (): Promise<void> => {
    const batch = keys;
    keys = [];
    await env.batch(() => {
      for (const key of batch) buckets.put(bucketIndexKey(key), EMPTY);
    });
  };
  for (const key of records.getKeys({})) {
    keys.push(Buffer.from(key));
    total++;
    if (keys.length >= 10_000) await flush();
  }
  await flush();
  await env.batch(() => {
    meta.put(BUCKETS_KEY, Buffer.from([1]));
  });
  if (total > 0) log.info({ keys: total }, 'record store: bucket index built');
}

function absentState(floor: Ballot): AcceptorState {
  return { promised: floor, accepted: ZERO_BALLOT, value: EMPTY_VALUE };
}

function copyBallot(b: Ballot): Ballot {
  return Object.freeze({ counter: b.counter, proposer: b.proposer });
}

function checkKey(key: Buffer): void {
  if (!Buffer.isBuffer(key) || key.length < 1 || key.length > MAX_KEY_BYTES) {
    throw new QfsError('bad_request', `record key must be 1..${MAX_KEY_BYTES} bytes`);
  }
}

function checkBallot(b: Ballot): void {
  if (typeof b !== 'object' || b === null || !isValidBallot(b)) throw new QfsError('bad_request', 'invalid ballot');
}

function checkValue(v: RecordValue): void {
  if (typeof v !== 'object' || v === null) throw new QfsError('bad_request', 'invalid record value');
  if (v.kind === 'value' || v.kind === 'tombstone') {
    if (!Buffer.isBuffer(v.bytes)) throw new QfsError('bad_request', 'record value bytes must be a Buffer');
    if (v.bytes.length > MAX_VALUE_BYTES) throw new QfsError('bad_request', `record value of ${v.bytes.length} bytes exceeds ${MAX_VALUE_BYTES}`);
  } else if (v.kind !== 'empty') {
    throw new QfsError('bad_request', 'invalid record value kind');
  }
}

/**
 * lmdb-js rejects every write of a failed transaction with a generic "Commit
 * failed" error whose `commitError` promise rejects with the lmdb error. That
 * promise must be handled here (or it is an unhandled rejection), and it is
 * the only place the errno (ENOSPC, MDB_MAP_FULL) can be found.
 */
async function commitCause(err: unknown): Promise<unknown> {
  const commitError = (err as { commitError?: unknown } | null)?.commitError;
  if (!commitError || typeof (commitError as PromiseLike<unknown>).then !== 'function') return err;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<unknown>((resolve) => {
    timer = setTimeout(() => resolve(err), 1000);
  });
  const cause = Promise.resolve(commitError as PromiseLike<unknown>).then(
    () => err,
    (inner: unknown) => inner,
  );
  try {
    return await Promise.race([cause, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function storeError(err: unknown): QfsError {
  if (err instanceof QfsError) return err;
  const e = err as { code?: unknown; message?: unknown } | null;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  if (NO_SPACE_CODES.has(e?.code) || /MDB_MAP_FULL|No space left/i.test(message)) {
    return new QfsError('no_space', `record store: ${message}`, { cause: err });
  }
  return toQfsError(err);
}
