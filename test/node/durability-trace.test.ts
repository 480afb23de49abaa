// "A storage node acknowledges only after fsync", shown from the node's own
// system calls: one node runs under strace while a client keeps many chunk
// puts, prepares, accepts, tombstones and purges in flight; afterwards every
// acknowledgement found on the wire is matched to the syscalls that made its
// write durable (test/helpers/strace.ts says why the matching is exact). The
// checker itself is tested first on hand-written traces, so a reply that goes
// out before its fsync is known to be caught. docs/durability.md has the claim
// and what the trace showed.
import test from 'ava';
import { join } from 'node:path';
import { connect, tempDir, writeCluster } from '../helpers/cluster.js';
import { Rand, requestFrame, sha256, testSeed } from '../helpers/raw-rpc.js';
import {
  checkDurability,
  describe,
  parseStrace,
  pathAliases,
  shorten,
  startTracedNode,
  straceUnavailable,
  type Ack,
  type DurabilityReport,
} from '../helpers/strace.js';
import * as M from '../../src/rpc/messages.js';
import { responseEncoder } from '../../src/rpc/frame.js';
import { encodeState } from '../../src/store/record-codec.js';
import type { AcceptorState } from '../../src/store/types.js';
import type { Ballot } from '../../src/util/ballot.js';
import type { ChunkId } from '../../src/util/ids.js';

// ---------------------------------------------------------------- hand-written traces

const D = '/data/n1';
const PORT = 7000;
const SOCK = `TCP:[127.0.0.1:${PORT}->127.0.0.1:50000]`;
const MAIN = 100;
const WORKER = 101;
const LMDB = 102;

const hex = (b: Buffer | string): string => [...Buffer.from(b)].map((x) => `\\x${x.toString(16).padStart(2, '0')}`).join('');
const q = (b: Buffer | string): string => `"${hex(b)}"`;
/** An fd as `strace -yy -xx` prints it: paths in hex, socket names as they are. */
const fd = (n: number, path: string): string => `${n}<${path.startsWith('TCP:') ? path : hex(path)}>`;
const cwd = `AT_FDCWD<${hex('/')}>`;

function wsFrame(payload: Buffer, mask: Buffer | null): Buffer {
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x82, len]) : Buffer.from([0x82, 126, len >> 8, len & 0xff]);
  if (!mask) return Buffer.concat([head, payload]);
  head[1] = head[1]! | 0x80;
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] = body[i]! ^ mask[i & 3]!;
  return Buffer.concat([head, mask, body]);
}

interface Line {
  label: string;
  pid: number;
  text: string;
}

class Script {
  readonly lines: Line[] = [];
  add(pid: number, text: string, label = ''): this {
    this.lines.push({ label, pid, text });
    return this;
  }
  private at(label: string): number {
    const i = this.lines.findIndex((l) => l.label === label);
    if (i < 0) throw new Error(`no line labelled ${label}`);
    return i;
  }
  /** A copy with the line `label` moved to just before the line `target`. */
  moveBefore(label: string, target: string): Script {
    const s = this.copy();
    const [line] = s.lines.splice(s.at(label), 1);
    s.lines.splice(s.at(target), 0, line!);
    return s;
  }
  /** A copy with a line added just after the line `label`. */
  insertAfter(label: string, pid: number, text: string, newLabel = ''): Script {
    const s = this.copy();
    s.lines.splice(s.at(label) + 1, 0, { label: newLabel, pid, text });
    return s;
  }
  without(label: string): Script {
    const s = this.copy();
    s.lines.splice(s.at(label), 1);
    return s;
  }
  replace(label: string, text: string): Script {
    const s = this.copy();
    s.lines[s.at(label)]!.text = text;
    return s;
  }
  copy(): Script {
    const s = new Script();
    s.lines.push(...this.lines.map((l) => ({ ...l })));
    return s;
  }
  text(): string {
    return this.lines.map((l, i) => `${l.pid}  12:00:00.${String(100000 + i).slice(1)}0 ${l.text}`).join('\n') + '\n';
  }
}

const UPGRADE = Buffer.from('GET /rpc HTTP/1.1\r\nUpgrade: websocket\r\n\r\n');
const SWITCHING = Buffer.from('HTTP/1.1 101 Switching Protocols\r\n\r\n');
const CHUNK = Buffer.from('chunk bytes that the node writes to its temp file');
const CID = sha256(CHUNK);
const TMP = `${D}/tmp/${CID}.0123456789ab`;
const FANOUT = `${D}/chunks/${CID.slice(0, 2)}/${CID.slice(2, 4)}`;
const KEY = Buffer.from('k/one');
const STATE: AcceptorState = {
  promised: { counter: 1, proposer: '00000000000000aa' },
  accepted: { counter: 1, proposer: '00000000000000aa' },
  value: { kind: 'value', bytes: Buffer.from('the value') },
};

/** A node that does everything right: one chunk put (request 1) and one accept (request 2). */
function goodTrace(): Script {
  const s = new Script();
  const mdb = `${D}/records/data.mdb`;
  s.add(WORKER, `mkdir(${q(`${D}/records`)}, 0777) = 0`)
    .add(MAIN, `openat(${cwd}, ${q(mdb)}, O_RDWR|O_CREAT, 0664) = ${fd(5, mdb)}`)
    .add(MAIN, `openat(${cwd}, ${q(mdb)}, O_WRONLY|O_DSYNC|O_CLOEXEC) = ${fd(6, mdb)}`, 'open-dsync')
    .add(MAIN, `openat(${cwd}, ${q(`${D}/records`)}, O_RDONLY|O_CLOEXEC) = ${fd(8, `${D}/records`)}`)
    .add(MAIN, `fsync(${fd(8, `${D}/records`)}) = 0`, 'records-dir-sync')
    .add(MAIN, `close(${fd(8, `${D}/records`)}) = 0`);
  for (const sub of ['chunks', 'tmp']) s.add(WORKER, `mkdir(${q(`${D}/${sub}`)}, 0777) = 0`);
  s.add(WORKER, `openat(${cwd}, ${q(D)}, O_RDONLY|O_CLOEXEC) = ${fd(7, D)}`)
    .add(WORKER, `fsync(${fd(7, D)}) = 0`)
    .add(WORKER, `close(${fd(7, D)}) = 0`)
    .add(MAIN, `accept4(${fd(3, `TCP:[127.0.0.1:${PORT}]`)}, NULL, NULL, SOCK_CLOEXEC|SOCK_NONBLOCK) = ${fd(9, SOCK)}`)
    .add(MAIN, `read(${fd(9, SOCK)}, ${q(UPGRADE)}, 65536) = ${UPGRADE.length}`)
    .add(MAIN, `write(${fd(9, SOCK)}, ${q(SWITCHING)}, ${SWITCHING.length}) = ${SWITCHING.length}`);
  const put = requestFrame(1, M.Op.ChunkPut, (e) => M.ChunkPut.encode(e, { id: CID, bytes: CHUNK }));
  const accept = requestFrame(2, M.Op.RecordAccept, (e) => M.RecordAccept.encode(e, { key: KEY, ballot: STATE.accepted, value: STATE.value, promiseNext: false }));
  const both = Buffer.concat([wsFrame(put, Buffer.from([1, 2, 3, 4])), wsFrame(accept, Buffer.from([9, 8, 7, 6]))]);
  // one request split over two reads, the second sharing a read with the next
  s.add(MAIN, `read(${fd(9, SOCK)}, ${q(both.subarray(0, 20))}, 65536) = 20`).add(MAIN, `read(${fd(9, SOCK)}, ${q(both.subarray(20))}, 65536) = ${both.length - 20}`);
  // the chunk
  s.add(WORKER, `openat(${cwd}, ${q(TMP)}, O_WRONLY|O_CREAT|O_EXCL|O_TRUNC|O_CLOEXEC, 0644) = ${fd(10, TMP)}`, 'chunk-open')
    .add(WORKER, `write(${fd(10, TMP)}, ${q(CHUNK)}, ${CHUNK.length}) = ${CHUNK.length}`, 'chunk-write')
    .add(WORKER, `fsync(${fd(10, TMP)} <unfinished ...>`, 'fsync-start')
    .add(LMDB, `pwrite64(${fd(5, mdb)}, ${q(Buffer.concat([Buffer.alloc(64), KEY, encodeState(STATE), Buffer.alloc(32)]))}, ${64 + KEY.length + encodeState(STATE).length + 32}, 8192) = ${64 + KEY.length + encodeState(STATE).length + 32}`, 'page')
    .add(WORKER, `<... fsync resumed>) = 0 <0.000200>`, 'fsync-end')
    .add(WORKER, `close(${fd(10, TMP)}) = 0`);
  let dir = `${D}/chunks`;
  for (const part of [CID.slice(0, 2), CID.slice(2, 4)]) {
    const sub = `${dir}/${part}`;
    s.add(WORKER, `mkdir(${q(sub)}, 0777) = 0`)
      .add(WORKER, `openat(${cwd}, ${q(dir)}, O_RDONLY|O_CLOEXEC) = ${fd(11, dir)}`)
      .add(WORKER, `fsync(${fd(11, dir)}) = 0`, `parent-sync-${part}`)
      .add(WORKER, `close(${fd(11, dir)}) = 0`);
    dir = sub;
  }
  s.add(WORKER, `rename(${q(TMP)}, ${q(`${FANOUT}/${CID}`)}) = 0`, 'rename')
    .add(WORKER, `openat(${cwd}, ${q(FANOUT)}, O_RDONLY|O_CLOEXEC) = ${fd(11, FANOUT)}`)
    .add(WORKER, `fsync(${fd(11, FANOUT)}) = 0 <0.000150>`, 'dir-sync')
    .add(WORKER, `close(${fd(11, FANOUT)}) = 0`);
  // the record: pages, sync, meta page through the O_DSYNC descriptor
  s.add(LMDB, `fdatasync(${fd(5, mdb)}) = 0 <0.000210>`, 'fdatasync').add(LMDB, `pwrite64(${fd(6, mdb)}, ${q(Buffer.alloc(128, 7))}, 128, 4136) = 128`, 'meta');
  // the replies, both in one writev after everything
  const r1 = wsFrame(responseEncoder({ id: 1, status: 0 }).u8(M.PUT_STORED).finish(), null);
  const e2 = responseEncoder({ id: 2, status: 0 });
  M.VerdictReply.encode(e2, { ok: true, state: STATE });
  const r2 = wsFrame(e2.finish(), null);
  s.add(MAIN, `writev(${fd(9, SOCK)}, [{iov_base=${q(r1.subarray(0, 2))}, iov_len=2}, {iov_base=${q(r1.subarray(2))}, iov_len=${r1.length - 2}}], 2) = ${r1.length}`, 'reply-chunk');
  s.add(MAIN, `writev(${fd(9, SOCK)}, [{iov_base=${q(r2.subarray(0, 2))}, iov_len=2}, {iov_base=${q(r2.subarray(2))}, iov_len=${r2.length - 2}}], 2) = ${r2.length}`, 'reply-accept');
  return s;
}

const check = (s: Script): DurabilityReport => checkDurability(parseStrace(s.text()), { dataDir: D, port: PORT });

test('checker: a node that syncs everything before replying passes', (t) => {
  const r = check(goodTrace());
  t.deepEqual(r.problems, []);
  t.deepEqual(r.entryProblems, []);
  t.deepEqual(
    r.acks.map((a) => `${a.kind} ${a.outcome}`),
    ['chunk_put stored', 'record_accept value'],
  );
  // the proof of the chunk ends with the rename, the fan-out fsync and its parents, then the reply
  const chunk = r.acks[0]!;
  t.true(chunk.proof.some((e) => e.name === 'rename'));
  t.is(chunk.proof.at(-1)!.name, 'writev');
  t.deepEqual(
    r.acks[1]!.proof.map((e) => e.name),
    ['pwrite64', 'fdatasync', 'pwrite64', 'writev'],
  );
});

const badChunk: Array<[string, (s: Script) => Script]> = [
  ['the reply goes out before the fan-out directory fsync', (s) => s.moveBefore('reply-chunk', 'dir-sync')],
  ['the reply goes out while the file fsync is still running', (s) => s.moveBefore('reply-chunk', 'fsync-end')],
  ['the rename comes before the file fsync', (s) => s.moveBefore('rename', 'fsync-start')],
  ['the file is written after its fsync', (s) => s.moveBefore('chunk-write', 'rename')],
  ['the fan-out directory is never fsynced', (s) => s.without('dir-sync')],
  ['a new fan-out directory entry is never fsynced in its parent', (s) => s.without(`parent-sync-${CID.slice(2, 4)}`)],
  ['the file gets fewer bytes than the chunk', (s) => s.replace('chunk-write', `write(${fd(10, TMP)}, ${q(CHUNK.subarray(1))}, ${CHUNK.length - 1}) = ${CHUNK.length - 1}`)],
  ['the file fsync fails', (s) => s.replace('fsync-end', '<... fsync resumed>) = -1 EIO (Input/output error)')],
];
for (const [what, mutate] of badChunk) {
  test(`checker: a chunk put is reported when ${what}`, (t) => {
    const r = check(mutate(goodTrace()));
    t.is(r.problems.length, 1, r.problems.join('\n'));
    t.regex(r.problems[0] ?? '', /^chunk_put /);
  });
}

/** The chunk as the store writes it with O_DIRECT: padded to a 4 KiB block, then cut back to its length. */
function directTrace(): Script {
  const padded = Buffer.concat([CHUNK, Buffer.alloc(4096 - CHUNK.length)]);
  return goodTrace()
    .replace('chunk-open', `openat(${cwd}, ${q(TMP)}, O_WRONLY|O_CREAT|O_EXCL|O_DIRECT|O_CLOEXEC, 0644) = ${fd(10, TMP)}`)
    .replace('chunk-write', `pwrite64(${fd(10, TMP)}, ${q(padded)}, 4096, 0) = 4096`)
    .insertAfter('chunk-write', WORKER, `ftruncate(${fd(10, TMP)}, ${CHUNK.length}) = 0`, 'cut');
}

test('checker: a chunk written with O_DIRECT, padded and cut back to its length before the fsync, is durable', (t) => {
  const r = check(directTrace());
  t.deepEqual(r.problems, []);
  t.true(r.acks.some((a) => a.kind === 'chunk_put' && a.proof.some((e) => e.name === 'ftruncate')));
});

const badDirect: Array<[string, (s: Script) => Script]> = [
  ['is never cut back to its length', (s) => s.without('cut')],
  ['is cut back to the wrong length', (s) => s.replace('cut', `ftruncate(${fd(10, TMP)}, ${CHUNK.length + 1}) = 0`)],
  ['is cut back after its fsync', (s) => s.moveBefore('cut', 'rename')],
];
for (const [what, mutate] of badDirect) {
  test(`checker: a chunk put is reported when its padded O_DIRECT write ${what}`, (t) => {
    const r = check(mutate(directTrace()));
    t.is(r.problems.length, 1, r.problems.join('\n'));
    t.regex(r.problems[0] ?? '', /^chunk_put /);
  });
}

const badRecord: Array<[string, (s: Script) => Script]> = [
  ['the reply goes out before the fdatasync', (s) => s.moveBefore('reply-accept', 'fdatasync')],
  ['the reply goes out before the meta page write', (s) => s.moveBefore('reply-accept', 'meta')],
  ['the meta page is written before the fdatasync', (s) => s.moveBefore('meta', 'fdatasync')],
  ['the meta page goes through a descriptor without O_DSYNC', (s) => s.replace('open-dsync', `openat(${cwd}, ${q(`${D}/records/data.mdb`)}, O_WRONLY|O_CLOEXEC) = ${fd(6, `${D}/records/data.mdb`)}`)],
  ['the acknowledged state is not the one written', (s) => s.replace('page', `pwrite64(${fd(5, `${D}/records/data.mdb`)}, ${q(Buffer.concat([KEY, Buffer.from('another state')]))}, 18, 8192) = 18`)],
];
for (const [what, mutate] of badRecord) {
  test(`checker: a record accept is reported when ${what}`, (t) => {
    const r = check(mutate(goodTrace()));
    t.is(r.problems.length, 1, r.problems.join('\n'));
    t.regex(r.problems[0] ?? '', /^record_accept /);
  });
}

test('checker: a records file whose directory entry was never fsynced is reported', (t) => {
  const r = check(goodTrace().without('records-dir-sync'));
  t.deepEqual(r.problems, []);
  t.is(r.entryProblems.length, 1);
  t.regex(r.entryProblems[0]!, /data\.mdb was created/);
});

test('checker: io_uring is reported as a blind spot', (t) => {
  const s = goodTrace().add(MAIN, 'io_uring_setup(256, {flags=0, sq_thread_cpu=0, sq_thread_idle=0}) = 12');
  t.is(check(s).blind.length, 1);
});

test('checker: socket data cut off by strace is an error, not a pass', (t) => {
  const s = goodTrace().replace('reply-chunk', `write(${fd(9, SOCK)}, "\\x82\\x07"..., 9) = 9`);
  t.throws(() => check(s), { message: /truncated/ });
});

// ---------------------------------------------------------------- the real node

const PROPOSER = '00000000000000d7';
const ballot = (counter: number): Ballot => ({ counter, proposer: PROPOSER });
const LANES = 32;
const CHUNKS = 100;
const DUPLICATES = 12;
const KEYS = 140;

interface Run {
  report: DurabilityReport;
  clientAcks: string[];
  events: number;
  traceBytes: number;
  dataDir: string;
}
let run: Run | null = null;

const unavailable = straceUnavailable();
const realTest = unavailable ? test.serial.skip : test.serial;
if (unavailable) console.log(`durability-trace: skipping the traced node: ${unavailable}. CI must install the Debian package strace.`);

realTest('every acknowledgement of a traced node follows the fsyncs that make its write durable', async (t) => {
  t.timeout(120_000);
  const seed = testSeed();
  t.log(`seed ${seed} (QFS_SEED=${seed} replays it)`);
  const r = new Rand(seed);
  const cluster = await writeCluster(t, 1, { replication: 1 });
  const traceDir = await tempDir(t, 'qfs-strace-');
  const node = await startTracedNode(t, cluster, 'n1', join(traceDir, 'trace.txt'));
  const c = connect(t, cluster, 'n1', { timeoutMs: 60_000 });

  const clientAcks: string[] = [];
  const chunks: Array<{ id: ChunkId; bytes: Buffer }> = [];
  for (let i = 0; i < CHUNKS; i++) {
    // sizes stay small because every byte written is printed in the trace; size does not change the path taken
    const bytes = r.bytes(r.range(1, 16 * 1024));
    chunks.push({ id: sha256(bytes), bytes });
  }
  const tasks: Array<() => Promise<void>> = [];
  for (const ch of chunks) {
    tasks.push(async () => {
      clientAcks.push(`chunk_put ${ch.id} ${await c.putChunk(ch.id, ch.bytes)}`);
    });
  }
  for (let i = 0; i < DUPLICATES; i++) {
    const ch = r.pick(chunks);
    tasks.push(async () => {
      clientAcks.push(`chunk_put ${ch.id} ${await c.putChunk(ch.id, ch.bytes)}`);
    });
  }
  for (let i = 0; i < KEYS; i++) {
    const key = `trace/${i}/${r.hex(4)}`;
    const k = Buffer.from(key);
    const value = r.bytes(r.range(1, 200));
    const kind = r.int(10);
    const accept = async (counter: number, v: M.Verdict | Promise<M.Verdict>, what: string): Promise<void> => {
      const verdict = await v;
      if (!verdict.ok) throw new Error(`${what} ${key} at ${counter} refused`);
      clientAcks.push(`${what} ${key} ${verdict.state.value.kind}`);
    };
    tasks.push(async () => {
      if (kind < 3) await accept(1, c.prepare(k, ballot(1)), 'record_prepare');
      await accept(1, c.accept(k, ballot(1), { kind: 'value', bytes: value }, { promiseNext: kind >= 3 && kind < 6 }), 'record_accept');
      if (kind < 6) return;
      await accept(2, c.accept(k, ballot(2), { kind: 'tombstone', bytes: Buffer.from(`gone:${key}`) }), 'record_accept');
      if (kind < 8) return;
      purges.push(async () => {
        if (!(await c.purge(k, ballot(2)))) throw new Error(`purge of ${key} refused`);
        clientAcks.push(`record_purge ${key} purged`);
      });
    });
  }
  // Purges raise the store-wide floor, which would make later fresh keys refuse
  // ballot 1, so they run last, among themselves and the last chunk puts.
  const purges: Array<() => Promise<void>> = [];
  const late = tasks.splice(0, 20);
  shuffle(r, tasks);
  await inLanes(tasks);
  await inLanes(shuffle(r, [...purges, ...late]));
  c.close();
  const exit = await node.stop();
  t.is(exit.code, 0, 'the node (and strace with it) exits cleanly');

  const text = node.readTrace();
  const events = parseStrace(text);
  const dataDir = cluster.nodes[0]!.dataDir;
  const report = checkDurability(events, { dataDir, aliases: await pathAliases(dataDir), port: cluster.nodes[0]!.port });
  run = { report, clientAcks, events: events.length, traceBytes: text.length, dataDir };

  t.deepEqual(report.blind, [], 'nothing bypassed the trace');
  t.deepEqual(report.problems.slice(0, 20), [], `${report.problems.length} acknowledgements not preceded by their fsyncs`);
  // every acknowledgement the client got is one the checker found and checked, and no more
  t.deepEqual(report.acks.map((a) => `${a.kind} ${a.subject} ${a.outcome}`).sort(), [...clientAcks].sort());
  t.is(report.errors, 0);
  t.is(report.notWrites, 0);
  const kinds = new Set(report.acks.map((a) => `${a.kind} ${a.outcome}`));
  for (const k of ['chunk_put stored', 'chunk_put exists', 'record_prepare empty', 'record_accept value', 'record_accept tombstone', 'record_purge purged']) {
    t.true(kinds.has(k), `the run acknowledged at least one ${k}`);
  }
  t.is(report.lmdb.msync, 0);

  // The same real trace with the syncs taken out must fail for every acknowledgement that needed them.
  const opts = { dataDir, aliases: await pathAliases(dataDir), port: cluster.nodes[0]!.port };
  const records = report.acks.filter((a) => a.kind !== 'chunk_put').length;
  const noFdatasync = checkDurability(events.filter((e) => e.name !== 'fdatasync'), opts);
  t.is(noFdatasync.problems.length, records, 'without fdatasync no record acknowledgement is shown durable');
  t.true(noFdatasync.problems.every((p) => p.startsWith('record_')));
  const chunkDirSync = (e: (typeof events)[number]): boolean => e.name === 'fsync' && e.args[0]?.kind === 'fd' && /\/chunks\/[0-9a-f]{2}\/[0-9a-f]{2}$/.test(e.args[0].path);
  const noDirSync = checkDurability(events.filter((e) => !chunkDirSync(e)), opts);
  t.is(noDirSync.problems.length, report.acks.length - records, 'without fan-out directory fsyncs no chunk put is shown durable');
  t.true(noDirSync.problems.every((p) => p.startsWith('chunk_put')));
  t.true(report.lmdb.flushes.size > 0 && report.lmdb.metaWrites.size > 0);

  t.log(`trace: ${events.length} syscalls, ${(text.length / 1e6).toFixed(1)} MB; ${report.acks.length} acknowledgements checked`);
  t.log(`lmdb: data ${fmt(report.lmdb.dataWrites)}; flush ${fmt(report.lmdb.flushes)}; meta ${fmt(report.lmdb.metaWrites)}; msync ${report.lmdb.msync}`);
  t.log(`most requests in flight at once on the node: ${maxInFlight(report.acks)}`);
  const show = (a: Ack | undefined): void => {
    if (!a) return;
    t.log(`${a.kind} ${a.subject.slice(0, 16)}… (request ${a.id}, ${a.outcome}):\n` + a.proof.map((e) => '  ' + shorten(describe(e), dataDir, '$DATA')).join('\n'));
  };
  show(report.acks.find((a) => a.kind === 'chunk_put' && a.outcome === 'stored' && a.proof.some((e) => e.name === 'mkdir')));
  show(report.acks.find((a) => a.kind === 'record_accept'));
  show(report.acks.find((a) => a.kind === 'record_purge'));
});

// lmdb creates records/data.mdb and never syncs records/: the record store does (RecordStore.open).
(unavailable ? test.serial.skip : test.serial)('records/data.mdb has a durable directory entry before the first record is acknowledged', (t) => {
  if (!run) return t.fail('the traced run did not complete');
  for (const p of run.report.entryProblems) t.log(shorten(p, run.dataDir, '$DATA'));
  t.deepEqual(run.report.entryProblems, []);
});

function shuffle<T>(r: Rand, xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = r.int(i + 1);
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

async function inLanes(tasks: ReadonlyArray<() => Promise<void>>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: LANES }, async () => {
      while (next < tasks.length) await tasks[next++]!();
    }),
  );
}

function fmt(m: Map<string, number>): string {
  return [...m].map(([k, v]) => `${v}× ${k}`).join(', ') || 'none';
}

/** From the trace: the most requests the node had read and not yet answered, seen at any reply. */
function maxInFlight(acks: readonly Ack[]): number {
  let max = 0;
  for (const a of acks) {
    const at = a.proof.at(-1)!.entry;
    max = Math.max(max, acks.filter((b) => b.request.exit < at && b.proof.at(-1)!.entry >= at).length);
  }
  return max;
}
