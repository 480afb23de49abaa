// Where the time of a metadata-heavy workload goes on a quorumfs mount.
//
// Starts what `quorumfs dev --no-mount` starts (three nodes on loopback, R=3:
// the config of ensureDevCluster, one `quorumfs node` process per node), formats
// it, and mounts it from a child process of this script (--serve) built like
// `quorumfs mount` (src/cli/cmd-mount.ts: openCluster, FsMeta.load, Vfs,
// vfsOps, FuseMount.mount with the same options) plus instrumentation:
//
//   - every FUSE op: count, time in the handler, and how much of that time a
//     key-space call of that op was in flight (waiting on the nodes);
//   - every key-space call (read/change/delete/scan/chunk), by the FUSE op
//     that made it and the key kind (inode, dirent, map page), foreground
//     (answered before its op returned) or background (e.g. the directory
//     mtime update after a create);
//   - the proposer paths (Registers.stats) and the time of each: full CASPaxos
//     round (prepare + accept), one-round-trip change (accept with the
//     pre-promised ballot), quorum read; RPCs sent per method;
//   - the mount process's CPU (all threads) and event-loop utilisation;
//   - the node processes' CPU (/proc/PID/stat) and the workload's own CPU.
//
// Then it runs fsbench's small-file phases (create, stat, read, ls -l, unlink
// of N x 4 KiB files in one directory, the same Python code) and its tree
// phases (tar -x, diff -r, rm -rf) from a child process, one phase at a time,
// and prints markdown tables per phase. With --cpu-prof, the mount and the
// nodes run under `node --cpu-prof` and the profile samples inside each phase
// are summed by module (ws, lmdb, quorumfs layer, node internals, GC, ...).
//
// usage: node dist/scripts/bench/fs-profile.js [--files N (default 1000)] [--tree DIR]
//        [--cpu-prof] [--keep DIR (keep profiles and logs)] [--phases create,stat,...]
// Must run as root (FUSE mount). Processes, mounts and temp dirs are removed at
// the end, also on error or Ctrl-C.
import { AsyncLocalStorage } from 'node:async_hooks';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { performance, PerformanceObserver } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { ClusterKeySpace } from '../../src/cluster/cluster-keyspace.js';
import { FuseMount, type FuseOps } from '../../src/fuse/binding.js';
import { vfsOps } from '../../src/fuse/ops.js';
import { FsMeta } from '../../src/meta/fs-meta.js';
import { MemoryKeySpace } from '../../src/keyspace/memory.js';
import { Vfs } from '../../src/vfs/vfs.js';
import { openCluster } from '../../src/cli/wiring.js';
import { ensureDevCluster } from '../../src/cli/cmd-dev.js';
import { createRootLogger } from '../../src/util/log.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const ALL_PHASES = ['create', 'stat', 'read', 'ls', 'unlink', 'tar-x', 'diff', 'rm-rf'];

const { values } = parseArgs({
  options: {
    files: { type: 'string', default: '1000' },
    tree: { type: 'string' },
    'cpu-prof': { type: 'boolean', default: false },
    keep: { type: 'string' },
    phases: { type: 'string', default: ALL_PHASES.join(',') },
    serve: { type: 'string' },
    config: { type: 'string' },
    memfs: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  process.stdout.write('usage: fs-profile [--memfs] [--files N] [--tree DIR] [--cpu-prof] [--keep DIR] [--phases create,stat,read,ls,unlink,tar-x,diff,rm-rf]\n');
  process.exit(0);
}

// ======================================================================
// The mount (child process): instrumented like `quorumfs mount`.
// ======================================================================

interface OpStat {
  count: number;
  errors: number;
  ms: number;
  /** Time inside the op during which one of its key-space calls was in flight. */
  ksMs: number;
}
interface CallStat {
  count: number;
  ms: number;
  background: number;
}
interface PhaseReport {
  wallMs: number;
  /** Time with at least one FUSE op in a handler. */
  opBusyMs: number;
  /** Time with at least one key-space call in flight (any, foreground or not). */
  ksBusyMs: number;
  ops: Record<string, OpStat>;
  calls: Record<string, CallStat>;
  paths: Record<string, CallStat>;
  rpcs: Record<string, CallStat>;
  registers: Record<string, number>;
  cpuUserMs: number;
  cpuSysMs: number;
  elu: number;
  gcMs: number;
  /** process.hrtime at the start and end of the window, µs (CLOCK_MONOTONIC, as the V8 profiler). */
  fromUs: number;
  toUs: number;
  pingMs?: number[];
}

interface OpCtx {
  op: string;
  start: number;
  done: boolean;
  /** Key-space calls of this op in flight, and the union of their time so far. */
  inFlight: number;
  since: number;
  ksMs: number;
}

function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** Kind of a record key (src/meta/schema.ts): group length, group, name. */
function keyKind(key: unknown): string {
  if (!Buffer.isBuffer(key) || key.length < 2) return '?';
  const n = key[0]!;
  const group = key.subarray(1, 1 + n);
  const name = key.subarray(1 + n);
  if (n === 8) {
    const c = name[0];
    return c === 0x69 ? 'inode' : c === 0x64 ? 'dirent' : c === 0x6d ? 'map' : 'ino-other';
  }
  const g = group.toString('latin1');
  return g === 'sb' ? 'superblock' : g === 'intents' ? 'intent' : 'other';
}

class Meter {
  readonly als = new AsyncLocalStorage<OpCtx>();
  ops = new Map<string, OpStat>();
  calls = new Map<string, CallStat>();
  paths = new Map<string, CallStat>();
  rpcs = new Map<string, CallStat>();
  private opsInFlight = 0;
  private opBusySince = 0;
  opBusyMs = 0;
  private ksInFlight = 0;
  private ksBusySince = 0;
  ksBusyMs = 0;
  gcMs = 0;

  reset(): void {
    const t = performance.now();
    this.ops = new Map();
    this.calls = new Map();
    this.paths = new Map();
    this.rpcs = new Map();
    this.opBusyMs = 0;
    this.ksBusyMs = 0;
    this.gcMs = 0;
    if (this.opsInFlight > 0) this.opBusySince = t;
    if (this.ksInFlight > 0) this.ksBusySince = t;
  }

  /** Closes the busy intervals at `t` (for a report) without ending them. */
  settle(t: number): void {
    if (this.opsInFlight > 0) {
      this.opBusyMs += t - this.opBusySince;
      this.opBusySince = t;
    }
    if (this.ksInFlight > 0) {
      this.ksBusyMs += t - this.ksBusySince;
      this.ksBusySince = t;
    }
  }

  static add(m: Map<string, CallStat>, k: string, ms: number, background: boolean): void {
    let s = m.get(k);
    if (!s) m.set(k, (s = { count: 0, ms: 0, background: 0 }));
    s.count++;
    s.ms += ms;
    if (background) s.background++;
  }

  /** Wraps every FUSE op: its time and its key-space wait. */
  wrapOps(ops: FuseOps): FuseOps {
    const out: Record<string, unknown> = {};
    for (const [name, fn] of Object.entries(ops)) {
      if (typeof fn !== 'function') {
        out[name] = fn;
        continue;
      }
      const f = fn as (...a: unknown[]) => unknown;
      out[name] = (...args: unknown[]): unknown => {
        const start = performance.now();
        if (this.opsInFlight++ === 0) this.opBusySince = start;
        const ctx: OpCtx = { op: name, start, done: false, inFlight: 0, since: 0, ksMs: 0 };
        const end = (failed: boolean): void => {
          const t = performance.now();
          ctx.done = true;
          if (ctx.inFlight > 0) ctx.ksMs += t - ctx.since;
          if (--this.opsInFlight === 0) this.opBusyMs += t - this.opBusySince;
          let s = this.ops.get(name);
          if (!s) this.ops.set(name, (s = { count: 0, errors: 0, ms: 0, ksMs: 0 }));
          s.count++;
          if (failed) s.errors++;
          s.ms += t - start;
          s.ksMs += ctx.ksMs;
        };
        return this.als.run(ctx, async () => {
          try {
            const r = await f(...args);
            end(false);
            return r;
          } catch (err) {
            end(true);
            throw err;
          }
        });
      };
    }
    return out as unknown as FuseOps;
  }

  /** Wraps async methods of `obj`: `label(args)` names the call; `into` the table. */
  wrapAsync(obj: object, methods: string[], into: () => Map<string, CallStat>, label: (m: string, args: unknown[]) => string, ks = false): void {
    const o = obj as Record<string, (...a: unknown[]) => Promise<unknown>>;
    for (const m of methods) {
      const orig = o[m];
      if (typeof orig !== 'function') continue;
      const bound = orig.bind(obj);
      o[m] = async (...args: unknown[]): Promise<unknown> => {
        const ctx = this.als.getStore();
        const t0 = performance.now();
        if (ks) {
          if (this.ksInFlight++ === 0) this.ksBusySince = t0;
          if (ctx && !ctx.done && ctx.inFlight++ === 0) ctx.since = t0;
        }
        try {
          return await bound(...args);
        } finally {
          const t = performance.now();
          if (ks) {
            if (--this.ksInFlight === 0) this.ksBusyMs += t - this.ksBusySince;
            if (ctx && !ctx.done && --ctx.inFlight === 0) ctx.ksMs += t - ctx.since;
          }
          Meter.add(into(), ks && ctx ? `${ctx.op}: ${label(m, args)}` : label(m, args), t - t0, ctx ? ctx.done : true);
        }
      };
    }
  }
}

async function serve(mountpoint: string, configFile: string): Promise<void> {
  process.stdout.on('error', () => {});
  const log = createRootLogger({ level: 'warn' });
  // --memfs: the vfs over the in-memory key space (scripts/bench/memfs-mount.ts), the FUSE floor.
  let ks: ClusterKeySpace | null = null;
  let vfs: Vfs;
  let fsname = 'quorumfs:memfs';
  let requestMs = 5000;
  if (configFile === 'memfs') {
    const mem = new MemoryKeySpace();
    const sb = await FsMeta.format(mem, { chunkSize: 1024 * 1024, replication: 3, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 });
    vfs = new Vfs(new FsMeta(mem, sb), mem, { log: log.child({ component: 'vfs' }) });
  } else {
    const opened = await openCluster(configFile, log.child({ component: 'cluster' }));
    ks = opened.ks;
    const unreachable = await ks.waitForPeers(opened.config.timeouts.connectMs);
    if (unreachable.length > 0) throw new Error(`nodes not reachable: ${unreachable.join(', ')}`);
    const sb = await FsMeta.load(ks);
    vfs = new Vfs(new FsMeta(ks, sb), ks, { log: log.child({ component: 'vfs' }) });
    fsname = `quorumfs:${opened.config.name}`;
    requestMs = opened.config.timeouts.requestMs;
  }
  const meter = new Meter();
  if (ks) instrument(meter, ks);
  const fuse = await FuseMount.mount(mountpoint, meter.wrapOps(vfsOps(vfs, log)), {
    fsname,
    callbackTimeoutMs: Math.max(30_000, requestMs * 4),
    toErrno: (err) => (err as { errno?: number }).errno ?? 5,
  });
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) meter.gcMs += e.duration;
  }).observe({ entryTypes: ['gc'] });

  let cpu = process.cpuUsage();
  let elu = performance.eventLoopUtilization();
  let from = performance.now();
  let fromUs = nowUs();
  const registerStats = (): Record<string, number> => ({ ...(ks?.registers.stats ?? {}) });
  let regs = registerStats();
  const mark = (): PhaseReport => {
    const t = performance.now();
    meter.settle(t);
    const c = process.cpuUsage(cpu);
    const e = performance.eventLoopUtilization(elu);
    const r: Record<string, number> = {};
    for (const [k, v] of Object.entries(registerStats())) r[k] = v - regs[k]!;
    const report: PhaseReport = {
      wallMs: t - from,
      opBusyMs: meter.opBusyMs,
      ksBusyMs: meter.ksBusyMs,
      ops: Object.fromEntries(meter.ops),
      calls: Object.fromEntries(meter.calls),
      paths: Object.fromEntries(meter.paths),
      rpcs: Object.fromEntries(meter.rpcs),
      registers: r,
      cpuUserMs: c.user / 1000,
      cpuSysMs: c.system / 1000,
      elu: e.utilization,
      gcMs: meter.gcMs,
      fromUs,
      toUs: nowUs(),
    };
    cpu = process.cpuUsage();
    elu = performance.eventLoopUtilization();
    from = performance.now();
    fromUs = nowUs();
    regs = registerStats();
    meter.reset();
    return report;
  };
  const ping = async (n: number): Promise<number[]> => {
    const out: number[] = [];
    for (const p of ks?.peers ?? []) {
      const t: number[] = [];
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await p.client.ping();
        t.push(performance.now() - t0);
      }
      t.sort((a, b) => a - b);
      out.push(t[Math.floor(t.length / 2)]!);
    }
    return out;
  };

  process.stdout.write(JSON.stringify({ ready: true, pid: process.pid, options: fuse.optionList.join(',') }) + '\n');
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await vfs.flushAll();
    await fuse.unmount().catch(() => {});
    await ks?.close();
    process.exit(0); // --cpu-prof writes its profile on exit
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  for await (const line of createInterface({ input: process.stdin })) {
    const cmd = line.trim();
    if (cmd === 'mark') process.stdout.write(JSON.stringify(mark()) + '\n');
    else if (cmd === 'ping') {
      mark();
      const pingMs = await ping(200);
      process.stdout.write(JSON.stringify({ ...mark(), pingMs }) + '\n');
    } else if (cmd === 'stop') break;
  }
  await stop();
}

function instrument(meter: Meter, ks: ClusterKeySpace): void {
  // Key-space calls: what the vfs and meta layers wait on.
  meter.wrapAsync(ks, ['read', 'change', 'delete', 'scan'], () => meter.calls, (m, a) => `${m} ${m === 'scan' ? 'dir' : keyKind(a[0])}`, true);
  meter.wrapAsync(ks, ['putChunk', 'getChunk', 'hasChunk'], () => meter.calls, (m) => m, true);
  // Proposer paths (private methods of Registers, wrapped on the instance for this benchmark only).
  meter.wrapAsync(ks.registers, ['round', 'fastChange'], () => meter.paths, (m) => (m === 'round' ? 'full round (prepare+accept)' : 'one-round-trip change (accept)'));
  meter.wrapAsync(ks.registers, ['read'], () => meter.paths, () => 'quorum read');
  // RPCs to each node.
  for (const p of ks.peers) {
    meter.wrapAsync(p.client, ['prepare', 'accept', 'read', 'scan', 'purge', 'putChunk', 'getChunk', 'hasChunks'], () => meter.rpcs, (m) => m);
  }
}

// ======================================================================
// The driver.
// ======================================================================

interface Proc {
  pid: number;
  role: string;
}
const cleanups: Array<() => void> = [];
function cleanupAll(): void {
  while (cleanups.length > 0) {
    try {
      cleanups.pop()!();
    } catch {
      // keep going
    }
  }
}
process.on('exit', cleanupAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));

function isMounted(mountpoint: string): boolean {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === mountpoint);
}
function unmount(mountpoint: string): void {
  for (const cmd of [['fusermount', '-u', mountpoint], ['umount', '-l', mountpoint]]) {
    if (!isMounted(mountpoint)) return;
    try {
      execFileSync(cmd[0]!, cmd.slice(1), { stdio: 'ignore' });
    } catch {
      // the next way
    }
  }
}
/** Running (a zombie counts as gone: in the exit handler nothing reaps our children). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
async function waitGone(pid: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (alive(pid) && Date.now() < until) await sleep(50);
  return !alive(pid);
}
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      const s = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim();
      if (s) out.push(...s.split(/\s+/).map(Number));
    }
  } catch {
    // gone
  }
  return out;
}
/** utime + stime of a process (all threads), ms. */
function cpuMs(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // fields 14, 15; USER_HZ = 100
  } catch {
    return NaN;
  }
}
/** Write-type syscalls of a process so far (/proc/PID/io syscw: write, writev, send*, ...). */
function writeCalls(pid: number): number {
  try {
    const m = /^syscw: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}
/** Busy CPU time of the whole machine (all cores, /proc/stat: everything but idle and iowait), ms. */
function machineBusyMs(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return ((total - f[3]! - f[4]!) * 1000) / 100;
}
async function freeBasePort(): Promise<number> {
  const free = (p: number): Promise<boolean> =>
    new Promise((r) => {
      const s = createServer();
      s.once('error', () => r(false));
      s.listen(p, '127.0.0.1', () => s.close(() => r(true)));
    });
  for (let i = 0; i < 200; i++) {
    const p = 20000 + Math.floor(Math.random() * 40000);
    if ((await free(p)) && (await free(p + 1)) && (await free(p + 2))) return p;
  }
  throw new Error('no three free ports');
}

// The workload: fsbench.sh's small-file code split into phases, and its tree phases.
const WORK_PY = String.raw`
import json, os, subprocess, sys, time, resource
phase, d, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
extra = sys.argv[4:]
names = [os.path.join(d, "f%05d" % i) for i in range(n)]
data = os.urandom(4096)
def cpu():
    s = resource.getrusage(resource.RUSAGE_SELF); c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (s.ru_utime + c.ru_utime) * 1000, (s.ru_stime + c.ru_stime) * 1000
u0, s0 = cpu()
t = time.perf_counter()
if phase == "create":
    os.mkdir(d)
    t = time.perf_counter()
    for p in names:
        with open(p, "wb") as f:
            f.write(data)
elif phase == "stat":
    for p in names:
        os.stat(p)
elif phase == "read":
    for p in names:
        with open(p, "rb") as f:
            if len(f.read()) != 4096:
                raise SystemExit("short read on " + p)
elif phase == "ls":
    subprocess.run(["ls", "-l", d], stdout=subprocess.DEVNULL, check=True)
elif phase == "unlink":
    for p in names:
        os.unlink(p)
elif phase == "tar-x":
    os.mkdir(d)
    t = time.perf_counter()
    subprocess.run(["tar", "-xf", extra[0], "-C", d], check=True)
elif phase == "diff":
    r = subprocess.run(["diff", "-r", "--no-dereference", extra[0], os.path.join(d, os.path.basename(extra[0]))], stdout=subprocess.DEVNULL)
    if r.returncode != 0:
        print("diff found differences", file=sys.stderr)
elif phase == "rm-rf":
    subprocess.run(["rm", "-rf", d], check=True)
wall = time.perf_counter() - t
u1, s1 = cpu()
print(json.dumps({"wallMs": wall * 1000, "userMs": u1 - u0, "sysMs": s1 - s0}))
`;

interface Analysis {
  total: number;
  byModule: Map<string, number>;
  byFunction: Map<string, number>;
}

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

function moduleOf(url: string, fn: string): string {
  if (url === '') {
    if (fn === '(idle)' || fn === '(program)' || fn === '(garbage collector)' || fn === '(root)') return fn;
    return `(native: ${fn || 'anonymous'})`;
  }
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (nm) return nm[1]!;
  const q = /\/dist\/(src|scripts)\/([^/]+)\//.exec(url);
  if (q) return `quorumfs ${q[1] === 'src' ? q[2] : 'bench'}`;
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  return url;
}

/** Sums a profile's samples inside [fromUs, toUs) (V8's clock is CLOCK_MONOTONIC in µs, as process.hrtime). */
function analyze(file: string, fromUs: number, toUs: number): Analysis {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
  const byModule = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let t = p.startTime;
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i]!;
    const dt = p.timeDeltas[i + 1] ?? 0;
    if (t < fromUs || t >= toUs) continue;
    const cf = byId.get(p.samples[i]!)!;
    const mod = moduleOf(cf.url, cf.functionName);
    if (mod === '(idle)') continue;
    total += dt;
    byModule.set(mod, (byModule.get(mod) ?? 0) + dt);
    const fname = `${cf.functionName || '(anonymous)'} ${cf.url ? cf.url.replace(/^.*\/(node_modules|dist)\//, '') + ':' + (cf.lineNumber + 1) : ''}`.trim();
    byFunction.set(fname, (byFunction.get(fname) ?? 0) + dt);
  }
  return { total, byModule, byFunction };
}

function fmt(v: number, digits = 2): string {
  if (!Number.isFinite(v)) return 'n/a';
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(digits);
}

/** Runs the workload in a child without blocking this event loop (so Ctrl-C/SIGTERM clean up at once). */
function runWorkload(args: string[]): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const c = spawn('python3', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    const kill = (): void => {
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    };
    cleanups.push(kill);
    let out = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    c.once('error', reject);
    c.once('close', (code) => {
      const i = cleanups.indexOf(kill);
      if (i >= 0) cleanups.splice(i, 1);
      if (code === 0) resolvePromise(out);
      else reject(new Error(`workload ${args[2]} exited with ${code}`));
    });
  });
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (FUSE mount, as fsbench)');
  const nfiles = Number(values.files);
  const phases = values.phases!.split(',').filter(Boolean);
  for (const p of phases) if (!ALL_PHASES.includes(p)) throw new Error(`unknown phase ${p}`);
  let tree = values.tree;
  if (!tree) {
    let g = '';
    try {
      g = execFileSync('npm', ['root', '-g'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      // no npm
    }
    const count = g && existsSync(g) ? Number(execFileSync('sh', ['-c', `find "${g}" -type f | head -n 1000 | wc -l`], { encoding: 'utf8' }).trim()) : 0;
    tree = count >= 1000 ? g : resolve(fileURLToPath(new URL('../../../node_modules', import.meta.url)));
  }
  tree = resolve(tree);

  const base = mkdtempSync(join(tmpdir(), 'qfs-fs-profile-'));
  cleanups.push(() => rmSync(base, { recursive: true, force: true }));
  const profDir = join(base, 'prof');
  mkdirSync(profDir);
  cleanups.push(() => {
    if (values.keep) {
      mkdirSync(values.keep, { recursive: true });
      cpSync(profDir, join(values.keep, 'prof'), { recursive: true });
      for (const f of readdirSync(base)) if (f.endsWith('.log')) cpSync(join(base, f), join(values.keep, f));
    }
  });
  const tarball = join(base, 'tree.tar');
  execFileSync('tar', ['-C', resolve(tree, '..'), '-cf', tarball, tree.split('/').at(-1)!]);
  execFileSync('sh', ['-c', `cat "${tarball}" > /dev/null; find "${tree}" -type f -exec cat {} + > /dev/null 2>&1 || true`]);

  // ---- the cluster: what `quorumfs dev --no-mount` runs (its config via
  // ensureDevCluster, one `quorumfs node` process per node), started here so
  // that the nodes can run under --cpu-prof (not allowed in NODE_OPTIONS).
  const procs: Proc[] = [];
  const nodeChildren: ChildProcess[] = [];
  let config = 'memfs';
  if (!values.memfs) {
    const port = await freeBasePort();
    const devDir = join(base, 'dev');
    config = await ensureDevCluster(devDir, port);
    cleanups.push(() => {
      for (const c of nodeChildren) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
      const until = Date.now() + 10_000;
      while (procs.some((p) => alive(p.pid)) && Date.now() < until) execFileSync('sleep', ['0.1']);
      for (const p of procs) if (alive(p.pid)) process.kill(p.pid, 'SIGKILL');
    });
    for (const id of ['n1', 'n2', 'n3']) {
      const logFd = openSync(join(base, `node-${id}.log`), 'a');
      const nodeArgs = values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${join(profDir, 'nodes')}`] : [];
      const c = spawn(process.execPath, [...nodeArgs, CLI, 'node', '--config', config, '--id', id], { stdio: ['ignore', logFd, logFd] });
      nodeChildren.push(c);
      procs.push({ pid: c.pid!, role: id });
    }
    for (let attempt = 0; ; attempt++) {
      try {
        execFileSync(process.execPath, [CLI, 'format', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
        break;
      } catch (err) {
        if (attempt > 50) throw err;
        await sleep(200);
      }
    }
  }

  // ---- the mount
  const mnt = join(base, 'mnt');
  mkdirSync(mnt);
  const mountLog = openSync(join(base, 'mount.log'), 'a');
  const nodeArgs = values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${join(profDir, 'mount')}`] : [];
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, SELF, '--serve', mnt, '--config', config], { stdio: ['pipe', 'pipe', mountLog] });
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    unmount(mnt);
  });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async (): Promise<string> => {
    const r = await Promise.race([lines.next(), sleep(120_000).then(() => null)]);
    if (r === null || r.done === true) throw new Error(`the mount process stopped answering (see ${join(base, 'mount.log')})`);
    return r.value;
  };
  const ready = JSON.parse(await next()) as { options: string; pid: number };
  const mark = async (cmd = 'mark'): Promise<PhaseReport> => {
    child.stdin!.write(cmd + '\n');
    return JSON.parse(await next()) as PhaseReport;
  };

  const nodeCpu = (): number => procs.reduce((s, p) => s + cpuMs(p.pid), 0);
  const nodeWrites = (): number => procs.reduce((s, p) => s + writeCalls(p.pid), 0);
  const dir = join(mnt, 'small');
  const treeDir = join(mnt, 'tree');
  const results: Array<{ phase: string; units: number; unitName: string; work: { wallMs: number; userMs: number; sysMs: number }; nodeCpuMs: number; mountCpuMs: number; mountWrites: number; nodeWrites: number; otherCores: number; r: PhaseReport }> = [];
  const load0 = loadavg()[0]!;
  for (const phase of phases) {
    const isTree = phase === 'tar-x' || phase === 'diff' || phase === 'rm-rf';
    const args = ['-c', WORK_PY, phase, isTree ? treeDir : dir, String(nfiles), ...(phase === 'tar-x' ? [tarball] : phase === 'diff' ? [tree] : [])];
    execFileSync('sync');
    await mark();
    const n0 = nodeCpu();
    const m0 = cpuMs(ready.pid);
    const w0 = [writeCalls(ready.pid), nodeWrites()];
    const b0 = machineBusyMs();
    const out = await runWorkload(args);
    const n1 = nodeCpu();
    const m1 = cpuMs(ready.pid);
    const w1 = [writeCalls(ready.pid), nodeWrites()];
    const b1 = machineBusyMs();
    const r = await mark();
    const work = JSON.parse(out.trim().split('\n').at(-1)!) as { wallMs: number; userMs: number; sysMs: number };
    const units = isTree ? 1 : phase === 'ls' ? 1 : nfiles;
    const otherMs = b1 - b0 - (n1 - n0) - (m1 - m0) - work.userMs - work.sysMs;
    results.push({ phase, units, unitName: isTree || phase === 'ls' ? 'run' : 'file', work, nodeCpuMs: n1 - n0, mountCpuMs: m1 - m0, mountWrites: w1[0]! - w0[0]!, nodeWrites: w1[1]! - w0[1]!, otherCores: otherMs / work.wallMs, r });
    process.stderr.write(`[fs-profile] ${phase}: ${fmt(work.wallMs / 1000)} s\n`);
  }
  const pingReport = await mark('ping');
  const load1 = loadavg()[0]!;

  // ---- stop: mount first (writes its profile), then the nodes
  child.stdin!.write('stop\n');
  await waitGone(child.pid!, 20_000);
  unmount(mnt);
  for (const c of nodeChildren) c.kill('SIGTERM');
  for (const p of procs) await waitGone(p.pid, 20_000);

  // ---- report
  const o: string[] = [];
  const tree_ = tree;
  o.push(`fs-profile: ${values.memfs ? 'memfs-fuse (the vfs over the in-memory key space)' : 'quorumfs dev (3 nodes, R=3, loopback)'}, ${nfiles} files of 4 KiB, tree ${tree_}; ${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Linux ${release()}, Node ${process.version}; load1 ${load0.toFixed(2)} at start, ${load1.toFixed(2)} at end`);
  o.push(`mount options: ${ready.options}`);
  o.push('');
  o.push('Per phase (ms per file for the small-file phases, per run for ls and the tree phases):');
  o.push('');
  o.push('| phase | wall s | rate | wall ms/unit | FUSE ops/unit | op-busy % of wall | waiting on nodes % of op-busy | mount CPU ms/unit (ELU) | 3 nodes CPU ms/unit | workload CPU ms/unit (user+sys) | other cores | mount / nodes write syscalls per unit |');
  o.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const x of results) {
    const opsN = Object.values(x.r.ops).reduce((s, v) => s + v.count, 0);
    const ksInOps = Object.values(x.r.ops).reduce((s, v) => s + v.ksMs, 0);
    const opMs = Object.values(x.r.ops).reduce((s, v) => s + v.ms, 0);
    const rate = x.unitName === 'file' ? `${fmt(x.units / (x.work.wallMs / 1000))} files/s` : '';
    o.push(
      `| ${x.phase} | ${fmt(x.work.wallMs / 1000)} | ${rate} | ${fmt(x.work.wallMs / x.units)} | ${fmt(opsN / x.units)} | ${fmt((100 * x.r.opBusyMs) / x.r.wallMs, 0)} | ${fmt(opMs > 0 ? (100 * ksInOps) / opMs : NaN, 0)} | ${fmt(x.mountCpuMs / x.units)} (${fmt(x.r.elu * 100, 0)}%) | ${fmt(x.nodeCpuMs / x.units)} | ${fmt((x.work.userMs + x.work.sysMs) / x.units)} | ${fmt(x.otherCores)} | ${fmt(x.mountWrites / x.units)} / ${fmt(x.nodeWrites / x.units)} |`,
    );
  }
  o.push('');
  o.push('op-busy: time with at least one FUSE op inside a quorumfs handler (the rest is the kernel, libfuse and the workload). waiting on nodes: the share of handler time during which a key-space call of that op was in flight. CPU from /proc (all threads, 10 ms ticks) and getrusage. other cores: the machine\'s busy time (/proc/stat) minus these processes, over the wall time; it includes kernel work not charged to a process (part of loopback TCP), so a few tenths is this benchmark itself, and more means other work shared the machine.');
  for (const x of results) {
    o.push('');
    o.push(`**${x.phase}** (${fmt(x.work.wallMs / 1000)} s wall; mount GC ${fmt(x.r.gcMs)} ms)`);
    o.push('');
    o.push(`| FUSE op | count | per ${x.unitName} | mean ms | total s | % of wall | waiting on nodes % |`);
    o.push('|---|---:|---:|---:|---:|---:|---:|');
    const ops = Object.entries(x.r.ops).sort((a, b) => b[1].ms - a[1].ms);
    for (const [name, s] of ops) {
      o.push(`| ${name}${s.errors ? ` (${s.errors} errors)` : ''} | ${s.count} | ${fmt(s.count / x.units)} | ${fmt(s.ms / s.count, 3)} | ${fmt(s.ms / 1000)} | ${fmt((100 * s.ms) / x.work.wallMs, 0)} | ${fmt((100 * s.ksMs) / s.ms, 0)} |`);
    }
    o.push('');
    o.push(`| key-space call / proposer path / RPC | count | per ${x.unitName} | mean ms | in background |`);
    o.push('|---|---:|---:|---:|---:|');
    for (const [title, m] of [['', x.r.calls], ['path: ', x.r.paths], ['rpc: ', x.r.rpcs]] as const) {
      for (const [name, s] of Object.entries(m).sort((a, b) => b[1].count - a[1].count)) {
        o.push(`| ${title}${name} | ${s.count} | ${fmt(s.count / x.units)} | ${fmt(s.ms / s.count, 3)} | ${s.background} |`);
      }
    }
    const rs = Object.entries(x.r.registers).filter(([, v]) => v !== 0);
    o.push('');
    o.push(`Registers.stats: ${rs.map(([k, v]) => `${k} ${v} (${fmt(v / x.units)}/${x.unitName})`).join(', ') || 'none'}`);
  }
  o.push('');
  o.push(`ping (median of 200 per node, from the mount process): ${(pingReport.pingMs ?? []).map((v) => fmt(v, 3)).join(' / ')} ms`);

  if (values['cpu-prof']) {
    const files = (d: string): string[] => (existsSync(d) ? readdirSync(d).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(d, f)) : []);
    const mountProfs = files(join(profDir, 'mount'));
    // node profiles: one per process of the dev tree; the nodes are the ones named by their pid
    const nodeProfs = files(join(profDir, 'nodes')).filter((f) => procs.some((p) => f.includes(`.${p.pid}.`)));
    for (const x of results) {
      const sections: Array<[string, string[]]> = [
        ['mount process', mountProfs],
        ['3 node processes', nodeProfs],
      ];
      o.push('');
      o.push(`**CPU profile, ${x.phase}** (samples inside the phase; not idle)`);
      for (const [who, fs] of sections) {
        const total = { total: 0, byModule: new Map<string, number>(), byFunction: new Map<string, number>() };
        for (const f of fs) {
          const a = analyze(f, x.r.fromUs, x.r.toUs);
          total.total += a.total;
          for (const [k, v] of a.byModule) total.byModule.set(k, (total.byModule.get(k) ?? 0) + v);
          for (const [k, v] of a.byFunction) total.byFunction.set(k, (total.byFunction.get(k) ?? 0) + v);
        }
        if (fs.length === 0) {
          o.push(`- ${who}: no profile`);
          continue;
        }
        const top = (m: Map<string, number>, n: number): string =>
          [...m.entries()]
            .sort((a, b) => b[1] - a[1])
            .slice(0, n)
            .map(([k, v]) => `${k} ${fmt(v / 1000)} ms (${fmt((100 * v) / total.total, 0)}%)`)
            .join('; ');
        o.push(`- ${who}: ${fmt(total.total / 1000)} ms on-CPU JS-thread samples (${fmt(total.total / 1000 / x.units)} ms/${x.unitName}). By module: ${top(total.byModule, 10)}`);
        o.push(`  - top functions: ${top(total.byFunction, 12)}`);
      }
    }
  }
  process.stdout.write(o.join('\n') + '\n');
  if (values.keep) writeFileSync(join(base, 'report.log'), o.join('\n') + '\n');
}

if (values.serve !== undefined) {
  if (!values.config) throw new Error('--serve needs --config');
  await serve(resolve(values.serve), values.config === 'memfs' ? 'memfs' : resolve(values.config));
} else {
  await main();
}
