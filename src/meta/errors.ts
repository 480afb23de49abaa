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
  | 'EROFS';

export class FsError extends Error {
  constructor(
    readonly errno: Errno,
    message?: string,
  ) {
    super(message ? `${errno}: ${message}` : errno);
    this.name = 'FsError';
  }
}

export function isFsError(e: unknown, errno?: Errno): e is FsError {
  return e instanceof FsError && (errno === undefined || e.errno === errno);
}
