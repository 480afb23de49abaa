// V8 flags for the long-running processes (mounts and nodes). They can only
// be given when a process starts: `bin/quorumfs.js` carries them in its
// shebang line, and `dev` and `mount --daemon` pass them to what they spawn.
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

/** The argv that starts `main.js` (at `cli`) with `args` in a new Node process, with V8_FLAGS. */
export function nodeArgv(cli: string, args: readonly string[]): string[] {
  return [...V8_FLAGS, cli, ...args];
}
