// One `quorumfs node` process on loopback for benchmarks: a temp dir with a
// secret and a one-node cluster config, the process, and a cleanup that kills
// it and removes the dir, also when the benchmark fails or is interrupted.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NodeClient } from '../../src/rpc/node-client.js';
import { silentLogger } from '../../src/util/log.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface BenchNode {
  dir: string;
  dataDir: string;
  url: string;
  child: ChildProcess;
  client(opts?: { timeoutMs?: number }): NodeClient;
  /** SIGTERM (SIGKILL after 5 s), then removes the temp dir. Idempotent. */
  cleanup(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export async function startBenchNode(parentDir: string): Promise<BenchNode> {
  const dir = await mkdtemp(join(parentDir, 'qfs-bench-'));
  const clients: NodeClient[] = [];
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let cleaning: Promise<void> | null = null;

  // Last resort on a synchronous exit: no orphan process, no leftover dir.
  const onExit = (): void => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);

  const cleanup = (): Promise<void> => {
    cleaning ??= (async () => {
      for (const c of clients) c.close();
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child?.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
      process.off('exit', onExit);
    })();
    return cleaning;
  };

  try {
    const secret = randomBytes(32).toString('hex');
    await writeFile(join(dir, 'secret'), secret + '\n', { mode: 0o600 });
    const port = await freePort();
    const url = `ws://127.0.0.1:${port}`;
    const config = { name: 'bench', secretFile: 'secret', replication: 1, nodes: [{ id: 'n1', url, dataDir: 'n1', reserveBytes: 0 }] };
    await writeFile(join(dir, 'cluster.json'), JSON.stringify(config, null, 2));
    const proc = spawn(process.execPath, [CLI, 'node', '--config', join(dir, 'cluster.json'), '--id', 'n1', '--log-level', 'info'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    let stderr = '';
    proc.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    await new Promise<void>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error(`node did not start in 15 s: ${stderr}`)), 15_000);
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
        reject(new Error(`node exited (${code ?? signal}) before starting: ${stderr}`));
      });
    });
    const secretBuf = Buffer.from(secret);
    return {
      dir,
      dataDir: join(dir, 'n1'),
      url,
      child: proc,
      client(opts = {}) {
        const c = new NodeClient({ url: `${url}/rpc`, secret: secretBuf, clusterName: 'bench', log: silentLogger(), defaultTimeoutMs: opts.timeoutMs ?? 60_000 });
        clients.push(c);
        return c;
      },
      cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
