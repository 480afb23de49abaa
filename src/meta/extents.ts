// A file's bytes as extents over immutable chunks (as JuiceFS's slices).
//
// The file is cut into slots of the chunk size; each slot holds a sorted list
// of non-overlapping extents: slot range [start, start+len) → bytes
// [off, off+len) of a chunk. What no extent covers is a hole and reads as
// zeros. A write never rewrites what it did not touch: it stores its own bytes
// (packed with other small writes into one chunk) and overlays an extent that
// cuts the older ones where they overlap, so the list always says which bytes
// are newest and a read binary-searches one list, never walks layers.
//
// A chunk-map page record holds MAP_PAGE_SLOTS slots. A mount publishes a
// file's changes as *ops* (overlay an extent, cut at an offset) applied to the
// page's current value inside one register change: two mounts that wrote
// different ranges of one slot both keep their bytes, and the later of two
// writes to the same bytes wins, as in a local filesystem.
import { Decoder, Encoder } from '../util/codec.js';
import { QfsError } from '../util/errors.js';
import type { ChunkId } from '../util/ids.js';

/** Slots per chunk-map page: 64 MiB of file with 1 MiB chunks. */
export const MAP_PAGE_SLOTS = 64;
/**
 * At most this many extents in one slot after a mount publishes it (the mount
 * compacts a slot first when its changes would pass it). Concurrent writers to
 * the same slot from several mounts can pass it until the next compaction.
 */
export const MAX_EXTENTS_PER_SLOT = 256;
/** A published slot with more extents than this is compacted in the background. */
export const COMPACT_EXTENTS = 64;

/** A run of bytes in a slot, taken from `src` at `off`. */
export interface Span<S> {
  start: number;
  len: number;
  src: S;
  off: number;
}

export type Extent = Span<ChunkId>;

export type SlotOp = Extent | { cut: number };

/** A chunk-map page: slot index within the page → its extents (absent = all hole). */
export type MapPage = Map<number, Extent[]>;

function end<S>(s: Span<S>): number {
  return s.start + s.len;
}

/** First index whose span ends after `pos` (binary search). */
export function firstEndingAfter<S>(list: readonly Span<S>[], pos: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (end(list[mid]!) <= pos) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * `list` with `span` laid over it: overlapped parts of older spans are cut
 * away; a span that continues its neighbour in the same source merges with it.
 * Returns a new list; the input is not changed.
 */
export function overlay<S>(list: readonly Span<S>[], span: Span<S>): Span<S>[] {
  if (span.len <= 0) return list.slice();
  const s = span.start;
  const e = end(span);
  const i = firstEndingAfter(list, s);
  let j = i;
  while (j < list.length && list[j]!.start < e) j++;
  const out = list.slice(0, i);
  const first = list[i];
  if (first && first.start < s && i < j) out.push({ start: first.start, len: s - first.start, src: first.src, off: first.off });
  pushMerged(out, { ...span });
  const last = list[j - 1];
  if (last && i < j && end(last) > e) pushMerged(out, { start: e, len: end(last) - e, src: last.src, off: last.off + (e - last.start) });
  for (let k = j; k < list.length; k++) pushMerged(out, list[k]!);
  return out;
}

function pushMerged<S>(out: Span<S>[], span: Span<S>): void {
  const prev = out[out.length - 1];
  if (prev && end(prev) === span.start && prev.src === span.src && prev.off + prev.len === span.off) {
    out[out.length - 1] = { ...prev, len: prev.len + span.len };
  } else {
    out.push(span);
  }
}

/** `list` without anything at or past `at`. */
export function cutAt<S>(list: readonly Span<S>[], at: number): Span<S>[] {
  const out: Span<S>[] = [];
  for (const x of list) {
    if (x.start >= at) break;
    out.push(end(x) > at ? { ...x, len: at - x.start } : x);
  }
  return out;
}

export function applyOps(list: readonly Extent[], ops: readonly SlotOp[]): Extent[] {
  let cur = list.slice();
  for (const op of ops) cur = 'cut' in op ? cutAt(cur, op.cut) : overlay(cur, op);
  return cur;
}

/** The spans overlapping [pos, pos+len), in order. */
export function spansIn<S>(list: readonly Span<S>[], pos: number, len: number): Span<S>[] {
  const out: Span<S>[] = [];
  for (let k = firstEndingAfter(list, pos); k < list.length && list[k]!.start < pos + len; k++) out.push(list[k]!);
  return out;
}

/** Every chunk a page references. */
export function chunksOfPage(p: MapPage): Set<ChunkId> {
  const ids = new Set<ChunkId>();
  for (const list of p.values()) for (const x of list) ids.add(x.src);
  return ids;
}

const PAGE_VERSION = 2;

export function encodeMapPage(p: MapPage): Buffer {
  const ids = [...chunksOfPage(p)];
  const ref = new Map(ids.map((id, k) => [id, k]));
  if (ids.length > 0xffff) throw new QfsError('bad_request', `chunk-map page with ${ids.length} chunks`);
  let extents = 0;
  for (const list of p.values()) extents += list.length;
  const e = new Encoder(8 + ids.length * 32 + p.size * 4 + extents * 14);
  e.u8(PAGE_VERSION).u16(ids.length);
  for (const id of ids) e.raw(Buffer.from(id, 'hex'));
  const slots = [...p].filter(([, list]) => list.length > 0).sort((a, b) => a[0] - b[0]);
  e.u16(slots.length);
  for (const [slot, list] of slots) {
    if (list.length > 0xffff) throw new QfsError('bad_request', `slot with ${list.length} extents`);
    e.u16(slot).u16(list.length);
    for (const x of list) e.u32(x.start).u32(x.len).u16(ref.get(x.src)!).u32(x.off);
  }
  return e.finish();
}

export function decodeMapPage(b: Buffer): MapPage {
  const d = new Decoder(b);
  const version = d.u8('page version');
  if (version !== PAGE_VERSION) throw new QfsError('corrupt', `chunk-map page version ${version}`);
  const ids: ChunkId[] = [];
  for (let n = d.u16('chunks'), k = 0; k < n; k++) ids.push(d.raw(32, 'chunk id').toString('hex') as ChunkId);
  const p: MapPage = new Map();
  for (let n = d.u16('slots'), k = 0; k < n; k++) {
    const slot = d.u16('slot');
    if (slot >= MAP_PAGE_SLOTS) throw new QfsError('corrupt', `slot ${slot} in a chunk-map page`);
    const list: Extent[] = [];
    let prevEnd = 0;
    for (let m = d.u16('extents'), q = 0; q < m; q++) {
      const x = { start: d.u32('start'), len: d.u32('len'), src: ids[d.u16('chunk ref')]!, off: d.u32('off') };
      if (x.src === undefined || x.len === 0 || x.start < prevEnd) throw new QfsError('corrupt', 'malformed extent in a chunk-map page');
      prevEnd = x.start + x.len;
      list.push(x);
    }
    p.set(slot, list);
  }
  d.end();
  return p;
}
