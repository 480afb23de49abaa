import { FsMeta } from '../meta/fs-meta.js';
import { isFsError } from '../meta/errors.js';
import { createRootLogger } from '../util/log.js';
import { UsageError, parseFlags, parseIntFlag, requireFlag } from './usage.js';
import { openCluster } from './wiring.js';
import { loadConfig, requireEveryNode } from './config.js';

export const FORMAT_HELP = `usage: quorumfs format --config FILE [--chunk-size BYTES] [--force]

Writes the superblock and an empty root directory. Refuses a cluster that is
already formatted unless --force is given (--force empties the root; the old
records and chunks become garbage for quorumfs gc).

  --chunk-size BYTES   size of file chunks, a power of two from 64 KiB to 16 MiB (default 1 MiB)`;

export async function formatCommand(args: string[]): Promise<number> {
  const { values } = parseFlags(args, { config: { type: 'string' }, 'chunk-size': { type: 'string' }, force: { type: 'boolean' } });
  const configFile = requireFlag(values.config, '--config');
  const chunkSize = parseIntFlag(values['chunk-size'], '--chunk-size', 64 * 1024, 16 * 1024 * 1024) ?? 1024 * 1024;
  if ((chunkSize & (chunkSize - 1)) !== 0) throw new UsageError('--chunk-size: must be a power of two');
  const log = createRootLogger({ level: 'warn' });
  requireEveryNode(await loadConfig(configFile));
  const { config, ks } = await openCluster(configFile, log, { hintIntervalMs: 0 });
  try {
    const down = await ks.waitForPeers(config.timeouts.connectMs);
    if (down.length > 0) process.stderr.write(`format: nodes down: ${down.join(', ')} (a majority of each key's nodes is enough)\n`);
    try {
      const sb = await FsMeta.format(ks, { chunkSize, replication: config.replication, force: values.force ?? false, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 });
      process.stdout.write(`formatted cluster ${config.name}: filesystem ${sb.fsId}, chunk size ${chunkSize}, R=${config.replication}\n`);
      return 0;
    } catch (err) {
      if (isFsError(err, 'EEXIST')) {
        process.stderr.write(`format: cluster ${config.name} is already formatted; --force replaces it (its files become unreachable)\n`);
        return 1;
      }
      throw err;
    }
  } finally {
    await ks.close();
  }
}
