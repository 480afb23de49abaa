// Shared fixtures for the FUSE end-to-end tests: a cluster with its mounts,
// started once for a group of serial tests and torn down before the next group
// (or at the end of the file), plus small shell helpers.
//
// The mount helpers take an ExecutionContext only to register teardowns, and
// ava forbids t.teardown() in hooks; a Scope stands in for it and runs the
// collected teardowns itself (last registered first: unmount, then the nodes,
// then the directory).
import type { ExecutionContext } from 'ava';
import { sh } from './mount.js';

type Teardown = () => unknown;

export class Scope {
  private readonly fns: Teardown[] = [];
  readonly t = {
    teardown: (fn: Teardown): void => {
      this.fns.push(fn);
    },
  } as unknown as ExecutionContext;

  async close(): Promise<void> {
    for (let fn = this.fns.pop(); fn !== undefined; fn = this.fns.pop()) {
      try {
        await fn();
      } catch {
        // keep tearing down the rest
      }
    }
  }
}

/** At most one live fixture: asking for another closes the current one first. */
export class Fixtures {
  private current: { key: string; scope: Scope; value: unknown } | null = null;

  async use<T>(key: string, make: (t: ExecutionContext) => Promise<T>): Promise<T> {
    if (this.current?.key === key) return this.current.value as T;
    await this.close();
    const scope = new Scope();
    try {
      const value = await make(scope.t);
      this.current = { key, scope, value };
      return value;
    } catch (err) {
      await scope.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    const c = this.current;
    this.current = null;
    if (c) await c.scope.close();
  }
}

export interface ShResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** bash -c in a child process; resolves with the exit code instead of rejecting. `env` adds variables. */
export async function run(command: string, opts: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {}): Promise<ShResult> {
  try {
    const r = await sh(command, { ...(opts.env ? { env: opts.env } : {}), ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}), ...(opts.cwd ? { cwd: opts.cwd } : {}) });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string; message?: string; killed?: boolean; signal?: string | null };
    // A command killed at its timeout says so (its own output is often empty then).
    const killed = e.killed || e.signal ? `\n[killed by ${e.signal ?? 'a signal'}${opts.timeoutMs !== undefined ? `: timeout of ${opts.timeoutMs} ms` : ''}]` : '';
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: (e.stderr ?? e.message ?? '') + killed };
  }
}

/** Like run, but rejects (with the output) on a non-zero exit. */
export async function must(command: string, opts: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {}): Promise<string> {
  const r = await run(command, opts);
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${command}\nstdout: ${r.stdout.slice(-2000)}\nstderr: ${r.stderr.slice(-2000)}`);
  return r.stdout;
}

/** Runs a python3 script (given as text) with arguments, in a child process. */
export async function python(script: string, args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<ShResult> {
  return run(`python3 -c "$QFS_PY" ${args.map(quote).join(' ')}`, { env: { QFS_PY: script }, ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) });
}

/** Single-quotes a string for bash. */
export function quote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A command run as uid/gid 65534 with no supplementary groups. */
export function asNobody(command: string): string {
  return `setpriv --reuid=65534 --regid=65534 --clear-groups bash -c ${quote(command)}`;
}
