// The V8 flags of mounts and nodes reach every way they are started.
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { MALLOC_TUNABLES, V8_FLAGS, childEnv, nodeArgv } from '../../src/cli/v8-flags.js';

test('bin/quorumfs.js starts node with V8_FLAGS and MALLOC_TUNABLES', async (t) => {
  const bin = await readFile(fileURLToPath(new URL('../../../bin/quorumfs.js', import.meta.url)), 'utf8');
  t.is(bin.split('\n')[0], `#!/usr/bin/env -S GLIBC_TUNABLES=${MALLOC_TUNABLES} node ${V8_FLAGS.join(' ')}`);
  // Linux reads at most 255 bytes of a #! line
  t.true(bin.split('\n')[0]!.length < 255);
});

test('spawned processes get MALLOC_TUNABLES unless the caller chose its own', (t) => {
  t.is(childEnv({ PATH: '/bin' })['GLIBC_TUNABLES'], MALLOC_TUNABLES);
  t.is(childEnv({ PATH: '/bin' })['PATH'], '/bin');
  t.is(childEnv({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' })['GLIBC_TUNABLES'], 'glibc.malloc.arena_max=2');
});

test('spawned processes get V8_FLAGS before the script', (t) => {
  t.true(V8_FLAGS.includes('--initial-old-space-size=64'));
  t.deepEqual(nodeArgv('/x/main.js', ['mount', '--config', 'c.json', '/mnt']), [...V8_FLAGS, '/x/main.js', 'mount', '--config', 'c.json', '/mnt']);
});
