// One error type for every operating error that crosses a layer. The `code` is
// stable: it travels on the wire as a status byte and the filesystem layers map
// it to an errno. Programmer mistakes stay plain TypeErrors/RangeErrors.

export const ERROR_CODES = [
  'unavailable', // not enough replicas or a peer unreachable; retry later
  'timeout', // the deadline passed before an answer came
  'conflict', // a CASPaxos ballot lost; the proposer retries higher
  'not_found',
  'bad_request', // a malformed or out-of-bounds request; never retried
  'no_space', // the node's disk is (nearly) full
  'corrupt', // bytes do not match their hash
  'auth', // the peer could not prove it holds the cluster secret
  'busy', // a bounded queue is full
  'closed', // the connection or store was closed
  'internal', // anything else: logged with its stack where it happened
  'fenced', // a write under a lease term that is no longer current (src/util/lease.ts); never retried
  'stale_epoch', // the node knows a newer membership than the request's epoch: learn it, then retry under it
  'epoch_ahead', // the request's epoch is newer than the node's membership: hand the node the membership, then retry
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

const RETRYABLE: ReadonlySet<ErrorCode> = new Set(['unavailable', 'timeout', 'conflict', 'busy', 'closed', 'stale_epoch']);

export class QfsError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'QfsError';
    this.code = code;
  }

  get retryable(): boolean {
    return RETRYABLE.has(this.code);
  }
}

export function isQfsError(err: unknown, code?: ErrorCode): err is QfsError {
  return err instanceof QfsError && (code === undefined || err.code === code);
}

/** The funnel: any thrown value becomes a QfsError; unknown ones become `internal`. */
export function toQfsError(err: unknown): QfsError {
  if (err instanceof QfsError) return err;
  const e = err as NodeJS.ErrnoException | undefined;
  if (e && (e.code === 'ENOSPC' || e.code === 'EDQUOT')) return new QfsError('no_space', e.message, { cause: err });
  if (e && e.name === 'AbortError') return new QfsError('timeout', e.message, { cause: err });
  const message = err instanceof Error ? err.message : String(err);
  return new QfsError('internal', message, { cause: err });
}

export function errorCodeToByte(code: ErrorCode): number {
  return ERROR_CODES.indexOf(code) + 1;
}

export function byteToErrorCode(byte: number): ErrorCode {
  return ERROR_CODES[byte - 1] ?? 'internal';
}
