// An in-memory key space for tests of the layers above: same contract, one process.
import type { PurgeOutcome } from './tombstones.js';
import { QfsError } from '../util/errors.js';
import type { ChunkId } from '../util/ids.js';
import { chunkIdOf } from '../util/hash.js';
import { KEEP, groupOf, type CallOpts, type ChangeFn, type MaintainableKeySpace, type RawRecord, type ScanEntry, type ScanPage } from './types.js';

/** A private copy (allocUnsafe + copy: Buffer.from of a Buffer zero-fills first, then copies). */
function copyOf(bytes: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(bytes.length);
  out.set(bytes);
  return out;
}

export interface MemoryKeySpaceOptions {
  /**
   * getChunk answers with a view of the stored bytes instead of a private copy.
   * The copy is a test double's guard (a caller that wrote into a fetched
   * buffer would corrupt the store and fail a test); the bench mount
   * (scripts/bench/memfs-mount.ts) turns it off, because a 64 KiB allocation
   * and copy per random 4 KiB read is a cost of the double, not of FUSE or the
   * vfs (it was a third of memfs-fuse's time on fio's random rows, most of it
   * garbage collection). The caller must then treat the answer as read-only.
   */
  shareChunkReads?: boolean;
}

export class MemoryKeySpace implements MaintainableKeySpace {
  constructor(private readonly options: MemoryKeySpaceOptions = {}) {}

  /**
   * Records by group, then by name within the group (both as latin1 strings,
   * whose order is the byte order): a scan reads its own group only, as a
   * node's range scan does, not every record of the key space.
   */
  private readonly groups = new Map<string, Map<string, Buffer>>();
  private readonly chunks = new Map<string, Buffer>();
  /** When each chunk was last put (gc's grace period). */
  private readonly putAt = new Map<string, number>();
  private closed = false;

  private check(opts?: CallOpts): void {
    if (this.closed) throw new QfsError('closed', 'key space closed');
    if (opts?.signal?.aborted) throw new QfsError('timeout', 'aborted');
    if (opts?.deadline !== undefined && Date.now() >= opts.deadline) throw new QfsError('timeout', 'deadline passed');
  }

  /** The group (as a string) and the name of a record key; throws on a malformed key. */
  private static split(key: Buffer): [string, string] {
    const group = groupOf(key);
    return [group.toString('latin1'), key.subarray(group.length).toString('latin1')];
  }

  async read(key: Buffer, opts?: CallOpts): Promise<Buffer | null> {
    this.check(opts);
    const [g, name] = MemoryKeySpace.split(key);
    await Promise.resolve();
    const v = this.groups.get(g)?.get(name);
    return v ? Buffer.from(v) : null;
  }

  async change(key: Buffer, fn: ChangeFn, opts?: CallOpts): Promise<Buffer | null> {
    this.check(opts);
    const [g, name] = MemoryKeySpace.split(key);
    await Promise.resolve();
    const group = this.groups.get(g);
    const old = group?.get(name) ?? null;
    const next = fn(old ? Buffer.from(old) : null);
    if (next === KEEP) return old ? Buffer.from(old) : null;
    if (next === null) {
      group?.delete(name);
      if (group?.size === 0) this.groups.delete(g);
    } else if (group) group.set(name, Buffer.from(next));
    else this.groups.set(g, new Map([[name, Buffer.from(next)]]));
    return next === null ? null : Buffer.from(next);
  }

  async delete(key: Buffer, opts?: CallOpts): Promise<void> {
    await this.change(key, () => null, opts);
  }

  async scan(group: Buffer, startName: Buffer, endName: Buffer | null, opts?: CallOpts & { limit?: number }): Promise<ScanPage> {
    this.check(opts);
    await Promise.resolve();
    const prefix = Buffer.concat([Buffer.from([group.length]), group]);
    const start = startName.toString('latin1');
    const end = endName?.toString('latin1') ?? null;
    const limit = opts?.limit ?? 1000;
    const members = this.groups.get(prefix.toString('latin1')) ?? new Map<string, Buffer>();
    const names: string[] = [];
    for (const name of members.keys()) {
      if (name >= start && (end === null || name < end)) names.push(name);
    }
    names.sort();
    const entries = names.slice(0, limit).map((name) => ({ key: Buffer.concat([prefix, Buffer.from(name, 'latin1')]), value: Buffer.from(members.get(name)!) }));
    const next = names.length > limit ? Buffer.from(names[limit]!, 'latin1') : null;
    return { entries, next };
  }

  async putChunk(bytes: Buffer, opts?: CallOpts): Promise<ChunkId> {
    this.check(opts);
    await Promise.resolve();
    const id = (await chunkIdOf(bytes)) as ChunkId;
    if (!this.chunks.has(id)) this.chunks.set(id, copyOf(bytes));
    this.putAt.set(id, Date.now());
    return id;
  }

  async getChunk(id: ChunkId, opts?: CallOpts & { offset?: number; length?: number }): Promise<Buffer> {
    this.check(opts);
    await Promise.resolve();
    const c = this.chunks.get(id);
    if (!c) throw new QfsError('not_found', `chunk ${id} not found`);
    const offset = opts?.offset ?? 0;
    const end = opts?.length === undefined ? c.length : Math.min(c.length, offset + opts.length);
    const view = c.subarray(Math.min(offset, c.length), end);
    return this.options.shareChunkReads ? view : copyOf(view);
  }

  async hasChunk(id: ChunkId, opts?: CallOpts): Promise<boolean> {
    this.check(opts);
    return this.chunks.has(id);
  }

  async listRecords(after: Buffer | null, limit: number, opts?: CallOpts): Promise<{ records: RawRecord[]; next: Buffer | null; complete: boolean }> {
    this.check(opts);
    await Promise.resolve();
    const keys: Buffer[] = [];
    for (const [g, members] of this.groups) {
      for (const name of members.keys()) {
        const key = Buffer.from(g + name, 'latin1');
        if (after === null || Buffer.compare(key, after) > 0) keys.push(key);
      }
    }
    keys.sort(Buffer.compare);
    const page = keys.slice(0, limit);
    const records = page.map((key) => {
      const [g, name] = MemoryKeySpace.split(key);
      return { key, value: Buffer.from(this.groups.get(g)!.get(name)!), others: [], tombstone: false };
    });
    return { records, next: keys.length > limit ? page.at(-1)! : null, complete: true };
  }

  async listChunks(after: ChunkId | null, limit: number, opts?: CallOpts): Promise<{ ids: ChunkId[]; next: ChunkId | null; complete: boolean }> {
    this.check(opts);
    await Promise.resolve();
    const ids = ([...this.chunks.keys()] as ChunkId[]).filter((id) => after === null || id > after).sort();
    const page = ids.slice(0, limit);
    return { ids: page, next: ids.length > limit ? page.at(-1)! : null, complete: true };
  }

  async sweepChunk(id: ChunkId, minAgeMs: number, opts?: CallOpts): Promise<{ bytes: number; copies: number }> {
    this.check(opts);
    await Promise.resolve();
    const c = this.chunks.get(id);
    if (!c || Date.now() - (this.putAt.get(id) ?? 0) < minAgeMs) return { bytes: 0, copies: 0 };
    this.chunks.delete(id);
    this.putAt.delete(id);
    return { bytes: c.length, copies: 1 };
  }

  /** Deletes here leave no tombstones. */
  async purgeTombstone(_key: Buffer, opts?: CallOpts): Promise<PurgeOutcome> {
    this.check(opts);
    return { purged: false, retryInMs: 0 };
  }

  /**
   * Test hook: every stored chunk becomes `ms` older, so that a test of gc's
   * grace period does not depend on how many milliseconds its own steps took.
   */
  ageChunks(ms: number): void {
    for (const [id, at] of this.putAt) this.putAt.set(id, at - ms);
  }

  /** Test hook: how many chunks are stored (content addressing stores identical bytes once). */
  get chunkCount(): number {
    return this.chunks.size;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
