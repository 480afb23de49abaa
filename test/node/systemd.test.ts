// The systemd template unit: systemd's own checker accepts it, and it keeps
// the restart policy and hardening that the README promises.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// dist/test/node/ → repository root
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const UNIT = join(ROOT, 'scripts', 'systemd', 'quorumfs-node@.service');

function findOnPath(cmd: string): string | null {
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    if (!dir) continue;
    try {
      accessSync(join(dir, cmd), constants.X_OK);
      return join(dir, cmd);
    } catch {
      // not in this directory
    }
  }
  return null;
}

function verify(file: string): { status: number | null; output: string } {
  const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

const analyze = findOnPath('systemd-analyze');
const verifyTest = analyze ? test : test.skip;
const title = analyze
  ? 'systemd-analyze verify accepts the unit with no complaint about it'
  : 'systemd-analyze verify accepts the unit (SKIPPED: systemd-analyze is not on PATH; install the systemd package to run it)';

verifyTest(title, async (t) => {
  t.timeout(90_000);
  const r = verify(UNIT);
  t.log(`${analyze} verify ${UNIT}: exit ${r.status}${r.output ? `\n${r.output}` : ', no output'}`);
  t.is(r.status, 0, r.output);
  const aboutUnit = r.output.split('\n').filter((l) => l.includes('quorumfs-node@'));
  t.deepEqual(aboutUnit, [], 'systemd-analyze complained about the unit');

  // control: the same check notices a broken copy, so a pass above means something
  const dir = await mkdtemp(join(tmpdir(), 'qfs-unit-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const broken = (await readFile(UNIT, 'utf8')).replace(/^Type=.*$/m, 'Type=bogus').replace(/^NoNewPrivileges=yes$/m, 'NoNewPrivileges=yes\nNoSuchDirective=1');
  const copy = join(dir, 'quorumfs-node@.service');
  await writeFile(copy, broken);
  const bad = verify(copy);
  t.true(bad.output.split('\n').some((l) => l.includes('quorumfs-node@')), `a broken unit went unnoticed: exit ${bad.status} ${bad.output}`);
});

if (!analyze) {
  test('systemd-analyze availability is reported', (t) => {
    t.log('systemd-analyze is not on PATH: the verify test above is skipped');
    t.pass();
  });
}

test('the unit restarts on failure but not on config errors, and is hardened', async (t) => {
  const text = await readFile(UNIT, 'utf8');
  const lines = new Set(
    text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#')),
  );
  for (const want of [
    '[Unit]',
    '[Service]',
    '[Install]',
    'NoNewPrivileges=yes',
    'ProtectSystem=strict',
    'PrivateTmp=yes',
    'Restart=on-failure',
    'RestartPreventExitStatus=2',
    'ProtectHome=yes',
    'PrivateDevices=yes',
    'KillSignal=SIGTERM',
  ]) {
    t.true(lines.has(want), `missing ${want}`);
  }
  const section = (name: string): string[] => {
    const all = text.split('\n').map((l) => l.trim());
    const start = all.indexOf(`[${name}]`);
    const rest = all.slice(start + 1);
    const end = rest.findIndex((l) => l.startsWith('['));
    return (end < 0 ? rest : rest.slice(0, end)).filter((l) => l && !l.startsWith('#'));
  };
  const service = section('Service');
  // the hardening and restart lines sit in [Service], where systemd reads them
  for (const key of ['NoNewPrivileges', 'ProtectSystem', 'PrivateTmp', 'Restart', 'RestartPreventExitStatus']) {
    t.true(service.some((l) => l.startsWith(`${key}=`)), `${key} not in [Service]`);
  }
  // a key set twice: the later one wins in systemd, so a weakening override would hide behind the checked line
  for (const key of ['NoNewPrivileges', 'ProtectSystem', 'PrivateTmp', 'Restart', 'RestartPreventExitStatus']) {
    t.is(service.filter((l) => l.startsWith(`${key}=`)).length, 1, `${key} set more than once`);
  }
  const exec = service.find((l) => l.startsWith('ExecStart='));
  t.truthy(exec);
  t.regex(exec!, /quorumfs node .*--id %i/);
});
