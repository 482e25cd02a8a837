#!/usr/bin/env node
// prebuildify runs `<node-gyp> rebuild --release ...` and then collects build/Release/*.node.
// It has no cmake-js backend, so this stands in for node-gyp: the flags it passes are node-gyp's
// (headers cache, arch) and do not apply; cmake-js builds the full addon (CUDA when nvcc is found)
// incrementally into build/Release.
'use strict';
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.join(__dirname, '..');
const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
const result = spawnSync(process.execPath, [cmakeJs, 'build'], { cwd: root, stdio: 'inherit' });
process.exitCode = result.status ?? 1;
