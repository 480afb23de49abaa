// Mount lifecycle as an operator meets it: a crashed mount process, umount,
// the fstab mount helper.
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { CLI, runCli } from '../helpers/cluster.js';
import { forceUnmount, mountCluster, mountedCluster, sh, shCode } from '../helpers/mount.js';

const HELPER = fileURLToPath(new URL('../../../scripts/mount.fuse.quorumfs', import.meta.url));
const BIN = fileURLToPath(new URL('../../../bin/quorumfs.js', import.meta.url));

async function mounted(dir: string): Promise<boolean> {
  return (await readFile('/proc/self/mounts', 'utf8')).split('\n').some((l) => l.split(' ')[1] === dir);
}

test.serial('a mount process killed with SIGKILL leaves a stale mount; mounting again clears it and finds the files', async (t) => {
  const { rc, mount } = await mountedCluster(t);
  await sh(`echo kept > ${mount.dir}/f && sync`);
  mount.child.kill('SIGKILL');
  await mount.exited;
  const stale = await shCode(`ls ${mount.dir}`);
  t.not(stale.code, 0);
  t.regex(stale.stderr, /Transport endpoint is not connected/);
  const again = await mountCluster(t, rc, 'mnt');
  t.is((await sh(`cat ${again.dir}/f`)).stdout, 'kept\n');
  t.is(await again.stop(), 0);
});

test.serial('quorumfs umount: the serving process publishes and exits 0', async (t) => {
  const { mount } = await mountedCluster(t);
  await sh(`echo x > ${mount.dir}/f`);
  const r = await runCli(['umount', mount.dir]);
  t.is(r.code, 0, r.stderr);
  t.is(await mount.exited, 0, mount.logs());
  t.false(await mounted(mount.dir));
  const again = await runCli(['umount', mount.dir]);
  t.is(again.code, 2);
  t.regex(again.stderr, /is not mounted/);
});

test.serial('the mount helper (as mount -t fuse.quorumfs calls it) mounts in the background', async (t) => {
  const { rc, mount } = await mountedCluster(t);
  await mount.stop();
  const dir = `${rc.cluster.dir}/helper-mnt`;
  await sh(`mkdir -p ${dir}`);
  t.teardown(() => forceUnmount(dir));
  const r = await sh(`QUORUMFS_BIN=${BIN} QUORUMFS_LOG_DIR=${rc.cluster.dir}/logs ${HELPER} ${rc.cluster.configPath} ${dir} -o _netdev,attr_timeout=2`);
  t.is(r.stderr, '');
  t.true(await mounted(dir));
  await sh(`echo via-helper > ${dir}/g && cat ${dir}/g`);
  t.is((await sh(`cat ${dir}/g`)).stdout, 'via-helper\n');
  const u = await runCli(['umount', dir]);
  t.is(u.code, 0, u.stderr);
  // the detached server notices and exits within its watch interval
  for (let i = 0; i < 50 && (await shCode(`pgrep -f "mount --config ${rc.cluster.configPath} ${dir}"`)).code === 0; i++) await new Promise((res) => setTimeout(res, 100));
  t.not((await shCode(`pgrep -f "mount --config ${rc.cluster.configPath} ${dir}"`)).code, 0, 'the mount process exited');
  // a bad option fails in the foreground, with the reason
  const bad = await shCode(`QUORUMFS_BIN=${BIN} ${HELPER} ${rc.cluster.configPath} ${dir} -o frobnicate`);
  t.not(bad.code, 0);
  t.regex(bad.stderr, /unknown mount option/);
  t.false(await mounted(dir));
  void CLI;
});
