#!/usr/bin/env node
// Patches node_modules/fuse-native with patches/fuse-native@2.2.6.patch and
// builds it with node-gyp. Run by the root package's `postinstall` (so on every
// `npm ci` / `npm install`); safe to run again by hand: `node patches/fuse-native.mjs`.
// Why and what: docs/fuse-binding.md.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const VERSION = '2.2.6';
const PATCHED_FILES = ['fuse-native.c', 'index.js', 'binding.gyp'];
const BACKUP_SUFFIX = '.quorumfs-orig';
const MARKER = '.quorumfs-patch';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(here);
const patchFile = path.join(here, `fuse-native@${VERSION}.patch`);

function fail(message) {
  console.error(`quorumfs: fuse-native: ${message}`);
  process.exit(1);
}

function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, stdio: 'inherit' });
  if (r.error) fail(`${cmd} could not be run: ${r.error.message}`);
  return r.status === 0;
}

if (process.env.npm_config_package_lock_only === 'true') {
  console.log('quorumfs: fuse-native: --package-lock-only, nothing installed to patch');
  process.exit(0);
}

const require = createRequire(path.join(root, 'package.json'));
let pkgDir;
try {
  pkgDir = path.dirname(require.resolve('fuse-native/package.json'));
} catch {
  fail('not installed (it is a dependency in package.json: run npm ci)');
}
const version = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')).version;
if (version !== VERSION) fail(`installed version ${version}, the patch is for ${VERSION}: update ${path.relative(root, patchFile)}`);

const patch = fs.readFileSync(patchFile);
const patchHash = createHash('sha256').update(patch).digest('hex');
const markerPath = path.join(pkgDir, MARKER);
const built = path.join(pkgDir, 'build', 'Release', 'fuse.node');

function loads() {
  // In a child process: the check in the patched index.js throws if the
  // unpatched prebuild is what gets loaded.
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(pkgDir)})`], { stdio: 'inherit' });
  return r.status === 0;
}

const marker = fs.existsSync(markerPath) ? fs.readFileSync(markerPath, 'utf8').trim() : '';
if (marker === patchHash && fs.existsSync(built) && loads()) {
  console.log(`quorumfs: fuse-native ${VERSION} already patched and built`);
  process.exit(0);
}

// The patched build is against libfuse 3 (Debian: libfuse3-dev, found through pkg-config).
const pc = spawnSync('pkg-config', ['--exists', 'fuse3']);
if (pc.error) fail('pkg-config not found: install pkgconf (Debian), then libfuse3-dev');
if (pc.status !== 0) fail('libfuse 3 headers not found (pkg-config fuse3): install libfuse3-dev (Debian), or fuse3-devel');

// Back to the pristine files (kept by an earlier run) before patching.
for (const f of PATCHED_FILES) {
  const backup = path.join(pkgDir, f + BACKUP_SUFFIX);
  if (fs.existsSync(backup)) fs.copyFileSync(backup, path.join(pkgDir, f));
}
fs.rmSync(markerPath, { force: true });

const patchArgs = ['-p1', '--forward', '--batch', '--backup', '--suffix', BACKUP_SUFFIX, '-i', patchFile];
if (!run('patch', ['--dry-run', ...patchArgs], pkgDir)) {
  fail(`${path.relative(root, patchFile)} does not apply to ${pkgDir} (not the pristine ${VERSION}?)`);
}
if (!run('patch', patchArgs, pkgDir)) fail('patch failed');

// node-gyp: npm's own copy (npm sets npm_config_node_gyp for lifecycle scripts).
let nodeGyp = process.env.npm_config_node_gyp;
if (!nodeGyp && process.env.npm_execpath) {
  nodeGyp = path.join(path.dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
}
if (!nodeGyp || !fs.existsSync(nodeGyp)) {
  const npmRoot = spawnSync('npm', ['root', '-g'], { encoding: 'utf8' }).stdout?.trim();
  if (npmRoot) nodeGyp = path.join(npmRoot, 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
}
if (!nodeGyp || !fs.existsSync(nodeGyp)) fail('node-gyp not found (it ships with npm)');

const gypArgs = [nodeGyp, 'rebuild', '--loglevel=warn'];
// Build against the running Node's own headers when npm did not say where they are
// (node-gyp would otherwise try to download them).
const prefix = path.dirname(path.dirname(process.execPath));
if (!process.env.npm_config_nodedir && fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) {
  gypArgs.push(`--nodedir=${prefix}`);
}
if (!run(process.execPath, gypArgs, pkgDir)) fail('node-gyp rebuild failed (needs g++, make, python3)');
if (!loads()) fail('the patched build does not load');

fs.writeFileSync(markerPath, patchHash + '\n');
console.log(`quorumfs: fuse-native ${VERSION} patched and built (${path.relative(root, built)})`);
