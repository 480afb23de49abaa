// quorumfs node add|drain|remove|set|resume|list: changing the cluster's
// membership online (docs/architecture.md, "Membership"). Each change is
// asked for with a compare-and-set of the membership record, then handed to
// the nodes, which move the data themselves (src/cluster/move-watcher.ts):
// the command follows their progress reports until the change is complete,
// and moves the data itself only when told to (--here) or when no node has
// picked the change up in time (nodes started with --mover-grace 0). Mounts,
// nodes and tools learn the new membership from the nodes while they run.
import { NodeClient } from '../rpc/node-client.js';
import { Mover, type MoveProgress } from '../cluster/mover.js';
import { QfsError } from '../util/errors.js';
import { createRootLogger } from '../util/log.js';
import { describeChange, type Change, type Membership } from '../util/membership.js';
import { loadSecret, loadConfig } from './config.js';
import { UsageError, parseFlags, parseIntFlag, requireFlag } from './usage.js';
import { openCluster } from './wiring.js';

export const MEMBERSHIP_SUBCOMMANDS = ['add', 'drain', 'remove', 'set', 'resume', 'list'] as const;

export const MEMBERS_HELP = `usage: quorumfs node add    --config FILE --id ID --url ws://HOST:PORT [--weight W] [--zone Z] [--queue] [--no-wait|--here]
       quorumfs node drain  --config FILE ID [--queue] [--no-wait|--here]
       quorumfs node remove --config FILE ID [--dead] [--queue] [--no-wait|--here]
       quorumfs node set    --config FILE ID [--weight W] [--zone Z|--no-zone] [--queue] [--no-wait|--here]
       quorumfs node resume --config FILE [--here]
       quorumfs node list   --config FILE [--json]

Changes the cluster's membership while it serves. The command asks for the
change and hands it to the nodes, which move records and chunks node to node
to where the new membership places them; it shows their progress and returns
when the change is complete. Killed or interrupted, it leaves the change to
the nodes, which go on. Mounts and nodes follow without restart.

  add      a new node, already running (quorumfs node --config FILE --id ID
           --listen HOST:PORT --data-dir DIR); data moves to it
  drain    move everything off a node (it stays a member, holding nothing)
  remove   take a drained node out; with --dead, a node gone for good (its
           keys are copied again from the survivors)
  set      change a node's weight (share of the data) or zone
  resume   carry on a change another command left in progress
  list     the membership: epoch, nodes, a change in progress

  --queue         wait behind a change in progress instead of refusing
  --no-wait       ask for the change and return: the nodes move the data
                  (watch it with quorumfs status)
  --here          move the data from this process instead of the nodes (also
                  what happens when no node picks the change up in 15 s:
                  nodes started with --mover-grace 0)
  --rate MB/S     copy chunks at most this fast (default: as fast as it goes;
                  the nodes keep to it too)
  --parallel N    with --here: records rewritten and chunks copied at once
                  (default 16)
  --patience S    with --here: how long a step that lacks nodes is retried
                  (default 60)`;

function parseWeight(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > 1_000_000) throw new UsageError(`--weight: expected a number above 0 and at most 1000000, got ${JSON.stringify(v)}`);
  return n;
}

export function formatMembership(m: Membership): string {
  const lines = [`membership epoch ${m.epoch}, R=${m.r}${m.transition ? `, changing (${describeChange(m.transition.change)}: ${m.transition.phase})` : ', stable'}`];
  const next = m.transition?.next;
  const ids = [...new Set([...m.nodes.map((n) => n.id), ...(next ?? []).map((n) => n.id)])];
  for (const id of ids) {
    const now = m.nodes.find((n) => n.id === id);
    const then = next?.find((n) => n.id === id);
    const n = (then ?? now)!;
    const fate = next ? (now && !then ? ' (leaving)' : !now && then ? ' (joining)' : '') : '';
    lines.push(`  ${n.id.padEnd(12)} ${n.url.padEnd(28)} weight ${String(n.weight).padEnd(6)} zone ${(n.zone ?? '-').padEnd(10)} ${n.state}${fate}`);
  }
  for (const c of m.queued) lines.push(`  queued: ${describeChange(c)}`);
  return lines.join('\n');
}

function progressLine(p: MoveProgress): string {
  const mib = (p.bytesCopied / 1048576).toFixed(1);
  return `epoch ${p.epoch} ${p.phase}: ${p.recordsListed} records listed, ${p.recordsRewritten} rewritten; ${p.chunksListed} chunks listed, ${p.chunksCopied} copied (${mib} MiB), ${p.chunksTrimmed} trimmed; ${p.recordsDropped} record copies dropped`;
}

export async function membershipCommand(sub: string, args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    args,
    {
      config: { type: 'string' },
      id: { type: 'string' },
      url: { type: 'string' },
      weight: { type: 'string' },
      zone: { type: 'string' },
      'no-zone': { type: 'boolean' },
      dead: { type: 'boolean' },
      queue: { type: 'boolean' },
      'no-wait': { type: 'boolean' },
      here: { type: 'boolean' },
      json: { type: 'boolean' },
      'log-level': { type: 'string' },
      patience: { type: 'string' },
      rate: { type: 'string' },
      parallel: { type: 'string' },
    },
    true,
  );
  const configFile = requireFlag(values.config, '--config');
  const target = values.id ?? positionals[0];
  if (positionals.length > 1) throw new UsageError(`unexpected arguments: ${positionals.slice(1).join(' ')}`);
  let change: Change | null = null;
  switch (sub) {
    case 'add': {
      const id = requireFlag(values.id, '--id');
      const url = requireFlag(values.url, '--url').replace(/\/$/, '');
      change = { kind: 'add', id, url, weight: parseWeight(values.weight) ?? 1, zone: values.zone ?? null };
      break;
    }
    case 'drain':
      change = { kind: 'drain', id: requireFlag(target, 'ID') };
      break;
    case 'remove':
      change = { kind: 'remove', id: requireFlag(target, 'ID'), dead: values.dead ?? false };
      break;
    case 'set': {
      const weight = parseWeight(values.weight);
      if (values.zone !== undefined && values['no-zone']) throw new UsageError('--zone and --no-zone: pick one');
      const zone = values['no-zone'] ? null : values.zone;
      if (weight === undefined && zone === undefined) throw new UsageError('set: give --weight, --zone or --no-zone');
      change = { kind: 'set', id: requireFlag(target, 'ID'), ...(weight !== undefined ? { weight } : {}), ...(zone !== undefined ? { zone } : {}) };
      break;
    }
    case 'resume':
    case 'list':
      break;
    default:
      throw new UsageError(`unknown node subcommand ${JSON.stringify(sub)}`);
  }
  const patienceS = parseIntFlag(values.patience, '--patience', 1, 86_400);
  const parallel = parseIntFlag(values.parallel, '--parallel', 1, 256);
  let rate: number | undefined;
  if (values.rate !== undefined) {
    rate = Number(values.rate);
    if (!Number.isFinite(rate) || rate <= 0) throw new UsageError(`--rate: expected MB/s above 0, got ${JSON.stringify(values.rate)}`);
  }
  const log = createRootLogger({ level: (values['log-level'] as 'info' | undefined) ?? 'warn' });
  if (change?.kind === 'add') await checkNewNode(configFile, change.id, change.url);
  const { ks } = await openCluster(configFile, log, { hintIntervalMs: 0 });
  try {
    let last: MoveProgress | null = null;
    const mover = new Mover(ks, {
      log: log.child({ component: 'mover' }),
      onProgress: (p) => {
        last = p;
        if (process.stderr.isTTY) process.stderr.write(`\r${progressLine(p)}\x1b[K`);
      },
      ...(patienceS !== undefined ? { patienceMs: patienceS * 1000 } : {}),
      ...(parallel !== undefined ? { parallel } : {}),
      ...(rate !== undefined ? { rateBytesPerSec: rate * 1_000_000 } : {}),
    });
    if (sub === 'list') {
      const m = await mover.read();
      process.stdout.write(values.json ? JSON.stringify(m, null, 2) + '\n' : formatMembership(m) + '\n');
      return 0;
    }
    if (values['no-wait'] && !change) throw new UsageError('--no-wait goes with add, drain, remove or set');
    if (values['no-wait'] && values.here) throw new UsageError('--no-wait and --here: pick one');
    let asked: Membership | null = null;
    if (change) {
      asked = await mover.request(change, values.queue ?? false);
      process.stderr.write(`${describeChange(change)}: ${asked.transition && asked.queued.length === 0 ? 'started' : 'queued'} (epoch ${asked.epoch})\n`);
      if (values['no-wait']) {
        await mover.handToNodes(asked.epoch);
        process.stderr.write('left to the nodes: quorumfs status shows how far it is\n');
        process.stdout.write(formatMembership(asked) + '\n');
        return 0;
      }
    }
    let done: Membership | null = null;
    if (!values.here) {
      asked ??= await mover.read();
      if (asked.transition === null && asked.queued.length === 0) done = asked;
      else {
        await mover.handToNodes(asked.epoch);
        done = await followNodes(mover, (p) => {
          last = p;
          if (process.stderr.isTTY) process.stderr.write(`\r${progressLine(p)}\x1b[K`);
        });
        if (!done) process.stderr.write(`${process.stderr.isTTY ? '\n' : ''}no node picked the change up in ${TAKEOVER_MS / 1000} s (nodes started with --mover-grace 0?): moving it from here\n`);
      }
    }
    done ??= await mover.run();
    if (process.stderr.isTTY) process.stderr.write('\n');
    if (last) process.stderr.write(progressLine(last) + '\n');
    process.stdout.write(formatMembership(done) + '\n');
    return 0;
  } finally {
    await ks.close();
  }
}

/** How long the command waits for a node to report progress on a change it handed over before it moves the data itself. */
const TAKEOVER_MS = 15_000;
const FOLLOW_EVERY_MS = 500;

/**
 * Follows the nodes' progress reports until the membership is stable (every
 * queued change done); null when no node has reported on a change for
 * TAKEOVER_MS after it was handed over.
 */
async function followNodes(mover: Mover, onProgress: (p: MoveProgress) => void): Promise<Membership | null> {
  let waitingSince = Date.now();
  let lastReport = 0;
  for (;;) {
    let m: Membership;
    let p: MoveProgress | null;
    try {
      [m, p] = await Promise.all([mover.read(), mover.readProgress()]);
    } catch {
      // a node restarting, a majority busy: ask again (the nodes go on meanwhile)
      await new Promise((r) => setTimeout(r, FOLLOW_EVERY_MS));
      continue;
    }
    if (m.transition === null && m.queued.length === 0) return m;
    if (p && !p.handedToNodes && p.updatedAt !== lastReport) {
      lastReport = p.updatedAt;
      waitingSince = Date.now();
      onProgress(p);
    }
    if (lastReport === 0 && Date.now() - waitingSince > TAKEOVER_MS) return null; // once a node reports, the nodes see to it (their grace)
    await new Promise((r) => setTimeout(r, FOLLOW_EVERY_MS));
  }
}

/** A node to add must be running, belong to this cluster and answer to its id before the change is asked for. */
async function checkNewNode(configFile: string, id: string, url: string): Promise<void> {
  if (!/^wss?:\/\//.test(url)) throw new UsageError(`--url: expected ws://HOST:PORT or wss://HOST:PORT, got ${JSON.stringify(url)}`);
  const config = await loadConfig(configFile);
  const secret = await loadSecret(config);
  const client = new NodeClient({ url: `${url}/rpc`, secret, clusterName: config.name, log: createRootLogger({ level: 'silent' }), connectTimeoutMs: config.timeouts.connectMs, defaultTimeoutMs: config.timeouts.requestMs });
  try {
    const stat = await client.stat({ timeoutMs: config.timeouts.connectMs * 2 });
    if (stat.nodeId !== id) throw new QfsError('bad_request', `the node at ${url} is ${JSON.stringify(stat.nodeId)}, not ${JSON.stringify(id)}`);
  } catch (err) {
    if (err instanceof QfsError && err.code === 'bad_request') throw err;
    throw new QfsError('unavailable', `node ${id} at ${url} is not reachable as a node of cluster ${config.name}: ${(err as Error).message}`);
  } finally {
    client.close();
  }
}
