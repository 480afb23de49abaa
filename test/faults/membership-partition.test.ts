// A membership change while a node is cut off (network namespaces: its
// packets vanish, TCP hangs). Four nodes; n4 is drained and removed while n2
// is unreachable and a mount writes. The mover goes on without n2 (one of the
// old nodes may miss the new epoch), nothing the writer closed is lost, and
// once n2 is back it learns the membership, repair converges and fsck is clean.
//
// Skipped, with the reason in the title, when not root or when namespaces,
// veths or a bridge cannot be made.
import { join } from 'node:path';
import test from 'ava';
import { connect, runCli } from '../helpers/cluster.js';
import { decodeMembership } from '../../src/util/membership.js';
import { assertFsckClean, startWriter, verifyClosed } from '../helpers/faults.js';
import { mountCluster } from '../helpers/mount.js';
import { createLab, probeNetns, startLabCluster } from '../helpers/netns.js';

const probe = await probeNetns();

if (probe.skip !== null) {
  test.skip(`membership change across a partition: skipped, ${probe.skip}`, () => {});
} else {
  test.serial('drain and remove a node while another is cut off, under a writer: the change completes, nothing closed is lost, the cut node learns the membership, fsck clean', async (t) => {
    t.timeout(240_000);
    const lab = await createLab(t, 4, probe.degrade);
    const rc = await startLabCluster(t, lab);
    const cfg = rc.cluster.configPath;
    let mountLogs: (() => string) | null = null;
    let stage = 'start';
    t.teardown(() => {
      if (t.passed) return;
      t.log(`stage: ${stage}`);
      for (const [id, p] of rc.nodes) t.log(`node ${id} last log lines:\n${p.logs.slice(-10).join('\n')}`);
      if (mountLogs) t.log(`mount log:\n${mountLogs().split('\n').slice(-60).join('\n')}`);
    });
    const f = await runCli(['format', '--config', cfg]);
    t.is(f.code, 0, f.stderr);
    const mount = await mountCluster(t, rc);
    mountLogs = mount.logs;
    const writer = startWriter(t, join(mount.dir, 'w'), { seed: 21, count: 100000, minSize: 1000, maxSize: 300_000, keepGoing: false, pauseSec: 0.01 });
    await writer.closedAtLeast(5);

    await lab.cut('n2');
    const drain = await runCli(['node', 'drain', '--config', cfg, 'n4'], { timeoutMs: 200_000 });
    t.is(drain.code, 0, drain.stderr);
    const remove = await runCli(['node', 'remove', '--config', cfg, 'n4'], { timeoutMs: 200_000 });
    t.is(remove.code, 0, remove.stderr);
    t.regex(remove.stdout, /membership epoch 7, R=3, stable/);
    const closedWhileCut = writer.closed.length;
    await lab.heal('n2');
    await rc.nodes.get('n4')!.stop();

    stage = `after heal, ${writer.closed.length} closed, waiting for ${closedWhileCut + 5}`;
    await writer.closedAtLeast(closedWhileCut + 5);
    stage = 'writer stopping';
    writer.child.kill('SIGTERM');
    await writer.done;
    t.deepEqual(writer.errors, [], 'the writer saw no error');
    t.deepEqual(await verifyClosed(writer.closed), [], 'every closed file reads back');
    // n2 learns the membership from the first call placed by it, and repair brings it up to date.
    stage = 'repair';
    const repair = await runCli(['repair', '--config', cfg, '--restart'], { timeoutMs: 200_000 });
    t.is(repair.code, 0, repair.stderr);
    const list = await runCli(['node', 'list', '--config', cfg]);
    t.regex(list.stdout, /membership epoch 7/);
    const n2 = connect(t, rc.cluster, 'n2');
    t.is(decodeMembership((await n2.getMembership())!).epoch, 7, 'the node that was cut off knows the membership now');
    stage = 'unmount';
    await mount.stop();
    stage = 'fsck';
    await assertFsckClean(t, cfg);
  });
}
