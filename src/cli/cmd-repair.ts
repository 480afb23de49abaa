import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { repairCluster, type RepairCheckpoint } from '../cluster/repair.js';
import { createRootLogger } from '../util/log.js';
import { Progress } from './progress.js';
import { parseFlags, requireFlag } from './usage.js';
import { openCluster } from './wiring.js';

export const REPAIR_HELP = `usage: quorumfs repair --config FILE [--state FILE] [--restart] [--json]

Restores R copies of every record and chunk: walks every node's records and
chunks, rewrites records whose replicas disagree or miss them (a CASPaxos round
that writes the chosen value to all replicas), and copies missing chunks from a
verified replica. Safe while the filesystem is in use; idempotent. Ctrl-C
stops after the current page; running it again resumes from there.

  --state FILE   checkpoint file (default $XDG_STATE_HOME/quorumfs/repair-<cluster>.json)
  --restart      ignore the checkpoint and start from the beginning
  --json         print the summary as JSON

Exit code 0 when everything was repaired, 1 when something could not be.`;

function defaultStateFile(cluster: string): string {
  const base = process.env['XDG_STATE_HOME'] || join(homedir(), '.local', 'state');
  return join(base, 'quorumfs', `repair-${cluster}.json`);
}

export async function repairCommand(args: string[]): Promise<number> {
  const { values } = parseFlags(args, {
    config: { type: 'string' },
    state: { type: 'string' },
    restart: { type: 'boolean' },
    json: { type: 'boolean' },
  });
  const configFile = requireFlag(values.config, '--config');
  const log = createRootLogger({ level: 'warn' });
  const { config, ks } = await openCluster(configFile, log, { hintIntervalMs: 0 });
  const stateFile = values.state ?? defaultStateFile(config.name);
  let checkpoint: RepairCheckpoint | null = null;
  if (!values.restart) {
    try {
      checkpoint = JSON.parse(await readFile(stateFile, 'utf8')) as RepairCheckpoint;
      if (checkpoint.phase === 'done') checkpoint = null;
    } catch {
      checkpoint = null;
    }
  }
  const abort = new AbortController();
  const onSigint = (): void => abort.abort(new Error('interrupted'));
  process.once('SIGINT', onSigint);
  process.once('SIGTERM', onSigint);
  const progress = new Progress();
  const failures: string[] = [];
  try {
    const down = await ks.waitForPeers(config.timeouts.connectMs);
    if (down.length > 0) process.stderr.write(`repair: nodes down, skipped: ${down.join(', ')}\n`);
    if (checkpoint) process.stderr.write(`repair: resuming from ${checkpoint.phase} on node ${ks.peers[checkpoint.node]?.id ?? checkpoint.node}\n`);
    await mkdir(dirname(stateFile), { recursive: true });
    const counts = await repairCluster(ks, {
      signal: abort.signal,
      checkpoint,
      saveCheckpoint: async (c) => {
        await writeFile(`${stateFile}.tmp`, JSON.stringify(c));
        await rename(`${stateFile}.tmp`, stateFile);
      },
      onProgress: (what, c) =>
        progress.update(`repair ${what}: ${c.recordsScanned} records (${c.recordsRepaired} repaired), ${c.chunksScanned} chunks (${c.chunksRepaired} repaired)`),
      onFailure: (what, error) => {
        if (failures.length < 20) failures.push(`${what}: ${error}`);
      },
    });
    progress.done();
    await rm(stateFile, { force: true });
    if (values.json) {
      process.stdout.write(JSON.stringify({ ...counts, failureSamples: failures }, null, 2) + '\n');
    } else {
      process.stdout.write(
        `repair done: ${counts.recordsScanned} records checked, ${counts.recordsRepaired} repaired, ${counts.tombstonesPurged} finished deletes reclaimed; ` +
          `${counts.chunksScanned} chunks checked, ${counts.chunksRepaired} copied; ${counts.failures} failures` +
          (counts.nodesDown.length ? `; nodes down: ${counts.nodesDown.join(', ')}` : '') +
          '\n',
      );
      for (const f of failures) process.stdout.write(`  ${f}\n`);
    }
    return counts.failures === 0 && counts.nodesDown.length === 0 ? 0 : 1;
  } catch (err) {
    progress.done();
    if (abort.signal.aborted) {
      process.stderr.write(`repair interrupted; run it again to resume (checkpoint ${stateFile})\n`);
      return 130;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
    await ks.close();
  }
}
