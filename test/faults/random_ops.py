#!/usr/bin/env python3
"""Seeded random file operations applied to two trees, and a tree comparer.

    random_ops.py run --seed S --state FILE --count N --local DIR --mount DIR [--log FILE]
    random_ops.py compare DIR_A DIR_B
    random_ops.py show --seed S --count N --local DIR    (prints the ops, applies them to DIR only)
    random_ops.py replay --ops FILE --local DIR --mount DIR   (applies the ops listed in FILE)

`run` generates the next N operations of the sequence for seed S and applies
each one to the local tree first, then to the mount tree, recording the
outcome of each side (a value, or an errno name). An operation whose outcomes
differ is a mismatch: `run` stops there and reports it. The sequence continues
across invocations through the state file (the PRNG state and the next op
index), so a caller can kill nodes between batches and the sequence for a seed
stays the same whatever the batch sizes are.

The generator only looks at the local tree (to pick paths that exist), never
at the mount, so a seed gives the same sequence whatever the mount does; file
contents come from per-op data seeds, so an op is a small JSON object.

stdout of `run`: one JSON line {"next": index after the last op applied,
"mismatch": null | {"index", "op", "local", "mount", "recent": [...]}}.
`--log FILE` appends every op (before it is applied to the mount) as a JSON
line, so a caller that had to kill a hung batch knows which op hung.

stdout of `compare`: {"paths": n, "diffs": [{"path", "what", "a", "b"}...]}.

The umask is 0, so modes are exactly the ones asked for. Standard library only.
"""
import errno
import hashlib
import json
import os
import pickle
import random
import stat
import sys

CHUNK = 1 << 20
INLINE = 16 << 10
MAX_SIZE = 3 * CHUNK
# Few names at every level, so that operations collide often (EEXIST,
# ENOTEMPTY, renames over existing names, links to renamed files).
NAMES = ['a', 'b', 'c', 'd', 'e', 'f']
MAX_DEPTH = 3
XATTRS = ['user.k0', 'user.k1', 'user.k2']
# Explicit times lie before this (2017-07): a time below it can only come from
# a utime op, so two trees that disagree there disagree on a deterministic value.
EXPLICIT_BEFORE_NS = 1_500_000_000 * 10**9
RECENT = 12


def errname(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def data_bytes(d):
    return random.Random(d['seed']).randbytes(d['len'])


# ---------------------------------------------------------------------------
# The local tree, as the generator sees it
# ---------------------------------------------------------------------------

def walk(root):
    """Sorted (relpath, kind) of everything under root, without following symlinks."""
    out = []

    def rec(rel):
        full = os.path.join(root, rel) if rel else root
        try:
            names = sorted(os.listdir(full))
        except OSError:
            return
        for n in names:
            p = n if not rel else rel + '/' + n
            try:
                st = os.lstat(os.path.join(root, p))
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                out.append((p, 'd'))
                rec(p)
            elif stat.S_ISLNK(st.st_mode):
                out.append((p, 'l'))
            else:
                out.append((p, 'f'))

    rec('')
    return out


def depth(p):
    return 0 if p == '' else p.count('/') + 1


class Picker:
    def __init__(self, rng, root):
        self.rng = rng
        self.root = root
        self.entries = walk(root)
        self.dirs = [''] + [p for p, k in self.entries if k == 'd' and depth(p) < MAX_DEPTH]

    def of(self, kinds):
        c = [p for p, k in self.entries if k in kinds]
        return self.rng.choice(c) if c else None

    def new_path(self):
        r = self.rng.random()
        if r < 0.08:
            # anywhere in the name space: parents may be missing or files (ENOENT, ENOTDIR)
            return '/'.join(self.rng.choice(NAMES) for _ in range(self.rng.randint(1, MAX_DEPTH)))
        return join(self.rng.choice(self.dirs), self.rng.choice(NAMES))

    def path(self, kinds='fdl', existing=0.75):
        if self.rng.random() < existing:
            p = self.of(kinds)
            if p is not None:
                return p
        return self.new_path()

    def size(self, p):
        try:
            return os.stat(os.path.join(self.root, p)).st_size
        except OSError:
            return 0


def join(d, n):
    return n if d == '' else d + '/' + n


# ---------------------------------------------------------------------------
# Generating one op
# ---------------------------------------------------------------------------

def gen_data(rng, n):
    return {'seed': rng.getrandbits(32), 'len': n}


def gen_write_range(rng, size):
    k = rng.random()
    if k < 0.40:
        # small, in place or appending, mostly staying inline
        off = rng.randrange(0, min(size, INLINE) + 1)
        n = rng.randrange(1, 3000)
    elif k < 0.55:
        # across the inline limit
        off = rng.randrange(INLINE - 4096, INLINE + 1024)
        n = rng.randrange(1, 8192)
    elif k < 0.70:
        # past EOF: a hole, sometimes a whole chunk of it
        off = size + rng.choice([rng.randrange(1, 5000), rng.randrange(5000, 1_300_000)])
        n = rng.randrange(1, 5000)
    elif k < 0.88:
        # across a chunk boundary
        b = CHUNK * rng.randint(1, 2)
        off = b - rng.randrange(1, 65536)
        n = (b - off) + rng.randrange(1, 65536)
    else:
        # a big one
        off = rng.randrange(0, CHUNK)
        n = rng.randrange(CHUNK // 2, CHUNK + CHUNK // 2)
    off = min(off, MAX_SIZE - 1)
    n = max(1, min(n, MAX_SIZE - off))
    return off, n


def gen_truncate_size(rng, size):
    c = rng.random()
    if c < 0.2:
        n = 0
    elif c < 0.4:
        n = rng.randrange(0, size + 1) if size > 0 else 1
    elif c < 0.55:
        n = size + rng.randrange(1, 20000)
    elif c < 0.7:
        n = INLINE + rng.randrange(-2, 3)
    elif c < 0.85:
        n = CHUNK * rng.randint(1, 2) + rng.randrange(-3, 4)
    else:
        n = rng.randrange(0, MAX_SIZE)
    if n == size:
        # truncate to the same size may or may not touch mtime, filesystem by
        # filesystem: avoid an outcome that POSIX leaves open
        n = size + 1
    return n


def gen_mode(rng, kind):
    if rng.random() < 0.6:
        return rng.choice([0o644, 0o600, 0o755, 0o700, 0o640, 0o444] if kind == 'f' else [0o755, 0o700, 0o775, 0o1777, 0o555])
    return rng.randrange(0, 0o10000)


def gen_time(rng):
    # before EXPLICIT_BEFORE_NS; nanoseconds are random to catch truncation.
    # [seconds, nanoseconds]: one number of nanoseconds would lose digits in
    # the JSON that node parses and prints
    return [rng.randrange(978_307_200, 1_400_000_000), rng.randrange(0, 10**9)]


OPS = [
    ('create', 10), ('open_trunc', 3), ('write', 18), ('read', 6), ('truncate', 6), ('ftruncate', 2),
    ('rename', 9), ('link', 4), ('symlink', 3), ('unlink', 6), ('mkdir', 6), ('rmdir', 4),
    ('chmod', 4), ('setxattr', 4), ('removexattr', 2), ('getxattr', 2), ('utime', 4),
    ('stat', 3), ('readdir', 3),
]
OP_NAMES = [n for n, _ in OPS]
OP_WEIGHTS = [w for _, w in OPS]


def gen_op(rng, root):
    pk = Picker(rng, root)
    kind = rng.choices(OP_NAMES, OP_WEIGHTS)[0]
    op = {'op': kind}
    if kind == 'create':
        op['path'] = pk.new_path()
        op['mode'] = gen_mode(rng, 'f')
        if rng.random() < 0.5:
            op['data'] = gen_data(rng, rng.randrange(1, 20000))
    elif kind == 'open_trunc':
        op['path'] = pk.path('f', 0.7)
        op['mode'] = gen_mode(rng, 'f')
        op['data'] = gen_data(rng, rng.choice([rng.randrange(1, 5000), rng.randrange(1, CHUNK + 5000)]))
    elif kind == 'write':
        op['path'] = pk.path('fl', 0.9)
        off, n = gen_write_range(rng, pk.size(op['path']))
        op['off'] = off
        op['data'] = gen_data(rng, n)
        op['fsync'] = rng.random() < 0.2
    elif kind == 'read':
        op['path'] = pk.path('fl', 0.9)
        size = pk.size(op['path'])
        op['off'] = rng.choice([0, rng.randrange(0, size + 2), max(0, size - 10)])
        op['len'] = rng.choice([rng.randrange(1, 70000), CHUNK + 10])
    elif kind in ('truncate', 'ftruncate'):
        op['path'] = pk.path('fl', 0.9)
        op['size'] = gen_truncate_size(rng, pk.size(op['path']))
    elif kind == 'rename':
        op['src'] = pk.path('fdl', 0.9)
        # over an existing name about half the time
        op['dst'] = pk.path('fdl', 0.5)
    elif kind == 'link':
        op['src'] = pk.path('fl', 0.9)
        op['dst'] = pk.path('fdl', 0.15)
    elif kind == 'symlink':
        # relative targets without '..' resolve inside the tree wherever the
        # link moves, so they mean the same in both trees
        t = rng.random()
        op['target'] = rng.choice(NAMES) if t < 0.6 else (rng.choice(NAMES) + '/' + rng.choice(NAMES) if t < 0.9 else 'missing')
        op['path'] = pk.path('fdl', 0.15)
    elif kind == 'unlink':
        op['path'] = pk.path('fdl', 0.85)
    elif kind == 'mkdir':
        op['path'] = pk.path('fdl', 0.15)
        op['mode'] = gen_mode(rng, 'd')
    elif kind == 'rmdir':
        op['path'] = pk.path('d', 0.9)
    elif kind == 'chmod':
        op['path'] = pk.path('fdl', 0.9)
        op['mode'] = gen_mode(rng, 'f' if rng.random() < 0.5 else 'd')
    elif kind == 'setxattr':
        op['path'] = pk.path('fdl', 0.9)
        op['name'] = rng.choice(XATTRS)
        # at most 3 names of 900 bytes: ext4 (the local tree) keeps one inode's
        # xattrs in one 4 KiB block and answers ENOSPC beyond
        op['value'] = gen_data(rng, rng.choice([0, rng.randrange(1, 64), rng.randrange(64, 900)]))
        op['flags'] = rng.choice([0, 0, 0, os.XATTR_CREATE, os.XATTR_REPLACE])
    elif kind in ('removexattr', 'getxattr'):
        op['path'] = pk.path('fdl', 0.9)
        op['name'] = rng.choice(XATTRS)
    elif kind == 'utime':
        op['path'] = pk.path('fdl', 0.9)
        op['atime'] = gen_time(rng)
        op['mtime'] = gen_time(rng)
    elif kind == 'stat':
        op['path'] = pk.path('fdl', 0.9)
    elif kind == 'readdir':
        op['path'] = pk.path('d', 0.9) if rng.random() < 0.8 else ''
    return op


def getxattr(path, name, follow_symlinks=True):
    # python starts with a 128-byte buffer and grows it on ERANGE: this also
    # checks that the mount answers ERANGE for a buffer that is too small.
    return os.getxattr(path, name, follow_symlinks=follow_symlinks)


def listxattr(path, follow_symlinks=True):
    return os.listxattr(path, follow_symlinks=follow_symlinks)


# ---------------------------------------------------------------------------
# Applying one op to one tree
# ---------------------------------------------------------------------------

def kind_of(st):
    m = st.st_mode
    return 'd' if stat.S_ISDIR(m) else 'l' if stat.S_ISLNK(m) else 'f' if stat.S_ISREG(m) else 'other'


def apply_op(op, root):
    def P(key='path'):
        return os.path.join(root, op[key])

    k = op['op']
    try:
        if k == 'create':
            fd = os.open(P(), os.O_WRONLY | os.O_CREAT | os.O_EXCL, op['mode'])
            try:
                if 'data' in op:
                    os.write(fd, data_bytes(op['data']))
            finally:
                os.close(fd)
            v = None
        elif k == 'open_trunc':
            fd = os.open(P(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, op['mode'])
            try:
                v = os.write(fd, data_bytes(op['data']))
            finally:
                os.close(fd)
        elif k == 'write':
            fd = os.open(P(), os.O_WRONLY)
            try:
                v = os.pwrite(fd, data_bytes(op['data']), op['off'])
                if op['fsync']:
                    os.fsync(fd)
            finally:
                os.close(fd)
        elif k == 'read':
            fd = os.open(P(), os.O_RDONLY)
            try:
                b = os.pread(fd, op['len'], op['off'])
            finally:
                os.close(fd)
            v = [len(b), hashlib.sha256(b).hexdigest()[:16]]
        elif k == 'truncate':
            os.truncate(P(), op['size'])
            v = None
        elif k == 'ftruncate':
            fd = os.open(P(), os.O_WRONLY)
            try:
                os.ftruncate(fd, op['size'])
            finally:
                os.close(fd)
            v = None
        elif k == 'rename':
            os.rename(P('src'), P('dst'))
            v = None
        elif k == 'link':
            os.link(P('src'), P('dst'), follow_symlinks=False)
            v = None
        elif k == 'symlink':
            os.symlink(op['target'], P())
            v = None
        elif k == 'unlink':
            os.unlink(P())
            v = None
        elif k == 'mkdir':
            os.mkdir(P(), op['mode'])
            v = None
        elif k == 'rmdir':
            os.rmdir(P())
            v = None
        elif k == 'chmod':
            os.chmod(P(), op['mode'])
            v = None
        elif k == 'setxattr':
            os.setxattr(P(), op['name'], data_bytes(op['value']), op['flags'])
            v = None
        elif k == 'removexattr':
            os.removexattr(P(), op['name'])
            v = None
        elif k == 'getxattr':
            v = hashlib.sha256(getxattr(P(), op['name'])).hexdigest()[:16]
        elif k == 'utime':
            os.utime(P(), ns=tuple(t[0] * 10**9 + t[1] for t in (op['atime'], op['mtime'])))
            v = None
        elif k == 'stat':
            # only the type: other attributes of a hard link's other names may
            # be stale in the kernel for the attribute timeout (DESIGN.md, FUSE
            # facts); the final comparison checks them all
            v = kind_of(os.lstat(P()))
        elif k == 'readdir':
            v = sorted(os.listdir(P()))
        else:
            raise ValueError('unknown op ' + k)
        return {'ok': True, 'value': v}
    except OSError as e:
        return {'ok': False, 'errno': errname(e)}


# ---------------------------------------------------------------------------
# Comparing two trees
# ---------------------------------------------------------------------------

def user_xattrs(path):
    try:
        names = sorted(n for n in listxattr(path, follow_symlinks=False) if n.startswith('user.'))
    except OSError as e:
        return 'error ' + errname(e)
    out = {}
    for n in names:
        try:
            v = getxattr(path, n, follow_symlinks=False)
            out[n] = '%d bytes sha256 %s' % (len(v), hashlib.sha256(v).hexdigest()[:16])
        except OSError as e:
            out[n] = 'error ' + errname(e)
    return out


def describe(root, rel):
    full = os.path.join(root, rel)
    st = os.lstat(full)
    k = kind_of(st)
    d = {
        'type': k,
        'mode': oct(stat.S_IMODE(st.st_mode)),
        'uid': st.st_uid,
        'gid': st.st_gid,
        'nlink': st.st_nlink,
    }
    if k == 'f':
        d['size'] = st.st_size
        h = hashlib.sha256()
        with open(full, 'rb') as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                h.update(b)
        d['sha256'] = h.hexdigest()
    if k == 'l':
        d['target'] = os.readlink(full)
        d['size'] = st.st_size
    if k in ('f', 'd'):
        d['xattrs'] = user_xattrs(full)
        d['mtime_ns'] = st.st_mtime_ns
    return d, st.st_ino


def snapshot(root):
    entries = walk(root)
    attrs = {}
    groups = {}
    for p, _ in entries:
        d, ino = describe(root, p)
        attrs[p] = d
        if d['type'] != 'd':
            groups.setdefault(ino, []).append(p)
    # which names share an inode, as a set of name groups (inode numbers differ between trees)
    links = {}
    for names in groups.values():
        for n in names:
            links[n] = sorted(names)
    return attrs, links


def compare(a_root, b_root):
    a, a_links = snapshot(a_root)
    b, b_links = snapshot(b_root)
    diffs = []
    for p in sorted(set(a) | set(b)):
        if p not in a or p not in b:
            diffs.append({'path': p, 'what': 'exists', 'a': p in a, 'b': p in b})
            continue
        x, y = a[p], b[p]
        if x['type'] != y['type']:
            diffs.append({'path': p, 'what': 'type', 'a': x['type'], 'b': y['type']})
            continue
        for key in ('mode', 'uid', 'gid', 'nlink', 'size', 'sha256', 'target', 'xattrs'):
            if key == 'mode' and x['type'] == 'l':
                continue
            if x.get(key) != y.get(key):
                diffs.append({'path': p, 'what': key, 'a': x.get(key), 'b': y.get(key)})
        # mtimes set by a write differ between the trees by nature; one set by
        # utime (before EXPLICIT_BEFORE_NS) must be kept exactly, and a write
        # after it must have moved it on both sides
        if 'mtime_ns' in x:
            mx, my = x['mtime_ns'], y['mtime_ns']
            if (mx < EXPLICIT_BEFORE_NS or my < EXPLICIT_BEFORE_NS) and mx != my:
                diffs.append({'path': p, 'what': 'mtime', 'a': mx, 'b': my})
        if a_links.get(p) != b_links.get(p):
            diffs.append({'path': p, 'what': 'links', 'a': a_links.get(p), 'b': b_links.get(p)})
    return {'paths': len(set(a) | set(b)), 'diffs': diffs}


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------

def args_of(argv):
    out = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith('--'):
            raise SystemExit('unexpected argument ' + a)
        out[a[2:]] = argv[i + 1]
        i += 2
    return out


def load_state(path, seed):
    try:
        with open(path, 'rb') as f:
            s = pickle.load(f)
        if s['seed'] != seed:
            raise SystemExit(f'state file {path} is for seed {s["seed"]}, not {seed}')
        rng = random.Random()
        rng.setstate(s['rng'])
        return rng, s['next']
    except FileNotFoundError:
        return random.Random(seed), 0


def save_state(path, seed, rng, nxt):
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        pickle.dump({'seed': seed, 'rng': rng.getstate(), 'next': nxt}, f)
    os.replace(tmp, path)


def cmd_run(argv):
    a = args_of(argv)
    seed = int(a['seed'])
    rng, i = load_state(a['state'], seed)
    count = int(a['count'])
    local, mount = a['local'], a['mount']
    log = open(a['log'], 'a') if 'log' in a else None
    recent = []
    mismatch = None
    for _ in range(count):
        op = gen_op(rng, local)
        lr = apply_op(op, local)
        if log:
            log.write(json.dumps({'index': i, 'op': op, 'local': lr}) + '\n')
            log.flush()
        mr = apply_op(op, mount)
        if lr != mr:
            mismatch = {'index': i, 'op': op, 'local': lr, 'mount': mr, 'recent': recent}
            i += 1
            break
        recent.append({'index': i, 'op': op, 'result': lr})
        del recent[:-RECENT]
        i += 1
    save_state(a['state'], seed, rng, i)
    print(json.dumps({'next': i, 'mismatch': mismatch}))


def cmd_show(argv):
    a = args_of(argv)
    seed = int(a['seed'])
    rng = random.Random(seed)
    for i in range(int(a['count'])):
        op = gen_op(rng, a['local'])
        print(json.dumps({'index': i, 'op': op, 'local': apply_op(op, a['local'])}))


def cmd_replay(argv):
    # ops from a file (JSON lines with an "op" field, e.g. a --log file), for
    # cutting a failing sequence down by hand
    a = args_of(argv)
    mismatch = None
    with open(a['ops']) as f:
        ops = [json.loads(l)['op'] for l in f if l.strip()]
    for i, op in enumerate(ops):
        lr = apply_op(op, a['local'])
        mr = apply_op(op, a['mount'])
        if lr != mr:
            mismatch = {'index': i, 'op': op, 'local': lr, 'mount': mr}
            break
    print(json.dumps({'next': i + 1 if ops else 0, 'mismatch': mismatch}))


def main():
    os.umask(0)
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == 'run':
        cmd_run(rest)
    elif cmd == 'compare':
        print(json.dumps(compare(rest[0], rest[1])))
    elif cmd == 'show':
        cmd_show(rest)
    elif cmd == 'replay':
        cmd_replay(rest)
    else:
        raise SystemExit(__doc__)


if __name__ == '__main__':
    main()
