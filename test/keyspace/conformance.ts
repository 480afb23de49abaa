// The contract every KeySpace implementation passes: the in-memory one and the
// cluster one run the same tests (abstract-level style).
import { chunkIdSync } from '../../src/util/hash.js';
import type { ExecutionContext, TestFn } from 'ava';
import { createHash } from 'node:crypto';
import { KEEP, recordKey, type KeySpace } from '../../src/keyspace/types.js';
import { isQfsError } from '../../src/util/errors.js';
import type { ChunkId } from '../../src/util/ids.js';

export type KeySpaceFactory = (t: ExecutionContext) => Promise<KeySpace>;

const k = (group: string, name: string) => recordKey(Buffer.from(group), Buffer.from(name));

export function keyspaceConformance(test: TestFn | TestFn['serial'], label: string, make: KeySpaceFactory): void {
  test(`${label}: read of a missing key is null; change stores and returns the value`, async (t) => {
    const ks = await make(t);
    t.is(await ks.read(k('g', 'a')), null);
    const v = await ks.change(k('g', 'a'), (old) => {
      t.is(old, null);
      return Buffer.from('one');
    });
    t.deepEqual(v, Buffer.from('one'));
    t.deepEqual(await ks.read(k('g', 'a')), Buffer.from('one'));
    await ks.change(k('g', 'a'), (old) => Buffer.concat([old!, Buffer.from('+two')]));
    t.deepEqual(await ks.read(k('g', 'a')), Buffer.from('one+two'));
  });

  test(`${label}: KEEP leaves the value; a throwing change function aborts untouched`, async (t) => {
    const ks = await make(t);
    await ks.change(k('g', 'x'), () => Buffer.from('v'));
    t.deepEqual(await ks.change(k('g', 'x'), () => KEEP), Buffer.from('v'));
    t.is(await ks.change(k('g', 'missing'), () => KEEP), null);
    const err = await t.throwsAsync(
      ks.change(k('g', 'x'), () => {
        throw new Error('EEXIST');
      }),
    );
    t.is(err?.message, 'EEXIST');
    t.deepEqual(await ks.read(k('g', 'x')), Buffer.from('v'));
  });

  test(`${label}: delete, and change returning null, leave nothing`, async (t) => {
    const ks = await make(t);
    await ks.change(k('g', 'd1'), () => Buffer.from('1'));
    await ks.change(k('g', 'd2'), () => Buffer.from('2'));
    await ks.delete(k('g', 'd1'));
    t.is(await ks.read(k('g', 'd1')), null);
    t.is(await ks.change(k('g', 'd2'), () => null), null);
    t.is(await ks.read(k('g', 'd2')), null);
    await ks.delete(k('g', 'never'));
    t.is(await ks.read(k('g', 'never')), null);
    // a deleted key can be written again
    await ks.change(k('g', 'd1'), (old) => (old === null ? Buffer.from('again') : old));
    t.deepEqual(await ks.read(k('g', 'd1')), Buffer.from('again'));
  });

  test(`${label}: scan stays in its group, orders by name, pages, skips deleted keys`, async (t) => {
    const ks = await make(t);
    for (const name of ['b', 'a', 'c', 'd', 'e']) await ks.change(k('dir', name), () => Buffer.from(name.toUpperCase()));
    await ks.change(k('dir2', 'a'), () => Buffer.from('other group'));
    await ks.change(k('di', 'rz'), () => Buffer.from('prefix lookalike'));
    await ks.delete(k('dir', 'c'));
    const all = await ks.scan(Buffer.from('dir'), Buffer.alloc(0), null);
    t.deepEqual(all.entries.map((e) => e.value.toString()), ['A', 'B', 'D', 'E']);
    t.is(all.next, null);
    const range = await ks.scan(Buffer.from('dir'), Buffer.from('b'), Buffer.from('e'));
    t.deepEqual(range.entries.map((e) => e.value.toString()), ['B', 'D']);
    const seen: string[] = [];
    let start: Buffer | null = Buffer.alloc(0);
    let pages = 0;
    while (start !== null) {
      const page: Awaited<ReturnType<KeySpace['scan']>> = await ks.scan(Buffer.from('dir'), start, null, { limit: 2 });
      seen.push(...page.entries.map((e) => e.value.toString()));
      start = page.next;
      pages++;
      t.true(pages < 10);
    }
    t.deepEqual(seen, ['A', 'B', 'D', 'E']);
  });

  test(`${label}: concurrent changes of one key lose no update`, async (t) => {
    const ks = await make(t);
    const key = k('ctr', 'n');
    const n = 40;
    await Promise.all(
      Array.from({ length: n }, () =>
        ks.change(key, (old) => Buffer.from(String(Number(old?.toString() ?? '0') + 1))),
      ),
    );
    t.is((await ks.read(key))?.toString(), String(n));
  });

  test(`${label}: chunks are content-addressed, verified, sliced`, async (t) => {
    const ks = await make(t);
    const bytes = Buffer.alloc(300_000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7) % 251;
    const id = await ks.putChunk(bytes);
    t.is(id, chunkIdSync(bytes) as ChunkId);
    t.is(await ks.putChunk(Buffer.from(bytes)), id, 'same bytes, same id');
    t.deepEqual(await ks.getChunk(id), bytes);
    t.deepEqual(await ks.getChunk(id, { offset: 1000, length: 10 }), bytes.subarray(1000, 1010));
    t.deepEqual(await ks.getChunk(id, { offset: 299_995, length: 100 }), bytes.subarray(299_995));
    t.true(await ks.hasChunk(id));
    const missing = createHash('sha256').update('nope').digest('hex') as ChunkId;
    t.false(await ks.hasChunk(missing));
    t.true(isQfsError(await t.throwsAsync(ks.getChunk(missing)), 'not_found'));
  });
}
