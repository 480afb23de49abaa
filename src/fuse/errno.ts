// The one funnel from any error to an errno: POSIX errors keep their name,
// key-space failures become ENOSPC (a node is full) or EIO, and anything
// unexpected is logged with its stack once, here.
import { constants } from 'node:os';
import { FsError } from '../meta/errors.js';
import { QfsError } from '../util/errors.js';
import type { Logger } from '../util/log.js';

const ERRNO = constants.errno as Record<string, number | undefined>;

export function errnoOf(err: unknown, log?: Logger): number {
  if (err instanceof FsError) {
    // The vfs turns key-space failures into FsError('EIO') with the cause's
    // message: an EIO a program sees is always worth a line in the log.
    if (err.errno === 'EIO') log?.warn({ msg: err.message }, 'answered EIO');
    return ERRNO[err.errno] ?? constants.errno.EIO;
  }
  if (err instanceof QfsError) {
    if (err.code === 'no_space') return constants.errno.ENOSPC;
    if (err.code === 'internal') log?.error({ err }, 'internal error');
    else log?.warn({ code: err.code, msg: err.message }, 'cluster error answered EIO');
    return constants.errno.EIO;
  }
  log?.error({ err }, 'unexpected error answered EIO');
  return constants.errno.EIO;
}
