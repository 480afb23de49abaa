// gc of mounts' lock-session records (src/meta/locks.ts, lock-lease.ts).
//
// Every mount that takes a lock writes a session record, renews it while it
// runs and marks it dead when it unmounts; a mount that crashed leaves one
// that nobody renews. Without collection they pile up, one per mount run.
//
// Why deleting is safe: to every reader a missing session record means dead
// (`sessionVerdict`, `renew` of null fails), and a dead session is never
// renewed again (its mount starts a new session with a new random id). So
// deleting a record already marked dead changes nothing anyone can see.
// A record not marked dead is deleted only on the same evidence another mount
// needs to declare it dead: gc's first look writes it back (a renewal left
// on a minority cannot move the counter later: the argument in locks.ts),
// then gc sees the counter unchanged for `deadAfterMs` on its own clock, and
// the delete is a compare-and-set on that counter. A live mount renews every
// leaseMs / 4, so gc waits only for sessions that stay silent past that, and
// at most `maxWaitMs` in all (one dead mount's record costs one wait, once).
//
// Directory-lease holder records (util/lease.ts, HolderRecord) go the same way:
// one per mount run, ended by a contender or by their own mount at unmount,
// or left live by a mount that crashed. An ended or missing record means the
// same to everyone (no lease naming it is trusted), and a live one is deleted
// only after gc saw its renewals unchanged for the wait the record itself
// states, by a compare-and-set on them: the same evidence a contender needs to
// end it (a deletion ends it: nothing renews a missing record).
import { KEEP, type MaintainableKeySpace } from '../keyspace/types.js';
import { decodeHolder } from '../util/lease.js';
import { DEFAULT_LEASE, deadAfterMs, renewEveryMs, type Observation } from './lock-lease.js';
import { decodeSession } from './locks.js';

/** What gc needs to know of one kind of session record. */
export interface SessionKind {
  /** null: no record. `deadAfterMs`: how long its counter must stay unchanged before it may go; `lookEveryMs`: how often to look. */
  decode(b: Buffer | null): { counter: number; dead: boolean; deadAfterMs: number; lookEveryMs: number } | null;
}

/** Mounts' lock sessions (locks.ts). */
export const LOCK_SESSIONS: SessionKind = {
  decode(b) {
    const r = decodeSession(b);
    return r && { counter: r.counter, dead: r.dead, deadAfterMs: deadAfterMs(r, DEFAULT_LEASE.drift), lookEveryMs: renewEveryMs(r.leaseMs) };
  },
};

/** Mounts' directory-lease holder records (util/lease.ts). */
export const LEASE_HOLDERS: SessionKind = {
  decode(b) {
    const h = decodeHolder(b);
    return h && { counter: h.renewals, dead: h.ended, deadAfterMs: h.waitMs, lookEveryMs: Math.max(10, Math.floor(h.waitMs / 4)) };
  },
};

export interface SessionGcOptions {
  dryRun: boolean;
  /** The longest gc waits for silent sessions in all (default: as long as their bound asks, deadAfterMs). */
  maxWaitMs?: number;
  signal?: AbortSignal;
  onFailure?: (key: Buffer, error: unknown) => void;
  /** The clock (tests). */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export async function collectSessions(ks: MaintainableKeySpace, keys: readonly Buffer[], opts: SessionGcOptions, kind: SessionKind = LOCK_SESSIONS): Promise<{ deleted: number; live: number }> {
  const now = opts.now ?? Date.now;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  let deleted = 0;
  const watched = new Map<string, { key: Buffer; seen: Observation }>();
  // Deletes the record if it is dead or (compare-and-set) still at `counter`.
  const remove = async (key: Buffer, counter: number | null): Promise<void> => {
    let gone = false;
    await ks.change(key, (old) => {
      const r = kind.decode(old);
      if (r === null) return KEEP;
      if (!r.dead && r.counter !== counter) return KEEP;
      gone = true;
      return null;
    });
    if (gone) deleted++;
  };
  // A look that fences: the record written back at a new ballot before it is judged.
  const look = async (key: Buffer) => kind.decode(await ks.change(key, (old) => (old === null ? KEEP : Buffer.from(old))));

  for (const key of keys) {
    opts.signal?.throwIfAborted();
    try {
      if (opts.dryRun) {
        const r = kind.decode(await ks.read(key));
        if (r?.dead) deleted++;
        else if (r) watched.set(key.toString('hex'), { key, seen: { counter: r.counter, since: now() } });
        continue;
      }
      const r = await look(key);
      if (r === null) continue;
      if (r.dead) await remove(key, null);
      else watched.set(key.toString('hex'), { key, seen: { counter: r.counter, since: now() } });
    } catch (err) {
      opts.onFailure?.(key, err);
    }
  }
  if (opts.dryRun) return { deleted, live: watched.size };

  const started = now();
  let live = 0;
  while (watched.size > 0) {
    opts.signal?.throwIfAborted();
    let nextLookIn = Infinity;
    for (const [id, w] of [...watched]) {
      try {
        const r = await look(w.key);
        const at = now();
        if (r === null || r.dead) {
          if (r !== null) await remove(w.key, null);
          watched.delete(id);
          continue;
        }
        if (r.counter !== w.seen.counter) {
          // renewed since gc's first look: a live mount
          live++;
          watched.delete(id);
          continue;
        }
        const wait = r.deadAfterMs - (at - w.seen.since);
        if (wait <= 0) {
          await remove(w.key, r.counter);
          watched.delete(id);
        } else if (at - started < (opts.maxWaitMs ?? Infinity)) {
          nextLookIn = Math.min(nextLookIn, wait, r.lookEveryMs);
        } else {
          live++; // gc may not wait longer: left for the next run
          watched.delete(id);
        }
      } catch (err) {
        opts.onFailure?.(w.key, err);
        watched.delete(id);
      }
    }
    if (watched.size > 0) await sleep(Math.max(10, Number.isFinite(nextLookIn) ? nextLookIn : 10));
  }
  return { deleted, live };
}
