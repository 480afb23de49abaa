// Test helpers that start real node processes on loopback. Every helper
// registers its own teardown, so a failing test leaves no process or directory.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { NodeClient } from '../../src/rpc/node-client.js';
import { silentLogger } from '../../src/util/log.js';

export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export async function tempDir(t: ExecutionContext, prefix = 'qfs-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * A loopback port nothing listens on, below the kernel's ephemeral range when
 * there is room: a node that a test stops and starts again on its port must
 * find it free, and a port in the ephemeral range can meanwhile become the
 * local end of any outgoing connection on the machine (a restart failed with
 * EADDRINUSE that way).
 */
export async function freePort(): Promise<number> {
  const low = ephemeralLow();
  for (let attempt = 0; low > 12_000 && attempt < 50; attempt++) {
    const port = 10_000 + Math.floor(Math.random() * (low - 10_000));
    const got = await listenOnce(port).catch(() => 0);
    if (got) return got;
  }
  return listenOnce(0);
}

function ephemeralLow(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 0;
  } catch {
    return 0;
  }
}

function listenOnce(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => {
      const addr = srv.address();
      const got = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(got));
    });
  });
}

export interface TestCluster {
  dir: string;
  configPath: string;
  secret: Buffer;
  name: string;
  nodes: Array<{ id: string; url: string; dataDir: string; port: number }>;
}

/** Writes a secret and a cluster config for `count` nodes on free loopback ports. */
export async function writeCluster(
  t: ExecutionContext,
  count: number,
  extra: Record<string, unknown> = {},
): Promise<TestCluster> {
  const dir = await tempDir(t);
  const secretText = randomBytes(32).toString('hex');
  await writeFile(join(dir, 'secret'), secretText + '\n', { mode: 0o600 });
  const nodes = [];
  const taken = new Set<number>();
  for (let i = 1; i <= count; i++) {
    let port = await freePort();
    // the kernel may hand a just-freed port out again
    while (taken.has(port)) port = await freePort();
    taken.add(port);
    nodes.push({ id: `n${i}`, url: `ws://127.0.0.1:${port}`, dataDir: join(dir, `n${i}`), port });
  }
  const name = 'test';
  const config = {
    name,
    secretFile: 'secret',
    replication: Math.min(3, count),
    nodes: nodes.map(({ id, url }) => ({ id, url, dataDir: id, reserveBytes: 0 })),
    // The shortest tombstone grace the default request timeout allows: gc and
    // repair runs that found deletes wait it out before purging them.
    timeouts: { requestMs: 5000, connectMs: 3000, tombstoneGraceMs: 6000 },
    ...extra,
  };
  const configPath = join(dir, 'cluster.json');
  await writeFile(configPath, JSON.stringify(config, null, 2));
  return { dir, configPath, secret: Buffer.from(secretText), name, nodes };
}

export interface NodeProcess {
  id: string;
  pid: number;
  child: ChildProcess;
  /** Lines the node logged (pino JSON), for assertions. */
  logs: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM and wait for the exit. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `quorumfs node` and resolves once it logged "node started". */
export async function startNode(t: ExecutionContext, cluster: TestCluster, id: string, args: string[] = []): Promise<NodeProcess> {
  const child = spawn(process.execPath, [CLI, 'node', '--config', cluster.configPath, '--id', id, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, QUORUMFS_LOG_LEVEL: process.env['QUORUMFS_LOG_LEVEL'] ?? 'info' },
  });
  const logs: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const proc: NodeProcess = {
    id,
    pid: child.pid!,
    child,
    logs,
    exited,
    kill(signal = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    async stop() {
      proc.kill('SIGTERM');
      return exited;
    },
  };
  t.teardown(async () => {
    proc.kill('SIGKILL');
    await exited;
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`node ${id} did not start in 15 s: ${stderr}`)), 15_000);
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      buf += s;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        logs.push(line);
        if (line.includes('"node started"')) {
          clearTimeout(timer);
          resolve();
        }
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`node ${id} exited (${code ?? signal}) before starting: ${stderr}`));
    });
  });
  return proc;
}

export function connect(t: ExecutionContext, cluster: TestCluster, id: string, opts: { secret?: Buffer; timeoutMs?: number } = {}): NodeClient {
  const node = cluster.nodes.find((n) => n.id === id)!;
  const client = new NodeClient({
    url: `${node.url}/rpc`,
    secret: opts.secret ?? cluster.secret,
    clusterName: cluster.name,
    log: silentLogger(),
    defaultTimeoutMs: opts.timeoutMs ?? 5000,
    backoffMinMs: 20,
    backoffMaxMs: 200,
  });
  t.teardown(() => client.close());
  return client;
}

/** Runs the CLI to completion and returns its exit code and output. */
export async function runCli(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  // 'close', not 'exit': only then has all of the child's output been read.
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}
