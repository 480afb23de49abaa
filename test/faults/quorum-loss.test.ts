// Fault scenario 6: two of three nodes down. File operations fail with EIO
// within the configured deadline instead of hanging, the mount stays up, ls
// of a directory the mount has listed still answers (from what it last saw),
// and when the nodes come back the same mount works again without a remount.
import test from 'ava';
import { join } from 'node:path';
import { must, quote, run } from '../helpers/e2e-fixtures.js';
import { runCli } from '../helpers/cluster.js';
import { assertFsckClean, startWriter, verifyClosed } from '../helpers/faults.js';
import { startCluster } from '../helpers/keyspace.js';
import { mountCluster } from '../helpers/mount.js';

const REQUEST_MS = 1500;
const CONNECT_MS = 1000;

/** Runs a shell command and reports its exit code, stderr and how long it took. */
async function timed(command: string): Promise<{ code: number; stderr: string; stdout: string; ms: number }> {
  const t0 = performance.now();
  const r = await run(command, { timeoutMs: 120_000 });
  return { ...r, ms: performance.now() - t0 };
}

test.serial('two of three nodes down: EIO within the deadline, the mount stays up, listed directories still list; nodes back: the same mount works', async (t) => {
  const rc = await startCluster(t, 3, { timeouts: { requestMs: REQUEST_MS, connectMs: CONNECT_MS } });
  const f = await runCli(['format', '--config', rc.cluster.configPath]);
  t.is(f.code, 0, f.stderr);
  const mount = await mountCluster(t, rc);
  const m = mount.dir;

  const w = startWriter(t, join(m, 'w'), { seed: 6, count: 20, minSize: 100, maxSize: 300_000 });
  t.is(await w.done, 0);
  await must(`mkdir ${quote(m)}/d && for i in 1 2 3; do echo "file $i" > ${quote(m)}/d/f$i; done`);
  const listed = (await must(`ls ${quote(m)}/d`)).split('\n').filter(Boolean);
  t.deepEqual(listed, ['f1', 'f2', 'f3']);

  rc.nodes.get('n2')!.kill('SIGKILL');
  rc.nodes.get('n3')!.kill('SIGKILL');
  await Promise.all([rc.nodes.get('n2')!.exited, rc.nodes.get('n3')!.exited]);
  // Longer than every cache of the mount and the kernel (1 s), so each answer below is the cluster's or the fallback's.
  await new Promise((r) => setTimeout(r, 1500));

  // Changes need a majority: each fails with EIO, bounded by the configured deadline, not the 30 s FUSE timeout.
  const bound = 4 * REQUEST_MS + 2 * CONNECT_MS;
  const ops = {
    create: `echo new > ${quote(m)}/d/new`,
    mkdir: `mkdir ${quote(m)}/d/newdir`,
    unlink: `rm ${quote(m)}/d/f1`,
    rename: `mv ${quote(m)}/d/f2 ${quote(m)}/d/f2b`,
    chmod: `chmod 600 ${quote(m)}/d/f3`,
    read: `cat ${quote(m)}/w/d00/f00000 > /dev/null`,
  };
  for (const [name, cmd] of Object.entries(ops)) {
    const r = await timed(cmd);
    t.not(r.code, 0, `${name} must fail with two nodes down`);
    t.regex(r.stderr, /Input\/output error/, `${name}: EIO, got: ${r.stderr}`);
    t.true(r.ms < bound, `${name} took ${Math.round(r.ms)} ms; the configured deadline allows ${bound} ms`);
    t.log(`${name}: EIO after ${Math.round(r.ms)} ms`);
  }

  // The mount is up, and what it listed still lists.
  t.is(mount.child.exitCode, null, 'the mount process is still running');
  const ls = await timed(`ls ${quote(m)}/d`);
  t.is(ls.code, 0, `ls of a listed directory: ${ls.stderr}`);
  t.deepEqual(ls.stdout.split('\n').filter(Boolean), ['f1', 'f2', 'f3']);
  const stat = await timed(`stat -c %s ${quote(m)}/d/f1`);
  t.is(stat.code, 0, `stat of a listed file: ${stat.stderr}`);
  t.is(stat.stdout.trim(), '7');

  // Nodes back: the same mount, no remount, works again (within the nodes' reconnect backoff).
  await rc.start('n2');
  await rc.start('n3');
  let ok = false;
  for (let i = 0; i < 100 && !ok; i++) {
    ok = (await run(`echo back > ${quote(m)}/d/new`)).code === 0;
    if (!ok) await new Promise((r) => setTimeout(r, 100));
  }
  t.true(ok, 'a create works again once the nodes are back');
  t.is((await must(`cat ${quote(m)}/d/new`)).trim(), 'back');
  // An operation that failed with EIO has an unknown outcome (its change may have reached the
  // one live node and be completed by the next round), but never a half one.
  const names = (await must(`ls ${quote(m)}/d`)).split('\n').filter(Boolean);
  t.is(names.filter((n) => n === 'f2' || n === 'f2b').length, 1, `a rename happened or not, never both or neither: ${names.join(' ')}`);
  t.regex((await must(`stat -c %a ${quote(m)}/d/f3`)).trim(), /^(600|644)$/);
  await must(`cd ${quote(m)}/d && { [ ! -e f2 ] || mv f2 f2b; } && rm -f f1 && chmod 600 f3 && rmdir newdir 2>/dev/null; true`);
  t.deepEqual((await must(`ls ${quote(m)}/d`)).split('\n').filter(Boolean), ['f2b', 'f3', 'new']);
  t.is((await must(`cat ${quote(m)}/d/f2b`)).trim(), 'file 2');
  t.deepEqual(await verifyClosed(w.closed), []);
  t.is(mount.child.exitCode, null, 'still the first mount process');
  await assertFsckClean(t, rc.cluster.configPath, ['--grace', '0']);
});
