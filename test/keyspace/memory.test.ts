import test from 'ava';
import { MemoryKeySpace } from '../../src/keyspace/memory.js';
import { keyspaceConformance } from './conformance.js';

keyspaceConformance(test, 'memory', async (t) => {
  const ks = new MemoryKeySpace();
  t.teardown(() => ks.close());
  return ks;
});
