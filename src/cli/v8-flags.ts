// V8 flags for the long-running processes (mounts and nodes). They can only
// be given when a process starts: `bin/quorumfs.js` carries them in its
// shebang line, and `dev` and `mount --daemon` pass them to what they spawn.
// The same goes for MALLOC_TUNABLES below, an environment variable.
//
// --initial-old-space-size=64: both processes keep a small JS heap (about
// 9 MB live) while moving 1 MiB chunks through ArrayBuffers (socket reads,
// WebSocket messages, reply frames, FUSE buffers). With V8's default initial
// limit, a cold 1 GiB read ran a major GC every 7 MiB (about 140 in the
// mount): a quarter of the mount's CPU and a third of each node's. With a
// 64 MiB initial old space, 24; the mount's CPU per GiB read fell by a
// quarter, its resident memory rose by about 30 MiB (docs/performance.md,
// "sixth session").
export const V8_FLAGS: readonly string[] = ['--initial-old-space-size=64'];

// GLIBC_TUNABLES (glibc's malloc; other C libraries ignore it): mounts and
// nodes allocate and free 1 MiB buffers all the time (a chunk being written,
// a WebSocket message, a reply frame). glibc's default serves those with
// fresh mmap()s once its heap top shrinks past 2× the last freed size, and
// this kind of VM is slow to fault fresh pages in: with allocations up to 8
// MiB kept in the heap and up to 128 MiB of free heap kept rather than given
// back, a 1 GiB write took 5-9% less CPU and ran 2-22% faster (alternating
// runs, docs/performance.md, "sixteenth session"), for about 25 MiB more
// resident memory per process.
export const MALLOC_TUNABLES = 'glibc.malloc.mmap_threshold=8388608:glibc.malloc.trim_threshold=134217728';

/** The environment for a spawned mount or node: `env` with MALLOC_TUNABLES, unless it sets GLIBC_TUNABLES itself. */
export function childEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return env['GLIBC_TUNABLES'] === undefined ? { ...env, GLIBC_TUNABLES: MALLOC_TUNABLES } : env;
}

/** The argv that starts `main.js` (at `cli`) with `args` in a new Node process, with V8_FLAGS. */
export function nodeArgv(cli: string, args: readonly string[]): string[] {
  return [...V8_FLAGS, cli, ...args];
}
