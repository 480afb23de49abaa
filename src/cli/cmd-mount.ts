import { execFile, spawn } from 'node:child_process';
import { readFile, stat, mkdir, open } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { FuseMount } from '../fuse/binding.js';
import { DEFAULT_OPERATION_MS, vfsOps } from '../fuse/ops.js';
import { FsMeta } from '../meta/fs-meta.js';
import { LockService } from '../meta/locks.js';
import { Vfs } from '../vfs/vfs.js';
import { createRootLogger, type Logger, logUnhandledRejections } from '../util/log.js';
import { QfsError } from '../util/errors.js';
import { parseLogLevel } from './cmd-node.js';
import { parseMountOptions } from './mount-options.js';
import { UsageError, parseFlags } from './usage.js';
import { openCluster } from './wiring.js';
import { childEnv, nodeArgv } from './v8-flags.js';
import { hashThread } from '../util/hash-offload.js';

const run = promisify(execFile);

export const MOUNT_HELP = `usage: quorumfs mount --config FILE MOUNTPOINT [-o OPTIONS] [--daemon] [--log-level L]

Mounts the cluster's filesystem at MOUNTPOINT and serves it until unmounted
(quorumfs umount MOUNTPOINT, fusermount -u) or stopped (SIGTERM/SIGINT flush
open files, then unmount). A stale mount left at MOUNTPOINT by a crashed
process ("Transport endpoint is not connected") is cleared first.

  -o allow_other            let other users use the mount (files they create are theirs)
  -o attr_timeout=S         seconds the kernel caches attributes (default 1)
  -o entry_timeout=S        seconds the kernel caches names (default 1)
  -o negative_timeout=S     seconds the kernel caches missing names (default 0)
  -o max_readahead=BYTES    kernel read-ahead
  -o no_default_permissions let the filesystem, not the kernel, check permissions
  -o config=FILE            the cluster config (for fstab, instead of --config)
  --daemon                  detach once mounted (what the mount helper uses); logs go to
                            /var/log/quorumfs/mount-<name>.log or $QUORUMFS_LOG_DIR`;

async function isMounted(mountpoint: string): Promise<boolean> {
  const text = await readFile('/proc/self/mounts', 'utf8');
  const escaped = mountpoint.replace(/ /g, '\\040');
  return text.split('\n').some((l) => l.split(' ')[1] === escaped);
}

/** Clears a mount left by a dead process; refuses a live one. */
async function clearStale(mountpoint: string, log: Logger): Promise<void> {
  if (!(await isMounted(mountpoint))) return;
  // A live mount answers stat; a dead FUSE mount says ENOTCONN. (This process serves nothing yet.)
  const alive = await stat(mountpoint).then(
    () => true,
    (e: NodeJS.ErrnoException) => e.code !== 'ENOTCONN' && e.code !== 'ECONNABORTED',
  );
  if (alive) throw new QfsError('bad_request', `${mountpoint} is already mounted`);
  log.warn({ mountpoint }, 'clearing a stale mount');
  await run('fusermount', ['-uz', mountpoint]).catch(() => run('umount', ['-l', mountpoint]));
}

export async function mountCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    args,
    { config: { type: 'string' }, o: { type: 'string', short: 'o', multiple: true }, daemon: { type: 'boolean' }, 'log-level': { type: 'string' } },
    true,
  );
  const parsed = parseMountOptions(values.o ?? []);
  // mount(8) helpers call: SOURCE MOUNTPOINT -o OPTS, where SOURCE is the config file.
  let configFile = values.config ?? parsed.config;
  let mountpointArg: string | undefined;
  if (positionals.length === 2) {
    configFile ??= positionals[0]!;
    mountpointArg = positionals[1];
  } else if (positionals.length === 1) {
    mountpointArg = positionals[0];
  } else {
    throw new UsageError('mount takes one MOUNTPOINT (or SOURCE MOUNTPOINT)');
  }
  if (!configFile) throw new UsageError('missing --config');
  const mountpoint = resolve(mountpointArg!);
  const level = parseLogLevel(values['log-level'] ?? parsed.logLevel ?? undefined);
  if (values.daemon) return daemonize(args, mountpoint);

  const st = await stat(mountpoint).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOTCONN' ? 'stale' : null));
  if (st === null) throw new UsageError(`${mountpoint}: no such directory`);
  if (st !== 'stale' && !st.isDirectory()) throw new UsageError(`${mountpoint}: not a directory`);

  const log = createRootLogger(level ? { level } : {});
  logUnhandledRejections(log);
  // chunks read are verified beside the JS thread that serves FUSE (util/hash-offload.ts)
  hashThread.enable();
  const { config, ks } = await openCluster(configFile, log.child({ component: 'cluster' }));
  let fuse: FuseMount | null = null;
  try {
    await ks.waitForPeers(config.timeouts.connectMs);
    const sb = await FsMeta.load(ks);
    // One deadline per metadata operation, shared by all its cluster calls; the
    // binding's callback timeout stays well above it (the last resort, for data
    // calls that wait on uploads and would otherwise get a default answer).
    const operationMs = Math.max(DEFAULT_OPERATION_MS, config.timeouts.requestMs * 2);
    // Locks: a request sent before the lease ran out is applied within its deadline at the latest.
    const locks = new LockService(ks, {
      log: log.child({ component: 'locks' }),
      requestMs: config.timeouts.requestMs,
      lease: { ...(parsed.lockLeaseMs !== null ? { leaseMs: parsed.lockLeaseMs } : {}), inFlightMs: operationMs },
    });
    const meta = new FsMeta(ks, sb, { writeBehind: { enabled: parsed.writeBehind, bornLeases: parsed.bornLeases }, log: log.child({ component: 'meta' }) });
    const vfs = new Vfs(meta, ks, {
      log: log.child({ component: 'vfs' }),
      locks,
      capacity: async () => {
        const stats = await Promise.all(ks.peers.map((p) => p.client.stat({ timeoutMs: 1000, connectWaitMs: 0 }).catch(() => null)));
        let totalBytes = 0;
        let freeBytes = 0;
        for (const s of stats) {
          if (!s) continue;
          totalBytes += s.totalBytes;
          freeBytes += s.freeBytes;
        }
        return { totalBytes, freeBytes };
      },
    });
    await clearStale(mountpoint, log);
    const kernel = {
      invalidate: (path: string) => void fuse?.invalidate(path),
      invalidateData: async (path: string) => void (await fuse?.invalidateData(path)),
    };
    fuse = await FuseMount.mount(mountpoint, vfsOps(vfs, log, undefined, kernel, operationMs), {
      fsname: `quorumfs:${config.name}`,
      callbackTimeoutMs: Math.max(30_000, operationMs + 10_000, config.timeouts.requestMs * 4),
      toErrno: (err) => (err as { errno?: number }).errno ?? 5,
      ...parsed.fuse,
    });
    log.info({ mountpoint, cluster: config.name, fsId: sb.fsId, options: fuse.optionList.join(',') }, 'mounted');
    const mounted = fuse;
    return await new Promise<number>((resolveExit) => {
      let stopping = false;
      const stop = async (why: string, unmount: boolean): Promise<void> => {
        if (stopping) return;
        stopping = true;
        clearInterval(watch);
        log.info({ why }, 'unmounting');
        const errors = await vfs.flushAll();
        for (const e of errors) log.error({ err: e.message }, 'could not publish an open file or commit a metadata change before unmounting');
        if (unmount) await mounted.unmount().catch((e: Error) => log.error({ err: e.message }, 'unmount failed'));
        // what the directory leases did over the mount's life (operators: is write-behind being used?)
        log.info({ leases: { ...meta.dirs.stats } }, 'directory lease totals');
        resolveExit(errors.length === 0 ? 0 : 1);
      };
      process.on('SIGTERM', () => void stop('SIGTERM', true));
      process.on('SIGINT', () => void stop('SIGINT', true));
      // Unmounted from outside (umount, fusermount -u): finish and exit.
      const watch = setInterval(() => {
        void isMounted(mountpoint).then((m) => {
          if (!m) void stop('unmounted', false);
        });
      }, 1000);
    });
  } finally {
    await ks.close();
  }
}

/** Runs the mount in a detached child and returns once it is mounted (or failed). */
async function daemonize(args: string[], mountpoint: string): Promise<number> {
  const logDir = process.env['QUORUMFS_LOG_DIR'] ?? '/var/log/quorumfs';
  await mkdir(logDir, { recursive: true });
  const logFile = resolve(logDir, `mount-${mountpoint.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'root'}.log`);
  const out = await open(logFile, 'a');
  const cli = fileURLToPath(new URL('./main.js', import.meta.url));
  const child = spawn(process.execPath, nodeArgv(cli, ['mount', ...args.filter((a) => a !== '--daemon')]), {
    env: childEnv(),
    detached: true,
    stdio: ['ignore', out.fd, out.fd],
  });
  child.unref();
  await out.close();
  const exited = new Promise<number>((r) => child.once('exit', (code) => r(code ?? 1)));
  const until = Date.now() + 30_000;
  while (Date.now() < until) {
    if (await isMounted(mountpoint)) return 0;
    const code = await Promise.race([exited, new Promise<null>((r) => setTimeout(() => r(null), 100))]);
    if (code !== null) {
      process.stderr.write(`quorumfs mount: failed (exit ${code}); see ${logFile}\n`);
      return code || 1;
    }
  }
  process.stderr.write(`quorumfs mount: not mounted after 30 s; see ${logFile}\n`);
  return 1;
}

export const UMOUNT_HELP = `usage: quorumfs umount MOUNTPOINT

Unmounts a quorumfs mount; the serving process publishes open files and exits.`;

export async function umountCommand(args: string[]): Promise<number> {
  const { positionals } = parseFlags(args, {}, true);
  if (positionals.length !== 1) throw new UsageError('umount takes one MOUNTPOINT');
  const mountpoint = resolve(positionals[0]!);
  if (!(await isMounted(mountpoint))) throw new UsageError(`${mountpoint} is not mounted`);
  try {
    await run('fusermount', ['-u', mountpoint]);
  } catch (err) {
    const msg = String((err as { stderr?: string }).stderr ?? (err as Error).message).trim();
    process.stderr.write(`quorumfs umount: ${msg}\n`);
    return 1;
  }
  return 0;
}
