#!/usr/bin/env -S node --initial-old-space-size=64
// The installed entry point: the compiled CLI lives in dist/ (npm run build).
// The shebang's V8 flags are src/cli/v8-flags.ts's V8_FLAGS (a test keeps them equal).
import '../dist/src/cli/main.js';
