// The hashing thread's side (see hash-offload.ts): SHA-256 of each 64 KiB
// block of a range of the shared slots, answered with the leaves. It keeps no
// state between requests.
import { createHash } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';

const BLOCK_BYTES = 64 * 1024;
const LEAF_BYTES = 32;

export interface HashSetup {
  memory: SharedArrayBuffer;
}

export interface HashRequest {
  seq: number;
  offset: number;
  length: number;
}

export interface HashAnswer {
  seq: number;
  leaves?: ArrayBuffer;
  error?: string;
}

const setup = workerData as HashSetup | undefined;

parentPort?.on('message', (req: HashRequest) => {
  try {
    const bytes = new Uint8Array(setup!.memory, req.offset, req.length);
    const n = Math.ceil(req.length / BLOCK_BYTES);
    const leaves = new ArrayBuffer(n * LEAF_BYTES);
    const out = new Uint8Array(leaves);
    for (let i = 0; i < n; i++) out.set(createHash('sha256').update(bytes.subarray(i * BLOCK_BYTES, Math.min(req.length, (i + 1) * BLOCK_BYTES))).digest(), i * LEAF_BYTES);
    parentPort!.postMessage({ seq: req.seq, leaves } satisfies HashAnswer, [leaves]);
  } catch (err) {
    parentPort!.postMessage({ seq: req.seq, error: String(err) } satisfies HashAnswer);
  }
});
