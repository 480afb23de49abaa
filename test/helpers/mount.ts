// A real mount over real nodes, for end-to-end tests. Each mount lives in its
// own fresh directory and is served by its own `quorumfs mount` process; the
// test touches it only from child processes (never from the serving one, and
// never synchronously from the test process). Teardown unmounts even when the
// test failed (fusermount -u, then umount -l) and kills only its own pids.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { ExecutionContext } from 'ava';
import { CLI, runCli } from './cluster.js';
import { startCluster, type RunningCluster } from './keyspace.js';

const run = promisify(execFile);

export interface Mount {
  dir: string;
  pid: number;
  child: ChildProcess;
  logs: () => string;
  exited: Promise<number | null>;
  /** SIGTERM: publish open files, unmount, exit. */
  stop(): Promise<number | null>;
}

async function isMounted(dir: string): Promise<boolean> {
  return (await readFile('/proc/self/mounts', 'utf8')).split('\n').some((l) => l.split(' ')[1] === dir);
}

export async function forceUnmount(dir: string): Promise<void> {
  if (!(await isMounted(dir))) return;
  await run('fusermount', ['-u', dir]).catch(() => run('umount', ['-l', dir]).catch(() => {}));
  if (await isMounted(dir)) await run('umount', ['-l', dir]).catch(() => {});
}

export async function mountCluster(t: ExecutionContext, rc: RunningCluster, name = 'mnt', extraArgs: string[] = []): Promise<Mount> {
  const dir = join(rc.cluster.dir, name);
  // A stale mount (its server died) answers ENOTCONN: the mount command clears it.
  await mkdir(dir, { recursive: true }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOTCONN') throw e;
  });
  const child = spawn(process.execPath, [CLI, 'mount', '--config', rc.cluster.configPath, dir, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, QUORUMFS_LOG_LEVEL: process.env['QUORUMFS_LOG_LEVEL'] ?? 'warn' },
  });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (out += s));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const m: Mount = {
    dir,
    pid: child.pid!,
    child,
    logs: () => out,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const code = await Promise.race([exited, new Promise<null>((r) => setTimeout(() => r(null), 15_000))]);
      await forceUnmount(dir);
      return code;
    },
  };
  t.teardown(async () => {
    await forceUnmount(dir);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  const until = Date.now() + 20_000;
  // Mounted and answering (a stale mount is listed too, but cannot answer stat), and the directory
  // answering is the mount's, not the one under it: the stale mount listed when /proc/self/mounts
  // was read may be cleared before the stat, which then answers from the plain directory (a test
  // once read a file there and found nothing). A mount has a device of its own.
  const live = async (): Promise<boolean> =>
    (await isMounted(dir)) &&
    (await run('stat', ['-c', '%d', dir, dirname(dir)]).then(
      ({ stdout }) => {
        const [mine, parent] = stdout.trim().split('\n');
        return mine !== undefined && mine !== parent;
      },
      () => false,
    ));
  while (!(await live())) {
    if (child.exitCode !== null) throw new Error(`mount exited (${child.exitCode}): ${out}`);
    if (Date.now() > until) throw new Error(`not mounted after 20 s: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return m;
}

/** Three nodes, formatted, and one mount. */
export async function mountedCluster(t: ExecutionContext, opts: { mountArgs?: string[]; formatArgs?: string[] } = {}): Promise<{ rc: RunningCluster; mount: Mount }> {
  const rc = await startCluster(t, 3);
  const f = await runCli(['format', '--config', rc.cluster.configPath, ...(opts.formatArgs ?? [])]);
  if (f.code !== 0) throw new Error(`format failed: ${f.stderr}`);
  const mount = await mountCluster(t, rc, 'mnt', opts.mountArgs ?? []);
  return { rc, mount };
}

/** Runs a shell command (bash -c) in a child process; resolves with its output, rejects on non-zero exit. */
export async function sh(command: string, opts: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<{ stdout: string; stderr: string }> {
  return run('bash', ['-c', command], {
    cwd: opts.cwd,
    timeout: opts.timeoutMs ?? 120_000,
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, ...opts.env },
  });
}

/** Like sh, but resolves with the exit code instead of rejecting. */
export async function shCode(command: string, opts: { cwd?: string; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await sh(command, opts);
    return { code: 0, ...r };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}
