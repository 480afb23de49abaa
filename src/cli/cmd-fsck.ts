import { fsck, type Finding } from '../meta/fsck.js';
import { createRootLogger } from '../util/log.js';
import { Progress } from './progress.js';
import { parseDurationFlag, parseFlags, requireFlag } from './usage.js';
import { openCluster } from './wiring.js';

export const FSCK_HELP = `usage: quorumfs fsck --config FILE [--repair] [--grace DURATION] [--json]

Checks the whole filesystem: names that point at no inode or at the wrong
type, chunk maps naming chunks that no node holds, link counts that disagree
with the names, directories reached twice, undecodable records, renames a
crash interrupted, and what no name reaches (orphans: gc reclaims them).
Read-only unless --repair. Safe while the filesystem is mounted and busy:
what it finds is confirmed with fresh reads, and anything changed within the
grace period counts as work in flight and is skipped.

  --repair          fix what can be fixed: drop names of missing inodes, fix
                    entry types, link counts, parents and chunk counts, finish
                    or undo interrupted renames; orphans are left to gc, lost
                    chunks cannot be fixed and are reported
  --grace DURATION  what changed more recently is in flight (default 60s)
  --json            print the report as JSON

Exit code 0 when the filesystem is clean (no errors; leftovers such as
orphans are listed but do not count), 1 when errors remain.`;

function line(f: Finding): string {
  return `  ${f.severity === 'error' ? 'ERROR' : 'left '} ${f.kind.padEnd(18)} ${f.where}: ${f.detail}${f.repair ? ` [${f.repair}]` : ''}`;
}

export async function fsckCommand(args: string[]): Promise<number> {
  const { values } = parseFlags(args, {
    config: { type: 'string' },
    repair: { type: 'boolean' },
    grace: { type: 'string' },
    json: { type: 'boolean' },
  });
  const configFile = requireFlag(values.config, '--config');
  const graceMs = parseDurationFlag(values.grace, '--grace') ?? 60_000;
  const log = createRootLogger({ level: 'warn' });
  const { config, ks } = await openCluster(configFile, log, { hintIntervalMs: 0 });
  const abort = new AbortController();
  const onSignal = (): void => abort.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const progress = new Progress();
  try {
    const down = await ks.waitForPeers(config.timeouts.connectMs);
    if (down.length > 0) process.stderr.write(`fsck: nodes down: ${down.join(', ')}\n`);
    const report = await fsck(ks, {
      repair: values.repair === true,
      graceMs,
      signal: abort.signal,
      onProgress: (what, n) => progress.update(`fsck: ${n} ${what} read`),
    });
    progress.done();
    if (values.json) {
      process.stdout.write(JSON.stringify({ ...report, nodesDown: down }, null, 2) + '\n');
    } else {
      const c = report.counts;
      process.stdout.write(
        `fsck: ${c.directories} directories, ${c.files} files, ${c.names} names, ${c.chunksReferenced} chunk references, ${c.chunksStored} chunks stored\n`,
      );
      for (const f of report.findings.slice(0, 200)) process.stdout.write(line(f) + '\n');
      if (report.findings.length > 200) process.stdout.write(`  ... and ${report.findings.length - 200} more (--json lists all)\n`);
      process.stdout.write(
        `fsck: ${report.clean ? 'clean' : 'NOT CLEAN'}: ${report.errors} errors, ${report.leftovers} leftovers, ${report.inFlight} in flight (skipped)` +
          (values.repair ? `; ${report.repaired} repaired, ${report.unrepaired} could not be` : '') +
          '\n',
      );
    }
    return report.clean ? 0 : 1;
  } catch (err) {
    progress.done();
    if (abort.signal.aborted) {
      process.stderr.write('fsck interrupted\n');
      return 130;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await ks.close();
  }
}
