import test from 'ava';
import { MemoryKeySpace } from '../../src/keyspace/memory.js';
import { keyspaceConformance } from './conformance.js';

keyspaceConformance(test, 'memory', async (t) => {
  const ks = new MemoryKeySpace();
  t.teardown(() => ks.close());
  return ks;
});

keyspaceConformance(test, 'memory (shared chunk reads)', async (t) => {
  const ks = new MemoryKeySpace({ shareChunkReads: true });
  t.teardown(() => ks.close());
  return ks;
});

test('memory: chunk reads are private copies unless shareChunkReads', async (t) => {
  const bytes = Buffer.alloc(200_000, 7);
  for (const share of [false, true]) {
    const ks = new MemoryKeySpace({ shareChunkReads: share });
    const id = await ks.putChunk(bytes);
    const range = await ks.getChunk(id, { offset: 70_000, length: 100 });
    t.true(range.equals(bytes.subarray(70_000, 70_100)));
    range[0] = 9; // a caller that breaks the read-only contract
    const again = await ks.getChunk(id, { offset: 70_000, length: 1 });
    t.is(again[0], share ? 9 : 7, share ? 'a shared read is a view of the stored bytes' : 'a private copy keeps the store intact');
    ks.close();
  }
});
