// The V8 flags of mounts and nodes reach every way they are started.
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { V8_FLAGS, nodeArgv } from '../../src/cli/v8-flags.js';

test('bin/quorumfs.js starts node with V8_FLAGS', async (t) => {
  const bin = await readFile(fileURLToPath(new URL('../../../bin/quorumfs.js', import.meta.url)), 'utf8');
  t.is(bin.split('\n')[0], `#!/usr/bin/env -S node ${V8_FLAGS.join(' ')}`);
});

test('spawned processes get V8_FLAGS before the script', (t) => {
  t.true(V8_FLAGS.includes('--initial-old-space-size=64'));
  t.deepEqual(nodeArgv('/x/main.js', ['mount', '--config', 'c.json', '/mnt']), [...V8_FLAGS, '/x/main.js', 'mount', '--config', 'c.json', '/mnt']);
});
