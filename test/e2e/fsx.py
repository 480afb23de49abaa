#!/usr/bin/env python3
"""fsx-style random I/O on one file of a mount, checked against a local reference file.

    fsx.py --seed S --count N --mount-file A --ref-file B [--mount-file2 C] [--first K]
           [--max-syncs-per-visit M] [--self-test flip|shorten]

A seeded random sequence of operations is applied to the file on the mount
(A, or alternately A and C: the same file seen through two mounts of one
cluster) and to a reference file on a local filesystem (B):

  write     pwrite of 1 B..300 KiB at a random offset: inside the file, across
            a 1 MiB boundary, at EOF, or far beyond EOF (a hole)
  read      pread of 1 B..300 KiB at an odd offset (also past EOF), compared
            byte for byte (and for length) with the reference; sometimes the
            mount's cached pages are dropped first (POSIX_FADV_DONTNEED), so
            that the read reaches the filesystem and not the kernel's page cache
  truncate  ftruncate: shrink into the middle of a 1 MiB region, to a 1 MiB
            boundary, to 0 (rarely), or grow by up to 3 MiB
  fsync     fsync
  reopen    close, then open again: on the same mount, or with C on the other
            one (close-to-open); the size seen by fstat after the open must be
            the reference's
  stat      fstat: the size must be the reference's

At the end (and at the start of a run that continues a sequence, --first K)
the whole file is compared: size and every byte.

The sequence depends only on the seed (ops carry their own data seeds, and the
generator tracks the size itself), never on what the mount answers, so a run
replays exactly. --first K continues a sequence: ops 0..K-1 are generated
again but not applied (the caller ran them before, e.g. before killing a
node), and ops K..K+N-1 are applied to the files as they are.

The seed is --seed, else $QFS_SEED, else random; it is always printed.

--max-syncs-per-visit M (two mounts only): a workaround for a bug (see
test/e2e/random-io.test.ts): a mount must not publish the file more than 5
times in a row while the other mount holds it open in between. With M, each
visit of the descriptor to a mount starts with a small write (so that the
visit publishes at least once, at its close) and an fsync that would be the
(M+1)-th of the visit becomes a reopen on the other mount instead: each mount
then publishes at least once and at most M+1 times per visit. The sequence
differs from the one without the option.

--sync-every-op: after every op, fsync the file and print "durable I" (I: the
op's index) once fsync returned. The sequence is the same as without it (the
fsyncs are not drawn from the generator), so a run killed partway (the mount
SIGKILLed) can be checked against the reference after the last durable op and
the op after it (the only one that may have been in flight).

--self-test flip|shorten: checks the checker. Just before the final compare,
one byte in the middle of the mount file is inverted, or the mount file is cut
one byte short, behind the reference's back; the run must then fail there.

stdout: progress lines "op I" every 100 ops, then one JSON line:
  {"ok": true, "seed": S, "first": K, "ops": N, "size": final size, "counts": {...}}
or, on the first difference (exit 1) or error (exit 2):
  {"ok": false, "seed": S, "index": I, "op": {...}, "what": "...", "first_diff": {...},
   "recent": [...], "replay": "python3 fsx.py ..."}
Standard library only.
"""
import argparse
import errno
import json
import os
import random
import sys

KiB = 1 << 10
MiB = 1 << 20
MAX_IO = 300 * KiB
# Ordinary offsets stay below this; far writes may go up to FAR_MAX (holes).
SPAN = 8 * MiB
FAR_MAX = 24 * MiB
RECENT = 12
PROGRESS_EVERY = 100


def io_size(rng):
    r = rng.random()
    if r < 0.2:
        return rng.randint(1, 17)
    if r < 0.45:
        return rng.randint(1, 4 * KiB + 3)
    if r < 0.75:
        return rng.randint(4 * KiB, 64 * KiB + 5)
    return rng.randint(64 * KiB, MAX_IO)


def odd_offset(rng, hi):
    """An offset in [0, hi): mostly unaligned, sometimes on or next to a 4 KiB/64 KiB/1 MiB boundary."""
    hi = max(1, hi)
    r = rng.random()
    if r < 0.6:
        return rng.randrange(hi)
    unit = rng.choice([4 * KiB, 64 * KiB, MiB])
    base = rng.randrange(max(1, hi // unit + 1)) * unit
    return max(0, min(hi - 1, base + rng.choice([-1, 0, 1, -3, 7])))


class Generator:
    """The op sequence for a seed. Tracks the file size (the only state ops depend on)."""

    def __init__(self, seed, two_mounts, max_syncs=None):
        self.rng = random.Random(seed)
        self.size = 0
        self.two = two_mounts
        # which mount the open descriptor is on (0: A, 1: C)
        self.side = 0
        self.max_syncs = max_syncs if two_mounts else None
        self.syncs = 0
        self.touch = False

    def switch(self):
        if self.two:
            self.side = 1 - self.side
        self.syncs = 0
        self.touch = self.max_syncs is not None
        return {'op': 'reopen', 'side': self.side}

    def next(self):
        rng = self.rng
        size = self.size
        if self.touch:
            self.touch = False
            n = rng.randint(1, 17)
            off = odd_offset(rng, max(size, 1))
            self.size = max(size, off + n)
            return {'op': 'write', 'off': off, 'len': n, 'data': rng.randrange(1 << 30)}
        r = rng.random()
        if r < 0.36:
            n = io_size(rng)
            k = rng.random()
            if k < 0.45 or size == 0:
                off = odd_offset(rng, max(size, 1))
            elif k < 0.7:
                # across a 1 MiB boundary
                b = rng.randint(1, max(1, (max(size, MiB) + MiB) // MiB)) * MiB
                n = max(n, 2)
                off = b - rng.randint(1, n - 1)
            elif k < 0.85:
                off = size  # append
            elif k < 0.95:
                off = odd_offset(rng, SPAN)
            else:
                off = size + rng.randint(1, 3 * MiB + 1)  # a hole past EOF
                if off + n > FAR_MAX:
                    off = FAR_MAX - n - rng.randrange(MiB)
                if off < 0:
                    off = 0
            off = max(0, off)
            if off + n > FAR_MAX:
                off = odd_offset(rng, SPAN)
            op = {'op': 'write', 'off': off, 'len': n, 'data': rng.randrange(1 << 30)}
            self.size = max(size, off + n)
            return op
        if r < 0.68:
            k = rng.random()
            if k < 0.7 and size > 0:
                off = odd_offset(rng, size)
            elif k < 0.85:
                off = max(0, size - rng.randint(0, 5000))  # around EOF
            else:
                off = odd_offset(rng, size + 2 * MiB)  # possibly past EOF
            return {'op': 'read', 'off': off, 'len': io_size(rng), 'drop': rng.random() < 0.35}
        if r < 0.76:
            k = rng.random()
            if k < 0.45 and size > 0:
                # shrink into the middle of a 1 MiB region
                mb = rng.randrange(max(1, (size + MiB - 1) // MiB))
                to = min(size, mb * MiB + rng.randint(1, MiB - 1))
            elif k < 0.55 and size > 0:
                to = (size // MiB) * MiB if size % MiB else max(0, size - MiB)
            elif k < 0.58:
                to = 0
            elif k < 0.78:
                to = min(FAR_MAX, size + rng.randint(1, 3 * MiB))
            else:
                to = odd_offset(rng, max(size, 1) + MiB)
            op = {'op': 'truncate', 'size': to}
            self.size = to
            return op
        if r < 0.82:
            if self.max_syncs is not None and self.syncs >= self.max_syncs:
                return self.switch()
            self.syncs += 1
            return {'op': 'fsync'}
        if r < 0.90:
            return self.switch()
        return {'op': 'stat'}


def data_of(op):
    return random.Random(op['data']).randbytes(op['len'])


def first_diff(want, got, base):
    """Where two byte strings first differ (base: file offset of their first byte)."""
    n = min(len(want), len(got))
    i = 0
    step = 4096
    while i + step <= n and want[i:i + step] == got[i:i + step]:
        i += step
    while i < n and want[i] == got[i]:
        i += 1
    if i == n and len(want) == len(got):
        return None
    at = base + i
    out = {'offset': at, 'mib': at // MiB, 'in_mib': at % MiB, 'want_len': len(want), 'got_len': len(got)}
    if i < n:
        out['want_byte'] = want[i]
        out['got_byte'] = got[i]
        # how far the difference goes, and whether the mount shows zeros there
        j = i
        while j < n and want[j] != got[j]:
            j += 1
        out['differing_run'] = j - i
        out['got_zeros'] = got[i:j].count(0) == j - i
        out['differing_bytes'] = sum(1 for a, b in zip(want, got) if a != b) if n <= 32 * MiB else None
    return out


def read_all(fd):
    chunks = []
    off = 0
    while True:
        b = os.pread(fd, 4 * MiB, off)
        if not b:
            break
        chunks.append(b)
        off += len(b)
    return b''.join(chunks)


class Failure(Exception):
    def __init__(self, what, detail=None):
        super().__init__(what)
        self.what = what
        self.detail = detail


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seed', type=int, default=None)
    ap.add_argument('--count', type=int, required=True)
    ap.add_argument('--first', type=int, default=0)
    ap.add_argument('--mount-file', required=True)
    ap.add_argument('--ref-file', required=True)
    ap.add_argument('--mount-file2', default=None)
    ap.add_argument('--max-syncs-per-visit', type=int, default=None)
    ap.add_argument('--self-test', choices=['flip', 'shorten'], default=None)
    ap.add_argument('--sync-every-op', action='store_true')
    a = ap.parse_args()
    seed = a.seed
    if seed is None:
        env = os.environ.get('QFS_SEED', '').strip()
        seed = int(env) if env else random.randrange(1 << 31)
    paths = [a.mount_file, a.mount_file2 or a.mount_file]
    replay = 'python3 test/e2e/fsx.py --seed %d --count %d --first %d --mount-file %s --ref-file %s%s%s' % (
        seed, a.count, a.first, a.mount_file, a.ref_file, ' --mount-file2 ' + a.mount_file2 if a.mount_file2 else '',
        ' --max-syncs-per-visit %d' % a.max_syncs_per_visit if a.max_syncs_per_visit is not None else '')
    sys.stderr.write('fsx seed %d, ops %d..%d\n' % (seed, a.first, a.first + a.count - 1))

    gen = Generator(seed, a.mount_file2 is not None, a.max_syncs_per_visit)
    for _ in range(a.first):
        gen.next()

    counts = {}
    recent = []
    index = a.first
    op = {'op': 'open', 'side': gen.side}
    fd = -1
    ref = -1

    def compare_whole(what):
        want = read_all(ref)
        got = read_all(fd)
        st = os.fstat(fd).st_size
        d = first_diff(want, got, 0)
        if d is not None or st != len(want):
            raise Failure(what, {'first_diff': d, 'fstat_size': st, 'want_size': len(want)})
        return len(want)

    try:
        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if a.first == 0 else 0)
        ref = os.open(a.ref_file, flags, 0o644)
        fd = os.open(paths[gen.side], flags, 0o644)
        if a.first > 0:
            n = compare_whole('whole file at the start of a continued run')
            if n != gen.size:
                raise Failure('reference size %d is not the generator size %d: wrong --first?' % (n, gen.size))
        for index in range(a.first, a.first + a.count):
            op = gen.next()
            kind = op['op']
            counts[kind] = counts.get(kind, 0) + 1
            recent.append(dict(op, i=index))
            del recent[:-RECENT]
            if kind == 'write':
                b = data_of(op)
                os.pwrite(ref, b, op['off'])
                w = os.pwrite(fd, b, op['off'])
                if w != len(b):
                    raise Failure('short write: %d of %d bytes' % (w, len(b)))
            elif kind == 'read':
                if op['drop']:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                want = os.pread(ref, op['len'], op['off'])
                got = os.pread(fd, op['len'], op['off'])
                d = first_diff(want, got, op['off'])
                if d is not None:
                    raise Failure('read differs', {'first_diff': d})
            elif kind == 'truncate':
                os.ftruncate(ref, op['size'])
                os.ftruncate(fd, op['size'])
            elif kind == 'fsync':
                os.fsync(fd)
            elif kind == 'reopen':
                os.close(fd)
                fd = -1
                fd = os.open(paths[op['side']], os.O_RDWR)
                st = os.fstat(fd).st_size
                if st != gen.size:
                    raise Failure('size after open: fstat %d, reference %d' % (st, gen.size))
            elif kind == 'stat':
                st = os.fstat(fd).st_size
                if st != gen.size:
                    raise Failure('fstat size %d, reference %d' % (st, gen.size))
            if a.sync_every_op:
                os.fsync(fd)
                print('durable %d' % index, flush=True)
            if (index + 1) % PROGRESS_EVERY == 0:
                print('op %d' % (index + 1), flush=True)
        index = a.first + a.count
        op = {'op': 'final compare'}
        if a.self_test == 'flip' and gen.size > 0:
            at = gen.size // 2
            b = os.pread(fd, 1, at)
            os.pwrite(fd, bytes([b[0] ^ 0xff]), at)
        elif a.self_test == 'shorten' and gen.size > 0:
            os.ftruncate(fd, gen.size - 1)
        size = compare_whole('whole file at the end')
        if size != gen.size:
            raise Failure('final size %d, generator size %d' % (size, gen.size))
        os.close(fd)
        fd = -1
        # once more through a fresh open: what close published
        op = {'op': 'final compare after close and open', 'side': gen.side}
        fd = os.open(paths[gen.side], os.O_RDONLY)
        compare_whole('whole file after close and open')
        print(json.dumps({'ok': True, 'seed': seed, 'first': a.first, 'ops': a.count, 'size': size, 'counts': counts}), flush=True)
        return 0
    except Failure as f:
        out = {'ok': False, 'seed': seed, 'index': index, 'op': op, 'what': f.what}
        if f.detail:
            out.update(f.detail)
        out['recent'] = recent[:-1]
        out['replay'] = replay
        print(json.dumps(out), flush=True)
        return 1
    except OSError as e:
        out = {'ok': False, 'seed': seed, 'index': index, 'op': op, 'what': 'error %s: %s' % (errno.errorcode.get(e.errno, str(e.errno)), e.strerror),
               'recent': recent[:-1], 'replay': replay}
        print(json.dumps(out), flush=True)
        return 2
    finally:
        for x in (fd, ref):
            if x >= 0:
                try:
                    os.close(x)
                except OSError:
                    pass


if __name__ == '__main__':
    sys.exit(main())
