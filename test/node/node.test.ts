// One real node process on loopback, driven over the wire.
import { chunkIdSync, chunkTree } from '../../src/util/hash.js';
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect, runCli, startNode, writeCluster } from '../helpers/cluster.js';
import { isQfsError } from '../../src/util/errors.js';
import type { ChunkId } from '../../src/util/ids.js';

const b = (counter: number, proposer = '00000000000000aa') => ({ counter, proposer });
const sha = (buf: Buffer) => chunkIdSync(buf) as ChunkId;

test('records: acceptor rules over the wire, and state survives a restart', async (t) => {
  const cluster = await writeCluster(t, 1, { replication: 1 });
  const node = await startNode(t, cluster, 'n1');
  const c = connect(t, cluster, 'n1');
  const key = Buffer.from('inode/7');
  t.true((await c.prepare(key, b(5))).ok);
  const refused = await c.prepare(key, b(4));
  t.false(refused.ok);
  t.deepEqual(refused.state.promised, b(5));
  t.false((await c.accept(key, b(3), { kind: 'value', bytes: Buffer.from('old') })).ok);
  t.true((await c.accept(key, b(5), { kind: 'value', bytes: Buffer.from('v5') })).ok);
  const p = await c.prepare(key, b(6));
  t.true(p.ok);
  t.deepEqual(p.state.value, { kind: 'value', bytes: Buffer.from('v5') });
  await c.accept(Buffer.from('inode/8'), b(1), { kind: 'tombstone', bytes: Buffer.alloc(0) });
  const scan = await c.scan(Buffer.from('inode/'), Buffer.from('inode0'), 10);
  t.deepEqual(scan.entries.map((e) => e.key.toString()), ['inode/7', 'inode/8']);

  const stopped = await node.stop();
  t.is(stopped.code, 0, 'SIGTERM exits 0');
  await startNode(t, cluster, 'n1');
  const after = await c.read(key); // the same client reconnects by itself
  t.deepEqual(after.promised, b(6));
  t.deepEqual(after.accepted, b(5));
  t.deepEqual(after.value, { kind: 'value', bytes: Buffer.from('v5') });
});

test('chunks: many concurrent 1 MiB puts (their frames written into reused buffers) all arrive intact', async (t) => {
  const cluster = await writeCluster(t, 1, { replication: 1 });
  await startNode(t, cluster, 'n1');
  // A generous deadline: twelve 1 MiB puts and syncs at once on a disk other tests keep busy took over 5 s in loaded suite runs.
  const c = connect(t, cluster, 'n1', { timeoutMs: 30_000 });
  for (let round = 0; round < 3; round++) {
    const chunks = Array.from({ length: 12 }, () => randomBytes(1024 * 1024));
    // the node checks every chunk against its id: a frame reused before it was written would be refused as corrupt
    t.deepEqual(await Promise.all(chunks.map((d) => c.putChunk(sha(d), d))), chunks.map(() => 'stored'));
    for (const d of chunks) t.true((await c.getChunk(sha(d))).equals(d));
  }
});

test('chunks: put verifies the hash, get ranges, has/list/delete/verify', async (t) => {
  const cluster = await writeCluster(t, 1, { replication: 1 });
  await startNode(t, cluster, 'n1');
  const c = connect(t, cluster, 'n1');
  const data = Buffer.alloc(1024 * 1024 + 17, 7);
  data.write('hello', 100);
  const id = sha(data);
  t.is(await c.putChunk(id, data), 'stored');
  t.is(await c.putChunk(id, data), 'exists');
  t.deepEqual(await c.getChunk(id), data);
  t.is((await c.getChunk(id, 100, 5)).toString(), 'hello');
  const wrong = sha(Buffer.from('other'));
  t.true(isQfsError(await t.throwsAsync(c.putChunk(wrong, data)), 'corrupt'));
  t.deepEqual(await c.hasChunks([id, wrong]), [true, false]);
  t.deepEqual(await c.listChunks(null, 10), [id]);
  t.is(await c.verifyChunk(id), 'ok');
  t.true(isQfsError(await t.throwsAsync(c.getChunk(wrong)), 'not_found'));
  t.true(await c.deleteChunk(id));
  t.is(await c.verifyChunk(id), 'missing');
  const stat = await c.stat();
  t.is(stat.nodeId, 'n1');
  t.is(stat.chunks, 0);
  t.true(stat.totalBytes > 0 && stat.freeBytes > 0);
});

/** fetch, with the network error's cause in the message (undici only says "fetch failed"). */
async function get(url: string): Promise<Response> {
  try {
    return await fetch(url);
  } catch (err) {
    throw new Error(`GET ${url}: ${(err as Error).message}: ${String((err as { cause?: unknown }).cause)}`);
  }
}

test('/healthz and /metrics answer over HTTP', async (t) => {
  const cluster = await writeCluster(t, 1, { replication: 1 });
  await startNode(t, cluster, 'n1');
  const c = connect(t, cluster, 'n1');
  await c.ping();
  const data = Buffer.from('metrics');
  await c.putChunk(sha(data), data);
  const base = cluster.nodes[0]!.url.replace('ws:', 'http:');
  const health = await get(`${base}/healthz`);
  t.is(health.status, 200);
  t.like(await health.json(), { status: 'ok', node: 'n1', cluster: 'test' });
  const metrics = await (await get(`${base}/metrics`)).text();
  t.regex(metrics, /quorumfs_rpc_requests_total\{op="chunk_put",status="ok"\} 1/);
  t.regex(metrics, /quorumfs_chunks 1/);
  t.regex(metrics, /quorumfs_disk_free_bytes \d+/);
  t.is((await get(`${base}/nope`)).status, 404);
});

test('a data directory refuses a node id it does not belong to', async (t) => {
  const cluster = await writeCluster(t, 2, { replication: 1 });
  const n1 = await startNode(t, cluster, 'n1');
  await n1.stop();
  const r = await runCli(['node', '--config', cluster.configPath, '--id', 'n2', '--data-dir', cluster.nodes[0]!.dataDir]);
  t.is(r.code, 1);
  t.regex(r.stderr, /belongs to node "n1"/);
});

test('config and flag errors: one line naming the field, exit 2, nothing created', async (t) => {
  const cluster = await writeCluster(t, 1, { replication: 1 });
  const cases: Array<[string[], RegExp]> = [
    [['node', '--config', cluster.configPath], /missing --id/],
    [['node', '--id', 'n1'], /missing --config/],
    [['node', '--config', cluster.configPath, '--id', 'n9'], /--id: no node "n9"/],
    [['node', '--config', cluster.configPath, '--id', 'n1', '--bogus'], /Unknown option '--bogus'/],
    [['node', '--config', cluster.configPath, '--id', 'n1', '--listen', 'nope'], /--listen: expected HOST:PORT/],
    [['node', '--config', cluster.configPath, '--id', 'n1', '--log-level', 'loud'], /--log-level/],
    [['node', '--config', join(cluster.dir, 'missing.json'), '--id', 'n1'], /cannot read config/],
    [['frobnicate'], /unknown command/],
  ];
  for (const [args, re] of cases) {
    const r = await runCli(args);
    t.is(r.code, 2, args.join(' '));
    t.regex(r.stderr, re);
    t.is(r.stderr.trim().split('\n').length, 1, `one line for ${args.join(' ')}: ${r.stderr}`);
  }
  const config = JSON.parse(await readFile(cluster.configPath, 'utf8'));
  const bad: Array<[unknown, RegExp]> = [
    [{ ...config, nodes: [{ ...config.nodes[0], url: 'http://x:1' }] }, /config\.nodes\[0\]\.url: must start with ws:\/\//],
    [{ ...config, nodes: [{ ...config.nodes[0], id: 'a/b' }] }, /config\.nodes\[0\]\.id/],
    [{ ...config, extra: 1 }, /config\.extra: unknown field/],
    [{ ...config, nodes: [config.nodes[0], config.nodes[0]] }, /duplicate node id/],
    [{ ...config, secretFile: 'nope' }, /config\.secretFile: cannot read/],
    [{ ...config, timeouts: { requestMs: 5000, tombstoneGraceMs: 5500 } }, /config\.timeouts\.tombstoneGraceMs: 5500 is below requestMs \+ 1000/],
  ];
  for (const [body, re] of bad) {
    await writeFile(cluster.configPath, JSON.stringify(body));
    const r = await runCli(['node', '--config', cluster.configPath, '--id', 'n1']);
    t.is(r.code, 2, re.source);
    t.regex(r.stderr, re);
  }
  await writeFile(cluster.configPath, '{ not json');
  t.regex((await runCli(['node', '--config', cluster.configPath, '--id', 'n1'])).stderr, /invalid JSON/);
  await writeFile(join(cluster.dir, 'secret'), 'short\n');
  await writeFile(cluster.configPath, JSON.stringify(config));
  t.regex((await runCli(['node', '--config', cluster.configPath, '--id', 'n1'])).stderr, /at least 32 are needed/);
  // nothing was opened: no data directory was created by any failed start
  await t.throwsAsync(readFile(join(cluster.nodes[0]!.dataDir, 'node.json')));
});

test('keygen writes a 0600 secret and refuses to overwrite', async (t) => {
  const cluster = await writeCluster(t, 1, { replication: 1 });
  const file = join(cluster.dir, 'new-secret');
  const r = await runCli(['keygen', file]);
  t.is(r.code, 0);
  const { stat } = await import('node:fs/promises');
  t.is((await stat(file)).mode & 0o777, 0o600);
  t.regex((await readFile(file, 'utf8')).trim(), /^[0-9a-f]{64}$/);
  const again = await runCli(['keygen', file]);
  t.is(again.code, 2);
  t.regex(again.stderr, /refusing to overwrite/);
});

test('a port in use is a clear error', async (t) => {
  const cluster = await writeCluster(t, 1, { replication: 1 });
  await startNode(t, cluster, 'n1');
  const r = await runCli(['node', '--config', cluster.configPath, '--id', 'n1', '--data-dir', join(cluster.dir, 'other')]);
  t.is(r.code, 1);
  t.regex(r.stderr, /cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/);
});

test('chunk files are written with O_DIRECT unless --chunk-writes buffered; a bad mode is a usage error', async (t) => {
  const cluster = await writeCluster(t, 1, { replication: 1 });
  const started = (logs: string[]) => logs.map((l) => JSON.parse(l) as { msg?: string; chunkWrites?: string }).find((l) => l.msg === 'node started');
  const direct = await startNode(t, cluster, 'n1');
  t.is(started(direct.logs)?.chunkWrites, 'direct');
  const c = connect(t, cluster, 'n1');
  const data = randomBytes(300_000);
  t.is(await c.putChunk(sha(data), data), 'stored');
  t.true((await c.getChunk(sha(data))).equals(data));
  t.is((await direct.stop()).code, 0);
  const buffered = await startNode(t, cluster, 'n1', ['--chunk-writes', 'buffered']);
  t.is(started(buffered.logs)?.chunkWrites, 'buffered');
  t.true((await c.getChunk(sha(data))).equals(data), 'a chunk written direct reads back after a restart');
  t.is((await buffered.stop()).code, 0);
  const bad = await runCli(['node', '--config', cluster.configPath, '--id', 'n1', '--chunk-writes', 'sometimes']);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /--chunk-writes must be direct or buffered/);
});
