import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseScrubCheckpoint, scrubCluster, scrubRecords, type ScrubCheckpoint, type ScrubCounts } from '../cluster/scrub.js';
import { createRootLogger } from '../util/log.js';
import { Progress } from './progress.js';
import { parseFlags, requireFlag, UsageError } from './usage.js';
import { openCluster } from './wiring.js';

export const SCRUB_HELP = `usage: quorumfs scrub --config FILE [--node ID]... [--rate MB/s] [--state FILE] [--restart] [--json]

Verifies the bytes of every chunk copy: each node re-hashes the chunks it
holds; a copy that fails its hash is moved to the node's quarantine/ directory
and replaced by a verified copy from another replica. Nodes are scrubbed in
parallel, a few chunks at a time each. Safe while the filesystem is mounted and
in use. Ctrl-C stops once the chunks being checked are done (and repaired);
running it again resumes from there.

  --node ID      scrub this node only (repeatable); default every node
  --rate MB/s    most megabytes (10^6 bytes) each node hashes per second,
                 estimated from its average chunk size; default no limit
  --state FILE   checkpoint file (default $XDG_STATE_HOME/quorumfs/scrub-<cluster>.json,
                 scrub-<cluster>-<nodes>.json with --node)
  --restart      ignore the checkpoint and start from the beginning
  --json         print the summary as JSON

Exit code 0 when every corrupt copy was replaced and every node was scrubbed;
1 when a copy could not be replaced or verified, or a node was down.`;

function defaultStateFile(cluster: string, nodes: readonly string[] | undefined): string {
  const base = process.env['XDG_STATE_HOME'] || join(homedir(), '.local', 'state');
  const suffix = nodes && nodes.length > 0 ? `-${[...nodes].sort().join(',')}` : '';
  return join(base, 'quorumfs', `scrub-${cluster}${suffix}.json`);
}

function progressLine(c: ScrubCounts): string {
  const pct = c.expected > 0 ? ` (${Math.min(100, Math.floor((100 * c.scanned) / c.expected))}%)` : '';
  return `scrub ${c.scanned}${c.expected > 0 ? `/${c.expected}` : ''} copies${pct}: ${c.corrupt} corrupt, ${c.repaired} repaired` + (c.failed ? `, ${c.failed} not` : '');
}

export async function scrubCommand(args: string[]): Promise<number> {
  const { values } = parseFlags(args, {
    config: { type: 'string' },
    node: { type: 'string', multiple: true },
    rate: { type: 'string' },
    state: { type: 'string' },
    restart: { type: 'boolean' },
    json: { type: 'boolean' },
  });
  const configFile = requireFlag(values.config, '--config');
  let rateBytesPerSec: number | undefined;
  if (values.rate !== undefined) {
    const mb = Number(values.rate);
    if (!Number.isFinite(mb) || mb <= 0) throw new UsageError(`--rate: expected megabytes per second above 0, got ${JSON.stringify(values.rate)}`);
    rateBytesPerSec = mb * 1e6;
  }
  const nodes = values.node && values.node.length > 0 ? [...new Set(values.node)] : undefined;
  const log = createRootLogger({ level: 'warn' });
  const { config, ks } = await openCluster(configFile, log, { hintIntervalMs: 0 });
  const abort = new AbortController();
  const onSigint = (): void => abort.abort(new Error('interrupted'));
  const progress = new Progress();
  const failures: string[] = [];
  let failuresMore = 0;
  try {
    const unknown = (nodes ?? []).filter((id) => !ks.peer(id));
    if (unknown.length > 0) throw new UsageError(`--node: no node ${unknown.join(', ')} in the config (nodes: ${ks.peers.map((p) => p.id).join(', ')})`);
    const stateFile = values.state ?? defaultStateFile(config.name, nodes);
    let checkpoint: ScrubCheckpoint | null = null;
    if (!values.restart) {
      const text = await readFile(stateFile, 'utf8').catch(() => null);
      if (text !== null) {
        try {
          checkpoint = parseScrubCheckpoint(JSON.parse(text));
        } catch {
          checkpoint = null;
        }
        if (!checkpoint) process.stderr.write(`scrub: ignoring ${stateFile}: not a scrub checkpoint\n`);
      }
    }
    process.once('SIGINT', onSigint);
    process.once('SIGTERM', onSigint);
    const down = await ks.waitForPeers(config.timeouts.connectMs);
    const downHere = down.filter((id) => !nodes || nodes.includes(id));
    if (downHere.length > 0) process.stderr.write(`scrub: nodes down, skipped: ${downHere.join(', ')}\n`);
    if (checkpoint) {
      const resumed = Object.entries(checkpoint.nodes)
        .filter(([id]) => !nodes || nodes.includes(id))
        .map(([id, n]) => `${id} ${n.done ? 'done' : n.cursor ? `from ${n.cursor.slice(0, 12)}…` : 'from the start'}`);
      process.stderr.write(`scrub: resuming (${resumed.join(', ')})\n`);
    }
    await mkdir(dirname(stateFile), { recursive: true });
    let counts: ScrubCounts;
    try {
      counts = await scrubCluster(ks, {
        ...(nodes ? { nodes } : {}),
        ...(rateBytesPerSec !== undefined ? { rateBytesPerSec } : {}),
        signal: abort.signal,
        checkpoint,
        saveCheckpoint: async (c) => {
          await writeFile(`${stateFile}.tmp`, JSON.stringify(c));
          await rename(`${stateFile}.tmp`, stateFile);
        },
        onProgress: (_node, c) => progress.update(progressLine(c)),
        onFailure: (what, error) => {
          if (failures.length < 20) failures.push(`${what}: ${error}`);
          else failuresMore++;
        },
      });
    } catch (err) {
      progress.done();
      if (abort.signal.aborted) {
        process.stderr.write(`scrub interrupted; run it again to resume (checkpoint ${stateFile})\n`);
        return 130;
      }
      throw err;
    }
    progress.done();
    await rm(stateFile, { force: true });
    progress.update('scrub: record states');
    const records = await scrubRecords(ks, {
      ...(nodes ? { nodes } : {}),
      signal: abort.signal,
      onFailure: (what, error) => {
        if (failures.length < 20) failures.push(`${what}: ${error}`);
        else failuresMore++;
      },
    });
    progress.done();
    if (values.json) {
      const { expected: _expected, ...summary } = counts;
      process.stdout.write(JSON.stringify({ ...summary, records, failureSamples: failures }, null, 2) + '\n');
    } else {
      process.stdout.write(
        `scrub done: ${counts.scanned} chunk copies checked on ${Object.keys(counts.nodes).length - counts.nodesDown.length} nodes; ` +
          `${counts.corrupt} corrupt, ${counts.repaired} replaced from a good replica, ${counts.failed} not replaced; ` +
          `${counts.errors} could not be checked; ${counts.missing} deleted meanwhile` +
          (counts.nodesDown.length ? `; nodes down: ${counts.nodesDown.join(', ')}` : '') +
          '\n',
      );
      process.stdout.write(`records: ${records.checked} states checked; ${records.lost} failed their checksum, ${records.healed} healed from the replicas, ${records.failed} not healed\n`);
      for (const [id, n] of Object.entries(counts.nodes)) {
        const state = counts.nodesDown.includes(id) ? '  (down: not scrubbed or not finished)' : '';
        process.stdout.write(`  ${id.padEnd(12)} ${n.scanned} checked, ${n.corrupt} corrupt, ${n.repaired} replaced, ${n.failed} not replaced${state}\n`);
      }
      for (const f of failures) process.stdout.write(`  ${f}\n`);
      if (failuresMore > 0) process.stdout.write(`  … and ${failuresMore} more\n`);
    }
    return counts.failed === 0 && counts.errors === 0 && records.failed === 0 && counts.nodesDown.length === 0 ? 0 : 1;
  } finally {
    progress.done();
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
    await ks.close();
  }
}
