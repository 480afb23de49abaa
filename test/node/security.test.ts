// The node's trust boundary: nothing runs before both sides proved the cluster
// secret, a recorded handshake is worthless, oversized and mangled frames close
// only their own connection, and no request names a path outside the data dir.
import { chunkIdSync } from '../../src/util/hash.js';
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { connect, freePort, startNode, tempDir, writeCluster } from '../helpers/cluster.js';
import {
  Rand,
  RawConn,
  errorLogLines,
  fetchMetrics,
  metricValue,
  rawAuthenticate,
  requestFrame,
  rpcUrl,
  sha256,
  startSandboxedNode,
  testSeed,
  type RawSession,
} from '../helpers/raw-rpc.js';
import { NodeClient } from '../../src/rpc/node-client.js';
import { Encoder } from '../../src/util/codec.js';
import { clientProof, serverProof } from '../../src/rpc/auth.js';
import { MAX_FRAME_BYTES, decodeAuth, encodeAuth as encodeAuthFrame, decodeResponseHeader, encodeAuthOk, encodeHello, responseEncoder } from '../../src/rpc/frame.js';
import * as M from '../../src/rpc/messages.js';
import { ChunkStore } from '../../src/store/chunk-store.js';
import { MAX_CHUNK_BYTES } from '../../src/store/types.js';
import { isQfsError } from '../../src/util/errors.js';
import type { ChunkId } from '../../src/util/ids.js';
import { silentLogger } from '../../src/util/log.js';

const ballot = (counter: number, proposer = '00000000000000aa') => ({ counter, proposer });

/** Every path below `root`, relative, sorted. */
async function tree(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true });
  return entries.map((e) => relative(root, join(root, e))).sort();
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('a client with the wrong secret gets no answer; the refusal is counted; good clients are served meanwhile', async (t) => {
  const cluster = await writeCluster(t, 1, { replication: 1 });
  await startNode(t, cluster, 'n1');
  const bad = connect(t, cluster, 'n1', { secret: Buffer.from(randomBytes(32).toString('hex')) });
  const good = connect(t, cluster, 'n1');
  const data = randomBytes(4096);
  const [badPing, badPut, goodPut] = await Promise.allSettled([
    bad.ping({ timeoutMs: 1500 }),
    bad.putChunk(sha256(data), data, { timeoutMs: 1500 }),
    good.putChunk(sha256(data), data),
  ]);
  for (const r of [badPing, badPut]) {
    t.is(r.status, 'rejected');
    if (r.status === 'rejected') t.true(isQfsError(r.reason, 'unavailable') || isQfsError(r.reason, 'timeout'), String(r.reason));
  }
  t.is(goodPut.status, 'fulfilled');
  t.deepEqual(await good.getChunk(sha256(data), 0, MAX_CHUNK_BYTES), data);
  const metrics = await fetchMetrics(cluster, 'n1');
  t.true(metricValue(metrics, 'quorumfs_rpc_connection_events_total', '{event="auth_failed"}') >= 1, metrics);
  // the bad client's put never reached a handler: exactly one put ran (the good one)
  t.is(metricValue(metrics, 'quorumfs_rpc_requests_total', '{op="chunk_put",status="ok"}'), 1);
});

test('a request sent after HELLO without authenticating closes with 4001 and never runs', async (t) => {
  const cluster = await writeCluster(t, 1, { replication: 1 });
  await startNode(t, cluster, 'n1');
  const data = randomBytes(8192);
  const id = sha256(data);
  const key = Buffer.from('unauth/key');

  const conn = await RawConn.open(rpcUrl(cluster, 'n1'));
  t.teardown(() => conn.terminate());
  await conn.nextBinary(); // HELLO
  await conn.send(requestFrame(1, M.Op.ChunkPut, (e) => M.ChunkPut.encode(e, { id, bytes: data })));
  t.is((await conn.waitClose()).code, 4001);

  // also: frames sent before the HELLO was even read, several of them in one burst
  const eager = await RawConn.open(rpcUrl(cluster, 'n1'));
  t.teardown(() => eager.terminate());
  void eager.send(requestFrame(1, M.Op.RecordAccept, (e) => M.RecordAccept.encode(e, { key, ballot: ballot(1), value: { kind: 'value', bytes: Buffer.from('x') }, promiseNext: false })));
  void eager.send(requestFrame(2, M.Op.ChunkPut, (e) => M.ChunkPut.encode(e, { id, bytes: data })));
  t.is((await eager.waitClose()).code, 4001);

  const good = connect(t, cluster, 'n1');
  t.deepEqual(await good.hasChunks([id]), [false]);
  const state = await good.read(key);
  t.is(state.value.kind, 'empty');
  t.is(state.accepted.counter, 0);
  const metrics = await fetchMetrics(cluster, 'n1');
  t.true(metricValue(metrics, 'quorumfs_rpc_connection_events_total', '{event="auth_failed"}') >= 2);
  t.is(metricValue(metrics, 'quorumfs_rpc_requests_total', '{op="chunk_put",status="ok"}'), 0);
  t.is(metricValue(metrics, 'quorumfs_rpc_requests_total', '{op="record_accept",status="ok"}'), 0);
});

test('a recorded AUTH frame replayed on a new connection is refused with 4001', async (t) => {
  const cluster = await writeCluster(t, 1, { replication: 1 });
  await startNode(t, cluster, 'n1');
  const url = rpcUrl(cluster, 'n1');

  const first: RawSession = await rawAuthenticate(url, cluster.secret, cluster.name);
  t.teardown(() => first.conn.terminate());
  // the recorded session really was authenticated: a ping is answered
  await first.conn.send(requestFrame(7, M.Op.Ping));
  const pong = decodeResponseHeader(await first.conn.nextBinary());
  t.deepEqual(pong.header, { id: 7, status: 0 });

  for (let i = 0; i < 3; i++) {
    const replay = await RawConn.open(url);
    t.teardown(() => replay.terminate());
    const hello = await replay.nextBinary();
    t.false(hello.subarray(2, 34).equals(first.serverNonce), 'each connection gets a fresh server nonce');
    await replay.send(first.authFrame);
    const closed = await replay.waitClose();
    t.is(closed.code, 4001, `replay ${i}: ${closed.reason}`);
  }
  // the original session is unaffected
  await first.conn.send(requestFrame(8, M.Op.Ping));
  t.deepEqual(decodeResponseHeader(await first.conn.nextBinary()).header, { id: 8, status: 0 });
});

test('handshake variants with the right secret but the wrong context are refused with 4001; silence is closed after 5 s', async (t) => {
  const cluster = await writeCluster(t, 1, { replication: 1 });
  await startNode(t, cluster, 'n1');
  const url = rpcUrl(cluster, 'n1');
  const authWith =
    (proof: (serverNonce: Buffer, clientNonce: Buffer) => Buffer, edit: (f: Buffer) => Buffer = (f) => f) =>
    (serverNonce: Buffer): Buffer => {
      const clientNonce = randomBytes(32);
      return edit(Buffer.from(encodeAuthFrame(clientNonce, proof(serverNonce, clientNonce))));
    };
  const right = (sn: Buffer, cn: Buffer): Buffer => clientProof(cluster.secret, cluster.name, sn, cn);
  const variants: Array<[string, (serverNonce: Buffer) => Buffer]> = [
    ['protocol version 1 (before scope leases)', authWith(right, (f) => ((f[1] = 1), f))],
    ['protocol version 2 (before membership epochs)', authWith(right, (f) => ((f[1] = 2), f))],
    ['protocol version 3 (before batched accepts and learns)', authWith(right, (f) => ((f[1] = 3), f))],
    ['protocol version 4 (before puts whose check is deferred)', authWith(right, (f) => ((f[1] = 4), f))],
    ['protocol version 6', authWith(right, (f) => ((f[1] = 6), f))],
    ['AUTH one byte short', authWith(right, (f) => f.subarray(0, f.length - 1))],
    ['AUTH one byte long', authWith(right, (f) => Buffer.concat([f, Buffer.alloc(1)]))],
    ['proof for another cluster name', authWith((sn, cn) => clientProof(cluster.secret, 'other', sn, cn))],
    ['server-role proof', authWith((sn, cn) => serverProof(cluster.secret, cluster.name, sn, cn))],
    ['proof with the nonces swapped', authWith((sn, cn) => clientProof(cluster.secret, cluster.name, cn, sn))],
  ];
  // control: the same construction with nothing wrong is accepted
  const control = await RawConn.open(url);
  t.teardown(() => control.terminate());
  await control.send(authWith(right)((await control.nextBinary()).subarray(2, 34)));
  t.is((await control.nextBinary())[0], 3, 'AUTH_OK');
  await Promise.all(
    variants.map(async ([label, make]) => {
      const conn = await RawConn.open(url);
      t.teardown(() => conn.terminate());
      const hello = await conn.nextBinary();
      await conn.send(make(hello.subarray(2, 34)));
      t.is((await conn.waitClose()).code, 4001, label);
    }),
  );
  // an authenticated session that sends AUTH again is closed as a bad frame, and the node goes on
  const s = await rawAuthenticate(url, cluster.secret, cluster.name);
  t.teardown(() => s.conn.terminate());
  await s.conn.send(s.authFrame);
  t.is((await s.conn.waitClose()).code, 4002);
  // a peer that never authenticates is closed after the 5 s handshake timeout
  const silent = await RawConn.open(url);
  t.teardown(() => silent.terminate());
  const opened = Date.now();
  await silent.nextBinary();
  const closed = await silent.waitClose(9000);
  t.is(closed.code, 4003);
  t.true(Date.now() - opened >= 4500, `closed after ${Date.now() - opened} ms`);
  const good = connect(t, cluster, 'n1');
  await good.ping();
});

interface FakeServer {
  url: string;
  authFrames: number;
  requestFrames: number;
  connections: number;
}

/**
 * A server that speaks HELLO and then does `behave` instead of proving the
 * secret. Counts what clients send it: a client that authenticates the
 * server must never send it a REQUEST.
 */
async function fakeServer(
  t: import('ava').ExecutionContext,
  clusterName: string,
  behave: (ws: WebSocket, serverNonce: Buffer, auth: { nonce: Buffer; proof: Buffer } | null, fake: FakeServer) => void,
  opts: { sendHello?: boolean } = {},
): Promise<FakeServer> {
  const port = await freePort();
  const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  const fake: FakeServer = { url: `ws://127.0.0.1:${port}/rpc`, authFrames: 0, requestFrames: 0, connections: 0 };
  const sockets = new Set<WebSocket>();
  wss.on('connection', (ws) => {
    sockets.add(ws);
    ws.on('close', () => sockets.delete(ws));
    ws.on('error', () => {});
    fake.connections++;
    const nonce = randomBytes(32);
    if (opts.sendHello !== false) ws.send(encodeHello(nonce, clusterName));
    behave(ws, nonce, null, fake);
    ws.on('message', (raw) => {
      const data = raw as Buffer;
      if (data[0] === 2) {
        fake.authFrames++;
        behave(ws, nonce, decodeAuth(data), fake);
      } else if (data[0] === 4) {
        fake.requestFrames++;
      }
    });
  });
  t.teardown(async () => {
    for (const s of sockets) s.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  });
  return fake;
}

function clientFor(t: import('ava').ExecutionContext, url: string, secret: Buffer, clusterName: string): NodeClient {
  const c = new NodeClient({ url, secret, clusterName, log: silentLogger(), defaultTimeoutMs: 1500, backoffMinMs: 20, backoffMaxMs: 100 });
  t.teardown(() => c.close());
  return c;
}

test('the client authenticates the server: bogus AUTH_OK proofs never let a call through', async (t) => {
  const secret = Buffer.from(randomBytes(32).toString('hex'));
  const name = 'test';
  const answerRequests = (ws: WebSocket): void => {
    ws.on('message', (raw) => {
      const data = raw as Buffer;
      if (data[0] !== 4) return;
      const id = data.readUInt32BE(1);
      ws.send(responseEncoder({ id, status: 0 }).finish());
    });
  };
  const variants: Array<[string, Parameters<typeof fakeServer>[2], { sendHello?: boolean }?]> = [
    // as the brief describes it: HELLO, then at once an AUTH_OK the server cannot have computed
    ['random AUTH_OK right after HELLO', (ws, _n, auth) => auth === null && ws.send(encodeAuthOk(randomBytes(32)))],
    ['random AUTH_OK after AUTH', (ws, _n, auth) => auth && ws.send(encodeAuthOk(randomBytes(32)))],
    ['proof made with another secret', (ws, n, auth) => auth && ws.send(encodeAuthOk(serverProof(Buffer.from('x'.repeat(64)), name, n, auth.nonce)))],
    ['the client proof reflected back', (ws, _n, auth) => auth && ws.send(encodeAuthOk(auth.proof))],
    ['a client-role proof over the same nonces', (ws, n, auth) => auth && ws.send(encodeAuthOk(clientProof(secret, name, n, auth.nonce)))],
    ['proof for another cluster name', (ws, n, auth) => auth && ws.send(encodeAuthOk(serverProof(secret, 'other', n, auth.nonce)))],
    [
      'a RESPONSE instead of AUTH_OK',
      (ws, _n, auth) => {
        if (!auth) return;
        for (let id = 1; id <= 4; id++) ws.send(responseEncoder({ id, status: 0 }).finish());
      },
    ],
    ['AUTH_OK without a HELLO', (ws, _n, auth) => auth === null && ws.send(encodeAuthOk(randomBytes(32))), { sendHello: false }],
  ];
  await Promise.all(
    variants.map(async ([label, behave, opts]) => {
      const fake = await fakeServer(
        t,
        name,
        (ws, n, auth, f) => {
          behave(ws, n, auth, f);
          if (auth === null) answerRequests(ws);
        },
        opts,
      );
      const c = clientFor(t, fake.url, secret, name);
      const err = await t.throwsAsync(c.ping({ timeoutMs: 1200 }), undefined, label);
      t.true(isQfsError(err, 'unavailable') || isQfsError(err, 'timeout'), `${label}: ${String(err)}`);
      t.is(fake.requestFrames, 0, `${label}: the client sent a request to an unproven server`);
      t.true(fake.connections >= 1, label);
      if (opts?.sendHello !== false) t.true(fake.authFrames >= 1, `${label}: the client never reached the AUTH step`);
      c.close();
    }),
  );

  // control: the same fake server with the right proof is believed, so the checks above can fail
  const honest = await fakeServer(t, name, (ws, n, auth) => {
    if (auth) ws.send(encodeAuthOk(serverProof(secret, name, n, auth.nonce)));
    else answerRequests(ws);
  });
  const c = clientFor(t, honest.url, secret, name);
  await c.ping({ timeoutMs: 3000 });
  t.is(honest.requestFrames, 1);
});

test('a frame above MAX_FRAME_BYTES closes that connection with 1009; the node keeps serving', async (t) => {
  const cluster = await writeCluster(t, 1, { replication: 1 });
  const node = await startNode(t, cluster, 'n1');
  const url = rpcUrl(cluster, 'n1');
  const bystander = await rawAuthenticate(url, cluster.secret, cluster.name);
  t.teardown(() => bystander.conn.terminate());

  // control: a chunk of the maximum size fits in one frame and is stored
  const big = randomBytes(MAX_CHUNK_BYTES);
  const s = await rawAuthenticate(url, cluster.secret, cluster.name);
  t.teardown(() => s.conn.terminate());
  const put = requestFrame(1, M.Op.ChunkPut, (e) => M.ChunkPut.encode(e, { id: sha256(big), bytes: big }));
  t.true(put.length <= MAX_FRAME_BYTES);
  await s.conn.send(put);
  const reply = decodeResponseHeader(await s.conn.nextBinary(15_000));
  t.deepEqual(reply.header, { id: 1, status: 0 });

  // one byte over the limit
  const over = Buffer.alloc(MAX_FRAME_BYTES + 1);
  requestFrame(2, M.Op.ChunkPut).copy(over);
  void s.conn.send(over);
  t.is((await s.conn.waitClose(10_000)).code, 1009);

  // far over the limit, and before authenticating
  const pre = await RawConn.open(url);
  t.teardown(() => pre.terminate());
  await pre.nextBinary();
  void pre.send(Buffer.alloc(MAX_FRAME_BYTES * 2));
  t.is((await pre.waitClose(10_000)).code, 1009);

  t.true(isAlive(node.pid));
  await bystander.conn.send(requestFrame(3, M.Op.Ping));
  t.deepEqual(decodeResponseHeader(await bystander.conn.nextBinary()).header, { id: 3, status: 0 });
  const good = connect(t, cluster, 'n1');
  t.is(await good.verifyChunk(sha256(big)), 'ok');
  const metrics = await fetchMetrics(cluster, 'n1');
  t.is(metricValue(metrics, 'quorumfs_rpc_requests_total', '{op="chunk_put",status="ok"}'), 1);
});

// ---- fuzzing

/** Valid request bodies for every op, as seeds for mutation. */
function validFrames(r: Rand, storedId: ChunkId): Buffer[] {
  const id = () => r.int(0xffff);
  const key = () => Buffer.from(`fuzz/${r.int(50)}`);
  const data = r.bytes(r.range(0, 2048));
  const b = () => ballot(r.range(0, 1000), r.hex(8));
  return [
    requestFrame(id(), M.Op.Ping),
    requestFrame(id(), M.Op.Stat),
    requestFrame(id(), M.Op.RecordPrepare, (e) => M.RecordPrepare.encode(e, { key: key(), ballot: b() })),
    requestFrame(id(), M.Op.RecordAccept, (e) =>
      M.RecordAccept.encode(e, { key: key(), ballot: b(), value: r.pick([{ kind: 'value', bytes: r.bytes(r.int(300)) }, { kind: 'tombstone', bytes: Buffer.alloc(0) }, { kind: 'empty' }] as const), promiseNext: r.next() < 0.5 }),
    ),
    requestFrame(id(), M.Op.RecordRead, (e) => M.RecordRead.encode(e, { key: key() })),
    // scope leases: a scoped prepare, accept and read (a lease record that may not exist), a settling scan, a learn
    requestFrame(id(), M.Op.RecordPrepare, (e) => M.RecordPrepare.encode(e, { key: key(), ballot: b(), scope: { lease: key(), term: r.int(3), session: r.hex(4) } })),
    requestFrame(id(), M.Op.RecordAccept, (e) =>
      M.RecordAccept.encode(e, { key: key(), ballot: b(), value: { kind: 'value', bytes: r.bytes(r.int(64)) }, promiseNext: false, scope: { lease: key(), term: r.int(3), session: r.hex(4) } }),
    ),
    requestFrame(id(), M.Op.RecordRead, (e) => M.RecordRead.encode(e, { key: key(), scope: { lease: key(), term: 0, session: 's' } })),
    requestFrame(id(), M.Op.RecordScan, (e) => M.RecordScan.encode(e, { start: Buffer.from('fuzz/'), end: null, limit: 10, scope: { lease: key(), term: r.int(2), session: 's', settling: true } })),
    requestFrame(id(), M.Op.RecordLearn, (e) => M.RecordLearn.encode(e, { key: key(), ballot: b() })),
    requestFrame(id(), M.Op.RecordScan, (e) => M.RecordScan.encode(e, { start: Buffer.from('fuzz/'), end: r.next() < 0.5 ? null : Buffer.from('fuzz0'), limit: r.range(1, 100) })),
    requestFrame(id(), M.Op.RecordPurge, (e) => M.RecordPurge.encode(e, { key: key(), ballot: b() })),
    requestFrame(id(), M.Op.ChunkPut, (e) => M.ChunkPut.encode(e, { id: sha256(data), bytes: data })),
    requestFrame(id(), M.Op.ChunkGet, (e) => M.ChunkGet.encode(e, { id: storedId, offset: r.int(100), length: r.int(5000) })),
    requestFrame(id(), M.Op.ChunkHas, (e) => M.ChunkIdList.encode(e, [storedId, sha256(data)])),
    requestFrame(id(), M.Op.ChunkList, (e) => M.ChunkList.encode(e, { after: r.next() < 0.5 ? null : storedId, limit: r.range(1, 50) })),
    requestFrame(id(), M.Op.ChunkDelete, (e) => M.ChunkIdRequest.encode(e, sha256(data))),
    requestFrame(id(), M.Op.ChunkVerify, (e) => M.ChunkIdRequest.encode(e, storedId)),
  ];
}

const INTERESTING_U32 = [0, 1, 2, 31, 32, 33, 0x7f, 0xff, 0x100, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

function mutate(r: Rand, frame: Buffer): { frame: Buffer; how: string } {
  const f = Buffer.from(frame);
  switch (r.int(8)) {
    case 0: {
      const n = r.range(1, 8);
      for (let i = 0; i < n; i++) f[r.int(f.length)]! ^= 1 << r.int(8);
      return { frame: f, how: `flip ${n} bits` };
    }
    case 1: {
      const len = r.int(f.length);
      return { frame: f.subarray(0, len), how: `truncate to ${len}` };
    }
    case 2: {
      const extra = r.bytes(r.range(1, 64));
      return { frame: Buffer.concat([f, extra]), how: `extend by ${extra.length}` };
    }
    case 3: {
      const op = r.int(256);
      if (f.length > 5) f[5] = op;
      return { frame: f, how: `op ${op}` };
    }
    case 4: {
      // a length or count field (or anything else) overwritten with a boundary value
      if (f.length < 14) return { frame: f, how: 'short, unchanged' };
      const at = r.range(10, f.length - 4);
      const v = r.pick(INTERESTING_U32);
      f.writeUInt32BE(v, at);
      return { frame: f, how: `u32 ${v} at ${at}` };
    }
    case 5: {
      if (f.length < 12) return { frame: f, how: 'short, unchanged' };
      const at = r.range(10, f.length - 2);
      const v = r.pick([0, 1, 0x7fff, 0x8000, 0xffff]);
      f.writeUInt16BE(v, at);
      return { frame: f, how: `u16 ${v} at ${at}` };
    }
    case 6: {
      if (f.length >= 10) f.writeUInt32BE(r.pick([0, 1, 0xffffffff]), 6);
      return { frame: f, how: 'deadline' };
    }
    default: {
      const type = r.pick([0, 1, 2, 3, 5, 6, 255]);
      f[0] = type;
      return { frame: f, how: `frame type ${type}` };
    }
  }
}

const PROBE_BASE = 0xfff00000;
// 1006 (the socket dropped without a close frame) and 1011 (internal error) are not among these.
const ALLOWED_CLOSE = new Set([4001, 4002, 1009, 1002, 1007]);

test('thousands of random and mangled frames: the node stays up, serves good clients, writes only in its data dir', async (t) => {
  t.timeout(100_000);
  const seed = testSeed();
  t.log(`seed ${seed} (QFS_SEED=${seed} replays it)`);
  const cluster = await writeCluster(t, 1, { replication: 1 });
  const dataDir = cluster.nodes[0]!.dataDir;
  const node = await startSandboxedNode(t, cluster, 'n1');
  const url = rpcUrl(cluster, 'n1');
  const outsideBefore = (await tree(cluster.dir)).filter((p) => !p.startsWith('n1'));

  const good = connect(t, cluster, 'n1');
  const stored = randomBytes(10_000);
  const storedId = sha256(stored);
  await good.putChunk(storedId, stored);

  const TOTAL = 3000;
  let sent = 0;
  const closeCodes = new Map<number, number>();
  const problems: string[] = [];
  let survived = 0;
  let goodOps = 0;
  let fuzzing = true;

  // a well-behaved client keeps working all along
  const goodLoop = (async () => {
    const r = new Rand(seed ^ 0x5eed);
    while (fuzzing) {
      const d = r.bytes(r.range(1, 50_000));
      await good.putChunk(sha256(d), d);
      const back = await good.getChunk(sha256(d), 0, MAX_CHUNK_BYTES);
      if (!back.equals(d)) problems.push('good client read different bytes');
      goodOps++;
    }
  })().catch((err: unknown) => {
    problems.push(`good client failed during the fuzz: ${String(err)}`);
  });

  const worker = async (w: number): Promise<void> => {
    const r = new Rand((seed + w * 0x9e3779b9) >>> 0);
    let session: RawSession | null = null;
    let probe = PROBE_BASE + w * 0x10000;
    while (sent < TOTAL) {
      const n = sent++;
      const kind = r.int(100);
      let frame: Buffer | string;
      let how: string;
      if (kind < 25) {
        frame = r.bytes(r.range(0, 200));
        how = 'random bytes';
      } else if (kind < 30) {
        frame = r.pick(['hello', '', '{"op":"chunk_put","id":"../../etc/passwd"}', '\u0004'.repeat(r.int(40))]);
        how = 'text frame';
      } else if (kind < 35) {
        // a valid request sent twice in a row with the same id
        frame = r.pick(validFrames(r, storedId));
        how = 'duplicate';
      } else {
        ({ frame, how } = mutate(r, r.pick(validFrames(r, storedId))));
      }
      const preAuth = r.int(10) === 0;
      let conn: RawConn;
      if (preAuth) {
        conn = await RawConn.open(url);
        await conn.nextBinary(); // HELLO
      } else {
        if (!session || !session.conn.isOpen) session = await rawAuthenticate(url, cluster.secret, cluster.name);
        conn = session.conn;
      }
      const what = `seed ${seed} worker ${w} frame ${n} (${how}${preAuth ? ', before auth' : ''}): ${typeof frame === 'string' ? JSON.stringify(frame) : frame.subarray(0, 48).toString('hex')}`;
      void conn.send(frame);
      if (how === 'duplicate') void conn.send(frame as Buffer);
      if (preAuth) {
        const c = await conn.waitClose(8000).catch((e: Error) => ({ code: -1, reason: e.message }));
        closeCodes.set(c.code, (closeCodes.get(c.code) ?? 0) + 1);
        if (c.code !== 4001 && c.code !== 4002) problems.push(`${what}: closed with ${c.code} ${c.reason}`);
        conn.terminate();
        continue;
      }
      // probe: a ping behind the fuzz frame tells whether the connection survived it
      const probeId = probe++;
      void conn.send(requestFrame(probeId, M.Op.Ping));
      for (;;) {
        let m: Buffer | string;
        try {
          m = await conn.next(8000);
        } catch {
          const c = conn.closeInfo;
          if (!c) {
            problems.push(`${what}: no answer to the probe and no close within 8 s`);
            conn.terminate();
          } else {
            closeCodes.set(c.code, (closeCodes.get(c.code) ?? 0) + 1);
            if (!ALLOWED_CLOSE.has(c.code)) problems.push(`${what}: closed with ${c.code} ${c.reason}`);
          }
          session = null;
          break;
        }
        if (typeof m === 'string' || m[0] !== 5) {
          problems.push(`${what}: node sent an unexpected frame ${String(m).slice(0, 40)}`);
          continue;
        }
        const { header, body } = decodeResponseHeader(m);
        if (header.id === probeId) {
          if (header.status !== 0) problems.push(`${what}: probe answered status ${header.status}`);
          survived++;
          break;
        }
        if (header.status !== 0) {
          // an op error: must carry a readable message, never an internal failure
          const msg = body.str(1024, 'message');
          if (header.status === 11) problems.push(`${what}: internal error ${msg}`);
        }
      }
    }
    if (session) session.conn.terminate();
  };
  const started = Date.now();
  await Promise.all([0, 1, 2, 3].map((w) => worker(w)));
  fuzzing = false;
  await goodLoop;
  t.log(`${TOTAL} frames in ${Date.now() - started} ms; ${survived} left the connection open; close codes ${JSON.stringify([...closeCodes])}; ${goodOps} good put+get meanwhile`);

  t.deepEqual(problems.slice(0, 20), [], `seed ${seed}: ${problems.length} problems`);
  t.true(isAlive(node.pid), `seed ${seed}: node process gone`);
  t.is(node.child.exitCode, null);
  t.is(node.child.signalCode, null);
  t.true(goodOps >= 1);
  // the node still serves
  const after = randomBytes(100_000);
  t.is(await good.putChunk(sha256(after), after), 'stored');
  t.deepEqual(await good.getChunk(sha256(after), 0, MAX_CHUNK_BYTES), after);
  // (the fuzz may have deleted storedId: an op byte mutated into chunk_delete is a valid request)
  t.is(await good.verifyChunk(sha256(after)), 'ok');
  const health = await fetch(`${url.replace(/^ws/, 'http').replace(/\/rpc$/, '')}/healthz`);
  t.is(health.status, 200);
  const metrics = await fetchMetrics(cluster, 'n1');
  t.true(metricValue(metrics, 'quorumfs_rpc_connection_events_total', '{event="bad_frame"}') >= 500, `seed ${seed}: the fuzz barely reached the decoder`);
  t.true(metricValue(metrics, 'quorumfs_rpc_connection_events_total', '{event="auth_failed"}') >= 100);
  t.deepEqual(errorLogLines(node.logs).slice(0, 5), [], `seed ${seed}: the node logged errors`);

  // nothing outside the data dir: the cluster dir is as it was, the process's cwd and TMPDIR are empty
  const outsideAfter = (await tree(cluster.dir)).filter((p) => !p.startsWith('n1'));
  t.deepEqual(outsideAfter, outsideBefore, `seed ${seed}`);
  t.deepEqual(await readdir(node.cwd), [], `seed ${seed}: files in the node's cwd`);
  t.deepEqual(await readdir(node.tmp), [], `seed ${seed}: files in the node's TMPDIR`);
  // and inside it only the store's own layout
  const top = (await readdir(dataDir)).sort();
  t.deepEqual(
    top.filter((n) => !['chunks', 'node.json', 'quarantine', 'records', 'tmp'].includes(n)),
    [],
    `seed ${seed}: unexpected entries in the data dir`,
  );
  for (const p of await tree(join(dataDir, 'chunks'))) {
    const parts = p.split('/');
    const ok =
      (parts.length === 1 && /^[0-9a-f]{2}$/.test(parts[0]!)) ||
      (parts.length === 2 && /^[0-9a-f]{2}$/.test(parts[1]!)) ||
      (parts.length === 3 && /^[0-9a-f]{64}$/.test(parts[2]!) && parts[2]!.startsWith(parts[0]! + parts[1]!));
    t.true(ok, `seed ${seed}: unexpected chunk path ${p}`);
  }
});

// ---- chunk ids at the store level

test('the chunk store refuses path-like and malformed ids with bad_request and creates no file', async (t) => {
  const root = await tempDir(t);
  const dir = join(root, 'a', 'b', 'store');
  await mkdir(dir, { recursive: true });
  const store = await ChunkStore.open(dir, silentLogger(), { reserveBytes: 0 });
  t.teardown(() => store.close());
  const data = Buffer.from('payload');
  const valid = chunkIdSync(data);
  const before = await tree(root);
  const passwdBefore = await readFile('/etc/passwd').catch(() => null);

  const bad: unknown[] = [
    '../../etc/passwd',
    '../../../../../../../../etc/passwd',
    '..%2f..',
    '..%2f..%2f..%2fetc%2fpasswd',
    '/etc/passwd',
    valid.toUpperCase(),
    valid.slice(0, 32) + valid.slice(32).toUpperCase(),
    valid.slice(0, 63),
    valid + '0',
    valid.slice(0, 63) + '\0',
    valid.slice(0, 32) + '\0' + valid.slice(33),
    valid + '\0',
    valid + '\n',
    '\n' + valid.slice(1),
    valid.slice(0, 62) + '/.',
    valid.slice(0, 2) + '/' + valid.slice(3),
    '..' + valid.slice(2),
    '',
    'g'.repeat(64),
    valid.replace(/[0-9]/, '٣'), // a non-ASCII digit
    ` ${valid.slice(1)}`,
    123,
    null,
    undefined,
    Buffer.from(valid, 'hex'),
    { toString: () => valid },
  ];
  for (const id of bad) {
    const label = JSON.stringify(String(id));
    const ops: Array<[string, () => Promise<unknown>]> = [
      ['put', () => store.put(id as ChunkId, data)],
      ['get', () => store.get(id as ChunkId)],
      ['has', () => store.has([id as ChunkId])],
      ['delete', () => store.delete(id as ChunkId)],
      ['verify', () => store.verify(id as ChunkId)],
    ];
    // null is list's one valid "from the start"
    if (id !== null) ops.push(['list', () => store.list(id as ChunkId, 10)]);
    for (const [op, run] of ops) {
      let err: unknown = null;
      try {
        await run();
      } catch (e) {
        err = e;
      }
      t.true(isQfsError(err, 'bad_request'), `${op} ${label}: ${String(err)}`);
    }
  }
  // list(null) is the one valid "no id"; a good id still works afterwards
  t.deepEqual(await store.list(null, 10), []);
  t.is(await store.put(valid as ChunkId, data), 'stored');
  t.deepEqual(await store.get(valid as ChunkId), data);

  const after = await tree(root);
  const added = after.filter((p) => !before.includes(p));
  t.deepEqual(
    added,
    [`a/b/store/chunks/${valid.slice(0, 2)}`, `a/b/store/chunks/${valid.slice(0, 2)}/${valid.slice(2, 4)}`, `a/b/store/chunks/${valid.slice(0, 2)}/${valid.slice(2, 4)}/${valid}`],
    'only the one valid chunk was written',
  );
  for (const p of ['etc', 'a/etc', 'a/b/etc', 'a/b/store/etc']) await t.throwsAsync(stat(join(root, p)), undefined, p);
  t.deepEqual(await readFile('/etc/passwd').catch(() => null), passwdBefore);

  // over the wire a path-like id cannot even be encoded: ids travel as 32 raw bytes
  for (const id of ['../../etc/passwd', valid.toUpperCase(), valid.slice(0, 63)]) {
    t.true(isQfsError(t.throws(() => M.ChunkPut.encode(new Encoder(), { id: id as ChunkId, bytes: data })), 'bad_request'), id);
  }
});
