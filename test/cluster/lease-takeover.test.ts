// A lease holder process SIGKILLed in the middle of its batches: another
// session takes the lease over only after a whole lease period, settles what
// the dead holder left, and finds every key at the last batch the holder saw
// committed or at the one it had in flight, never anything else.
import test from 'ava';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { recordKey } from '../../src/keyspace/types.js';
import { systemClock } from '../../src/util/clock.js';
import { ScopeLease, readLease } from '../../src/cluster/scope-lease.js';
import { clusterKeySpace, startCluster } from '../helpers/keyspace.js';

const WORKER = fileURLToPath(new URL('./lease-holder-worker.js', import.meta.url));
const GROUP = 'takeover';
const KEYS = ['k0', 'k1', 'k2', 'k3'];
const PERIOD_MS = 1000;

test.serial('a SIGKILLed holder: the lease is taken over after its period, settled, and the scope is a prefix of its batches', async (t) => {
  const rc = await startCluster(t, 3);
  const child = spawn(
    process.execPath,
    [
      WORKER,
      JSON.stringify({
        clusterName: rc.cluster.name,
        secret: rc.cluster.secret.toString(),
        nodes: rc.cluster.nodes.map((n) => ({ id: n.id, url: n.url })),
        group: GROUP,
        keys: KEYS,
        periodMs: PERIOD_MS,
        session: 'worker#1',
      }),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  const committed = (): number => Math.max(0, ...[...out.matchAll(/^committed (\d+)$/gm)].map((m) => Number(m[1])));
  for (let i = 0; i < 1500 && committed() < 30 && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 20));
  t.true(committed() >= 30, `the holder committed batches (${committed()}); stderr: ${err.slice(-500)}`);
  child.kill('SIGKILL');
  await new Promise((r) => child.once('close', r)); // all its output read, not just its exit
  const last = committed(); // every batch it printed was chosen; the next one may have been in flight

  const ks = clusterKeySpace(t, rc);
  await ks.waitForPeers(5000);
  const group = Buffer.from(GROUP);
  const key = (s: string) => recordKey(group, Buffer.from(s));
  const before = await readLease(ks.registers, recordKey(group, Buffer.from('@lease')));
  t.is(before.holder, 'worker#1', 'the dead holder still holds the lease');
  const started = Date.now();
  const lease = await ScopeLease.acquire(
    {
      registers: ks.registers,
      lease: recordKey(group, Buffer.from('@lease')),
      group: Buffer.concat([Buffer.from([group.length]), group]),
      start: key('k'),
      end: key('l'),
      periodMs: PERIOD_MS,
      drift: 0.05,
      clock: systemClock,
    },
    'test#1',
    20_000,
  );
  t.truthy(lease);
  t.true(lease!.tookOver, 'taken over from the silent holder');
  t.true(Date.now() - started >= PERIOD_MS, `not before a whole lease period (${Date.now() - started} ms)`);
  t.is(lease!.term, before.term + 1);
  await lease!.settle();
  for (const k of KEYS) {
    const v = Number((await ks.read(key(k), { scope: lease!.scope }))?.toString());
    t.true(v === last || v === last + 1, `${k} = ${v}: the last batch seen committed (${last}) or the one in flight`);
  }
  t.true(await lease!.release());
});
