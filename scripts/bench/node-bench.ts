// Benchmark of one storage node over loopback, held against the same bytes
// written straight to the same disk from Node:
//
//   chunk put   1 MiB chunks, 16 in flight          vs  file write + fsync + rename + dir fsync, 16 at once
//   chunk get   the same chunks, 16 in flight       vs  readFile of the same files, 16 at once
//   record      200-byte accepts, 1 and 64 in flight vs  200-byte append + fdatasync, 1 and 64 at once
//
// usage: node dist/scripts/bench/node-bench.js [--mib N] [--seconds S] [--dir DIR]
// Prints a markdown table. The node process and the temp dir are removed at
// the end, also on error or Ctrl-C.
import { chunkIdSync } from '../../src/util/hash.js';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, statfs } from 'node:fs/promises';
import { availableParallelism, cpus, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';
import { startBenchNode, type BenchNode } from './node-process.js';
import type { ChunkId } from '../../src/util/ids.js';
import { MAX_CHUNK_BYTES } from '../../src/store/types.js';

const MiB = 1024 * 1024;
const CHUNK = MiB;
const CHUNK_IN_FLIGHT = 16;
const RECORD_BYTES = 200;

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '512' },
    seconds: { type: 'string', default: '5' },
    dir: { type: 'string', default: tmpdir() },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  process.stdout.write('usage: node-bench [--mib N (chunk data, default 512)] [--seconds S (per record phase, default 5)] [--dir DIR (default $TMPDIR)]\n');
  process.exit(0);
}
const totalMiB = Number(values.mib);
const seconds = Number(values.seconds);
if (!Number.isInteger(totalMiB) || totalMiB < 16) throw new Error('--mib: expected an integer >= 16');
if (!(seconds > 0)) throw new Error('--seconds: expected a positive number');

// ---- helpers

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function pool(workers: number, count: number, job: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < count) await job(next++);
    }),
  );
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/** Runs `op` with `workers` in flight for `secs`; returns ops/s and latencies (ms). */
async function timed(workers: number, secs: number, op: (i: number) => Promise<void>): Promise<{ rate: number; p50: number; p99: number; n: number }> {
  const lat: number[] = [];
  let i = 0;
  const start = performance.now();
  const until = start + secs * 1000;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (performance.now() < until) {
        const t0 = performance.now();
        await op(i++);
        lat.push(performance.now() - t0);
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  lat.sort((a, b) => a - b);
  return { rate: lat.length / elapsed, p50: percentile(lat, 50), p99: percentile(lat, 99), n: lat.length };
}

async function fsyncDir(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Whether ws masks frames natively (the optional `bufferutil` package) or in JavaScript. */
function wsNativeMasking(): string {
  if (process.env['WS_NO_BUFFER_UTIL']) return 'no (WS_NO_BUFFER_UTIL set)';
  try {
    const wsMain = createRequire(import.meta.url).resolve('ws');
    createRequire(wsMain).resolve('bufferutil');
    return 'yes (bufferutil)';
  } catch {
    return 'no (bufferutil not installed: ws masks in JavaScript)';
  }
}

function sh(cmd: string, args: string[]): string | null {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

// ---- the data: chunk i is one of 16 random MiB with i stamped at the front, so every chunk is distinct

const base = Array.from({ length: 16 }, () => randomBytes(CHUNK));
function chunk(i: number): Buffer {
  const b = Buffer.from(base[i % base.length]!);
  b.writeUInt32BE(i, 0);
  b.writeUInt32BE(Math.floor(i / base.length), 4);
  return b;
}

async function main(node: BenchNode): Promise<void> {
  const count = totalMiB;
  const fs = await statfs(node.dir);
  const free = fs.bavail * fs.bsize;
  if (free < 2.5 * count * MiB) throw new Error(`${node.dir}: ${Math.floor(free / MiB)} MiB free, need ${Math.ceil(2.5 * count)} MiB for --mib ${count}`);

  process.stderr.write(`hashing ${count} chunks…\n`);
  const ids: ChunkId[] = [];
  for (let i = 0; i < count; i++) ids.push(chunkIdSync(chunk(i)) as ChunkId);

  const c = node.client();
  await c.ping();

  // chunk put / get through the node
  process.stderr.write(`node: putting ${count} MiB…\n`);
  const putSecs = await pool(CHUNK_IN_FLIGHT, count, async (i) => {
    const r = await c.putChunk(ids[i]!, chunk(i));
    if (r !== 'stored') throw new Error(`chunk ${i}: ${r}`);
  });
  process.stderr.write(`node: getting ${count} MiB…\n`);
  const getSecs = await pool(CHUNK_IN_FLIGHT, count, async (i) => {
    const b = await c.getChunk(ids[i]!, 0, MAX_CHUNK_BYTES);
    if (b.length !== CHUNK || b.readUInt32BE(0) !== i) throw new Error(`chunk ${i} read back wrong`);
  });

  // the same bytes straight to the same disk
  const direct = join(node.dir, 'direct');
  const directTmp = join(direct, 'tmp');
  await mkdir(directTmp, { recursive: true });
  for (let d = 0; d < 256; d++) await mkdir(join(direct, 'chunks', d.toString(16).padStart(2, '0')), { recursive: true });
  await fsyncDir(join(direct, 'chunks'));
  process.stderr.write(`direct: writing ${count} MiB…\n`);
  const directPutSecs = await pool(CHUNK_IN_FLIGHT, count, async (i) => {
    const id = ids[i]!;
    const tmp = join(directTmp, `${id}.tmp`);
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(chunk(i));
      await fh.sync();
    } finally {
      await fh.close();
    }
    const dir = join(direct, 'chunks', id.slice(0, 2));
    await rename(tmp, join(dir, id));
    await fsyncDir(dir);
  });
  process.stderr.write(`direct: reading ${count} MiB…\n`);
  const directGetSecs = await pool(CHUNK_IN_FLIGHT, count, async (i) => {
    const id = ids[i]!;
    const b = await readFile(join(direct, 'chunks', id.slice(0, 2), id));
    if (b.length !== CHUNK) throw new Error('short read');
  });

  // records through the node
  const value = randomBytes(RECORD_BYTES);
  const ballot = { counter: 1, proposer: '00000000000000be' };
  process.stderr.write(`node: record accepts, 1 in flight, ${seconds} s…\n`);
  const rec1 = await timed(1, seconds, async (i) => {
    const v = await c.accept(Buffer.from(`bench/one/${i}`), ballot, { kind: 'value', bytes: value });
    if (!v.ok) throw new Error('accept refused');
  });
  process.stderr.write(`node: record accepts, 64 in flight, ${seconds} s…\n`);
  const rec64 = await timed(64, seconds, async (i) => {
    const v = await c.accept(Buffer.from(`bench/many/${i}`), ballot, { kind: 'value', bytes: value });
    if (!v.ok) throw new Error('accept refused');
  });

  // 200-byte append + fdatasync straight to the disk
  const log = await open(join(direct, 'append.log'), 'a');
  let direct1;
  let direct64;
  try {
    process.stderr.write(`direct: append + fdatasync, 1 at a time, ${seconds} s…\n`);
    direct1 = await timed(1, seconds, async () => {
      await log.write(value);
      await log.datasync();
    });
    process.stderr.write(`direct: append + fdatasync, 64 at once, ${seconds} s…\n`);
    direct64 = await timed(64, seconds, async () => {
      await log.write(value);
      await log.datasync();
    });
  } finally {
    await log.close();
  }

  // ---- report
  const mibs = (secs: number): number => count / secs;
  const f1 = (n: number): string => n.toFixed(1);
  const f2 = (n: number): string => n.toFixed(2);
  const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}×`;
  const rows: string[][] = [
    ['chunk put, 1 MiB, 16 in flight (MiB/s)', f1(mibs(putSecs)), f1(mibs(directPutSecs)), ratio(mibs(putSecs), mibs(directPutSecs))],
    ['chunk get, 1 MiB, 16 in flight (MiB/s)', f1(mibs(getSecs)), f1(mibs(directGetSecs)), ratio(mibs(getSecs), mibs(directGetSecs))],
    ['record accept, 1 in flight (ops/s)', f1(rec1.rate), f1(direct1.rate), ratio(rec1.rate, direct1.rate)],
    ['  latency p50 / p99 (ms)', `${f2(rec1.p50)} / ${f2(rec1.p99)}`, `${f2(direct1.p50)} / ${f2(direct1.p99)}`, ratio(rec1.p50, direct1.p50) + ' (p50)'],
    ['record accept, 64 in flight (ops/s)', f1(rec64.rate), f1(direct64.rate), ratio(rec64.rate, direct64.rate)],
    ['  latency p50 / p99 (ms)', `${f2(rec64.p50)} / ${f2(rec64.p99)}`, `${f2(direct64.p50)} / ${f2(direct64.p99)}`, ratio(rec64.p50, direct64.p50) + ' (p50)'],
  ];
  const fsType = sh('findmnt', ['-n', '-o', 'FSTYPE,SOURCE', '-T', node.dir])?.replace(/\s+/g, ' on ') ?? sh('stat', ['-f', '-c', '%T', node.dir]) ?? 'unknown';
  const out = [
    `Storage node benchmark: ${count} MiB of chunks, ${seconds} s per record phase, ${new Date().toISOString().slice(0, 10)}`,
    '',
    '| measure | quorumfs node | direct from Node | quorumfs / direct |',
    '|---|---:|---:|---:|',
    ...rows.map((r) => `| ${r.join(' | ')} |`),
    '',
    '| machine | |',
    '|---|---|',
    `| nproc | ${availableParallelism()} |`,
    `| cpu | ${cpus()[0]?.model ?? 'unknown'} |`,
    `| memory | ${(totalmem() / 1024 ** 3).toFixed(1)} GiB |`,
    `| node | ${process.version} |`,
    `| kernel | ${release()} |`,
    `| ws native masking | ${wsNativeMasking()} |`,
    `| fs of ${node.dir.replace(/qfs-bench-.*$/, '')} | ${fsType} |`,
    '',
    `Record phases: ${rec1.n} and ${rec64.n} accepts through the node, ${direct1.n} and ${direct64.n} direct appends.`,
    'Chunk ids are hashed before the clock starts; the node still hashes every put to check it. Gets read from a warm page cache on both sides.',
  ];
  process.stdout.write(out.join('\n') + '\n');
}

let node: BenchNode | null = null;
const stop = (code: number): void => {
  void (node?.cleanup() ?? Promise.resolve()).finally(() => process.exit(code));
};
process.once('SIGINT', () => stop(130));
process.once('SIGTERM', () => stop(143));
process.on('unhandledRejection', (err) => {
  process.stderr.write(`node-bench: ${String((err as Error)?.stack ?? err)}\n`);
  stop(1);
});

try {
  node = await startBenchNode(values.dir);
  await main(node);
  await node.cleanup();
} catch (err) {
  process.stderr.write(`node-bench: ${String((err as Error)?.stack ?? err)}\n`);
  await node?.cleanup();
  process.exitCode = 1;
}
