// Filesystem records: what an inode, a directory entry, a chunk-map page and
// the superblock hold, and their binary encodings.
import { Decoder, Encoder } from '../util/codec.js';
import { QfsError } from '../util/errors.js';

/** Inode numbers: random, below 2^53, never reused while referenced. */
export type Ino = number & { readonly __ino: unique symbol };
export const ROOT_INO = 1 as Ino;

export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
export const S_IFIFO = 0o010000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFSOCK = 0o140000;

/** A time with nanosecond precision: whole seconds since the epoch and nanoseconds. */
export interface Timespec {
  sec: number;
  nsec: number;
}

/**
 * The wall clock in nanoseconds, strictly increasing within this process:
 * make and rsync compare these times with local files, so they follow the
 * wall clock (a monotonic clock anchored once drifts over a long-lived mount),
 * and two changes in one millisecond still get different times. A wall clock
 * stepped back by more than a second is followed; a smaller step is absorbed.
 */
export function nowTimespec(): Timespec {
  const wallNs = BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
  lastStampNs = wallNs > lastStampNs || lastStampNs - wallNs > 1_000_000_000n ? wallNs : lastStampNs + 1n;
  return { sec: Number(lastStampNs / 1_000_000_000n), nsec: Number(lastStampNs % 1_000_000_000n) };
}
let lastStampNs = 0n;

export interface Inode {
  ino: Ino;
  /** File type and permission bits, as st_mode. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  rdev: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
  /** Directories: the parent directory (for rename loop checks and ".."). */
  parent: Ino;
  /** Symlinks: the target. */
  target: Buffer | null;
  /** Small files keep their bytes in the inode instead of chunks. */
  inline: Buffer | null;
  /** Slots with at least one extent (not all hole), for st_blocks. */
  chunks: number;
  xattrs: Map<string, Buffer>;
}

export interface Dirent {
  ino: Ino;
  /** File type bits (S_IFMT part of the mode). */
  type: number;
}

export interface Superblock {
  fsId: string;
  version: number;
  chunkSize: number;
  replication: number;
  root: Ino;
  createdAt: number;
}

// 2: chunk ids are hash-tree roots and chunk maps hold extents (meta/extents.ts).
export const FORMAT_VERSION = 2;

// 2: signed times and the mapped-chunk count (st_blocks of sparse files).
const INODE_VERSION = 2;

// Seconds may be negative (before 1970): a sign byte, then the magnitude.
function encodeTime(e: Encoder, t: Timespec): void {
  e.bool(t.sec < 0).u53(Math.abs(t.sec)).u32(t.nsec);
}

function decodeTime(d: Decoder): Timespec {
  const negative = d.bool('sign');
  const sec = d.u53('sec');
  return { sec: negative ? -sec : sec, nsec: d.u32('nsec') };
}

export function encodeInode(i: Inode): Buffer {
  const e = new Encoder(128 + (i.inline?.length ?? 0));
  e.u8(INODE_VERSION).u53(i.ino).u32(i.mode).u32(i.uid).u32(i.gid).u53(i.size).u32(i.nlink).u32(i.rdev);
  encodeTime(e, i.atime);
  encodeTime(e, i.mtime);
  encodeTime(e, i.ctime);
  e.u53(i.parent);
  e.u53(i.chunks);
  e.bool(i.target !== null);
  if (i.target) e.bytes(i.target);
  e.bool(i.inline !== null);
  if (i.inline) e.bytes(i.inline);
  e.u16(i.xattrs.size);
  for (const [k, v] of i.xattrs) e.str(k).bytes(v);
  return e.finish();
}

export function decodeInode(b: Buffer): Inode {
  try {
    const d = new Decoder(b);
    const version = d.u8();
    if (version !== INODE_VERSION) throw new QfsError('corrupt', `inode record version ${version}`);
    const i: Inode = {
      ino: d.u53() as Ino,
      mode: d.u32(),
      uid: d.u32(),
      gid: d.u32(),
      size: d.u53(),
      nlink: d.u32(),
      rdev: d.u32(),
      atime: decodeTime(d),
      mtime: decodeTime(d),
      ctime: decodeTime(d),
      parent: d.u53() as Ino,
      chunks: d.u53(),
      target: d.bool() ? Buffer.from(d.bytes(4096)) : null,
      inline: d.bool() ? Buffer.from(d.bytes(1 << 20)) : null,
      xattrs: new Map(),
    };
    const n = d.u16();
    for (let k = 0; k < n; k++) i.xattrs.set(d.str(255), Buffer.from(d.bytes(1 << 20)));
    d.end();
    return i;
  } catch (err) {
    if (err instanceof QfsError && err.code === 'corrupt') throw err;
    throw new QfsError('corrupt', `undecodable inode record: ${(err as Error).message}`);
  }
}

export function encodeDirent(d: Dirent): Buffer {
  return new Encoder(16).u53(d.ino).u32(d.type).finish();
}

export function decodeDirent(b: Buffer): Dirent {
  const d = new Decoder(b);
  const r = { ino: d.u53() as Ino, type: d.u32() };
  d.end();
  return r;
}

export function encodeSuperblock(s: Superblock): Buffer {
  return Buffer.from(JSON.stringify(s));
}

export function decodeSuperblock(b: Buffer): Superblock {
  const s = JSON.parse(b.toString('utf8')) as Superblock;
  if (s.version !== FORMAT_VERSION) throw new QfsError('corrupt', `filesystem format version ${s.version}; this quorumfs reads ${FORMAT_VERSION}`);
  return s;
}

export interface RenameIntent {
  srcDir: Ino;
  srcName: Buffer;
  dstDir: Ino;
  dstName: Buffer;
  ino: Ino;
  type: number;
  createdAt: number;
  /** RENAME_EXCHANGE: the inode the destination named, which the source name takes (absent for a plain rename). */
  exchange?: { ino: Ino; type: number };
}

export function encodeIntent(r: RenameIntent): Buffer {
  const e = new Encoder(64).u53(r.srcDir).bytes(r.srcName).u53(r.dstDir).bytes(r.dstName).u53(r.ino).u32(r.type).u53(r.createdAt);
  if (r.exchange) e.u53(r.exchange.ino).u32(r.exchange.type);
  return e.finish();
}

export function decodeIntent(b: Buffer): RenameIntent {
  const d = new Decoder(b);
  const r = {
    srcDir: d.u53() as Ino,
    srcName: Buffer.from(d.bytes(1024)),
    dstDir: d.u53() as Ino,
    dstName: Buffer.from(d.bytes(1024)),
    ino: d.u53() as Ino,
    type: d.u32(),
    createdAt: d.u53(),
  };
  // an older intent ends here; an exchange carries the other inode
  const exchange = d.remaining > 0 ? { ino: d.u53() as Ino, type: d.u32() } : undefined;
  d.end();
  return exchange ? { ...r, exchange } : r;
}
