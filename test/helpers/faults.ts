// Shared parts of the fault-injection suite (test/faults/): a writer in a
// child process that reports every file it closed with its checksum, a
// manifest of a tree, and the suite's common ending (what the writer closed
// is on the mount byte for byte, and fsck is clean).
import { spawn, type ChildProcess } from 'node:child_process';
import type { ExecutionContext } from 'ava';
import { runCli } from './cluster.js';
import { python } from './e2e-fixtures.js';

export interface ClosedFile {
  path: string;
  size: number;
  sha256: string;
}

// Writes files of seeded random sizes and bytes, one after the other; each is
// fsynced and closed, and only then reported as "closed <path> <size> <sha>".
// An error is reported as "error <path> <errno name> <message>" and, with
// --keep-going, the writer goes on with the next file after a pause.
const WRITER = String.raw`
import hashlib, os, random, sys, time, errno as E
root, seed, count, minsize, maxsize, keep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == '1'
pause = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
rng = random.Random(seed)
os.makedirs(root, exist_ok=True)
for i in range(count):
    sub = os.path.join(root, 'd%02d' % (i % 7))
    path = os.path.join(sub, 'f%05d' % i)
    size = rng.randint(minsize, maxsize)
    data = rng.randbytes(size)
    try:
        os.makedirs(sub, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view[:1 << 20])
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        print('closed %s %d %s' % (path, size, hashlib.sha256(data).hexdigest()), flush=True)
    except OSError as e:
        print('error %s %s %s' % (path, E.errorcode.get(e.errno, str(e.errno)), str(e).replace('\n', ' ')), flush=True)
        if not keep:
            sys.exit(3)
        time.sleep(0.2)
    if pause:
        time.sleep(pause)
print('done', flush=True)
`;

export interface Writer {
  child: ChildProcess;
  closed: ClosedFile[];
  errors: Array<{ path: string; errno: string; message: string; atMs: number }>;
  /** Resolves with the exit code when the writer ends. */
  done: Promise<number | null>;
  /** Resolves once `n` files were closed (rejects if the writer ends first). */
  closedAtLeast(n: number): Promise<void>;
  kill(): void;
}

export function startWriter(
  t: ExecutionContext,
  root: string,
  opts: { seed: number; count: number; minSize: number; maxSize: number; keepGoing?: boolean; pauseSec?: number },
): Writer {
  const child = spawn(
    'python3',
    ['-c', WRITER, root, String(opts.seed), String(opts.count), String(opts.minSize), String(opts.maxSize), opts.keepGoing ? '1' : '0', String(opts.pauseSec ?? 0)],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const started = Date.now();
  const closed: ClosedFile[] = [];
  const errors: Writer['errors'] = [];
  const waiters: Array<{ n: number; resolve: () => void; reject: (e: Error) => void }> = [];
  let stderr = '';
  let buf = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  child.stdout!.setEncoding('utf8').on('data', (s: string) => {
    buf += s;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const [kind, path, a, ...rest] = line.split(' ');
      if (kind === 'closed') closed.push({ path: path!, size: Number(a), sha256: rest[0]! });
      else if (kind === 'error') errors.push({ path: path!, errno: a!, message: rest.join(' '), atMs: Date.now() - started });
    }
    for (const w of [...waiters]) {
      if (closed.length >= w.n) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  let ended: string | null = null;
  const done = new Promise<number | null>((resolve) =>
    child.once('close', (code) => {
      ended = `writer ended (${code}) after ${closed.length} files`;
      for (const w of waiters.splice(0)) w.reject(new Error(`${ended}, before ${w.n}: ${stderr.slice(-500)} ${JSON.stringify(errors.slice(-3))}`));
      resolve(code);
    }),
  );
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  t.teardown(async () => {
    kill();
    await done;
  });
  return {
    child,
    closed,
    errors,
    done,
    kill,
    closedAtLeast(n) {
      if (closed.length >= n) return Promise.resolve();
      // A writer that already ended never closes another file: say so instead of waiting forever.
      if (ended !== null) return Promise.reject(new Error(`${ended}, before ${n}: ${stderr.slice(-500)} ${JSON.stringify(errors.slice(-3))}`));
      return new Promise((resolve, reject) => waiters.push({ n, resolve, reject }));
    },
  };
}

/** sha256 and size of each path, read in a child process; missing files are reported as such. */
export async function checksums(paths: readonly string[]): Promise<Map<string, { size: number; sha256: string } | { error: string }>> {
  const script = String.raw`
import hashlib, json, sys
out = {}
for p in json.load(sys.stdin):
    try:
        h = hashlib.sha256(); n = 0
        with open(p, 'rb') as f:
            while True:
                b = f.read(1 << 20)
                if not b: break
                h.update(b); n += len(b)
        out[p] = {'size': n, 'sha256': h.hexdigest()}
    except OSError as e:
        out[p] = {'error': '%s: %s' % (type(e).__name__, e.strerror)}
print(json.dumps(out))
`;
  const child = spawn('python3', ['-c', script], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  child.stdin.end(JSON.stringify(paths));
  const code = await new Promise<number | null>((r) => child.once('close', r));
  if (code !== 0) throw new Error(`checksums failed (${code}): ${err}`);
  return new Map(Object.entries(JSON.parse(out) as Record<string, { size: number; sha256: string } | { error: string }>));
}

/** Every file the writer reported closed reads back with its size and checksum; returns the mismatches. */
export async function verifyClosed(closed: readonly ClosedFile[], rebase?: { from: string; to: string }): Promise<string[]> {
  const path = (p: string): string => (rebase && p.startsWith(rebase.from) ? rebase.to + p.slice(rebase.from.length) : p);
  const sums = await checksums(closed.map((c) => path(c.path)));
  const bad: string[] = [];
  for (const c of closed) {
    const got = sums.get(path(c.path));
    if (!got || 'error' in got) bad.push(`${path(c.path)}: ${got && 'error' in got ? got.error : 'not read'}`);
    else if (got.size !== c.size || got.sha256 !== c.sha256) bad.push(`${path(c.path)}: ${got.size} bytes ${got.sha256.slice(0, 12)}, wrote ${c.size} bytes ${c.sha256.slice(0, 12)}`);
  }
  return bad;
}

/** A tree's manifest: relative path → type, mode, size, sha256 or link target. */
export async function manifest(root: string): Promise<Record<string, string>> {
  const script = String.raw`
import hashlib, json, os, stat, sys
root = sys.argv[1]; out = {}
for d, dirs, files in os.walk(root):
    dirs.sort()
    for n in sorted(dirs + files):
        p = os.path.join(d, n); r = os.path.relpath(p, root); st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode): out[r] = 'link %o %s' % (stat.S_IMODE(st.st_mode), os.readlink(p))
        elif stat.S_ISDIR(st.st_mode): out[r] = 'dir %o' % stat.S_IMODE(st.st_mode)
        else:
            h = hashlib.sha256()
            with open(p, 'rb') as f:
                for b in iter(lambda: f.read(1 << 20), b''): h.update(b)
            out[r] = 'file %o %d %s' % (stat.S_IMODE(st.st_mode), st.st_size, h.hexdigest())
print(json.dumps(out))
`;
  const r = await python(script, [root], { timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`manifest of ${root} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, string>;
}

export interface FsckJson {
  clean: boolean;
  errors: number;
  leftovers: number;
  inFlight: number;
  complete: boolean;
  findings: Array<{ kind: string; severity: string; where: string; detail: string; repair?: string }>;
  counts: Record<string, number>;
}

/** `quorumfs fsck --json`; the exit code with the parsed report. */
export async function runFsck(configPath: string, args: string[] = []): Promise<{ code: number | null; report: FsckJson; stderr: string }> {
  const r = await runCli(['fsck', '--config', configPath, '--json', ...args], { timeoutMs: 120_000 });
  let report: FsckJson;
  try {
    report = JSON.parse(r.stdout) as FsckJson;
  } catch {
    throw new Error(`fsck printed no report (exit ${r.code}): ${r.stdout.slice(-1000)} ${r.stderr.slice(-1000)}`);
  }
  return { code: r.code, report, stderr: r.stderr };
}

/** The suite's ending: fsck exits 0 and reports no error. Returns the report for further checks. */
export async function assertFsckClean(t: ExecutionContext, configPath: string, args: string[] = []): Promise<FsckJson> {
  const { code, report } = await runFsck(configPath, args);
  const errors = report.findings.filter((f) => f.severity === 'error');
  t.deepEqual(errors, [], 'fsck found no errors');
  t.is(code, 0, 'fsck exits 0');
  t.true(report.clean, 'fsck reports clean');
  return report;
}

export async function runJson<T>(args: string[], timeoutMs = 180_000): Promise<{ code: number | null; json: T; stderr: string }> {
  const r = await runCli([...args, '--json'], { timeoutMs });
  try {
    return { code: r.code, json: JSON.parse(r.stdout) as T, stderr: r.stderr };
  } catch {
    throw new Error(`${args[0]} printed no JSON (exit ${r.code}): ${r.stdout.slice(-1000)} ${r.stderr.slice(-1000)}`);
  }
}

/** Chunk ids each node holds, read from its data directory. */
export async function chunkFiles(dataDir: string): Promise<string[]> {
  const r = await python(
    String.raw`
import os, sys, json
root = os.path.join(sys.argv[1], 'chunks'); out = []
for d, _, files in os.walk(root):
    out += [f for f in files if len(f) == 64]
print(json.dumps(sorted(out)))
`,
    [dataDir],
  );
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as string[];
}
