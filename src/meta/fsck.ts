// fsck: a read-only check of the whole filesystem over the key space, and
// with `repair` the fixes that are safe while it is mounted and busy.
//
// What it looks for, and how bad each is:
//   error     dangling-dirent      a name whose inode does not exist
//   error     type-mismatch        a name whose recorded type is not its inode's
//   error     missing-chunk        a chunk map names a chunk no node holds
//   error     nlink-low            a file has more names than its link count
//                                  (an unlink could free it while still named)
//   error     dir-multiple-names   a directory reached by two names
//   error     undecodable          a record whose bytes do not decode
//   error     no-superblock/no-root, incomplete (too many nodes down to tell)
//   leftover  nlink-high           more links counted than names (never freed)
//   leftover  dir-nlink, dir-parent, chunk-count   derived fields out of step
//   leftover  stale-intent         a rename a crash interrupted
//   leftover  orphan-inode         an inode no name reaches (gc reclaims it)
//   leftover  orphan-records       chunk maps or entries of a gone inode (gc)
// "Clean" means no errors. Leftovers are what the design's crash order
// allows (a crash leaves only what gc or a repair finishes); --repair fixes
// the derived fields and intents, and leaves orphans to gc.
//
// Every finding is confirmed with linearizable reads after the survey, and
// anything changed within the grace period is skipped as work in flight, so
// a busy filesystem does not produce false alarms or racing repairs.
import { KEEP, type MaintainableKeySpace } from '../keyspace/types.js';
import type { ChunkId } from '../util/ids.js';
import { DIRENT_RANGE, inodeKey, inoGroup, mapPageKey } from './schema.js';
import { isRecent, joinPath, reach, survey, type Reach, type Survey } from './survey.js';
import {
  ROOT_INO,
  S_IFDIR,
  S_IFMT,
  decodeDirent,
  decodeInode,
  encodeDirent,
  encodeInode,
  type Ino,
  type Inode,
} from './types.js';
import { resolveIntent } from './intents.js';
import { toolDirScopes } from './dir-scopes.js';
import { MAP_PAGE_SLOTS, decodeMapPage } from './extents.js';

export type FindingKind =
  | 'dangling-dirent'
  | 'type-mismatch'
  | 'missing-chunk'
  | 'nlink-low'
  | 'nlink-high'
  | 'dir-multiple-names'
  | 'dir-nlink'
  | 'dir-parent'
  | 'chunk-count'
  | 'stale-intent'
  | 'orphan-inode'
  | 'orphan-records'
  | 'undecodable'
  | 'no-superblock'
  | 'no-root'
  | 'incomplete';

const ERRORS: ReadonlySet<FindingKind> = new Set<FindingKind>([
  'dangling-dirent',
  'type-mismatch',
  'missing-chunk',
  'nlink-low',
  'dir-multiple-names',
  'undecodable',
  'no-superblock',
  'no-root',
  'incomplete',
]);

export type RepairResult = 'fixed' | 'left for gc' | `not fixed: ${string}`;

export interface Finding {
  kind: FindingKind;
  severity: 'error' | 'leftover';
  /** Where: a path when the tree reaches it, else the inode number. */
  where: string;
  ino?: number;
  detail: string;
  /** With repair: what was done. */
  repair?: RepairResult;
}

export interface FsckOptions {
  repair?: boolean;
  /** Anything changed more recently than this is work in flight, ms (default 60 s). */
  graceMs?: number;
  signal?: AbortSignal;
  onProgress?: (what: string, n: number) => void;
}

export interface FsckReport {
  clean: boolean;
  errors: number;
  leftovers: number;
  /** Suspects skipped because they changed within the grace period. */
  inFlight: number;
  repaired: number;
  unrepaired: number;
  complete: boolean;
  counts: { records: number; inodes: number; directories: number; files: number; names: number; mapPages: number; chunksReferenced: number; chunksStored: number };
  findings: Finding[];
}

export async function fsck(ks: MaintainableKeySpace, opts: FsckOptions = {}): Promise<FsckReport> {
  const graceMs = opts.graceMs ?? 60_000;
  const s = await survey(ks, { ...(opts.signal ? { signal: opts.signal } : {}), onProgress: (p) => opts.onProgress?.('records', p.records) });
  const r = reach(s);
  const now = Date.now();
  const findings: Finding[] = [];
  let inFlight = 0;
  const add = (f: Omit<Finding, 'severity'>): Finding => {
    const full: Finding = { ...f, severity: ERRORS.has(f.kind) ? 'error' : 'leftover' };
    findings.push(full);
    return full;
  };
  const whereOf = (ino: Ino): string => r.dirPaths.get(ino) ?? firstPath(r, ino) ?? `inode ${ino}`;

  if (!s.complete) add({ kind: 'incomplete', where: '/', detail: 'too many nodes were unreachable to see every record; run fsck again when they are back' });
  if (!s.superblock) add({ kind: 'no-superblock', where: '/', detail: 'the superblock record is missing' });
  for (const u of s.undecodable) add({ kind: 'undecodable', where: `key ${u.key.toString('hex')}`, detail: `${u.what}: ${u.error}` });

  const root = s.inodes.get(ROOT_INO);
  if (!root) add({ kind: 'no-root', where: '/', detail: 'the root directory inode is missing' });

  // Names: each must name an inode of its type.
  for (const [dir, path] of r.dirPaths) {
    for (const { name, dirent } of s.dirents.get(dir) ?? []) {
      opts.signal?.throwIfAborted();
      const target = s.inodes.get(dirent.ino);
      if (target && (target.mode & S_IFMT) === (dirent.type & S_IFMT)) continue;
      const confirmed = await confirmName(ks, dir, name, dirent.ino, dirent.type);
      if (confirmed === 'gone') continue;
      if (confirmed === 'dangling') {
        const f = add({ kind: 'dangling-dirent', where: joinPath(path, name), ino: dirent.ino, detail: `names inode ${dirent.ino}, which does not exist` });
        if (opts.repair) f.repair = await repairStep(() => dropDanglingName(ks, dir, name, dirent.ino));
      } else if (confirmed === 'mismatch') {
        const f = add({ kind: 'type-mismatch', where: joinPath(path, name), ino: dirent.ino, detail: `entry type ${modeType(dirent.type)}, inode type ${modeType(target?.mode ?? 0)}` });
        if (opts.repair) f.repair = await repairStep(() => fixNameType(ks, dir, name, dirent.ino));
      }
    }
  }

  // Link counts, directory fields, chunk counts.
  for (const [ino, inode] of s.inodes) {
    opts.signal?.throwIfAborted();
    const names = r.names.get(ino) ?? [];
    if (names.length === 0 && ino !== ROOT_INO) continue; // orphans, below
    if (r.moving.has(ino) || isRecent(inode.ctime, now, graceMs)) {
      if (suspectLinks(s, r, ino, inode)) inFlight++;
      continue;
    }
    if ((inode.mode & S_IFMT) === S_IFDIR) {
      if (ino !== ROOT_INO && names.length > 1) {
        add({ kind: 'dir-multiple-names', where: whereOf(ino), ino, detail: `reached by ${names.length} names: ${names.map((n) => joinPath(r.dirPaths.get(n.dir) ?? `inode ${n.dir}`, n.name)).join(', ')}` });
      }
      // The child's own inode decides (a wrong entry type is reported once, as itself).
      const subdirs = (s.dirents.get(ino) ?? []).filter((e) => ((s.inodes.get(e.dirent.ino)?.mode ?? e.dirent.type) & S_IFMT) === S_IFDIR).length;
      if (inode.nlink !== 2 + subdirs) {
        const f = add({ kind: 'dir-nlink', where: whereOf(ino), ino, detail: `link count ${inode.nlink}, expected ${2 + subdirs} (2 + ${subdirs} subdirectories)` });
        if (opts.repair) f.repair = await repairStep(() => fixDirLinks(ks, ino, graceMs));
      }
      const parentDir = names[0]?.dir ?? ROOT_INO;
      if (ino !== ROOT_INO && names.length === 1 && inode.parent !== parentDir) {
        const f = add({ kind: 'dir-parent', where: whereOf(ino), ino, detail: `records parent ${inode.parent}, lives in ${parentDir}` });
        if (opts.repair) f.repair = await repairStep(() => fixParent(ks, ino, parentDir, names[0]!.name));
      }
    } else if (inode.nlink !== names.length) {
      const recount = await confirmedNames(ks, names, ino);
      const fresh = await readInode(ks, ino);
      if (fresh && !isRecent(fresh.ctime, Date.now(), graceMs) && fresh.nlink !== recount.length && recount.length > 0) {
        const kind = fresh.nlink < recount.length ? 'nlink-low' : 'nlink-high';
        const f = add({ kind, where: whereOf(ino), ino, detail: `link count ${fresh.nlink}, named ${recount.length} times` });
        if (opts.repair) f.repair = await repairStep(() => setFileLinks(ks, ino, fresh.nlink, recount.length));
      } else if (fresh && fresh.nlink !== recount.length) {
        inFlight++;
      }
    }
    if ((inode.mode & S_IFMT) !== S_IFDIR) {
      const mapped = [...(s.pages.get(ino)?.values() ?? [])].reduce((n, p) => n + p.size, 0);
      if (inode.chunks !== mapped) {
        const f = add({ kind: 'chunk-count', where: whereOf(ino), ino, detail: `counts ${inode.chunks} chunks, maps ${mapped} (st_blocks is off)` });
        if (opts.repair) f.repair = await repairStep(() => fixChunkCount(ks, ino, graceMs));
      }
    }
  }

  // Chunks named by reachable files must exist somewhere.
  const stored = new Set<ChunkId>();
  let chunksComplete = true;
  for (let after: ChunkId | null = null; ; ) {
    opts.signal?.throwIfAborted();
    const page: { ids: ChunkId[]; next: ChunkId | null; complete: boolean } = await ks.listChunks(after, 1000);
    if (!page.complete) chunksComplete = false;
    for (const id of page.ids) stored.add(id);
    opts.onProgress?.('chunks', stored.size);
    if (page.next === null) break;
    after = page.next;
  }
  let referenced = 0;
  for (const [ino, pages] of s.pages) {
    if (!r.names.has(ino) && ino !== ROOT_INO) continue;
    for (const [pageNo, page] of pages) {
      for (const [index, id] of [...page].flatMap(([slot, list]) => [...new Set(list.map((x) => x.src))].map((id) => [slot, id] as const))) {
        referenced++;
        if (stored.has(id) || !chunksComplete) continue;
        if (await ks.hasChunk(id).catch(() => true)) continue;
        // Confirm the page still names it (a rewrite or a compaction may have replaced it meanwhile).
        const now2 = await ks.read(mapPageKey(ino, pageNo));
        if (!now2 || !decodeMapPage(now2).get(index)?.some((x) => x.src === id)) continue;
        const f = add({ kind: 'missing-chunk', where: whereOf(ino), ino, detail: `chunk ${id} (slot ${pageNo * MAP_PAGE_SLOTS + index}) is on no node: those bytes are lost` });
        if (opts.repair) f.repair = 'not fixed: the bytes exist nowhere; restore the file from a copy';
      }
    }
  }

  // Interrupted renames.
  for (const { key, intent } of s.intents) {
    if (now - intent.createdAt < graceMs) {
      inFlight++;
      continue;
    }
    const f = add({ kind: 'stale-intent', where: `rename of inode ${intent.ino}`, ino: intent.ino, detail: `a rename started ${new Date(intent.createdAt).toISOString()} did not finish` });
    if (opts.repair) f.repair = await repairStep(async () => ((await resolveIntent(ks, key)) === 'busy' ? 'not fixed: changed while resolving; run again' : 'fixed'));
  }

  // What no name reaches.
  for (const ino of s.groups) {
    if (ino === ROOT_INO || r.names.has(ino) || r.moving.has(ino)) continue;
    const inode = s.inodes.get(ino);
    if (inode && isRecent(inode.ctime, now, graceMs)) {
      inFlight++;
      continue;
    }
    const f = inode
      ? add({ kind: 'orphan-inode', where: `inode ${ino}`, ino, detail: `${modeType(inode.mode)}, ${inode.size} bytes, link count ${inode.nlink}, no name reaches it` })
      : add({ kind: 'orphan-records', where: `inode ${ino}`, ino, detail: `chunk maps or entries of an inode that is gone` });
    if (opts.repair) f.repair = 'left for gc';
  }

  const errors = findings.filter((f) => f.severity === 'error').length;
  const fixed = findings.filter((f) => f.repair === 'fixed').length;
  const unrepaired = findings.filter((f) => f.repair?.startsWith('not fixed')).length;
  const errorsLeft = findings.filter((f) => f.severity === 'error' && f.repair !== 'fixed').length;
  const counts = {
    records: s.records,
    inodes: s.inodes.size,
    directories: r.dirPaths.size,
    files: [...s.inodes.values()].filter((i) => (i.mode & S_IFMT) !== S_IFDIR).length,
    names: [...r.names.values()].reduce((n, l) => n + l.length, 0),
    mapPages: [...s.pages.values()].reduce((n, p) => n + p.size, 0),
    chunksReferenced: referenced,
    chunksStored: stored.size,
  };
  return {
    clean: errorsLeft === 0,
    errors,
    leftovers: findings.length - errors,
    inFlight,
    repaired: fixed,
    unrepaired,
    complete: s.complete && chunksComplete,
    counts,
    findings,
  };
}

function firstPath(r: Reach, ino: Ino): string | null {
  const n = r.names.get(ino)?.[0];
  if (!n) return null;
  const dir = r.dirPaths.get(n.dir);
  return dir ? joinPath(dir, n.name) : null;
}

function suspectLinks(s: Survey, r: Reach, ino: Ino, inode: Inode): boolean {
  return (inode.mode & S_IFMT) !== S_IFDIR && inode.nlink !== (r.names.get(ino)?.length ?? 0) && s.inodes.has(ino);
}

function modeType(mode: number): string {
  switch (mode & S_IFMT) {
    case 0o100000:
      return 'file';
    case S_IFDIR:
      return 'directory';
    case 0o120000:
      return 'symlink';
    case 0o010000:
      return 'fifo';
    case 0o020000:
      return 'char device';
    case 0o060000:
      return 'block device';
    case 0o140000:
      return 'socket';
    default:
      return `type ${(mode & S_IFMT).toString(8)}`;
  }
}

async function repairStep(fn: () => Promise<RepairResult>): Promise<RepairResult> {
  try {
    return await fn();
  } catch (err) {
    return `not fixed: ${(err as Error).message}`;
  }
}

async function readInode(ks: MaintainableKeySpace, ino: Ino): Promise<Inode | null> {
  const b = await ks.read(inodeKey(ino));
  return b ? decodeInode(b) : null;
}

/** Re-reads a suspect name and its inode: still there and still wrong? */
async function confirmName(ks: MaintainableKeySpace, dir: Ino, name: Buffer, ino: Ino, type: number): Promise<'gone' | 'ok' | 'dangling' | 'mismatch'> {
  const b = await toolDirScopes(ks).readEntry(dir, name);
  if (!b) return 'gone';
  const d = decodeDirent(b);
  if (d.ino !== ino) return 'gone';
  const inode = await readInode(ks, ino);
  if (!inode) return 'dangling';
  return (inode.mode & S_IFMT) === (type & S_IFMT) ? 'ok' : 'mismatch';
}

async function confirmedNames(ks: MaintainableKeySpace, names: ReadonlyArray<{ dir: Ino; name: Buffer }>, ino: Ino): Promise<Array<{ dir: Ino; name: Buffer }>> {
  const out = [];
  for (const n of names) {
    const b = await toolDirScopes(ks).readEntry(n.dir, n.name);
    if (b && decodeDirent(b).ino === ino) out.push(n);
  }
  return out;
}

async function dropDanglingName(ks: MaintainableKeySpace, dir: Ino, name: Buffer, ino: Ino): Promise<RepairResult> {
  if (await readInode(ks, ino)) return 'not fixed: the inode exists again';
  let dropped = false;
  await toolDirScopes(ks).changeEntry(dir, name, (old) => {
    if (!old || decodeDirent(old).ino !== ino) return KEEP;
    dropped = true;
    return null;
  });
  return dropped ? 'fixed' : 'not fixed: the name changed meanwhile';
}

async function fixNameType(ks: MaintainableKeySpace, dir: Ino, name: Buffer, ino: Ino): Promise<RepairResult> {
  const inode = await readInode(ks, ino);
  if (!inode) return 'not fixed: the inode is gone';
  await toolDirScopes(ks).changeEntry(dir, name, (old) => {
    if (!old || decodeDirent(old).ino !== ino) return KEEP;
    return encodeDirent({ ino, type: inode.mode & S_IFMT });
  });
  return 'fixed';
}

async function changeIf(ks: MaintainableKeySpace, ino: Ino, fn: (i: Inode) => boolean): Promise<boolean> {
  let changed = false;
  await ks.change(inodeKey(ino), (old) => {
    changed = false;
    if (!old) return KEEP;
    const i = decodeInode(old);
    if (!fn(i)) return KEEP;
    changed = true;
    return encodeInode(i);
  });
  return changed;
}

async function fixDirLinks(ks: MaintainableKeySpace, ino: Ino, graceMs: number): Promise<RepairResult> {
  let subdirs = 0;
  for (let start: Buffer | null = DIRENT_RANGE.start; start; ) {
    const from: Buffer = start;
    const page = await toolDirScopes(ks).call(ino, (o) => ks.scan(inoGroup(ino), from, DIRENT_RANGE.end, { ...o, limit: 1000 }));
    subdirs += page.entries.filter((e) => (decodeDirent(e.value).type & S_IFMT) === S_IFDIR).length;
    start = page.next;
  }
  const ok = await changeIf(ks, ino, (i) => {
    if (isRecent(i.ctime, Date.now(), graceMs) || i.nlink === 2 + subdirs) return false;
    i.nlink = 2 + subdirs;
    return true;
  });
  return ok ? 'fixed' : 'not fixed: changed meanwhile';
}

async function fixParent(ks: MaintainableKeySpace, ino: Ino, parent: Ino, name: Buffer): Promise<RepairResult> {
  const b = await toolDirScopes(ks).readEntry(parent, name);
  if (!b || decodeDirent(b).ino !== ino) return 'not fixed: moved meanwhile';
  const ok = await changeIf(ks, ino, (i) => {
    if (i.parent === parent) return false;
    i.parent = parent;
    return true;
  });
  return ok ? 'fixed' : 'not fixed: changed meanwhile';
}

async function setFileLinks(ks: MaintainableKeySpace, ino: Ino, seen: number, names: number): Promise<RepairResult> {
  const ok = await changeIf(ks, ino, (i) => {
    if (i.nlink !== seen) return false;
    i.nlink = names;
    return true;
  });
  return ok ? 'fixed' : 'not fixed: the link count changed meanwhile';
}

async function fixChunkCount(ks: MaintainableKeySpace, ino: Ino, graceMs: number): Promise<RepairResult> {
  let mapped = 0;
  for (let start: Buffer | null = Buffer.from([0x6d]); start; ) {
    const page = await ks.scan(inoGroup(ino), start, Buffer.from([0x6e]), { limit: 1000 });
    for (const e of page.entries) mapped += decodeMapPage(e.value).size;
    start = page.next;
  }
  const ok = await changeIf(ks, ino, (i) => {
    if (isRecent(i.mtime, Date.now(), graceMs) || i.chunks === mapped) return false;
    i.chunks = mapped;
    return true;
  });
  return ok ? 'fixed' : 'not fixed: written meanwhile';
}
