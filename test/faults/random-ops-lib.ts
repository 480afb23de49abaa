// Fault scenario 8 (issue 5), shared by test/faults/random-ops.test.ts and
// scripts/soak.ts: a seeded random sequence of file operations applied to a
// local directory and to a mount (by test/faults/random_ops.py, in a child
// process: the test process never touches the mount), with one node at a time
// SIGKILLed and restarted between batches, sometimes with `quorumfs repair`
// running beside a batch; then the trees are compared, on the mount and on a
// fresh second mount, and `quorumfs fsck` must report the cluster clean.
//
// The helpers here take an ExecutionContext only for its teardown (like the
// test/helpers ones, which import ava for types only), so the soak runs them
// outside ava with a Scope from test/helpers/e2e-fixtures.ts.
import { spawn } from 'node:child_process';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { runCli } from '../helpers/cluster.js';
import { startCluster, type RunningCluster } from '../helpers/keyspace.js';
import { mountCluster, type Mount } from '../helpers/mount.js';
import { referenceDir } from '../helpers/posix-python.js';

/** The op generator and comparer: not compiled, so found from dist/test/faults/ back in the sources. */
export const RANDOM_OPS_PY = fileURLToPath(new URL('../../../test/faults/random_ops.py', import.meta.url));

/** mulberry32: the node-kill schedule only needs to be replayable from the seed, not strong. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    // a different stream from python's, which has the same seed
    this.s = (seed ^ 0x9e3779b9) >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let x = this.s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    const x = xs[Math.floor(this.next() * xs.length)];
    if (x === undefined) throw new Error('pick from an empty list');
    return x;
  }
}

export function parseSeed(text: string | undefined): number | null {
  if (text === undefined || text.trim() === '') return null;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`seed must be a non-negative integer, got ${JSON.stringify(text)}`);
  return n;
}

export function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 31);
}

// ---------------------------------------------------------------------------
// The python child
// ---------------------------------------------------------------------------

interface PyResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

function runPy(args: string[], timeoutMs: number): Promise<PyResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', [RANDOM_OPS_PY, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

export type Outcome = { ok: true; value: unknown } | { ok: false; errno: string };

export interface OpRecord {
  index: number;
  op: Record<string, unknown>;
  result?: Outcome;
}

export interface Mismatch {
  index: number;
  op: Record<string, unknown>;
  local: Outcome;
  mount: Outcome;
  recent: OpRecord[];
}

export interface TreeDiff {
  path: string;
  what: string;
  a: unknown;
  b: unknown;
}

/** Compares two trees (python, in a child): type, mode, owner, nlink, size, content, symlink target, user xattrs, explicit mtimes, hard-link groups. */
export async function compareTrees(a: string, b: string, timeoutMs = 180_000): Promise<{ paths: number; diffs: TreeDiff[] }> {
  const r = await runPy(['compare', a, b], timeoutMs);
  if (r.code !== 0) throw new Error(`random_ops.py compare exited ${r.code ?? r.signal}${r.timedOut ? ' (timed out)' : ''}: ${r.stderr.slice(-3000)}`);
  return JSON.parse(r.stdout) as { paths: number; diffs: TreeDiff[] };
}

// ---------------------------------------------------------------------------
// The system under test
// ---------------------------------------------------------------------------

export interface System {
  t: ExecutionContext;
  rc: RunningCluster;
  mount: Mount;
  /** The local reference tree. */
  local: string;
  /** State file, op log, repair checkpoint. */
  work: string;
  /** The node currently SIGKILLed, if any. */
  down: string | null;
  /** Every mount started for this system (the soak's last-resort cleanup). */
  mounts: Mount[];
}

/** Three nodes, formatted, one mount, and an empty local tree with user xattrs. */
export async function startSystem(t: ExecutionContext): Promise<System> {
  const rc = await startCluster(t, 3);
  const f = await runCli(['format', '--config', rc.cluster.configPath]);
  if (f.code !== 0) throw new Error(`format failed: ${f.stderr}`);
  const local = await referenceDir('qfs-randops-');
  t.teardown(() => rm(local, { recursive: true, force: true }));
  const work = join(rc.cluster.dir, 'randops');
  await mkdir(work);
  const mount = await mountCluster(t, rc, 'mnt');
  return { t, rc, mount, local, work, down: null, mounts: [mount] };
}

async function killNode(sys: System, id: string): Promise<void> {
  const p = sys.rc.nodes.get(id);
  if (!p) throw new Error(`no node ${id}`);
  p.kill('SIGKILL');
  await p.exited;
  sys.down = id;
}

async function restartDown(sys: System): Promise<string | null> {
  const id = sys.down;
  if (id === null) return null;
  await sys.rc.start(id);
  sys.down = null;
  return id;
}


async function repair(sys: System): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runCli(['repair', '--config', sys.rc.cluster.configPath, '--state', join(sys.work, 'repair-state.json'), '--restart', '--json'], { timeoutMs: 180_000 });
}

/** gc beside a batch: every op closes its files at once, so a 5 s grace covers every write in flight. */
async function collect(sys: System): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runCli(['gc', '--config', sys.rc.cluster.configPath, '--grace', '5s', '--json'], { timeoutMs: 180_000 });
}

// ---------------------------------------------------------------------------
// A campaign: rounds of ops with one node at a time killed and restarted
// ---------------------------------------------------------------------------

export interface CampaignOptions {
  seed: number;
  /** Ops to apply in all. */
  ops: number;
  opsPerRound: number;
  /** Rounds with every node up before a kill, and rounds with the node down (inclusive ranges). */
  upRounds?: [number, number];
  downRounds?: [number, number];
  /** Chance of running `quorumfs repair` beside the batch that follows a restart. */
  repairChance?: number;
  /** Chance that a round with every node up and no repair runs gc beside its batch. */
  gcChance?: number;
  /** Kill a batch (and fail) that runs longer than this. */
  batchTimeoutMs?: number;
  log: (line: string) => void;
  /** Stops before the next round when it returns true (the soak's duration). */
  stop?: () => boolean;
}

export type Failure =
  | { kind: 'mismatch'; mismatch: Mismatch }
  | { kind: 'batch'; index: number | null; op: Record<string, unknown> | null; detail: string }
  | { kind: 'repair'; detail: string };

export interface CampaignResult {
  applied: number;
  rounds: number;
  kills: number;
  repairs: number;
  /** gc runs beside a batch. */
  gcs: number;
  failure: Failure | null;
}

async function lastLogged(logFile: string): Promise<OpRecord | null> {
  try {
    const lines = (await readFile(logFile, 'utf8')).trimEnd().split('\n');
    const last = lines[lines.length - 1];
    return last ? (JSON.parse(last) as OpRecord) : null;
  } catch {
    return null;
  }
}

/** One batch of seeded ops on the local tree and the mount (exported for scenarios of their own). */
export async function batch(sys: System, seed: number, count: number, timeoutMs: number): Promise<{ next: number; failure: Failure | null }> {
  const logFile = join(sys.work, 'ops.jsonl');
  const r = await runPy(
    ['run', '--seed', String(seed), '--state', join(sys.work, 'state.pickle'), '--count', String(count), '--local', sys.local, '--mount', sys.mount.dir, '--log', logFile],
    timeoutMs,
  );
  if (r.code !== 0) {
    // the op log has each op before it went to the mount: the last one is where it stopped
    const last = await lastLogged(logFile);
    const why = r.timedOut ? `timed out after ${timeoutMs / 1000} s` : `exited ${r.code ?? r.signal}`;
    return { next: last?.index ?? -1, failure: { kind: 'batch', index: last?.index ?? null, op: last?.op ?? null, detail: `random_ops.py run ${why}: ${r.stderr.slice(-3000)}` } };
  }
  const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { next: number; mismatch: Mismatch | null };
  return { next: out.next, failure: out.mismatch ? { kind: 'mismatch', mismatch: out.mismatch } : null };
}

export async function runCampaign(sys: System, opts: CampaignOptions): Promise<CampaignResult> {
  const rng = new Rng(opts.seed);
  const [upLo, upHi] = opts.upRounds ?? [1, 2];
  const [downLo, downHi] = opts.downRounds ?? [1, 2];
  const repairChance = opts.repairChance ?? 0.5;
  const gcChance = opts.gcChance ?? 0.25;
  const timeoutMs = opts.batchTimeoutMs ?? 180_000;
  const ids = sys.rc.cluster.nodes.map((n) => n.id);
  const res: CampaignResult = { applied: 0, rounds: 0, kills: 0, repairs: 0, gcs: 0, failure: null };
  // rounds left in the current phase (up: all nodes running; down: one killed)
  let phaseLeft = rng.int(upLo, upHi);
  while (res.applied < opts.ops && !(opts.stop?.() ?? false)) {
    let repairing: Promise<{ code: number | null; stdout: string; stderr: string }> | null = null;
    if (phaseLeft === 0) {
      if (sys.down === null) {
        const id = rng.pick(ids);
        await killNode(sys, id);
        res.kills++;
        phaseLeft = rng.int(downLo, downHi);
        opts.log(`op ${res.applied}: SIGKILL ${id}`);
      } else {
        const id = await restartDown(sys);
        phaseLeft = rng.int(upLo, upHi);
        const withRepair = rng.next() < repairChance;
        opts.log(`op ${res.applied}: restarted ${id}${withRepair ? ', repair beside the next batch' : ''}`);
        if (withRepair) {
          res.repairs++;
          repairing = repair(sys);
        }
      }
    }
    if (!repairing && sys.down === null && rng.next() < gcChance) {
      // All nodes up: gc may delete, and must not touch anything the ops still need.
      res.gcs++;
      opts.log(`op ${res.applied}: gc beside the next batch`);
      repairing = collect(sys);
    }
    const count = Math.min(opts.opsPerRound, opts.ops - res.applied);
    const b = await batch(sys, opts.seed, count, timeoutMs);
    res.rounds++;
    phaseLeft--;
    if (repairing) {
      const r = await repairing;
      if (r.code !== 0 && !b.failure) res.failure = { kind: 'repair', detail: `repair or gc exited ${r.code}: ${r.stderr.slice(-2000)} ${r.stdout.slice(-1000)}` };
    }
    if (b.failure) {
      res.failure = b.failure;
      res.applied = Math.max(res.applied, b.next);
      break;
    }
    res.applied = b.next;
    if (res.failure) break;
  }
  if (sys.down !== null) {
    const id = await restartDown(sys);
    opts.log(`op ${res.applied}: restarted ${id} (end of the run)`);
  }
  return res;
}

// ---------------------------------------------------------------------------
// The final checks
// ---------------------------------------------------------------------------

export interface FsckOutcome {
  code: number | null;
  report: { clean?: unknown; errors?: unknown; inFlight?: unknown; findings?: unknown } | null;
  stdout: string;
  stderr: string;
}

export interface Verification {
  paths: number;
  /** Local tree against the mount the ops went through. */
  first: TreeDiff[];
  /** Exit code of that mount's `quorumfs mount` after SIGTERM. */
  firstExit: number | null;
  /** Local tree against a freshly started mount: what reached the cluster, not a cache. */
  remount: TreeDiff[];
  fsck: FsckOutcome;
}

export async function fsck(sys: System): Promise<FsckOutcome> {
  // nothing is in flight (every mount is gone): a grace period would only skip
  // the records the ops just wrote
  const r = await runCli(['fsck', '--config', sys.rc.cluster.configPath, '--grace', '0', '--json'], { timeoutMs: 180_000 });
  let report: FsckOutcome['report'] = null;
  try {
    report = JSON.parse(r.stdout) as FsckOutcome['report'];
  } catch {
    report = null;
  }
  return { code: r.code, report, stdout: r.stdout, stderr: r.stderr };
}

/** With every node up: compare on the mount, unmount, compare on a new mount, unmount, fsck. */
export async function verify(sys: System, mountName = 'mnt2'): Promise<Verification> {
  // past the kernel's 1 s attribute timeout, so that every name of a hard link shows fresh attributes
  await new Promise((r) => setTimeout(r, 1500));
  const a = await compareTrees(sys.local, sys.mount.dir);
  const firstExit = await sys.mount.stop();
  const second = await mountCluster(sys.t, sys.rc, mountName);
  sys.mounts.push(second);
  const b = await compareTrees(sys.local, second.dir);
  await second.stop();
  return { paths: a.paths, first: a.diffs, firstExit, remount: b.diffs, fsck: await fsck(sys) };
}

// ---------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------

export function replayTest(seed: number): string {
  return `QFS_SEED=${seed} npx ava --config ava.e2e.config.mjs dist/test/faults/random-ops.test.js`;
}

export function replaySoak(seed: number, opsPerRound: number, epochOps: number): string {
  return `npm run soak -- --seed ${seed} --ops-per-round ${opsPerRound} --epoch-ops ${epochOps} --duration 10m`;
}

export function describeFailure(f: Failure): string {
  switch (f.kind) {
    case 'mismatch': {
      const m = f.mismatch;
      const recent = m.recent.map((r) => `  #${r.index} ${JSON.stringify(r.op)} -> ${JSON.stringify(r.result)}`).join('\n');
      return `op #${m.index} ${JSON.stringify(m.op)}\n  local: ${JSON.stringify(m.local)}\n  mount: ${JSON.stringify(m.mount)}\nops before it:\n${recent}`;
    }
    case 'batch':
      return `batch failed at op #${f.index ?? '?'} ${JSON.stringify(f.op)}: ${f.detail}`;
    case 'repair':
      return f.detail;
  }
}

export function describeDiffs(diffs: TreeDiff[], max = 20): string {
  const lines = diffs.slice(0, max).map((d) => `  ${d.path}: ${d.what}: local ${JSON.stringify(d.a)} mount ${JSON.stringify(d.b)}`);
  if (diffs.length > max) lines.push(`  ... ${diffs.length - max} more`);
  return lines.join('\n');
}
