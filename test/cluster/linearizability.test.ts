// Several proposer processes change and read shared registers while nodes are
// killed and restarted; the recorded history must be linearizable.
import test from 'ava';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { checkLinearizable, describeEvent, type Event } from '../helpers/linearizability.js';
import { startCluster } from '../helpers/keyspace.js';
import { recordKey } from '../../src/keyspace/types.js';
import { clusterKeySpace } from '../helpers/keyspace.js';

const WORKER = fileURLToPath(new URL('./proposer-worker.js', import.meta.url));

function mulberry(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test.serial('registers stay linearizable while nodes are killed and restarted', async (t) => {
  const seed = Number(process.env['QFS_SEED'] ?? Date.now() % 1_000_000);
  t.log(`seed ${seed} (replay with QFS_SEED=${seed})`);
  const random = mulberry(seed);
  const rc = await startCluster(t, 3);
  const durationMs = 8000;
  const workers = [1, 2, 3, 4].map((i) => {
    const child = spawn(process.execPath, [
      WORKER,
      JSON.stringify({
        client: `p${i}`,
        clusterName: rc.cluster.name,
        secret: rc.cluster.secret.toString(),
        nodes: rc.cluster.nodes.map((n) => ({ id: n.id, url: n.url })),
        durationMs,
        seed: seed * 10 + i,
      }),
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    const done = new Promise<{ out: string; err: string; code: number | null }>((resolve) => child.once('exit', (code) => resolve({ out, err, code })));
    t.teardown(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    return done;
  });

  // Chaos: kill a random node with SIGKILL, bring it back, now and then two at once.
  const chaosEnd = Date.now() + durationMs - 1000;
  let kills = 0;
  while (Date.now() < chaosEnd) {
    await new Promise((r) => setTimeout(r, 300 + random() * 700));
    const ids = ['n1', 'n2', 'n3'];
    const victims = random() < 0.2 ? ids.filter(() => random() < 0.67).slice(0, 2) : [ids[Math.floor(random() * 3)]!];
    for (const id of victims) rc.nodes.get(id)!.kill('SIGKILL');
    kills += victims.length;
    await Promise.all(victims.map((id) => rc.nodes.get(id)!.exited));
    await new Promise((r) => setTimeout(r, 200 + random() * 800));
    await Promise.all(victims.map((id) => rc.start(id)));
  }
  const results = await Promise.all(workers);
  for (const r of results) t.is(r.code, 0, r.err);
  const events: Event[] = results.flatMap((r) => r.out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Event));
  // ids are per worker: make them unique
  events.forEach((e, i) => (e.id = i));
  const ok = events.filter((e) => e.outcome === 'ok').length;
  t.log(`${events.length} operations (${ok} ok), ${kills} node kills`);
  const reasons = new Map<string, number>();
  for (const e of events as Array<Event & { error?: string }>) {
    if (e.error) {
      const r = e.error.replace(/[0-9a-f]{16,}|\d+/g, '#').slice(0, 90);
      reasons.set(r, (reasons.get(r) ?? 0) + 1);
    }
  }
  t.log('failures by reason:', [...reasons].sort((a, b) => b[1] - a[1]).slice(0, 6));
  t.true(ok > 100, 'enough operations succeeded to mean something');
  t.true(kills > 0);

  const verdict = checkLinearizable(events, null);
  if (!verdict.ok) {
    const detail = 'minimalPrefix' in verdict && verdict.minimalPrefix ? verdict.minimalPrefix.slice(-12).map(describeEvent).join('\n') : '';
    t.fail(`seed ${seed}: key ${verdict.key}: ${verdict.message}\n${detail}`);
  } else {
    t.pass();
  }

  // N successful increments give N (plus those whose outcome was unknown, at most)
  const incrs = events.filter((e) => e.op.kind === 'incr');
  const okIncr = incrs.filter((e) => e.outcome === 'ok').length;
  const unknownIncr = new Set(incrs.filter((e) => e.outcome === 'unknown').map((e) => `${e.client} ${e.call}`)).size;
  const ks = clusterKeySpace(t, rc);
  await ks.waitForPeers(5000);
  const final = Number((await ks.read(recordKey(Buffer.from('lin'), Buffer.from('c'))))?.toString() ?? '0');
  t.true(final >= okIncr && final <= okIncr + unknownIncr, `counter ${final}, ${okIncr} ok increments, ${unknownIncr} unknown`);
});
