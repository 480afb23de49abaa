// Block hashing on a thread of its own.
//
// Why: a mount's JS thread serves every FUSE request and receives every chunk;
// verifying a 1 MiB chunk there (0.55 ms of SHA-256) was 45% of that thread
// during a cold big read, while the machine still had a fifth of its CPU idle
// (perf, docs/performance.md "fifteenth session"). Here the bytes are copied
// into a slot of shared memory (about 0.1 ms per MiB) and the hashing thread
// answers with the leaves. The slots are allocated once and reused: a
// SharedArrayBuffer per chunk handed to the thread was tried first, and the
// thread held each until its own GC, so every chunk landed in fresh pages
// (page faults, and V8 copies out of shared memory with a slower memmove):
// the read got slower, not faster.
//
// Off unless a process turns it on (`hashThread.enable()`: the mount does), and
// only for callers that ask (`chunkTree(bytes, { offload: true })`: verified
// whole-chunk reads; see HashOptions in hash.ts for why not writes).
// One thread (the machines this runs on have few cores, and SHA-256 with the
// CPU's extensions does about 1.8 GB/s on one). It is started on first use,
// holds the process open only while it has work, and if it fails (it cannot
// start, it dies, it answers an error) every later request is hashed on the
// calling thread as before: offloading is an optimisation, never a condition.
// When every slot is busy the caller hashes for itself rather than queue.
import { Worker } from 'node:worker_threads';
import type { HashAnswer, HashRequest, HashSetup } from './hash-thread.js';

/** Smaller ranges are hashed where they are: a round trip to the thread costs tens of µs. */
export const OFFLOAD_MIN_BYTES = 128 * 1024;
/** Larger ranges are hashed where they are (chunks are at most 1 MiB with the default format). */
export const SLOT_BYTES = 1024 * 1024;
const SLOTS = 4;

interface Waiting {
  slot: number;
  resolve(leaves: Buffer): void;
  reject(err: Error): void;
}

class HashThread {
  private enabled = false;
  private worker: Worker | null = null;
  private memory: SharedArrayBuffer | null = null;
  private readonly free: number[] = [];
  private failed = false;
  private seq = 0;
  private readonly waiting = new Map<number, Waiting>();
  /** Ranges hashed by the thread, ranges it could not take (all slots busy), and requests that fell back after a failure. */
  readonly stats = { offloaded: 0, busy: 0, fellBack: 0 };

  /** Lets this process hash big ranges on the thread from now on (false: not any more). */
  enable(on = true): void {
    this.enabled = on;
  }

  /**
   * The leaves of `bytes` from the thread, or null when it does not take them
   * (not enabled, failed, too small or too big, every slot busy): the caller
   * hashes them itself. The promise rejects if the thread fails meanwhile.
   */
  leaves(bytes: Uint8Array): Promise<Buffer> | null {
    if (!this.enabled || this.failed || bytes.length < OFFLOAD_MIN_BYTES || bytes.length > SLOT_BYTES) return null;
    let worker: Worker;
    try {
      worker = this.start();
    } catch {
      this.failed = true; // cannot start: hash in place from now on
      return null;
    }
    const slot = this.free.pop();
    if (slot === undefined) {
      this.stats.busy++;
      return null;
    }
    new Uint8Array(this.memory!, slot * SLOT_BYTES, bytes.length).set(bytes);
    const seq = ++this.seq;
    return new Promise<Buffer>((resolve, reject) => {
      this.waiting.set(seq, { slot, resolve, reject });
      if (this.waiting.size === 1) worker.ref();
      worker.postMessage({ seq, offset: slot * SLOT_BYTES, length: bytes.length } satisfies HashRequest);
    });
  }

  private start(): Worker {
    if (this.worker !== null) return this.worker;
    if (this.memory === null) {
      this.memory = new SharedArrayBuffer(SLOTS * SLOT_BYTES);
      for (let i = SLOTS - 1; i >= 0; i--) this.free.push(i);
    }
    const worker = new Worker(new URL('./hash-thread.js', import.meta.url), { workerData: { memory: this.memory } satisfies HashSetup });
    worker.unref();
    worker.on('message', (a: HashAnswer) => {
      const w = this.waiting.get(a.seq);
      if (w === undefined) return;
      this.waiting.delete(a.seq);
      this.free.push(w.slot);
      if (this.waiting.size === 0 && !ending.has(worker)) worker.unref();
      if (a.leaves !== undefined) {
        this.stats.offloaded++;
        w.resolve(Buffer.from(a.leaves));
      } else {
        w.reject(new Error(`hashing thread: ${a.error ?? 'no answer'}`));
      }
    });
    const fail = (err: Error): void => {
      if (this.worker !== worker) return; // stopped on purpose
      this.failed = true;
      this.worker = null;
      this.dropWaiting(err);
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`hashing thread exited (${code})`)));
    this.worker = worker;
    return worker;
  }

  /** Rejects every request on its way (its slot is free again: the thread that had it is gone). */
  private dropWaiting(err: Error): void {
    for (const w of this.waiting.values()) {
      this.free.push(w.slot);
      w.reject(err);
    }
    this.waiting.clear();
  }

  /** Stops the thread (tests); later requests start a new one. */
  async stop(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    this.dropWaiting(new Error('hashing thread stopped'));
    if (w !== null) await terminated(w);
    this.failed = false;
  }

  /** Ends the thread as a crash would (tests): what it was asked and everything later is hashed by the caller. */
  async kill(): Promise<void> {
    if (this.worker !== null) await terminated(this.worker);
  }
}

/**
 * Ends a thread and waits for it. Held referenced while it ends: an idle
 * thread is unreferenced, and the end of an unreferenced one does not keep
 * the event loop alive, so a caller awaiting it could be left with nothing
 * to wake it (a test hung that way when the thread answered its last
 * request while being ended).
 */
function terminated(w: Worker): Promise<number> {
  ending.add(w);
  w.ref();
  return w.terminate();
}

/**
 * Threads being ended: an answer that arrives meanwhile must not unreference
 * the thread again (a clean-clone CI run hung the same test once more after
 * the ref above: the last answer came after it and undid it).
 */
const ending = new WeakSet<Worker>();

export const hashThread = new HashThread();
