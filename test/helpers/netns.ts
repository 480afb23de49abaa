// A small network lab for fault tests: one network namespace per storage node,
// each joined to a bridge in the root namespace by a veth pair, so a node can
// be cut off (its veth set down: packets vanish, TCP hangs rather than being
// refused) or given a bad link (tc) while the mount in the root namespace keeps
// talking to the others. Needs root and iproute2; `probeNetns` says why not.
//
// Names carry a random tag so concurrent runs (other engineers' tests on the
// same machine) never collide, and teardown deletes exactly what this lab made.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ExecutionContext } from 'ava';
import { CLI, tempDir, type NodeProcess, type TestCluster } from './cluster.js';
import type { RunningCluster } from './keyspace.js';

const exec = promisify(execFile);

async function ip(args: readonly string[]): Promise<string> {
  const r = await exec('ip', args, { timeout: 10_000 });
  return r.stdout;
}

async function tc(args: readonly string[]): Promise<void> {
  await exec('tc', args, { timeout: 10_000 });
}

const errText = (e: unknown): string => {
  const x = e as { stderr?: string; message?: string };
  return (x.stderr?.trim() || x.message || String(e)).split('\n')[0] ?? String(e);
};

export type DegradeMode = 'netem' | 'tbf';

export interface ProbeResult {
  /** Why the lab cannot be built here, or null when it can. */
  skip: string | null;
  /** netem (delay + loss) when the kernel has it, else tbf (a slow link that drops what overflows). */
  degrade: DegradeMode;
}

/**
 * Builds and removes a throwaway namespace, veth and bridge: the only reliable
 * test of CAP_SYS_ADMIN, netns support and the veth/bridge drivers.
 */
export async function probeNetns(): Promise<ProbeResult> {
  const no = (skip: string): ProbeResult => ({ skip, degrade: 'tbf' });
  if (process.platform !== 'linux') return no(`network namespaces need Linux (this is ${process.platform})`);
  if (process.getuid?.() !== 0) return no('network namespaces need root (run as uid 0)');
  for (const [cmd, args] of [['ip', ['-V']], ['tc', ['-V']]] as const) {
    try {
      await exec(cmd, args, { timeout: 5000 });
    } catch (e) {
      return no(`\`${cmd}\` is not usable (install Debian iproute2): ${errText(e)}`);
    }
  }
  const tag = randomBytes(3).toString('hex');
  const ns = `qfs-${tag}-probe`;
  const br = `qfs${tag}pb`;
  const veth = `qfs${tag}pv`;
  let degrade: DegradeMode = 'tbf';
  try {
    await ip(['netns', 'add', ns]);
  } catch (e) {
    return no(`\`ip netns add\` failed (no CAP_SYS_ADMIN or no netns support): ${errText(e)}`);
  }
  try {
    await ip(['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
    await ip(['link', 'add', 'name', br, 'type', 'bridge']);
    await ip(['link', 'add', veth, 'type', 'veth', 'peer', 'name', `${veth}x`]);
    await ip(['link', 'set', `${veth}x`, 'netns', ns]);
    await ip(['link', 'set', veth, 'master', br]);
    try {
      await exec('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '1ms'], { timeout: 5000 });
      degrade = 'netem';
    } catch {
      // no sch_netem in this kernel: a tbf link (slow, drops on overflow) stands in
      await exec('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'tbf', 'rate', '1mbit', 'burst', '16kb', 'latency', '200ms'], { timeout: 5000 });
    }
    return { skip: null, degrade };
  } catch (e) {
    return no(`cannot build a namespace lab (veth, bridge or tc missing): ${errText(e)}`);
  } finally {
    await ip(['link', 'del', veth]).catch(() => {});
    await ip(['link', 'del', br]).catch(() => {});
    await ip(['netns', 'del', ns]).catch(() => {});
  }
}

/** The IPv4 prefixes routed in the root namespace, as [network, length]. */
async function routedPrefixes(): Promise<Array<[number, number]>> {
  const out = await ip(['-4', 'route', 'show', 'table', 'all']);
  const prefixes: Array<[number, number]> = [];
  for (const line of out.split('\n')) {
    const m = /^(?:\w+\s+)?(\d+\.\d+\.\d+\.\d+)(?:\/(\d+))?\b/.exec(line.trim());
    if (!m || !m[1]) continue;
    prefixes.push([ipToInt(m[1]), m[2] === undefined ? 32 : Number(m[2])]);
  }
  return prefixes;
}

function ipToInt(a: string): number {
  return a.split('.').reduce((n, p) => n * 256 + Number(p), 0);
}

function overlaps(a: [number, number], b: [number, number]): boolean {
  const len = Math.min(a[1], b[1]);
  if (len === 0) return false; // the default route overlaps everything and is no collision
  const mask = len === 32 ? 0xffffffff : ~(0xffffffff >>> len) >>> 0;
  return ((a[0] & mask) >>> 0) === ((b[0] & mask) >>> 0);
}

/** A random 10.x.y.0/24 that no existing route covers or is covered by. */
async function freeSubnet(): Promise<string> {
  const taken = await routedPrefixes();
  for (let tries = 0; tries < 200; tries++) {
    const x = 64 + Math.floor(Math.random() * 190);
    const y = 1 + Math.floor(Math.random() * 253);
    const net: [number, number] = [ipToInt(`10.${x}.${y}.0`), 24];
    if (!taken.some((p) => overlaps(p, net))) return `10.${x}.${y}`;
  }
  throw new Error('no free 10.x.y.0/24 among 200 random picks');
}

export interface LabNode {
  id: string;
  ns: string;
  /** The root-namespace end of the node's veth: setting it down cuts the node off. */
  veth: string;
  addr: string;
}

export interface Lab {
  tag: string;
  bridge: string;
  subnet: string;
  nodes: LabNode[];
  degradeMode: DegradeMode;
  /** Link down on the node's veth: its packets are dropped without a reset. */
  cut(id: string): Promise<void>;
  heal(id: string): Promise<void>;
  /** A bad link in both directions (netem delay 200ms loss 30%, or a tbf bottleneck). */
  degrade(id: string): Promise<void>;
  restore(id: string): Promise<void>;
}

/**
 * Creates the bridge, namespaces and veths, and registers their removal.
 * The teardown is registered before anything exists, so a half-built lab is
 * removed too; ava runs teardowns last-registered first, so processes and
 * mounts registered later are gone before the namespaces are deleted.
 */
export async function createLab(t: ExecutionContext, count: number, degradeMode: DegradeMode): Promise<Lab> {
  const tag = randomBytes(3).toString('hex');
  const subnet = await freeSubnet();
  const bridge = `qfs${tag}br`;
  const nodes: LabNode[] = Array.from({ length: count }, (_, k) => ({
    id: `n${k + 1}`,
    ns: `qfs-${tag}-n${k + 1}`,
    veth: `qfs${tag}v${k + 1}`,
    addr: `${subnet}.${k + 1}`,
  }));
  t.teardown(async () => {
    for (const n of nodes) {
      // deleting the namespace destroys its veth end and with it the pair
      await ip(['netns', 'del', n.ns]).catch(() => {});
      await ip(['link', 'del', n.veth]).catch(() => {});
    }
    await ip(['link', 'del', bridge]).catch(() => {});
  });
  await ip(['link', 'add', 'name', bridge, 'type', 'bridge']);
  await ip(['addr', 'add', `${subnet}.254/24`, 'dev', bridge]);
  await ip(['link', 'set', bridge, 'up']);
  for (const n of nodes) {
    const inNs = (args: string[]): Promise<string> => ip(['-n', n.ns, ...args]);
    await ip(['netns', 'add', n.ns]);
    await ip(['link', 'add', n.veth, 'type', 'veth', 'peer', 'name', `${n.veth}x`]);
    await ip(['link', 'set', `${n.veth}x`, 'netns', n.ns]);
    await ip(['link', 'set', n.veth, 'master', bridge]);
    await ip(['link', 'set', n.veth, 'up']);
    await inNs(['link', 'set', 'lo', 'up']);
    await inNs(['link', 'set', `${n.veth}x`, 'name', 'eth0']);
    await inNs(['addr', 'add', `${n.addr}/24`, 'dev', 'eth0']);
    await inNs(['link', 'set', 'eth0', 'up']);
  }
  const node = (id: string): LabNode => {
    const n = nodes.find((x) => x.id === id);
    if (!n) throw new Error(`no lab node ${id}`);
    return n;
  };
  // Both directions: the root end shapes what goes to the node, eth0 what it sends back.
  const qdisc = async (n: LabNode, op: 'add' | 'del'): Promise<void> => {
    const spec = op === 'del' ? [] : degradeMode === 'netem' ? ['netem', 'delay', '200ms', 'loss', '30%'] : ['tbf', 'rate', '1mbit', 'burst', '16kb', 'latency', '200ms'];
    await tc(['qdisc', op, 'dev', n.veth, 'root', ...spec]);
    await exec('ip', ['netns', 'exec', n.ns, 'tc', 'qdisc', op, 'dev', 'eth0', 'root', ...spec], { timeout: 10_000 });
  };
  return {
    tag,
    bridge,
    subnet,
    nodes,
    degradeMode,
    cut: async (id) => void (await ip(['link', 'set', node(id).veth, 'down'])),
    heal: async (id) => void (await ip(['link', 'set', node(id).veth, 'up'])),
    degrade: (id) => qdisc(node(id), 'add'),
    restore: (id) => qdisc(node(id), 'del'),
  };
}

/** Lists this lab's leftovers (namespaces and links named with its tag); empty when teardown worked. */
export async function leftovers(tag: string): Promise<string[]> {
  const ns = (await ip(['netns', 'list'])).split('\n').filter((l) => l.includes(tag));
  const links = (await ip(['-o', 'link'])).split('\n').filter((l) => l.includes(`qfs${tag}`));
  return [...ns, ...links].map((l) => l.trim());
}

/** A cluster config whose nodes listen on their lab addresses (one port: each namespace has its own). */
export async function writeLabCluster(t: ExecutionContext, lab: Lab, port = 7400): Promise<TestCluster> {
  const dir = await tempDir(t, 'qfs-part-');
  const secretText = randomBytes(32).toString('hex');
  await writeFile(join(dir, 'secret'), secretText + '\n', { mode: 0o600 });
  const nodes = lab.nodes.map((n) => ({ id: n.id, url: `ws://${n.addr}:${port}`, dataDir: join(dir, n.id), port }));
  const name = `part-${lab.tag}`;
  const config = {
    name,
    secretFile: 'secret',
    replication: Math.min(3, nodes.length),
    nodes: nodes.map(({ id, url }) => ({ id, url, dataDir: id, reserveBytes: 0 })),
  };
  const configPath = join(dir, 'cluster.json');
  await writeFile(configPath, JSON.stringify(config, null, 2));
  await mkdir(join(dir, 'state'), { recursive: true });
  return { dir, configPath, secret: Buffer.from(secretText), name, nodes };
}

/** Starts `quorumfs node` inside its namespace; resolves once it logged "node started". */
export async function startLabNode(t: ExecutionContext, cluster: TestCluster, lab: Lab, id: string): Promise<NodeProcess> {
  const ln = lab.nodes.find((n) => n.id === id);
  if (!ln) throw new Error(`no lab node ${id}`);
  // `ip netns exec` execs in place (no fork), so the child's pid is the node's own.
  const child: ChildProcess = spawn('ip', ['netns', 'exec', ln.ns, process.execPath, CLI, 'node', '--config', cluster.configPath, '--id', id], {
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
    const timer = setTimeout(() => reject(new Error(`node ${id} did not start in 20 s: ${stderr}`)), 20_000);
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

/** Every node of the lab started in its namespace, shaped like startCluster's result so the mount helpers take it. */
export async function startLabCluster(t: ExecutionContext, lab: Lab): Promise<RunningCluster> {
  const cluster = await writeLabCluster(t, lab);
  const nodes = new Map<string, NodeProcess>();
  const start = async (id: string): Promise<NodeProcess> => {
    const p = await startLabNode(t, cluster, lab, id);
    nodes.set(id, p);
    return p;
  };
  await Promise.all(cluster.nodes.map((n) => start(n.id)));
  return { cluster, nodes, start };
}
