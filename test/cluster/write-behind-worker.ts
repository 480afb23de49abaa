// A mount's metadata (FsMeta) in its own process for the crash test of
// write-behind: formats, then creates and unlinks names in one directory
// under its lease, flushing every tenth step and printing "durable N" once
// everything up to step N is committed; at its first flush past `dieAfter`
// it SIGKILLs itself as soon as the flush returns, with background work (link
// counts, directory times) still in flight. Not a test file (ava runs
// *.test.js only).
import { ClusterKeySpace } from '../../src/cluster/cluster-keyspace.js';
import { FsMeta } from '../../src/meta/fs-meta.js';
import { ROOT_INO, S_IFDIR, S_IFREG } from '../../src/meta/types.js';
import { silentLogger } from '../../src/util/log.js';

interface WorkerArgs {
  clusterName: string;
  secret: string;
  nodes: Array<{ id: string; url: string }>;
  scopeLeaseMs: number;
  /** At the first flush at or past this step, the process kills itself once the flush returns. */
  dieAfter: number;
}

const args = JSON.parse(process.argv[2]!) as WorkerArgs;
const ks = new ClusterKeySpace({
  clusterName: args.clusterName,
  secret: Buffer.from(args.secret),
  nodes: args.nodes.map((n) => ({ ...n, weight: 1, zone: null })),
  replication: 3,
  writeQuorum: 2,
  requestTimeoutMs: 3000,
  connectTimeoutMs: 500,
  log: silentLogger(),
  hintIntervalMs: 0,
  scopeLeaseMs: args.scopeLeaseMs,
});
await ks.waitForPeers(5000);
const sb = await FsMeta.format(ks, { chunkSize: 1 << 20, replication: 3 });
const meta = new FsMeta(ks, sb);
const dir = (await meta.create(ROOT_INO, Buffer.from('d'), { mode: S_IFDIR | 0o755, uid: 0, gid: 0 })).inode.ino;
process.stdout.write(`dir ${dir}\nsession ${ks.scopes.session}\n`);
for (let n = 0; ; n++) {
  // step n: create f<n>; every third step also unlinks the name created just before
  await meta.create(dir, Buffer.from(`f${n}`), { mode: S_IFREG | 0o644, uid: 0, gid: 0 });
  if (n % 3 === 2) await meta.unlink(dir, Buffer.from(`f${n - 1}`));
  if (n % 10 === 9) {
    await meta.flushNames();
    process.stdout.write(`durable ${n} queued ${meta.dirs.stats.queued}\n`);
    if (n >= args.dieAfter) process.kill(process.pid, 'SIGKILL');
  }
}
