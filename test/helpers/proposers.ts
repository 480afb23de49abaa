// Proposer processes for the register workload (test/cluster/proposer-worker.ts):
// each runs random reads, writes and increments on shared keys and prints one
// history event per line; the history is then checked for linearizability and
// each counter against its increments.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { checkLinearizable, describeEvent, type Event } from './linearizability.js';
import type { TestCluster } from './cluster.js';
import type { ClusterKeySpace } from '../../src/cluster/cluster-keyspace.js';
import { recordKey } from '../../src/keyspace/types.js';

const WORKER = fileURLToPath(new URL('../cluster/proposer-worker.js', import.meta.url));

export interface Proposer {
  /** Events printed so far. */
  events(): number;
  /** SIGTERM: the worker ends its operation in flight and exits. */
  stop(): void;
  done: Promise<{ out: string; err: string; code: number | null }>;
}

/** Starts `count` proposer processes against the cluster's nodes; each is SIGKILLed in a teardown if still running. */
export function startProposers(t: ExecutionContext, cluster: TestCluster, opts: { count: number; seed: number; durationMs: number; groups?: number }): Proposer[] {
  return Array.from({ length: opts.count }, (_, n) => {
    const i = n + 1;
    const child = spawn(
      process.execPath,
      [
        WORKER,
        JSON.stringify({
          client: `p${i}`,
          clusterName: cluster.name,
          secret: cluster.secret.toString(),
          nodes: cluster.nodes.map((nd) => ({ id: nd.id, url: nd.url })),
          durationMs: opts.durationMs,
          seed: opts.seed * 10 + i,
          ...(opts.groups ? { groups: opts.groups } : {}),
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
    return { events: () => out.split('\n').length - 1, stop: () => child.kill('SIGTERM'), done };
  });
}

/** Waits until every proposer has printed at least `n` more events than `from` (default 0). */
export async function waitForEvents(proposers: Proposer[], n: number, what: string, from: number[] = [], timeoutMs = 60_000): Promise<void> {
  for (const until = Date.now() + timeoutMs; proposers.some((p, i) => p.events() < (from[i] ?? 0) + n); ) {
    if (Date.now() > until) throw new Error(`${what}: the proposers made no progress in ${timeoutMs / 1000} s (${proposers.map((p) => p.events())})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Stops the proposers and checks their history: every worker exited 0, enough
 * operations succeeded, the history is linearizable, and each counter ends at
 * its successful increments plus at most the unknown ones. The counters are
 * read through `ks`.
 */
export async function checkProposers(t: ExecutionContext, proposers: Proposer[], ks: ClusterKeySpace, opts: { seed: number; groups: number; minOk: number }): Promise<number> {
  for (const p of proposers) p.stop();
  const results = await Promise.all(proposers.map((p) => p.done));
  for (const r of results) t.is(r.code, 0, r.err);
  const events: Event[] = results.flatMap((r) => r.out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Event));
  events.forEach((e, i) => (e.id = i));
  const ok = events.filter((e) => e.outcome === 'ok').length;
  t.true(ok > opts.minOk, `enough operations succeeded to mean something: ${ok} of ${events.length}`);
  const verdict = checkLinearizable(events, null);
  if (!verdict.ok) {
    const detail = 'minimalPrefix' in verdict && verdict.minimalPrefix ? verdict.minimalPrefix.slice(-12).map(describeEvent).join('\n') : '';
    t.fail(`seed ${opts.seed}: key ${verdict.key}: ${verdict.message}\n${detail}`);
  }
  for (let g = 0; g < opts.groups; g++) {
    const name = opts.groups === 1 ? 'c' : `c${g}`;
    const group = opts.groups === 1 ? 'lin' : `lin${g}`;
    const incrs = events.filter((e) => e.op.kind === 'incr' && e.op.key === name);
    const okIncr = incrs.filter((e) => e.outcome === 'ok').length;
    const unknownIncr = new Set(incrs.filter((e) => e.outcome === 'unknown').map((e) => `${e.client} ${e.call}`)).size;
    const final = Number((await ks.read(recordKey(Buffer.from(group), Buffer.from(name))))?.toString() ?? '0');
    t.true(final >= okIncr && final <= okIncr + unknownIncr, `${name}: ${final}, ${okIncr} ok increments, ${unknownIncr} unknown`);
  }
  return events.length;
}
