import test from 'ava';
import { describeMove } from '../../src/cli/cmd-status.js';
import type { MoveProgress } from '../../src/cluster/mover.js';

const base: MoveProgress = {
  epoch: 5,
  startedAt: 1_000_000,
  updatedAt: 1_010_000,
  recordsTotal: 1000,
  chunksTotal: 1000,
  phase: 'records',
  recordsListed: 500,
  recordsRewritten: 400,
  chunksListed: 0,
  chunksCopied: 0,
  bytesCopied: 0,
  chunksTrimmed: 0,
  recordsDropped: 0,
};

test('a move in progress: how far, how fast, and the time left by what is still to walk', (t) => {
  const line = describeMove(base, base.updatedAt + 1000);
  t.regex(line, /move \(epoch 5, records\): records 500\/1000 listed, 400 rewritten \(50\/s\)/);
  t.regex(line, /about 30 s left/); // 500 of 2000 walked in 10 s
  t.notRegex(line, /stopped/);
  const copying = describeMove({ ...base, phase: 'chunks', recordsListed: 1000, chunksListed: 1000, chunksCopied: 750, bytesCopied: 750 * 1048576, updatedAt: base.startedAt + 50_000 }, base.startedAt + 50_000);
  t.regex(copying, /750 copied \(750\.0 MiB, 15\.0 MiB\/s\), about 0 s left/);
});

test('a move whose command stopped reporting says so, and how to carry it on', (t) => {
  t.regex(describeMove(base, base.updatedAt + 45_000), /no report for 45 s: what moved it stopped \(the nodes carry it on after their --mover-grace; quorumfs node resume does now\)/);
  t.notRegex(describeMove(base, base.updatedAt + 20_000), /stopped/);
});

test('a move left to the nodes (--no-wait) says so instead of calling it stopped', (t) => {
  const line = describeMove({ ...base, handedToNodes: true }, base.updatedAt + 45_000);
  t.regex(line, /left to the nodes 45 s ago/);
  t.notRegex(line, /stopped/);
});

test('a running self-heal pass is read from a node\'s /metrics and told with its rate and time left; an idle node shows none', async (t) => {
  const { healStateOf, describeHeal } = await import('../../src/cli/cmd-status.js');
  const running = ['quorumfs_records 20000', 'quorumfs_heal_running 1', 'quorumfs_heal_pass_records_checked 5000', 'quorumfs_heal_pass_seconds 2.5'].join('\n');
  const h = healStateOf('n2', running);
  t.deepEqual(h, { node: 'n2', recordsChecked: 5000, records: 20000, seconds: 2.5 });
  t.is(describeHeal(h!), 'heal (n2): records 5000/20000 checked (2000/s), about 8 s left, then its chunks');
  t.is(healStateOf('n2', running.replace('quorumfs_heal_running 1', 'quorumfs_heal_running 0')), null);
  t.is(healStateOf('n2', 'quorumfs_records 3'), null, 'a node without self-heal');
});
