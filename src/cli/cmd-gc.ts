import { DEFAULT_GC_GRACE_MS, gc, type GcCounts } from '../meta/gc.js';
import { createRootLogger } from '../util/log.js';
import { Progress, formatBytes } from './progress.js';
import { parseDurationFlag, parseFlags, requireFlag } from './usage.js';
import { openCluster } from './wiring.js';

export const GC_HELP = `usage: quorumfs gc --config FILE [--grace DURATION] [--dry-run] [--json]

Reclaims space: marks every chunk that a chunk map references and deletes the
other chunks on every node; reclaims orphans (inodes no name reaches, chunk
maps of deleted files) once they have stayed orphans for the grace period;
purges deletes that every replica has recorded. Safe while the filesystem is
mounted and busy: a chunk stored or written again within the grace period is
kept, so data that a mount is writing survives until it is published.
Refuses to delete anything while too many nodes are down to see every
reference.

  --grace DURATION  how long an orphan or unreferenced chunk must stay so
                    (default 1h; it must exceed the longest time a mount keeps
                    written data unpublished, i.e. a file open for writing
                    without fsync or close). 0 only on an idle filesystem.
  --dry-run         count what would be reclaimed; delete nothing
  --json            print the summary as JSON

An orphan is recorded the first time gc sees it and reclaimed by a run at
least the grace period later (with --grace 0, by the same run).
Exit code 0 when everything ran, 1 when something failed or nodes were down.`;

function progressLine(what: string, c: GcCounts): string {
  return `gc ${what}: ${c.records} records, ${c.orphansReclaimed} orphans reclaimed, ${c.chunksScanned} chunks (${c.chunksSwept} swept, ${formatBytes(c.bytesReclaimed)})`;
}

export async function gcCommand(args: string[]): Promise<number> {
  const { values } = parseFlags(args, {
    config: { type: 'string' },
    grace: { type: 'string' },
    'dry-run': { type: 'boolean' },
    json: { type: 'boolean' },
  });
  const configFile = requireFlag(values.config, '--config');
  const graceMs = parseDurationFlag(values.grace, '--grace') ?? DEFAULT_GC_GRACE_MS;
  const log = createRootLogger({ level: 'warn' });
  const { config, ks } = await openCluster(configFile, log, { hintIntervalMs: 0 });
  const abort = new AbortController();
  const onSignal = (): void => abort.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const progress = new Progress();
  const failures: string[] = [];
  try {
    const down = await ks.waitForPeers(config.timeouts.connectMs);
    if (down.length > 0) process.stderr.write(`gc: nodes down (their copies are kept): ${down.join(', ')}\n`);
    const counts = await gc(ks, {
      graceMs,
      dryRun: values['dry-run'] === true,
      signal: abort.signal,
      onProgress: (what, c) => progress.update(progressLine(what, c)),
      onFailure: (what, error) => {
        if (failures.length < 20) failures.push(`${what}: ${error}`);
      },
    });
    progress.done();
    if (values.json) {
      process.stdout.write(JSON.stringify({ ...counts, dryRun: values['dry-run'] === true, graceMs, nodesDown: down, failureSamples: failures }, null, 2) + '\n');
    } else {
      const verb = values['dry-run'] ? 'would reclaim' : 'reclaimed';
      process.stdout.write(
        `gc done: ${counts.records} records, ${counts.orphanGroups} orphans (${counts.candidatesRecorded} newly seen, ${counts.orphansReclaimed} ${values['dry-run'] ? 'due' : 'reclaimed'}, ${counts.recordsDeleted} records deleted); ` +
          `${counts.chunksScanned} chunks, ${counts.chunksReferenced} referenced, ${counts.chunksSwept} unreferenced ${verb} (${counts.copiesSwept} copies), ${counts.chunksTooYoung} kept as too young; ` +
          `${counts.tombstonesPurged} finished deletes purged; ${counts.sessionsDeleted} lock sessions of ended mounts ${values['dry-run'] ? 'to delete' : 'deleted'}, ${counts.sessionsLive} live; ${counts.failures} failures\n` +
          `gc: ${formatBytes(counts.bytesReclaimed)} ${verb}\n`,
      );
      for (const f of failures) process.stdout.write(`  ${f}\n`);
    }
    return counts.failures === 0 && down.length === 0 ? 0 : 1;
  } catch (err) {
    progress.done();
    if (abort.signal.aborted) {
      process.stderr.write('gc interrupted; nothing is half-done (run it again)\n');
      return 130;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await ks.close();
  }
}
