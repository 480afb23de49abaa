// A long-running process (mount, node) logs a promise that fails with nothing
// waiting for it, with its stack, and goes on, instead of dying by Node's default.
import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const logModule = fileURLToPath(new URL('../../src/util/log.js', import.meta.url));

const child = (install: boolean) =>
  promisify(execFile)(process.execPath, [
    '--input-type=module',
    '-e',
    `import { createRootLogger, logUnhandledRejections } from ${JSON.stringify(logModule)};
     const log = createRootLogger({ level: 'info' });
     if (${install}) logUnhandledRejections(log);
     async function failsLater() { await null; throw new Error('boom in the background'); }
     void failsLater();
     setTimeout(() => { process.stdout.write('still alive\\n'); }, 50);`,
  ]).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

test('an unhandled rejection is logged with its stack as an internal error, and the process goes on', async (t) => {
  const r = await child(true);
  t.is(r.code, 0, r.stderr);
  const line = r.stdout.split('\n').find((l) => l.includes('internal error'));
  t.truthy(line, r.stdout);
  t.regex(line!, /boom in the background/);
  t.regex(line!, /failsLater/, 'the stack names the function');
  t.regex(r.stdout, /still alive/);
});

test('control: without it, Node kills the process', async (t) => {
  const r = await child(false);
  t.not(r.code, 0);
  t.notRegex(r.stdout, /still alive/);
});
