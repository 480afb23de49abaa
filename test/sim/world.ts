// The simulated world: one seeded random generator, one queue of events on a
// simulated clock, and a network between named endpoints that delays, drops,
// duplicates and reorders messages and can be partitioned.
//
// Determinism: everything the code under test does happens inside an event
// callback or in the promise continuations it sets off. The loop runs one
// event, then lets every microtask settle (a setImmediate runs only once the
// microtask queue is empty) before the next event, and nothing else in the
// process schedules work. So a seed fixes the whole schedule, to the event.
import type { Clock, Timer } from '../../src/util/clock.js';

/** sfc32, seeded through splitmix32: small, fast and good enough to shuffle schedules. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** [0, 1) */
  next(): number {
    return this.u32() / 4294967296;
  }

  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }

  hex(bytes: number): string {
    let s = '';
    for (let i = 0; i < bytes; i++) s += (this.u32() & 0xff).toString(16).padStart(2, '0');
    return s;
  }
}

interface Event {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/** A binary heap of events by (time, insertion order). */
class EventQueue {
  private readonly heap: Event[] = [];

  get size(): number {
    return this.heap.length;
  }

  private less(i: number, j: number): boolean {
    const a = this.heap[i]!;
    const b = this.heap[j]!;
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  private swap(i: number, j: number): void {
    const t = this.heap[i]!;
    this.heap[i] = this.heap[j]!;
    this.heap[j] = t;
  }

  push(e: Event): void {
    this.heap.push(e);
    let i = this.heap.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  pop(): Event | undefined {
    const top = this.heap[0];
    const last = this.heap.pop();
    if (this.heap.length > 0 && last) {
      this.heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < this.heap.length && this.less(l, m)) m = l;
        if (r < this.heap.length && this.less(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export interface NetworkFaults {
  /** Probability that a message is lost. */
  drop: number;
  /** Probability that a message is delivered twice. */
  duplicate: number;
  /** Probability that a message takes a long detour (reordering it behind later ones). */
  delay: number;
}

export class World {
  readonly rng: Rng;
  private nowMs = 0;
  private seq = 0;
  private readonly queue = new EventQueue();
  /** Events run so far (a schedule's length, for reports). */
  steps = 0;
  faults: NetworkFaults = { drop: 0, duplicate: 0, delay: 0 };
  /** Unordered endpoint pairs that cannot reach each other ("a|b", a < b). */
  private readonly cut = new Set<string>();
  /** Endpoints whose process is paused until a time (a GC pause, a stalled VM): what they send leaves then. */
  private readonly stalled = new Map<string, number>();
  /** Messages sent, lost, duplicated (for reports). */
  readonly net = { sent: 0, lost: 0, duplicated: 0 };

  constructor(readonly seed: number) {
    this.rng = new Rng(seed);
  }

  get now(): number {
    return this.nowMs;
  }

  at(delayMs: number, fn: () => void): Timer {
    return this.atTime(this.nowMs + Math.max(0, delayMs), fn);
  }

  /** Runs `fn` at simulated time `t` (now, if `t` has passed); events at one time run in the order they were queued. */
  atTime(t: number, fn: () => void): Timer {
    const e: Event = { at: Math.max(t, this.nowMs), seq: this.seq++, fn, cancelled: false };
    this.queue.push(e);
    return { cancel: () => (e.cancelled = true) };
  }

  /** A Clock on simulated time, drawing from the world's generator. */
  readonly clock: Clock = {
    now: () => this.nowMs,
    after: (ms, fn) => this.at(ms, fn),
    soon: (fn) => void this.at(0, fn),
    random: () => this.rng.next(),
    randomHex: (bytes) => this.rng.hex(bytes),
  };

  private pairKey(a: string, b: string): string {
    return a < b ? `${a}|${b}` : `${b}|${a}`;
  }

  partition(a: string, b: string): void {
    this.cut.add(this.pairKey(a, b));
  }

  /** Pauses an endpoint until `untilMs`: messages it sends meanwhile leave when it resumes. */
  stall(endpoint: string, untilMs: number): void {
    this.stalled.set(endpoint, Math.max(untilMs, this.stalled.get(endpoint) ?? 0));
  }

  heal(a?: string, b?: string): void {
    if (a === undefined || b === undefined) this.cut.clear();
    else this.cut.delete(this.pairKey(a, b));
  }

  /** Sends a message: `deliver` runs at the receiver after a network delay, unless the message is lost. */
  send(from: string, to: string, deliver: () => void): void {
    this.net.sent++;
    if (this.cut.has(this.pairKey(from, to)) || this.rng.chance(this.faults.drop)) {
      this.net.lost++;
      return;
    }
    const resume = Math.max(0, (this.stalled.get(from) ?? 0) - this.nowMs);
    this.at(resume + this.latency(), () => {
      // A partition that started while the message was on the wire loses it too.
      if (this.cut.has(this.pairKey(from, to))) {
        this.net.lost++;
        return;
      }
      deliver();
    });
    if (this.rng.chance(this.faults.duplicate)) {
      this.net.duplicated++;
      this.at(this.latency() + this.rng.next() * 20, () => {
        if (!this.cut.has(this.pairKey(from, to))) deliver();
      });
    }
  }

  private latency(): number {
    const base = 0.05 + this.rng.next() * 0.5;
    return this.rng.chance(this.faults.delay) ? base + this.rng.next() * 150 : base;
  }

  /**
   * Runs events in order until `done()` holds after one of them, or until
   * `limitMs` of simulated time. Returns false when the queue ran dry or the
   * limit passed with `done()` still false (nothing left that could finish it).
   */
  async run(done: () => boolean, limitMs: number): Promise<boolean> {
    await settle();
    while (!done()) {
      const e = this.queue.pop();
      if (!e) return false;
      if (e.cancelled) continue;
      if (e.at > limitMs) return false;
      this.nowMs = e.at;
      this.steps++;
      e.fn();
      await settle();
    }
    return true;
  }
}
