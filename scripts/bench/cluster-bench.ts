// Benchmark of the replicated key space: the same workloads through a
// ClusterKeySpace against three `quorumfs node` processes on loopback (R=3,
// W=2, one shared config and secret) and against one node (R=1):
//
//   register change   1 in flight on new keys (full CASPaxos round each),
//                     1 in flight on one key (one-round-trip path after the first),
//                     64 in flight on new keys in 8 groups
//   register read     1 and 64 in flight on keys written above
//   chunk put         1 MiB random chunks, 16 in flight: at W acks, and until every copy is on disk
//   chunk get         the same chunks, 16 in flight (the client verifies SHA-256)
//
// usage: node dist/scripts/bench/cluster-bench.js [--mib N] [--seconds S] [--dir DIR]
// Prints two markdown tables: the figures with the ratio 3-node / 1-node, and
// which proposer paths ran in each phase (Registers.stats), RPCs per operation
// and CPU use. The clusters run one after the other, never together. Node
// processes and temp dirs are removed at the end, also on error or Ctrl-C.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { availableParallelism, cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startBenchNode } from './node-process.js';
import { ClusterKeySpace } from '../../src/cluster/cluster-keyspace.js';
import type { PeerSpec } from '../../src/cluster/peers.js';
import { recordKey } from '../../src/keyspace/types.js';
import type { ChunkId } from '../../src/util/ids.js';
import { silentLogger } from '../../src/util/log.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const MiB = 1024 * 1024;
const CHUNK = MiB;
const CHUNK_IN_FLIGHT = 16;
const VALUE_BYTES = 200;
const MANY = 64;
const GROUPS = 8;

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '512' },
    seconds: { type: 'string', default: '5' },
    dir: { type: 'string', default: tmpdir() },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  process.stdout.write('usage: cluster-bench [--mib N (chunk data, default 512)] [--seconds S (per register phase, default 5)] [--dir DIR (default $TMPDIR)]\n');
  process.exit(0);
}
const totalMiB = Number(values.mib);
const seconds = Number(values.seconds);
if (!Number.isInteger(totalMiB) || totalMiB < 16) throw new Error('--mib: expected an integer >= 16');
if (!(seconds > 0)) throw new Error('--seconds: expected a positive number');

// ---- clusters of node processes

interface BenchCluster {
  label: string;
  replication: number;
  writeQuorum: number;
  clusterName: string;
  secret: Buffer;
  specs: PeerSpec[];
  pids: number[];
  dir: string;
  /** Kills the processes (SIGTERM, SIGKILL after 5 s) and removes the dirs. Idempotent. */
  cleanup(): Promise<void>;
}

const live = new Set<BenchCluster>();

async function freePorts(n: number): Promise<number[]> {
  const one = (): Promise<number> =>
    new Promise((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const a = srv.address();
        const port = typeof a === 'object' && a ? a.port : 0;
        srv.close(() => resolve(port));
      });
    });
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await one());
  return [...ports];
}

/** One node through node-process.ts (its config is R=1, W=1). */
async function startOne(parentDir: string): Promise<BenchCluster> {
  const node = await startBenchNode(parentDir);
  try {
    const secret = Buffer.from((await readFile(join(node.dir, 'secret'), 'utf8')).trim());
    const c: BenchCluster = {
      label: '1 node, R=1',
      replication: 1,
      writeQuorum: 1,
      clusterName: 'bench',
      secret,
      specs: [{ id: 'n1', url: node.url, weight: 1, zone: null }],
      pids: [node.child.pid!],
      dir: node.dir,
      cleanup: async () => {
        await node.cleanup();
        live.delete(c);
      },
    };
    live.add(c);
    return c;
  } catch (err) {
    await node.cleanup();
    throw err;
  }
}

/**
 * `n` node processes sharing one config and secret. node-process.ts writes a
 * one-node config of its own, so the multi-node start lives here, in its image.
 */
async function startMany(parentDir: string, n: number, replication: number, writeQuorum: number): Promise<BenchCluster> {
  const dir = await mkdtemp(join(parentDir, 'qfs-cluster-bench-'));
  const children: ChildProcess[] = [];
  const exits: Promise<void>[] = [];
  let cleaning: Promise<void> | null = null;
  const running = (p: ChildProcess): boolean => p.exitCode === null && p.signalCode === null;
  const onExit = (): void => {
    for (const p of children) if (running(p)) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  let self: BenchCluster | null = null;
  const cleanup = (): Promise<void> => {
    cleaning ??= (async () => {
      const timer = setTimeout(() => children.forEach((p) => running(p) && p.kill('SIGKILL')), 5000);
      for (const p of children) if (running(p)) p.kill('SIGTERM');
      await Promise.all(exits);
      clearTimeout(timer);
      await rm(dir, { recursive: true, force: true });
      process.off('exit', onExit);
      if (self) live.delete(self);
    })();
    return cleaning;
  };

  try {
    const secret = randomBytes(32).toString('hex');
    await writeFile(join(dir, 'secret'), secret + '\n', { mode: 0o600 });
    const ports = await freePorts(n);
    const nodes = ports.map((port, i) => ({ id: `n${i + 1}`, url: `ws://127.0.0.1:${port}`, dataDir: `n${i + 1}`, reserveBytes: 0 }));
    const config = { name: 'bench', secretFile: 'secret', replication, writeQuorum, nodes };
    const configFile = join(dir, 'cluster.json');
    await writeFile(configFile, JSON.stringify(config, null, 2));
    await Promise.all(
      nodes.map(async (node) => {
        const proc = spawn(process.execPath, [CLI, 'node', '--config', configFile, '--id', node.id, '--log-level', 'info'], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        children.push(proc);
        exits.push(new Promise((resolve) => proc.once('exit', () => resolve())));
        let stderr = '';
        proc.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
        await new Promise<void>((resolve, reject) => {
          let buf = '';
          const timer = setTimeout(() => reject(new Error(`node ${node.id} did not start in 15 s: ${stderr}`)), 15_000);
          proc.stdout!.setEncoding('utf8').on('data', (s: string) => {
            buf += s;
            if (buf.includes('"node started"')) {
              clearTimeout(timer);
              buf = '';
              resolve();
            } else if (buf.length > 1_000_000) {
              buf = buf.slice(-1000);
            }
          });
          proc.once('exit', (code, signal) => {
            clearTimeout(timer);
            reject(new Error(`node ${node.id} exited (${code ?? signal}) before starting: ${stderr}`));
          });
        });
      }),
    );
    self = {
      label: `${n} nodes, R=${replication} W=${writeQuorum}`,
      replication,
      writeQuorum,
      clusterName: 'bench',
      secret: Buffer.from(secret),
      specs: nodes.map((x) => ({ id: x.id, url: x.url, weight: 1, zone: null })),
      pids: children.map((p) => p.pid!),
      dir,
      cleanup,
    };
    live.add(self);
    return self;
  } catch (err) {
    await cleanup();
    throw err;
  }
}

// ---- measuring

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const CLK_TCK = Number(sh('getconf', ['CLK_TCK']) ?? 100) || 100;

/** CPU seconds (user + system) a process has used so far, from /proc. */
function procCpu(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After the comm field: state is f[0], utime is field 14 overall → f[11], stime f[12].
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/** CPU seconds the whole machine has been busy (every process, any namespace), from /proc/stat. */
function machineBusy(): number {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is inside user)
    return ((f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0)) / CLK_TCK;
  } catch {
    return NaN;
  }
}

type RegStats = ClusterKeySpace['registers']['stats'];
const STAT_KEYS = ['fastChanges', 'fullRounds', 'conflicts', 'fastReads', 'slowReads', 'recognised'] as const;

interface Snapshot {
  at: number;
  stats: RegStats;
  rpcs: number;
  failures: number;
  clientCpu: number;
  nodeCpu: number;
  busy: number;
  hints: number;
  failovers: number;
}

interface Phase {
  name: string;
  ops: number;
  secs: number;
  rate: number;
  p50: number;
  p99: number;
  stats: Record<(typeof STAT_KEYS)[number], number>;
  rpcs: number;
  failures: number;
  clientCores: number;
  nodeCores: number;
  /** Busy cores on the machine outside the benchmark's processes: other load, kernel threads. */
  otherCores: number;
  hints: number;
  failovers: number;
}

function snapshot(ks: ClusterKeySpace, cluster: BenchCluster): Snapshot {
  const cpu = process.cpuUsage();
  return {
    at: performance.now(),
    stats: { ...ks.registers.stats },
    rpcs: ks.peers.reduce((s, p) => s + p.calls, 0),
    failures: ks.peers.reduce((s, p) => s + p.failures, 0),
    clientCpu: (cpu.user + cpu.system) / 1e6,
    nodeCpu: cluster.pids.reduce((s, pid) => s + procCpu(pid), 0),
    busy: machineBusy(),
    hints: ks.chunks.hints.size,
    failovers: ks.chunks.stats.failovers,
  };
}

function phaseOf(name: string, a: Snapshot, b: Snapshot, lat: number[], ops = lat.length): Phase {
  const secs = (b.at - a.at) / 1000;
  lat.sort((x, y) => x - y);
  const stats = Object.fromEntries(STAT_KEYS.map((k) => [k, b.stats[k] - a.stats[k]])) as Phase['stats'];
  return {
    name,
    ops,
    secs,
    rate: ops / secs,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    stats,
    rpcs: b.rpcs - a.rpcs,
    failures: b.failures - a.failures,
    clientCores: (b.clientCpu - a.clientCpu) / secs,
    nodeCores: (b.nodeCpu - a.nodeCpu) / secs,
    otherCores: Math.max(0, (b.busy - a.busy - (b.clientCpu - a.clientCpu) - (b.nodeCpu - a.nodeCpu)) / secs),
    hints: b.hints,
    failovers: b.failovers - a.failovers,
  };
}

/** Runs `op` with `workers` in flight for `secs`; returns latencies (ms). */
async function timed(workers: number, secs: number, op: (i: number) => Promise<void>): Promise<number[]> {
  const lat: number[] = [];
  let i = 0;
  const until = performance.now() + secs * 1000;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (performance.now() < until) {
        const t0 = performance.now();
        await op(i++);
        lat.push(performance.now() - t0);
      }
    }),
  );
  return lat;
}

/** Runs jobs 0..count-1 with `workers` in flight; returns latencies (ms). */
async function pool(workers: number, count: number, job: (i: number) => Promise<void>): Promise<number[]> {
  const lat: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < count) {
        const i = next++;
        const t0 = performance.now();
        await job(i);
        lat.push(performance.now() - t0);
      }
    }),
  );
  return lat;
}

// ---- the data

// chunk i is one of 16 random MiB with i stamped at the front, so every chunk is distinct
const base = Array.from({ length: 16 }, () => randomBytes(CHUNK));
function chunk(i: number): Buffer {
  const b = Buffer.from(base[i % base.length]!);
  b.writeUInt32BE(i, 0);
  b.writeUInt32BE(Math.floor(i / base.length), 4);
  return b;
}

const payload = randomBytes(VALUE_BYTES);
function valueFor(i: number): Buffer {
  const b = Buffer.from(payload);
  b.writeUInt32BE(i, 0);
  return b;
}

const key = (group: string, name: string): Buffer => recordKey(Buffer.from(group), Buffer.from(name));

// ---- one cluster, all workloads

async function runSuite(cluster: BenchCluster): Promise<{ phases: Map<string, Phase>; allCopiesPhase: Phase }> {
  const ks = new ClusterKeySpace({
    clusterName: cluster.clusterName,
    secret: cluster.secret,
    nodes: cluster.specs,
    replication: cluster.replication,
    writeQuorum: cluster.writeQuorum,
    requestTimeoutMs: 60_000,
    connectTimeoutMs: 5000,
    log: silentLogger(),
    hintIntervalMs: 0,
  });
  const phases = new Map<string, Phase>();
  const say = (s: string): void => void process.stderr.write(`${cluster.label}: ${s}\n`);
  try {
    const down = await ks.waitForPeers(10_000);
    if (down.length > 0) throw new Error(`nodes not reachable: ${down.join(', ')}`);

    // warm-up: connections, JIT, lmdb files
    for (let i = 0; i < 200; i++) await ks.change(key('warm', `w${i}`), () => valueFor(i));
    for (let i = 0; i < 200; i++) await ks.read(key('warm', `w${i}`));
    for (let i = 0; i < 4; i++) await ks.putChunk(randomBytes(CHUNK));

    const run = async (name: string, what: string, body: () => Promise<number[]>): Promise<Phase> => {
      say(what);
      const a = snapshot(ks, cluster);
      const lat = await body();
      const p = phaseOf(name, a, snapshot(ks, cluster), lat);
      phases.set(name, p);
      return p;
    };

    // (a) 1 in flight, a new key each time: no known ballot, so a full round
    const a = await run('change1new', `changes, 1 in flight, new keys, ${seconds} s`, () =>
      timed(1, seconds, async (i) => {
        await ks.change(key('ga', `k${i}`), () => valueFor(i));
      }),
    );
    // (b) 1 in flight, one key: a full round first, then one accept each
    let lastHot = -1;
    await run('change1same', `changes, 1 in flight, one key, ${seconds} s`, () =>
      timed(1, seconds, async (i) => {
        await ks.change(key('gb', 'hot'), () => valueFor(i));
        lastHot = i;
      }),
    );
    const hot = await ks.read(key('gb', 'hot'));
    if (!hot?.equals(valueFor(lastHot))) throw new Error('the hot key does not hold its last value');
    // (c) 64 in flight, a new key each time, spread over a few groups
    const c = await run('change64new', `changes, ${MANY} in flight, new keys in ${GROUPS} groups, ${seconds} s`, () =>
      timed(MANY, seconds, async (i) => {
        await ks.change(key(`gc${i % GROUPS}`, `k${i}`), () => valueFor(i));
      }),
    );

    // reads of keys written above
    await run('read1', `reads, 1 in flight, ${seconds} s`, () =>
      timed(1, seconds, async (i) => {
        const j = i % a.ops;
        const v = await ks.read(key('ga', `k${j}`));
        if (!v?.equals(valueFor(j))) throw new Error(`read ga/k${j}: wrong value`);
      }),
    );
    await run('read64', `reads, ${MANY} in flight, ${seconds} s`, () =>
      timed(MANY, seconds, async (i) => {
        const j = i % c.ops;
        const v = await ks.read(key(`gc${j % GROUPS}`, `k${j}`));
        if (!v?.equals(valueFor(j))) throw new Error(`read gc/k${j}: wrong value`);
      }),
    );

    // chunks
    const count = totalMiB;
    const ids: ChunkId[] = new Array(count);
    say(`chunk put, ${count} MiB, ${CHUNK_IN_FLIGHT} in flight`);
    const before = snapshot(ks, cluster);
    const putLat = await pool(CHUNK_IN_FLIGHT, count, async (i) => {
      ids[i] = await ks.putChunk(chunk(i));
    });
    const acked = snapshot(ks, cluster);
    phases.set('put', phaseOf('put', before, acked, putLat));
    // The put returned at W acks; the other copies may still be on their way.
    // Wait until every replica reports every chunk it should hold.
    const missing = new Map(ks.peers.map((p) => [p.id, new Set<ChunkId>()]));
    for (const id of ids) for (const p of ks.chunks.replicasOf(id)) missing.get(p.id)!.add(id);
    for (;;) {
      for (const p of ks.peers) {
        const want = [...missing.get(p.id)!];
        if (want.length === 0) continue;
        const have = await p.client.hasChunks(want);
        want.forEach((id, k) => have[k] && missing.get(p.id)!.delete(id));
      }
      if ([...missing.values()].every((s) => s.size === 0)) break;
      if (performance.now() - acked.at > 120_000) throw new Error('copies still missing 120 s after the puts returned');
      await new Promise((r) => setTimeout(r, 20));
    }
    const allCopiesPhase = phaseOf('putAll', before, snapshot(ks, cluster), [], count);
    await run('get', `chunk get, ${count} MiB, ${CHUNK_IN_FLIGHT} in flight`, () =>
      pool(CHUNK_IN_FLIGHT, count, async (i) => {
        const b = await ks.getChunk(ids[i]!);
        if (b.length !== CHUNK || b.readUInt32BE(0) !== i) throw new Error(`chunk ${i} read back wrong`);
      }),
    );
    return { phases, allCopiesPhase };
  } finally {
    await ks.close();
  }
}

// ---- machine info

function sh(cmd: string, args: string[]): string | null {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

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

// ---- main

async function main(): Promise<void> {
  const fs = await statfs(values.dir);
  const free = fs.bavail * fs.bsize;
  const need = 4 * totalMiB * MiB;
  if (free < need) throw new Error(`${values.dir}: ${Math.floor(free / MiB)} MiB free, need ${need / MiB} MiB for --mib ${totalMiB}`);
  const load = loadavg();

  const results: Array<{ cluster: BenchCluster; phases: Map<string, Phase>; allCopiesPhase: Phase }> = [];
  for (const start of [() => startMany(values.dir, 3, 3, 2), () => startOne(values.dir)]) {
    const cluster = await start();
    try {
      results.push({ cluster, ...(await runSuite(cluster)) });
    } finally {
      await cluster.cleanup();
    }
    await new Promise((r) => setTimeout(r, 2000)); // let the disk settle between clusters
  }
  const [many, one] = results as [(typeof results)[0], (typeof results)[0]];

  const f1 = (n: number): string => n.toFixed(1);
  const f2 = (n: number): string => n.toFixed(2);
  const ratio = (x: number, y: number): string => `${(x / y).toFixed(2)}×`;
  const get = (r: (typeof results)[0], name: string): Phase => {
    const p = r.phases.get(name);
    if (!p) throw new Error(`no phase ${name}`);
    return p;
  };
  const rows: string[][] = [];
  const opsRows = (label: string, name: string): void => {
    const x = get(many, name);
    const y = get(one, name);
    rows.push([`${label} (ops/s)`, f1(x.rate), f1(y.rate), ratio(x.rate, y.rate)]);
    rows.push(['  latency p50 / p99 (ms)', `${f2(x.p50)} / ${f2(x.p99)}`, `${f2(y.p50)} / ${f2(y.p99)}`, `${ratio(x.p50, y.p50)} (p50)`]);
  };
  opsRows('change, 1 in flight, new keys', 'change1new');
  opsRows('change, 1 in flight, same key', 'change1same');
  opsRows(`change, ${MANY} in flight, new keys, ${GROUPS} groups`, 'change64new');
  opsRows('read, 1 in flight, existing keys', 'read1');
  opsRows(`read, ${MANY} in flight, existing keys`, 'read64');
  const mibs = (p: Phase): number => p.ops / p.secs;
  const chunkRow = (label: string, x: Phase, y: Phase): void => void rows.push([label, f1(mibs(x)), f1(mibs(y)), ratio(mibs(x), mibs(y))]);
  chunkRow(`chunk put, 1 MiB, ${CHUNK_IN_FLIGHT} in flight, at W acks (MiB/s)`, get(many, 'put'), get(one, 'put'));
  chunkRow('  same puts, until every copy is stored (MiB/s)', many.allCopiesPhase, one.allCopiesPhase);
  chunkRow(`chunk get, 1 MiB, ${CHUNK_IN_FLIGHT} in flight, verified (MiB/s)`, get(many, 'get'), get(one, 'get'));

  const pathRows: string[][] = [];
  for (const name of ['change1new', 'change1same', 'change64new', 'read1', 'read64', 'put', 'get']) {
    for (const r of [many, one]) {
      const p = get(r, name);
      const s = p.stats;
      pathRows.push([
        name,
        r.cluster.label,
        String(p.ops),
        String(s.fastChanges),
        String(s.fullRounds),
        String(s.conflicts),
        String(s.fastReads),
        String(s.slowReads),
        f2(p.rpcs / p.ops),
        String(p.failures),
        `${f2(p.clientCores)} / ${f2(p.nodeCores)} / ${f2(p.otherCores)}`,
      ]);
    }
  }

  const fsType = sh('findmnt', ['-n', '-o', 'FSTYPE,SOURCE', '-T', values.dir])?.replace(/\s+/g, ' on ') ?? sh('stat', ['-f', '-c', '%T', values.dir]) ?? 'unknown';
  const out = [
    `Replicated key space benchmark: ${totalMiB} MiB of chunks, ${seconds} s per register phase, ${new Date().toISOString().slice(0, 10)}`,
    '',
    `| measure | ${many.cluster.label} | ${one.cluster.label} | 3-node / 1-node |`,
    '|---|---:|---:|---:|',
    ...rows.map((r) => `| ${r.join(' | ')} |`),
    '',
    'Which paths ran (Registers.stats deltas per phase), RPCs per operation, failed RPCs, and busy cores (the client / all nodes / everything else on the machine):',
    '',
    '| phase | cluster | ops | fast changes | full rounds | conflicts | fast reads | slow reads | RPCs/op | failed RPCs | cores: client / nodes / other |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...pathRows.map((r) => `| ${r.join(' | ')} |`),
    '',
    `Chunk repair hints left after the puts: ${get(many, 'put').hints} (3 nodes), ${get(one, 'put').hints} (1 node); get failovers: ${get(many, 'get').failovers}, ${get(one, 'get').failovers}.`,
    '',
    '| machine | |',
    '|---|---|',
    `| nproc | ${availableParallelism()} |`,
    `| cpu | ${cpus()[0]?.model ?? 'unknown'} |`,
    `| memory | ${(totalmem() / 1024 ** 3).toFixed(1)} GiB |`,
    `| node | ${process.version} |`,
    `| kernel | ${release()} |`,
    `| ws native masking | ${wsNativeMasking()} |`,
    `| fs of ${values.dir} | ${fsType} |`,
    `| load average at start (1/5/15 min) | ${load.map((x) => x.toFixed(2)).join(' / ')} |`,
    '',
    'Client and every node share the machine. The client hashes each chunk on put (on the clock) and verifies SHA-256 on get.',
  ];
  process.stdout.write(out.join('\n') + '\n');
}

const stop = (code: number): void => {
  void Promise.allSettled([...live].map((c) => c.cleanup())).finally(() => process.exit(code));
};
process.once('SIGINT', () => stop(130));
process.once('SIGTERM', () => stop(143));
process.on('unhandledRejection', (err) => {
  process.stderr.write(`cluster-bench: ${String((err as Error)?.stack ?? err)}\n`);
  stop(1);
});

try {
  await main();
} catch (err) {
  process.stderr.write(`cluster-bench: ${String((err as Error)?.stack ?? err)}\n`);
  await Promise.allSettled([...live].map((c) => c.cleanup()));
  process.exitCode = 1;
}
