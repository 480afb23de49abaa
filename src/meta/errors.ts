// POSIX errors, named by errno. The fuse layer turns the name into the number;
// everything else (a QfsError from the key space) becomes EIO/ENOSPC there.
export type Errno =
  | 'ENOENT'
  | 'EEXIST'
  | 'ENOTDIR'
  | 'EISDIR'
  | 'ENOTEMPTY'
  | 'EINVAL'
  | 'ENAMETOOLONG'
  | 'EPERM'
  | 'EACCES'
  | 'ENODATA'
  | 'ERANGE'
  | 'E2BIG'
  | 'EBADF'
  | 'EFBIG'
  | 'EIO'
  | 'ENOSPC'
  | 'EMLINK'
  | 'ENOTSUP'
  | 'EXDEV'
  | 'EROFS'
  | 'EAGAIN'
  | 'EINTR'
  | 'ENOLCK';

/** Answers, not faults: a lookup of a missing name is the normal case, so no stack trace is taken for them. */
const ANSWERS: ReadonlySet<Errno> = new Set(['ENOENT', 'EEXIST', 'ENODATA', 'ENOTEMPTY', 'EAGAIN', 'EINTR']);

export class FsError extends Error {
  readonly errno: Errno;
  constructor(errno: Errno, message?: string) {
    const limit = Error.stackTraceLimit;
    if (ANSWERS.has(errno)) Error.stackTraceLimit = 0;
    try {
      super(message ? `${errno}: ${message}` : errno);
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.errno = errno;
    this.name = 'FsError';
  }
}

export function isFsError(e: unknown, errno?: Errno): e is FsError {
  return e instanceof FsError && (errno === undefined || e.errno === errno);
}
