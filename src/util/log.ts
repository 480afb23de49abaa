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
