// Fault scenario 2: the mount process is SIGKILLed while a writer is busy.
// After a remount every file closed before the kill is intact, files in
// flight are absent or readable (never unreadable or corrupt), fsck is clean,
// and gc reclaims what the interrupted work left behind.
import test from 'ava';
import { join } from 'node:path';
import { runCli } from '../helpers/cluster.js';
import { checksums, manifest, runFsck, runJson, startWriter, verifyClosed } from '../helpers/faults.js';
import { startCluster } from '../helpers/keyspace.js';
import { forceUnmount, mountCluster } from '../helpers/mount.js';

test.serial('2 the mount SIGKILLed during writes: after a remount every closed file is intact; fsck clean; gc leaves no orphans', async (t) => {
  const rc = await startCluster(t, 3);
  const f = await runCli(['format', '--config', rc.cluster.configPath]);
  t.is(f.code, 0, f.stderr);
  const first = await mountCluster(t, rc);
  // Sizes from inline (under 16 KiB) to several chunks, so the kill lands in every kind of write.
  const w = startWriter(t, join(first.dir, 'w'), { seed: 2, count: 2000, minSize: 1, maxSize: 3_000_000 });
  await w.closedAtLeast(25);
  // A moment into the next file: mid-write, not between files.
  await new Promise((r) => setTimeout(r, 120));
  first.child.kill('SIGKILL');
  await first.exited;
  const code = await w.done;
  t.not(code, 0, 'the writer saw the mount go away');
  t.true(w.closed.length >= 25 && w.closed.length < 2000);
  t.log(`${w.closed.length} files closed before the kill; the writer's last error: ${JSON.stringify(w.errors.at(-1))}`);
  await forceUnmount(first.dir);

  const second = await mountCluster(t, rc);
  t.deepEqual(await verifyClosed(w.closed), [], 'every file closed before the kill reads back whole');
  // Whatever else is there (the file in flight) must read without error.
  const tree = await manifest(join(second.dir, 'w'));
  const closedNames = new Set(w.closed.map((c) => c.path.slice(join(first.dir, 'w').length + 1)));
  const extra = Object.keys(tree).filter((p) => tree[p]!.startsWith('file') && !closedNames.has(p));
  t.true(extra.length <= 1, `at most the one file in flight is extra: ${extra.join(', ')}`);
  const sums = await checksums(extra.map((p) => join(second.dir, 'w', p)));
  for (const [p, s] of sums) t.false('error' in s, `${p} reads: ${JSON.stringify(s)}`);

  const before = await runFsck(rc.cluster.configPath, ['--grace', '0']);
  t.is(before.code, 0, JSON.stringify(before.report.findings));
  t.true(before.report.clean);
  t.deepEqual(before.report.findings.filter((x) => x.severity === 'error'), []);
  t.log(`fsck after the kill: ${before.report.findings.map((x) => x.kind).join(', ') || 'nothing to report'}`);

  const gc = await runJson<{ orphansReclaimed: number; chunksSwept: number; bytesReclaimed: number; failures: number }>(['gc', '--config', rc.cluster.configPath, '--grace', '0']);
  t.is(gc.code, 0, gc.stderr);
  t.log(`gc: ${gc.json.orphansReclaimed} orphans, ${gc.json.chunksSwept} chunks, ${gc.json.bytesReclaimed} bytes reclaimed`);
  const after = await runFsck(rc.cluster.configPath, ['--grace', '0']);
  t.is(after.code, 0);
  t.deepEqual(after.report.findings.filter((x) => x.kind.startsWith('orphan')), [], 'gc reclaimed every orphan');
  t.deepEqual(await verifyClosed(w.closed), [], 'and gc took nothing that a closed file needs');
});
