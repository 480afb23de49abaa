// The composition root: parses the command line and wires the layers.
import './threadpool.js';
import { ConfigError } from './config.js';
import { KEYGEN_HELP, keygenCommand } from './cmd-keygen.js';
import { NODE_HELP, nodeCommand } from './cmd-node.js';
import { DEV_HELP, devCommand } from './cmd-dev.js';
import { STATUS_HELP, statusCommand } from './cmd-status.js';
import { FORMAT_HELP, formatCommand } from './cmd-format.js';
import { MOUNT_HELP, UMOUNT_HELP, mountCommand, umountCommand } from './cmd-mount.js';
import { REPAIR_HELP, repairCommand } from './cmd-repair.js';
import { SCRUB_HELP, scrubCommand } from './cmd-scrub.js';
import { FSCK_HELP, fsckCommand } from './cmd-fsck.js';
import { GC_HELP, gcCommand } from './cmd-gc.js';
import { UsageError } from './usage.js';
import { VERSION } from './version.js';
import { QfsError } from '../util/errors.js';

interface Command {
  summary: string;
  help: string;
  run(args: string[]): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  dev: { summary: 'run a three-node cluster on loopback for a first try', help: DEV_HELP, run: devCommand },
  node: { summary: 'run one storage node', help: NODE_HELP, run: nodeCommand },
  format: { summary: 'write the superblock and root directory', help: FORMAT_HELP, run: formatCommand },
  mount: { summary: 'mount the filesystem (serves it until unmounted)', help: MOUNT_HELP, run: mountCommand },
  umount: { summary: 'unmount a quorumfs mount', help: UMOUNT_HELP, run: umountCommand },
  status: { summary: 'show nodes, health, capacity and replication', help: STATUS_HELP, run: statusCommand },
  repair: { summary: 'restore R copies of every record and chunk', help: REPAIR_HELP, run: repairCommand },
  scrub: { summary: 'verify every chunk copy; replace bad ones from a good replica', help: SCRUB_HELP, run: scrubCommand },
  fsck: { summary: 'check the filesystem\'s records; --repair fixes what it can', help: FSCK_HELP, run: fsckCommand },
  gc: { summary: 'reclaim unreferenced chunks, orphans and finished deletes', help: GC_HELP, run: gcCommand },
  keygen: { summary: 'write a new cluster secret file', help: KEYGEN_HELP, run: keygenCommand },
};

function mainHelp(): string {
  const rows = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `quorumfs ${VERSION}: a distributed POSIX filesystem\n\nusage: quorumfs COMMAND [options]\n\n${rows.join('\n')}\n\nquorumfs COMMAND --help shows a command's options.`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(mainHelp() + '\n');
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(VERSION + '\n');
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`quorumfs: unknown command ${JSON.stringify(name)}; run quorumfs --help\n`);
    return 2;
  }
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(command.help + '\n');
    return 0;
  }
  try {
    return await command.run(args);
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError) {
      process.stderr.write(`quorumfs ${name}: ${err.message}\n`);
      return 2;
    }
    if (err instanceof QfsError) {
      process.stderr.write(`quorumfs ${name}: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(`quorumfs ${name}: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // A handle left open by a library must not keep a finished command alive.
    setTimeout(() => process.exit(code), 3000).unref();
  },
  (err: unknown) => {
    process.stderr.write(`quorumfs: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
