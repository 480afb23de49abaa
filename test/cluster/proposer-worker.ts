// A separate proposer process for the linearizability test: runs random
// read / write / increment operations on a few shared keys and prints one JSON
// history event per line. Not a test file (ava runs *.test.js only).
import { ClusterKeySpace } from '../../src/cluster/cluster-keyspace.js';
import { recordKey } from '../../src/keyspace/types.js';
import { isQfsError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/log.js';

interface WorkerArgs {
  client: string;
  clusterName: string;
  secret: string;
  nodes: Array<{ id: string; url: string }>;
  durationMs: number;
  seed: number;
  /** Spread the registers over this many groups (so over several replica sets); 1 by default. */
  groups?: number;
}

const args = JSON.parse(process.argv[2]!) as WorkerArgs;
let seed = args.seed >>> 0;
const random = (): number => {
  // mulberry32
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const now = (): number => performance.timeOrigin + performance.now();
const emit = (e: unknown): void => {
  process.stdout.write(JSON.stringify(e) + '\n');
};

const ks = new ClusterKeySpace({
  clusterName: args.clusterName,
  secret: Buffer.from(args.secret),
  nodes: args.nodes.map((n) => ({ ...n, weight: 1, zone: null })),
  replication: 3,
  writeQuorum: 2,
  requestTimeoutMs: 1500,
  connectTimeoutMs: 500,
  log: silentLogger(),
  hintIntervalMs: 0,
});

const GROUPS = args.groups ?? 1;
// With one group, the keys a, b and c of group "lin"; with more, a0, b0, c0 in "lin0", a1, b1, c1 in "lin1", ...
const named = (base: string): string[] => (GROUPS === 1 ? [base] : Array.from({ length: GROUPS }, (_, g) => `${base}${g}`));
const REGISTERS = [...named('a'), ...named('b')];
const COUNTERS = named('c');
const keyOf = (name: string) => recordKey(Buffer.from(GROUPS === 1 ? 'lin' : `lin${name.slice(1)}`), Buffer.from(name));
// SIGTERM ends the run after the operation in flight (a test that runs the workload beside something of unknown length).
let stopAt = Date.now() + args.durationMs;
process.on('SIGTERM', () => (stopAt = 0));

await ks.waitForPeers(3000, 2);
let seq = 0;
while (Date.now() < stopAt) {
  const r = random();
  const id = seq++;
  const call = now();
  if (r < 0.3) {
    const name = r < 0.15 ? COUNTERS[Math.floor(random() * COUNTERS.length)]! : REGISTERS[Math.floor(random() * REGISTERS.length)]!;
    try {
      const v = await ks.read(keyOf(name));
      emit({ id, client: args.client, op: { kind: 'read', key: name, value: v ? v.toString() : null }, call, ret: now(), outcome: 'ok' });
    } catch (err) {
      emit({ id, client: args.client, op: { kind: 'read', key: name, value: null }, call, ret: now(), outcome: 'unknown', error: String(err) });
    }
  } else if (r < 0.65) {
    const name = REGISTERS[Math.floor(random() * REGISTERS.length)]!;
    const value = `${args.client}-${id}`;
    try {
      await ks.change(keyOf(name), () => Buffer.from(value));
      emit({ id, client: args.client, op: { kind: 'write', key: name, value }, call, ret: now(), outcome: 'ok' });
    } catch (err) {
      emit({ id, client: args.client, op: { kind: 'write', key: name, value }, call, ret: now(), outcome: outcomeOf(err), error: String(err) });
    }
  } else {
    const COUNTER = COUNTERS[Math.floor(random() * COUNTERS.length)]!;
    const befores = new Set<number>();
    try {
      const stored = await ks.change(keyOf(COUNTER), (old) => {
        const before = old ? Number(old.toString()) : 0;
        befores.add(before);
        return Buffer.from(String(before + 1));
      });
      // The attempt that took effect is the one whose value was stored (a retry may recognise an earlier attempt).
      const after = Number(stored!.toString());
      emit({ id, client: args.client, op: { kind: 'incr', key: COUNTER, before: after - 1, after }, call, ret: now(), outcome: 'ok' });
    } catch (err) {
      // fn never ran: the change cannot have taken effect
      const outcome = befores.size === 0 ? 'fail' : outcomeOf(err);
      // At most one attempt took effect, from one of the values its attempts saw.
      // Each becomes its own maybe-event: a little more permissive than the truth, never stricter.
      for (const before of befores.size ? befores : [0]) {
        emit({ id, client: args.client, op: { kind: 'incr', key: COUNTER, before, after: before + 1 }, call, ret: now(), outcome, error: String(err) });
      }
    }
  }
  if (random() < 0.2) await new Promise((res) => setTimeout(res, random() * 5));
}
await ks.close();

function outcomeOf(err: unknown): 'fail' | 'unknown' {
  // A conflict means our accept never reached a majority but may sit on a minority: unknown, like a timeout.
  return isQfsError(err, 'bad_request') ? 'fail' : 'unknown';
}
