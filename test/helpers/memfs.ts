// A whole vfs over the in-memory key space: POSIX rules without a kernel.
import { MemoryKeySpace } from '../../src/keyspace/memory.js';
import { FsMeta } from '../../src/meta/fs-meta.js';
import { Vfs } from '../../src/vfs/vfs.js';
import { silentLogger } from '../../src/util/log.js';

export async function memoryVfs(opts: { chunkSize?: number; attrTtlMs?: number } = {}): Promise<{ vfs: Vfs; ks: MemoryKeySpace }> {
  const ks = new MemoryKeySpace();
  const sb = await FsMeta.format(ks, { chunkSize: opts.chunkSize ?? 64 * 1024, replication: 1 });
  const vfs = new Vfs(new FsMeta(ks, sb), ks, { log: silentLogger(), attrTtlMs: opts.attrTtlMs ?? 1000, entryTtlMs: opts.attrTtlMs ?? 1000 });
  return { vfs, ks };
}
