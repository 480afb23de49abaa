// Record checksums: a stored state that fails its CRC is a lost copy. The
// node then refuses to promise or answer for the key, takes an accept only
// above its durable ballot ceiling (which heals the key), and lists the key
// to maintenance scans. Damage is made the way a disk makes it: a byte of
// lmdb's data file flipped while the store is closed.
import test, { type ExecutionContext } from 'ava';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RecordStore } from '../../src/store/record-store.js';
import { RecordChecksumError, decodeState, encodeState } from '../../src/store/record-codec.js';
import type { AcceptorState, RecordValue } from '../../src/store/types.js';
import { compareBallots } from '../../src/util/ballot.js';
import { isQfsError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/log.js';
import { ballot, tempDir } from './helpers.js';

const val = (s: string): RecordValue => ({ kind: 'value', bytes: Buffer.from(s) });

async function open(t: ExecutionContext, dir: string): Promise<RecordStore> {
  const store = await RecordStore.open(dir, silentLogger());
  t.teardown(() => store.close());
  return store;
}

/**
 * Flips one bit in every copy of `marker` in the store's data file (lmdb
 * copies pages on write, so stale copies of a page may still hold it).
 */
async function rot(dir: string, marker: string): Promise<void> {
  const file = join(dir, 'data.mdb');
  const bytes = await readFile(file);
  let copies = 0;
  for (let at = bytes.indexOf(Buffer.from(marker)); at >= 0; at = bytes.indexOf(Buffer.from(marker), at + 1)) {
    bytes[at + 2]! ^= 0x04;
    copies++;
  }
  if (copies === 0) throw new Error(`${marker} is not in ${file}`);
  await writeFile(file, bytes);
}

test('every flipped bit of a stored state fails its checksum; states of the formats before checksums still read', (t) => {
  const states: AcceptorState[] = [
    { promised: ballot(9), accepted: ballot(8), value: val('hello') },
    { promised: ballot(3), accepted: ballot(2), value: val('x'), tag: 7 },
    { promised: ballot(1), accepted: ballot(0, '0000000000000000'), value: { kind: 'empty' } },
  ];
  for (const s of states) {
    const good = encodeState(s);
    t.deepEqual(decodeState(good), s);
    for (let i = 0; i < good.length; i++) {
      for (const bit of [0x01, 0x80]) {
        const bad = Buffer.from(good);
        bad[i]! ^= bit;
        const err = t.throws(() => decodeState(bad));
        t.true(isQfsError(err, 'corrupt'), `byte ${i} bit ${bit}`);
      }
    }
    // The same state as a store from before checksums wrote it: no trailer, version 1 or 2.
    const old = Buffer.from(good.subarray(0, good.length - 4));
    old[0] = s.tag === undefined ? 1 : 2;
    t.deepEqual(decodeState(old), s);
  }
  const bad = encodeState(states[0]!);
  bad[bad.length - 6]! ^= 1;
  t.true(t.throws(() => decodeState(bad)) instanceof RecordChecksumError);
});

test('a lost key answers no read or prepare, refuses accepts up to the ceiling, and is healed by one above it', async (t) => {
  const dir = await tempDir(t);
  const K = Buffer.from('inode/lost');
  const other = Buffer.from('inode/other');
  {
    const store = await RecordStore.open(dir, silentLogger());
    t.true((await store.prepare(K, ballot(40))).ok);
    t.true((await store.accept(K, ballot(40), val('MARKER-lost-value'))).ok);
    t.true((await store.accept(other, ballot(3), val('fine'))).ok);
    await store.close();
  }
  await rot(dir, 'MARKER-lost-value');
  const store = await open(t, dir);
  t.true(isQfsError(t.throws(() => store.read(K)), 'corrupt'), 'a read does not report a state it cannot trust');
  t.deepEqual(store.read(other).value, val('fine'), 'other keys are untouched');

  const prep = await store.prepare(K, ballot(10_000_000));
  t.false(prep.ok, 'no promise, even far above what the key held: its accepted value is unknown');
  const ceiling = prep.state.promised;
  t.true(compareBallots(ceiling, ballot(40)) > 0, 'the refusal names the ceiling, above every ballot the key held');

  const below = await store.accept(K, ballot(41), val('stale'));
  t.false(below.ok, 'an accept at or under the ceiling may be one the lost promise refused');
  t.deepEqual(below.state.promised, ceiling);
  t.false((await store.accept(K, { counter: ceiling.counter, proposer: ceiling.proposer }, val('stale'))).ok);

  t.true(isQfsError(t.throws(() => store.scan(Buffer.from('inode/'), Buffer.from('inode0'), 10)), 'corrupt'), 'a scan does not silently leave the key out');
  const listed = store.scan(Buffer.from('inode/'), Buffer.from('inode0'), 10, undefined, true);
  t.deepEqual(listed.lost?.map((k) => k.toString()), ['inode/lost']);
  t.deepEqual(listed.entries.map((e) => e.key.toString()), ['inode/other']);
  t.true(store.lostSeen >= 1);

  const heal = await store.accept(K, ballot(ceiling.counter + 1), val('healed'));
  t.true(heal.ok, 'an accept above the ceiling heals the key');
  t.deepEqual(store.read(K).value, val('healed'));
  t.true((await store.prepare(K, ballot(ceiling.counter + 2))).ok, 'and it takes part in rounds again');
});

test('the ceiling is durable and only rises: a store reopened still refuses a lost key below every ballot it ever held', async (t) => {
  const dir = await tempDir(t);
  const K = Buffer.from('k/lost');
  const high = 3 * 2 ** 20 + 5;
  {
    const store = await RecordStore.open(dir, silentLogger());
    t.true((await store.accept(K, ballot(2), val('MARKER-ceiling'))).ok);
    // Another key reaches a high ballot after it: the ceiling must cover it too.
    t.true((await store.prepare(Buffer.from('k/high'), ballot(high))).ok);
    await store.close();
  }
  await rot(dir, 'MARKER-ceiling');
  const store = await open(t, dir);
  const r = await store.accept(K, ballot(high), val('stale'));
  t.false(r.ok);
  t.true(r.state.promised.counter >= high, `ceiling ${r.state.promised.counter} covers ballot ${high} of another key`);
});
