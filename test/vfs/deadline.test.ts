// One deadline per filesystem operation: every key-space call an operation
// makes carries the deadline its FUSE callback set, and an operation whose
// deadline has passed fails instead of starting calls with fresh time.
import test from 'ava';
import { MemoryKeySpace } from '../../src/keyspace/memory.js';
import type { CallOpts, ChangeFn } from '../../src/keyspace/types.js';
import { FsMeta } from '../../src/meta/fs-meta.js';
import { Vfs, O_CREAT, O_WRONLY } from '../../src/vfs/vfs.js';
import { silentLogger } from '../../src/util/log.js';

/** The in-memory key space, noting the deadline each record call carried. */
class RecordingKeySpace extends MemoryKeySpace {
  deadlines: Array<number | undefined> = [];
  override read(key: Buffer, opts?: CallOpts): Promise<Buffer | null> {
    this.deadlines.push(opts?.deadline);
    return super.read(key, opts);
  }
  override change(key: Buffer, fn: ChangeFn, opts?: CallOpts): Promise<Buffer | null> {
    this.deadlines.push(opts?.deadline);
    return super.change(key, fn, opts);
  }
}

async function setup(): Promise<{ vfs: Vfs; ks: RecordingKeySpace }> {
  const ks = new RecordingKeySpace();
  const sb = await FsMeta.format(ks, { chunkSize: 64 * 1024, replication: 1 });
  // No caching of names or attributes: every step asks the key space.
  const vfs = new Vfs(new FsMeta(ks, sb), ks, { log: silentLogger(), attrTtlMs: 0, entryTtlMs: 0 });
  return { vfs, ks };
}

test('every record call of a rename, a create and a chmod carries the operation deadline', async (t) => {
  const { vfs, ks } = await setup();
  await vfs.mkdir('/a', 0o755);
  await vfs.mkdir('/b', 0o755);
  await vfs.release(await vfs.create('/a/f', 0o644, O_CREAT | O_WRONLY));
  for (const [what, run] of [
    ['rename', (op: CallOpts) => vfs.rename('/a/f', '/b/g', 0, op)],
    ['create', async (op: CallOpts) => vfs.release(await vfs.create('/b/h', 0o644, O_CREAT | O_WRONLY, undefined, op))],
    ['chmod', (op: CallOpts) => vfs.chmod('/b/g', 0o600, undefined, op)],
    ['getattr', (op: CallOpts) => vfs.getattr('/b/g', op)],
  ] as const) {
    const deadline = Date.now() + 3_600_000 + Math.floor(Math.random() * 1000);
    ks.deadlines = [];
    await run({ deadline });
    // Calls without one are those the operation leaves to the background or
    // makes once its effect is durable (directory times, dropping the rename
    // intent): they must not turn a finished operation into an error.
    const bounded = ks.deadlines.filter((d) => d !== undefined);
    t.true(bounded.length >= 2, `${what} made ${bounded.length} bounded record calls of ${ks.deadlines.length}`);
    t.deepEqual(bounded, Array(bounded.length).fill(deadline), `${what}: every bounded call carried the operation deadline`);
    t.true(ks.deadlines.length - bounded.length <= 3, `${what}: ${ks.deadlines.length - bounded.length} calls left unbounded`);
  }
});

test('an operation whose deadline has passed fails and changes nothing', async (t) => {
  const { vfs } = await setup();
  await vfs.mkdir('/a', 0o755);
  await t.throwsAsync(vfs.mkdir('/a/late', 0o755, undefined, { deadline: Date.now() - 1 }), { message: /deadline passed/ });
  await t.throwsAsync(vfs.rename('/a', '/b', 0, { deadline: Date.now() - 1 }), { message: /deadline passed/ });
  t.deepEqual((await vfs.readdir('/')).map((e) => e.name).filter((n) => n !== '.' && n !== '..'), ['a']);
  t.deepEqual((await vfs.readdir('/a')).map((e) => e.name).filter((n) => n !== '.' && n !== '..'), []);
});
