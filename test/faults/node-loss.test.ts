// Fault scenarios 1 and 3: a node SIGKILLed in the middle of cp -a of a real
// tree, and a node whose data directory is wiped; then repair, and (3) the
// loss of another node. Each ends with the mount's contents checked against
// what was written and closed, every chunk back at R copies, and fsck clean.
import test from 'ava';
import { access, rm, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { must, quote, run } from '../helpers/e2e-fixtures.js';
import { runCli, tempDir } from '../helpers/cluster.js';
import { assertFsckClean, chunkFiles, runJson, startWriter, verifyClosed } from '../helpers/faults.js';
import { startCluster, type RunningCluster } from '../helpers/keyspace.js';
import { forceUnmount, mountCluster } from '../helpers/mount.js';

const REPO = new URL('../../..', import.meta.url).pathname.replace(/\/$/, '');

interface RepairJson {
  recordsScanned: number;
  recordsRepaired: number;
  chunksScanned: number;
  chunksRepaired: number;
  failures: number;
  nodesDown: string[];
}

async function formatted(t: Parameters<typeof startCluster>[0]): Promise<RunningCluster> {
  const rc = await startCluster(t, 3);
  const f = await runCli(['format', '--config', rc.cluster.configPath]);
  if (f.code !== 0) throw new Error(`format: ${f.stderr}`);
  return rc;
}

/** Repair until a run finds nothing to repair; returns the runs. */
async function repairConverges(t: Parameters<typeof startCluster>[0] & { log: (...a: unknown[]) => void }, configPath: string): Promise<RepairJson[]> {
  const runs: RepairJson[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await runJson<RepairJson>(['repair', '--config', configPath, '--restart']);
    if (r.code !== 0) throw new Error(`repair exited ${r.code}: ${r.stderr}`);
    runs.push(r.json);
    if (r.json.recordsRepaired === 0 && r.json.chunksRepaired === 0) return runs;
  }
  throw new Error(`repair did not converge: ${JSON.stringify(runs)}`);
}

/** With R = N = 3 every chunk belongs on every node: the three directories must hold the same set. */
async function assertEveryChunkOnEveryNode(t: { deepEqual: (a: unknown, b: unknown, m?: string) => void; true: (v: boolean, m?: string) => void }, rc: RunningCluster): Promise<number> {
  const sets = await Promise.all(rc.cluster.nodes.map((n) => chunkFiles(n.dataDir)));
  const union = [...new Set(sets.flat())].sort();
  t.true(union.length > 0, 'chunks were written');
  rc.cluster.nodes.forEach((n, i) => t.deepEqual(sets[i], union, `${n.id} holds every chunk`));
  return union.length;
}

test.serial('1 a node SIGKILLed during cp -a: the copy completes; after restart and repair every chunk is at R copies; fsck clean', async (t) => {
  const rc = await formatted(t);
  const mount = await mountCluster(t, rc);
  const tmp = await tempDir(t);
  const src = join(tmp, 'tree');
  // A real tree (small and large files, symlinks, modes), copied first: node_modules may change under the test.
  await must(`mkdir ${src} && cp -a ${REPO}/node_modules/{ws,pino,ava,lmdb} ${src}/ && find ${src} -xtype l -delete && head -c 5000000 /dev/urandom > ${src}/big.bin && chmod 640 ${src}/big.bin`);
  t.log(`${(await must(`find ${src} | wc -l`)).trim()} entries, ${(await must(`du -sh ${src} | cut -f1`)).trim()}`);
  let finished = false;
  const copy = run(`cp -a ${src} ${quote(mount.dir)}/copy`, { timeoutMs: 240_000 }).finally(() => (finished = true));
  await new Promise((r) => setTimeout(r, 1000));
  t.false(finished, 'cp still running when n2 is killed');
  rc.nodes.get('n2')!.kill('SIGKILL');
  await rc.nodes.get('n2')!.exited;
  const r = await copy;
  t.is(r.code, 0, r.stderr.slice(-2000));
  const diff = await run(`diff -r --no-dereference ${src} ${quote(mount.dir)}/copy`, { timeoutMs: 120_000 });
  t.is(diff.code, 0, (diff.stdout + diff.stderr).slice(-2000));

  await rc.start('n2');
  const runs = await repairConverges(t, rc.cluster.configPath);
  t.log(`repair: ${runs.map((x) => `${x.recordsRepaired} records, ${x.chunksRepaired} chunks`).join(' → ')}`);
  t.true(runs[0]!.recordsRepaired > 0 || runs[0]!.chunksRepaired > 0, 'the first repair had work: n2 missed part of the copy');
  const chunks = await assertEveryChunkOnEveryNode(t, rc);
  t.log(`${chunks} chunks, each on all three nodes`);
  const report = await assertFsckClean(t, rc.cluster.configPath, ['--grace', '0']);
  t.is(report.counts['chunksStored'], chunks);
});

test.serial('3 a node wiped and restarted empty, repaired, then another node stopped: everything is readable; fsck clean', async (t) => {
  const rc = await formatted(t);
  const first = await mountCluster(t, rc);
  const w = startWriter(t, join(first.dir, 'data'), { seed: 3, count: 40, minSize: 10, maxSize: 2_500_000 });
  t.is(await w.done, 0);
  await must(`mkdir -p ${quote(first.dir)}/tree/a/b && ln -s ../data ${quote(first.dir)}/tree/link && echo hi > ${quote(first.dir)}/tree/a/b/c && ln ${quote(first.dir)}/tree/a/b/c ${quote(first.dir)}/tree/hard`);

  const n1 = rc.cluster.nodes.find((n) => n.id === 'n1')!;
  rc.nodes.get('n1')!.kill('SIGKILL');
  await rc.nodes.get('n1')!.exited;
  await rm(n1.dataDir, { recursive: true, force: true });
  await rc.start('n1');
  t.deepEqual(await chunkFiles(n1.dataDir), [], 'n1 starts empty');
  const runs = await repairConverges(t, rc.cluster.configPath);
  t.true(runs[0]!.recordsRepaired > 0 && runs[0]!.chunksRepaired > 0, `the first repair restored records and chunks: ${JSON.stringify(runs[0])}`);
  await assertEveryChunkOnEveryNode(t, rc);

  // n1's restored records now make the majority: stop n2 and read everything through a new mount.
  await rc.nodes.get('n2')!.stop();
  await first.stop();
  await forceUnmount(first.dir);
  const second = await mountCluster(t, rc, 'mnt2');
  t.deepEqual(await verifyClosed(w.closed, { from: first.dir, to: second.dir }), []);
  t.is((await must(`cat ${quote(second.dir)}/tree/hard && readlink ${quote(second.dir)}/tree/link && stat -c %h ${quote(second.dir)}/tree/a/b/c`)).trim(), 'hi\n../data\n2');
  await assertFsckClean(t, rc.cluster.configPath, ['--grace', '0']);
});

// Reads the file in 1 MiB pieces, hashing; after `pause` bytes it creates
// `marker` and waits for `go` to exist before it reads on, so the test can kill a
// node at a known point of the read without any sleep of its own.
const READ_WITH_PAUSE = `
import hashlib, os, sys, time
path, pause, marker, go = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
h = hashlib.sha256()
done = 0
with open(path, 'rb', buffering=0) as f:
    while True:
        b = f.read(1 << 20)
        if not b:
            break
        h.update(b)
        done += len(b)
        if done == pause:
            open(marker, 'w').close()
            while not os.path.exists(go):
                time.sleep(0.01)
print(h.hexdigest())
`;

test.serial('4 a 2 GiB file of random bytes written on one mount reads back equal on another, also with a node SIGKILLed halfway through a sequential read', async (t) => {
  const rc = await formatted(t);
  const fs = await statfs(rc.cluster.dir);
  const freeGiB = (fs.bavail * fs.bsize) / 2 ** 30;
  if (freeGiB < 10) {
    t.log(`skipped: ${freeGiB.toFixed(1)} GiB free, the test stores 3 copies of 2 GiB`);
    t.pass();
    return;
  }
  const writer = await mountCluster(t, rc);
  const reader = await mountCluster(t, rc, 'mnt2');
  const tmp = await tempDir(t);
  // written from a stream: no source file on the disk, its hash taken on the way
  const written = (await must(`set -o pipefail; head -c 2G /dev/urandom | tee ${quote(writer.dir)}/big | sha256sum | cut -d' ' -f1`, { timeoutMs: 240_000 })).trim();
  t.is((await must(`stat -c %s ${quote(reader.dir)}/big`)).trim(), String(2 ** 31));
  t.is((await must(`sha256sum < ${quote(reader.dir)}/big | cut -d' ' -f1`, { timeoutMs: 240_000 })).trim(), written, 'read whole on the other mount');

  // again, from a fresh open, with n2 killed once 512 MiB have been read
  const marker = join(tmp, 'half');
  const go = join(tmp, 'go');
  const read = run(`python3 -c "$QFS_PY" ${quote(reader.dir)}/big ${512 * 2 ** 20} ${quote(marker)} ${quote(go)}`, { env: { QFS_PY: READ_WITH_PAUSE }, timeoutMs: 240_000 });
  const until = Date.now() + 120_000;
  for (;;) {
    try {
      await access(marker);
      break;
    } catch {
      if (Date.now() > until) throw new Error('the reader did not reach 512 MiB within 120 s');
      await new Promise((r) => setTimeout(r, 20)); // the interval of a condition poll, not a wait for time to pass
    }
  }
  rc.nodes.get('n2')!.kill('SIGKILL');
  await rc.nodes.get('n2')!.exited;
  await writeFile(go, '');
  const r = await read;
  t.is(r.code, 0, r.stderr.slice(-2000));
  t.is(r.stdout.trim(), written, 'the read went on with n2 dead and got every byte right');
});
