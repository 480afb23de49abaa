#!/usr/bin/env python3
"""Runs POSIX scenarios (the step language of test/helpers/posix-steps.ts) on
a real directory with os.* calls, and reports what happened.

    python3 posix_runner.py ROOT < scenarios.json > results.jsonl
    python3 posix_runner.py --probe DIR

stdin: a JSON list of {"name": ..., "steps": [...]}. Scenario k runs in a
fresh directory ROOT/sNNN (created here; it must not exist). stdout: one JSON
line per scenario, in order: {"name", "steps": [outcome...], "cleanup": [...]}
where an outcome is {"ok": true, "value": ...} or {"ok": false, "errno":
"ENOENT", "message": ...}. The runner never judges: the caller compares.

--probe prints {"xattr": bool} for DIR (can it hold user.* xattrs?).

The umask is 0, so modes are exactly the ones asked for. Nothing here needs
more than python3's standard library (ctypes for utimensat with UTIME_OMIT and
renameat2 with RENAME_NOREPLACE or RENAME_EXCHANGE, which os.* does not offer).
"""
import base64
import ctypes
import ctypes.util
import errno
import json
import os
import socket
import stat
import sys

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2

_libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)


class _Timespec(ctypes.Structure):
    _fields_ = [('tv_sec', ctypes.c_long), ('tv_nsec', ctypes.c_long)]


def _raise_errno(path):
    e = ctypes.get_errno()
    raise OSError(e, os.strerror(e), path)


def utimensat(path, atime, mtime, nofollow):
    def ts(t):
        if t == 'now':
            return _Timespec(0, UTIME_NOW)
        if t == 'omit':
            return _Timespec(0, UTIME_OMIT)
        return _Timespec(int(t['sec']), int(t['nsec']))

    times = (_Timespec * 2)(ts(atime), ts(mtime))
    if _libc.utimensat(AT_FDCWD, os.fsencode(path), times, AT_SYMLINK_NOFOLLOW if nofollow else 0) != 0:
        _raise_errno(path)


def renameat2(src, dst, flags):
    if _libc.renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), ctypes.c_uint(flags)) != 0:
        _raise_errno(src)


def data(d):
    if isinstance(d, str):
        return d.encode('utf-8')
    if isinstance(d, list):
        return b''.join(data(x) for x in d)
    if 'zeros' in d:
        return bytes(d['zeros'])
    if 'hex' in d:
        return bytes.fromhex(d['hex'])
    pattern = d['fill'].encode('utf-8')
    n = d['len']
    return (pattern * (n // len(pattern) + 1))[:n]


FLAGS = {
    'O_RDONLY': os.O_RDONLY,
    'O_WRONLY': os.O_WRONLY,
    'O_RDWR': os.O_RDWR,
    'O_CREAT': os.O_CREAT,
    'O_EXCL': os.O_EXCL,
    'O_TRUNC': os.O_TRUNC,
    'O_APPEND': os.O_APPEND,
    'O_DIRECTORY': os.O_DIRECTORY,
}


def ftype(mode):
    if stat.S_ISREG(mode):
        return 'file'
    if stat.S_ISDIR(mode):
        return 'dir'
    if stat.S_ISLNK(mode):
        return 'symlink'
    if stat.S_ISFIFO(mode):
        return 'fifo'
    if stat.S_ISCHR(mode):
        return 'char'
    if stat.S_ISBLK(mode):
        return 'block'
    if stat.S_ISSOCK(mode):
        return 'socket'
    return 'other'


def timespec(ns):
    return {'sec': ns // 1_000_000_000, 'nsec': ns % 1_000_000_000}


def view(st):
    return {
        'type': ftype(st.st_mode),
        'mode': stat.S_IMODE(st.st_mode),
        'nlink': st.st_nlink,
        'size': st.st_size,
        'uid': st.st_uid,
        'gid': st.st_gid,
        'ino': str(st.st_ino),
        'rdev': [os.major(st.st_rdev), os.minor(st.st_rdev)],
        'atime': timespec(st.st_atime_ns),
        'mtime': timespec(st.st_mtime_ns),
        'ctime': timespec(st.st_ctime_ns),
    }


def b64(b):
    return {'b64': base64.b64encode(b).decode('ascii')}


def pwrite_all(fd, buf, pos):
    done = 0
    while done < len(buf):
        n = os.pwrite(fd, buf[done:], pos + done)
        if n <= 0:
            break
        done += n
    return done


def read_all(fd):
    parts = []
    pos = 0
    while True:
        b = os.pread(fd, 1 << 20, pos)
        if not b:
            return b''.join(parts)
        parts.append(b)
        pos += len(b)


class Scenario:
    def __init__(self, base):
        self.base = base
        self.fds = {}

    def p(self, rel):
        return os.path.join(self.base, rel)

    def fd(self, label):
        if label not in self.fds:
            raise OSError(errno.EBADF, 'no descriptor labelled %s' % label)
        return self.fds[label]

    def step(self, s):
        op = s['op']
        if op == 'open':
            flags = 0
            for f in s['flags']:
                flags |= FLAGS[f]
            self.fds[s['as']] = os.open(self.p(s['path']), flags, s.get('mode', 0o644))
            return None
        if op == 'close':
            fd = self.fd(s['fd'])
            del self.fds[s['fd']]
            os.close(fd)
            return None
        if op == 'read':
            return b64(os.pread(self.fd(s['fd']), s['len'], s['pos']))
        if op == 'write':
            return os.pwrite(self.fd(s['fd']), data(s['data']), s['pos'])
        if op == 'fsync':
            os.fsync(self.fd(s['fd']))
            return None
        if op == 'ftruncate':
            os.ftruncate(self.fd(s['fd']), s['size'])
            return None
        if op == 'fstat':
            return view(os.fstat(self.fd(s['fd'])))
        if op == 'writeFile':
            fd = os.open(self.p(s['path']), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, s.get('mode', 0o644))
            try:
                pwrite_all(fd, data(s['data']), 0)
            finally:
                os.close(fd)
            return None
        if op == 'readFile':
            fd = os.open(self.p(s['path']), os.O_RDONLY)
            try:
                return b64(read_all(fd))
            finally:
                os.close(fd)
        if op == 'stat':
            return view(os.stat(self.p(s['path'])))
        if op == 'lstat':
            return view(os.lstat(self.p(s['path'])))
        if op == 'truncate':
            os.truncate(self.p(s['path']), s['size'])
            return None
        if op == 'mkdir':
            os.mkdir(self.p(s['path']), s['mode'])
            return None
        if op == 'rmdir':
            os.rmdir(self.p(s['path']))
            return None
        if op == 'unlink':
            os.unlink(self.p(s['path']))
            return None
        if op == 'rename':
            if s.get('noreplace') or s.get('exchange'):
                renameat2(self.p(s['from']), self.p(s['to']), (RENAME_NOREPLACE if s.get('noreplace') else 0) | (RENAME_EXCHANGE if s.get('exchange') else 0))
            else:
                os.rename(self.p(s['from']), self.p(s['to']))
            return None
        if op == 'link':
            os.link(self.p(s['from']), self.p(s['to']), follow_symlinks=False)
            return None
        if op == 'symlink':
            os.symlink(s['target'], self.p(s['path']))
            return None
        if op == 'readlink':
            return os.readlink(self.p(s['path']))
        if op == 'readdir':
            return os.listdir(self.p(s['path']))
        if op == 'chmod':
            os.chmod(self.p(s['path']), s['mode'])
            return None
        if op == 'chown':
            os.chown(self.p(s['path']), s['uid'], s['gid'], follow_symlinks=not s.get('nofollow', False))
            return None
        if op == 'utimens':
            utimensat(self.p(s['path']), s['atime'], s['mtime'], s.get('nofollow', False))
            return None
        if op == 'setxattr':
            flag = {'create': os.XATTR_CREATE, 'replace': os.XATTR_REPLACE}.get(s.get('flag'), 0)
            os.setxattr(self.p(s['path']), s['name'], data(s['value']), flag)
            return None
        if op == 'getxattr':
            return b64(os.getxattr(self.p(s['path']), s['name']))
        if op == 'listxattr':
            return [n for n in os.listxattr(self.p(s['path'])) if n.startswith('user.')]
        if op == 'removexattr':
            os.removexattr(self.p(s['path']), s['name'])
            return None
        if op == 'mkfifo':
            os.mkfifo(self.p(s['path']), s['mode'])
            return None
        if op == 'bind':
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(self.p(s['path']))
            finally:
                sock.close()
            return None
        if op == 'mknod':
            kind = {'file': stat.S_IFREG, 'fifo': stat.S_IFIFO, 'char': stat.S_IFCHR, 'block': stat.S_IFBLK, 'socket': stat.S_IFSOCK}[s['type']]
            major, minor = s.get('dev', [0, 0])
            os.mknod(self.p(s['path']), kind | s['mode'], os.makedev(major, minor))
            return None
        raise ValueError('unknown op %r' % op)

    def run(self, steps):
        out = []
        for s in steps:
            try:
                out.append({'ok': True, 'value': self.step(s)})
            except OSError as e:
                name = errno.errorcode.get(e.errno, 'E%d' % e.errno) if e.errno is not None else 'EXCEPTION'
                out.append({'ok': False, 'errno': name, 'message': str(e)})
            except Exception as e:  # a runner bug, or a step it does not know
                out.append({'ok': False, 'errno': 'EXCEPTION', 'message': '%s: %s' % (type(e).__name__, e)})
        cleanup = []
        for label, fd in list(self.fds.items()):
            try:
                os.close(fd)
            except OSError as e:
                cleanup.append('close(%s): %s' % (label, e))
        self.fds.clear()
        return out, cleanup


def probe(d):
    path = os.path.join(d, '.posix-probe-%d' % os.getpid())
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        os.setxattr(path, 'user.probe', b'1')
        ok = os.getxattr(path, 'user.probe') == b'1'
    except OSError:
        ok = False
    finally:
        os.unlink(path)
    return {'xattr': ok}


def main():
    if len(sys.argv) == 3 and sys.argv[1] == '--probe':
        print(json.dumps(probe(sys.argv[2])))
        return 0
    if len(sys.argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    os.umask(0)
    root = sys.argv[1]
    scenarios = json.load(sys.stdin)
    for k, sc in enumerate(scenarios):
        base = os.path.join(root, 's%03d' % k)
        os.mkdir(base, 0o755)
        steps, cleanup = Scenario(base).run(sc['steps'])
        sys.stdout.write(json.dumps({'name': sc['name'], 'steps': steps, 'cleanup': cleanup}, ensure_ascii=True) + '\n')
        sys.stdout.flush()
    return 0


if __name__ == '__main__':
    sys.exit(main())
