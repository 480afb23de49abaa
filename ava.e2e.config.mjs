// The FUSE end-to-end and fault-injection tests: real mounts over real node
// processes, one file at a time (2 cores; each file runs its own nodes and
// mounts).
export default {
  files: ['dist/test/e2e/**/*.test.js', 'dist/test/fuse/**/*.test.js', 'dist/test/faults/**/*.test.js'],
  timeout: '5m',
  concurrency: 1,
  workerThreads: false,
};
