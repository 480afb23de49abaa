// Waiting for a quorum of parallel calls: resolve as soon as `need` calls
// succeed, fail as soon as that has become impossible. Stragglers run on; their
// outcomes are passed to `onLate` (for repair hints) and never raise.
import { QfsError, toQfsError } from '../util/errors.js';
import { systemClock, type Clock, type Timer } from '../util/clock.js';

/**
 * When the calls that succeeded make a quorum, and when the ones that failed
 * make it impossible, by which nodes answered: a plain majority of one replica
 * set, or, while a key moves between node sets, a majority of each
 * (docs/architecture.md, "Membership").
 */
export interface QuorumRule {
  /** How many calls a read starts with: a quorum's worth when they all answer. */
  readonly size: number;
  reached(ids: readonly string[]): boolean;
  lost(ids: readonly string[]): boolean;
}

/** `need` answers of `total`, whoever gives them. */
export function countRule(need: number, total: number): QuorumRule {
  return { size: need, reached: (ids) => ids.length >= need, lost: (ids) => total - ids.length < need };
}

/** A majority of each set (one set: a plain majority of it). */
export function setsRule(sets: ReadonlyArray<readonly string[]>): QuorumRule {
  if (sets.length === 1) return countRuleOf(sets[0]!);
  const size = new Set(sets.flat()).size;
  return {
    size,
    reached: (ids) => jointQuorumReached(sets, new Set(ids)),
    lost: (ids) => jointQuorumLost(sets, new Set(ids)),
  };
}

function countRuleOf(set: readonly string[]): QuorumRule {
  const need = Math.floor(set.length / 2) + 1;
  return {
    size: need,
    reached: (ids) => ids.filter((id) => set.includes(id)).length >= need,
    lost: (ids) => set.length - ids.filter((id) => set.includes(id)).length < need,
  };
}

function asRule(need: number | QuorumRule, total: number): QuorumRule {
  return typeof need === 'number' ? countRule(need, total) : need;
}

export interface QuorumResult<T, K> {
  oks: Array<{ key: K; value: T }>;
  errors: Array<{ key: K; error: QfsError }>;
}

/** How often a quorum waiting on replicas looks again whether one has become cut off (gatherQuorum's presumeLost). */
const RECHECK_CUT_OFF_MS = 100;

export function gatherQuorum<T, K>(
  calls: ReadonlyArray<{ key: K; run: () => Promise<T> }>,
  need: number | QuorumRule,
  isOk: (v: T) => boolean = () => true,
  onLate?: (key: K, outcome: { value: T } | { error: QfsError }) => void,
  /**
   * When the quorum can no longer be reached, wait up to `withinMs` more for
   * the calls still running before settling (a caller that wants to know
   * whether every call was refused); a call that stays silent that long is
   * left running, as usual.
   */
  settleAll?: { withinMs: number; clock: Clock },
  /**
   * Once some call was refused or failed, calls still running to acceptors
   * this says are silent (asked and not answering for a while: cut off) are
   * counted as failed when judging whether the quorum is lost, never when
   * judging whether it is reached. A round that a refusal has made depend on
   * a cut-off node then ends at once,
   * for its caller to try again, instead of waiting out the whole deadline.
   */
  presumeLost?: { cutOff: (key: K) => boolean; clock: Clock },
): Promise<QuorumResult<T, K> & { rejected: Array<{ key: K; value: T }> }> {
  return new Promise((resolve, reject) => {
    let grace: Timer | undefined;
    const oks: Array<{ key: K; value: T }> = [];
    const rejected: Array<{ key: K; value: T }> = [];
    const errors: Array<{ key: K; error: QfsError }> = [];
    let settled = false;
    const total = calls.length;
    const rule = asRule(need, total);
    const ids = (xs: ReadonlyArray<{ key: K }>): string[] => xs.map((x) => String(x.key));
    const answered = new Set<K>();
    const silentPending = (): string[] => calls.filter((c) => !answered.has(c.key) && presumeLost!.cutOff(c.key)).map((c) => String(c.key));
    // A replica becomes cut off while we wait (its silence grows): look again every so often, not only when an answer comes.
    let recheck: Timer | undefined;
    const watch = (): void => {
      if (settled || !presumeLost || recheck) return;
      recheck = presumeLost.clock.after(RECHECK_CUT_OFF_MS, () => {
        recheck = undefined;
        check();
        watch();
      });
    };
    const fail = (): void => {
      settled = true;
      grace?.cancel();
      recheck?.cancel();
      if (rejected.length > 0) resolve({ oks: [...oks], rejected: [...rejected], errors: [...errors] });
      else reject(summarize(errors, rule.size, total));
    };
    const check = (): void => {
      if (settled) return;
      if (rule.reached(ids(oks))) {
        settled = true;
        grace?.cancel();
        recheck?.cancel();
        resolve({ oks: [...oks], rejected: [...rejected], errors: [...errors] });
      } else if (rule.lost([...ids(rejected), ...ids(errors)]) || (presumeLost && rejected.length + errors.length > 0 && rule.lost([...ids(rejected), ...ids(errors), ...silentPending()]))) {
        if (settleAll && oks.length + rejected.length + errors.length < total) {
          grace ??= settleAll.clock.after(settleAll.withinMs, () => {
            if (!settled) fail();
          });
          return;
        }
        fail();
        return;
      }
      if (presumeLost && rejected.length + errors.length > 0) watch();
    };
    if (typeof need === 'number' ? need <= 0 : rule.reached([])) {
      settled = true;
      resolve({ oks, rejected, errors });
    }
    for (const { key, run } of calls) {
      let p: Promise<T>;
      try {
        p = run();
      } catch (err) {
        p = Promise.reject(err);
      }
      p.then(
        (value) => {
          answered.add(key);
          if (settled) return onLate?.(key, { value });
          (isOk(value) ? oks : rejected).push({ key, value });
          check();
        },
        (err: unknown) => {
          const error = toQfsError(err);
          answered.add(key);
          if (settled) return onLate?.(key, { error });
          errors.push({ key, error });
          // A node on a newer membership: the calls were placed wrong, and waiting for the rest (one may be
          // cut off and hold us for the whole deadline) only delays placing them again.
          if (error.code === 'stale_epoch') {
            settled = true;
            grace?.cancel();
            recheck?.cancel();
            return reject(summarize(errors, rule.size, total));
          }
          check();
        },
      );
    }
  });
}

/** One error for a failed quorum: `no_space` if any node said so, `fenced` if any refused under a lease, else `unavailable` with every reason. */
export function summarize<K>(errors: ReadonlyArray<{ key: K; error: QfsError }>, need: number, total: number): QfsError {
  const reasons = errors.map((e) => `${String(e.key)}: ${e.error.message}`).join('; ');
  const codes = new Set(errors.map((e) => e.error.code));
  // A refusal under a lease (src/util/lease.ts) is the answer, not an outage: the caller must wait for the lease.
  // A node that knows a newer membership: the caller learned it with the refusal and starts over under it.
  const code = codes.has('no_space') ? 'no_space' : codes.has('fenced') ? 'fenced' : codes.has('stale_epoch') ? 'stale_epoch' : codes.has('corrupt') && codes.size === 1 ? 'corrupt' : codes.has('bad_request') && codes.size === 1 ? 'bad_request' : 'unavailable';
  return new QfsError(code, `${need} of ${total} replicas needed, ${total - errors.length} answered (${reasons})`);
}

/**
 * A quorum of answers from as few calls as possible: the first `need` calls
 * (callers order them best first) run at once; another starts when one fails,
 * when `enough` says the answers so far do not settle it, or, for all the rest,
 * when `hedgeMs` passes without a result. It saves the calls a full fan-out
 * wastes on reads (each one a syscall and node work on both sides) and bounds
 * what a slow replica costs to the hedge delay. When the hedge delay passes
 * and `keepWaiting` says the replicas asked are still answering (busy, not
 * gone: a burst of reads queues behind itself), the wait starts over instead.
 */
export function hedgedQuorum<T, K>(
  calls: ReadonlyArray<{ key: K; run: () => Promise<T> }>,
  need: number | QuorumRule,
  enough: (values: readonly T[]) => boolean,
  hedgeMs: number,
  keepWaiting?: () => boolean,
  clock: Clock = systemClock,
): Promise<T[]> {
  return hedgedQuorumKeyed(calls, need, (oks) => enough(oks.map((o) => o.value)), hedgeMs, keepWaiting, clock).then((oks) => oks.map((o) => o.value));
}

/** hedgedQuorum, with each answer's key (a joint quorum is judged by who answered). */
export function hedgedQuorumKeyed<T, K>(
  calls: ReadonlyArray<{ key: K; run: () => Promise<T> }>,
  need: number | QuorumRule,
  enough: (oks: ReadonlyArray<{ key: K; value: T }>) => boolean,
  hedgeMs: number,
  keepWaiting?: () => boolean,
  clock: Clock = systemClock,
): Promise<Array<{ key: K; value: T }>> {
  const rule = asRule(need, calls.length);
  return new Promise((resolve, reject) => {
    const oks: Array<{ key: K; value: T }> = [];
    const errors: Array<{ key: K; error: QfsError }> = [];
    let started = 0;
    let inFlight = 0;
    let settled = false;
    let timer: Timer | undefined;
    const reached = (): boolean => rule.reached(oks.map((o) => String(o.key)));
    const finish = (f: () => void): void => {
      settled = true;
      timer?.cancel();
      f();
    };
    const startOne = (): void => {
      const { key, run } = calls[started++]!;
      inFlight++;
      let p: Promise<T>;
      try {
        p = run();
      } catch (err) {
        p = Promise.reject(err);
      }
      p.then(
        (value) => {
          inFlight--;
          if (settled) return;
          oks.push({ key, value });
          check();
        },
        (err: unknown) => {
          inFlight--;
          if (settled) return;
          const error = toQfsError(err);
          errors.push({ key, error });
          if (error.code === 'stale_epoch') return finish(() => reject(summarize(errors, rule.size, calls.length))); // placed wrong: place again now
          check();
        },
      );
    };
    const startRest = (): void => {
      while (!settled && started < calls.length) startOne();
    };
    const check = (): void => {
      if (settled) return;
      const ok = reached();
      if (ok && (enough(oks) || (started === calls.length && inFlight === 0))) return finish(() => resolve([...oks]));
      if (rule.lost(errors.map((e) => String(e.key)))) return finish(() => reject(summarize(errors, rule.size, calls.length)));
      if (ok) return startRest(); // answers disagree: ask everyone
      // Not yet a quorum: keep as many calls going as a quorum needs (all of them once one has failed under a joint rule).
      while (oks.length + inFlight < rule.size && started < calls.length) startOne();
      if (started === calls.length || inFlight > 0) return;
      startRest();
    };
    if ((typeof need === 'number' && need <= 0) || calls.length === 0) return finish(() => (rule.reached([]) ? resolve([]) : reject(summarize(errors, rule.size, 0))));
    while (started < Math.min(rule.size, calls.length)) startOne();
    // Timers run before the loop polls sockets: after a busy stretch of the
    // event loop, answers that already arrived are read (setImmediate runs
    // after the poll) before the replicas are judged silent.
    const decide = (): void => {
      if (settled) return;
      if (keepWaiting?.()) timer = clock.after(hedgeMs, hedge);
      else startRest();
    };
    const hedge = (): void => {
      if (settled) return;
      if (keepWaiting) clock.soon(decide);
      else startRest();
    };
    if (started < calls.length) timer = clock.after(hedgeMs, hedge);
    check();
  });
}

/**
 * Joint quorum counting (docs/architecture.md, "Membership"): while a key's
 * replica set moves from A to B, a phase succeeds only with a majority of A
 * and a majority of B; `sets` holds one set (stable) or two (A, B). Pure.
 * `reached`: the nodes that said yes make a quorum. `lost`: the nodes that
 * said no (or failed) leave some set without a possible majority.
 */
export function jointQuorumReached(sets: ReadonlyArray<readonly string[]>, yes: ReadonlySet<string>): boolean {
  return sets.length > 0 && sets.every((s) => s.filter((id) => yes.has(id)).length >= Math.floor(s.length / 2) + 1);
}

export function jointQuorumLost(sets: ReadonlyArray<readonly string[]>, no: ReadonlySet<string>): boolean {
  return sets.some((s) => s.length - s.filter((id) => no.has(id)).length < Math.floor(s.length / 2) + 1);
}
