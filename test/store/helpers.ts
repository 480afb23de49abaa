// Fresh directories and stores for store tests; each registers its own cleanup.
import { chunkIdSync } from '../../src/util/hash.js';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import type { ExecutionContext } from 'ava';
import type { Ballot } from '../../src/util/ballot.js';
import type { ChunkId } from '../../src/util/ids.js';

export async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'qfs-store-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Every file and directory below `root`, relative to it, sorted. */
export async function tree(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true });
  return entries.map((e) => relative(root, join(root, e))).sort();
}

export function ballot(counter: number, proposer = '00000000000000aa'): Ballot {
  return { counter, proposer };
}

export function chunkIdOf(bytes: Buffer): ChunkId {
  return chunkIdSync(bytes) as ChunkId;
}
