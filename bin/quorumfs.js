#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.mmap_threshold=8388608:glibc.malloc.trim_threshold=134217728 node --initial-old-space-size=64
// The installed entry point: the compiled CLI lives in dist/ (npm run build).
// The shebang's V8 flags and GLIBC_TUNABLES are src/cli/v8-flags.ts's V8_FLAGS and
// MALLOC_TUNABLES (a test keeps them equal); a GLIBC_TUNABLES of the caller's is
// replaced here (env -S cannot keep one that is set): to choose your own, run
// `node --initial-old-space-size=64 dist/src/cli/main.js` with it.
import '../dist/src/cli/main.js';
