// Random I/O over extents, on the vfs over the in-memory key space: seeded
// writes, truncates and reads at odd offsets against a Buffer model, two
// mounts taking turns with close-to-open, compaction meanwhile; then the
// extent bound, what a small write stores, and fsck.
import test from 'ava';
import { prng } from '../helpers/raw-rpc.js';
import { randomBytes } from 'node:crypto';
import { MemoryKeySpace } from '../../src/keyspace/memory.js';
import { FsMeta } from '../../src/meta/fs-meta.js';
import { fsck } from '../../src/meta/fsck.js';
import { gc } from '../../src/meta/gc.js';
import { inodeKey, mapPageKey } from '../../src/meta/schema.js';
import { decodeInode, ROOT_INO } from '../../src/meta/types.js';
import { MAX_EXTENTS_PER_SLOT, MAP_PAGE_SLOTS, decodeMapPage, type MapPage } from '../../src/meta/extents.js';
import { O_CREAT, O_RDWR, Vfs } from '../../src/vfs/vfs.js';
import { silentLogger } from '../../src/util/log.js';
import type { Ino } from '../../src/meta/types.js';

const CHUNK = 64 * 1024;


async function twoMounts(): Promise<{ ks: MemoryKeySpace; mounts: [Vfs, Vfs] }> {
  const ks = new MemoryKeySpace();
  const sb = await FsMeta.format(ks, { chunkSize: CHUNK, replication: 1 });
  const mount = () => new Vfs(new FsMeta(ks, sb), ks, { log: silentLogger(), attrTtlMs: 0, entryTtlMs: 0 });
  return { ks, mounts: [mount(), mount()] };
}

async function pagesOf(ks: MemoryKeySpace, ino: Ino, size: number): Promise<MapPage[]> {
  const out: MapPage[] = [];
  for (let page = 0; page * MAP_PAGE_SLOTS * CHUNK < Math.max(size, 1); page++) {
    const b = await ks.read(mapPageKey(ino, page));
    if (b) out.push(decodeMapPage(b));
  }
  return out;
}

async function inoOf(ks: MemoryKeySpace, vfs: Vfs, path: string): Promise<Ino> {
  return (await vfs.getattr(path)).ino as Ino;
}

async function storedBytes(ks: MemoryKeySpace): Promise<number> {
  let total = 0;
  for (let after = null as Awaited<ReturnType<MemoryKeySpace['listChunks']>>['next']; ; ) {
    const page = await ks.listChunks(after, 1000);
    for (const id of page.ids) total += (await ks.getChunk(id)).length;
    if (page.next === null) return total;
    after = page.next;
  }
}

for (const seed of [1, 2, 3, 4, 5, 6]) {
  test(`seed ${seed}: random writes, truncates and reads on two mounts match a local model`, async (t) => {
    const r = prng(seed);
    const { ks, mounts } = await twoMounts();
    let model = Buffer.alloc(0);
    let which = 0;
    let fh = await mounts[0].create('/f', 0o644, O_CREAT | O_RDWR);
    const replay = `seed ${seed}`;
    for (let step = 0; step < 400; step++) {
      const vfs = mounts[which]!;
      const x = r();
      if (x < 0.55) {
        // writes: mostly small, some crossing chunk boundaries, some past the end
        const len = r() < 0.8 ? 1 + Math.floor(r() * 5000) : 1 + Math.floor(r() * 3 * CHUNK);
        const pos = r() < 0.1 ? model.length + Math.floor(r() * 2 * CHUNK) : Math.floor(r() * Math.max(1, model.length + 1000));
        const data = Buffer.alloc(len);
        for (let k = 0; k < len; k++) data[k] = Math.floor(r() * 256);
        t.is(await vfs.write(fh, pos, data), len);
        if (pos + len > model.length) model = Buffer.concat([model, Buffer.alloc(pos + len - model.length)]);
        data.copy(model, pos);
      } else if (x < 0.62) {
        const size = r() < 0.5 ? Math.floor(r() * model.length) : model.length + Math.floor(r() * CHUNK);
        await vfs.ftruncate(fh, size);
        model = size <= model.length ? Buffer.from(model.subarray(0, size)) : Buffer.concat([model, Buffer.alloc(size - model.length)]);
      } else if (x < 0.9) {
        const pos = Math.floor(r() * (model.length + 10));
        const len = 1 + Math.floor(r() * 70_000);
        const got = await vfs.read(fh, pos, len);
        const want = model.subarray(Math.min(pos, model.length), Math.min(model.length, pos + len));
        if (!got.equals(want)) t.fail(`${replay}: step ${step}: read ${pos}+${len} differs`);
      } else if (x < 0.95) {
        await vfs.fsync(fh);
      } else {
        // close here, open on the other mount: it must see everything closed
        await vfs.release(fh);
        which = 1 - which;
        fh = await mounts[which]!.open('/f', O_RDWR);
      }
    }
    await mounts[which]!.release(fh);
    for (const m of mounts) await m.backgroundIdle();
    // a fresh mount reads the whole file back
    const { mounts: [fresh] } = { mounts: [new Vfs(mounts[0].meta, ks, { log: silentLogger(), attrTtlMs: 0, entryTtlMs: 0 })] };
    const rf = await fresh.open('/f', 0);
    const back = await fresh.read(rf, 0, model.length + 100);
    await fresh.release(rf);
    t.is(back.length, model.length, `${replay}: size`);
    t.true(back.equals(model), `${replay}: bytes`);
    const ino = await inoOf(ks, fresh, '/f');
    for (const p of await pagesOf(ks, ino, model.length)) for (const list of p.values()) t.true(list.length <= MAX_EXTENTS_PER_SLOT);
    const report = await fsck(ks, { graceMs: 0 });
    t.true(report.clean, JSON.stringify(report.findings));
  });
}

test('a 4 KiB write into a big file stores only its own bytes', async (t) => {
  const { ks, mounts: [vfs] } = await twoMounts();
  const w = await vfs.create('/big', 0o644, O_CREAT | O_RDWR);
  const data = randomBytes(16 * CHUNK);
  await vfs.write(w, 0, data);
  await vfs.release(w);
  const before = await storedBytes(ks);
  t.is(before, data.length, 'written sequentially: whole chunks');
  const fh = await vfs.open('/big', O_RDWR);
  for (let k = 0; k < 8; k++) await vfs.write(fh, k * 2 * CHUNK + 12_345, Buffer.alloc(4096, k + 1));
  await vfs.release(fh);
  await vfs.backgroundIdle();
  t.is((await storedBytes(ks)) - before, 8 * 4096, 'eight 4 KiB writes packed into one chunk of 32 KiB');
  const r = await vfs.open('/big', 0);
  const back = await vfs.read(r, 0, data.length);
  for (let k = 0; k < 8; k++) Buffer.alloc(4096, k + 1).copy(data, k * 2 * CHUNK + 12_345);
  t.true(back.equals(data));
  await vfs.release(r);
});

test('a slot fragmented past the threshold is compacted into one chunk in the background; the bytes stay', async (t) => {
  const { ks, mounts: [vfs] } = await twoMounts();
  const w = await vfs.create('/frag', 0o644, O_CREAT | O_RDWR);
  const model = Buffer.alloc(CHUNK);
  for (let k = 0; k < model.length; k++) model[k] = k & 0xff;
  await vfs.write(w, 0, model);
  await vfs.release(w);
  const fh = await vfs.open('/frag', O_RDWR);
  // every other 512-byte block: 128 writes that cannot merge, about 256 extents
  for (let k = 0; k < 128; k++) {
    const b = Buffer.alloc(300, k);
    await vfs.write(fh, k * 512, b);
    b.copy(model, k * 512);
  }
  await vfs.release(fh);
  await vfs.backgroundIdle();
  const ino = await inoOf(ks, vfs, '/frag');
  const [page] = await pagesOf(ks, ino, CHUNK);
  t.is(page!.get(0)!.length, 1, 'one extent after compaction');
  const r = await vfs.open('/frag', 0);
  t.true((await vfs.read(r, 0, CHUNK)).equals(model));
  await vfs.release(r);
  t.is(decodeInode((await ks.read(inodeKey(ino)))!).chunks, 1, 'still one mapped slot for st_blocks');
  t.true((await fsck(ks, { graceMs: 0 })).clean);
  t.is(ROOT_INO, 1 as Ino);
});

test('a fragmented file removed after its last close is not compacted (nothing read or stored for it)', async (t) => {
  const { ks, mounts: [vfs] } = await twoMounts();
  const w = await vfs.create('/gone', 0o644, O_CREAT | O_RDWR);
  await vfs.write(w, 0, randomBytes(CHUNK));
  for (let k = 0; k < 128; k++) await vfs.write(w, k * 512, randomBytes(300));
  await vfs.release(w);
  const ino = await inoOf(ks, vfs, '/gone');
  const [page] = await pagesOf(ks, ino, CHUNK);
  t.true(page!.get(0)!.length > 64, 'fragmented past the threshold: a compaction is queued');
  const chunks = ks.chunkCount;
  await vfs.unlink('/gone');
  await vfs.backgroundIdle();
  t.is(ks.chunkCount, chunks, 'no compacted chunk stored for a removed file');
});

/** A key space whose chunk-map changes fail while `failMaps` is set: a mount that dies between a compaction's put and its commit. */
class CrashingMaps extends MemoryKeySpace {
  failMaps = false;
  override async change(key: Buffer, fn: Parameters<MemoryKeySpace['change']>[1], opts?: Parameters<MemoryKeySpace['change']>[2]): Promise<Buffer | null> {
    // a map page key: group length 8, the ino, then 'm' and the page number
    if (this.failMaps && key.length === 1 + 8 + 5 && key[9] === 0x6d) throw new Error('mount died here');
    return super.change(key, fn, opts);
  }
}

test('a compaction cut off between its put and its commit loses nothing: the old extents stay, fsck is clean, gc takes the spare chunk', async (t) => {
  const ks = new CrashingMaps();
  const sb = await FsMeta.format(ks, { chunkSize: CHUNK, replication: 1 });
  const vfs = new Vfs(new FsMeta(ks, sb), ks, { log: silentLogger(), attrTtlMs: 0, entryTtlMs: 0 });
  const model = randomBytes(CHUNK);
  const w = await vfs.create('/c', 0o644, O_CREAT | O_RDWR);
  await vfs.write(w, 0, model);
  for (let k = 0; k < 128; k++) {
    const b = randomBytes(300);
    await vfs.write(w, k * 512, b);
    b.copy(model, k * 512);
  }
  await vfs.release(w);
  const ino = await inoOf(ks, vfs, '/c');
  const [before] = await pagesOf(ks, ino, CHUNK);
  t.true(before!.get(0)!.length > 64, 'fragmented');
  const chunksBefore = ks.chunkCount;
  ks.failMaps = true;
  await vfs.backgroundIdle();
  ks.failMaps = false;
  t.is(ks.chunkCount, chunksBefore + 1, 'the compacted chunk was stored');
  const [after] = await pagesOf(ks, ino, CHUNK);
  t.deepEqual(after!.get(0), before!.get(0), 'the slot is as it was');
  const fresh = new Vfs(new FsMeta(ks, sb), ks, { log: silentLogger(), attrTtlMs: 0, entryTtlMs: 0 });
  const r = await fresh.open('/c', 0);
  t.true((await fresh.read(r, 0, CHUNK)).equals(model));
  await fresh.release(r);
  const report = await fsck(ks, { graceMs: 0 });
  t.is(report.errors, 0, JSON.stringify(report.findings));
  const swept = await gc(ks, { graceMs: 0 });
  t.is(swept.chunksSwept, 1, 'the unreferenced compacted chunk');
  const r2 = await fresh.open('/c', 0);
  t.true((await fresh.read(r2, 0, CHUNK)).equals(model), 'still readable after gc');
  await fresh.release(r2);
});
