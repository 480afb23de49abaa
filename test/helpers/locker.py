#!/usr/bin/env python3
# A process that takes fcntl and flock locks on one file when told to, for the
# lock tests (test/helpers/locker.ts): one JSON command per line on stdin, one
# JSON answer per line on stdout, in order. POSIX locks belong to a process, so
# each locker is one lock owner; "open" gives it more descriptors of the file
# (flock locks belong to a descriptor's open file description).
import errno
import fcntl
import json
import os
import signal
import struct
import sys

TYPES = {'read': fcntl.F_RDLCK, 'write': fcntl.F_WRLCK, 'unlock': fcntl.F_UNLCK}
NAMES = {v: k for k, v in TYPES.items()}
CMDS = {'setlk': fcntl.F_SETLK, 'setlkw': fcntl.F_SETLKW, 'getlk': fcntl.F_GETLK}
# struct flock on Linux x86_64 / aarch64: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid (32 bytes)
FLOCK = 'hhqqi4x'



def interrupted(_sig, _frame):
    # raised out of a waiting fcntl/flock (PEP 475 retries only when the handler returns)
    raise InterruptedError(errno.EINTR, 'interrupted')


signal.signal(signal.SIGUSR1, interrupted)
path = sys.argv[1]
fds = [os.open(path, os.O_RDWR | os.O_CREAT, 0o644)]


def reply(d):
    sys.stdout.write(json.dumps(d) + '\n')
    sys.stdout.flush()


reply({'ok': True, 'pid': os.getpid()})
for line in sys.stdin:
    cmd = json.loads(line)
    op = cmd['op']
    fd = fds[cmd.get('fd', 0)]
    try:
        out = {}
        if op in CMDS:
            data = struct.pack(FLOCK, TYPES[cmd['type']], os.SEEK_SET, cmd['start'], cmd['len'], 0)
            r = fcntl.fcntl(fd, CMDS[op], data)
            if op == 'getlk':
                t, _whence, start, length, pid = struct.unpack(FLOCK, r)
                out = {'type': NAMES[t], 'start': start, 'len': length, 'pid': pid}
        elif op == 'flock':
            how = {'shared': fcntl.LOCK_SH, 'exclusive': fcntl.LOCK_EX, 'unlock': fcntl.LOCK_UN}[cmd['type']]
            fcntl.flock(fd, how | (fcntl.LOCK_NB if cmd.get('nb') else 0))
        elif op == 'open':
            fds.append(os.open(path, os.O_RDWR))
            out = {'fd': len(fds) - 1}
        elif op == 'close':
            os.close(fd)
        elif op == 'write':
            os.pwrite(fd, cmd['data'].encode(), cmd['offset'])
        elif op == 'read':
            out = {'data': os.pread(fd, cmd['len'], cmd['offset']).decode()}
        elif op == 'exit':
            reply({'ok': True})
            break
        else:
            raise ValueError('unknown op ' + op)
        reply({'ok': True, **out})
    except OSError as e:
        reply({'ok': False, 'errno': errno.errorcode.get(e.errno, str(e.errno))})
