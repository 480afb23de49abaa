// Waiting for a quorum of parallel calls: resolve as soon as `need` calls
// succeed, fail as soon as that has become impossible. Stragglers run on; their
// outcomes are passed to `onLate` (for repair hints) and never raise.
import { QfsError, toQfsError } from '../util/errors.js';

export interface QuorumResult<T, K> {
  oks: Array<{ key: K; value: T }>;
  errors: Array<{ key: K; error: QfsError }>;
}

export function gatherQuorum<T, K>(
  calls: ReadonlyArray<{ key: K; run: () => Promise<T> }>,
  need: number,
  isOk: (v: T) => boolean = () => true,
  onLate?: (key: K, outcome: { value: T } | { error: QfsError }) => void,
): Promise<QuorumResult<T, K> & { rejected: Array<{ key: K; value: T }> }> {
  return new Promise((resolve, reject) => {
    const oks: Array<{ key: K; value: T }> = [];
    const rejected: Array<{ key: K; value: T }> = [];
    const errors: Array<{ key: K; error: QfsError }> = [];
    let settled = false;
    const total = calls.length;
    const check = (): void => {
      if (settled) return;
      if (oks.length >= need) {
        settled = true;
        resolve({ oks: [...oks], rejected: [...rejected], errors: [...errors] });
      } else if (total - rejected.length - errors.length < need) {
        settled = true;
        if (rejected.length > 0) resolve({ oks: [...oks], rejected: [...rejected], errors: [...errors] });
        else reject(summarize(errors, need, total));
      }
    };
    if (need <= 0) {
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
          if (settled) return onLate?.(key, { value });
          (isOk(value) ? oks : rejected).push({ key, value });
          check();
        },
        (err: unknown) => {
          const error = toQfsError(err);
          if (settled) return onLate?.(key, { error });
          errors.push({ key, error });
          check();
        },
      );
    }
  });
}

/** One error for a failed quorum: `no_space` if any node said so, else `unavailable` with every reason. */
export function summarize<K>(errors: ReadonlyArray<{ key: K; error: QfsError }>, need: number, total: number): QfsError {
  const reasons = errors.map((e) => `${String(e.key)}: ${e.error.message}`).join('; ');
  const codes = new Set(errors.map((e) => e.error.code));
  const code = codes.has('no_space') ? 'no_space' : codes.has('corrupt') && codes.size === 1 ? 'corrupt' : codes.has('bad_request') && codes.size === 1 ? 'bad_request' : 'unavailable';
  return new QfsError(code, `${need} of ${total} replicas needed, ${total - errors.length} answered (${reasons})`);
}
