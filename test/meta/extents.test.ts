// Extents: the overlay/cut rules against a byte-array model, and the page codec.
import test from 'ava';
import { prng } from '../helpers/raw-rpc.js';
import { applyOps, chunksOfPage, cutAt, decodeMapPage, encodeMapPage, overlay, spansIn, type Extent, type MapPage, type SlotOp } from '../../src/meta/extents.js';
import type { ChunkId } from '../../src/util/ids.js';

const SLOT = 4096;
const id = (n: number) => n.toString(16).padStart(64, '0') as ChunkId;

/** What a list says each byte is: "<chunk>@<offset>" or null for a hole. */
function model(list: readonly Extent[]): Array<string | null> {
  const out: Array<string | null> = new Array(SLOT).fill(null);
  for (const x of list) for (let k = 0; k < x.len; k++) out[x.start + k] = `${x.src}@${x.off + k}`;
  return out;
}

function wellFormed(t: import('ava').ExecutionContext, list: readonly Extent[]): void {
  let prev = 0;
  for (const x of list) {
    t.true(x.len > 0, 'no empty extents');
    t.true(x.start >= prev, 'sorted and non-overlapping');
    prev = x.start + x.len;
  }
}


test('overlay and cut agree with a byte model over random sequences', (t) => {
  for (let seed = 1; seed <= 200; seed++) {
    const r = prng(seed);
    let list: Extent[] = [];
    const bytes: Array<string | null> = new Array(SLOT).fill(null);
    for (let step = 0; step < 40; step++) {
      if (r() < 0.15) {
        const at = Math.floor(r() * SLOT);
        list = cutAt(list, at);
        for (let k = at; k < SLOT; k++) bytes[k] = null;
      } else {
        const start = Math.floor(r() * SLOT);
        const len = 1 + Math.floor(r() * Math.min(600, SLOT - start));
        const chunk = id(1 + Math.floor(r() * 3));
        const off = Math.floor(r() * 1000);
        list = overlay(list, { start, len, src: chunk, off });
        for (let k = 0; k < len; k++) bytes[start + k] = `${chunk}@${off + k}`;
      }
      wellFormed(t, list);
    }
    t.deepEqual(model(list), bytes, `seed ${seed}`);
  }
});

test('a write that continues its neighbour in the same chunk merges with it', (t) => {
  let list = overlay([], { start: 0, len: 100, src: id(1), off: 500 });
  list = overlay(list, { start: 100, len: 50, src: id(1), off: 600 });
  t.deepEqual(list, [{ start: 0, len: 150, src: id(1), off: 500 }]);
  list = overlay(list, { start: 150, len: 10, src: id(1), off: 0 });
  t.is(list.length, 2, 'not contiguous in the chunk: two extents');
});

test('ops replayed over a page value give the same list as applied one by one', (t) => {
  const ops: SlotOp[] = [
    { start: 0, len: 4096, src: id(1), off: 0 },
    { start: 100, len: 10, src: id(2), off: 7 },
    { cut: 2000 },
    { start: 3000, len: 50, src: id(3), off: 0 },
  ];
  const list = applyOps([], ops);
  t.deepEqual(list, [
    { start: 0, len: 100, src: id(1), off: 0 },
    { start: 100, len: 10, src: id(2), off: 7 },
    { start: 110, len: 1890, src: id(1), off: 110 },
    { start: 3000, len: 50, src: id(3), off: 0 },
  ]);
  t.deepEqual(spansIn(list, 105, 10).map((x) => x.src), [id(2), id(1)]);
  t.deepEqual(spansIn(list, 2000, 1000), [], 'the hole after the cut');
});

test('pages round-trip, share one id table, and reject malformed extents', (t) => {
  const p: MapPage = new Map([
    [0, [{ start: 0, len: 10, src: id(1), off: 0 }, { start: 20, len: 5, src: id(2), off: 3 }]],
    [63, [{ start: 7, len: 1, src: id(1), off: 9 }]],
  ]);
  const b = encodeMapPage(p);
  t.deepEqual(decodeMapPage(b), p);
  t.deepEqual([...chunksOfPage(p)].sort(), [id(1), id(2)]);
  t.true(b.length < 2 * 32 + 60, 'each id stored once');
  const overlapping: MapPage = new Map([[0, [{ start: 0, len: 10, src: id(1), off: 0 }, { start: 5, len: 5, src: id(1), off: 0 }]]]);
  t.throws(() => decodeMapPage(encodeMapPage(overlapping)), { message: /malformed extent/ });
  t.throws(() => decodeMapPage(Buffer.from([1, 0, 0])), { message: /version/ });
});
