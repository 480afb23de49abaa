// fsck, gc, scrub and repair while the filesystem is mounted and busy: a
// writer creating files and a churner rewriting, renaming and deleting them
// run the whole time. Nothing a writer closed may be damaged, fsck may not
// raise a false error, and gc must reclaim what the churn freed.
import test from 'ava';
import { join } from 'node:path';
import { python } from '../helpers/e2e-fixtures.js';
import { runCli } from '../helpers/cluster.js';
import { assertFsckClean, runFsck, runJson, startWriter, verifyClosed } from '../helpers/faults.js';
import { startCluster } from '../helpers/keyspace.js';
import { mountCluster } from '../helpers/mount.js';

const CHURN = String.raw`
import os, random, sys, time
root, seconds = sys.argv[1], float(sys.argv[2])
rng = random.Random(5); os.makedirs(root, exist_ok=True); end = time.time() + seconds; n = 0
while time.time() < end:
    p = os.path.join(root, 'c%d' % rng.randint(0, 15))
    op = rng.random()
    try:
        if op < 0.5:
            with open(p + '.tmp', 'wb') as f:
                f.write(rng.randbytes(rng.randint(1, 1_500_000))); f.flush(); os.fsync(f.fileno())
            os.rename(p + '.tmp', p)
        elif op < 0.8:
            os.unlink(p)
        else:
            os.link(p, p + '.l%d' % n); os.unlink(p)
    except FileNotFoundError:
        pass
    except FileExistsError:
        pass
    n += 1
print(n)
`;

test.serial('fsck, gc, scrub and repair on a busy mount: no false errors, nothing closed is damaged, gc reclaims the churn', async (t) => {
  const rc = await startCluster(t, 3);
  t.is((await runCli(['format', '--config', rc.cluster.configPath])).code, 0);
  const mount = await mountCluster(t, rc);
  const w = startWriter(t, join(mount.dir, 'w'), { seed: 8, count: 150, minSize: 1, maxSize: 1_200_000, pauseSec: 0.02 });
  const churn = python(CHURN, [join(mount.dir, 'churn'), '15'], { timeoutMs: 120_000 });

  const fsckRuns: Array<{ code: number | null; errors: number }> = [];
  const gcRuns: Array<{ code: number | null; orphansReclaimed: number; chunksSwept: number; bytesReclaimed: number }> = [];
  const until = Date.now() + 12_000;
  while (Date.now() < until) {
    const f = await runFsck(rc.cluster.configPath, ['--grace', '5s']);
    fsckRuns.push({ code: f.code, errors: f.report.errors });
    t.deepEqual(f.report.findings.filter((x) => x.severity === 'error'), [], 'fsck raises no false error on a busy filesystem');
    const g = await runJson<{ orphansReclaimed: number; chunksSwept: number; bytesReclaimed: number; failures: number }>(['gc', '--config', rc.cluster.configPath, '--grace', '3s']);
    t.is(g.code, 0, g.stderr);
    gcRuns.push({ code: g.code, ...g.json });
  }
  const scrub = await runJson<{ corrupt: number; failed: number }>(['scrub', '--config', rc.cluster.configPath, '--restart']);
  t.is(scrub.code, 0, scrub.stderr);
  t.is(scrub.json.corrupt, 0);
  const repair = await runJson<{ failures: number }>(['repair', '--config', rc.cluster.configPath, '--restart']);
  t.is(repair.code, 0, repair.stderr);
  const churned = await churn;
  t.is(churned.code, 0, churned.stderr);
  t.is(await w.done, 0, JSON.stringify(w.errors.slice(-3)));
  t.log(`${fsckRuns.length} fsck and gc runs during ${churned.stdout.trim()} churn operations and ${w.closed.length} files written; gc reclaimed ${gcRuns.reduce((n, g) => n + g.orphansReclaimed, 0)} orphans, ${gcRuns.reduce((n, g) => n + g.bytesReclaimed, 0)} bytes`);
  // gc must reclaim what the churn freed. On a loaded machine the runs beside
  // the churn may all come before anything it freed is past gc's grace, so
  // wait for that (a condition, bounded generously), not for a clock.
  const settleUntil = Date.now() + 90_000;
  while (!gcRuns.some((g) => g.orphansReclaimed > 0 || g.chunksSwept > 0) && Date.now() < settleUntil) {
    const g = await runJson<{ orphansReclaimed: number; chunksSwept: number; bytesReclaimed: number; failures: number }>(['gc', '--config', rc.cluster.configPath, '--grace', '3s']);
    t.is(g.code, 0, g.stderr);
    gcRuns.push({ code: g.code, ...g.json });
  }
  t.true(gcRuns.some((g) => g.orphansReclaimed > 0 || g.chunksSwept > 0), `gc reclaimed what the churn freed (${gcRuns.length} runs)`);

  t.deepEqual(await verifyClosed(w.closed), [], 'every file the writer closed reads back whole');
  // Every name the churn left reads whole (no chunk it needs was swept).
  const left = await python(
    String.raw`
import os, sys
bad = []
for n in sorted(os.listdir(sys.argv[1])):
    try:
        with open(os.path.join(sys.argv[1], n), 'rb') as f:
            while f.read(1 << 20): pass
    except OSError as e:
        bad.append('%s: %s' % (n, e))
print('\n'.join(bad))
`,
    [join(mount.dir, 'churn')],
  );
  t.is(left.code, 0, left.stderr);
  t.is(left.stdout.trim(), '', `churned files read back: ${left.stdout}`);

  // Idle now: gc with no grace leaves no orphan, and fsck is clean.
  const last = await runJson<{ failures: number }>(['gc', '--config', rc.cluster.configPath, '--grace', '0']);
  t.is(last.code, 0);
  const report = await assertFsckClean(t, rc.cluster.configPath, ['--grace', '0']);
  t.deepEqual(report.findings.filter((x) => x.kind.startsWith('orphan')), []);
});
