// One storage node: its stores, the RPC endpoint, /healthz and /metrics on one
// HTTP(S) server, and an orderly shutdown.
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { RpcServer } from '../rpc/server.js';
import { ChunkStore } from '../store/chunk-store.js';
import { RecordStore } from '../store/record-store.js';
import { fsyncDir, writeFileDurably } from '../store/durable-files.js';
import { QfsError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { nodeOps } from './handlers.js';
import { MembershipKeeper } from './membership-keeper.js';
import type { Membership } from '../util/membership.js';
import { CHUNK_DIGESTS, RECORD_DIGESTS, SharedDigests } from './shared-digests.js';
import { NodeMetrics } from './metrics.js';
import type { NodeStat } from '../rpc/messages.js';

export const RPC_PATH = '/rpc';

export interface StorageNodeOptions {
  nodeId: string;
  clusterName: string;
  secret: Buffer;
  dataDir: string;
  listen: { host: string; port: number };
  reserveBytes: number;
  /** Chunk files written with O_DIRECT (src/store/direct-writes.ts); default on. */
  directWrites?: boolean;
  version: string;
  log: Logger;
  tls?: { cert: Buffer; key: Buffer };
  /** How long shutdown waits for requests in flight. */
  shutdownGraceMs?: number;
}

interface Identity {
  nodeId: string;
  clusterName: string;
  createdAt: string;
}

/**
 * A data directory remembers which node of which cluster it belongs to, so a
 * config mistake (two ids on one directory, a node pointed at another cluster's
 * disk) stops at start instead of mixing data.
 */
async function claimDataDir(dir: string, nodeId: string, clusterName: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o750 });
  const file = join(dir, 'node.json');
  let existing: Identity | null = null;
  try {
    existing = JSON.parse(await readFile(file, 'utf8')) as Identity;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new QfsError('bad_request', `${file} is unreadable: ${(err as Error).message}`);
    }
  }
  if (existing) {
    if (existing.nodeId !== nodeId || existing.clusterName !== clusterName) {
      throw new QfsError(
        'bad_request',
        `${dir} belongs to node ${JSON.stringify(existing.nodeId)} of cluster ${JSON.stringify(existing.clusterName)}, not node ${JSON.stringify(nodeId)} of ${JSON.stringify(clusterName)}`,
      );
    }
    return;
  }
  const identity: Identity = { nodeId, clusterName, createdAt: new Date().toISOString() };
  await writeFileDurably(file, JSON.stringify(identity, null, 2) + '\n', 0o640);
  await fsyncDir(dirname(dir)); // a directory just created must stay named in its parent
}

export class StorageNode {
  private http: Server | null = null;
  private rpc: RpcServer | null = null;
  private records: RecordStore | null = null;
  private chunks: ChunkStore | null = null;
  private membership: MembershipKeeper | null = null;

  /** The epoch of the membership this node has learned; 0 before any (a cluster not formatted yet). */
  /** Calls `f` with every membership this node learns from now on. */
  onMembership(f: (m: Membership) => void): void {
    if (!this.membership) throw new Error('the node is not started');
    this.membership.onLearned.push(f);
  }

  get membershipEpoch(): number {
    return this.membership?.epoch ?? 0;
  }
  readonly metrics = new NodeMetrics();
  private readonly started = Date.now();
  private state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  private readonly log: Logger;

  constructor(private readonly opts: StorageNodeOptions) {
    this.log = opts.log.child({ component: 'node', node: opts.nodeId });
  }

  /** The bound address (useful when listening on port 0). */
  get address(): { host: string; port: number } {
    const a = this.http?.address();
    if (!a || typeof a === 'string') throw new Error('node is not listening');
    return { host: a.address, port: a.port };
  }

  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error(`start() in state ${this.state}`);
    const { opts } = this;
    await claimDataDir(opts.dataDir, opts.nodeId, opts.clusterName);
    this.records = await RecordStore.open(join(opts.dataDir, 'records'), this.log.child({ component: 'records' }));
    this.chunks = await ChunkStore.open(opts.dataDir, this.log.child({ component: 'chunks' }), { reserveBytes: opts.reserveBytes, directWrites: opts.directWrites ?? true });
    this.membership = await MembershipKeeper.open(opts.dataDir, this.log.child({ component: 'membership' }));
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => void this.serveHttp(req, res);
    this.http = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, onRequest) : createHttpServer(onRequest);
    // Idle HTTP keep-alive sockets must not hold shutdown open.
    this.http.keepAliveTimeout = 5000;
    const membership = this.membership;
    const recordDigests = new SharedDigests(this.records, RECORD_DIGESTS, opts.nodeId, () => membership.membership);
    const chunkDigests = new SharedDigests(this.chunks, CHUNK_DIGESTS, opts.nodeId, () => membership.membership);
    this.metrics.more.push(() => [
      { name: 'quorumfs_record_digest_builds_total', type: 'counter', help: "Walks of this node's record store made to build self-heal's bucket digests (one per membership epoch, or after a write rolled back).", value: recordDigests.builds },
      { name: 'quorumfs_chunk_digest_builds_total', type: 'counter', help: "Builds of self-heal's chunk bucket digests from the chunk ids this node keeps in memory (one per membership epoch).", value: chunkDigests.builds },
    ]);
    const stores = { nodeId: opts.nodeId, records: this.records, chunks: this.chunks, membership, recordDigests, chunkDigests, stat: () => this.stat() };
    this.rpc = new RpcServer({
      server: this.http,
      path: RPC_PATH,
      secret: opts.secret,
      clusterName: opts.clusterName,
      ops: nodeOps(stores),
      log: this.log.child({ component: 'rpc' }),
      observer: this.metrics,
    });
    // A port that is briefly taken (the old process's socket going away, or a client's outgoing connection
    // that happened to get it as its own port while nothing listened there) is tried again for a few seconds.
    const listenOnce = (): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        const http = this.http!;
        const onError = (err: NodeJS.ErrnoException): void => {
          const e = new QfsError('unavailable', `cannot listen on ${opts.listen.host}:${opts.listen.port}: ${err.code ?? err.message}`);
          (e as QfsError & { addrInUse?: boolean }).addrInUse = err.code === 'EADDRINUSE';
          reject(e);
        };
        http.once('error', onError);
        http.listen(opts.listen.port, opts.listen.host, () => {
          http.off('error', onError);
          http.on('error', (err) => this.log.error({ err }, 'http server error'));
          resolve();
        });
      });
    await (async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          return await listenOnce();
        } catch (err) {
          if (!(err as { addrInUse?: boolean }).addrInUse || attempt >= 25) throw err;
          this.log.warn({ port: opts.listen.port }, 'port in use; trying again');
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    })().catch(async (err) => {
      await this.closeStores();
      throw err;
    });
    this.state = 'running';
    const { host, port } = this.address;
    this.log.info({ host, port, dataDir: opts.dataDir, chunks: this.chunks.stats().chunks, records: this.records.count(), chunkWrites: this.chunks.directWrites().enabled ? 'direct' : 'buffered' }, 'node started');
  }

  async stat(): Promise<NodeStat> {
    if (!this.records || !this.chunks) throw new QfsError('closed', 'node is not running');
    const cap = await this.chunks.capacity();
    const cs = this.chunks.stats();
    return {
      nodeId: this.opts.nodeId,
      version: this.opts.version,
      uptimeSec: Math.floor((Date.now() - this.started) / 1000),
      totalBytes: cap.totalBytes,
      freeBytes: cap.freeBytes,
      chunks: cs.chunks,
      chunkBytes: cs.bytes,
      records: this.records.count(),
    };
  }

  private async serveHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    try {
      if (req.method !== 'GET') {
        res.writeHead(405, { allow: 'GET' }).end();
      } else if (path === '/healthz') {
        const ok = this.state === 'running';
        res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ status: ok ? 'ok' : this.state, node: this.opts.nodeId, cluster: this.opts.clusterName, version: this.opts.version }) + '\n');
      } else if (path === '/metrics') {
        const s = await this.stat();
        const body = this.metrics.render(this.opts.nodeId, this.opts.version, {
          chunks: s.chunks,
          chunkBytes: s.chunkBytes,
          records: s.records,
          recordsLost: this.records?.lostSeen ?? 0,
          diskTotalBytes: s.totalBytes,
          diskFreeBytes: s.freeBytes,
          connections: this.rpc?.connectionCount ?? 0,
          inFlight: this.rpc?.inFlight ?? 0,
        });
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(body);
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      }
    } catch (err) {
      this.log.warn({ err }, 'http request failed');
      if (!res.headersSent) res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('unavailable\n');
    }
  }

  /** Stops accepting, lets requests in flight finish (bounded), closes the stores. Idempotent. */
  async stop(): Promise<void> {
    if (this.state === 'stopping' || this.state === 'stopped') return;
    this.state = 'stopping';
    this.log.info('stopping');
    const http = this.http;
    const closed = http ? new Promise<void>((resolve) => http.close(() => resolve())) : Promise.resolve();
    await this.rpc?.close(this.opts.shutdownGraceMs ?? 5000);
    http?.closeAllConnections();
    await closed;
    await this.closeStores();
    this.state = 'stopped';
    this.log.info('stopped');
  }

  private async closeStores(): Promise<void> {
    await this.records?.close();
    await this.chunks?.close();
  }
}
