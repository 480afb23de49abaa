// One pass over every record of the filesystem, for fsck and gc: the records
// decoded by the key schema, and which inodes the tree reaches from the root.
//
// The pass reads what the replicas hold, page by page, while the filesystem
// may be busy: it is not a snapshot. Whatever fsck or gc concludes from it is
// confirmed with linearizable reads before it is reported or acted on, and
// anything touched within the grace period counts as work in flight.
//
// Memory: the inode table and the names are held whole (about 150 bytes per
// inode plus its names); a filesystem of tens of millions of files needs a
// paged variant.
import type { MaintainableKeySpace } from '../keyspace/types.js';
import { splitKey } from '../keyspace/types.js';
import type { ChunkId } from '../util/ids.js';
import { HOLDER_GROUP } from '../util/lease.js';
import { DIR_LEASE_NAME_BYTES, GC_GROUP_BYTES, INTENT_GROUP_BYTES, LOCKS_NAME_BYTES, SESSION_GROUP_BYTES, SUPERBLOCK_GROUP_BYTES, inoOfGroup } from './schema.js';
import {
  ROOT_INO,
  S_IFDIR,
  S_IFMT,
  decodeDirent,
  decodeInode,
  decodeIntent,
  type Dirent,
  type Ino,
  type Inode,
  type RenameIntent,
  type Timespec,
} from './types.js';
import { chunksOfPage, decodeMapPage, type MapPage } from './extents.js';

export interface NamedEntry {
  name: Buffer;
  dirent: Dirent;
}

export interface Survey {
  /** False when too many nodes were down to trust the walk for deletes. */
  complete: boolean;
  /** Wall-clock ms when the walk started. */
  startedAt: number;
  records: number;
  superblock: boolean;
  inodes: Map<Ino, Inode>;
  /** Entries by directory inode (the dirent's group), in name order. */
  dirents: Map<Ino, NamedEntry[]>;
  /** Chunk-map pages (the chosen value) by file inode, then page number. */
  pages: Map<Ino, Map<number, MapPage>>;
  /**
   * Every chunk id any replica's value of a map page names, chosen or not,
   * by inode group: gc marks these (a value in flight may become chosen).
   */
  pageRefs: Map<Ino, Set<ChunkId>>;
  intents: Array<{ key: Buffer; intent: RenameIntent }>;
  /** Mounts' lock-session records (live state, collected by gc once dead). */
  sessions: Buffer[];
  /** Directory-lease holder records (util/lease.ts): one per mount run, collected by gc. */
  holders: Buffer[];
  /** gc's orphan candidates: inode → when first seen (ms). */
  candidates: Map<Ino, number>;
  /** Keys whose replicas hold a tombstone (purged once all of them do). */
  tombstones: Buffer[];
  undecodable: Array<{ key: Buffer; what: string; error: string }>;
  /** Keys outside the schema (left alone). */
  foreign: number;
  /** Every inode group that holds any record, inode or not. */
  groups: Set<Ino>;
}

export interface Reach {
  /** Directories reached from the root, with one path each (for reports). */
  dirPaths: Map<Ino, string>;
  /** Every name in a reached directory, by the inode it names. */
  names: Map<Ino, Array<{ dir: Ino; name: Buffer }>>;
  /** Inodes a rename intent names (moving: reachable by definition). */
  moving: Set<Ino>;
}

export interface SurveyProgress {
  records: number;
}

const PAGE = 1000;

export async function survey(ks: MaintainableKeySpace, opts: { signal?: AbortSignal; onProgress?: (p: SurveyProgress) => void } = {}): Promise<Survey> {
  const s: Survey = {
    complete: true,
    startedAt: Date.now(),
    records: 0,
    superblock: false,
    inodes: new Map(),
    dirents: new Map(),
    pages: new Map(),
    pageRefs: new Map(),
    intents: [],
    sessions: [],
    holders: [],
    candidates: new Map(),
    tombstones: [],
    undecodable: [],
    foreign: 0,
    groups: new Set(),
  };
  let after: Buffer | null = null;
  for (;;) {
    opts.signal?.throwIfAborted();
    const page = await ks.listRecords(after, PAGE, opts.signal ? { signal: opts.signal } : {});
    if (!page.complete) s.complete = false;
    for (const r of page.records) {
      s.records++;
      if (r.tombstone) s.tombstones.push(r.key);
      classify(s, r.key, r.value, r.others);
    }
    opts.onProgress?.({ records: s.records });
    if (page.next === null) break;
    after = page.next;
  }
  for (const list of s.dirents.values()) list.sort((a, b) => Buffer.compare(a.name, b.name));
  return s;
}

function classify(s: Survey, key: Buffer, value: Buffer | null, others: readonly Buffer[]): void {
  let group: Buffer;
  let name: Buffer;
  try {
    ({ group, name } = splitKey(key));
  } catch {
    s.foreign++;
    return;
  }
  const decode = <T>(what: string, fn: (b: Buffer) => T, b: Buffer): T | null => {
    try {
      return fn(b);
    } catch (err) {
      s.undecodable.push({ key, what, error: (err as Error).message });
      return null;
    }
  };
  // "sessions" is 8 bytes long, as an inode group is: it must be told apart first
  // (taken for an orphaned inode group, gc's reclaim deleted the session records
  // whose id begins with "d" or "m" as if they were its entries and maps).
  if (group.equals(SESSION_GROUP_BYTES)) {
    if (value !== null) s.sessions.push(key);
    return;
  }
  if (group.length === 8) {
    const ino = inoOfGroup(group);
    const refs = (): Set<ChunkId> => {
      let set = s.pageRefs.get(ino);
      if (!set) s.pageRefs.set(ino, (set = new Set()));
      return set;
    };
    // A map page any replica holds keeps its chunks from gc, chosen or not.
    if (name.length === 5 && name[0] === 0x6d) {
      for (const b of [value, ...others]) {
        if (!b) continue;
        const p = decode('chunk-map page', decodeMapPage, b);
        if (p) for (const id of chunksOfPage(p)) refs().add(id);
      }
    }
    // A file's locks and a directory's lease are live state of the mounts, not
    // structure (and do not keep an orphan's group alive).
    if (value === null || name.equals(LOCKS_NAME_BYTES) || name.equals(DIR_LEASE_NAME_BYTES)) return;
    s.groups.add(ino);
    if (name.length === 1 && name[0] === 0x69) {
      const i = decode('inode', decodeInode, value);
      if (i) s.inodes.set(ino, i);
    } else if (name.length === 5 && name[0] === 0x6d) {
      const p = decode('chunk-map page', decodeMapPage, value);
      if (p) {
        let pages = s.pages.get(ino);
        if (!pages) s.pages.set(ino, (pages = new Map()));
        pages.set(name.readUInt32BE(1), p);
      }
    } else if (name.length > 1 && name[0] === 0x64) {
      const d = decode('dirent', decodeDirent, value);
      if (d) {
        let list = s.dirents.get(ino);
        if (!list) s.dirents.set(ino, (list = []));
        list.push({ name: Buffer.from(name.subarray(1)), dirent: d });
      }
    } else {
      s.foreign++;
    }
    return;
  }
  if (value === null) return;
  if (group.equals(HOLDER_GROUP)) s.holders.push(key);
  else if (group.equals(SUPERBLOCK_GROUP_BYTES)) s.superblock = true;
  else if (group.equals(INTENT_GROUP_BYTES)) {
    const intent = decode('rename intent', decodeIntent, value);
    if (intent) s.intents.push({ key, intent });
  } else if (group.equals(GC_GROUP_BYTES) && name.length === 8) {
    const at = Number(value.toString('utf8'));
    s.candidates.set(inoOfGroup(name), Number.isFinite(at) ? at : 0);
  } else {
    s.foreign++;
  }
}

/** Breadth-first from the root over the surveyed entries. */
export function reach(s: Survey): Reach {
  const dirPaths = new Map<Ino, string>([[ROOT_INO, '/']]);
  const names = new Map<Ino, Array<{ dir: Ino; name: Buffer }>>();
  const queue: Ino[] = [ROOT_INO];
  for (let dir = queue.shift(); dir !== undefined; dir = queue.shift()) {
    for (const { name, dirent } of s.dirents.get(dir) ?? []) {
      let list = names.get(dirent.ino);
      if (!list) names.set(dirent.ino, (list = []));
      list.push({ dir, name });
      if ((dirent.type & S_IFMT) === S_IFDIR && !dirPaths.has(dirent.ino)) {
        dirPaths.set(dirent.ino, joinPath(dirPaths.get(dir)!, name));
        queue.push(dirent.ino);
      }
    }
  }
  const moving = new Set<Ino>();
  for (const { intent } of s.intents) moving.add(intent.ino);
  return { dirPaths, names, moving };
}

export function joinPath(dirPath: string, name: Buffer): string {
  return (dirPath === '/' ? '/' : dirPath + '/') + printableName(name);
}

/** A name for a report: UTF-8 where it is valid, \xNN escapes where it is not. */
export function printableName(name: Buffer): string {
  const text = name.toString('utf8');
  if (Buffer.from(text, 'utf8').equals(name) && !/[\x00-\x1f\x7f]/.test(text)) return text;
  return [...name].map((b) => (b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('');
}

/**
 * Has this inode been changed within `graceMs` of `now` (work that may be in flight)?
 * No grace means nothing is recent: mounts stamp times from a monotonic clock
 * anchored to the wall clock, which can run a little ahead of `Date.now()`.
 */
export function isRecent(t: Timespec, now: number, graceMs: number): boolean {
  if (graceMs <= 0) return false;
  return t.sec * 1000 + t.nsec / 1e6 > now - graceMs;
}
