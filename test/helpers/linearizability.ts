// Linearizability checker for histories of register operations.
//
// A history is a list of events, each an operation on one key with the time it
// was called and the time it returned. Registers compose (P-compositionality):
// a history is linearizable iff the sub-history of every key is, so each key is
// checked on its own.
//
// The search for one key is Wing & Gong's, with Lowe's improvements as used by
// the Porcupine checker:
//   - call and return entries are sorted by time into one doubly linked list;
//   - the search walks the list from the front, and at a call entry tries to
//     linearize that operation next (apply it to the sequential register); on
//     success the call and its return are unlinked ("lifted") and the walk
//     restarts from the front; on reaching a return entry, the operation whose
//     return it is was not linearized in time, so the search backtracks (pops
//     the last linearized operation, relinks it and tries the entry after it);
//   - every (set of linearized operations, register state) pair that has been
//     explored is remembered, and is never explored again: what remains to be
//     done depends only on that pair.
//
// Timestamps: a call and a return with the same timestamp are ordered call
// first, so operations whose intervals merely touch count as concurrent (a
// coarse clock can never produce a false "not linearizable").
//
// Outcomes:
//   'ok'      the operation completed with the result recorded in `op`;
//   'fail'    it definitely took no effect: ignored;
//   'unknown' it may or may not have taken effect: it gets a return time of
//             +infinity and may be linearized anywhere after its call, or not
//             at all. An unknown read is dropped; an unknown cas is a cas that
//             succeeds if it happens (a failed cas has no effect, which is the
//             same as not happening); an unknown incr is "if it happened it
//             observed `before` and stored `after`" (a cas before -> after).

export type Op =
  | { kind: 'read'; key: string; value: string | null }
  | { kind: 'write'; key: string; value: string | null }
  | { kind: 'cas'; key: string; expect: string | null; value: string | null; ok: boolean }
  | { kind: 'incr'; key: string; before: number; after: number };

export interface Event {
  id: number;
  client: string;
  op: Op;
  call: number;
  ret: number | null;
  outcome: 'ok' | 'fail' | 'unknown';
}

export type CheckResult =
  | { ok: true }
  | {
      ok: false;
      inconclusive: false;
      key: string;
      message: string;
      /**
       * The shortest prefix of the key's history that is not linearizable: the
       * events (ignored ones left out) called by the time `culprit` returns. Cut
       * any earlier, the history is linearizable.
       */
      minimalPrefix?: Event[];
      /** The event whose return makes the history non-linearizable. */
      culprit?: Event;
    }
  | { ok: false; inconclusive: true; key: string; message: string };

export interface CheckOptions {
  /** Search steps allowed per key before giving up (inconclusive). Default 5,000,000. */
  maxSteps?: number;
}

export const DEFAULT_MAX_STEPS = 5_000_000;

/**
 * Checks that `events` are linearizable with respect to a set of registers, one
 * per key, each starting at `initial`. Returns the first key found not to be
 * linearizable; if no key is found to violate but the search of some key ran out
 * of budget, returns `inconclusive: true` for it.
 */
export function checkLinearizable(events: Event[], initial: string | null = null, options: CheckOptions = {}): CheckResult {
  const maxSteps = options.maxSteps ?? DEFAULT_MAX_STEPS;
  const byKey = new Map<string, Event[]>();
  for (const e of events) {
    validate(e);
    let list = byKey.get(e.op.key);
    if (!list) byKey.set(e.op.key, (list = []));
    list.push(e);
  }
  let inconclusive: CheckResult | undefined;
  for (const [key, list] of byKey) {
    const r = checkKey(key, list, initial, maxSteps);
    if (r.ok) continue;
    if (!r.inconclusive) return r;
    inconclusive ??= r;
  }
  return inconclusive ?? { ok: true };
}

function validate(e: Event): void {
  const where = `event #${e.id} (client ${e.client})`;
  if (!Number.isFinite(e.call)) throw new RangeError(`${where}: call time must be a finite number`);
  if (e.outcome === 'ok') {
    if (e.ret === null || !Number.isFinite(e.ret)) throw new RangeError(`${where}: an 'ok' event needs a finite return time`);
    if (e.ret < e.call) throw new RangeError(`${where}: returns (${e.ret}) before it is called (${e.call})`);
  }
  if (e.outcome !== 'ok' && e.outcome !== 'fail' && e.outcome !== 'unknown') {
    throw new RangeError(`${where}: bad outcome ${String(e.outcome)}`);
  }
}

// ---------------------------------------------------------------------------
// Preparation: the operations of one key, in the form the search uses.

const READ = 0;
const WRITE = 1;
const CAS_OK = 2;
const CAS_FAIL = 3;
const INCR = 4;

interface Prepared {
  event: Event;
  kind: number;
  /** read: value; write: value; cas: expect (state ids); incr: before (a number). */
  a: number;
  /** cas: new value; incr: after (state ids). */
  b: number;
  call: number;
  /** +Infinity for an operation that may be linearized late or never. */
  ret: number;
  /** Never changes the state, wherever it is valid. */
  pure: boolean;
}

/** Register values are interned: the search state is a small integer. */
class States {
  readonly ids = new Map<string | null, number>();
  readonly values: Array<string | null> = [];
  readonly nums: number[] = [];
  id(v: string | null): number {
    let id = this.ids.get(v);
    if (id === undefined) {
      id = this.values.length;
      this.ids.set(v, id);
      this.values.push(v);
      this.nums.push(toNumber(v));
    }
    return id;
  }
}

function toNumber(v: string | null): number {
  if (v === null) return 0;
  if (v.trim() === '') return Number.NaN;
  return Number(v);
}

function prepare(events: Event[], states: States): Prepared[] {
  const out: Prepared[] = [];
  for (const event of events) {
    if (event.outcome === 'fail') continue;
    const unknown = event.outcome === 'unknown';
    const op = event.op;
    const ret = unknown ? Number.POSITIVE_INFINITY : (event.ret as number);
    const base = { event, call: event.call, ret, pure: false };
    switch (op.kind) {
      case 'read':
        if (unknown) break;
        out.push({ ...base, kind: READ, a: states.id(op.value), b: -1, pure: true });
        break;
      case 'write':
        out.push({ ...base, kind: WRITE, a: states.id(op.value), b: -1 });
        break;
      case 'cas':
        if (unknown || op.ok) {
          const a = states.id(op.expect);
          const b = states.id(op.value);
          out.push({ ...base, kind: CAS_OK, a, b, pure: a === b });
        } else {
          out.push({ ...base, kind: CAS_FAIL, a: states.id(op.expect), b: -1, pure: true });
        }
        break;
      case 'incr':
        out.push({ ...base, kind: INCR, a: op.before, b: states.id(String(op.after)) });
        break;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// The search.
//
// Operations with a finite return ("definite") are entries of the linked list.
// Operations that may be omitted (unknown outcome, or still running at the cut of
// a prefix) have no return entry and are kept apart, in call order: at each point
// the search tries the definite candidates first (calls before the first return
// entry of the list), then the optional ones called by then.
//
// On top of the memoization, these reductions keep the search small, notably
// with many concurrent reads and many operations of unknown outcome:
//
// - Dominance. Reaching the same definite set and state with a subset of the
//   optional operations used is at least as good (the others can still be used
//   or left out), so a point is pruned if it was reached before with a subset.
//
// - Ghosts. Call an optional operation live if its written value is observed
//   (read, expected by a successful cas, seen by an incr) by a definite
//   operation or by a live optional operation; the others are ghosts. A ghost
//   matters only to a refused cas, which needs the state to differ from its
//   `expect`. Take a completion from some point, in state S, that starts with a
//   ghost, and the run that starts there of ghosts and refused cas: only a write
//   can follow a ghost's value otherwise, so the run ends with a write or at the
//   end. If no refused cas in the run expects S, its ghosts can be dropped;
//   otherwise the ghosts before the first one that does can be moved, in order,
//   to just before it: there it is a candidate that expects the current state S.
//   (The refused cas moved ahead of them then see S, which they do not expect;
//   if there are any, the point has a forced step, below.) So ghosts are only
//   tried when a candidate refused cas expects the current state, and never on a
//   key without refused cas.
//
// - Forced steps. A definite candidate that is valid now and leaves the state
//   as it is wherever it is valid (a read, a refused cas, a cas of a value to
//   itself) can be taken first in some completion if there is any completion:
//   moving it to the front changes no state another operation sees, and breaks
//   no real-time order, since no pending operation returned before it was
//   called. At a point with such a candidate, it is the only step tried.
//
// - Twins. Optional operations with the same effect are interchangeable once
//   both are called (neither ever stops being a candidate): only the earliest
//   called of those still pending is tried.
//
// - Unseen values. Values no operation can tell apart (never read, expected or
//   seen by an incr, nor expected by a refused cas) are all one state.
//
// Each reduction keeps, at every point, the first step of some completion among
// the steps tried (or of some path to a point as far as any can reach), so the
// search still finds a linearization if there is one, and still reaches the
// furthest point that any search could.

/**
 * `culprit`, on 'fail': at the furthest point the search reached, the definite
 * operation with the earliest return not yet linearized. Every prefix of the
 * history cut before its return is linearizable, the one cut at its return is not
 * (see checkKey).
 */
type SearchResult = { verdict: 'ok' | 'fail' | 'budget'; steps: number; culprit?: Prepared };

function written(o: Prepared): number {
  return o.kind === WRITE ? o.a : o.b;
}

function search(allOps: Prepared[], init: number, allNums: readonly number[], maxSteps: number): SearchResult {
  const INF = Number.POSITIVE_INFINITY;

  // Values that some operation can tell apart: read, expected by a cas, seen by
  // an incr (as a number), or expected by a refused cas. No operation can tell
  // the others from one another, so they are all one state, UNSEEN.
  const observedIds = new Set<number>();
  const observedNums = new Set<number>();
  const refusedExpects = new Set<number>();
  for (const o of allOps) {
    if (o.kind === READ || o.kind === CAS_OK) observedIds.add(o.a);
    else if (o.kind === INCR) observedNums.add(o.a);
    else if (o.kind === CAS_FAIL) refusedExpects.add(o.a);
  }
  const UNSEEN = allNums.length;
  const nums = [...allNums, Number.NaN];
  const seenAs = (id: number) =>
    observedIds.has(id) || observedNums.has(nums[id] as number) || refusedExpects.has(id) ? id : UNSEEN;
  const ops = allOps.map((o): Prepared => {
    switch (o.kind) {
      case WRITE:
        return { ...o, a: seenAs(o.a) };
      case CAS_OK:
      case INCR:
        return { ...o, b: seenAs(o.b) };
      default:
        return o;
    }
  });
  const initial = seenAs(init);

  const defs = ops.filter((o) => o.ret !== INF);
  const opts = ops.filter((o) => o.ret === INF);
  const d = defs.length;
  const u = opts.length;

  // Which optional operations are ghosts.
  const hasRefusedCas = refusedExpects.size > 0;
  const liveIds = new Set<number>();
  const liveNums = new Set<number>();
  const observe = (o: Prepared) => {
    if (o.kind === READ || o.kind === CAS_OK) liveIds.add(o.a);
    else if (o.kind === INCR) liveNums.add(o.a);
  };
  for (const o of defs) observe(o);
  const isGhost = opts.map(() => true);
  for (let changed = true; changed; ) {
    changed = false;
    for (let k = 0; k < u; k++) {
      const o = opts[k] as Prepared;
      const w = written(o);
      if (isGhost[k] && (liveIds.has(w) || liveNums.has(nums[w] as number))) {
        isGhost[k] = false;
        observe(o);
        changed = true;
      }
    }
  }

  // The list of definite entries: operation i has call node 2i+1 and return node
  // 2i+2; node 0 is the head; -1 is the end.
  const nodes: number[] = [];
  for (let i = 0; i < d; i++) nodes.push(2 * i + 1, 2 * i + 2);
  const time = (node: number) => {
    const o = defs[(node - 1) >> 1] as Prepared;
    return node & 1 ? o.call : o.ret;
  };
  nodes.sort((x, y) => time(x) - time(y) || (y & 1) - (x & 1) || x - y);
  const next = new Int32Array(2 * d + 1).fill(-1);
  const prev = new Int32Array(2 * d + 1).fill(-1);
  let last = 0;
  for (const node of nodes) {
    next[last] = node;
    prev[node] = last;
    last = node;
  }
  const unlink = (x: number) => {
    const p = prev[x] as number;
    const q = next[x] as number;
    next[p] = q;
    if (q !== -1) prev[q] = p;
  };
  const relink = (x: number) => {
    const p = prev[x] as number;
    const q = next[x] as number;
    next[p] = x;
    if (q !== -1) prev[q] = x;
  };

  // Two lists of pending optional operations, in call order: observed ones (head
  // u) and ghosts (head u+1). Ghosts go nowhere on a key without refused cas.
  const optNext = new Int32Array(u + 2).fill(-1);
  const optPrev = new Int32Array(u + 2).fill(-1);
  const tails = [u, u + 1];
  for (let j = 0; j < u; j++) {
    const list = isGhost[j] ? 1 : 0;
    if (list === 1 && !hasRefusedCas) continue;
    const t = tails[list] as number;
    optNext[t] = j;
    optPrev[j] = t;
    tails[list] = j;
  }
  const optUnlink = (x: number) => {
    const p = optPrev[x] as number;
    const q = optNext[x] as number;
    optNext[p] = q;
    if (q !== -1) optPrev[q] = p;
  };
  const optRelink = (x: number) => {
    const p = optPrev[x] as number;
    const q = optNext[x] as number;
    optNext[p] = x;
    if (q !== -1) optPrev[q] = x;
  };

  // Twins: the previous optional operation with the same effect.
  const prevTwin = new Int32Array(u).fill(-1);
  {
    const lastOf = new Map<string, number>();
    for (let k = 0; k < u; k++) {
      const o = opts[k] as Prepared;
      const sig = `${o.kind}:${o.a}:${o.b}`;
      prevTwin[k] = lastOf.get(sig) ?? -1;
      lastOf.set(sig, k);
    }
  }

  // The set of linearized definite operations, as 16-bit chunks. They are
  // numbered in call order, so the set is mostly "all of the first k": the cache
  // key holds only the window between the first chunk that is not full and the
  // last that is not empty.
  const chunks = new Uint16Array((d + 15) >> 4);
  let lo = 0; // first chunk that is not 0xffff
  let hi = 0; // one past the last chunk that is not 0
  const setBit = (i: number) => {
    const c = i >> 4;
    chunks[c] = (chunks[c] as number) | (1 << (i & 15));
    if (c + 1 > hi) hi = c + 1;
    while (lo < chunks.length && chunks[lo] === 0xffff) lo++;
  };
  const clearBit = (i: number) => {
    const c = i >> 4;
    chunks[c] = (chunks[c] as number) & ~(1 << (i & 15));
    if (c < lo) lo = c;
    while (hi > 0 && chunks[hi - 1] === 0) hi--;
  };
  const cacheKey = (state: number) => {
    let k = `${state}:${lo}:`;
    for (let c = lo; c < hi; c++) k += String.fromCharCode(chunks[c] as number);
    return k;
  };
  // The set of linearized optional operations.
  const words = (u + 31) >> 5;
  const optBits = new Uint32Array(words);
  const seenExact = new Set<string>();
  const seenWithOpt = new Map<string, Uint32Array[]>();
  /** Records a point; false if it (or a point dominating it) was seen before. */
  const visit = (state: number): boolean => {
    const k = cacheKey(state);
    if (u === 0) {
      if (seenExact.has(k)) return false;
      seenExact.add(k);
      return true;
    }
    const list = seenWithOpt.get(k);
    if (!list) {
      seenWithOpt.set(k, [optBits.slice()]);
      return true;
    }
    for (const s of list) {
      let subset = true;
      for (let w = 0; w < words && subset; w++) subset = ((s[w] as number) & ~(optBits[w] as number)) === 0;
      if (subset) return false;
    }
    // Forget the points this one dominates.
    let keep = 0;
    for (const s of list) {
      let superset = true;
      for (let w = 0; w < words && superset; w++) superset = ((optBits[w] as number) & ~(s[w] as number)) === 0;
      if (!superset) list[keep++] = s;
    }
    list.length = keep;
    list.push(optBits.slice());
    return true;
  };

  const step = (o: Prepared, state: number): number => {
    switch (o.kind) {
      case READ:
        return state === o.a ? state : -1;
      case WRITE:
        return o.a;
      case CAS_OK:
        return state === o.a ? o.b : -1;
      case CAS_FAIL:
        return state !== o.a ? state : -1;
      case INCR:
        return nums[state] === o.a ? o.b : -1;
    }
    return -1;
  };

  // The time of the first return entry, and whether a refused cas among the
  // definite candidates expects the current state (the only time ghosts help).
  let frontier = 0;
  let ghostsHelp = false;
  const scanFrontier = (state: number) => {
    ghostsHelp = false;
    let e = next[0] as number;
    while (e !== -1 && e & 1) {
      const o = defs[(e - 1) >> 1] as Prepared;
      if (o.kind === CAS_FAIL && o.a === state) ghostsHelp = true;
      e = next[e] as number;
    }
    frontier = e === -1 ? INF : time(e);
    if (e !== -1 && frontier > furthest) {
      furthest = frontier;
      culprit = defs[(e - 1) >> 1];
    }
  };
  let furthest = Number.NEGATIVE_INFINITY;
  let culprit: Prepared | undefined;
  let steps = 0;
  const fail = (): SearchResult => (culprit ? { verdict: 'fail', steps, culprit } : { verdict: 'fail', steps });

  // Stack of linearized operations: definite i as i, optional j as ~j; `forced`
  // marks a step that was the only one tried at its point.
  const stackOp: number[] = [];
  const stackState: number[] = [];
  const stackForced: boolean[] = [];
  let state = initial;
  let fresh = true; // at a point reached just now: look for a forced step first
  let definitePhase = true;
  let entry = next[0] as number; // cursor in the definite list
  let j = -1; // cursor in an optional list
  let list = 0; // which optional list

  const push = (op: number, s: number, forced: boolean) => {
    stackOp.push(op);
    stackState.push(state);
    stackForced.push(forced);
    state = s;
    fresh = true;
    definitePhase = true;
    entry = next[0] as number;
  };
  /** Undoes steps up to and including the last unforced one; false if none is left. */
  const backtrack = (): boolean => {
    for (;;) {
      const top = stackOp.pop();
      if (top === undefined) return false;
      state = stackState.pop() as number;
      const forced = stackForced.pop() as boolean;
      fresh = false;
      if (top >= 0) {
        clearBit(top);
        const call = 2 * top + 1;
        relink(call + 1);
        relink(call);
        definitePhase = true;
        entry = next[call] as number;
      } else {
        const k = ~top;
        optBits[k >> 5] = (optBits[k >> 5] as number) & ~(1 << (k & 31));
        optRelink(k);
        scanFrontier(state);
        definitePhase = false;
        list = isGhost[k] ? 1 : 0;
        j = optNext[k] as number;
      }
      if (!forced) return true;
    }
  };

  for (;;) {
    if (++steps > maxSteps) return { verdict: 'budget', steps };
    if (definitePhase) {
      // No return entry left: every definite operation is linearized.
      if (entry === -1) return { verdict: 'ok', steps };
      if (fresh) {
        // A forced step, if there is one, is the only one tried here.
        fresh = false;
        let e = entry;
        while (e !== -1 && e & 1) {
          const i = (e - 1) >> 1;
          const o = defs[i] as Prepared;
          if (o.pure && step(o, state) === state) {
            setBit(i);
            if (!visit(state)) {
              // Explored before, from here or from a point that dominates this
              // one, and it failed: so does this point.
              clearBit(i);
              if (!backtrack()) return fail();
            } else {
              unlink(e);
              unlink(e + 1);
              push(i, state, true);
            }
            break;
          }
          e = next[e] as number;
        }
        continue;
      }
      if (entry & 1) {
        const i = (entry - 1) >> 1;
        const s = step(defs[i] as Prepared, state);
        if (s !== -1) {
          setBit(i);
          if (visit(s)) {
            unlink(entry);
            unlink(entry + 1);
            push(i, s, false);
            continue;
          }
          clearBit(i);
        }
        entry = next[entry] as number;
        continue;
      }
      // A return entry: no more definite candidates; try optional ones.
      scanFrontier(state);
      definitePhase = false;
      list = 0;
      j = optNext[u] as number;
      continue;
    }
    if (j !== -1 && (opts[j] as Prepared).call <= frontier) {
      const o = opts[j] as Prepared;
      let twinPending = false;
      for (let t = prevTwin[j] as number; t !== -1 && !twinPending; t = prevTwin[t] as number) {
        twinPending = ((optBits[t >> 5] as number) & (1 << (t & 31))) === 0;
      }
      const s = twinPending ? -1 : step(o, state);
      if (s !== -1) {
        optBits[j >> 5] = (optBits[j >> 5] as number) | (1 << (j & 31));
        if (visit(s)) {
          optUnlink(j);
          push(~j, s, false);
          continue;
        }
        optBits[j >> 5] = (optBits[j >> 5] as number) & ~(1 << (j & 31));
      }
      j = optNext[j] as number;
      continue;
    }
    if (list === 0 && ghostsHelp) {
      list = 1;
      j = optNext[u + 1] as number;
      continue;
    }
    // Every candidate was tried.
    if (!backtrack()) return fail();
  }
}

// ---------------------------------------------------------------------------
// One key, with the diagnosis of a violation.

function checkKey(key: string, events: Event[], initial: string | null, maxSteps: number): CheckResult {
  const states = new States();
  const init = states.id(initial);
  const ops = prepare(events, states).sort((x, y) => x.call - y.call || x.event.id - y.event.id);
  const r = search(ops, init, states.nums, maxSteps);
  if (r.verdict === 'ok') return { ok: true };
  if (r.verdict === 'budget') {
    return {
      ok: false,
      inconclusive: true,
      key,
      message: `key ${JSON.stringify(key)}: search budget exhausted after ${maxSteps} steps (${ops.length} operations); no verdict`,
    };
  }
  // The furthest point the search reached linearized every operation returning
  // before the culprit's return, so every prefix cut before that is linearizable
  // (operations called by the cut and returning after it may or may not have taken
  // effect); the prefix cut at the culprit's return is not.
  const culprit = (r.culprit as Prepared).event;
  const cut = culprit.ret as number;
  const prefix = ops
    .filter((o) => o.call <= cut)
    .map((o) => o.event)
    .sort((x, y) => x.call - y.call || x.id - y.id);
  const tail = prefix.slice(-12);
  const lines = tail.map((e) => `  ${describeEvent(e)}${e === culprit ? '   <- no linearization once this returns' : ''}`);
  const message =
    `key ${JSON.stringify(key)}: history of ${ops.length} operations is not linearizable.\n` +
    `Shortest failing prefix: the ${prefix.length} operations called by t=${cut}, when ${describeEvent(culprit)} returns` +
    ` (operations still running then may or may not have taken effect).\n` +
    (prefix.length > tail.length ? `Last ${tail.length} of them, by call time:\n` : `By call time:\n`) +
    lines.join('\n');
  return { ok: false, inconclusive: false, key, message, minimalPrefix: prefix, culprit };
}

function show(v: string | null): string {
  return v === null ? 'null' : JSON.stringify(v);
}

/** One line describing an event, for messages. */
export function describeEvent(e: Event): string {
  const op = e.op;
  let what: string;
  switch (op.kind) {
    case 'read':
      what = `read -> ${show(op.value)}`;
      break;
    case 'write':
      what = `write ${show(op.value)}`;
      break;
    case 'cas':
      what = `cas ${show(op.expect)} -> ${show(op.value)}: ${op.ok ? 'ok' : 'refused'}`;
      break;
    case 'incr':
      what = `incr ${op.before} -> ${op.after}`;
      break;
  }
  const ret = e.ret === null ? '?' : String(e.ret);
  return `#${e.id} ${e.client}: ${what} [${e.call}, ${ret}]${e.outcome === 'ok' ? '' : ` (${e.outcome})`}`;
}
