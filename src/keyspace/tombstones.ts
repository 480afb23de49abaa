// Purging tombstones that must first stay settled for a grace period
// (Registers.purgeSettledTombstone explains why): one pass over the keys, then,
// for those still inside their grace, one wait until the last grace ends and
// a second pass. A maintenance run that found deletes takes at least the grace.
export interface PurgeOutcome {
  purged: boolean;
  /** > 0: settled, but not yet for the grace; ask again after this long. */
  retryInMs: number;
}

export async function purgeWithGrace(
  keys: Iterable<Buffer>,
  purge: (key: Buffer) => Promise<PurgeOutcome>,
  onPurged: (key: Buffer) => void,
  onError: (key: Buffer, err: unknown) => void,
  signal?: AbortSignal,
): Promise<void> {
  const waiting: Buffer[] = [];
  let waitMs = 0;
  const pass = async (list: Iterable<Buffer>, again: boolean): Promise<void> => {
    for (const key of list) {
      signal?.throwIfAborted();
      try {
        const r = await purge(key);
        if (r.purged) onPurged(key);
        else if (r.retryInMs > 0 && !again) {
          waiting.push(key);
          waitMs = Math.max(waitMs, r.retryInMs);
        }
      } catch (err) {
        onError(key, err);
      }
    }
  };
  await pass(keys, false);
  if (waiting.length === 0) return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', abort);
      resolve();
    }, waitMs);
    const abort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', abort, { once: true });
  });
  await pass(waiting, true);
}
