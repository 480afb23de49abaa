// The hashing thread's side (see hash-offload.ts): SHA-256 of each 64 KiB
// block of a range of the shared slots, answered with the leaves. It keeps no
// state between requests.
import { parentPort, workerData } from 'node:worker_threads';
import { blockCount, leavesSync } from './hash.js';

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
    const leaves = new ArrayBuffer(blockCount(req.length) * 32);
    leavesSync(bytes, new Uint8Array(leaves));
    parentPort!.postMessage({ seq: req.seq, leaves } satisfies HashAnswer, [leaves]);
  } catch (err) {
    parentPort!.postMessage({ seq: req.seq, error: String(err) } satisfies HashAnswer);
  }
});
