#!/usr/bin/env node
// npm's `prepare` (run on install from a git checkout, and before packing): compile the
// TypeScript in lib/ to dist/ with tsc. TypeScript is a dev dependency, so an install that leaves
// dev dependencies out (npm install --omit=dev) has no tsc: skip then instead of failing it.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

let tsc;
try {
  tsc = require.resolve('typescript/bin/tsc', { paths: [process.cwd()] });
} catch {
  process.stderr.write('chai-attention: TypeScript is not installed (dev dependencies left out), so dist/ was not rebuilt; run `npm install` with dev dependencies, then `npm run build`\n');
  process.exit(0);
}
const run = spawnSync(process.execPath, [tsc, '-p', path.join(process.cwd(), 'tsconfig.json')], { stdio: 'inherit' });
process.exit(run.status === null ? 1 : run.status);
