// Growing and shrinking a live cluster with the commands a user runs
// (quorumfs node add/drain/remove) while a mount writes: nothing closed is
// lost, the mount follows without restart, a mount started later from the old
// cluster.json learns the membership, and fsck stays clean.
import test from 'ava';
import { join } from 'node:path';
import { must } from '../helpers/e2e-fixtures.js';
import { CLI, freePort, runCli, startNode, tempDir } from '../helpers/cluster.js';
import { spawn } from 'node:child_process';
import { assertFsckClean, manifest, startWriter, verifyClosed } from '../helpers/faults.js';
import { startCluster } from '../helpers/keyspace.js';
import { forceUnmount, mountCluster } from '../helpers/mount.js';

const REPO = new URL('../../..', import.meta.url).pathname.replace(/\/$/, '');

test.serial('grow 3 → 4, then drain and remove a node, under a writer: every closed file reads back, fsck clean, old configs still work', async (t) => {
  const rc = await startCluster(t, 3);
  const f = await runCli(['format', '--config', rc.cluster.configPath]);
  t.is(f.code, 0, f.stderr);
  const mount = await mountCluster(t, rc);
  const tmp = await tempDir(t);
  const src = join(tmp, 'tree');
  await must(`mkdir ${src} && cp -a ${REPO}/node_modules/{ws,pino} ${src}/ && find ${src} -xtype l -delete && head -c 3000000 /dev/urandom > ${src}/big.bin`);
  await must(`cp -a ${src} ${mount.dir}/tree`);
  const before = await manifest(join(mount.dir, 'tree'));

  // A fourth node, not in cluster.json: started on its own address and data directory.
  const port = await freePort();
  const url = `ws://127.0.0.1:${port}`;
  await startNode(t, rc.cluster, 'n4', ['--listen', `127.0.0.1:${port}`, '--data-dir', join(rc.cluster.dir, 'n4')]);

  // Mistakes first: each is refused with a clear message and changes nothing.
  const unreachable = await runCli(['node', 'add', '--config', rc.cluster.configPath, '--id', 'n5', '--url', `ws://127.0.0.1:${await freePort()}`]);
  t.is(unreachable.code, 1);
  t.regex(unreachable.stderr, /not reachable/);
  const wrongId = await runCli(['node', 'add', '--config', rc.cluster.configPath, '--id', 'n9', '--url', url]);
  t.is(wrongId.code, 1);
  t.regex(wrongId.stderr, /is "n4", not "n9"/);
  const tooFew = await runCli(['node', 'remove', '--config', rc.cluster.configPath, 'n2', '--dead']);
  t.is(tooFew.code, 1);
  t.regex(tooFew.stderr, /fewer than R/);
  const listed = await runCli(['node', 'list', '--config', rc.cluster.configPath]);
  t.regex(listed.stdout, /membership epoch 1, R=3, stable/);

  const writer = startWriter(t, join(mount.dir, 'w'), { seed: 11, count: 100000, minSize: 1000, maxSize: 300_000, keepGoing: false, pauseSec: 0.01 });
  await writer.closedAtLeast(5);
  const add = await runCli(['node', 'add', '--config', rc.cluster.configPath, '--id', 'n4', '--url', url], { timeoutMs: 300_000 });
  t.is(add.code, 0, add.stderr);
  t.regex(add.stdout, /membership epoch 4, R=3, stable/);
  t.regex(add.stdout, /n4 /);
  t.true(
    [...rc.nodes.values()].some((n) => n.logs.some((l) => l.includes('this node carries it on'))),
    'a node moved the data (the command handed the change over and followed it)',
  );
  const status = await runCli(['status', '--config', rc.cluster.configPath]);
  t.regex(status.stdout, /4\/4 nodes up, R=3, membership epoch 4, stable/);

  // Drain n1 (everything moves off it), left to the nodes (--no-wait: the command returns once the
  // change is asked for; a node of the new set moves the data), then take it out and stop it.
  const drain = await runCli(['node', 'drain', '--config', rc.cluster.configPath, 'n1', '--no-wait'], { timeoutMs: 60_000 });
  t.is(drain.code, 0, drain.stderr);
  t.regex(drain.stdout, /membership epoch 5, R=3, changing \(drain n1/);
  t.regex(drain.stderr, /left to the nodes/);
  let drained = '';
  for (const until = Date.now() + 180_000; !/membership epoch 7, R=3, stable/.test(drained); ) {
    if (Date.now() > until) throw new Error(`the nodes did not carry the drain through in 180 s: ${drained}`);
    await new Promise((r) => setTimeout(r, 500));
    drained = (await runCli(['node', 'list', '--config', rc.cluster.configPath])).stdout;
  }
  t.regex(drained, /n1 .*draining/);
  const remove = await runCli(['node', 'remove', '--config', rc.cluster.configPath, 'n1'], { timeoutMs: 300_000 });
  t.is(remove.code, 0, remove.stderr);
  t.regex(remove.stdout, /membership epoch 10, R=3, stable/);
  t.notRegex(remove.stdout, / n1 /);
  await rc.nodes.get('n1')!.stop();

  writer.child.kill('SIGTERM');
  await writer.done;
  t.deepEqual(writer.errors, [], 'the writer saw no error while the cluster changed');
  t.true(writer.closed.length >= 5, `${writer.closed.length} files closed`);
  t.deepEqual(await verifyClosed(writer.closed), [], 'every closed file reads back');
  t.deepEqual(await manifest(join(mount.dir, 'tree')), before, 'the tree is unchanged');

  // A mount started from the old cluster.json (n1 gone, n4 missing) learns the membership from n2 or n3.
  const late = await mountCluster(t, rc, 'late');
  t.deepEqual(await manifest(join(late.dir, 'tree')), before);
  t.deepEqual(await verifyClosed(writer.closed, { from: mount.dir, to: late.dir }), []);
  await late.stop();
  await mount.stop();
  await assertFsckClean(t, rc.cluster.configPath);
});

test.serial('a SIGKILLed node removed with --dead, and a node add moved by its command (--here) killed mid-move, carried on by the nodes with no command, under a writer: nothing closed is lost, fsck clean', async (t) => {
  // The nodes carry on a change that goes without progress for 2 s (30 s by default).
  const rc = await startCluster(t, 4, {}, ['--mover-grace', '2s']);
  const f = await runCli(['format', '--config', rc.cluster.configPath]);
  t.is(f.code, 0, f.stderr);
  const mount = await mountCluster(t, rc);
  const writer = startWriter(t, join(mount.dir, 'w'), { seed: 12, count: 100000, minSize: 1000, maxSize: 200_000, keepGoing: false, pauseSec: 0.01 });
  await writer.closedAtLeast(10);

  // n4 dies for good; its keys are copied again from the survivors.
  rc.nodes.get('n4')!.kill('SIGKILL');
  await rc.nodes.get('n4')!.exited;
  const dead = await runCli(['node', 'remove', '--config', rc.cluster.configPath, 'n4', '--dead'], { timeoutMs: 300_000 });
  t.is(dead.code, 0, dead.stderr);
  t.regex(dead.stdout, /membership epoch 4, R=3, stable/);
  t.notRegex(dead.stdout, / n4 /);

  // A new node joins, moved by the command itself (--here), which is killed once the change has started: the change stays in the record.
  const port = await freePort();
  await startNode(t, rc.cluster, 'n5', ['--listen', `127.0.0.1:${port}`, '--data-dir', join(rc.cluster.dir, 'n5')]);
  const add = spawn(process.execPath, [CLI, 'node', 'add', '--config', rc.cluster.configPath, '--id', 'n5', '--url', `ws://127.0.0.1:${port}`, '--here'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const addExited = new Promise((r) => add.once('exit', r));
  t.teardown(() => {
    if (add.exitCode === null && add.signalCode === null) add.kill('SIGKILL');
  });
  let err = '';
  await new Promise<void>((resolve, reject) => {
    add.stderr!.setEncoding('utf8').on('data', (s: string) => {
      err += s;
      if (err.includes('started')) resolve();
    });
    add.once('exit', (code) => reject(new Error(`node add exited (${String(code)}) before the change started: ${err}`)));
  });
  add.kill('SIGKILL');
  await addExited;
  const half = await runCli(['node', 'list', '--config', rc.cluster.configPath]);
  t.regex(half.stdout, /changing \(add n5/);
  const status = await runCli(['status', '--config', rc.cluster.configPath]);
  t.regex(status.stdout, /a change in progress: add n5/);
  // No command: a node sees the change go without progress and carries it through.
  const until = Date.now() + 180_000;
  let listed = '';
  while (!/membership epoch 7, R=3, stable/.test(listed)) {
    if (Date.now() > until) throw new Error(`the nodes did not carry the change through in 180 s: ${listed}`);
    await new Promise((r) => setTimeout(r, 500));
    listed = (await runCli(['node', 'list', '--config', rc.cluster.configPath])).stdout;
  }
  t.regex(listed, /n5 /);
  const carriers = [...rc.nodes.values()].filter((n) => n.logs.some((l) => l.includes('this node carries it on')));
  t.true(carriers.length >= 1, 'a node (n1-n3, started with --mover-grace 2s) logged that it carried the change on');
  const resumed = await runCli(['node', 'resume', '--config', rc.cluster.configPath], { timeoutMs: 300_000 });
  t.is(resumed.code, 0, resumed.stderr);
  t.regex(resumed.stdout, /membership epoch 7, R=3, stable/, 'resume of a finished change changes nothing');

  writer.child.kill('SIGTERM');
  await writer.done;
  t.deepEqual(writer.errors, [], 'the writer saw no error');
  t.deepEqual(await verifyClosed(writer.closed), [], 'every closed file reads back');
  await mount.stop();
  await assertFsckClean(t, rc.cluster.configPath);
});

test.serial('a node SIGKILLed and a mount SIGKILLed in the middle of a move: the move finishes once the node is back, nothing closed is lost, fsck clean', async (t) => {
  const rc = await startCluster(t, 3);
  const f = await runCli(['format', '--config', rc.cluster.configPath]);
  t.is(f.code, 0, f.stderr);
  const a = await mountCluster(t, rc, 'a');
  const b = await mountCluster(t, rc, 'b');
  const tmp = await tempDir(t);
  const src = join(tmp, 'tree');
  // Enough chunk bytes that a copy throttled to 1 MB/s is still running when the faults come.
  await must(`mkdir ${src} && cp -a ${REPO}/node_modules/ws ${src}/ && find ${src} -xtype l -delete && head -c 24000000 /dev/urandom > ${src}/big.bin`);
  await must(`cp -a ${src} ${a.dir}/tree`);
  const before = await manifest(join(a.dir, 'tree'));
  const wa = startWriter(t, join(a.dir, 'wa'), { seed: 21, count: 100000, minSize: 1000, maxSize: 200_000, keepGoing: false, pauseSec: 0.02 });
  const wb = startWriter(t, join(b.dir, 'wb'), { seed: 22, count: 100000, minSize: 1000, maxSize: 200_000, keepGoing: true, pauseSec: 0.02 });
  await Promise.all([wa.closedAtLeast(5), wb.closedAtLeast(5)]);

  const port = await freePort();
  await startNode(t, rc.cluster, 'n4', ['--listen', `127.0.0.1:${port}`, '--data-dir', join(rc.cluster.dir, 'n4')]);
  const add = spawn(process.execPath, [CLI, 'node', 'add', '--config', rc.cluster.configPath, '--id', 'n4', '--url', `ws://127.0.0.1:${port}`, '--rate', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let addOut = '';
  add.stdout!.setEncoding('utf8').on('data', (s: string) => (addOut += s));
  add.stderr!.setEncoding('utf8').on('data', (s: string) => (addOut += s));
  const addExited = new Promise<number | null>((r) => add.once('exit', (code) => r(code)));
  t.teardown(() => {
    if (add.exitCode === null && add.signalCode === null) add.kill('SIGKILL');
  });

  // Once the change is under way: n2 (an old and a new replica of many keys) and mount b die.
  for (;;) {
    if (/started/.test(addOut)) break;
    if (add.exitCode !== null) throw new Error(`node add ended before the change started: ${addOut}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  t.is(add.exitCode, null, 'the move is still running when the faults come');
  rc.nodes.get('n2')!.kill('SIGKILL');
  b.child.kill('SIGKILL');
  await Promise.all([rc.nodes.get('n2')!.exited, b.exited]);
  wb.child.kill('SIGTERM');
  await wb.done;
  await forceUnmount(b.dir);
  // The closed files of the killed mount, read through the other one.
  const closedOnB = wb.closed.filter((c) => !wb.errors.some((e) => e.path === c.path));

  await rc.start('n2');
  const code = await addExited;
  t.is(code, 0, addOut);
  t.regex(addOut, /membership epoch 4, R=3, stable/);

  wa.child.kill('SIGTERM');
  await wa.done;
  t.deepEqual(wa.errors, [], 'the surviving mount saw no error');
  t.deepEqual(await verifyClosed(wa.closed), [], 'every file closed on the surviving mount reads back');
  t.true(closedOnB.length >= 5);
  t.deepEqual(await verifyClosed(closedOnB, { from: b.dir, to: a.dir }), [], 'every file the killed mount had closed reads back');
  t.deepEqual(await manifest(join(a.dir, 'tree')), before, 'the tree is unchanged');
  await a.stop();
  await assertFsckClean(t, rc.cluster.configPath);
});

test.serial('nodes that move nothing (--mover-grace 0): a change handed to them is moved by the command itself after 15 s without a report, and says so', async (t) => {
  const rc = await startCluster(t, 4, {}, ['--mover-grace', '0']);
  const f = await runCli(['format', '--config', rc.cluster.configPath]);
  t.is(f.code, 0, f.stderr);
  const drain = await runCli(['node', 'drain', '--config', rc.cluster.configPath, 'n4'], { timeoutMs: 300_000 });
  t.is(drain.code, 0, drain.stderr);
  t.regex(drain.stderr, /no node picked the change up in 15 s .*moving it from here/);
  t.regex(drain.stdout, /membership epoch 4, R=3, stable/);
  const remove = await runCli(['node', 'remove', '--config', rc.cluster.configPath, 'n4', '--here'], { timeoutMs: 300_000 });
  t.is(remove.code, 0, remove.stderr);
  t.notRegex(remove.stderr, /no node picked/, '--here moves it at once');
  t.regex(remove.stdout, /membership epoch 7, R=3, stable/);
  t.false([...rc.nodes.values()].some((n) => n.logs.some((l) => l.includes('this node carries it on'))), 'no node moved anything');
  const bad = await runCli(['node', 'drain', '--config', rc.cluster.configPath, 'n3', '--here', '--no-wait']);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /--no-wait and --here: pick one/);
});
