// `quorumfs dev`: a whole cluster on loopback in one command, for a first try.
import { spawn, type ChildProcess } from 'node:child_process';
import { parseMountOptions } from './mount-options.js';
import { randomBytes } from 'node:crypto';
import { access, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, requireEveryNode } from './config.js';
import { parseFlags, parseIntFlag } from './usage.js';
import { childEnv, nodeArgv } from './v8-flags.js';

export const DEV_HELP = `usage: quorumfs dev [--dir DIR] [--base-port PORT] [--mount DIR] [-o OPTIONS]

Runs three storage nodes on loopback with their config in DIR/cluster.json and
their data under DIR (default ./.quorumfs-dev), formats the filesystem on first
run, and mounts it at ./mnt. Ctrl-C unmounts and stops everything; running it
again finds the same files.

  --dir DIR          where the config, secret and data live (default ./.quorumfs-dev)
  --base-port PORT   nodes listen on PORT, PORT+1, PORT+2 (default 7401)
  --mount DIR        where to mount (default ./mnt; created if missing)
  --no-mount         only run the nodes
  -o OPTIONS         mount options, as for quorumfs mount`;

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

export async function ensureDevCluster(dir: string, basePort: number): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o750 });
  const secretFile = join(dir, 'secret');
  if (!(await exists(secretFile))) await writeFile(secretFile, randomBytes(32).toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
  const configPath = join(dir, 'cluster.json');
  if (!(await exists(configPath))) {
    const config = {
      name: 'dev',
      secretFile: 'secret',
      replication: 3,
      nodes: [0, 1, 2].map((i) => ({ id: `n${i + 1}`, url: `ws://127.0.0.1:${basePort + i}`, dataDir: `data/n${i + 1}` })),
    };
    await writeFile(configPath, JSON.stringify(config, null, 2) + '\n', { flag: 'wx' });
  }
  return configPath;
}

export async function devCommand(args: string[]): Promise<number> {
  const { values } = parseFlags(args, { dir: { type: 'string' }, 'base-port': { type: 'string' }, mount: { type: 'string' }, 'no-mount': { type: 'boolean' }, o: { type: 'string', short: 'o', multiple: true } });
  parseMountOptions(values.o ?? []); // a bad -o is a usage error now, not a failed mount later
  const dir = resolve(values.dir ?? '.quorumfs-dev');
  const basePort = parseIntFlag(values['base-port'], '--base-port', 1, 65533) ?? 7401;
  const configPath = await ensureDevCluster(dir, basePort);
  const config = await loadConfig(configPath);
  requireEveryNode(config);
  const cli = fileURLToPath(new URL('./main.js', import.meta.url));
  process.stdout.write(`quorumfs dev: cluster config ${configPath}\n`);
  const children: ChildProcess[] = config.nodes.map((node) => {
    // Own process groups: a terminal's Ctrl-C reaches only this process, which stops the mount before the nodes.
    const child = spawn(process.execPath, nodeArgv(cli, ['node', '--config', configPath, '--id', node.id]), { env: childEnv(), stdio: ['ignore', 'inherit', 'inherit'], detached: true });
    return child;
  });
  const exits = children.map((c) => new Promise<number>((r) => c.once('exit', (code) => r(code ?? 1))));
  let mount: ChildProcess | null = null;
  let mountExit: Promise<number> = Promise.resolve(0);
  let stopping = false;
  const stopAll = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    // The mount first, so that it can publish open files while the nodes still run.
    if (mount && mount.exitCode === null) mount.kill('SIGTERM');
    await mountExit;
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  };
  // If this process dies anyway, take the children along.
  process.on('exit', () => {
    for (const c of [...children, mount]) if (c && c.exitCode === null) c.kill('SIGKILL');
  });
  process.on('SIGINT', () => void stopAll());
  process.on('SIGTERM', () => void stopAll());
  // One node exiting on its own (a crash, a port in use) stops the rest: a dev cluster is all or nothing.
  void Promise.race(exits).then(stopAll);
  if (!values['no-mount']) {
    const mountpoint = resolve(values.mount ?? 'mnt');
    await mkdir(mountpoint, { recursive: true });
    const fmt = spawn(process.execPath, [cli, 'format', '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let fmtErr = '';
    fmt.stderr.setEncoding('utf8').on('data', (d: string) => (fmtErr += d));
    fmt.stdout.pipe(process.stdout);
    const fmtCode = await new Promise<number>((r) => fmt.once('exit', (c) => r(c ?? 1)));
    if (fmtCode !== 0 && !/already formatted/.test(fmtErr)) {
      process.stderr.write(fmtErr);
      await stopAll();
    } else if (!stopping) {
      const mountOptions = (values.o ?? []).flatMap((o) => ['-o', o]);
      mount = spawn(process.execPath, nodeArgv(cli, ['mount', '--config', configPath, mountpoint, ...mountOptions]), { env: childEnv(), stdio: ['ignore', 'inherit', 'inherit'], detached: true });
      mountExit = new Promise<number>((r) => mount!.once('exit', (code) => r(code ?? 1)));
      process.stdout.write(`quorumfs dev: mounting at ${mountpoint} (Ctrl-C unmounts and stops the nodes)\n`);
      void mountExit.then(() => stopAll());
    }
  }
  const codes = await Promise.all([...exits, mountExit]);
  return codes.every((c) => c === 0) ? 0 : 1;
}
