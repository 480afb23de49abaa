// An in-memory key space for tests of the layers above: same contract, one process.
import { createHash } from 'node:crypto';
import { QfsError } from '../util/errors.js';
import type { ChunkId } from '../util/ids.js';
import { KEEP, groupOf, type CallOpts, type ChangeFn, type MaintainableKeySpace, type RawRecord, type ScanEntry, type ScanPage } from './types.js';

export class MemoryKeySpace implements MaintainableKeySpace {
  private readonly records = new Map<string, Buffer>();
  private readonly chunks = new Map<string, Buffer>();
  /** When each chunk was last put (gc's grace period). */
  private readonly putAt = new Map<string, number>();
  private closed = false;

  private check(opts?: CallOpts): void {
    if (this.closed) throw new QfsError('closed', 'key space closed');
    if (opts?.signal?.aborted) throw new QfsError('timeout', 'aborted');
  }

  async read(key: Buffer, opts?: CallOpts): Promise<Buffer | null> {
    this.check(opts);
    groupOf(key);
    await Promise.resolve();
    const v = this.records.get(key.toString('latin1'));
    return v ? Buffer.from(v) : null;
  }

  async change(key: Buffer, fn: ChangeFn, opts?: CallOpts): Promise<Buffer | null> {
    this.check(opts);
    groupOf(key);
    await Promise.resolve();
    const k = key.toString('latin1');
    const old = this.records.get(k) ?? null;
    const next = fn(old ? Buffer.from(old) : null);
    if (next === KEEP) return old ? Buffer.from(old) : null;
    if (next === null) this.records.delete(k);
    else this.records.set(k, Buffer.from(next));
    return next === null ? null : Buffer.from(next);
  }

  async delete(key: Buffer, opts?: CallOpts): Promise<void> {
    await this.change(key, () => null, opts);
  }

  async scan(group: Buffer, startName: Buffer, endName: Buffer | null, opts?: CallOpts & { limit?: number }): Promise<ScanPage> {
    this.check(opts);
    await Promise.resolve();
    const prefix = Buffer.concat([Buffer.from([group.length]), group]);
    const start = Buffer.concat([prefix, startName]);
    const limit = opts?.limit ?? 1000;
    const all: ScanEntry[] = [];
    for (const [k, v] of this.records) {
      const key = Buffer.from(k, 'latin1');
      if (key.length < prefix.length || !key.subarray(0, prefix.length).equals(prefix)) continue;
      if (Buffer.compare(key, start) < 0) continue;
      if (endName && Buffer.compare(key.subarray(prefix.length), endName) >= 0) continue;
      all.push({ key, value: Buffer.from(v) });
    }
    all.sort((a, b) => Buffer.compare(a.key, b.key));
    const page = all.slice(0, limit);
    const next = all.length > limit ? all[limit]!.key.subarray(prefix.length) : null;
    return { entries: page, next };
  }

  async putChunk(bytes: Buffer, opts?: CallOpts): Promise<ChunkId> {
    this.check(opts);
    await Promise.resolve();
    const id = createHash('sha256').update(bytes).digest('hex') as ChunkId;
    if (!this.chunks.has(id)) this.chunks.set(id, Buffer.from(bytes));
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
    return Buffer.from(c.subarray(Math.min(offset, c.length), end));
  }

  async hasChunk(id: ChunkId, opts?: CallOpts): Promise<boolean> {
    this.check(opts);
    return this.chunks.has(id);
  }

  async listRecords(after: Buffer | null, limit: number, opts?: CallOpts): Promise<{ records: RawRecord[]; next: Buffer | null; complete: boolean }> {
    this.check(opts);
    await Promise.resolve();
    const keys = [...this.records.keys()]
      .map((k) => Buffer.from(k, 'latin1'))
      .filter((k) => after === null || Buffer.compare(k, after) > 0)
      .sort(Buffer.compare);
    const page = keys.slice(0, limit);
    const records = page.map((key) => ({ key, value: Buffer.from(this.records.get(key.toString('latin1'))!), others: [], tombstone: false }));
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
  async purgeTombstone(_key: Buffer, opts?: CallOpts): Promise<boolean> {
    this.check(opts);
    return false;
  }

  /** Test hook: how many chunks are stored (content addressing stores identical bytes once). */
  get chunkCount(): number {
    return this.chunks.size;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
