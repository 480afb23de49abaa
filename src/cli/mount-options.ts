// `-o` options of `quorumfs mount`, as mount(8) and fstab pass them.
import type { MountOptions } from '../fuse/binding.js';
import { UsageError } from './usage.js';

/** Options mount(8) passes that mean nothing to us, or are handled by mount(8) itself. */
const IGNORED = new Set(['rw', 'defaults', 'dev', 'nodev', 'suid', 'nosuid', 'exec', 'noexec', 'auto', 'noauto', 'user', 'nouser', 'users', 'nofail', '_netdev', 'atime', 'noatime', 'relatime', 'nodiratime']);

export interface ParsedMountOptions {
  fuse: Partial<MountOptions>;
  config: string | null;
  logLevel: string | null;
  /** -o lock_lease=S: how long this mount trusts its locks after a renewal (null: the default, 10 s). */
  lockLeaseMs: number | null;
  /** -o async (the default): name changes in a directory this mount holds are written behind; -o sync: every change is synchronous. */
  writeBehind: boolean;
  /** -o born_leases=0: directories this mount makes start without their lease (as before born leases; for comparisons). */
  bornLeases: boolean;
}

export function parseMountOptions(list: readonly string[]): ParsedMountOptions {
  const fuse: Partial<MountOptions> = {};
  const extra: string[] = [];
  let config: string | null = null;
  let logLevel: string | null = null;
  let lockLeaseMs: number | null = null;
  let writeBehind = true;
  let bornLeases = true;
  const seconds = (k: string, v: string | undefined): number => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n) || n < 0 || n > 3600) throw new UsageError(`-o ${k}: expected seconds from 0 to 3600`);
    return n;
  };
  for (const item of list.flatMap((s) => s.split(',')).filter(Boolean)) {
    const eq = item.indexOf('=');
    const k = eq < 0 ? item : item.slice(0, eq);
    const v = eq < 0 ? undefined : item.slice(eq + 1);
    if (IGNORED.has(k) || k.startsWith('x-') || k.startsWith('comment=')) continue;
    switch (k) {
      case 'allow_other':
        fuse.allowOther = true;
        break;
      case 'default_permissions':
        fuse.defaultPermissions = true;
        break;
      case 'no_default_permissions':
        fuse.defaultPermissions = false;
        break;
      case 'attr_timeout':
        fuse.attrTimeout = seconds(k, v);
        break;
      case 'entry_timeout':
        fuse.entryTimeout = seconds(k, v);
        break;
      case 'negative_timeout':
        fuse.negativeTimeout = seconds(k, v);
        break;
      case 'max_readahead': {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 4096 || n > 64 * 1024 * 1024) throw new UsageError('-o max_readahead: expected bytes from 4096 to 64 MiB');
        fuse.maxReadahead = n;
        break;
      }
      case 'spin_us':
      case 'hot_us': {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0 || n > 100_000) throw new UsageError(`-o ${k}: expected microseconds from 0 to 100000`);
        if (k === 'spin_us') fuse.spinUs = n;
        else fuse.hotUs = n;
        break;
      }
      case 'callback_timeout': {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1000) throw new UsageError('-o callback_timeout: expected milliseconds, at least 1000');
        fuse.callbackTimeoutMs = n;
        break;
      }
      case 'debug':
        fuse.debug = true;
        break;
      case 'config':
        if (!v) throw new UsageError('-o config: expected a file');
        config = v;
        break;
      case 'log_level':
        if (!v) throw new UsageError('-o log_level: expected a level');
        logLevel = v;
        break;
      case 'lock_lease': {
        const n = Number(v);
        if (v === undefined || !Number.isFinite(n) || n < 0.2 || n > 600) throw new UsageError('-o lock_lease: expected seconds from 0.2 to 600');
        lockLeaseMs = Math.round(n * 1000);
        break;
      }
      case 'sync':
        writeBehind = false;
        break;
      case 'async':
        writeBehind = true;
        break;
      case 'born_leases':
        if (v !== '0' && v !== '1') throw new UsageError('-o born_leases: expected 0 or 1');
        bornLeases = v === '1';
        break;
      case 'ro':
        throw new UsageError('-o ro: read-only mounts are not supported yet');
      case 'max_write': {
        // libfuse 3: also the largest read and write request the kernel sends (max_pages)
        const n = Number(v);
        if (!Number.isInteger(n) || n < 4096 || n > 1024 * 1024) throw new UsageError('-o max_write: expected bytes from 4096 to 1 MiB');
        fuse.maxWrite = n;
        break;
      }
      case 'read_ahead_kb': {
        // the mount's read-ahead window (the bdi's read_ahead_kb; root only): the size of buffered read requests
        const n = Number(v);
        if (!Number.isInteger(n) || n < 4 || n > 65536) throw new UsageError('-o read_ahead_kb: expected KiB from 4 to 65536');
        fuse.readAheadKb = n;
        break;
      }
      case 'readdirplus':
        // libfuse 3's READDIRPLUS (attributes with the names): yes, no or auto (the default)
        if (v !== 'yes' && v !== 'no' && v !== 'auto') throw new UsageError('-o readdirplus: expected yes, no or auto');
        extra.push(`readdirplus=${v}`);
        break;
      case 'big_writes':
      case 'use_ino':
        break; // always on
      default:
        throw new UsageError(`-o ${k}: unknown mount option`);
    }
  }
  if (extra.length > 0) fuse.extraOptions = extra;
  return { fuse, config, logLevel, lockLeaseMs, writeBehind, bornLeases };
}
