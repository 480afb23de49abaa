// The linearizability checker itself, on known good and known bad histories.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { checkLinearizable, describeEvent } from './helpers/linearizability.js';
import type { CheckResult, Event, Op } from './helpers/linearizability.js';

// ---------------------------------------------------------------------------
// Building histories by hand.

class H {
  readonly events: Event[] = [];
  private add(client: string, op: Op, call: number, ret: number | null, outcome: Event['outcome']): this {
    this.events.push({ id: this.events.length, client, op, call, ret, outcome });
    return this;
  }
  read(c: string, value: string | null, call: number, ret: number, key = 'k'): this {
    return this.add(c, { kind: 'read', key, value }, call, ret, 'ok');
  }
  write(c: string, value: string | null, call: number, ret: number, key = 'k'): this {
    return this.add(c, { kind: 'write', key, value }, call, ret, 'ok');
  }
  cas(c: string, expect: string | null, value: string | null, ok: boolean, call: number, ret: number, key = 'k'): this {
    return this.add(c, { kind: 'cas', key, expect, value, ok }, call, ret, 'ok');
  }
  incr(c: string, before: number, after: number, call: number, ret: number, key = 'k'): this {
    return this.add(c, { kind: 'incr', key, before, after }, call, ret, 'ok');
  }
  unknown(c: string, op: Op, call: number, ret: number | null = null): this {
    return this.add(c, op, call, ret, 'unknown');
  }
  failed(c: string, op: Op, call: number, ret: number): this {
    return this.add(c, op, call, ret, 'fail');
  }
}

function good(t: ExecutionContext, r: CheckResult, note = ''): void {
  if (!r.ok) t.fail(`expected linearizable${note ? ` (${note})` : ''}, got: ${r.message}`);
  else t.pass();
}

function bad(t: ExecutionContext, r: CheckResult, note = ''): void {
  if (r.ok) t.fail(`expected NOT linearizable${note ? ` (${note})` : ''}, got ok`);
  else if (r.inconclusive) t.fail(`expected a verdict${note ? ` (${note})` : ''}, got: ${r.message}`);
  else t.pass();
}

// ---------------------------------------------------------------------------
// Known histories.

test('a sequential history of reads, writes and cas is linearizable', (t) => {
  const h = new H()
    .read('a', null, 0, 1)
    .write('a', '1', 2, 3)
    .read('b', '1', 4, 5)
    .cas('b', '1', '2', true, 6, 7)
    .cas('a', '1', '3', false, 8, 9)
    .read('a', '2', 10, 11)
    .write('b', null, 12, 13)
    .read('a', null, 14, 15);
  good(t, checkLinearizable(h.events));
  t.true(checkLinearizable([]).ok);
});

test('the initial value is honoured', (t) => {
  const h = new H().read('a', 'x', 0, 1);
  good(t, checkLinearizable(h.events, 'x'));
  bad(t, checkLinearizable(h.events));
});

test('overlapping writes may take effect in either order', (t) => {
  const base = () => new H().write('a', '1', 0, 10).write('b', '2', 1, 11);
  good(t, checkLinearizable(base().read('c', '1', 12, 13).events), '2 then 1');
  good(t, checkLinearizable(base().read('c', '2', 12, 13).events), '1 then 2');
  // Reads during the writes may see the order unfold.
  good(t, checkLinearizable(base().read('c', null, 2, 3).read('c', '2', 4, 5).read('c', '1', 6, 7).events));
  // ...but once both have returned, readers agree.
  bad(t, checkLinearizable(base().read('c', '1', 12, 13).read('d', '2', 14, 15).events));
});

test('a read that starts after a write returned cannot see the old value', (t) => {
  const h = new H().write('a', '0', 0, 1).write('a', '1', 2, 3).read('b', '0', 4, 5);
  const r = checkLinearizable(h.events);
  bad(t, r);
  if (!r.ok && !r.inconclusive) {
    t.is(r.key, 'k');
    t.regex(r.message, /not linearizable/);
    t.truthy(r.minimalPrefix);
    t.is(r.minimalPrefix?.at(-1)?.id, 2);
    t.is(r.culprit?.id, 2);
  }
  // The same read overlapping the second write is fine.
  good(t, checkLinearizable(new H().write('a', '0', 0, 1).write('a', '1', 2, 5).read('b', '0', 4, 6).events));
});

test('a stale read after a completed cas is not linearizable', (t) => {
  const h = new H().write('a', 'x', 0, 1).cas('a', 'x', 'y', true, 2, 3).read('b', 'x', 4, 5);
  bad(t, checkLinearizable(h.events));
  // A refused cas changes nothing: reading the old value after it is fine.
  good(t, checkLinearizable(new H().write('a', 'x', 0, 1).cas('a', 'z', 'y', false, 2, 3).read('b', 'x', 4, 5).events));
  // A refused cas whose expectation held is not.
  bad(t, checkLinearizable(new H().write('a', 'x', 0, 1).cas('a', 'x', 'y', false, 2, 3).events));
  // A successful cas whose expectation cannot hold is not.
  bad(t, checkLinearizable(new H().write('a', 'x', 0, 1).cas('a', 'w', 'y', true, 2, 3).events));
});

test('readers that disagree on the order of two writes are not linearizable', (t) => {
  // Both writes overlap everything; A sees 1 then 2, B sees 2 then 1; each
  // reader's reads are sequential and no two reads overlap.
  const h = new H()
    .write('w1', '1', 0, 100)
    .write('w2', '2', 0, 100)
    .read('A', '1', 10, 11)
    .read('B', '2', 12, 13)
    .read('A', '2', 20, 21)
    .read('B', '1', 22, 23);
  bad(t, checkLinearizable(h.events));
  // If both see 1 then 2 it is fine.
  const ok = new H()
    .write('w1', '1', 0, 100)
    .write('w2', '2', 0, 100)
    .read('A', '1', 10, 11)
    .read('B', '1', 12, 13)
    .read('A', '2', 20, 21)
    .read('B', '2', 22, 23);
  good(t, checkLinearizable(ok.events));
});

test('a write with unknown outcome may take effect late, or never', (t) => {
  const lost: Op = { kind: 'write', key: 'k', value: 'lost' };
  // Observed, long after its caller gave up.
  good(t, checkLinearizable(new H().write('a', '1', 0, 1).unknown('b', lost, 2, 3).read('c', '1', 10, 11).read('c', 'lost', 20, 21).events));
  // Never observed.
  good(t, checkLinearizable(new H().write('a', '1', 0, 1).unknown('b', lost, 2).read('c', '1', 10, 11).read('c', '1', 20, 21).events));
  // But not before it was called.
  bad(t, checkLinearizable(new H().write('a', '1', 0, 1).read('c', 'lost', 2, 3).unknown('b', lost, 4).events));
  // And at most once: it cannot explain seeing it, then not, then it again.
  bad(
    t,
    checkLinearizable(
      new H().unknown('b', lost, 0).read('c', 'lost', 2, 3).write('a', '1', 4, 5).read('c', 'lost', 6, 7).events,
    ),
  );
  // An unknown read is dropped whatever it says.
  good(t, checkLinearizable(new H().write('a', '1', 0, 1).unknown('b', { kind: 'read', key: 'k', value: 'nonsense' }, 2).events));
});

test('unknown cas and incr happen fully or not at all', (t) => {
  const cas: Op = { kind: 'cas', key: 'k', expect: '1', value: '2', ok: false };
  good(t, checkLinearizable(new H().write('a', '1', 0, 1).unknown('b', cas, 2).read('c', '2', 5, 6).events));
  good(t, checkLinearizable(new H().write('a', '1', 0, 1).unknown('b', cas, 2).read('c', '1', 5, 6).events));
  // It can only take effect if its expectation holds.
  bad(t, checkLinearizable(new H().write('a', '0', 0, 1).unknown('b', cas, 2).read('c', '2', 5, 6).events));
  const incr: Op = { kind: 'incr', key: 'n', before: 1, after: 2 };
  good(t, checkLinearizable(new H().incr('a', 0, 1, 0, 1, 'n').unknown('b', incr, 2).read('c', '2', 5, 6, 'n').events));
  good(t, checkLinearizable(new H().incr('a', 0, 1, 0, 1, 'n').unknown('b', incr, 2).incr('c', 1, 2, 5, 6, 'n').events));
  bad(t, checkLinearizable(new H().incr('a', 0, 1, 0, 1, 'n').unknown('b', incr, 2).incr('c', 1, 2, 5, 6, 'n').read('d', '3', 7, 8, 'n').events));
});

test('failed operations are ignored', (t) => {
  const h = new H().write('a', '1', 0, 1).failed('b', { kind: 'write', key: 'k', value: '2' }, 2, 3).read('c', '1', 4, 5);
  good(t, checkLinearizable(h.events));
  h.failed('b', { kind: 'read', key: 'k', value: 'garbage' }, 6, 7);
  h.failed('b', { kind: 'incr', key: 'k', before: 5, after: 6 }, 6, 7);
  good(t, checkLinearizable(h.events));
  // A failed write's value cannot be observed.
  bad(t, checkLinearizable(h.read('c', '2', 8, 9).events));
});

test('concurrent increments forming a chain are linearizable', (t) => {
  const h = new H();
  const n = 8;
  // All overlap one another; their befores are a permutation of 0..n-1.
  const order = [3, 0, 6, 1, 7, 2, 5, 4];
  for (let i = 0; i < n; i++) h.incr(`c${i}`, order[i] as number, (order[i] as number) + 1, i, 100 + i, 'n');
  h.read('r', String(n), 200, 201, 'n');
  good(t, checkLinearizable(h.events));
  // A read in the middle sees some point of the chain.
  good(t, checkLinearizable([...h.events, { id: 99, client: 'm', op: { kind: 'read', key: 'n', value: '5' }, call: 50, ret: 51, outcome: 'ok' }]));
  // The final read must see the end of the chain.
  bad(t, checkLinearizable(new H().incr('a', 0, 1, 0, 10, 'n').incr('b', 1, 2, 0, 10, 'n').read('c', '1', 11, 12, 'n').events));
});

test('two increments both observing 0 is a lost update', (t) => {
  const h = new H().incr('a', 0, 1, 0, 10, 'n').incr('b', 0, 1, 1, 11, 'n');
  bad(t, checkLinearizable(h.events));
  // Even sequential ones.
  bad(t, checkLinearizable(new H().incr('a', 0, 1, 0, 1, 'n').incr('b', 0, 1, 2, 3, 'n').events));
});

test('keys are independent', (t) => {
  const h = new H().write('a', '1', 0, 1, 'x').write('a', '1', 2, 3, 'y').read('b', '1', 4, 5, 'x').read('b', '1', 6, 7, 'y');
  good(t, checkLinearizable(h.events));
  const r = checkLinearizable(h.read('b', null, 8, 9, 'y').events);
  bad(t, r);
  if (!r.ok) t.is(r.key, 'y');
});

test('operations whose intervals touch count as concurrent', (t) => {
  // The write's return and the read's call share a timestamp.
  good(t, checkLinearizable(new H().write('a', '0', 0, 1).write('a', '1', 2, 5).read('b', '0', 5, 6).events));
  bad(t, checkLinearizable(new H().write('a', '0', 0, 1).write('a', '1', 2, 5).read('b', '0', 5.001, 6).events));
});

test('malformed events are rejected', (t) => {
  const op: Op = { kind: 'read', key: 'k', value: null };
  t.throws(() => checkLinearizable([{ id: 0, client: 'a', op, call: 0, ret: null, outcome: 'ok' }]), { instanceOf: RangeError });
  t.throws(() => checkLinearizable([{ id: 0, client: 'a', op, call: 5, ret: 4, outcome: 'ok' }]), { instanceOf: RangeError });
});

test('an exhausted budget is reported as inconclusive, not as a violation', (t) => {
  // Many writes overlapping one another, then a read that nothing can explain:
  // the search must try every order of the writes (w writes: about w * 2^(w-1)
  // distinct (set, state) pairs) before it can say no.
  const history = (w: number) => {
    const h = new H();
    for (let i = 0; i < w; i++) h.write(`w${i}`, String(i), 0, 100);
    return h.read('r', 'never', 101, 102).events;
  };
  const r = checkLinearizable(history(30), null, { maxSteps: 10_000 });
  t.false(r.ok);
  if (!r.ok) {
    t.true(r.inconclusive);
    t.is(r.key, 'k');
    t.regex(r.message, /budget/);
  }
  // Ten at once is within reach of the default budget.
  bad(t, checkLinearizable(history(10)));
});

// ---------------------------------------------------------------------------
// Randomized: a simulated atomic register is always linearizable; planted
// violations are always found.

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

interface SimOp {
  event: Event;
  /** Linearization point, or null if it never takes effect. */
  at: number | null;
}

/**
 * Clients run operations one after another; each takes effect atomically at a
 * point inside its interval (an unknown-outcome one possibly long after its
 * client gave up, or never; a failed one never). Keys 'x' and 'y' get reads,
 * writes and cas of unique values; key 'n' gets reads and increments.
 */
function simulate(seed: number, nOps: number, nClients: number, keys = ['x', 'y', 'n'], pUnknown = 0.05): Event[] {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const free = Array.from({ length: nClients }, () => rnd() * 3);
  const recent = new Map<string, Array<string | null>>(keys.map((k) => [k, [null]]));
  const sims: SimOp[] = [];
  for (let id = 0; id < nOps; id++) {
    let c = 0;
    for (let i = 1; i < nClients; i++) if ((free[i] as number) < (free[c] as number)) c = i;
    const call = (free[c] as number) + rnd() * 2;
    const key = pick(keys);
    const roll = rnd();
    const outcome: Event['outcome'] = roll < pUnknown ? 'unknown' : roll < pUnknown + 0.03 ? 'fail' : 'ok';
    const at = outcome === 'fail' || (outcome === 'unknown' && rnd() < 0.5) ? null : call + rnd() * (outcome === 'unknown' ? 40 : 4);
    const ret = outcome === 'unknown' ? (rnd() < 0.5 ? null : call + 5) : call + 4 + rnd() * 2;
    free[c] = ret ?? call + 5;
    let op: Op;
    const k = rnd();
    if (key === 'n') op = k < 0.4 ? { kind: 'read', key, value: null } : { kind: 'incr', key, before: 0, after: 0 };
    else if (k < 0.4) op = { kind: 'read', key, value: null };
    else {
      const value = `${key}${id}`;
      const prior = recent.get(key) as Array<string | null>;
      op = k < 0.7 ? { kind: 'write', key, value } : { kind: 'cas', key, expect: pick(prior.slice(-3)), value, ok: false };
      prior.push(value);
    }
    sims.push({ event: { id, client: `c${c}`, op, call, ret, outcome }, at });
  }
  // Apply in linearization order to one atomic variable per key, filling in results.
  const reg = new Map<string, string | null>();
  const applied = sims.filter((s) => s.at !== null).sort((a, b) => (a.at as number) - (b.at as number));
  for (const s of applied) {
    const op = s.event.op;
    const cur = reg.get(op.key) ?? null;
    switch (op.kind) {
      case 'read':
        op.value = cur;
        break;
      case 'write':
        reg.set(op.key, op.value);
        break;
      case 'cas':
        op.ok = cur === op.expect;
        if (op.ok) reg.set(op.key, op.value);
        break;
      case 'incr':
        op.before = cur === null ? 0 : Number(cur);
        op.after = op.before + 1;
        reg.set(op.key, String(op.after));
        break;
    }
  }
  // An unknown incr that never happened still had an intention.
  for (const s of sims) {
    if (s.at === null && s.event.op.kind === 'incr') {
      s.event.op.before = Math.floor(rnd() * 5);
      s.event.op.after = s.event.op.before + 1;
    }
  }
  return sims.map((s) => s.event);
}

const clone = (events: Event[]): Event[] => events.map((e) => ({ ...e, op: { ...e.op } }));
const definite = (e: Event) => e.outcome === 'ok';
const stores = (e: Event): string | null | undefined =>
  e.op.kind === 'write' || (e.op.kind === 'cas' && e.op.ok) ? e.op.value : undefined;

/** A read now returns a value nobody ever wrote. */
function plantPhantom(events: Event[], rnd: () => number): Event[] | undefined {
  const reads = events.filter((e) => definite(e) && e.op.kind === 'read');
  if (reads.length === 0) return undefined;
  const out = clone(events);
  const victim = reads[Math.floor(rnd() * reads.length)] as Event;
  const op = (out[victim.id] as Event).op;
  if (op.kind === 'read') op.value = 'phantom';
  return out;
}

/**
 * A read R now returns the value of a write W1 that provably was overwritten: W1
 * returned before a write W2 was called, and W2 returned before R was called;
 * values are unique, so nothing else could have stored W1's value again.
 */
function plantStale(events: Event[], rnd: () => number): Event[] | undefined {
  const reads = events.filter((e) => definite(e) && e.op.kind === 'read' && e.op.key !== 'n');
  const start = Math.floor(rnd() * Math.max(1, reads.length));
  for (let j = 0; j < reads.length; j++) {
    const r = reads[(start + j) % reads.length] as Event;
    const writers = events.filter((e) => definite(e) && e.op.key === r.op.key && stores(e) !== undefined);
    let w2: Event | undefined;
    for (const w of writers) if ((w.ret as number) < r.call && (!w2 || w.call > w2.call)) w2 = w;
    if (!w2) continue;
    const w1s = writers.filter((w) => (w.ret as number) < (w2 as Event).call);
    if (w1s.length === 0) continue;
    const w1 = w1s[Math.floor(rnd() * w1s.length)] as Event;
    const out = clone(events);
    const op = (out[r.id] as Event).op;
    if (op.kind === 'read') op.value = stores(w1) as string | null;
    return out;
  }
  return undefined;
}

/** An increment I2 that started after I1 returned now claims to have seen what I1 saw. */
function plantLostUpdate(events: Event[], rnd: () => number): Event[] | undefined {
  const incrs = events.filter((e) => definite(e) && e.op.kind === 'incr');
  const start = Math.floor(rnd() * Math.max(1, incrs.length));
  for (let j = 0; j < incrs.length; j++) {
    const i2 = incrs[(start + j) % incrs.length] as Event;
    const i1 = incrs.find((e) => (e.ret as number) < i2.call);
    if (!i1 || i1.op.kind !== 'incr') continue;
    const out = clone(events);
    const op = (out[i2.id] as Event).op;
    if (op.kind === 'incr') {
      op.before = i1.op.before;
      op.after = i1.op.after;
    }
    return out;
  }
  return undefined;
}

/**
 * The history as it stood at time `at`: events called later are left out; those
 * still running may or may not take effect (a refused cas, which has no effect,
 * is left out).
 */
function cutAt(events: Event[], at: number): Event[] {
  const out: Event[] = [];
  for (const e of events) {
    if (e.call > at) continue;
    if (e.outcome !== 'ok' || (e.ret as number) <= at) out.push(e);
    else if (!(e.op.kind === 'cas' && !e.op.ok)) out.push({ ...e, ret: null, outcome: 'unknown' });
  }
  return out;
}

/** The reported shortest failing prefix fails, and cutting any earlier does not. */
function checkMinimal(events: Event[], r: CheckResult, initial: string | null = null): string | undefined {
  if (r.ok || r.inconclusive) return 'no violation';
  if (!r.culprit || !r.minimalPrefix) return 'no culprit or minimal prefix';
  const at = r.culprit.ret as number;
  const keyed = events.filter((e) => e.op.key === r.key);
  if (checkLinearizable(cutAt(keyed, at), initial).ok) return `cut at the culprit's return (${at}) is linearizable`;
  let before = Number.NEGATIVE_INFINITY;
  for (const e of keyed) if (e.outcome === 'ok' && (e.ret as number) < at && (e.ret as number) > before) before = e.ret as number;
  if (before > Number.NEGATIVE_INFINITY && !checkLinearizable(cutAt(keyed, before), initial).ok) return `cut before the culprit (${before}) is not linearizable`;
  const expected = keyed.filter((e) => e.call <= at && e.outcome !== 'fail' && !(e.outcome === 'unknown' && e.op.kind === 'read'));
  if (r.minimalPrefix.length !== expected.length) return `minimal prefix has ${r.minimalPrefix.length} events, expected ${expected.length}`;
  return undefined;
}

test('random histories of an atomic register are linearizable; planted violations are found', (t) => {
  const planters = { phantom: plantPhantom, stale: plantStale, 'lost update': plantLostUpdate };
  const planted: Record<string, number> = { phantom: 0, stale: 0, 'lost update': 0 };
  const base = 0x5eed;
  for (let s = 0; s < 200; s++) {
    const seed = base + s;
    // 2 to 6 clients; up to 30% of operations of unknown outcome.
    const events = simulate(seed, 200, 2 + (s % 5), ['x', 'y', 'n'], [0.05, 0.05, 0.15, 0.3][s % 4] as number);
    const r = checkLinearizable(events);
    if (!r.ok) {
      t.fail(`seed ${seed}: simulated history judged not linearizable: ${r.message}`);
      return;
    }
    const rnd = prng(seed ^ 0xbad);
    for (const [name, plant] of Object.entries(planters)) {
      const mutated = plant(events, rnd);
      if (!mutated) continue;
      planted[name] = (planted[name] as number) + 1;
      const m = checkLinearizable(mutated);
      if (m.ok || m.inconclusive) {
        t.fail(`seed ${seed}: planted ${name} not found: ${m.ok ? 'judged linearizable' : m.message}`);
        return;
      }
      const wrong = checkMinimal(mutated, m);
      if (wrong) {
        t.fail(`seed ${seed}: planted ${name}: ${wrong}; ${m.message}`);
        return;
      }
    }
  }
  t.log('planted violations found:', planted);
  for (const [name, n] of Object.entries(planted)) t.true(n >= 100, `only ${n} histories had a ${name} planted`);
});

/** Linearizability by definition, by brute force: for tiny histories only. */
function bruteForce(events: Event[], initial: string | null): boolean {
  const ops = events.filter((e) => e.outcome === 'ok' || (e.outcome === 'unknown' && e.op.kind !== 'read'));
  const done = ops.map(() => false);
  const definite = (e: Event) => e.outcome === 'ok';
  const apply = (e: Event, s: string | null): { ok: boolean; s: string | null } => {
    const op = e.op;
    switch (op.kind) {
      case 'read':
        return { ok: s === op.value, s };
      case 'write':
        return { ok: true, s: op.value };
      case 'cas':
        if (op.ok || e.outcome === 'unknown') return s === op.expect ? { ok: true, s: op.value } : { ok: false, s };
        return { ok: s !== op.expect, s };
      case 'incr': {
        const n = s === null ? 0 : s.trim() === '' ? Number.NaN : Number(s);
        return n === op.before ? { ok: true, s: String(op.after) } : { ok: false, s };
      }
    }
  };
  const go = (s: string | null): boolean => {
    if (ops.every((e, i) => done[i] || !definite(e))) return true;
    for (let i = 0; i < ops.length; i++) {
      const x = ops[i] as Event;
      if (done[i]) continue;
      // x can go next unless some pending definite op returned before x was called.
      if (ops.some((y, k) => !done[k] && definite(y) && (y.ret as number) < x.call)) continue;
      const r = apply(x, s);
      if (!r.ok) continue;
      done[i] = true;
      const found = go(r.s);
      done[i] = false;
      if (found) return true;
    }
    return false;
  };
  return go(initial);
}

test('on tiny random histories the checker agrees with brute force', (t) => {
  const values = [null, '0', '1', '2'];
  const verdicts = { good: 0, bad: 0 };
  for (let seed = 1; seed <= 6000; seed++) {
    const rnd = prng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
    const n = 2 + Math.floor(rnd() * 8);
    const pUnknown = [0.2, 0.4, 0.6][seed % 3] as number;
    const events: Event[] = [];
    for (let id = 0; id < n; id++) {
      const call = Math.floor(rnd() * 10);
      const ret = call + Math.floor(rnd() * 5);
      const k = rnd();
      const op: Op =
        k < 0.3
          ? { kind: 'read', key: 'k', value: pick(values) }
          : k < 0.55
            ? { kind: 'write', key: 'k', value: pick(values) }
            : k < 0.8
              ? { kind: 'cas', key: 'k', expect: pick(values), value: pick(values), ok: rnd() < 0.6 }
              : { kind: 'incr', key: 'k', before: Math.floor(rnd() * 3), after: Math.floor(rnd() * 3) };
      const o = rnd();
      const outcome: Event['outcome'] = o < 0.1 ? 'fail' : o < 0.1 + pUnknown ? 'unknown' : 'ok';
      events.push({ id, client: `c${id}`, op, call, ret: outcome === 'unknown' && rnd() < 0.5 ? null : ret, outcome });
    }
    const initial = pick(values);
    const expected = bruteForce(events, initial);
    const r = checkLinearizable(events, initial);
    if (!r.ok && r.inconclusive) {
      t.fail(`seed ${seed}: inconclusive`);
      return;
    }
    if (r.ok !== expected) {
      t.fail(`seed ${seed}: checker says ${r.ok ? 'linearizable' : 'not'}, brute force says ${expected ? 'linearizable' : 'not'}:\n${events.map(describeEvent).join('\n')}`);
      return;
    }
    if (!r.ok) {
      const wrong = checkMinimal(events, r, initial);
      if (wrong) {
        t.fail(`seed ${seed}: ${wrong}`);
        return;
      }
    }
    verdicts[expected ? 'good' : 'bad']++;
  }
  t.log(verdicts);
  t.true(verdicts.good > 500 && verdicts.bad > 500);
});

test('3000-operation histories get a verdict', (t) => {
  const events = simulate(424242, 3000, 5, ['x']);
  const r = checkLinearizable(events);
  good(t, r, 'seed 424242');
  const incrs = simulate(434343, 3000, 5, ['n']);
  good(t, checkLinearizable(incrs), 'seed 434343');
  const stale = plantStale(events, prng(1));
  t.truthy(stale);
  if (stale) {
    const m = checkLinearizable(stale);
    bad(t, m, 'stale read in 3000 ops');
    if (!m.ok && !m.inconclusive) t.log(m.message.split('\n').slice(0, 2).join('\n'));
    t.is(checkMinimal(stale, m), undefined);
  }
  // Ten clients, a quarter of the operations of unknown outcome.
  const rough = simulate(454545, 3000, 10, ['x'], 0.25);
  good(t, checkLinearizable(rough), 'seed 454545');
  const roughStale = plantStale(rough, prng(2));
  t.truthy(roughStale);
  if (roughStale) bad(t, checkLinearizable(roughStale), 'stale read in 3000 ops, 10 clients, 25% unknown');
});

test('describeEvent is readable', (t) => {
  t.is(
    describeEvent({ id: 3, client: 'p1', op: { kind: 'cas', key: 'k', expect: null, value: 'v', ok: true }, call: 1, ret: 2, outcome: 'ok' }),
    '#3 p1: cas null -> "v": ok [1, 2]',
  );
  t.is(
    describeEvent({ id: 4, client: 'p2', op: { kind: 'incr', key: 'k', before: 1, after: 2 }, call: 1, ret: null, outcome: 'unknown' }),
    '#4 p2: incr 1 -> 2 [1, ?] (unknown)',
  );
});
