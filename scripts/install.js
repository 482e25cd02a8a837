#!/usr/bin/env node
// `npm install` hook: put a working addon in place, in this order:
//   1. a prebuilt binary from prebuilds/ that loads here (users; no compiler needed);
//   2. cmake-js when cmake is on PATH (the full addon, CUDA included when nvcc is found);
//   3. node-gyp (CPU-only addon from binding.gyp).
// In a git checkout the build step always runs (incrementally), so sources and binary agree.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.join(__dirname, '..');
const inCheckout = fs.existsSync(path.join(root, '.git'));

function log(message) {
  process.stdout.write(`chai-attention: ${message}\n`);
}

function onPath(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

function run(command, args) {
  log(`${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  return result.status === 0;
}

function prebuildLoads() {
  try {
    require('node-gyp-build')(root);
    return true;
  } catch {
    return false;
  }
}

function cmakeJs() {
  try {
    return require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
  } catch {
    return null;
  }
}

function main() {
  if (!inCheckout && prebuildLoads()) {
    log('using the prebuilt binary');
    return 0;
  }
  const cmakeJsBin = cmakeJs();
  if (cmakeJsBin && onPath('cmake')) {
    if (run(process.execPath, [cmakeJsBin, inCheckout ? 'build' : 'rebuild'])) return 0;
    log('the cmake-js build failed; trying node-gyp (CPU-only)');
  }
  const nodeGyp = process.env.npm_config_node_gyp;
  if (nodeGyp && run(process.execPath, [nodeGyp, 'rebuild'])) return 0;
  if (!nodeGyp && onPath('node-gyp') && run('node-gyp', ['rebuild'])) return 0;
  log('no prebuilt binary fits this platform and no build succeeded: install cmake and a C++17 compiler ' +
      '(g++ or clang++), or node-gyp with python3, then run `npm rebuild chai-attention`');
  return 1;
}

process.exitCode = main();
