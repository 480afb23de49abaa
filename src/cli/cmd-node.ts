import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { StorageNode } from '../node/storage-node.js';
import { createRootLogger, logUnhandledRejections } from '../util/log.js';
import { ConfigError, findNode, loadConfig, loadSecret, parseListen } from './config.js';
import { UsageError, parseDurationFlag, parseFlags, parseIntFlag, requireFlag } from './usage.js';
import { SeedsOnlyError, openCluster } from './wiring.js';
import { Healer } from '../cluster/healer.js';
import { MoveWatcher } from '../cluster/move-watcher.js';

/** How often a node checks its records and chunks against their other replicas (self-heal). */
const DEFAULT_HEAL_MS = 10 * 60_000;
/** How long a membership change may go without a progress report before the nodes carry it on. */
const DEFAULT_MOVER_GRACE_MS = 30_000;
import { VERSION } from './version.js';
import { MEMBERS_HELP, MEMBERSHIP_SUBCOMMANDS, membershipCommand } from './cmd-members.js';

export const NODE_HELP = `usage: quorumfs node --config FILE --id ID [options]

Runs one storage node of the cluster described by FILE.

  --config FILE        cluster config (JSON)
  --id ID              which node of the config this is
  --listen HOST:PORT   bind address (default: the node's url)
  --data-dir DIR       data directory (default: the node's dataDir)
  --reserve-bytes N    free space kept back from chunk writes
  --chunk-writes MODE  direct (default): chunk files are written, and read
                       whole, with O_DIRECT, past the page cache (about 1
                       CPU-second less per GiB stored; data just written is
                       read back from the disk); buffered: through the page
                       cache
  --log-level LEVEL    trace|debug|info|warn|error|silent (default info)
  --heal-interval D    how often this node checks that its records and chunks
                       are on their other replicas and copies them where
                       missing (self-heal; default 10m, 0 turns it off)
  --heal-rate MB/S     copy chunks for self-heal at most this fast (default:
                       as fast as it goes)
  --mover-grace D      how long a membership change may go without progress
                       (its command killed, or asked with --no-wait) before
                       this node carries it on; nodes take turns, the next
                       one waiting twice as long (default 30s, 0 turns it off)

A node that is not in FILE (one about to be added) needs --listen and
--data-dir. SIGTERM or SIGINT stops accepting, finishes requests in flight and
exits 0.

${MEMBERS_HELP}`;

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
type LogLevel = (typeof LOG_LEVELS)[number];

export function parseLogLevel(v: string | undefined): LogLevel | undefined {
  if (v === undefined) return undefined;
  if (!(LOG_LEVELS as readonly string[]).includes(v)) throw new UsageError(`--log-level: expected one of ${LOG_LEVELS.join(', ')}`);
  return v as LogLevel;
}

export async function nodeCommand(args: string[]): Promise<number> {
  const sub = args[0];
  if (sub !== undefined && (MEMBERSHIP_SUBCOMMANDS as readonly string[]).includes(sub)) return membershipCommand(sub, args.slice(1));
  const { values } = parseFlags(args, {
    config: { type: 'string' },
    id: { type: 'string' },
    listen: { type: 'string' },
    'data-dir': { type: 'string' },
    'reserve-bytes': { type: 'string' },
    'log-level': { type: 'string' },
    'heal-interval': { type: 'string' },
    'heal-rate': { type: 'string' },
    'mover-grace': { type: 'string' },
    'chunk-writes': { type: 'string' },
    // before the eighth session's default: systemd units written then may still pass it
    'direct-writes': { type: 'boolean' },
  });
  const configFile = requireFlag(values.config, '--config');
  const id = requireFlag(values.id, '--id');
  const healMs = parseDurationFlag(values['heal-interval'], '--heal-interval') ?? DEFAULT_HEAL_MS;
  let healRate: number | undefined;
  if (values['heal-rate'] !== undefined) {
    const mb = Number(values['heal-rate']);
    if (!Number.isFinite(mb) || mb <= 0) throw new UsageError(`--heal-rate: expected MB/s above 0, got ${JSON.stringify(values['heal-rate'])}`);
    healRate = mb * 1e6;
  }
  const moverGraceMs = parseDurationFlag(values['mover-grace'], '--mover-grace') ?? DEFAULT_MOVER_GRACE_MS;
  const level = parseLogLevel(values['log-level']);
  const reserve = parseIntFlag(values['reserve-bytes'], '--reserve-bytes', 0, Number.MAX_SAFE_INTEGER);
  const listen = values.listen === undefined ? undefined : parseListenFlag(values.listen);

  const config = await loadConfig(configFile);
  const known = config.nodes.some((n) => n.id === id);
  if (!known && (listen === undefined || values['data-dir'] === undefined)) findNode(config, id); // the config's clear error
  const node = known
    ? findNode(config, id)
    : { id, url: `ws://${listen!.host}:${listen!.port}`, listen: listen!, dataDir: resolve(values['data-dir']!), reserveBytes: 0 };
  const secret = await loadSecret(config);
  let tls: { cert: Buffer; key: Buffer } | undefined;
  if (config.tls.certFile && config.tls.keyFile) {
    tls = {
      cert: await readFile(config.tls.certFile).catch((e: Error) => {
        throw new ConfigError(`config.tls.certFile: ${e.message}`);
      }),
      key: await readFile(config.tls.keyFile).catch((e: Error) => {
        throw new ConfigError(`config.tls.keyFile: ${e.message}`);
      }),
    };
  } else if (node.url.startsWith('wss:')) {
    throw new ConfigError(`node ${id} has a wss:// url but config.tls has no certFile/keyFile`);
  }

  const log = createRootLogger(level ? { level } : {});
  logUnhandledRejections(log);
  const storageNode = new StorageNode({
    nodeId: node.id,
    clusterName: config.name,
    secret,
    dataDir: values['data-dir'] ? resolve(values['data-dir']) : node.dataDir,
    listen: listen ?? node.listen,
    reserveBytes: reserve ?? node.reserveBytes,
    directWrites: parseChunkWrites(values['chunk-writes'], values['direct-writes'] === true),
    version: VERSION,
    log,
    ...(tls ? { tls } : {}),
  });
  await storageNode.start();
  // Self-heal: this node's records and chunks checked against their other replicas at an interval.
  // A node started before the cluster is formatted, from a config that lists only seeds, finds no
  // membership yet: it asks again every 30 s until it does (or stops).
  let stopRequested = false;
  let wakeHealer: (() => void) | null = null;
  // The same client carries membership changes a command left half done (--mover-grace).
  const openHealer = async (): Promise<{ ks: Awaited<ReturnType<typeof openCluster>>['ks']; healer: Healer | null; watcher: MoveWatcher | null } | null> => {
    for (let attempt = 0; !stopRequested; attempt++) {
      try {
        const { ks } = await openCluster(configFile, log.child({ component: 'heal' }), { hintIntervalMs: 0 });
        if (stopRequested) {
          await ks.close();
          return null;
        }
        // Nothing to heal or move before the cluster is formatted (this node then knows no membership).
        const active = (): boolean => storageNode.membershipEpoch > 0;
        const healer = healMs > 0 ? new Healer(ks, id, { intervalMs: healMs, log: log.child({ component: 'heal' }), active, ...(healRate ? { rateBytesPerSec: healRate } : {}) }) : null;
        healer?.start();
        const watcher = moverGraceMs > 0 ? new MoveWatcher(ks, { selfId: id, graceMs: moverGraceMs, log: log.child({ component: 'mover' }), active }) : null;
        watcher?.start();
        if (watcher) storageNode.onMembership(() => watcher.nudge());
        return { ks, healer, watcher };
      } catch (err) {
        if (!(err instanceof SeedsOnlyError)) {
          log.warn({ err: (err as Error).message }, 'self-heal and the mover are off: the cluster could not be opened');
          return null;
        }
        if (attempt === 0) log.warn({ err: err.message }, 'self-heal and the mover wait for the membership: asking again every 30 s');
        await new Promise<void>((r) => {
          const timer = setTimeout(r, 30_000);
          wakeHealer = () => {
            clearTimeout(timer);
            r();
          };
        });
        wakeHealer = null;
      }
    }
    return null;
  };
  const healing = healMs > 0 || moverGraceMs > 0 ? openHealer() : Promise.resolve(null);
  void healing.then((h) => {
    if (h) storageNode.metrics.more.push(() => backgroundMetrics(h.healer, h.watcher));
  });

  return new Promise<number>((resolveExit) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      stopRequested = true;
      (wakeHealer as (() => void) | null)?.();
      log.info({ signal }, 'shutting down');
      healing
        .then(async (h) => {
          await h?.watcher?.stop();
          await h?.healer?.stop();
          await h?.ks.close();
        })
        .then(() => storageNode.stop())
        .then(
        () => resolveExit(0),
        (err: unknown) => {
          log.error({ err }, 'shutdown failed');
          resolveExit(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

type Metric = { name: string; type: 'counter' | 'gauge'; help: string; value: number };

/** /metrics figures of the work a node runs beside serving: self-heal passes and the moves it carries on. */
export function backgroundMetrics(healer: Healer | null, watcher: MoveWatcher | null, now = Date.now()): Metric[] {
  const out: Metric[] = [];
  if (healer) {
    const t = healer.totals;
    const cur = healer.current;
    out.push(
      { name: 'quorumfs_heal_passes_total', type: 'counter', help: 'Self-heal passes finished.', value: healer.passes },
      { name: 'quorumfs_heal_records_checked_total', type: 'counter', help: 'Records checked by finished self-heal passes.', value: t.recordsChecked },
      { name: 'quorumfs_heal_records_repaired_total', type: 'counter', help: 'Records repaired by self-heal.', value: t.recordsRepaired },
      { name: 'quorumfs_heal_chunks_copied_total', type: 'counter', help: 'Chunk copies made by self-heal.', value: t.chunksCopied },
      { name: 'quorumfs_heal_bytes_copied_total', type: 'counter', help: 'Bytes of the chunk copies made by self-heal.', value: t.bytesCopied },
      { name: 'quorumfs_heal_ranges_agreed_total', type: 'counter', help: 'Pages of records another replica matched by range digest.', value: t.rangesAgreed },
      { name: 'quorumfs_heal_ranges_scanned_total', type: 'counter', help: 'Pages of records compared key by key (their digests differed).', value: t.rangesScanned },
      { name: 'quorumfs_heal_running', type: 'gauge', help: '1 while a self-heal pass runs.', value: cur ? 1 : 0 },
      { name: 'quorumfs_heal_pass_records_checked', type: 'gauge', help: 'Records the running self-heal pass has checked so far.', value: cur?.counts.recordsChecked ?? 0 },
      { name: 'quorumfs_heal_pass_seconds', type: 'gauge', help: 'How long the running self-heal pass has run.', value: cur ? (now - cur.startedAt) / 1000 : 0 },
    );
  }
  if (watcher) {
    const p = watcher.progress;
    out.push(
      { name: 'quorumfs_mover_checks_total', type: 'counter', help: 'Times this node looked for a membership change left without progress.', value: watcher.checks },
      { name: 'quorumfs_mover_changes_total', type: 'counter', help: 'Membership changes this node carried through.', value: watcher.moves },
      { name: 'quorumfs_mover_running', type: 'gauge', help: '1 while this node moves data for a membership change.', value: p ? 1 : 0 },
      { name: 'quorumfs_mover_records_rewritten', type: 'gauge', help: 'Records the running move has rewritten so far.', value: p?.recordsRewritten ?? 0 },
      { name: 'quorumfs_mover_chunks_copied', type: 'gauge', help: 'Chunks the running move has copied so far.', value: p?.chunksCopied ?? 0 },
      { name: 'quorumfs_mover_bytes_copied', type: 'gauge', help: 'Chunk bytes the running move has copied so far.', value: p?.bytesCopied ?? 0 },
    );
  }
  return out;
}

function parseListenFlag(v: string): { host: string; port: number } {
  try {
    return parseListen(v, '--listen');
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** --chunk-writes direct|buffered (default direct); the old --direct-writes asks for direct. */
export function parseChunkWrites(mode: string | undefined, oldDirectFlag: boolean): boolean {
  if (mode === undefined) return true;
  if (mode === 'direct') return true;
  if (mode === 'buffered') {
    if (oldDirectFlag) throw new UsageError('--direct-writes and --chunk-writes buffered contradict each other');
    return false;
  }
  throw new UsageError(`--chunk-writes must be direct or buffered, not ${JSON.stringify(mode)}`);
}
