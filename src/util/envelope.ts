// What a register's accepted bytes carry besides the caller's value: the last
// few changes that produced it, each as (random tag, ballot counter).
//
// Why: a proposer whose accept may have reached some acceptors (an answer lost,
// a minority accepted) cannot tell whether its change took effect. If another
// proposer adopted that value and built on it, re-running the change function
// would apply it twice (an O_EXCL create would report EEXIST for its own file).
// So each change attempt writes a fresh tag, each change keeps the last
// MAX_ENTRIES entries of the value it replaced, and a retry:
// - finds its own tag in the current value's lineage: the change took effect once;
// - else, if the lineage window reaches back before its uncertain attempt (the
//   oldest entry's ballot counter is lower, or the window holds the whole
//   lineage), the attempt was not adopted and the change may run again;
// - else cannot know, and reports the outcome as unknown instead of guessing.
// Chosen values form a lineage with increasing ballots, which is what makes the
// window test sound.
//
//   u8 version (1) | u8 n | n × (8-byte tag, u64 ballot counter), oldest first | payload
import { systemClock, type Clock } from './clock.js';
import { QfsError } from './errors.js';
import type { RecordValue } from './paxos.js';

export const MAX_ENTRIES = 6;
const VERSION = 1;
const TAG_BYTES = 8;
const ENTRY_BYTES = 16;

export interface LineageEntry {
  tag: string;
  counter: number;
}

export interface Enveloped {
  /** null: deleted (or never written). */
  payload: Buffer | null;
  lineage: LineageEntry[];
}

export function newTag(clock: Clock = systemClock): string {
  return clock.randomHex(TAG_BYTES);
}

export function open(v: RecordValue): Enveloped {
  if (v.kind === 'empty') return { payload: null, lineage: [] };
  const b = v.bytes;
  if (b.length === 0 && v.kind === 'tombstone') return { payload: null, lineage: [] };
  if (b.length < 2 || b[0] !== VERSION) throw new QfsError('corrupt', 'record value without a valid envelope');
  const n = b[1]!;
  const start = 2 + n * ENTRY_BYTES;
  if (n > MAX_ENTRIES || b.length < start) throw new QfsError('corrupt', 'record envelope truncated');
  const lineage: LineageEntry[] = [];
  for (let i = 0; i < n; i++) {
    const at = 2 + i * ENTRY_BYTES;
    const hi = b.readUInt32BE(at + TAG_BYTES);
    const lo = b.readUInt32BE(at + TAG_BYTES + 4);
    lineage.push({ tag: b.toString('hex', at, at + TAG_BYTES), counter: hi * 0x1_0000_0000 + lo });
  }
  return { payload: v.kind === 'tombstone' ? null : b.subarray(start), lineage };
}

export function seal(payload: Buffer | null, lineage: readonly LineageEntry[]): RecordValue {
  const kept = lineage.slice(-MAX_ENTRIES);
  const head = Buffer.allocUnsafe(2 + kept.length * ENTRY_BYTES);
  head[0] = VERSION;
  head[1] = kept.length;
  kept.forEach((e, i) => {
    const at = 2 + i * ENTRY_BYTES;
    head.write(e.tag, at, TAG_BYTES, 'hex');
    head.writeUInt32BE(Math.floor(e.counter / 0x1_0000_0000), at + TAG_BYTES);
    head.writeUInt32BE(e.counter % 0x1_0000_0000, at + TAG_BYTES + 4);
  });
  const bytes = payload === null ? head : Buffer.concat([head, payload]);
  return payload === null ? { kind: 'tombstone', bytes } : { kind: 'value', bytes };
}

/** What one change function returned in an attempt: the value after it, or what it threw. */
export type ChangeOutcome = { ok: true; value: Buffer | null } | { ok: false; error: unknown };

/** The attempts of one change call and what each wrote, to recognise its own effect. */
export class ChangeAttempts<T = unknown> {
  private readonly written = new Map<string, { value: Buffer | null; meta: T }>();
  /** Ballot counters of attempts that may have reached an acceptor. */
  private readonly uncertain: number[] = [];

  /** `meta` is whatever the caller needs back if this attempt turns out to be the one that took effect. */
  record(tag: string, value: Buffer | null, meta: T): void {
    this.written.set(tag, { value, meta });
  }

  markUncertain(counter: number): void {
    this.uncertain.push(counter);
  }

  /**
   * Looks for this call's own effect in a lineage: `{ value }` when found,
   * null when none of its attempts can have been adopted; throws when the
   * window does not reach back far enough to tell.
   */
  find(lineage: readonly LineageEntry[]): { value: Buffer | null; meta: T } | null {
    for (let i = lineage.length - 1; i >= 0; i--) {
      const hit = this.written.get(lineage[i]!.tag);
      if (hit) return hit;
    }
    if (this.uncertain.length === 0 || lineage.length < MAX_ENTRIES) return null;
    const oldest = lineage[0]!.counter;
    if (this.uncertain.every((c) => oldest < c)) return null;
    throw new QfsError('timeout', `outcome unknown: more than ${MAX_ENTRIES} other changes of the key landed while this one was retried`);
  }
}

/**
 * The attempts of one logical change that its caller runs in several calls
 * (a write refused under one lease term and run again under the next): each
 * call records its attempts here, so that a later call finds an earlier
 * call's landed attempt in the lineage and reports its outcome instead of
 * applying the change twice. Pass one trail per logical change (CallOpts.trail).
 */
export class ChangeTrail extends ChangeAttempts<ChangeOutcome> {
  private key: string | null = null;
  private succeeded = false;

  /**
   * A call of the change starts: a trail serves one change of one key, so a
   * call for another key, or one after a call succeeded (a second change
   * would find the first in the lineage and be taken as done), is a bug.
   * Returns what is wrong (the caller then runs the change without the
   * trail, as every change ran before trails, and logs it), or null.
   */
  begin(key: string): string | null {
    if (this.succeeded) return 'a change trail used again after its change succeeded';
    if (this.key !== null && this.key !== key) return 'a change trail used for two keys';
    this.key = key;
    return null;
  }

  /** A call of the change succeeded: no further call may use this trail. */
  end(): void {
    this.succeeded = true;
  }
}
