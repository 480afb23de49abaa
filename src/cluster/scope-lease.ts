// One session's hold on a scope lease (src/util/lease.ts; docs/architecture.md,
// "Leases"): acquiring it (free, recalled, or taken over from a silent
// holder), settling what earlier terms left, renewing it on this process's
// own clock, and giving it back. The simulator drives this class
// (test/sim/leases.ts) before any mount does.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Clock } from '../util/clock.js';
import { sleep, systemClock } from '../util/clock.js';
import { QfsError } from '../util/errors.js';
import { KEEP, recordKey, type CallOpts, type HeldScope, type ScopeRange, type ScopeService } from '../keyspace/types.js';
import {
  acquireFree,
  bornLease,
  decodeHolder,
  decodeLease,
  encodeHolder,
  encodeLease,
  endHolder,
  holderRecordKey,
  holderTrustMs,
  newHolder,
  renewHolder,
  renewsItself,
  markSettled,
  releaseLease,
  renewLease,
  takeOver,
  takeoverWaitMs,
  type HolderRecord,
  type LeaseRecord,
  type ScopeCall,
} from '../util/lease.js';
import type { Registers } from './registers.js';

export interface ScopeLeaseConfig {
  registers: Registers;
  /** The lease record's key, and the scope it guards: keys [start, end) of one group (`group`: its encoded prefix). */
  lease: Buffer;
  group: Buffer;
  start: Buffer;
  end: Buffer | null;
  periodMs: number;
  /** Clock-rate drift bound, e.g. 0.05. */
  drift: number;
  /** This process's own clock: trust and takeover waits are measured on it. */
  clock: Clock;
  /** Asks the current holder to give the lease back (the nodes push it to that session's connection). */
  recall?: (holder: string) => void;
  /**
   * Where a session's holder record lives. Needed to take over a lease held
   * `viaHolder`; with `holder`, this session takes leases that way too.
   */
  holderKey?: (session: string) => Buffer;
  /** This session's holder record, renewing every lease it takes (`viaHolder`) at once. */
  holder?: LeaseHolder;
  /**
   * Test-only bugs the simulator must find: a takeover without waiting a lease
   * period; a takeover of a lease held through a holder record without ending
   * that record first (only waiting for it to stay unchanged).
   */
  injectBugs?: { noTakeoverWait?: boolean; noHolderEnd?: boolean };
}

/**
 * One session's holder record (util/lease.ts, HolderRecord): written once,
 * renewed every quarter period on this process's own clock, and trusted
 * until (send time of the last renewal that succeeded) + holderTrustMs. Every
 * lease this session holds `viaHolder` is trusted exactly as long. Once a
 * renewal finds the record ended (another session took one of its leases
 * over after it went silent), the session is over for good: `ended`.
 */
export class LeaseHolder {
  private trustUntil = -Infinity;
  private over = false;
  private loop: Promise<void> | null = null;
  /** The first write succeeded: from then on the loop renews. */
  private written = false;
  /** Cuts the renewal loop's wait short (end). */
  private wake: (() => void) | null = null;
  /** Resolves once the first write was tried (trusted() says whether it succeeded). */
  readonly ready: Promise<void>;

  constructor(
    private readonly cfg: { registers: Registers; key: Buffer; periodMs: number; drift: number; clock: Clock },
    readonly session: string,
  ) {
    this.ready = this.write().then(() => {
      if (!this.over) this.loop = this.renewLoop();
    });
  }

  /**
   * The first write (until one succeeds: a cluster out of reach costs retries
   * of one record, not a new session per call) or a renewal. Trust is counted
   * from the send, once the write is known to have succeeded.
   */
  private async write(): Promise<void> {
    const sentAt = this.cfg.clock.now();
    let renewed = false;
    let endedSeen = false;
    try {
      await this.cfg.registers.change(this.cfg.key, (old) => {
        if (!this.written) {
          // Only an earlier attempt of this very write can have put one there: nobody else knows
          // the session before it holds a lease, so nobody can have ended it (checked all the same).
          const cur = decodeHolder(old);
          renewed = cur === null || !cur.ended;
          endedSeen = !renewed;
          return cur === null ? encodeHolder(newHolder(this.cfg.periodMs, this.cfg.drift)) : KEEP;
        }
        const next = renewHolder(decodeHolder(old));
        renewed = next !== null;
        endedSeen = next === null;
        return next === null ? KEEP : encodeHolder(next);
      });
    } catch {
      // unknown: the trust runs out by itself (or, before the first write, never began)
      return;
    }
    if (endedSeen) this.over = true;
    else if (renewed && !this.over) {
      this.written = true;
      this.trustUntil = Math.max(this.trustUntil, sentAt + holderTrustMs(this.cfg.periodMs, this.cfg.drift));
    }
  }

  /** May this session act under the leases it holds through this record (its own clock says so)? */
  trusted(): boolean {
    return !this.over && this.cfg.clock.now() < this.trustUntil;
  }

  /** The local time its trust ends if nothing changes. */
  get trustEnd(): number {
    return this.trustUntil;
  }

  /** The record was ended, could not be written, or this session stopped: a new session is needed. */
  get ended(): boolean {
    return this.over;
  }

  private async renewLoop(): Promise<void> {
    const { clock } = this.cfg;
    while (!this.over) {
      await new Promise<void>((resolve) => {
        const timer = clock.after(this.cfg.periodMs / 4, resolve);
        this.wake = () => {
          timer.cancel();
          resolve();
        };
      });
      this.wake = null;
      if (this.over) break;
      await this.write();
    }
  }

  /**
   * Ends the session (unmount, after every lease was given back): its record
   * says ended, so no lease still naming it waits for a takeover period.
   */
  async end(): Promise<void> {
    this.over = true;
    this.trustUntil = Math.min(this.trustUntil, this.cfg.clock.now());
    this.wake?.();
    await this.ready;
    await this.loop;
    await this.cfg.registers
      .change(this.cfg.key, (old) => {
        const cur = decodeHolder(old);
        const ended = cur && endHolder(cur, cur.renewals);
        return ended ? encodeHolder(ended) : KEEP;
      })
      .catch(() => {});
  }
}

/** The lease is no longer this session's to use (its trust ran out, or another took it). */
export class LeaseLostError extends QfsError {
  constructor(message: string) {
    super('fenced', message);
  }
}

export async function readLease(registers: Registers, lease: Buffer, opts?: CallOpts): Promise<LeaseRecord> {
  return decodeLease(await registers.read(lease, opts));
}

/** Applies a transition as one CASPaxos change; the new record, or null when the transition did not apply. */
export async function changeLease(registers: Registers, lease: Buffer, step: (cur: LeaseRecord) => LeaseRecord | null, opts?: CallOpts): Promise<LeaseRecord | null> {
  let result: LeaseRecord | null = null;
  await registers.change(
    lease,
    (old) => {
      result = step(decodeLease(old));
      return result === null ? KEEP : encodeLease(result);
    },
    opts,
  );
  return result;
}

/** Ends a holder record seen with `renewals` unchanged for a takeover wait; whether it is ended now. */
async function endHolderRecord(registers: Registers, key: Buffer, renewals: number): Promise<boolean> {
  let ended = false;
  await registers.change(key, (old) => {
    const cur = decodeHolder(old);
    if (cur === null || cur.ended) {
      ended = true;
      return KEEP;
    }
    const next = endHolder(cur, renewals);
    ended = next !== null;
    return next === null ? KEEP : encodeHolder(next);
  });
  return ended;
}

export class ScopeLease {
  readonly scope: ScopeCall;
  /** Local time (this process's clock) until which the lease may be used. */
  private trustUntil: number;
  private lost = false;
  private released = false;
  /** Local time this session stopped trusting the lease (released or lost); null while it trusts it. */
  private stoppedAt: number | null = null;
  private renewing: Promise<void> | null = null;

  private constructor(
    private readonly cfg: ScopeLeaseConfig,
    readonly record: LeaseRecord,
    readonly session: string,
    sentAt: number,
    /** Taken over from a silent holder (not acquired free). */
    readonly tookOver: boolean,
  ) {
    this.scope = { lease: cfg.lease, term: record.term, session };
    this.trustUntil = sentAt + holderTrustMs(cfg.periodMs, cfg.drift);
    if (!renewsItself(record) && cfg.holder?.session !== session) throw new QfsError('internal', 'a lease held through a holder record needs that holder');
  }

  /** The holder record this lease is renewed through, if it is not renewed by itself. */
  private get via(): LeaseHolder | null {
    return renewsItself(this.record) ? null : this.cfg.holder!;
  }

  private get ownTrustEnd(): number {
    return this.via ? this.via.trustEnd : this.trustUntil;
  }

  get term(): number {
    return this.record.term;
  }

  /** May this session still act under the lease (its own clock says so, and nothing showed it lost)? */
  trusted(): boolean {
    if (this.lost || this.released) return false;
    const via = this.via;
    return via ? via.trusted() : this.cfg.clock.now() < this.trustUntil;
  }

  /** The local time this session's trust ended, or ends if nothing changes. */
  get trustEnd(): number {
    return this.stoppedAt ?? this.ownTrustEnd;
  }

  /** Throws LeaseLostError unless the lease may still be used. */
  check(): void {
    if (!this.trusted()) throw new LeaseLostError(`the lease of term ${this.term} is no longer trusted`);
  }

  /**
   * Takes the lease for `session`: at once if it is free; if held, recalls it
   * and waits for it to be given back, or takes it over once the record has
   * stayed unchanged for a whole takeover wait on this clock. Null when it
   * could not within `giveUpAfterMs`. Renewals start at once.
   */
  static async acquire(cfg: ScopeLeaseConfig, session: string, giveUpAfterMs: number): Promise<ScopeLease | null> {
    const { clock, registers } = cfg;
    const giveUpAt = clock.now() + giveUpAfterMs;
    const viaHolder = cfg.holder !== undefined;
    if (cfg.holder) {
      if (cfg.holder.session !== session) throw new QfsError('internal', 'a lease taken through a holder record must name its session');
      await cfg.holder.ready;
    }
    let observed: { lease: LeaseRecord; at: number; holder?: { renewals: number | 'ended'; at: number } | undefined } | null = null;
    while (clock.now() < giveUpAt) {
      // Nothing is taken while this session's own holder record is not trusted: it would not be either.
      if (cfg.holder && !cfg.holder.trusted()) return null;
      let cur: LeaseRecord | null = null;
      try {
        cur = await readLease(registers, cfg.lease);
      } catch {
        // unreadable for now: try again
      }
      if (cur) {
        // Trust is counted from before the change is sent: the record is chosen after that.
        const sentAt = clock.now();
        try {
          if (cur.holder === null) {
            const got = await changeLease(registers, cfg.lease, (l) => acquireFree(l, session, viaHolder));
            if (got) return new ScopeLease(cfg, got, session, sentAt, false).start();
          } else {
            const same = observed && observed.lease.term === cur.term && observed.lease.holder === cur.holder && observed.lease.renewals === cur.renewals;
            if (!same || !observed) observed = { lease: cur, at: clock.now() };
            const wait = takeoverWaitMs(cfg.periodMs, cfg.drift);
            let due = cfg.injectBugs?.noTakeoverWait || clock.now() - observed.at >= wait;
            if (!renewsItself(cur)) {
              // Its holder renews every lease it holds through its holder record: watch that instead.
              if (!cfg.holderKey) throw new QfsError('internal', 'a lease held through a holder record, and no way to read it');
              const key = cfg.holderKey(cur.holder);
              const h = decodeHolder(await registers.read(key));
              const renewals = h === null || h.ended ? ('ended' as const) : h.renewals;
              if (observed.holder?.renewals !== renewals) observed.holder = { renewals, at: clock.now() };
              // An ended record's holder stopped trusting before it ended: no wait. Else the longer of the holder's wait and ours.
              due = renewals === 'ended' || cfg.injectBugs?.noTakeoverWait === true || clock.now() - observed.holder.at >= Math.max(wait, h?.waitMs ?? 0);
              if (due && renewals !== 'ended' && !cfg.injectBugs?.noHolderEnd && !(await endHolderRecord(registers, key, renewals))) {
                observed.holder = undefined;
                due = false;
              }
            }
            if (due) {
              const seen = observed.lease;
              const got = await changeLease(registers, cfg.lease, (l) => takeOver(l, seen, session, viaHolder));
              if (got) return new ScopeLease(cfg, got, session, sentAt, true).start();
            } else {
              cfg.recall?.(cur.holder);
            }
          }
        } catch {
          // a lost race or a timeout: look again
        }
      }
      await sleep(clock, 5 + clock.random() * 20);
    }
    return null;
  }

  /**
   * The lease of a scope this session is creating and nobody else can reach
   * yet (a directory whose name is not published): the record is written over
   * an absent one, held by this session at the term after the fresh one, with
   * nothing to settle (util/lease.ts, bornLease). The lease is returned at once
   * so that changes can be decided under it; nothing may be sent under it, and
   * the scope must not be published, before `ready` resolves. `ready` rejects
   * when the record could not be written (then the lease is lost) — `bad_request`
   * when one was there already (the scope is not new: a reused number).
   * Trust is counted from the send, as for any acquisition.
   */
  static born(cfg: ScopeLeaseConfig, session: string): { lease: ScopeLease; ready: Promise<void> } {
    const record = bornLease(session, cfg.holder !== undefined);
    const bytes = encodeLease(record);
    const lease = new ScopeLease(cfg, record, session, cfg.clock.now(), false);
    const ready = (async () => {
      try {
        if (cfg.holder) {
          await cfg.holder.ready;
          if (!cfg.holder.trusted()) throw new LeaseLostError('the session holding leases is no longer trusted');
        }
        await cfg.registers.change(cfg.lease, (old) => {
          if (old === null) return bytes;
          if (old.equals(bytes)) return KEEP; // this very write, chosen by an earlier attempt
          throw new QfsError('bad_request', 'the scope already has a lease record: it is not new');
        });
      } catch (err) {
        lease.lose();
        throw err;
      }
      if (!lease.lost) lease.start();
    })();
    ready.catch(() => {});
    return { lease, ready };
  }

  private start(): this {
    this.cfg.registers.dropUnlearned(this.cfg.lease);
    if (renewsItself(this.record)) this.renewing = this.renewLoop();
    return this;
  }

  /** Renewals every quarter period by this clock, until released or lost. */
  private async renewLoop(): Promise<void> {
    const { clock, registers } = this.cfg;
    while (!this.lost && !this.released) {
      await sleep(clock, this.cfg.periodMs / 4);
      if (this.lost || this.released) break;
      if (!this.trusted()) {
        this.lose();
        break;
      }
      const sentAt = clock.now();
      try {
        const r = await changeLease(registers, this.cfg.lease, (l) => renewLease(l, this.session, this.term));
        if (r) {
          if (!this.lost && !this.released) this.trustUntil = Math.max(this.trustUntil, sentAt + holderTrustMs(this.cfg.periodMs, this.cfg.drift));
        } else this.lose();
      } catch {
        // unknown: the trust runs out by itself
      }
    }
  }

  /**
   * Settles every term since the record's settled one (see util/lease.ts) and
   * raises it. Returns how many keys needed a round. Throws LeaseLostError if
   * the trust runs out meanwhile.
   */
  async settle(): Promise<number> {
    const { registers } = this.cfg;
    if (this.record.settled >= this.term - 1) return 0;
    const keys = await registers.unsettledKeys(this.cfg.group, this.cfg.start, this.cfg.end, this.record.settled, { scope: this.scope });
    for (const k of keys) {
      this.check();
      await registers.settleKey(k, { scope: this.scope });
    }
    this.check();
    if (!(await changeLease(registers, this.cfg.lease, (l) => markSettled(l, this.session, this.term, this.term - 1)))) {
      this.lose();
      throw new LeaseLostError('the lease changed hands while it was being settled');
    }
    return keys.length;
  }

  /**
   * Stops using the lease: nothing more is sent under it. Its writes that may
   * not be chosen are left for the next holder to settle.
   */
  lose(): void {
    if (this.lost || this.released) return;
    this.lost = true;
    this.stoppedAt = Math.min(this.cfg.clock.now(), this.ownTrustEnd);
    this.cfg.registers.dropUnlearned(this.cfg.lease);
  }

  /**
   * Gives the lease back once every change made under it is committed (the
   * caller flushed): learns them on a majority, then releases, `clean` (the
   * term needs no settling) only if all were learned while the lease was
   * still trusted. Returns whether it was clean. After a loss it releases
   * unclean, best effort, so nobody waits for the takeover. `beforeRelease`
   * runs once the session has stopped using the lease, before the release is
   * sent.
   */
  async release(beforeRelease?: (clean: boolean) => void): Promise<boolean> {
    const { registers } = this.cfg;
    let clean = false;
    if (this.trusted()) {
      try {
        clean = (await registers.learnChosen({ scope: this.scope })) === 0 && this.trusted();
      } catch {
        clean = false;
      }
    }
    if (!this.released) {
      this.stoppedAt ??= Math.min(this.cfg.clock.now(), this.ownTrustEnd);
      this.released = true;
    }
    beforeRelease?.(clean);
    await changeLease(registers, this.cfg.lease, (l) => releaseLease(l, this.session, this.term, clean)).catch(() => null);
    await this.renewing;
    return clean;
  }
}

/** Scope leases of one client process (one mount): its session, acquisitions, and the nodes' recalls. */
export class ClusterScopes implements ScopeService {
  /** Unique per process start: a restarted mount is a new session, never the old holder. */
  private readonly base = `${hostname().slice(0, 24)}:${process.pid}:${randomBytes(6).toString('hex')}`;
  private generation = 0;
  /** The holder record every lease of this process is renewed through; replaced once ended. */
  private current: LeaseHolder | null = null;
  private closed = false;

  constructor(
    private readonly registers: Registers,
    private readonly recalls: { onLeaseRecall(fn: (lease: Buffer) => void): void },
    private readonly opts: { periodMs: number; drift: number; clock?: Clock; reachable: (group: Buffer) => boolean; log?: { warn(obj: object, msg: string): void } },
  ) {}

  /**
   * The session this process holds leases under now. A session whose holder
   * record another mount ended (this one was cut off for a lease period) holds
   * nothing any more; the next lease is taken under a new one.
   */
  get session(): string {
    return this.holder().session;
  }

  private holder(): LeaseHolder {
    if (this.current && !this.current.ended) return this.current;
    if (this.current && !this.closed) this.opts.log?.warn({ session: this.current.session }, 'the session holding directory leases ended (its renewals stopped getting through): a new one takes its place');
    const session = this.generation === 0 ? this.base : `${this.base}.${this.generation}`;
    this.generation++;
    this.current = new LeaseHolder(
      { registers: this.registers, key: holderRecordKey(session), periodMs: this.opts.periodMs, drift: this.opts.drift, clock: this.opts.clock ?? systemClock },
      session,
    );
    return this.current;
  }

  /** Ends this process's session (after every lease was given back): its record says so. */
  async close(): Promise<void> {
    this.closed = true;
    await this.current?.end();
  }

  private config(range: ScopeRange): ScopeLeaseConfig {
    const group = recordKey(range.group, Buffer.alloc(0)); // the encoded group prefix
    const start = recordKey(range.group, range.start);
    const cfg: ScopeLeaseConfig = {
      registers: this.registers,
      lease: range.lease,
      group,
      start,
      end: recordKey(range.group, range.end),
      periodMs: this.opts.periodMs,
      drift: this.opts.drift,
      clock: this.opts.clock ?? systemClock,
      // A read of the scope by this session is refused while another holds it,
      // and the refusal makes the nodes ask that holder to give it back.
      recall: () => void this.registers.read(start, { scope: { lease: range.lease, term: 0, session: this.session } }).catch(() => {}),
      holderKey: holderRecordKey,
      holder: this.holder(),
    };
    return cfg;
  }

  async acquire(range: ScopeRange, giveUpAfterMs: number): Promise<HeldScope | null> {
    const cfg = this.config(range);
    const lease = await ScopeLease.acquire(cfg, cfg.holder!.session, giveUpAfterMs);
    if (!lease) return null;
    try {
      await lease.settle();
    } catch {
      await lease.release().catch(() => false);
      return null;
    }
    return { call: lease.scope, trusted: () => lease.trusted(), release: () => lease.release() };
  }

  born(range: ScopeRange): { held: HeldScope; ready: Promise<void> } {
    const cfg = this.config(range);
    const { lease, ready } = ScopeLease.born(cfg, cfg.holder!.session);
    return {
      held: {
        call: lease.scope,
        trusted: () => lease.trusted(),
        release: async () => {
          await ready.catch(() => {});
          return lease.release();
        },
      },
      ready,
    };
  }

  onRecall(fn: (lease: Buffer) => void): void {
    this.recalls.onLeaseRecall(fn);
  }

  reachable(group: Buffer): boolean {
    return this.opts.reachable(group);
  }
}
