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
    if (!e) return undefined;
    if (Date.now() > e.until) {
      this.map.delete(k);
      return undefined;
    }
    return e.v;
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

  clear(): void {
    this.map.clear();
  }
}
