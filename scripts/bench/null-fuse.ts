// The FUSE ceiling: the null filesystem (src/fuse/null-fs.ts) mounted through
// our binding, written and read with dd:
//
//   write  dd if=/dev/zero of=MNT/data bs=1M count=N conv=fsync
//   read   dd if=MNT/data of=/dev/null bs=1M count=N
//
// with 4 KiB requests, with libfuse 2.9's 128 KiB and with our default (libfuse 3:
// 1 MiB writes, 1 MiB read-ahead), or with the request sizes given by --sizes. The mount is
// served by a child process (this file with --serve): the serving process must
// never do I/O on its own mount.
//
// usage: node dist/scripts/bench/null-fuse.js [--mib N (default 1024)] [--runs R (default 3)]
// Prints a markdown table (MB/s = 10^6 bytes/s, as dd). Mounts, children and
// temp dirs are removed at the end, also on error or Ctrl-C.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { FuseMount, fuseOptionList, DEFAULT_MOUNT_OPTIONS, type MountOptions } from '../../src/fuse/binding.js';
import { nullFs } from '../../src/fuse/null-fs.js';

const MiB = 1024 * 1024;

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '1024' },
    runs: { type: 'string', default: '3' },
    sizes: { type: 'string' },
    serve: { type: 'string' },
    options: { type: 'string', default: '{}' },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  process.stdout.write('usage: null-fuse [--mib N (default 1024)] [--runs R (default 3)] [--sizes KiB,KiB,... (request sizes: max_write and read-ahead)]\n');
  process.exit(0);
}

// ---- the child: serves the null filesystem until "stop" on stdin

async function serve(mountpoint: string, options: Partial<MountOptions>): Promise<void> {
  process.stdout.on('error', () => {}); // the parent may be gone: still unmount
  const fs = nullFs({ size: Number(values.mib) * MiB });
  const mount = await FuseMount.mount(mountpoint, fs.ops, options);
  process.stdout.write(JSON.stringify({ ready: true, options: mount.optionList }) + '\n');
  const stop = async (): Promise<void> => {
    await mount.unmount().catch(() => {});
    process.stdout.write(JSON.stringify({ counters: fs.counters }) + '\n');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() === 'stop') break;
  }
  await stop();
}

// ---- the parent

interface Served {
  child: ChildProcess;
  mountpoint: string;
  dir: string;
  lines: AsyncIterator<string>;
  optionList: string[];
}

const live = new Set<Served>();

function mounted(mountpoint: string): boolean {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === mountpoint);
}

function cleanup(s: Served): void {
  for (const cmd of [['fusermount', '-u', s.mountpoint], ['umount', '-l', s.mountpoint]]) {
    if (!mounted(s.mountpoint)) break;
    try {
      execFileSync(cmd[0]!, cmd.slice(1), { stdio: 'ignore' });
    } catch {
      // try the next way
    }
  }
  if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
  rmSync(s.dir, { recursive: true, force: true });
  live.delete(s);
}

process.on('exit', () => {
  for (const s of live) cleanup(s);
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));

async function start(options: Partial<MountOptions>): Promise<Served> {
  const dir = mkdtempSync(join(tmpdir(), 'qfs-null-fuse-'));
  const mountpoint = join(dir, 'mnt');
  execFileSync('mkdir', [mountpoint]);
  const self = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, [self, '--serve', mountpoint, '--options', JSON.stringify(options), '--mib', String(values.mib)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const s: Served = { child, mountpoint, dir, lines, optionList: [] };
  live.add(s);
  const first = await lines.next();
  if (first.done === true) throw new Error('the serving child exited before mounting');
  s.optionList = (JSON.parse(first.value) as { options: string[] }).options;
  return s;
}

interface Counters {
  maxWrite: number;
  bytesWritten: number;
  maxRead: number;
  bytesRead: number;
}

async function stop(s: Served): Promise<Counters | undefined> {
  s.child.stdin!.write('stop\n');
  let counters: Counters | undefined;
  for (;;) {
    const next = await Promise.race([s.lines.next(), new Promise<null>((r) => setTimeout(() => r(null), 10_000))]);
    if (next === null || next.done === true) break;
    const msg = JSON.parse(next.value) as { counters?: typeof counters };
    if (msg.counters) counters = msg.counters;
  }
  cleanup(s);
  return counters;
}

function dd(args: string[]): number {
  const t0 = process.hrtime.bigint();
  execFileSync('dd', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 600_000 });
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const mib = Number(values.mib);
  const runs = Number(values.runs);
  if (!Number.isInteger(mib) || mib < 1) throw new Error('--mib: expected a positive integer');
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs: expected a positive integer');
  const bytes = mib * MiB;
  const sizes = values.sizes === undefined ? [] : values.sizes.split(',').map(Number);
  const variants: Array<{ name: string; options: Partial<MountOptions> }> = sizes.length > 0 ? sizes.map((kib) => ({
    name: `max_write=${kib * 1024}, read-ahead ${kib} KiB`,
    options: { maxWrite: kib * 1024, readAheadKb: kib },
  })) : [
    { name: 'max_write=4096 (4 KiB writes)', options: { bigWrites: false } },
    { name: 'max_write=131072, read-ahead 128 KiB (libfuse 2.9 sizes)', options: { maxWrite: 131072, readAheadKb: undefined } },
    { name: 'max_write=1048576, read-ahead 1 MiB (default)', options: {} },
  ];

  process.stdout.write(`null filesystem through FUSE, ${mib} MiB per dd, ${runs} run(s) each; ${cpus().length} × ${cpus()[0]?.model ?? '?'}, Linux ${release()}, Node ${process.version}\n\n`);
  process.stdout.write('| options | write MB/s (dd bs=1M conv=fsync) | read MB/s (dd bs=1M) | largest write / read seen | MiB the fs saw written / read |\n|---|---|---|---|---|\n');
  for (const v of variants) {
    const s = await start(v.options);
    const file = join(s.mountpoint, 'data');
    const w: number[] = [];
    const r: number[] = [];
    try {
      for (let i = 0; i < runs; i++) {
        w.push(bytes / dd(['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${mib}`, 'conv=fsync']) / 1e6);
        r.push(bytes / dd([`if=${file}`, 'of=/dev/null', 'bs=1M', `count=${mib}`]) / 1e6);
      }
    } finally {
      const counters = await stop(s);
      const fmt = (xs: number[]): string => `${median(xs).toFixed(0)} (${xs.map((x) => x.toFixed(0)).join(', ')})`;
      const seen = counters ? `${counters.maxWrite} / ${counters.maxRead} B | ${counters.bytesWritten / MiB} / ${counters.bytesRead / MiB}` : '? | ?';
      process.stdout.write(`| ${v.name} | ${fmt(w)} | ${fmt(r)} | ${seen} |\n`);
    }
  }
  process.stdout.write(`\nmedian (all runs); default -o: ${fuseOptionList(DEFAULT_MOUNT_OPTIONS).join(',')}\n`);
}

if (values.serve !== undefined) {
  await serve(values.serve, JSON.parse(values.options) as Partial<MountOptions>);
} else {
  await main();
}
