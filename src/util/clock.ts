// Time and chance as something a component is given, not something it reaches
// for: the proposer and its quorum waits read the clock, arm timers and draw
// random numbers only through a Clock, so the deterministic simulator can run
// them on simulated time with a seeded generator, and replay a schedule exactly.
import { randomBytes } from 'node:crypto';

export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the epoch (wall clock), or simulated time. */
  now(): number;
  /** Runs `fn` once after `ms`. */
  after(ms: number, fn: () => void): Timer;
  /** Runs `fn` after the work already queued (I/O that arrived, other callbacks): Node's setImmediate. */
  soon(fn: () => void): void;
  /** A number in [0, 1). */
  random(): number;
  /** `bytes` random bytes as lowercase hex (ids and tags). */
  randomHex(bytes: number): string;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(t) };
  },
  soon(fn) {
    setImmediate(fn);
  },
  random: () => Math.random(),
  randomHex: (bytes) => pooledRandomHex(bytes),
};

// Every change's attempt draws a tag: one randomBytes call each was 4% of a
// mount's CPU while `rm -rf` wrote behind (each call crosses into C++ and
// the kernel's generator). The same bytes from one 4 KiB draw, in order.
let pool = Buffer.alloc(0);
let poolAt = 0;

function pooledRandomHex(bytes: number): string {
  if (poolAt + bytes > pool.length) {
    pool = randomBytes(Math.max(4096, bytes));
    poolAt = 0;
  }
  const hex = pool.toString('hex', poolAt, poolAt + bytes);
  poolAt += bytes;
  return hex;
}

/** Resolves after `ms` on `clock`. */
export function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.after(ms, resolve));
}
