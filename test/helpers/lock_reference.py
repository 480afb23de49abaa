#!/usr/bin/env python3
# Linux itself as the reference for lock arithmetic (test/meta/lock-ranges.test.ts):
# runs a sequence of non-blocking fcntl(F_SETLK) and flock(LOCK_NB) requests of
# several owners (one child process each, each with its own open file
# description) on a file in a local directory, and after every request prints
# the outcome and the file's locks as /proc/locks shows them.
#
# stdin: {"file": path, "owners": N, "steps": [{"owner": i, "kind": "posix"|"flock",
#         "type": "read"|"write"|"unlock", "start": s, "len": l}]}
# stdout: one JSON line per step: {"ok": bool, "errno": name?, "locks": [[owner, kind, type, start, end|null]]}
import errno
import fcntl
import json
import os
import struct
import sys

FLOCK = 'hhqqi4x'
TYPES = {'read': fcntl.F_RDLCK, 'write': fcntl.F_WRLCK, 'unlock': fcntl.F_UNLCK}
FLOCKS = {'read': fcntl.LOCK_SH, 'write': fcntl.LOCK_EX, 'unlock': fcntl.LOCK_UN}

spec = json.load(sys.stdin)
path = spec['file']
open(path, 'a').close()
st = os.stat(path)
dev = '%02x:%02x:%d' % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)

children = []  # (pid, to_child, from_child)
for i in range(spec['owners']):
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w1)
        os.close(r2)
        for _, to, frm in children:  # the other children's pipes: they must see EOF when the parent closes them
            to.close()
            frm.close()
        fd = os.open(path, os.O_RDWR)
        inp = os.fdopen(r1, 'r')
        out = os.fdopen(w2, 'w')
        for line in inp:
            s = json.loads(line)
            try:
                if s['kind'] == 'posix':
                    fcntl.fcntl(fd, fcntl.F_SETLK, struct.pack(FLOCK, TYPES[s['type']], os.SEEK_SET, s['start'], s['len'], 0))
                else:
                    fcntl.flock(fd, FLOCKS[s['type']] | fcntl.LOCK_NB)
                out.write(json.dumps({'ok': True}) + '\n')
            except OSError as e:
                out.write(json.dumps({'ok': False, 'errno': errno.errorcode.get(e.errno, str(e.errno))}) + '\n')
            out.flush()
        os._exit(0)
    os.close(r1)
    os.close(w2)
    children.append((pid, os.fdopen(w1, 'w'), os.fdopen(r2, 'r')))

owner_of = {pid: i for i, (pid, _, _) in enumerate(children)}


def locks():
    # /proc/locks is a seq_file over one list for the whole machine: while other
    # processes take and drop locks (a CI machine running other tests), a read
    # that spans pages can show a line twice or miss one. Read until two reads
    # in a row agree.
    prev = None
    for _ in range(50):
        cur = locks_once()
        if cur == prev:
            return cur
        prev = cur
    return cur


def locks_once():
    found = []
    with open('/proc/locks') as f:
        for line in f:
            parts = line.split()
            if '->' in parts or len(parts) < 8 or parts[5] != dev:
                continue
            kind = {'POSIX': 'posix', 'FLOCK': 'flock'}.get(parts[1])
            pid = int(parts[4])
            if kind is None or pid not in owner_of:
                continue
            start = int(parts[6])
            end = None if parts[7] == 'EOF' else int(parts[7]) + 1
            found.append([owner_of[pid], kind, {'READ': 'read', 'WRITE': 'write'}[parts[3]], start, end])
    return sorted(found, key=lambda l: (l[0], l[1], l[3]))


for s in spec['steps']:
    _, to, frm = children[s['owner']]
    to.write(json.dumps(s) + '\n')
    to.flush()
    res = json.loads(frm.readline())
    res['locks'] = locks()
    sys.stdout.write(json.dumps(res) + '\n')
    sys.stdout.flush()

for pid, to, frm in children:
    to.close()
    os.waitpid(pid, 0)
