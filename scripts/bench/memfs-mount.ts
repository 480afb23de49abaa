// A FUSE baseline for the filesystem benchmark (scripts/bench/fsbench-compare.sh):
//
//   --fs memfs (default)  the quorumfs vfs over the in-memory key space
//                         (MemoryKeySpace + FsMeta.format + Vfs + vfsOps):
//                         the cost of FUSE and the vfs without any network or
//                         disk, so fsbench.sh runs on it in full;
//   --fs null             the do-nothing filesystem of src/fuse/null-fs.ts (one
//                         file "data", writes dropped, reads zeros): the FUSE
//                         ceiling for sequential write/read only.
//
// Both mount with the options `quorumfs mount` uses (DEFAULT_MOUNT_OPTIONS plus
// what src/cli/cmd-mount.ts adds: fsname, callback timeout, errno mapping), so
// only what is behind the vfs differs from a quorumfs mount.
//
// usage: node dist/scripts/bench/memfs-mount.js --mount DIR [--fs memfs|null]
//        [--chunk-size BYTES (default 1 MiB, as quorumfs format)] [--mib N (null fs file size)]
//        [-o OPTIONS (as quorumfs mount -o)]
// Prints one JSON line {"ready":true,"options":"..."} on stdout once mounted,
// then serves until SIGTERM or SIGINT, which unmount and exit 0. This process
// never does I/O on its own mount (on Node 20 that ends in ETIMEDOUT): drive it
// from another process.
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { FuseMount, type FuseOps, type MountOptions } from '../../src/fuse/binding.js';
import { nullFs } from '../../src/fuse/null-fs.js';
import { vfsOps } from '../../src/fuse/ops.js';
import { MemoryKeySpace } from '../../src/keyspace/memory.js';
import { FsMeta } from '../../src/meta/fs-meta.js';
import { Vfs } from '../../src/vfs/vfs.js';
import { createRootLogger } from '../../src/util/log.js';
import { parseMountOptions } from '../../src/cli/mount-options.js';

const { values } = parseArgs({
  options: {
    mount: { type: 'string' },
    fs: { type: 'string', default: 'memfs' },
    'chunk-size': { type: 'string', default: String(1024 * 1024) },
    mib: { type: 'string', default: '1024' },
    o: { type: 'string', short: 'o', multiple: true },
    help: { type: 'boolean', default: false },
  },
});

if (values.help || values.mount === undefined || (values.fs !== 'memfs' && values.fs !== 'null')) {
  process.stderr.write('usage: memfs-mount --mount DIR [--fs memfs|null] [--chunk-size BYTES] [--mib N] [-o OPTIONS]\n');
  process.exit(values.help ? 0 : 2);
}

const mountpoint = resolve(values.mount);
const log = createRootLogger({ name: `bench-${values.fs}` });
process.stdout.on('error', () => {}); // the parent may be gone: still unmount

let ops: FuseOps;
let fsname: string;
let vfs: Vfs | null = null;
if (values.fs === 'null') {
  ops = nullFs({ size: Number(values.mib) * 1024 * 1024 }).ops;
  fsname = 'quorumfs:null';
} else {
  const ks = new MemoryKeySpace({ shareChunkReads: true }); // no copy per chunk read: see MemoryKeySpaceOptions
  const chunkSize = Number(values['chunk-size']);
  const sb = await FsMeta.format(ks, { chunkSize, replication: 3, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 });
  // The same Vfs options as `quorumfs mount` (its defaults: 1 s attribute and entry caches).
  vfs = new Vfs(new FsMeta(ks, sb), ks, { log: log.child({ component: 'vfs' }) });
  ops = vfsOps(vfs, log);
  fsname = 'quorumfs:memfs';
}

// As src/cli/cmd-mount.ts: its request timeout is 5 s by default, so the callback timeout is 30 s.
const options: Partial<MountOptions> = {
  fsname,
  callbackTimeoutMs: 30_000,
  toErrno: (err) => (err as { errno?: number }).errno ?? 5,
  ...parseMountOptions(values.o ?? []).fuse,
};
const mount = await FuseMount.mount(mountpoint, ops, options);
process.stdout.write(JSON.stringify({ ready: true, fs: values.fs, mountpoint, options: mount.optionList.join(',') }) + '\n');

let stopping = false;
const stop = async (why: string): Promise<void> => {
  if (stopping) return;
  stopping = true;
  log.info({ why }, 'unmounting');
  if (vfs) await vfs.flushAll();
  await mount.unmount().catch((e: Error) => log.error({ err: e.message }, 'unmount failed'));
  process.exit(0);
};
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));
