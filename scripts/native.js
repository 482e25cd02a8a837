#!/usr/bin/env node
// Builds the C++ tests and microbenchmarks with plain cmake (no Node involved) into build-native/
// and runs them:
//   node scripts/native.js test            ctest over every C++ test (CUDA tests skip without a GPU)
//   node scripts/native.js bench [args]    the microbenchmarks; JSON goes to bench/results/
//   node scripts/native.js sanitize        the tests built with ASan + UBSan (CPU only) into
//                                          build-sanitize/, run by ctest with a longer GGUF fuzz
// The same steps work on a GPU machine that has only cmake and nvcc:
//   cmake -S . -B build-native -DCHAI_NODE=OFF && cmake --build build-native -j && ctest --test-dir build-native
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.join(__dirname, '..');
const jobs = String(Math.max(1, os.availableParallelism ? os.availableParallelism() : os.cpus().length));

function step(command, args, env = process.env) {
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', env });
  if (result.status !== 0) {
    process.stderr.write(`'${command} ${args.join(' ')}' failed\n`);
    process.exit(result.status ?? 1);
  }
}

function build() {
  step('cmake', ['-S', '.', '-B', 'build-native', '-DCHAI_NODE=OFF', '-DCMAKE_BUILD_TYPE=Release']);
  step('cmake', ['--build', 'build-native', '-j', jobs]);
}

// ctest shows the output of failed tests only; a skipped test (exit 77) says why in its own output
// ("SKIPPED: ..."), which ctest keeps in LastTest.log: repeat those lines so the log says why.
function printSkipReasons(buildDir) {
  const log = path.join(root, buildDir, 'Testing', 'Temporary', 'LastTest.log');
  if (!fs.existsSync(log)) return;
  let test = '';
  for (const line of fs.readFileSync(log, 'utf8').split('\n')) {
    const started = /^\d+\/\d+ Test: (\S+)/.exec(line);
    if (started) test = started[1];
    else if (line.startsWith('SKIPPED:')) process.stdout.write(`${test} skipped: ${line.slice('SKIPPED:'.length).trim()}\n`);
  }
}

const [command, ...rest] = process.argv.slice(2);
if (command === 'test') {
  build();
  step('ctest', ['--test-dir', 'build-native', '--output-on-failure']);
  printSkipReasons('build-native');
} else if (command === 'sanitize') {
  // Any sanitizer report fails its test: UBSan does not recover, ASan checks leaks at exit.
  step('cmake', ['-S', '.', '-B', 'build-sanitize', '-DCHAI_NODE=OFF', '-DCHAI_CUDA=OFF', '-DCHAI_SANITIZE=ON', '-DCMAKE_BUILD_TYPE=Release']);
  step('cmake', ['--build', 'build-sanitize', '-j', jobs]);
  const env = {
    ...process.env,
    ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=1:strict_string_checks=1',
    UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
    CHAI_GGUF_FUZZ_ITERATIONS: '1000',
  };
  step('ctest', ['--test-dir', 'build-sanitize', '--output-on-failure'], env);
  printSkipReasons('build-sanitize');
} else if (command === 'bench') {
  build();
  const outDir = path.join(root, 'bench', 'results');
  fs.mkdirSync(outDir, { recursive: true });
  const stamp = `${new Date().toISOString().slice(0, 10)}-${os.hostname()}`;
  for (const bench of ['bench_ops', 'bench_attention']) {
    const out = path.join(outDir, `${stamp}-${bench.replace('bench_', '')}.json`);
    step(path.join(root, 'build-native', 'native', 'bench', bench), ['--out', out, ...rest]);
  }
} else {
  process.stderr.write('usage: node scripts/native.js test | sanitize | bench [--quick] [--threads N]\n');
  process.exit(2);
}
