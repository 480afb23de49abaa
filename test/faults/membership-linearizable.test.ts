// Registers stay linearizable while the cluster grows and shrinks under them:
// four proposer processes read, write and increment keys spread over eight
// groups (so over several replica sets, every one of which moves) while the
// cluster grows 3 → 4 → 5 and a node is drained and removed with the commands
// a user runs. The history must be linearizable, and each counter must end at
// its successful increments (plus at most the unknown ones).
import test from 'ava';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkLinearizable, describeEvent, type Event } from '../helpers/linearizability.js';
import { clusterKeySpace, startCluster } from '../helpers/keyspace.js';
import { freePort, runCli, startNode } from '../helpers/cluster.js';
import { recordKey } from '../../src/keyspace/types.js';

const WORKER = fileURLToPath(new URL('../cluster/proposer-worker.js', import.meta.url));
const GROUPS = 8;

test.serial('registers stay linearizable while the cluster grows 3 → 4 → 5 and sheds a node under four proposers', async (t) => {
  t.timeout(600_000);
  const seed = Number(process.env['QFS_SEED'] ?? Date.now() % 1_000_000);
  t.log(`seed ${seed} (replay with QFS_SEED=${seed})`);
  const rc = await startCluster(t, 3);
  const cfg = rc.cluster.configPath;
  const f = await runCli(['format', '--config', cfg]);
  t.is(f.code, 0, f.stderr);

  const workers = [1, 2, 3, 4].map((i) => {
    const child = spawn(
      process.execPath,
      [
        WORKER,
        JSON.stringify({
          client: `p${i}`,
          clusterName: rc.cluster.name,
          secret: rc.cluster.secret.toString(),
          nodes: rc.cluster.nodes.map((n) => ({ id: n.id, url: n.url })),
          durationMs: 600_000, // ended by SIGTERM once the changes are done
          seed: seed * 10 + i,
          groups: GROUPS,
        }),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    const done = new Promise<{ out: string; err: string; code: number | null }>((resolve) => child.once('exit', (code) => resolve({ out, err, code })));
    t.teardown(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    return { child, done, events: () => out.split('\n').length - 1 };
  });
  // Each worker has a history before the first change.
  for (const until = Date.now() + 60_000; workers.some((w) => w.events() < 20); ) {
    if (Date.now() > until) throw new Error('the workers did not get going in 60 s');
    await new Promise((r) => setTimeout(r, 100));
  }

  const changes: string[][] = [];
  for (const id of ['n4', 'n5']) {
    const port = await freePort();
    await startNode(t, rc.cluster, id, ['--listen', `127.0.0.1:${port}`, '--data-dir', join(rc.cluster.dir, id)]);
    changes.push(['node', 'add', '--config', cfg, '--id', id, '--url', `ws://127.0.0.1:${port}`]);
  }
  changes.push(['node', 'drain', '--config', cfg, 'n1'], ['node', 'remove', '--config', cfg, 'n1']);
  const before = workers.map((w) => w.events());
  for (const args of changes) {
    const r = await runCli(args, { timeoutMs: 300_000 });
    t.is(r.code, 0, `${args.slice(0, 2).join(' ')}: ${r.stderr}`);
  }
  const list = await runCli(['node', 'list', '--config', cfg]);
  t.regex(list.stdout, /membership epoch 13, R=3, stable/);
  t.notRegex(list.stdout, / n1 /);
  await rc.nodes.get('n1')!.stop();
  // Every worker ran operations while the cluster changed, and goes on after n1 is gone.
  const during = workers.map((w) => w.events());
  t.true(during.every((n, i) => n > before[i]! + 10), `operations while the membership changed: ${before} → ${during}`);
  for (const until = Date.now() + 60_000; workers.some((w, i) => w.events() < during[i]! + 10); ) {
    if (Date.now() > until) throw new Error('the workers made no progress after n1 was removed');
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const w of workers) w.child.kill('SIGTERM');
  const results = await Promise.all(workers.map((w) => w.done));
  for (const r of results) t.is(r.code, 0, r.err);

  const events: Event[] = results.flatMap((r) => r.out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Event));
  events.forEach((e, i) => (e.id = i));
  const ok = events.filter((e) => e.outcome === 'ok').length;
  t.log(`${events.length} operations (${ok} ok) over ${GROUPS} groups`);
  t.true(ok > 200, 'enough operations succeeded to mean something');
  const verdict = checkLinearizable(events, null);
  if (!verdict.ok) {
    const detail = 'minimalPrefix' in verdict && verdict.minimalPrefix ? verdict.minimalPrefix.slice(-12).map(describeEvent).join('\n') : '';
    t.fail(`seed ${seed}: key ${verdict.key}: ${verdict.message}\n${detail}`);
  }

  // N successful increments of a counter give N (plus those whose outcome was unknown, at most): none lost in a move.
  const ks = clusterKeySpace(t, rc);
  await ks.waitForPeers(5000, 2);
  for (let g = 0; g < GROUPS; g++) {
    const name = `c${g}`;
    const incrs = events.filter((e) => e.op.kind === 'incr' && e.op.key === name);
    const okIncr = incrs.filter((e) => e.outcome === 'ok').length;
    const unknownIncr = new Set(incrs.filter((e) => e.outcome === 'unknown').map((e) => `${e.client} ${e.call}`)).size;
    const final = Number((await ks.read(recordKey(Buffer.from(`lin${g}`), Buffer.from(name))))?.toString() ?? '0');
    t.true(final >= okIncr && final <= okIncr + unknownIncr, `${name}: ${final}, ${okIncr} ok increments, ${unknownIncr} unknown`);
  }
});
