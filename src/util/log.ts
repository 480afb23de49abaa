// One root pino logger per process; every component takes a child with its bindings.
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export function createRootLogger(options: { level?: LevelWithSilent; name?: string } = {}): Logger {
  const level = options.level ?? (process.env['QUORUMFS_LOG_LEVEL'] as LevelWithSilent | undefined) ?? 'info';
  return pino({ name: options.name ?? 'quorumfs', level });
}

/** A logger that drops everything: for unit tests of one layer. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/**
 * For the long-running processes (mount, node): a promise that fails with
 * nobody waiting for it is a bug, but by Node's default it kills the process,
 * and a mount that dies leaves every program using it with ENOTCONN (a node
 * that dies takes a replica away). It is logged at error level with its
 * stack, as "internal error", and the process goes on; the e2e tests look
 * for that line.
 */
export function logUnhandledRejections(log: Logger): void {
  process.on('unhandledRejection', (reason: unknown) => {
    log.error({ err: reason instanceof Error ? (reason.stack ?? reason.message) : String(reason) }, 'internal error: a promise failed with nothing waiting for it (a bug; the process goes on)');
  });
}
