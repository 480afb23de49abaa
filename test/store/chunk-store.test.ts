import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ChunkStore } from '../../src/store/chunk-store.js';
import { DirectWrites } from '../../src/store/direct-writes.js';
import { MAX_CHUNK_BYTES } from '../../src/store/types.js';
import { isQfsError, type ErrorCode } from '../../src/util/errors.js';
import type { ChunkId } from '../../src/util/ids.js';
import { silentLogger } from '../../src/util/log.js';
import { chunkIdOf, tempDir, tree } from './helpers.js';

async function openStore(t: ExecutionContext, dir?: string, reserveBytes = 0, directWrites = true): Promise<{ store: ChunkStore; dir: string }> {
  const d = dir ?? (await tempDir(t));
  const store = await ChunkStore.open(d, silentLogger(), { reserveBytes, directWrites });
  t.teardown(() => store.close());
  return { store, dir: d };
}

async function code(p: Promise<unknown>): Promise<ErrorCode | 'resolved'> {
  try {
    await p;
    return 'resolved';
  } catch (err) {
    return isQfsError(err) ? err.code : 'internal';
  }
}

const chunkPath = (dir: string, id: string): string => join(dir, 'chunks', id.slice(0, 2), id.slice(2, 4), id);

test('put, get and ranges', async (t) => {
  const { store, dir } = await openStore(t);
  const bytes = randomBytes(1000);
  const id = chunkIdOf(bytes);
  t.is(await store.put(id, bytes), 'stored');
  t.deepEqual(await readFile(chunkPath(dir, id)), bytes);
  t.deepEqual(await store.get(id), bytes);
  t.deepEqual(await store.get(id, 10, 20), bytes.subarray(10, 30));
  t.deepEqual(await store.get(id, 990, 100), bytes.subarray(990), 'length clamped to the file');
  t.is((await store.get(id, 5000)).length, 0, 'offset past the end');
  t.deepEqual(await store.get(id, 0, 0), Buffer.alloc(0));
  t.is(await code(store.get(chunkIdOf(Buffer.from('absent')))), 'not_found');
  t.is(await code(store.get(id, -1)), 'bad_request');
  const empty = Buffer.alloc(0);
  t.is(await store.put(chunkIdOf(empty), empty), 'stored', 'a zero-length chunk is a chunk');
});

test('a wrong hash is corrupt and leaves no file', async (t) => {
  const { store, dir } = await openStore(t);
  const before = await tree(dir);
  const id = chunkIdOf(Buffer.from('what the id claims'));
  t.is(await code(store.put(id, Buffer.from('something else'))), 'corrupt');
  t.deepEqual(await tree(dir), before);
  t.deepEqual(await store.has([id]), [false]);
  t.is(await code(store.put(id, Buffer.alloc(MAX_CHUNK_BYTES + 1))), 'bad_request');
});

const unchecked = async (dir: string, id: string): Promise<boolean> => ((await stat(chunkPath(dir, id))).mode & 0o100) !== 0;

test('a deferred put stores its bytes unchecked and marked; a checked one is not marked', async (t) => {
  for (const directWrites of [true, false]) {
    const { store, dir } = await openStore(t, undefined, 0, directWrites);
    const claimed = chunkIdOf(Buffer.from('what the id claims'));
    // not hashed: even bytes that do not match the id are stored
    t.is(await store.put(claimed, Buffer.from('something else'), 'defer'), 'stored');
    t.true(await unchecked(dir, claimed), `the copy is marked unchecked (direct ${directWrites})`);
    t.deepEqual(store.stats(), { chunks: 1, bytes: 14 });
    const good = randomBytes(3000);
    t.is(await store.put(chunkIdOf(good), good), 'stored');
    t.false(await unchecked(dir, chunkIdOf(good)));
  }
});

test('a put that finds an unchecked copy checks its own bytes, then keeps a copy that holds them or replaces one that does not', async (t) => {
  const { store, dir } = await openStore(t);
  const right = randomBytes(70_000);
  const id = chunkIdOf(right);
  // an unchecked copy with other bytes under the id (a writer's bug): a later writer of the real bytes is not told 'exists'
  t.is(await store.put(id, randomBytes(5000), 'defer'), 'stored');
  t.is(await code(store.put(id, Buffer.from('not these either'), 'defer')), 'corrupt', 'bytes that do not match are refused, deferred or not');
  t.is(await store.put(id, right, 'defer'), 'stored', 'the deferred put of the right bytes was checked and stored');
  t.deepEqual(await readFile(chunkPath(dir, id)), right);
  t.false(await unchecked(dir, id));
  t.deepEqual(store.stats(), { chunks: 1, bytes: right.length }, 'replaced, not counted twice');
  t.is(await store.put(id, Buffer.from('wrong bytes'), 'defer'), 'exists', 'over a checked copy a deferred put changes nothing');
  t.deepEqual(await readFile(chunkPath(dir, id)), right);
  // an unchecked copy of the right bytes: a checked put finds it good, clears the mark and leaves the file in place
  const other = randomBytes(4096);
  const oid = chunkIdOf(other);
  t.is(await store.put(oid, other, 'defer'), 'stored');
  const ino = (await stat(chunkPath(dir, oid))).ino;
  t.is(await store.put(oid, other), 'exists');
  t.false(await unchecked(dir, oid));
  t.is((await stat(chunkPath(dir, oid))).ino, ino, 'not rewritten');
});

test('verify clears the mark of a good unchecked copy and quarantines a bad one', async (t) => {
  const { store, dir } = await openStore(t);
  const good = randomBytes(10_000);
  t.is(await store.put(chunkIdOf(good), good, 'defer'), 'stored');
  t.is(await store.verify(chunkIdOf(good)), 'ok');
  t.false(await unchecked(dir, chunkIdOf(good)));
  const claimed = chunkIdOf(Buffer.from('claimed'));
  t.is(await store.put(claimed, Buffer.from('bad'), 'defer'), 'stored');
  t.is(await store.verify(claimed), 'corrupt');
  t.deepEqual(await store.has([claimed]), [false]);
  t.is((await readdir(join(dir, 'quarantine'))).length, 1);
});

test('put is idempotent, also when concurrent', async (t) => {
  const { store, dir } = await openStore(t);
  const bytes = randomBytes(64 * 1024);
  const id = chunkIdOf(bytes);
  const results = await Promise.all(Array.from({ length: 8 }, () => store.put(id, bytes)));
  t.deepEqual(results.sort(), ['exists', 'exists', 'exists', 'exists', 'exists', 'exists', 'exists', 'stored']);
  t.is(await store.put(id, bytes), 'exists');
  t.deepEqual(await readFile(chunkPath(dir, id)), bytes);
  t.deepEqual(await readdir(join(dir, 'tmp')), []);
  t.deepEqual(store.stats(), { chunks: 1, bytes: bytes.length });
});

test('has and list: ascending order and pagination across fan-out dirs', async (t) => {
  const { store } = await openStore(t);
  const ids: ChunkId[] = [];
  for (let i = 0; i < 60; i++) {
    const bytes = Buffer.from(`chunk ${i}`);
    ids.push(chunkIdOf(bytes));
    await store.put(ids[i]!, bytes);
  }
  ids.sort();
  t.true(new Set(ids.map((id) => id.slice(0, 2))).size > 20, 'the ids spread over many fan-out dirs');
  const paged: ChunkId[] = [];
  let after: ChunkId | null = null;
  for (;;) {
    const page: ChunkId[] = await store.list(after, 7);
    t.true(page.length <= 7);
    if (page.length === 0) break;
    paged.push(...page);
    after = page[page.length - 1]!;
  }
  t.deepEqual(paged, ids);
  t.deepEqual(await store.list(null, 1000), ids);
  // `after` need not be a stored id
  const between = (ids[10]!.slice(0, 62) + 'ff') as ChunkId;
  t.deepEqual((await store.list(between, 2))[0], ids.find((id) => id > between));
  const absent = chunkIdOf(Buffer.from('not stored'));
  t.deepEqual(await store.has([ids[0]!, absent, ids[59]!]), [true, false, true]);
  t.is(await code(store.list(null, 0)), 'bad_request');
});

test('delete removes a chunk and updates stats', async (t) => {
  const { store } = await openStore(t);
  const a = Buffer.from('aaaa');
  const b = Buffer.from('bbbbbbbb');
  await store.put(chunkIdOf(a), a);
  await store.put(chunkIdOf(b), b);
  t.deepEqual(store.stats(), { chunks: 2, bytes: 12 });
  t.true(await store.delete(chunkIdOf(a)));
  t.false(await store.delete(chunkIdOf(a)));
  t.is(await code(store.get(chunkIdOf(a))), 'not_found');
  t.deepEqual(store.stats(), { chunks: 1, bytes: 8 });
  t.is(await store.put(chunkIdOf(a), a), 'stored');
});

test('verify detects a flipped byte, quarantines the copy, and a re-put restores it', async (t) => {
  const { store, dir } = await openStore(t);
  const bytes = randomBytes(4096);
  const id = chunkIdOf(bytes);
  await store.put(id, bytes);
  t.is(await store.verify(id), 'ok');
  const damaged = Buffer.from(bytes);
  damaged[1234] = damaged[1234]! ^ 0x01;
  await writeFile(chunkPath(dir, id), damaged);
  t.is(await store.verify(id), 'corrupt');
  const quarantined = await readdir(join(dir, 'quarantine'));
  t.is(quarantined.length, 1);
  t.true(quarantined[0]!.startsWith(id));
  t.deepEqual(await readFile(join(dir, 'quarantine', quarantined[0]!)), damaged);
  t.deepEqual(await store.has([id]), [false]);
  t.deepEqual(store.stats(), { chunks: 0, bytes: 0 });
  t.is(await store.verify(id), 'missing');
  t.is(await store.put(id, bytes), 'stored');
  t.is(await store.verify(id), 'ok');
  t.deepEqual(await store.get(id), bytes);
});

test('malformed ids are bad_request and touch no path', async (t) => {
  const root = await tempDir(t);
  const dir = join(root, 'node');
  const { store } = await openStore(t, dir);
  const before = await tree(root);
  const good = chunkIdOf(Buffer.from('x'));
  const badIds = ['../../etc/passwd', '../' + good.slice(3), good.toUpperCase(), good.slice(0, 63), good + '0', '', 'g'.repeat(64), `${good.slice(0, 60)}/../`];
  for (const bad of badIds) {
    const id = bad as ChunkId;
    t.is(await code(store.put(id, Buffer.from('x'))), 'bad_request', `put ${bad}`);
    t.is(await code(store.get(id)), 'bad_request', `get ${bad}`);
    t.is(await code(store.has([good, id])), 'bad_request', `has ${bad}`);
    t.is(await code(store.delete(id)), 'bad_request', `delete ${bad}`);
    t.is(await code(store.verify(id)), 'bad_request', `verify ${bad}`);
    t.is(await code(store.list(id, 10)), 'bad_request', `list ${bad}`);
  }
  t.deepEqual(await tree(root), before, 'nothing was created, inside or outside the store');
});

test('stats count chunks and bytes, and are recounted at open; tmp is cleared at open', async (t) => {
  const { store, dir } = await openStore(t);
  const sizes = [10, 2000, 70_000];
  for (const n of sizes) await store.put(chunkIdOf(Buffer.alloc(n, n % 251)), Buffer.alloc(n, n % 251));
  t.deepEqual(store.stats(), { chunks: 3, bytes: 72_010 });
  await store.close();
  await store.close(); // idempotent
  t.is(await code(store.put(chunkIdOf(Buffer.from('late')), Buffer.from('late'))), 'closed');
  await writeFile(join(dir, 'tmp', 'left-over-from-a-crash'), 'junk');
  await mkdir(join(dir, 'chunks', 'zz'), { recursive: true }); // not a fan-out name: ignored
  const { store: reopened } = await openStore(t, dir);
  t.deepEqual(reopened.stats(), { chunks: 3, bytes: 72_010 });
  t.deepEqual(await readdir(join(dir, 'tmp')), []);
  const cap = await reopened.capacity();
  t.true(cap.totalBytes > 0 && cap.freeBytes > 0 && cap.freeBytes <= cap.totalBytes);
});

test('a put that would eat into the reserve is no_space and leaves nothing behind', async (t) => {
  const { store, dir } = await openStore(t, undefined, Number.MAX_SAFE_INTEGER);
  const bytes = randomBytes(1000);
  const id = chunkIdOf(bytes);
  t.is(await code(store.put(id, bytes)), 'no_space');
  t.deepEqual(await readdir(join(dir, 'tmp')), []);
  t.deepEqual(await tree(join(dir, 'chunks')), []);
  t.deepEqual(await store.has([id]), [false]);
  t.deepEqual(store.stats(), { chunks: 0, bytes: 0 });
});

/** Whether `dir`'s filesystem takes O_DIRECT (tmpfs did not before Linux 6.6). */
async function takesDirectIo(dir: string): Promise<boolean> {
  try {
    const fh = await open(join(dir, 'probe'), constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT, 0o644);
    await fh.close();
    await rm(join(dir, 'probe'));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EINVAL') return false;
    throw err;
  }
}

test('chunk files go past the page cache where the filesystem allows it, any length, and read back exact', async (t) => {
  const { store, dir } = await openStore(t);
  // Lengths around the 4 KiB alignment, a whole 1 MiB slot, and one past it (written through the cache).
  const lengths = [1, 4095, 4096, 4097, 65_537, 1024 * 1024, 1024 * 1024 + 1];
  // More at once than there are aligned slots: the rest wait for a slot.
  const many = Array.from({ length: 40 }, () => randomBytes(300_000));
  const all = [...lengths.map((n) => randomBytes(n)), ...many];
  const results = await Promise.all(all.map((b) => store.put(chunkIdOf(b), b)));
  t.true(results.every((r) => r === 'stored'));
  for (const b of all) {
    const id = chunkIdOf(b);
    t.deepEqual(await readFile(chunkPath(dir, id)), b, `${b.length} bytes on disk`);
    t.deepEqual(await store.get(id), b, `${b.length} bytes read back`);
  }
  t.deepEqual(await readdir(join(dir, 'tmp')), [], 'no temp file left');
  const direct = store.directWrites();
  if (await takesDirectIo(dir)) {
    t.true(direct.enabled);
    t.is(direct.written, all.length - 1, 'all but the chunk over 1 MiB went direct');
    t.is(store.directReads(), all.length - 1, 'and were read back direct');
    const ranged = all.find((b) => b.length > 200_000)!;
    t.deepEqual(await store.get(chunkIdOf(ranged), 70_000, 100_000), ranged.subarray(70_000, 170_000), 'a ranged read through the cache');
    t.is(store.directReads(), all.length - 1, 'a ranged read does not go direct');
  } else {
    t.log(`${dir} does not take O_DIRECT: checked the fallback only`);
    t.deepEqual(direct, { enabled: false, written: 0 });
  }
});

test('a filesystem that refuses O_DIRECT gets its chunks through the page cache, and is not asked again', async (t) => {
  const d = await tempDir(t);
  const refusals: string[] = [];
  // As tmpfs did before Linux 6.6: the open itself fails with EINVAL.
  const refusing = new DirectWrites(async (path) => {
    refusals.push(path);
    throw Object.assign(new Error('EINVAL: invalid argument'), { code: 'EINVAL' });
  });
  const bytes = randomBytes(100_000);
  t.is(await refusing.writeNew(join(d, 'a'), bytes, 0o644), 'unsupported');
  t.false(refusing.enabled);
  t.is(await refusing.writeNew(join(d, 'b'), bytes, 0o644), 'unsupported');
  t.is(refusals.length, 1, 'asked once');
  t.deepEqual(await readdir(d), [], 'nothing left behind');
  // The store's own path through the cache, as such a filesystem gets it.
  const { store, dir } = await openStore(t, undefined, 0, false);
  t.is(await store.put(chunkIdOf(bytes), bytes), 'stored');
  t.deepEqual(await readFile(chunkPath(dir, chunkIdOf(bytes))), bytes);
  t.deepEqual(store.directWrites(), { enabled: false, written: 0 });
  t.deepEqual(await store.get(chunkIdOf(bytes)), bytes, 'read back through the cache');
  t.is(store.directReads(), 0);
});

test('whole-chunk reads fall back to the page cache when the filesystem refuses O_DIRECT reads, and keep their errors', async (t) => {
  const d = await tempDir(t);
  const bytes = randomBytes(50_000);
  await writeFile(join(d, 'c'), bytes);
  const alloc = (n: number) => Buffer.alloc(n);
  /** `into` that must not be called: a read that goes through the cache has not used the reply yet. */
  const never = (): Buffer => {
    throw new Error('into called for a read that did not go direct');
  };
  const direct = new DirectWrites();
  if (await takesDirectIo(d)) {
    t.deepEqual(await direct.readWhole(join(d, 'c'), Infinity, alloc), { bytes, short: false });
    t.deepEqual(await direct.readWhole(join(d, 'c'), 1000, alloc), { bytes: bytes.subarray(0, 1000), short: false }, 'the first bytes only, when asked');
    await writeFile(join(d, 'big'), randomBytes(1024 * 1024 + 1));
    t.is(await direct.readWhole(join(d, 'big'), Infinity, never), 'unsupported', 'over a slot: through the cache');
  }
  await t.throwsAsync(direct.readWhole(join(d, 'missing'), 10, never), { code: 'ENOENT' });
  let asked = 0;
  const refusing = new DirectWrites(async (path, flags) => {
    asked++;
    if (flags & constants.O_DIRECT) throw Object.assign(new Error('EINVAL: invalid argument'), { code: 'EINVAL' });
    return await open(path, flags);
  });
  t.is(await refusing.readWhole(join(d, 'c'), Infinity, never), 'unsupported');
  t.is(await refusing.readWhole(join(d, 'c'), Infinity, never), 'unsupported');
  t.is(asked, 1, 'asked once');

  // Handles that read 1000 bytes, then refuse (EINVAL at the misaligned offset) or find the end.
  const firstOpenReads = (then: 'EINVAL' | 'end') => {
    let opens = 0;
    return new DirectWrites(async (path, flags, mode) => {
      const fh = await open(path, flags & ~constants.O_DIRECT, mode);
      if (opens++ > 0) return fh;
      let reads = 0;
      return new Proxy(fh, {
        get(target, prop) {
          if (prop === 'read')
            return async (buf: Buffer, off: number) => {
              if (reads++ > 0) {
                if (then === 'EINVAL') throw Object.assign(new Error('EINVAL: invalid argument'), { code: 'EINVAL' });
                return { bytesRead: 0, buffer: buf };
              }
              bytes.copy(buf, off, 0, 1000);
              return { bytesRead: 1000, buffer: buf };
            };
          const v = Reflect.get(target, prop) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
    });
  };
  const odd = firstOpenReads('EINVAL');
  t.is(await odd.readWhole(join(d, 'c'), Infinity, never), 'unsupported', 'this read falls back');
  t.deepEqual(await odd.readWhole(join(d, 'c'), Infinity, alloc), { bytes, short: false }, 'the next one is still tried direct');
  t.deepEqual(await firstOpenReads('end').readWhole(join(d, 'c'), Infinity, alloc), { bytes: bytes.subarray(0, 1000), short: true }, 'a file that ends before its size says so');
});
