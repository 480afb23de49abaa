// Runs POSIX scenarios on a real directory through test/helpers/posix_runner.py,
// in a child process: for the local reference, and for a mounted quorumfs (the
// mounting process must never do I/O on its own mount, so the I/O happens here,
// in python, not in node).
import { spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RunnableScenario, ScenarioResult } from './posix-steps.js';

/** The runner script: not compiled, so found from dist/test/helpers/ back in the sources. */
export const POSIX_RUNNER = fileURLToPath(new URL('../../../test/helpers/posix_runner.py', import.meta.url));

export interface PythonRunOptions {
  python?: string;
  /** Kill the runner after this long (default 60 s). */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

function runPython(args: string[], input: string, opts: PythonRunOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(opts.python ?? 'python3', [POSIX_RUNNER, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      if (code === 0) resolve(stdout);
      else reject(new Error(`posix_runner.py ${args.join(' ')} exited with ${code ?? signal}: ${Buffer.concat(err).toString('utf8')}\n${stdout.slice(-2000)}`));
    });
    child.stdin.on('error', () => {}); // reported by 'close'
    child.stdin.end(input);
  });
}

/**
 * Runs the scenarios in fresh subdirectories of `root` (which must exist;
 * scenario k uses root/sNNN, which must not). One result per scenario, in order.
 */
export async function runScenariosInDir(root: string, scenarios: RunnableScenario[], opts: PythonRunOptions = {}): Promise<ScenarioResult[]> {
  const stdout = await runPython([root], JSON.stringify(scenarios), opts);
  const results = stdout
    .split('\n')
    .filter((l) => l.trim().length > 0)
    .map((l) => JSON.parse(l) as ScenarioResult);
  if (results.length !== scenarios.length) throw new Error(`posix_runner.py reported ${results.length} of ${scenarios.length} scenarios`);
  return results;
}

/** Can `dir` hold user.* extended attributes? */
export async function supportsUserXattrs(dir: string, opts: PythonRunOptions = {}): Promise<boolean> {
  const out = await runPython(['--probe', dir], '', opts);
  return (JSON.parse(out) as { xattr: boolean }).xattr;
}

/**
 * A fresh temporary directory on a local filesystem with user xattrs: the
 * system temp dir, else /var/tmp, else the parent of the repository.
 */
export async function referenceDir(prefix = 'qfs-posix-'): Promise<string> {
  const repoParent = dirname(dirname(dirname(dirname(POSIX_RUNNER))));
  const tried: string[] = [];
  for (const base of [tmpdir(), '/var/tmp', repoParent]) {
    try {
      if (await supportsUserXattrs(base)) return await mkdtemp(join(base, prefix));
      tried.push(`${base}: no user xattrs`);
    } catch (e) {
      tried.push(`${base}: ${(e as Error).message}`);
    }
  }
  throw new Error(`no local directory with user xattrs for the POSIX reference (${tried.join('; ')})`);
}
