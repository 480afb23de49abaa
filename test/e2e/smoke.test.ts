// The first end-to-end check: a real mount over three real nodes, driven by shell tools.
import test from 'ava';
import { mountedCluster, sh } from '../helpers/mount.js';

test.serial('ls, cat, cp -a + diff -r, mv, rm -rf on a real mount', async (t) => {
  const { mount } = await mountedCluster(t);
  const m = mount.dir;
  await sh(`echo hello > ${m}/a && cat ${m}/a`);
  t.is((await sh(`cat ${m}/a`)).stdout, 'hello\n');
  const src = new URL('../../../src', import.meta.url).pathname;
  await sh(`cp -a ${src} ${m}/tree && diff -r ${src} ${m}/tree`);
  await sh(`mv ${m}/tree ${m}/moved && test ! -e ${m}/tree && diff -r ${src} ${m}/moved`);
  await sh(`rm -rf ${m}/moved`);
  t.is((await sh(`ls -A ${m}`)).stdout, 'a\n');
  t.is(await mount.stop(), 0, mount.logs());
});
