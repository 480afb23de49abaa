// The key space the filesystem is built on: linearizable registers and
// immutable content-addressed chunks. Where keys live is not its business.
//
// A record key has two parts. The *group* decides placement: every key of one
// group lives on the same replica set, so a range of names inside one group is
// one scan on one set of nodes (a directory's entries). The *name* orders keys
// inside the group. Encoded: u8 group length | group | name.
import type { PurgeOutcome } from './tombstones.js';
import type { ChunkId } from '../util/ids.js';
import type { ScopeCall } from '../util/lease.js';
import type { ChangeTrail } from '../util/envelope.js';

/** How a change written behind may wait to travel with others (CallOpts.behind). */
export type Behind = boolean | 'soon';

export interface CallOpts {
  /** Aborts the operation; it then fails with `timeout`. */
  signal?: AbortSignal;
  /** Overall time limit in ms (default: the implementation's request deadline). */
  timeoutMs?: number;
  /**
   * An absolute deadline (ms since the epoch) that several calls of one
   * operation share; the earlier of it and `timeoutMs` from now applies.
   */
  deadline?: number;
  /** The key is in a leased scope: the lease and the term this call is made under (src/util/lease.ts). */
  scope?: ScopeCall;
  /**
   * Nobody waits on this change yet (it is written behind): its accepts may
   * wait to travel in one frame with others, for a short gather window.
   * `'soon'`: someone will wait on it shortly (the name of a file being
   * written, which its close waits for): it batches only with what is held
   * already, and leaves as soon as no frame of them is on its way. Whoever
   * comes to wait calls `expedite` on the key space.
   */
  behind?: Behind;
  /**
   * The calls that one logical change is retried in share this trail (the
   * caller makes one per change and passes it to every call): a change whose
   * earlier call failed but may have landed (its accept reached some
   * replicas, and a later round adopted it) is then reported, not applied
   * again.
   */
  trail?: ChangeTrail;
}

/** The deadline a call with `opts` gets at `now`: the earlier of its own and `timeoutMs` (or `defaultMs`) from now. */
export function callDeadline(now: number, opts: CallOpts | undefined, defaultMs: number): number {
  const own = now + (opts?.timeoutMs ?? defaultMs);
  return opts?.deadline !== undefined && opts.deadline < own ? opts.deadline : own;
}

/** What a change function returns: new bytes, `null` to delete, or KEEP to leave the value as it is. */
export const KEEP: unique symbol = Symbol('keep');
export type ChangeResult = Buffer | null | typeof KEEP;
export type ChangeFn = (old: Buffer | null) => ChangeResult;

export interface ScanEntry {
  key: Buffer;
  value: Buffer;
}

export interface ScanPage {
  entries: ScanEntry[];
  next: Buffer | null;
}

export interface RegisterSpace {
  /** The value, or null when the key holds nothing (never written or deleted). Linearizable. */
  read(key: Buffer, opts?: CallOpts): Promise<Buffer | null>;
  /**
   * Atomically replaces the value with fn(old) and returns what was stored.
   * fn may run more than once (on conflicts) and must be pure; an exception
   * it throws aborts the change and is rethrown untouched.
   */
  change(key: Buffer, fn: ChangeFn, opts?: CallOpts): Promise<Buffer | null>;
  /** Deletes (writes a tombstone). */
  delete(key: Buffer, opts?: CallOpts): Promise<void>;
  /**
   * A hint, not an operation: do now whatever makes this client's next change
   * of `key` cheaper (the cluster runs a round's first phase). Changes no value
   * and never fails; a key space without such work leaves it out.
   */
  prepare?(key: Buffer, opts?: CallOpts): Promise<void>;
  /** Sends at once what changes written behind (`behind`) hold back to batch: someone now waits for them. */
  expedite?(): void;
  /**
   * Keys of one group with names in [startName, endName) in byte order, values
   * as last accepted by the replicas (a scan is not linearizable as a whole;
   * each entry was a committed or in-flight value at some point during it).
   * `next` is the name to continue from, null when the range is done.
   */
  scan(group: Buffer, startName: Buffer, endName: Buffer | null, opts?: CallOpts & { limit?: number }): Promise<ScanPage>;
}

export interface ChunkSpace {
  /** Stores bytes (durable on the write quorum) and returns their id. */
  putChunk(bytes: Buffer, opts?: CallOpts): Promise<ChunkId>;
  /** Reads [offset, offset+length) of a chunk; the bytes are verified against the id. */
  getChunk(id: ChunkId, opts?: CallOpts & { offset?: number; length?: number }): Promise<Buffer>;
  hasChunk(id: ChunkId, opts?: CallOpts): Promise<boolean>;
}

/**
 * A scope of record keys guarded by a lease record (src/util/lease.ts): names
 * [start, end) of one group, and the lease record's key in that same group.
 */
export interface ScopeRange {
  lease: Buffer;
  group: Buffer;
  start: Buffer;
  end: Buffer;
}

/** A scope lease this session holds: calls made under it carry `call`. */
export interface HeldScope {
  readonly call: ScopeCall;
  /** May the session still act under it (its own clock, nothing showed it lost)? */
  trusted(): boolean;
  /** Gives it back once the caller has committed everything made under it; true when clean. */
  release(): Promise<boolean>;
}

/** Scope leases, for key spaces that have them (the cluster; the in-memory space for tests). */
export interface ScopeService {
  /** This client's session id: what its scoped calls name. */
  readonly session: string;
  /**
   * Takes the scope's lease for this session (recalling it from another
   * holder, or taking it over from a silent one) and settles what earlier
   * terms left; null when that did not happen within `giveUpAfterMs`.
   */
  acquire(range: ScopeRange, giveUpAfterMs: number): Promise<HeldScope | null>;
  /**
   * The lease of a scope this session is creating, which nobody else can
   * reach until the caller publishes it (a new directory before its name is
   * committed): held at once, with nothing to settle. Nothing may be sent
   * under it, nor the scope published, before `ready` resolves; `ready`
   * rejects when the lease record could not be written (the lease is then
   * lost). Absent: every lease is acquired.
   */
  born?(range: ScopeRange): { held: HeldScope; ready: Promise<void> };
  /** Calls `fn` with a lease key when the nodes ask this session to give that scope back. */
  onRecall(fn: (lease: Buffer) => void): void;
  /** Is this client connected to a majority of the group's replicas now? (Changes are written behind only then.) */
  reachable(group: Buffer): boolean;
}

export interface KeySpace extends RegisterSpace, ChunkSpace {
  close(): Promise<void>;
  /** Present when the key space has scope leases (metadata write-behind uses them). */
  readonly scopes?: ScopeService;
}

export { MAX_GROUP_BYTES, groupOf, recordKey, splitKey } from '../util/record-key.js';

/** One record as the maintenance walk sees it: what its replicas hold, not a linearizable read. */
export interface RawRecord {
  key: Buffer;
  /** The value with the highest accepted ballot among the replicas asked; null when that is a delete. */
  value: Buffer | null;
  /** Every other live value some replica holds (an accepted value not, or not yet, chosen). */
  others: Buffer[];
  /** Some replica holds a delete (a tombstone not yet purged). */
  tombstone: boolean;
}

/**
 * What fsck and gc need beyond the filesystem's own calls: walks over every
 * record and every chunk, and gc's conditional chunk delete. The walks are
 * not snapshots: a record changed during a walk may be seen before or after
 * the change, so callers confirm what they find with linearizable reads.
 */
export interface MaintenanceSpace {
  /**
   * Records with keys greater than `after`, in key order. `complete` is false
   * when too few replicas answered to be sure that every chosen value was seen
   * (then nothing may be deleted on the strength of this walk).
   */
  listRecords(after: Buffer | null, limit: number, opts?: CallOpts): Promise<{ records: RawRecord[]; next: Buffer | null; complete: boolean }>;
  /** Chunk ids held by any node, greater than `after`, ascending. */
  listChunks(after: ChunkId | null, limit: number, opts?: CallOpts): Promise<{ ids: ChunkId[]; next: ChunkId | null; complete: boolean }>;
  /** Deletes every copy stored at least `minAgeMs` ago; the bytes freed and the copies deleted. */
  sweepChunk(id: ChunkId, minAgeMs: number, opts?: CallOpts): Promise<{ bytes: number; copies: number }>;
  /**
   * Reclaims a delete once every replica has held it for the tombstone grace;
   * not purged while some replica lacks it, or (retryInMs > 0) while the grace runs.
   */
  purgeTombstone(key: Buffer, opts?: CallOpts): Promise<PurgeOutcome>;
}

export interface MaintainableKeySpace extends KeySpace, MaintenanceSpace {}
