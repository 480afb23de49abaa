import { repairCluster } from '../cluster/repair.js';
import { createRootLogger } from '../util/log.js';
import { formatBytes, Progress } from './progress.js';
import { parseFlags, requireFlag } from './usage.js';
import { openCluster } from './wiring.js';
import { describeChange } from '../util/membership.js';
import { MOVE_PROGRESS_KEY, Mover, decodeMoveProgress, type MoveProgress } from '../cluster/mover.js';

/** One line on a move in progress: how far, how fast, how long still (by the keys and chunks listed so far). */
export function describeMove(p: MoveProgress, now = Date.now()): string {
  const secs = Math.max(0.001, (p.updatedAt - p.startedAt) / 1000);
  const walked = p.recordsListed + p.chunksListed;
  const total = Math.max(walked, p.recordsTotal + p.chunksTotal);
  const left = total - walked;
  const eta = walked > 0 && p.phase !== 'trim' && p.phase !== 'finish' ? `, about ${Math.ceil((left / walked) * secs)} s left` : '';
  const stalled = p.handedToNodes
    ? `; left to the nodes ${Math.round((now - p.updatedAt) / 1000)} s ago`
    : now - p.updatedAt > 30_000
      ? `; no report for ${Math.round((now - p.updatedAt) / 1000)} s: what moved it stopped (the nodes carry it on after their --mover-grace; quorumfs node resume does now)`
      : '';
  return (
    `move (epoch ${p.epoch}, ${p.phase}): records ${p.recordsListed}/${p.recordsTotal} listed, ${p.recordsRewritten} rewritten (${Math.round(p.recordsListed / secs)}/s); ` +
    `chunks ${p.chunksListed}/${p.chunksTotal} listed, ${p.chunksCopied} copied (${(p.bytesCopied / 1048576).toFixed(1)} MiB, ${(p.bytesCopied / 1048576 / secs).toFixed(1)} MiB/s)${eta}${stalled}`
  );
}

/** A node's self-heal pass as its /metrics tell it (null: none running, or /metrics unreadable). */
export interface HealState {
  node: string;
  recordsChecked: number;
  records: number;
  seconds: number;
}

/** Reads a running heal pass out of a node's /metrics text; null when none runs. */
export function healStateOf(node: string, metrics: string): HealState | null {
  const value = (name: string): number | null => {
    const m = new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(metrics);
    return m ? Number(m[1]) : null;
  };
  if (value('quorumfs_heal_running') !== 1) return null;
  return { node, recordsChecked: value('quorumfs_heal_pass_records_checked') ?? 0, records: value('quorumfs_records') ?? 0, seconds: value('quorumfs_heal_pass_seconds') ?? 0 };
}

/** One line on a node's running heal pass: how far, how fast, how long still. */
export function describeHeal(h: HealState): string {
  const rate = h.seconds > 0 ? h.recordsChecked / h.seconds : 0;
  const left = Math.max(0, h.records - h.recordsChecked);
  const eta = rate > 0 ? `, about ${Math.ceil(left / rate)} s left` : '';
  return `heal (${h.node}): records ${h.recordsChecked}/${h.records} checked (${Math.round(rate)}/s)${eta}, then its chunks`;
}

/** The running heal pass of a node, from its /metrics over HTTP(S); null when none runs or the page cannot be read. */
async function healOf(node: string, url: string): Promise<HealState | null> {
  try {
    const res = await fetch(`${url.replace(/^ws/, 'http')}/metrics`, { signal: AbortSignal.timeout(2000) });
    return res.ok ? healStateOf(node, await res.text()) : null;
  } catch {
    return null; // e.g. wss:// with a private CA this process does not trust: the line is left out
  }
}

export const STATUS_HELP = `usage: quorumfs status --config FILE [--deep] [--json]

The membership and its epoch, a move in progress and each node's running
self-heal pass (how far, how fast, time left); one row per node: up or down,
latency, disk used and free, chunk and record counts, version; then totals.
Exit code 0 when every node is up, 1 otherwise.

  --deep   also count under-replicated records and chunks (walks every node)
  --json   machine-readable output`;

interface NodeRow {
  id: string;
  url: string;
  up: boolean;
  latencyMs: number | null;
  version: string | null;
  totalBytes: number | null;
  freeBytes: number | null;
  chunks: number | null;
  chunkBytes: number | null;
  records: number | null;
  error: string | null;
}

export async function statusCommand(args: string[]): Promise<number> {
  const { values } = parseFlags(args, { config: { type: 'string' }, deep: { type: 'boolean' }, json: { type: 'boolean' } });
  const configFile = requireFlag(values.config, '--config');
  const log = createRootLogger({ level: 'silent' });
  const { config, ks } = await openCluster(configFile, log, { hintIntervalMs: 0 });
  try {
    await ks.waitForPeers(config.timeouts.connectMs);
    const rows: NodeRow[] = await Promise.all(
      ks.peers.map(async (p): Promise<NodeRow> => {
        const t0 = performance.now();
        try {
          const s = await p.client.stat({ timeoutMs: config.timeouts.requestMs, connectWaitMs: 0 });
          return {
            id: p.id,
            url: p.url,
            up: true,
            latencyMs: Math.round((performance.now() - t0) * 10) / 10,
            version: s.version,
            totalBytes: s.totalBytes,
            freeBytes: s.freeBytes,
            chunks: s.chunks,
            chunkBytes: s.chunkBytes,
            records: s.records,
            error: null,
          };
        } catch (err) {
          return { id: p.id, url: p.url, up: false, latencyMs: null, version: null, totalBytes: null, freeBytes: null, chunks: null, chunkBytes: null, records: null, error: (err as Error).message };
        }
      }),
    );
    // The record, not what the nodes were told: a change whose command died before telling them is shown too.
    const membership = await new Mover(ks, { log }).read().catch(() => ks.membership);
    const move = membership.transition ? decodeMoveProgress(await ks.read(MOVE_PROGRESS_KEY).catch(() => null)) : null;
    const heals = (await Promise.all(rows.filter((r) => r.up).map((r) => healOf(r.id, r.url)))).filter((h): h is HealState => h !== null);
    let deep: { underReplicatedRecords: number; underReplicatedChunks: number; failures: number } | null = null;
    if (values.deep) {
      const progress = new Progress();
      const c = await repairCluster(ks, { dryRun: true, onProgress: (what, n) => progress.update(`checking ${what}: ${n.recordsScanned} records, ${n.chunksScanned} chunks`) });
      progress.done();
      deep = { underReplicatedRecords: c.recordsRepaired, underReplicatedChunks: c.chunksRepaired, failures: c.failures };
    }
    const up = rows.filter((r) => r.up).length;
    const sum = (f: (r: NodeRow) => number | null) => rows.reduce((a, r) => a + (f(r) ?? 0), 0);
    const totals = {
      nodes: rows.length,
      up,
      chunkBytes: sum((r) => r.chunkBytes),
      freeBytes: sum((r) => r.freeBytes),
      totalBytes: sum((r) => r.totalBytes),
      // every byte is stored R times
      logicalBytes: Math.floor(sum((r) => r.chunkBytes) / config.replication),
    };
    if (values.json) {
      process.stdout.write(JSON.stringify({ cluster: config.name, replication: config.replication, membership, move, heal: heals, nodes: rows, totals, ...(deep ? { deep } : {}) }, null, 2) + '\n');
    } else {
      const head = ['node', 'state', 'latency', 'used', 'free', 'chunks', 'records', 'version'];
      const table = rows.map((r) => [
        r.id,
        r.up ? 'up' : 'DOWN',
        r.latencyMs === null ? '-' : `${r.latencyMs} ms`,
        r.chunkBytes === null ? '-' : formatBytes(r.chunkBytes),
        r.freeBytes === null ? '-' : formatBytes(r.freeBytes),
        r.chunks === null ? '-' : String(r.chunks),
        r.records === null ? '-' : String(r.records),
        r.version ?? '-',
      ]);
      const widths = head.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
      const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
      const m = membership;
      const change = m.transition ? `a change in progress: ${describeChange(m.transition.change)} (${m.transition.phase})` : 'stable';
      const queued = m.queued.length > 0 ? `, ${m.queued.length} queued` : '';
      const moveLine = move && move.phase !== 'done' ? describeMove(move) : null;
      const out = [`cluster ${config.name}: ${up}/${rows.length} nodes up, R=${m.r}, membership epoch ${m.epoch}, ${change}${queued}`, line(head), ...table.map(line)];
      out.splice(1, 0, ...(moveLine ? [moveLine] : []), ...heals.map(describeHeal));
      for (const r of rows) if (r.error) out.push(`  ${r.id}: ${r.error}`);
      out.push(`total: ${formatBytes(totals.chunkBytes)} stored (${formatBytes(totals.logicalBytes)} of data at R=${config.replication}), ${formatBytes(totals.freeBytes)} free`);
      if (deep) out.push(`under-replicated: ${deep.underReplicatedRecords} records, ${deep.underReplicatedChunks} chunks${deep.failures ? ` (${deep.failures} could not be checked)` : ''}`);
      process.stdout.write(out.join('\n') + '\n');
    }
    return up === rows.length ? 0 : 1;
  } finally {
    await ks.close();
  }
}
