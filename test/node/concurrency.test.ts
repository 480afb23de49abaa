// Many clients at once against one node: 50 connections × 200 mixed requests,
// all in flight together. Each client checks every answer it gets: on its own
// keys the state is fully predictable; on shared keys every answer must obey
// the acceptor rules and the final state must follow from the answers; chunks
// read back byte for byte, and a chunk put by many clients is stored once.
import test from 'ava';
import { connect, startNode, writeCluster } from '../helpers/cluster.js';
import { Rand, sha256, testSeed } from '../helpers/raw-rpc.js';
import type { Verdict } from '../../src/rpc/messages.js';
import type { NodeClient } from '../../src/rpc/node-client.js';
import type { AcceptorState, RecordValue } from '../../src/store/types.js';
import { MAX_CHUNK_BYTES } from '../../src/store/types.js';
import { ZERO_BALLOT, compareBallots, formatBallot, type Ballot } from '../../src/util/ballot.js';
import { isQfsError } from '../../src/util/errors.js';
import type { ChunkId } from '../../src/util/ids.js';

const CLIENTS = 50;
const REQUESTS = 200;
const LANES = 4; // concurrent requests per client; lane i owns the client's own key i
const SHARED_KEYS = ['shared/0', 'shared/1', 'shared/2', 'shared/3'];
const SHARED_CHUNKS = 8;

const proposerOf = (client: number): string => (client + 1).toString(16).padStart(16, '0');
const sameBallot = (a: Ballot, b: Ballot): boolean => compareBallots(a, b) === 0;
const valueText = (v: RecordValue): string => (v.kind === 'empty' ? 'empty' : `${v.kind}:${v.bytes.toString()}`);

interface Expected {
  promised: Ballot;
  accepted: Ballot;
  value: RecordValue;
}

function sameState(s: AcceptorState, e: Expected): boolean {
  return sameBallot(s.promised, e.promised) && sameBallot(s.accepted, e.accepted) && valueText(s.value) === valueText(e.value);
}

const showState = (s: AcceptorState | Expected): string => `promised ${formatBallot(s.promised)} accepted ${formatBallot(s.accepted)} ${valueText(s.value)}`;

/** What the shared-key checks need from every answer. */
interface SharedAnswer {
  key: string;
  op: 'prepare' | 'accept' | 'read';
  ballot: Ballot | null;
  value: string | null;
  ok: boolean;
  state: AcceptorState;
}

interface Shared {
  answers: SharedAnswer[];
  /** Every accept sent: `${key} ${ballot}` → value text. */
  sentAccepts: Map<string, string>;
  /** Every ballot sent, per key. */
  sentBallots: Map<string, Set<string>>;
  /** Shared chunk id → how many puts answered 'stored'. */
  storedCount: Map<ChunkId, number>;
  /** Every chunk that some put acknowledged. */
  chunks: Set<ChunkId>;
  problems: string[];
}

async function runClient(c: NodeClient, client: number, seed: number, sharedChunks: Buffer[], shared: Shared): Promise<Map<string, Expected>> {
  const r = new Rand(seed);
  const proposer = proposerOf(client);
  const problem = (s: string): void => {
    shared.problems.push(`client ${client} (seed ${seed}): ${s}`);
  };
  const own = new Map<string, Expected>();
  for (let lane = 0; lane < LANES; lane++) own.set(`own/${client}/${lane}`, { promised: ZERO_BALLOT, accepted: ZERO_BALLOT, value: { kind: 'empty' } });
  const sharedCounter = new Map<string, number>(SHARED_KEYS.map((k) => [k, 0]));
  /** A ballot prepared on a shared key and not yet used for an accept. */
  const prepared = new Map<string, Ballot>();
  const ownChunks: Array<{ id: ChunkId; bytes: Buffer }> = [];
  const sharedAcked = new Set<number>();
  let seq = 0;

  const nextSharedBallot = (key: string): Ballot => {
    const counter = sharedCounter.get(key)! + r.range(1, 3);
    sharedCounter.set(key, counter);
    const b = { counter, proposer };
    shared.sentBallots.get(key)!.add(formatBallot(b));
    return b;
  };

  const checkShared = (key: string, op: SharedAnswer['op'], b: Ballot | null, value: string | null, v: Verdict): void => {
    const s = v.state;
    shared.answers.push({ key, op, ballot: b, value, ok: v.ok, state: s });
    if (compareBallots(s.promised, s.accepted) < 0) problem(`${key}: state has promised below accepted: ${showState(s)}`);
    if (op === 'prepare') {
      if (v.ok && !sameBallot(s.promised, b!)) problem(`${key}: prepare ${formatBallot(b!)} ok but promised is ${formatBallot(s.promised)}`);
      if (v.ok && compareBallots(s.accepted, b!) >= 0) problem(`${key}: prepare ${formatBallot(b!)} ok over accepted ${formatBallot(s.accepted)}`);
      if (!v.ok && compareBallots(b!, s.promised) > 0 && compareBallots(b!, s.accepted) > 0) problem(`${key}: prepare ${formatBallot(b!)} refused by a lower state: ${showState(s)}`);
    } else if (op === 'accept') {
      if (v.ok && (!sameBallot(s.accepted, b!) || valueText(s.value) !== value)) problem(`${key}: accept ${formatBallot(b!)} ok but state is ${showState(s)}`);
      if (v.ok && compareBallots(s.promised, b!) < 0) problem(`${key}: accept ok left promised below its ballot`);
      if (!v.ok && compareBallots(b!, s.promised) >= 0 && compareBallots(b!, s.accepted) >= 0) problem(`${key}: accept ${formatBallot(b!)} refused by a lower state: ${showState(s)}`);
    }
  };

  const ownOp = async (lane: number): Promise<void> => {
    const key = `own/${client}/${lane}`;
    const k = Buffer.from(key);
    const e = own.get(key)!;
    const pick = r.int(10);
    if (pick < 3) {
      const b = { counter: e.promised.counter + r.range(1, 3), proposer };
      const v = await c.prepare(k, b);
      const want: Expected = { promised: b, accepted: e.accepted, value: e.value };
      if (!v.ok || !sameState(v.state, want)) problem(`${key}: prepare ${formatBallot(b)} → ${v.ok} ${showState(v.state)}, expected ok ${showState(want)}`);
      own.set(key, want);
    } else if (pick < 6) {
      // accept at the promised ballot (or a higher one, which an acceptor also takes)
      const b = r.int(4) === 0 ? { counter: e.promised.counter + 1, proposer } : e.promised.counter === 0 ? { counter: 1, proposer } : e.promised;
      const bytes = Buffer.from(`${key}@${formatBallot(b)}#${seq++}`);
      const value: RecordValue = r.int(8) === 0 ? { kind: 'tombstone', bytes } : { kind: 'value', bytes };
      const v = await c.accept(k, b, value);
      const promised = compareBallots(b, e.promised) > 0 ? b : e.promised;
      const want: Expected = { promised, accepted: b, value };
      if (!v.ok || !sameState(v.state, want)) problem(`${key}: accept ${formatBallot(b)} → ${v.ok} ${showState(v.state)}, expected ok ${showState(want)}`);
      own.set(key, want);
    } else if (pick < 8) {
      // stale: a ballot at or below the promise is refused and changes nothing
      if (e.promised.counter === 0) return;
      const b = { counter: r.range(0, e.promised.counter), proposer };
      const isPrepare = r.int(2) === 0;
      if (!isPrepare && sameBallot(b, e.promised)) return; // an accept at the promised ballot is legal
      const v = isPrepare ? await c.prepare(k, b) : await c.accept(k, b, { kind: 'value', bytes: Buffer.from('stale') });
      if (v.ok || !sameState(v.state, e)) problem(`${key}: stale ${isPrepare ? 'prepare' : 'accept'} ${formatBallot(b)} → ${v.ok} ${showState(v.state)}, expected refusal with ${showState(e)}`);
    } else {
      const s = await c.read(k);
      if (!sameState(s, e)) problem(`${key}: read ${showState(s)}, expected ${showState(e)}`);
    }
  };

  const sharedOp = async (): Promise<void> => {
    const key = r.pick(SHARED_KEYS);
    const k = Buffer.from(key);
    const pick = r.int(10);
    if (pick < 4) {
      const b = nextSharedBallot(key);
      const v = await c.prepare(k, b);
      checkShared(key, 'prepare', b, null, v);
      if (v.ok) prepared.set(key, b);
    } else if (pick < 8) {
      const p = prepared.get(key);
      prepared.delete(key);
      const b = p ?? nextSharedBallot(key);
      const value = `${key}@${formatBallot(b)}`;
      shared.sentAccepts.set(`${key} ${formatBallot(b)}`, `value:${value}`);
      const v = await c.accept(k, b, { kind: 'value', bytes: Buffer.from(value) });
      checkShared(key, 'accept', b, `value:${value}`, v);
    } else {
      const s = await c.read(k);
      checkShared(key, 'read', null, null, { ok: true, state: s });
    }
  };

  const chunkOp = async (): Promise<void> => {
    const pick = r.int(10);
    if (pick < 3) {
      const bytes = Buffer.concat([Buffer.from(`client ${client} chunk ${seq++} `), r.bytes(r.range(1, 64 * 1024))]);
      const id = sha256(bytes);
      const res = await c.putChunk(id, bytes);
      if (res !== 'stored') problem(`put of a new chunk answered ${res}`);
      ownChunks.push({ id, bytes });
      shared.chunks.add(id);
    } else if (pick < 5) {
      const i = r.int(SHARED_CHUNKS);
      const id = sha256(sharedChunks[i]!);
      const res = await c.putChunk(id, sharedChunks[i]!);
      if (res === 'stored') shared.storedCount.set(id, (shared.storedCount.get(id) ?? 0) + 1);
      sharedAcked.add(i);
      shared.chunks.add(id);
    } else if (pick < 8) {
      const mine = ownChunks.length > 0 && r.int(3) > 0;
      if (mine) {
        const { id, bytes } = r.pick(ownChunks);
        const off = r.int(bytes.length);
        const len = r.int(bytes.length - off + 100);
        const whole = r.int(2) === 0;
        const back = whole ? await c.getChunk(id, 0, MAX_CHUNK_BYTES) : await c.getChunk(id, off, len);
        const want = whole ? bytes : bytes.subarray(off, off + len);
        if (!back.equals(want)) problem(`get ${id} ${whole ? 'whole' : `${off}+${len}`}: ${back.length} bytes, expected ${want.length}`);
      } else if (sharedAcked.size > 0) {
        const i = r.pick([...sharedAcked]);
        const back = await c.getChunk(sha256(sharedChunks[i]!), 0, MAX_CHUNK_BYTES);
        if (!back.equals(sharedChunks[i]!)) problem(`shared chunk ${i} read back different bytes`);
      } else {
        const missing = sha256(Buffer.from(`never stored ${client} ${seq++}`));
        const err = await c.getChunk(missing, 0, 10).then(
          () => null,
          (e: unknown) => e,
        );
        if (!isQfsError(err, 'not_found')) problem(`get of a missing chunk: ${String(err)}`);
      }
    } else {
      const ids: ChunkId[] = [];
      const want: boolean[] = [];
      for (const { id } of ownChunks.slice(-3)) {
        ids.push(id);
        want.push(true);
      }
      for (const i of sharedAcked) {
        ids.push(sha256(sharedChunks[i]!));
        want.push(true);
      }
      ids.push(sha256(Buffer.from(`never stored ${client} ${seq++}`)));
      want.push(false);
      const got = await c.hasChunks(ids);
      if (got.join() !== want.join()) problem(`has ${ids.length} ids → ${got.join()}, expected ${want.join()}`);
    }
  };

  const lane = async (l: number): Promise<void> => {
    for (let i = 0; i < REQUESTS / LANES; i++) {
      const kind = r.int(10);
      try {
        if (kind < 3) await ownOp(l);
        else if (kind < 6) await sharedOp();
        else await chunkOp();
      } catch (err) {
        problem(`request failed: ${String(err)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: LANES }, (_, l) => lane(l)));
  return own;
}

test('50 clients × 200 mixed requests at once: every answer is the one the acceptor rules and the chunk store allow', async (t) => {
  t.timeout(100_000);
  const base = testSeed();
  t.log(`seed ${base} (QFS_SEED=${base} replays it)`);
  const cluster = await writeCluster(t, 1, { replication: 1 });
  await startNode(t, cluster, 'n1');
  const r = new Rand(base);
  const sharedChunks = Array.from({ length: SHARED_CHUNKS }, () => r.bytes(r.range(1, 32 * 1024)));
  const shared: Shared = {
    answers: [],
    sentAccepts: new Map(),
    sentBallots: new Map(SHARED_KEYS.map((k) => [k, new Set([formatBallot(ZERO_BALLOT)])])),
    storedCount: new Map(),
    chunks: new Set(),
    problems: [],
  };
  const clients = Array.from({ length: CLIENTS }, () => connect(t, cluster, 'n1', { timeoutMs: 30_000 }));
  await Promise.all(clients.map((c) => c.ping()));

  const started = Date.now();
  const owns = await Promise.all(clients.map((c, i) => runClient(c, i, (base + i * 0x9e3779b9) >>> 0, sharedChunks, shared)));
  const ms = Date.now() - started;
  t.log(`${CLIENTS * REQUESTS} requests from ${CLIENTS} clients in ${ms} ms (${Math.round((CLIENTS * REQUESTS * 1000) / ms)}/s); ${shared.answers.length} shared-key answers`);
  t.deepEqual(shared.problems.slice(0, 20), [], `seed ${base}: ${shared.problems.length} wrong answers`);

  const c = clients[0]!;
  // own keys: the final state is exactly what each client expects
  const ownProblems: string[] = [];
  for (const own of owns) {
    for (const [key, e] of own) {
      const s = await c.read(Buffer.from(key));
      if (!sameState(s, e)) ownProblems.push(`${key}: ${showState(s)}, expected ${showState(e)}`);
    }
  }
  t.deepEqual(ownProblems, [], `seed ${base}`);

  // shared keys: the final state follows from the answers
  for (const key of SHARED_KEYS) {
    const answers = shared.answers.filter((a) => a.key === key);
    const okAccepts = answers.filter((a) => a.op === 'accept' && a.ok);
    const okAll = answers.filter((a) => a.op !== 'read' && a.ok);
    t.true(okAccepts.length > 0, `${key}: no accept succeeded (seed ${base})`);
    t.true(answers.some((a) => a.op !== 'read' && !a.ok), `${key}: no contention happened (seed ${base})`);
    const maxAccept = okAccepts.reduce((m, a) => (compareBallots(a.ballot!, m.ballot!) > 0 ? a : m));
    const maxOk = okAll.reduce((m, a) => (compareBallots(a.ballot!, m) > 0 ? a.ballot! : m), ZERO_BALLOT);
    const final = await c.read(Buffer.from(key));
    t.is(formatBallot(final.accepted), formatBallot(maxAccept.ballot!), `${key}: final accepted ballot is the highest accepted one (seed ${base})`);
    t.is(valueText(final.value), String(maxAccept.value), `${key}: final value (seed ${base})`);
    t.is(formatBallot(final.promised), formatBallot(maxOk), `${key}: final promise is the highest ballot any ok answer carried (seed ${base})`);
    // no answer ever showed a ballot nobody sent, or a value not sent with its ballot
    const invented: string[] = [];
    for (const a of [...answers, { key, op: 'read' as const, ballot: null, value: null, ok: true, state: final }]) {
      if (!shared.sentBallots.get(key)!.has(formatBallot(a.state.promised))) invented.push(`promised ${formatBallot(a.state.promised)}`);
      if (a.state.accepted.counter === 0 && a.state.value.kind === 'empty') continue;
      const sent = shared.sentAccepts.get(`${key} ${formatBallot(a.state.accepted)}`);
      if (sent !== valueText(a.state.value)) invented.push(`accepted ${formatBallot(a.state.accepted)} with ${valueText(a.state.value)} (sent: ${sent})`);
    }
    t.deepEqual(invented.slice(0, 10), [], `${key} (seed ${base})`);
  }

  // chunks: every shared chunk stored exactly once however many clients raced; the store holds exactly the acknowledged ids
  for (const [i, bytes] of sharedChunks.entries()) {
    const id = sha256(bytes);
    if (!shared.chunks.has(id)) continue;
    t.is(shared.storedCount.get(id) ?? 0, 1, `shared chunk ${i} answered 'stored' to exactly one put`);
  }
  const listed: ChunkId[] = [];
  for (let after: ChunkId | null = null; ; ) {
    const page = await c.listChunks(after, 1000);
    listed.push(...page);
    if (page.length < 1000) break;
    after = page[page.length - 1]!;
  }
  t.deepEqual(listed, [...shared.chunks].sort());
  const stat = await c.stat();
  t.is(stat.chunks, shared.chunks.size);
  t.true(stat.records >= CLIENTS * LANES * 0.5, `records ${stat.records}`);
});
