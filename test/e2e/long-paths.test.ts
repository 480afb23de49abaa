// Paths near PATH_MAX on a real mount: create, stat, link, rename and unlink
// work for a 4095-byte path (the longest the kernel passes), and a longer one
// fails with ENAMETOOLONG, as on a local filesystem.
import test from 'ava';
import { python } from '../helpers/e2e-fixtures.js';
import { mountedCluster } from '../helpers/mount.js';

const LONG = String.raw`
import errno, json, os, sys
os.chdir(sys.argv[1])
def attempt(fn):
    try:
        fn(); return 'ok'
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
rel = ''
for i in range(15):
    rel = os.path.join(rel, 'd' * 250) if rel else 'd' * 250
    os.mkdir(rel)
out = {}
for extra in (74, 78):
    d = os.path.join(rel, 'e' * extra)
    os.mkdir(d)
    f = os.path.join(d, 'x' * 255)
    l = f[:-1] + 'L'
    r = f[:-1] + 'R'
    out[len(f)] = {
        'create': attempt(lambda: open(f, 'w').write('hi')),
        'stat': attempt(lambda: os.stat(f)),
        'link': attempt(lambda: os.link(f, l)),
        'nlink': os.stat(f).st_nlink if os.path.exists(f) else None,
        'rename': attempt(lambda: os.rename(l, r)),
        'unlink': attempt(lambda: (os.unlink(r), os.unlink(f))),
    }
print(json.dumps(out))
`;

test.serial('paths up to PATH_MAX work through the mount; longer ones are ENAMETOOLONG', async (t) => {
  const { mount } = await mountedCluster(t);
  const r = await python(LONG, [mount.dir]);
  t.is(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, Record<string, unknown>>;
  t.deepEqual(out['4095'], { create: 'ok', stat: 'ok', link: 'ok', nlink: 2, rename: 'ok', unlink: 'ok' }, 'a 4095-byte path');
  t.deepEqual(out['4099'], { create: 'ENAMETOOLONG', stat: 'ENAMETOOLONG', link: 'ENAMETOOLONG', nlink: null, rename: 'ENAMETOOLONG', unlink: 'ENAMETOOLONG' }, 'past PATH_MAX');
  t.is(await mount.stop(), 0, mount.logs());
});
