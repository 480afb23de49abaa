// gc: reclaims what the crash order leaves behind and what deletes free.
//
//   1. survey every record (survey.ts) and walk the tree from the root;
//   2. orphans (an inode group no name reaches: an inode whose last name went,
//      a create that crashed before naming it, the chunk maps of an unlinked
//      file) are recorded as candidates; a candidate that is still an orphan a
//      whole grace period later loses its entries, maps and inode;
//   3. mark: every chunk that any replica's value of a surviving map page
//      names (chosen or in flight);
//   4. sweep: every other chunk on every node, if that node stored it (or
//      last saw it put) longer ago than the grace period plus the time since
//      the survey began: a write's chunks are put before the map page that
//      names them is committed, so a chunk put after the survey started, or
//      within the grace before it, survives even if the mark missed its page;
//   5. tombstones every replica holds are purged;
//   6. mounts' lock-session records and directory-lease holder records that
//      are dead go (sessions-gc.ts argues why that is safe: a missing record
//      reads as dead, and dead is for ever).
//
// Safe while mounted and busy as long as no mount holds written data
// unpublished for longer than the grace period (the vfs publishes at close
// and fsync). Nothing is deleted when the walk was incomplete (too many
// nodes down): a missed map page would make its chunks look unreferenced.
import { KEEP, type MaintainableKeySpace } from '../keyspace/types.js';
import { purgeWithGrace } from '../keyspace/tombstones.js';
import { QfsError } from '../util/errors.js';
import type { ChunkId } from '../util/ids.js';
import { DIRENT_RANGE, MAP_RANGE, direntKey, gcCandidateKey, inodeKey, inoGroup, mapPageKey } from './schema.js';
import { isRecent, reach, survey, type Survey } from './survey.js';
import { LEASE_HOLDERS, collectSessions } from './sessions-gc.js';
import { ROOT_INO, decodeInode, type Ino } from './types.js';

export interface GcOptions {
  /** How long an orphan or an unreferenced chunk must stay so before it goes, ms (default 1 h). */
  graceMs?: number;
  /** Count, delete nothing. */
  dryRun?: boolean;
  /** The longest gc waits to see a silent lock session's counter stay unchanged (default 60 s). */
  sessionWaitMs?: number;
  signal?: AbortSignal;
  onProgress?: (what: string, counts: GcCounts) => void;
  onFailure?: (what: string, error: string) => void;
}

export interface GcCounts {
  records: number;
  orphanGroups: number;
  /** Orphans seen for the first time (reclaimed by a later run, after the grace period). */
  candidatesRecorded: number;
  orphansReclaimed: number;
  recordsDeleted: number;
  chunksScanned: number;
  chunksReferenced: number;
  chunksSwept: number;
  copiesSwept: number;
  bytesReclaimed: number;
  /** Unreferenced chunks kept because they are younger than the grace period. */
  chunksTooYoung: number;
  tombstonesPurged: number;
  /** Lock-session and lease-holder records of mounts that ended or died, deleted. */
  sessionsDeleted: number;
  /** Lock-session and lease-holder records of mounts still renewing them. */
  sessionsLive: number;
  failures: number;
}

export const DEFAULT_GC_GRACE_MS = 3600_000;
/** A session with a longer lease (-o lock_lease=) than this allows is left to a later run. */
export const DEFAULT_SESSION_WAIT_MS = 60_000;

export async function gc(ks: MaintainableKeySpace, opts: GcOptions = {}): Promise<GcCounts> {
  const graceMs = opts.graceMs ?? DEFAULT_GC_GRACE_MS;
  const counts: GcCounts = {
    records: 0,
    orphanGroups: 0,
    candidatesRecorded: 0,
    orphansReclaimed: 0,
    recordsDeleted: 0,
    chunksScanned: 0,
    chunksReferenced: 0,
    chunksSwept: 0,
    copiesSwept: 0,
    bytesReclaimed: 0,
    chunksTooYoung: 0,
    tombstonesPurged: 0,
    sessionsDeleted: 0,
    sessionsLive: 0,
    failures: 0,
  };
  const fail = (what: string, err: unknown): void => {
    counts.failures++;
    opts.onFailure?.(what, (err as Error)?.message ?? String(err));
  };
  const started = performance.now();
  const s = await survey(ks, {
    ...(opts.signal ? { signal: opts.signal } : {}),
    onProgress: (p) => {
      counts.records = p.records;
      opts.onProgress?.('records', counts);
    },
  });
  counts.records = s.records;
  if (!s.complete) throw new QfsError('unavailable', 'gc needs all but at most R - majority nodes up to see every reference; nothing was deleted');
  if (!s.inodes.has(ROOT_INO)) throw new QfsError('corrupt', 'the root directory inode is missing; run quorumfs fsck; nothing was deleted');
  const r = reach(s);
  const now = Date.now();

  // 2. orphans
  const reclaimed = new Set<Ino>();
  for (const ino of s.groups) {
    opts.signal?.throwIfAborted();
    if (ino === ROOT_INO || r.names.has(ino) || r.moving.has(ino)) continue;
    const inode = s.inodes.get(ino);
    if (inode && isRecent(inode.ctime, now, graceMs)) continue;
    counts.orphanGroups++;
    const firstSeen = s.candidates.get(ino);
    if (firstSeen === undefined) {
      counts.candidatesRecorded++;
      if (!opts.dryRun) {
        try {
          await ks.change(gcCandidateKey(ino), (old) => old ?? Buffer.from(String(now)));
        } catch (err) {
          fail(`candidate ${ino}`, err);
          continue;
        }
      }
      if (graceMs > 0) continue;
    } else if (now - firstSeen < graceMs) {
      continue;
    }
    if (opts.dryRun) {
      reclaimed.add(ino);
      counts.orphansReclaimed++;
      continue;
    }
    try {
      const n = await reclaimGroup(ks, ino, graceMs, s);
      if (n === null) continue;
      counts.recordsDeleted += n;
      counts.orphansReclaimed++;
      reclaimed.add(ino);
    } catch (err) {
      fail(`orphan ${ino}`, err);
    }
    opts.onProgress?.('orphans', counts);
  }
  // Candidates that are no longer orphans (named again, or gone) are forgotten.
  if (!opts.dryRun) {
    for (const ino of s.candidates.keys()) {
      const orphan = s.groups.has(ino) && !r.names.has(ino) && !r.moving.has(ino) && !reclaimed.has(ino);
      if (orphan) continue;
      await ks.delete(gcCandidateKey(ino)).catch((err: unknown) => fail(`candidate ${ino}`, err));
    }
  }

  // 3. mark
  const marked = new Set<ChunkId>();
  for (const [ino, refs] of s.pageRefs) {
    if (reclaimed.has(ino)) continue;
    for (const id of refs) marked.add(id);
  }
  counts.chunksReferenced = marked.size;

  // 4. sweep
  for (let after: ChunkId | null = null; ; ) {
    opts.signal?.throwIfAborted();
    const page: { ids: ChunkId[]; next: ChunkId | null; complete: boolean } = await ks.listChunks(after, 1000);
    counts.chunksScanned += page.ids.length;
    for (const id of page.ids) {
      if (marked.has(id)) continue;
      if (opts.dryRun) {
        counts.chunksSwept++;
        continue;
      }
      const minAgeMs = graceMs + Math.ceil(performance.now() - started);
      try {
        const freed = await ks.sweepChunk(id, minAgeMs);
        if (freed.copies > 0) {
          counts.chunksSwept++;
          counts.copiesSwept += freed.copies;
          counts.bytesReclaimed += freed.bytes;
        } else {
          counts.chunksTooYoung++;
        }
      } catch (err) {
        fail(`chunk ${id}`, err);
      }
    }
    opts.onProgress?.('chunks', counts);
    if (page.next === null) break;
    after = page.next;
  }

  // 5. tombstones
  if (!opts.dryRun) {
    opts.onProgress?.('tombstones', counts);
    await purgeWithGrace(
      s.tombstones,
      (key) => ks.purgeTombstone(key),
      () => counts.tombstonesPurged++,
      (key, err) => fail(`tombstone ${key.toString('hex')}`, err),
      opts.signal,
    );
  }
  // 6. lock sessions and directory-lease holders
  opts.onProgress?.('sessions', counts);
  const sessionOpts = (what: string) => ({
    dryRun: opts.dryRun ?? false,
    ...(opts.signal ? { signal: opts.signal } : {}),
    maxWaitMs: opts.sessionWaitMs ?? DEFAULT_SESSION_WAIT_MS,
    onFailure: (key: Buffer, err: unknown) => fail(`${what} ${key.toString('latin1')}`, err),
  });
  const sessions = await collectSessions(ks, s.sessions, sessionOpts('session'));
  const holders = await collectSessions(ks, s.holders, sessionOpts('lease holder'), LEASE_HOLDERS);
  counts.sessionsDeleted = sessions.deleted + holders.deleted;
  counts.sessionsLive = sessions.live + holders.live;
  opts.onProgress?.('done', counts);
  return counts;
}

/**
 * Deletes an orphan's entries, chunk maps and inode, last the inode (so an
 * interrupted gc leaves a group the next run still finds), then its candidate
 * record. Returns the records deleted, or null when it turned out not to be
 * an orphan after all (touched within the grace period).
 *
 * Every key is buried, not just deleted when a read finds it: the survey also
 * sees a value that only a minority of replicas accepted (the accept of a mount
 * killed mid-send). A quick read from the other replicas answers "absent" and a
 * delete would then write nothing, so the lone value would outlive gc and could
 * still be chosen by a later round that asks its replica. A tombstone under a
 * higher ballot settles it for good.
 */
async function reclaimGroup(ks: MaintainableKeySpace, ino: Ino, graceMs: number, seen: Survey): Promise<number | null> {
  const b = await ks.read(inodeKey(ino));
  if (b && isRecent(decodeInode(b).ctime, Date.now(), graceMs)) return null;
  let deleted = 0;
  const bury = async (key: Buffer): Promise<void> => {
    let had = false;
    await ks.change(key, (old) => {
      had = old !== null;
      return null;
    });
    if (had) deleted++;
  };
  const keys = [...(seen.dirents.get(ino) ?? []).map((e) => direntKey(ino, e.name)), ...[...(seen.pages.get(ino)?.keys() ?? [])].map((n) => mapPageKey(ino, n))];
  const surveyed = new Map(keys.map((k) => [k.toString('latin1'), k]));
  for (const range of [DIRENT_RANGE, MAP_RANGE]) {
    for (;;) {
      const page = await ks.scan(inoGroup(ino), range.start, range.end, { limit: 1000 });
      if (page.entries.length === 0) break;
      for (const e of page.entries) surveyed.delete(e.key.toString('latin1'));
      await Promise.all(page.entries.map((e) => bury(e.key)));
    }
  }
  await Promise.all([...surveyed.values()].map(bury));
  let gone = false;
  await ks.change(inodeKey(ino), (old) => {
    if (old && isRecent(decodeInode(old).ctime, Date.now(), graceMs)) return KEEP;
    gone = old !== null;
    return null;
  });
  if (gone) deleted++;
  await ks.delete(gcCandidateKey(ino));
  return deleted;
}
