// Imported first by main.ts, before anything can queue work on libuv's thread
// pool (its size is read once, when the pool starts). A node syncs every chunk
// and record it stores, and writes chunk files with O_DIRECT (the device's
// time is spent on a pool thread): with libuv's default of 4 threads, twelve
// concurrent 1 MiB puts on a busy disk kept every thread waiting on the device
// and a get behind them passed its 5 s deadline (the node test suite, run
// beside other fsync-heavy tests). An operator's own setting is kept.
process.env['UV_THREADPOOL_SIZE'] ??= '16';
export {};
