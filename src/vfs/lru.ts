// A byte-bounded LRU map (Map keeps insertion order; a hit re-inserts).
export class ByteLru<K, V extends { length: number }> {
  private readonly map = new Map<K, V>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(k: K): V | undefined {
    const v = this.map.get(k);
    if (v !== undefined) {
      this.map.delete(k);
      this.map.set(k, v);
    }
    return v;
  }

  has(k: K): boolean {
    return this.map.has(k);
  }

  set(k: K, v: V): void {
    const old = this.map.get(k);
    if (old !== undefined) {
      this.bytes -= old.length;
      this.map.delete(k);
    }
    if (v.length > this.maxBytes) return;
    this.map.set(k, v);
    this.bytes += v.length;
    while (this.bytes > this.maxBytes) {
      const [oldest, ov] = this.map.entries().next().value as [K, V];
      this.map.delete(oldest);
      this.bytes -= ov.length;
    }
  }

  get size(): number {
    return this.bytes;
  }
}

/** A small TTL cache: entries expire after `ttlMs`; a bounded count. */
export class TtlCache<K, V> {
  private readonly map = new Map<K, { v: V; until: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly max = 100_000,
  ) {}

  get(k: K): V | undefined {
    const e = this.map.get(k);
    if (!e || Date.now() > e.until) return undefined;
    return e.v;
  }

  /** The last value set, expired or not (until evicted or deleted): the answer of last resort. */
  getStale(k: K): V | undefined {
    return this.map.get(k)?.v;
  }

  set(k: K, v: V): void {
    if (this.ttlMs <= 0) return;
    this.map.delete(k);
    this.map.set(k, { v, until: Date.now() + this.ttlMs });
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as K);
  }

  delete(k: K): void {
    this.map.delete(k);
  }

  /** Replaces a live value without extending its life (a local edit must not outlive the TTL). */
  update(k: K, v: V): void {
    const e = this.map.get(k);
    if (e && Date.now() <= e.until) e.v = v;
  }

  /** No longer an answer, but still the last value seen (getStale). */
  expire(k: K): void {
    const e = this.map.get(k);
    if (e) e.until = 0;
  }

  clear(): void {
    this.map.clear();
  }
}

/**
 * The last values set, by key, with no expiry: at most `max` keys and at most
 * `maxWeight` in all (the oldest go first).
 */
export class LastSeen<K, V> {
  private readonly map = new Map<K, { v: V; w: number }>();
  private weight = 0;

  constructor(
    private readonly max: number,
    private readonly maxWeight = Infinity,
    private readonly weigh: (v: V) => number = () => 1,
  ) {}

  get(k: K): V | undefined {
    return this.map.get(k)?.v;
  }

  set(k: K, v: V): void {
    this.delete(k);
    const w = this.weigh(v);
    if (w > this.maxWeight) return;
    this.map.set(k, { v, w });
    this.weight += w;
    while (this.map.size > this.max || this.weight > this.maxWeight) this.delete(this.map.keys().next().value as K);
  }

  delete(k: K): void {
    const e = this.map.get(k);
    if (!e) return;
    this.map.delete(k);
    this.weight -= e.w;
  }
}
