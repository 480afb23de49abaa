// Fault scenario: a network partition. Each storage node runs in its own
// network namespace behind a veth on a bridge; the mount runs in the root
// namespace. While a child process keeps writing files through the mount, one
// node is cut off (its veth set down: its packets vanish, so TCP hangs instead
// of being refused, and only the cluster's own deadlines can get past it),
// then healed, then given a bad link (netem delay and loss, or a tbf
// bottleneck where the kernel has no netem). The writer must keep closing
// files throughout; after healing, `repair` must converge (a later run finds
// nothing to do), the cut node must hold every chunk, every file the writer
// closed must read back with its checksum, and `fsck` must report clean.
//
// Skipped, with the reason in the title, when not root or when namespaces,
// veths or a bridge cannot be made.
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { connect, runCli } from '../helpers/cluster.js';
import { python } from '../helpers/e2e-fixtures.js';
import { mountCluster, type Mount } from '../helpers/mount.js';
import { createLab, leftovers, probeNetns, startLabCluster, type Lab } from '../helpers/netns.js';
import { parseChunkId } from '../../src/util/ids.js';

const loadedAt = Date.now();
const probe = await probeNetns();
let labTag: string | null = null;

/** The node that is cut off, and the one whose link is degraded later. */
const CUT = 'n2';
const SLOW = 'n3';
/** A phase lasts at least this long (past the request deadline, 5 s by default) ... */
const PHASE_MIN_MS = 8000;
/** ... and until this many files were opened and closed inside it. */
const PHASE_FILES = 5;
/** Bounded waits: past these the test fails with a message instead of hanging. */
const PHASE_MAX_MS = 30_000;

// Writes files of mixed sizes (inline, one chunk, several chunks with a partial
// last one) until the stop file appears. One line per file, after close:
//   ok NAME SIZE SHA256 T_OPEN T_CLOSE CHUNK_SHA,CHUNK_SHA,...   (times in ms)
//   err NAME ERRNO T_OPEN T_FAIL
// Only "ok" files are promised to exist; the chunk hashes are the chunk ids
// (1 MiB chunks, named by their hash-tree root) for files too big to be stored inline.
const WRITER = `import os, sys, time, hashlib, random, errno
d, stop, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
CH, INLINE = 1 << 20, 16 * 1024
def chunk_id(b):  # the hash-tree root of src/util/hash.ts
    leaves = b''.join(hashlib.sha256(b[i:i + 65536]).digest() for i in range(0, len(b), 65536))
    return hashlib.sha256(b'qfs-tree-1' + len(b).to_bytes(4, 'big') + leaves).hexdigest()
sizes = [100, 5000, 40000, 300000, 1200000, 2500000, 20000]
i = 0
while not os.path.exists(stop):
    size = sizes[i % len(sizes)]
    data = random.Random(seed * 1000003 + i).randbytes(size)
    name = 'f%05d' % i
    t0 = time.time() * 1000
    try:
        fd = os.open(os.path.join(d, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            try:
                os.close(fd)
            except OSError:
                pass
            raise
        os.close(fd)
        chunks = [chunk_id(data[o:o + CH]) for o in range(0, size, CH)] if size > INLINE else []
        print('ok', name, size, hashlib.sha256(data).hexdigest(), '%.1f' % t0, '%.1f' % (time.time() * 1000), ','.join(chunks) or '-', flush=True)
    except OSError as e:
        print('err', name, errno.errorcode.get(e.errno, str(e.errno)), '%.1f' % t0, '%.1f' % (time.time() * 1000), flush=True)
    i += 1
    time.sleep(0.05)
print('done', i, flush=True)`;

// Reads every listed file through the mount; prints one JSON object.
const CHECKER = `import os, sys, json, hashlib
d, manifest = sys.argv[1], sys.argv[2]
want = json.load(open(manifest))
names = set(os.listdir(d))
missing, bad, errors = [], [], []
for name, sha in sorted(want.items()):
    if name not in names:
        missing.append(name)
        continue
    try:
        with open(os.path.join(d, name), 'rb') as f:
            got = hashlib.sha256(f.read()).hexdigest()
        if got != sha:
            bad.append(name)
    except OSError as e:
        errors.append('%s: %s' % (name, e))
print(json.dumps({'listed': sorted(names), 'missing': missing, 'bad': bad, 'errors': errors}))`;

interface Closed {
  name: string;
  size: number;
  sha: string;
  openedAt: number;
  closedAt: number;
  chunks: string[];
}
interface Failed {
  name: string;
  errno: string;
  openedAt: number;
  failedAt: number;
}

interface Writer {
  closed: Closed[];
  failed: Failed[];
  /** Resolves with the writer's exit code once it stopped (stop file) and its output was read. */
  done: Promise<number | null>;
  exited: () => boolean;
  stderr: () => string;
  stop(): Promise<void>;
}

function startWriter(t: ExecutionContext, dir: string, stopFile: string, seed: number): Writer {
  const child = spawn('python3', ['-c', WRITER, dir, stopFile, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const closed: Closed[] = [];
  const failed: Failed[] = [];
  let err = '';
  let buf = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    buf += s;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const f = buf.slice(0, i).split(' ');
      buf = buf.slice(i + 1);
      if (f[0] === 'ok' && f.length === 7) {
        closed.push({ name: f[1]!, size: Number(f[2]), sha: f[3]!, openedAt: Number(f[4]), closedAt: Number(f[5]), chunks: f[6] === '-' ? [] : f[6]!.split(',') });
      } else if (f[0] === 'err' && f.length === 5) {
        failed.push({ name: f[1]!, errno: f[2]!, openedAt: Number(f[3]), failedAt: Number(f[4]) });
      }
    }
  });
  let over = false;
  const done = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  void done.then(() => (over = true));
  // Bounded: a writer stuck in a hung mount must not keep the unmount (the next teardown) from running.
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await within(done, 5000);
  });
  return {
    closed,
    failed,
    done,
    exited: () => over,
    stderr: () => err,
    async stop() {
      await writeFile(stopFile, '');
    },
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The promise's value, or 'hung' after `ms`; the timer is cleared so it cannot keep the worker alive. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | 'hung'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<'hung'>((r) => (timer = setTimeout(() => r('hung'), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Files opened and closed inside [from, to). */
const inside = (w: Writer, from: number, to: number): Closed[] => w.closed.filter((c) => c.openedAt >= from && c.closedAt < to);

/**
 * Holds a phase for at least PHASE_MIN_MS and until PHASE_FILES files were
 * opened and closed inside it; gives up after PHASE_MAX_MS (the caller's
 * assertion then fails with the count).
 */
async function holdPhase(w: Writer, from: number): Promise<void> {
  while (Date.now() - from < PHASE_MAX_MS) {
    if (Date.now() - from >= PHASE_MIN_MS && inside(w, from, Date.now()).length >= PHASE_FILES) return;
    if (w.exited()) return;
    await sleep(100);
  }
}

/** The longest time without a close in [from, to), counting from `from`: how long writes stalled. */
function longestStall(w: Writer, from: number, to: number): number {
  let last = from;
  let worst = 0;
  for (const c of w.closed) {
    if (c.closedAt < from || c.closedAt >= to) continue;
    worst = Math.max(worst, c.closedAt - last);
    last = c.closedAt;
  }
  return Math.max(worst, to - last);
}

interface FsckReport {
  clean?: unknown;
  errors?: unknown;
  findings?: unknown;
}

interface Repair {
  code: number | null;
  counts: { recordsRepaired: number; chunksRepaired: number; tombstonesPurged: number; failures: number; nodesDown: string[]; recordsScanned: number; chunksScanned: number } | null;
  out: string;
}

async function repair(configPath: string, stateFile: string): Promise<Repair> {
  const r = await runCli(['repair', '--config', configPath, '--json', '--restart', '--state', stateFile], { timeoutMs: 60_000 });
  let counts: Repair['counts'] = null;
  try {
    counts = JSON.parse(r.stdout) as Repair['counts'];
  } catch {
    counts = null;
  }
  return { code: r.code, counts, out: (r.stdout + r.stderr).slice(-2000) };
}

async function deepStatus(configPath: string): Promise<{ underReplicatedRecords: number; underReplicatedChunks: number; failures: number } | string> {
  const r = await runCli(['status', '--config', configPath, '--deep', '--json'], { timeoutMs: 60_000 });
  try {
    const s = JSON.parse(r.stdout) as { deep?: { underReplicatedRecords: number; underReplicatedChunks: number; failures: number } };
    return s.deep ?? `no deep section: ${r.stdout.slice(0, 500)}`;
  } catch {
    return `status exit ${String(r.code)}: ${(r.stdout + r.stderr).slice(-1000)}`;
  }
}

const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

if (probe.skip !== null) {
  test.skip(`partition: skipped, ${probe.skip}`, () => {});
} else {
  test.serial(`partition: one node cut off (link down) and then on a bad link (${probe.degrade}) during writes; writes go on, repair converges, contents and fsck clean`, async (t) => {
    t.timeout(180_000);
    const started = Date.now();
    t.log(`module loaded ${secs(started - loadedAt)} before the test started`);
    const lab: Lab = await createLab(t, 3, probe.degrade);
    labTag = lab.tag;
    t.log(`lab ${lab.tag}: ${lab.subnet}.0/24, bridge ${lab.bridge}, degraded link by ${lab.degradeMode}`);
    let mount: Mount | null = null;
    const rc = await startLabCluster(t, lab);
    const cfg = rc.cluster.configPath;
    t.teardown(() => {
      if (t.passed) return;
      for (const [id, p] of rc.nodes) t.log(`node ${id} (pid ${p.pid}) last log lines:\n${p.logs.slice(-15).join('\n')}`);
      if (mount) t.log(`mount log:\n${mount.logs().split('\n').slice(-40).join('\n')}`);
    });
    const f = await runCli(['format', '--config', cfg]);
    t.is(f.code, 0, `format: ${f.stderr}`);
    mount = await mountCluster(t, rc);
    const dir = join(mount.dir, 'w');
    const scratch = join(rc.cluster.dir, 'scratch');
    await mkdir(scratch);
    const made = await python(`import os, sys; os.mkdir(sys.argv[1])`, [dir]);
    t.is(made.code, 0, made.stderr);
    t.log(`setup: ${secs(Date.now() - started)}`);

    const seed = Math.floor(Math.random() * 1e9);
    const w = startWriter(t, dir, join(scratch, 'stop'), seed);
    const marks: Record<string, number> = { start: Date.now() };

    // healthy: the writer is up and running
    while (w.closed.length < PHASE_FILES && Date.now() - marks['start']! < PHASE_MAX_MS && w.failed.length === 0) await sleep(100);
    t.true(w.closed.length >= PHASE_FILES, `writer closed ${w.closed.length} files in the first ${secs(Date.now() - marks['start']!)} on a healthy cluster; stderr: ${w.stderr()}`);

    // cut off: the node's packets vanish
    marks['cut'] = Date.now();
    await lab.cut(CUT);
    await holdPhase(w, marks['cut']);
    marks['heal'] = Date.now();
    await lab.heal(CUT);
    const duringCut = inside(w, marks['cut'], marks['heal']);

    // healed: give the mount a moment to reconnect before the next fault
    while (Date.now() - marks['heal'] < 3000 || inside(w, marks['heal'], Date.now()).length < 2) {
      if (Date.now() - marks['heal'] > PHASE_MAX_MS) break;
      await sleep(100);
    }

    // a bad link to another node
    marks['degrade'] = Date.now();
    await lab.degrade(SLOW);
    await holdPhase(w, marks['degrade']);
    marks['restore'] = Date.now();
    await lab.restore(SLOW);
    const duringDegrade = inside(w, marks['degrade'], marks['restore']);

    await sleep(2000);
    marks['stop'] = Date.now();
    await w.stop();
    const exit = await within(w.done, 60_000);
    marks['stopped'] = Date.now();
    t.is(exit, 0, `writer exit (after the stop file): ${String(exit)}; stderr: ${w.stderr().slice(-1000)}`);

    const rel = (k: string): string => secs(marks[k]! - marks['start']!);
    t.log(`timeline: cut at ${rel('cut')}, healed at ${rel('heal')}, degraded at ${rel('degrade')}, restored at ${rel('restore')}, writer stopped at ${rel('stopped')}`);
    t.log(`files closed: ${w.closed.length} (${(w.closed.reduce((n, c) => n + c.size, 0) / 1048576).toFixed(1)} MiB); failed: ${w.failed.length}`);
    t.log(`cut off ${secs(marks['heal'] - marks['cut'])}: ${duringCut.length} files opened and closed inside; longest time without a close: ${secs(longestStall(w, marks['cut'], marks['heal']))}; first close after the cut: ${secs((w.closed.find((c) => c.openedAt >= marks['cut']!)?.closedAt ?? NaN) - marks['cut'])}`);
    t.log(`bad link ${secs(marks['restore'] - marks['degrade'])}: ${duringDegrade.length} files inside; longest time without a close: ${secs(longestStall(w, marks['degrade'], marks['restore']))}`);
    const slowest = [...w.closed].sort((a, b) => b.closedAt - b.openedAt - (a.closedAt - a.openedAt)).slice(0, 3);
    t.log(`slowest files (open to close): ${slowest.map((c) => `${c.name} (${c.size} B, opened at ${secs(c.openedAt - marks['start']!)}) ${secs(c.closedAt - c.openedAt)}`).join(', ')}`);

    // writes went on through both faults, and none failed (one node of three may be lost)
    t.true(duringCut.length >= PHASE_FILES, `only ${duringCut.length} files were opened and closed during the ${secs(marks['heal'] - marks['cut'])} cut`);
    t.true(duringDegrade.length >= PHASE_FILES, `only ${duringDegrade.length} files were opened and closed during the ${secs(marks['restore'] - marks['degrade'])} bad link`);
    t.deepEqual(
      w.failed.map((x) => `${x.name} ${x.errno} at ${secs(x.failedAt - marks['start']!)}`),
      [],
      'no write or close failed',
    );
    t.true(
      duringCut.some((c) => c.chunks.length > 1),
      'a multi-chunk file was written while the node was cut off',
    );

    // The cut node missed what was written while it was away (writes during the cut, asserted above).
    const before = await deepStatus(cfg);
    t.log(`before repair, under-replicated: ${JSON.stringify(before)}`);
    // The mount's hints (chunks and records) may already have healed it: not asserted.

    // repair until a run finds nothing left to do
    const stateFile = join(rc.cluster.dir, 'state', 'repair.json');
    const runs: Repair[] = [];
    const t0 = Date.now();
    for (let i = 0; i < 6; i++) {
      const r = await repair(cfg, stateFile);
      runs.push(r);
      const c = r.counts;
      if (r.code === 0 && c && c.recordsRepaired === 0 && c.chunksRepaired === 0 && c.failures === 0) break;
    }
    t.log(`repair runs (${secs(Date.now() - t0)}): ${runs.map((r) => `exit ${String(r.code)} ${r.counts ? `records ${r.counts.recordsRepaired}/${r.counts.recordsScanned}, chunks ${r.counts.chunksRepaired}/${r.counts.chunksScanned}, purged ${r.counts.tombstonesPurged}, failures ${r.counts.failures}` : r.out}`).join('; ')}`);
    const last = runs.at(-1);
    t.is(last?.code, 0, `repair never exited 0: ${last?.out ?? ''}`);
    const first = runs[0]?.counts;
    // What the cut node missed was healed by the end: by the
    // mount's hints once the node answered again, or by these repair runs,
    // whichever came first, so the first run may find nothing left.
    t.log(`first repair run: ${first ? `${first.recordsRepaired} records, ${first.chunksRepaired} chunks` : 'no counts'}`);
    t.deepEqual(last?.counts && { records: last.counts.recordsRepaired, chunks: last.counts.chunksRepaired, failures: last.counts.failures, down: last.counts.nodesDown }, { records: 0, chunks: 0, failures: 0, down: [] }, `repair did not converge in ${runs.length} runs`);
    const after = await deepStatus(cfg);
    t.deepEqual(after, { underReplicatedRecords: 0, underReplicatedChunks: 0, failures: 0 }, 'status --deep after repair');

    // The cut node itself holds every chunk of every file the writer closed.
    const ids = [...new Set(w.closed.flatMap((c) => c.chunks))];
    const client = connect(t, rc.cluster, CUT);
    const has: boolean[] = [];
    for (let i = 0; i < ids.length; i += 1000) {
      has.push(...(await client.hasChunks(ids.slice(i, i + 1000).map((id) => parseChunkId(id)), { timeoutMs: 10_000 })));
    }
    t.true(ids.length > 0, 'some files were big enough to have chunks');
    t.deepEqual(
      ids.filter((_, i) => has[i] !== true),
      [],
      `chunks missing on ${CUT} after repair`,
    );

    // the mount's contents against what the writer knows it closed
    t.log(`repair and chunk check done at ${secs(Date.now() - started)}`);
    const manifest = join(scratch, 'manifest.json');
    await writeFile(manifest, JSON.stringify(Object.fromEntries(w.closed.map((c) => [c.name, c.sha]))));
    const check = async (m: string): Promise<{ listed: string[]; missing: string[]; bad: string[]; errors: string[] } | string> => {
      const r = await python(CHECKER, [join(m, 'w'), manifest], { timeoutMs: 120_000 });
      try {
        return JSON.parse(r.stdout) as { listed: string[]; missing: string[]; bad: string[]; errors: string[] };
      } catch {
        return `checker exit ${r.code}: ${r.stderr.slice(-1000)}`;
      }
    };
    // The writer's mount may answer from its chunk cache; a fresh mount reads what the nodes hold.
    const fresh = await mountCluster(t, rc, 'mnt2');
    const known = new Set([...w.closed.map((c) => c.name), ...w.failed.map((x) => x.name)]);
    for (const [label, m] of [['the writer\'s mount', mount.dir], ['a fresh mount', fresh.dir]] as const) {
      const seen = await check(m);
      t.true(typeof seen === 'object', `${label}: ${String(seen)}`);
      if (typeof seen !== 'object') continue;
      t.deepEqual({ missing: seen.missing, bad: seen.bad, errors: seen.errors }, { missing: [], bad: [], errors: [] }, `closed files on ${label}`);
      // anything else listed is a file whose write failed or was cut short by the stop
      t.deepEqual(seen.listed.filter((n) => !known.has(n)), [], `files the writer never reported, on ${label}`);
    }

    t.is(mount.child.exitCode, null, 'the mount is still serving');
    t.log(`contents checked at ${secs(Date.now() - started)}`);

    const fsck = await runCli(['fsck', '--config', cfg, '--json'], { timeoutMs: 60_000 });
    t.log(`fsck done at ${secs(Date.now() - started)}`);
    let report: FsckReport | null = null;
    try {
      report = JSON.parse(fsck.stdout) as FsckReport;
    } catch {
      report = null;
    }
    t.is(fsck.code, 0, `fsck exit ${String(fsck.code)}: ${(fsck.stdout + fsck.stderr).slice(-2000)}`);
    t.is(report?.clean, true, `fsck --json: ${fsck.stdout.slice(0, 2000)}`);

    t.log(`run time: ${secs(Date.now() - started)}`);
  });

  // Teardowns run before this hook: anything of this run still there is a leak.
  test.after.always('partition: no namespace or link of this run is left', async () => {
    if (labTag === null) return;
    const left = await leftovers(labTag);
    if (left.length > 0) throw new Error(`left behind: ${left.join('; ')}`);
  });
}
