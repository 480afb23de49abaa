// Speaking the node's wire protocol by hand, for tests that must send what a
// well-behaved client never would: frames before authentication, replayed
// handshakes, oversized or mangled frames. Also a seeded PRNG, a node starter
// that sandboxes the process's cwd and TMPDIR, and /metrics parsing.
import { chunkIdSync } from '../../src/util/hash.js';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { WebSocket } from 'ws';
import { Encoder } from '../../src/util/codec.js';
import { clientProof, newNonce, proofsEqual, serverProof } from '../../src/rpc/auth.js';
import { decodeAuthOk, decodeHello, encodeAuth, requestEncoder } from '../../src/rpc/frame.js';
import type { ChunkId } from '../../src/util/ids.js';
import { CLI, type NodeProcess, type TestCluster } from './cluster.js';

// ---- randomness

/** mulberry32: small, fast, seeded; good enough to pick test inputs reproducibly. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seed from QFS_SEED when set (to replay a failure), else a fresh random one. */
export function testSeed(): number {
  const env = process.env['QFS_SEED'];
  if (env !== undefined && env !== '') return Number(env) >>> 0;
  return Math.floor(Math.random() * 0x1_0000_0000) >>> 0;
}

export class Rand {
  readonly next: () => number;
  constructor(readonly seed: number) {
    this.next = prng(seed);
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)] as T;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) b.writeUInt32LE((this.next() * 0x1_0000_0000) >>> 0, i);
    for (; i < n; i++) b[i] = this.int(256);
    return b;
  }
  hex(bytes: number): string {
    return this.bytes(bytes).toString('hex');
  }
}

/** The chunk id of `buf` (the name is older than hash-tree ids). */
export function sha256(buf: Buffer): ChunkId {
  return chunkIdSync(buf) as ChunkId;
}

// ---- a raw WebSocket connection

export interface CloseInfo {
  code: number;
  reason: string;
}

/** One WebSocket whose messages are queued for the test to take one by one. */
export class RawConn {
  private readonly queue: Array<Buffer | string> = [];
  private readonly takers: Array<{ resolve(m: Buffer | string): void; reject(e: Error): void }> = [];
  closeInfo: CloseInfo | null = null;
  readonly closed: Promise<CloseInfo>;
  errors: string[] = [];

  private constructor(readonly ws: WebSocket) {
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        for (const t of this.takers.splice(0)) t.reject(new Error(`connection closed (${code} ${reason.toString()})`));
        resolve(this.closeInfo);
      });
    });
    ws.on('error', (err) => this.errors.push(err.message));
    ws.on('message', (data, isBinary) => {
      const m = isBinary ? Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data as Buffer)]) : data.toString();
      const taker = this.takers.shift();
      if (taker) taker.resolve(m);
      else this.queue.push(m);
    });
  }

  static open(url: string): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024, handshakeTimeout: 5000 });
      const conn = new RawConn(ws);
      ws.once('open', () => resolve(conn));
      ws.once('error', (err) => reject(err));
      ws.once('close', (code) => reject(new Error(`closed before open (${code})`)));
    });
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** The next message, or a rejection when the connection closes or `timeoutMs` passes first. */
  next(timeoutMs = 5000): Promise<Buffer | string> {
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.closeInfo) return Promise.reject(new Error(`connection closed (${this.closeInfo.code} ${this.closeInfo.reason})`));
    return new Promise((resolve, reject) => {
      const taker = {
        resolve: (m: Buffer | string) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        const i = this.takers.indexOf(taker);
        if (i >= 0) this.takers.splice(i, 1);
        reject(new Error(`no message within ${timeoutMs} ms`));
      }, timeoutMs);
      this.takers.push(taker);
    });
  }

  async nextBinary(timeoutMs = 5000): Promise<Buffer> {
    const m = await this.next(timeoutMs);
    if (typeof m === 'string') throw new Error(`expected a binary message, got text ${JSON.stringify(m.slice(0, 80))}`);
    return m;
  }

  send(data: Buffer | string): Promise<void> {
    return new Promise((resolve) => {
      if (this.ws.readyState !== WebSocket.OPEN) return resolve();
      // An error here is a send on a connection the node just closed: the close is what tests look at.
      this.ws.send(data, { binary: typeof data !== 'string' }, () => resolve());
    });
  }

  /** Waits for the close, failing after `timeoutMs`. */
  async waitClose(timeoutMs = 5000): Promise<CloseInfo> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`connection still open after ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([this.closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  terminate(): void {
    this.ws.terminate();
  }
}

export interface RawSession {
  conn: RawConn;
  serverNonce: Buffer;
  clientNonce: Buffer;
  /** The exact AUTH frame this session sent. */
  authFrame: Buffer;
}

/** Opens a connection and runs the client side of the handshake by hand, checking the server's proof. */
export async function rawAuthenticate(url: string, secret: Buffer, clusterName: string): Promise<RawSession> {
  const conn = await RawConn.open(url);
  try {
    const hello = decodeHello(await conn.nextBinary());
    const clientNonce = newNonce();
    const authFrame = encodeAuth(clientNonce, clientProof(secret, clusterName, hello.nonce, clientNonce));
    await conn.send(authFrame);
    const { proof } = decodeAuthOk(await conn.nextBinary());
    if (!proofsEqual(proof, serverProof(secret, clusterName, hello.nonce, clientNonce))) throw new Error('node sent a wrong server proof');
    return { conn, serverNonce: hello.nonce, clientNonce, authFrame: Buffer.from(authFrame) };
  } catch (err) {
    conn.terminate();
    throw err;
  }
}

/** A complete REQUEST frame. */
export function requestFrame(id: number, op: number, write: (e: Encoder) => void = () => {}, deadlineMs = 10_000, epoch = 0): Buffer {
  const e = requestEncoder({ id, op, deadlineMs, epoch });
  write(e);
  return Buffer.from(e.finish());
}

export function rpcUrl(cluster: TestCluster, id: string): string {
  return `${cluster.nodes.find((n) => n.id === id)!.url}/rpc`;
}

export function httpBase(cluster: TestCluster, id: string): string {
  return cluster.nodes.find((n) => n.id === id)!.url.replace(/^ws/, 'http');
}

// ---- /metrics

export async function fetchMetrics(cluster: TestCluster, id: string): Promise<string> {
  const res = await fetch(`${httpBase(cluster, id)}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return res.text();
}

/** The value of one series (exact label text, e.g. `{event="auth_failed"}`), 0 when absent. */
export function metricValue(text: string, name: string, labels = ''): number {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}${labels} `)) return Number(line.slice(name.length + labels.length + 1));
  }
  return 0;
}

// ---- a node process with its own cwd and TMPDIR

/**
 * Like startNode, but the process runs with `cwd` and TMPDIR set to fresh
 * directories inside the cluster dir, so a test can see whether the node
 * wrote anything through a relative path or a temp file outside its data dir.
 */
export async function startSandboxedNode(
  t: ExecutionContext,
  cluster: TestCluster,
  id: string,
): Promise<NodeProcess & { cwd: string; tmp: string }> {
  const cwd = join(cluster.dir, `cwd-${id}`);
  const tmp = join(cluster.dir, `tmp-${id}`);
  await mkdir(cwd, { recursive: true });
  await mkdir(tmp, { recursive: true });
  const child = spawn(process.execPath, [CLI, 'node', '--config', cluster.configPath, '--id', id], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TMPDIR: tmp, QUORUMFS_LOG_LEVEL: 'info' },
  });
  const logs: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const proc = {
    id,
    pid: child.pid!,
    child,
    logs,
    exited,
    cwd,
    tmp,
    kill(signal: NodeJS.Signals = 'SIGKILL') {
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

/** pino levels: 50 error, 60 fatal. */
export function errorLogLines(logs: readonly string[]): string[] {
  return logs.filter((l) => {
    try {
      return (JSON.parse(l) as { level?: number }).level! >= 50;
    } catch {
      return true; // anything that is not a pino line on stdout is unexpected too
    }
  });
}
