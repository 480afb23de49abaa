// The filesystem's key schema over the key space. Every key is (group, name);
// the group decides placement, so all keys of one group share a replica set.
//
//   superblock              group "sb"          name ""
//   inode <ino>             group ino (8 B BE)  name "i"
//   chunk-map page <p>      group ino           name "m" + u32 BE page
//   dirent <dir>/<name>     group dirIno        name "d" + name bytes
//   rename intent <id>      group "intents"     name id (16 B)
//   locks of <ino>          group ino           name "l"      (fcntl/flock locks: src/meta/locks.ts)
//   lease of dir <ino>      group ino           name "L"      (the scope lease of its entries: src/meta/dir-scopes.ts)
//   mount session <id>      group "sessions"    name id (ASCII hex)  (lock leases: src/meta/lock-lease.ts)
//   lease holder <session>  group "holders"     name session id      (renews a mount's directory leases: src/util/lease.ts)
//
// A directory's inode and its entries share one replica set, so readdir is one
// range scan. A file's inode and its chunk-map pages share one too. Chunks are
// content-addressed and live in the chunk space, not here.
import { recordKey } from '../keyspace/types.js';
import type { Ino } from './types.js';

const SUPERBLOCK_GROUP = Buffer.from('sb');
const INTENT_GROUP = Buffer.from('intents');
const INODE_NAME = Buffer.from('i');
const LOCKS_NAME = Buffer.from('l');
const DIR_LEASE_NAME = Buffer.from('L');
const SESSION_GROUP = Buffer.from('sessions');
const MAP_PREFIX = 0x6d; // 'm'
const DIRENT_PREFIX = 0x64; // 'd'

export function inoGroup(ino: Ino): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeUInt32BE(Math.floor(ino / 0x1_0000_0000), 0);
  b.writeUInt32BE(ino % 0x1_0000_0000, 4);
  return b;
}

export function superblockKey(): Buffer {
  return recordKey(SUPERBLOCK_GROUP, Buffer.alloc(0));
}

export function inodeKey(ino: Ino): Buffer {
  return recordKey(inoGroup(ino), INODE_NAME);
}

export function mapPageKey(ino: Ino, page: number): Buffer {
  const name = Buffer.allocUnsafe(5);
  name[0] = MAP_PREFIX;
  name.writeUInt32BE(page, 1);
  return recordKey(inoGroup(ino), name);
}

export function direntName(name: Buffer): Buffer {
  return Buffer.concat([Buffer.from([DIRENT_PREFIX]), name]);
}

export function direntKey(dir: Ino, name: Buffer): Buffer {
  return recordKey(inoGroup(dir), direntName(name));
}

/** The scan range of a directory's entries: names in ["d", "e"). */
export const DIRENT_RANGE = { start: Buffer.from([DIRENT_PREFIX]), end: Buffer.from([DIRENT_PREFIX + 1]) };

export const MAP_RANGE = { start: Buffer.from([MAP_PREFIX]), end: Buffer.from([MAP_PREFIX + 1]) };

export function intentKey(id: Buffer): Buffer {
  return recordKey(INTENT_GROUP, id);
}

export const INTENT_GROUP_BYTES = INTENT_GROUP;

// gc's record of an orphan it found: group "gc", name = the orphan's inode
// group; value = when gc first saw it (ms). A later gc reclaims the orphan
// only once it has stayed an orphan for the whole grace period.
const GC_GROUP = Buffer.from('gc');

export function gcCandidateKey(ino: Ino): Buffer {
  return recordKey(GC_GROUP, inoGroup(ino));
}

export const GC_GROUP_BYTES = GC_GROUP;
export const SUPERBLOCK_GROUP_BYTES = SUPERBLOCK_GROUP;

/** The inode number of an 8-byte inode group. */
export function inoOfGroup(group: Buffer): Ino {
  return (group.readUInt32BE(0) * 0x1_0000_0000 + group.readUInt32BE(4)) as Ino;
}

/** The lock record of a file: beside its inode, on the inode's replica set. */
export function lockKey(ino: Ino): Buffer {
  return recordKey(inoGroup(ino), LOCKS_NAME);
}

/** A mount session's lease record. */
export function sessionKey(id: string): Buffer {
  return recordKey(SESSION_GROUP, Buffer.from(id, 'latin1'));
}

/** The lease record of a directory's entries: beside them, on their replica set. */
export function dirLeaseKey(dir: Ino): Buffer {
  return recordKey(inoGroup(dir), DIR_LEASE_NAME);
}

export const LOCKS_NAME_BYTES = LOCKS_NAME;
export const DIR_LEASE_NAME_BYTES = DIR_LEASE_NAME;
export const SESSION_GROUP_BYTES = SESSION_GROUP;
