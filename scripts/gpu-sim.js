#!/usr/bin/env node
// Every CUDA test on the simulated GPU (GPGPU-Sim patched for CUDA 13, ../shared/tools/gpgpu-sim):
//   node scripts/gpu-sim.js [JOB ...]      (npm run test:gpu-sim; JOB names from the list below)
// 1. builds the simulator once per machine (its build.sh caches it, about 5 minutes when not);
// 2. builds the CUDA tests for it into build-gpusim/ (CHAI_CUDA_SIM: shared cudart, compute_80 PTX);
// 3. runs the test jobs, two at a time, each from its own copy of the simulator's run folder (the
//    simulator reads its config there and writes working files beside it); a job passes when its
//    suite ran on the simulated device (never the exit-77 "no device" path) and failed no check;
// 4. counts every PTX .entry of the build (template instantiations apart) and fails when one was
//    never launched by any job, except the entries listed in native/tests/gpu-sim-exclusions.json
//    with their reasons.
// The simulator proves results, not speed or synchronisation: it runs warps in lockstep and
// cp.async synchronously, so races and missing barriers pass here (README: what is verified where).
// Ends with "gpu-sim: K of K kernels launched, N passed, 0 failed". When ../shared/tools/gpgpu-sim
// is absent (a user's clone) it says why it skipped and exits 0; when present, any failure fails.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');

const root = path.join(__dirname, '..');
const simTools = path.join(root, '..', 'shared', 'tools', 'gpgpu-sim');
const buildDir = path.join(root, 'build-gpusim');
const logDir = path.join(buildDir, 'logs');
const tests = path.join(buildDir, 'native', 'tests');
const jobTimeoutSeconds = 25 * 60;

// Jobs, longest first so that two workers finish together. Each names a test binary and the
// sections it runs (the binaries run every section when given none, as ctest does on a GPU).
const jobs = [
  { name: 'ops-masked', bin: 'test_cuda_ops', args: ['masked'] },
  { name: 'matmul-v2', bin: 'test_cuda_matmul', args: ['2'] },
  { name: 'matmul-v3', bin: 'test_cuda_matmul', args: ['3'] },
  { name: 'ops-decode', bin: 'test_cuda_ops', args: ['decode'] },
  { name: 'ops-decode-v3', bin: 'test_cuda_ops', args: ['decode-v3'] },
  { name: 'ops-prefill', bin: 'test_cuda_ops', args: ['prefill'] },
  { name: 'ops-prefill-v3', bin: 'test_cuda_ops', args: ['prefill-v3'] },
  { name: 'engine-stories', bin: 'test_cuda_engine', args: ['stories'] },
  { name: 'ops-attention', bin: 'test_cuda_ops', args: ['attention'] },
  { name: 'engine-synthetic', bin: 'test_cuda_engine', args: ['synthetic'] },
  { name: 'matmul-v1', bin: 'test_cuda_matmul', args: ['1'] },
  { name: 'ops-matmul-rows', bin: 'test_cuda_ops', args: ['matmul', 'rows'] },
  { name: 'engine-models', bin: 'test_cuda_engine', args: ['fixtures', 'quantized'] },
  { name: 'bench-device', bin: 'test_cuda_bench_device', args: [] },
];

function seconds(since) {
  return ((Date.now() - since) / 1000).toFixed(0);
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { cwd: root, encoding: 'utf8', maxBuffer: 1 << 28, ...options });
  if (result.status !== 0) {
    process.stdout.write(result.stdout ?? '');
    process.stderr.write(result.stderr ?? '');
    throw new Error(`'${command} ${args.join(' ')}' failed (exit ${result.status})`);
  }
  return result.stdout;
}

// The simulated program runs from a fresh copy of the run folder with the simulator's environment.
function runJob(simRoot, job, env) {
  const started = Date.now();
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), `chai-gpusim-${job.name}-`));
  fs.cpSync(path.join(simRoot, 'run'), workDir, { recursive: true });
  const logFile = path.join(logDir, `${job.name}.log`);
  const log = fs.openSync(logFile, 'w');
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', 'source "$1/env.sh" && cd "$2" && exec timeout "$3" "$4" "${@:5}"', 'gpu-sim',
      simRoot, workDir, String(jobTimeoutSeconds), path.join(tests, job.bin), ...job.args], { stdio: ['ignore', log, log], env });
    child.on('close', (code) => {
      fs.closeSync(log);
      fs.rmSync(workDir, { recursive: true, force: true });
      resolve({ job, code, logFile, seconds: seconds(started) });
    });
  });
}

// What a job's log says: its own lines (checks, device, summary) and the kernels it launched.
function readLog(logFile) {
  const text = fs.readFileSync(logFile, 'utf8');
  const kernels = new Set();
  const own = [];
  let summary = null;
  for (const line of text.split('\n')) {
    const launched = /Performing Functional Simulation, executing kernel (\S+?)\.\.\.$/.exec(line);
    if (launched) kernels.add(launched[1]);
    else if (/^(ok {2}|FAIL|SKIPPED|device:|usage:)/.test(line)) own.push(line);
    const counts = /^(\S+): (\d+) passed, (\d+) failed$/.exec(line);
    if (counts) {
      own.push(line);
      summary = { passed: Number(counts[2]), failed: Number(counts[3]) };
    }
  }
  return { kernels, own, summary };
}

// Every .entry of the PTX embedded in the CUDA objects of the simulator build (the stand-in
// cuobjdump that ships with the simulator unpacks it).
function ptxEntries(simRoot) {
  const objects = path.join(buildDir, 'CMakeFiles', 'chai_core.dir', 'native', 'cuda');
  const cuobjdump = path.join(simRoot, 'cuda', 'bin', 'cuobjdump');
  const entries = new Set();
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'chai-gpusim-ptx-'));
  for (const object of fs.readdirSync(objects).filter((f) => f.endsWith('.cu.o'))) {
    const file = path.join(objects, object);
    for (const listed of run('python3', [cuobjdump, '-lptx', file]).matchAll(/PTX file\s+\d+: (\S+)/g)) {
      run('python3', [cuobjdump, '-xptx', listed[1], file], { cwd: scratch });
      const ptx = fs.readFileSync(path.join(scratch, listed[1]), 'utf8');
      for (const entry of ptx.matchAll(/\.entry\s+([\w$]+)/g)) entries.add(entry[1]);
    }
  }
  fs.rmSync(scratch, { recursive: true, force: true });
  return entries;
}

function demangle(names) {
  const result = spawnSync('c++filt', { input: names.join('\n'), encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim().split('\n') : names;
}

// The engine job's random-weight model with head size 64 (scripts/write-synthetic-model.js);
// removed after the run.
function writeSyntheticModel() {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'chai-gpusim-model-')), 'synthetic-hd64.gguf');
  run(process.execPath, [path.join(__dirname, 'write-synthetic-model.js'), file]);
  return file;
}

async function main() {
  if (!fs.existsSync(simTools)) {
    process.stdout.write(`gpu-sim: skipped: ${simTools} is absent (the simulated GPU ships beside the project's own checkout, not with the package)\n`);
    return 0;
  }
  const wanted = process.argv.slice(2);
  const selected = wanted.length ? jobs.filter((j) => wanted.includes(j.name)) : jobs;
  if (selected.length !== wanted.length && wanted.length) throw new Error(`unknown job; jobs: ${jobs.map((j) => j.name).join(', ')}`);

  let started = Date.now();
  const simRoot = run('bash', [path.join(simTools, 'build.sh')]).trim().split('\n').pop();
  process.stdout.write(`gpu-sim: simulator ready in ${seconds(started)} s (${simRoot})\n`);
  started = Date.now();
  const jobsCount = String(Math.max(1, os.availableParallelism ? os.availableParallelism() : os.cpus().length));
  run('cmake', ['-S', '.', '-B', buildDir, '-DCHAI_NODE=OFF', '-DCHAI_CUDA_SIM=ON', '-DCMAKE_BUILD_TYPE=Release']);
  run('cmake', ['--build', buildDir, '-j', jobsCount, '--target', ...new Set(jobs.map((j) => j.bin))]);
  process.stdout.write(`gpu-sim: compute_80 build of the CUDA tests in ${seconds(started)} s (${buildDir})\n`);

  fs.rmSync(logDir, { recursive: true, force: true });
  fs.mkdirSync(logDir, { recursive: true });
  const model = writeSyntheticModel();
  const env = { ...process.env, CHAI_SYNTHETIC_MODEL: model };
  started = Date.now();
  const queue = [...selected];
  const results = [];
  const workers = Array.from({ length: Math.min(2, queue.length) }, async () => {
    for (let job = queue.shift(); job; job = queue.shift()) {
      const result = await runJob(simRoot, job, env);
      const parsed = readLog(result.logFile);
      Object.assign(result, parsed);
      // Passed: exit 0, on the simulated device (not a real GPU, not the exit-77 path), and at least
      // one check, none failed.
      const simulated = parsed.own.some((line) => line.startsWith('device: GPGPU-Sim'));
      result.ok = result.code === 0 && simulated && parsed.summary !== null && parsed.summary.passed > 0 && parsed.summary.failed === 0;
      results.push(result);
      const why = result.code === 124 ? ': timed out' : result.code === 0 && !simulated ? ': not on the simulated device' : '';
      const status = result.ok ? 'ok' : `FAILED (exit ${result.code}${why}; log ${result.logFile})`;
      process.stdout.write(`\n== gpu-sim job ${job.name} (${job.bin} ${job.args.join(' ')}): ${status} in ${result.seconds} s\n${parsed.own.join('\n')}\n`);
    }
  });
  await Promise.all(workers);
  fs.rmSync(path.dirname(model), { recursive: true, force: true });
  process.stdout.write(`\ngpu-sim: ${results.length} jobs in ${seconds(started)} s\n`);

  const launched = new Set(results.flatMap((r) => [...r.kernels]));
  const exclusions = JSON.parse(fs.readFileSync(path.join(root, 'native', 'tests', 'gpu-sim-exclusions.json'), 'utf8'));
  const entries = [...ptxEntries(simRoot)].sort();
  if (entries.length === 0) throw new Error(`no PTX .entry found in the CUDA objects of ${buildDir}: the coverage check has nothing to count`);
  const excluded = entries.filter((e) => Object.prototype.hasOwnProperty.call(exclusions, e));
  const counted = entries.filter((e) => !excluded.includes(e));
  const missed = counted.filter((e) => !launched.has(e));
  const excludedNames = demangle(excluded), missedNames = demangle(missed);
  excluded.forEach((name, i) => process.stdout.write(`gpu-sim: excluded ${excludedNames[i]}: ${exclusions[name]}\n`));
  missed.forEach((name, i) => process.stdout.write(`gpu-sim: NEVER LAUNCHED ${missedNames[i]} (${name})\n`));
  const partial = wanted.length > 0;
  const passed = results.reduce((n, r) => n + (r.summary?.passed ?? 0), 0);
  const failed = results.reduce((n, r) => n + (r.summary?.failed ?? 0), 0) + results.filter((r) => !r.ok && !(r.summary?.failed > 0)).length;
  process.stdout.write(`gpu-sim: ${counted.length - missed.length} of ${counted.length} kernels launched, ${passed} passed, ${failed} failed\n`);
  return failed === 0 && (partial || missed.length === 0) ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`gpu-sim: ${err.message}\n`);
    process.exit(1);
  },
);
