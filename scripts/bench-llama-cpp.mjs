#!/usr/bin/env node
// This engine against llama.cpp (through node-llama-cpp 3.22.1's prebuilt CPU binary) on the CPU,
// on the same files: prefill (one batch of 128 tokens) and decode (64 single-token steps,
// teacher-forced, as measureThroughput does) tokens/s with 1 and 2 threads. The engines alternate
// run by run (which one goes first alternates too), after one warm-up run each, so that a shared
// or throttling machine slows both alike; the medians of the rounds, their min..max and the
// per-round ratios are printed and written with the CPU model and its flags to bench/results/.
//
// Files: the small ones (synth-kq-q4_k_m.gguf and synth-kq-q6_k.gguf in ../shared/models) and
// a random-weight llama of about 400M parameters (dim 2048, 8 layers, 16 heads, ffn 5632, lib/synthetic)
// in F16, with the same file quantized to Q4_K_M and Q4_0 by llama.cpp's own quantizer
// (../shared/tools/llama-quantize.sh). The large files are made once and kept in a cache folder
// outside the repository: $CHAI_BENCH_CACHE, default ~/.cache/chai-attention/bench (about 1.3 GB).
//
// node-llama-cpp is large (its optional GPU packages are ~700 MB), so it is not a dependency:
// install it elsewhere and point at it (as scripts/compare-llama-cpp.mjs does):
//   mkdir /tmp/llcpp && cd /tmp/llcpp && npm install --omit=optional node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1
//   npm run build && node scripts/bench-llama-cpp.mjs /tmp/llcpp [--set small|large|all] [--rounds N] [--threads 1,2]
//       [--files a.gguf,b.gguf] [--note TEXT]
// --set: which files (default all); --files: names in ../shared/models or in the cache folder instead;
// --rounds: timed rounds per engine (default 5; fewer is allowed for a quick look and says so);
// --note: a remark kept in the JSON (e.g. that the machine was shared).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const chai = require(path.join(root, 'dist'));

const PREFILL = 128;
const DECODE = 64;
const SMALL = ['synth-kq-q4_k_m.gguf', 'synth-kq-q6_k.gguf'];
const LARGE_CONFIG = { layers: 8, embeddingLength: 2048, heads: 16, kvHeads: 16, feedForwardLength: 5632, vocabSize: 512, weights: 'F16', seed: 19 };
const LARGE_F16 = 'llama-413m-f16.gguf';
const LARGE_QUANT = { 'llama-413m-q4_k_m.gguf': 'q4_k_m', 'llama-413m-q4_0.gguf': 'q4_0' };

function parseArgs(argv) {
  const args = { set: 'all', rounds: 5, threads: [1, 2], files: null, note: '' };
  const rest = [...argv];
  args.llamaCppDir = rest.shift();
  while (rest.length > 0) {
    const flag = rest.shift();
    const value = rest.shift();
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === '--set' && ['small', 'large', 'all'].includes(value)) args.set = value;
    else if (flag === '--rounds' && Number(value) >= 1) args.rounds = Math.floor(Number(value));
    else if (flag === '--threads') args.threads = value.split(',').map(Number);
    else if (flag === '--files') args.files = value.split(',');
    else if (flag === '--note') args.note = value;
    else throw new Error(`unknown option or bad value: ${flag} ${value}`);
  }
  if (!args.llamaCppDir || args.llamaCppDir.startsWith('--')) {
    throw new Error('usage: node scripts/bench-llama-cpp.mjs <folder where node-llama-cpp 3.22.1 is installed> [options] (see the header)');
  }
  return args;
}

const cacheDir = process.env.CHAI_BENCH_CACHE ?? path.join(os.homedir(), '.cache', 'chai-attention', 'bench');
const modelsDir = path.join(root, '..', 'shared', 'models');

// The 400M files, made when missing: F16 by lib/synthetic, the quantized ones from it by llama.cpp.
function ensureLargeFiles(llamaCppDir) {
  fs.mkdirSync(cacheDir, { recursive: true });
  const f16 = path.join(cacheDir, LARGE_F16);
  if (!fs.existsSync(f16)) {
    console.log(`writing ${f16} (random weights, ${JSON.stringify(LARGE_CONFIG)})`);
    chai.writeSyntheticLlama(`${f16}.partial`, LARGE_CONFIG);
    fs.renameSync(`${f16}.partial`, f16);
  }
  for (const [name, type] of Object.entries(LARGE_QUANT)) {
    const out = path.join(cacheDir, name);
    if (fs.existsSync(out)) continue;
    console.log(`quantizing to ${type} with llama.cpp's quantizer: ${out}`);
    const quantize = path.join(root, '..', 'shared', 'tools', 'llama-quantize.sh');
    const r = spawnSync('bash', [quantize, llamaCppDir, f16, `${out}.partial`, type], { encoding: 'utf8', maxBuffer: 1 << 26 });
    if (r.status !== 0) throw new Error(`llama-quantize.sh failed for ${type} (exit ${r.status}):\n${r.stdout}${r.stderr}`);
    fs.renameSync(`${out}.partial`, out);
  }
  return [LARGE_F16, ...Object.keys(LARGE_QUANT)];
}

function locate(name) {
  for (const dir of [modelsDir, cacheDir]) if (fs.existsSync(path.join(dir, name))) return path.join(dir, name);
  throw new Error(`${name} is neither in ${modelsDir} nor in ${cacheDir}`);
}

// Wall time, and the process's CPU time (all its threads): on a shared machine the second shows
// what each engine cost while it ran (a thread pool that spins while waiting counts too).
function timer() {
  const wall = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  return () => {
    const used = process.cpuUsage(cpu);
    return { wall: Number(process.hrtime.bigint() - wall) / 1e9, cpu: (used.user + used.system) / 1e6 };
  };
}

// Tokens/s of one phase by wall time, and by CPU time.
const rates = (tokens, t) => ({ wall: tokens / t.wall, cpu: tokens / t.cpu });

// One run of each engine: prefill PREFILL tokens as one batch, then DECODE single-token steps.
async function runOurs(model, tokens) {
  const session = model.createSession({ maxTokens: PREFILL + DECODE });
  try {
    let stop = timer();
    await session.evaluate(tokens.slice(0, PREFILL));
    const prefill = rates(PREFILL, stop());
    stop = timer();
    for (let i = 0; i < DECODE; i++) await session.evaluate([tokens[PREFILL + i]]);
    return { prefill, decode: rates(DECODE, stop()) };
  } finally {
    await session.dispose();
  }
}

async function runLlamaCpp(context, tokens) {
  const sequence = context.getSequence();
  try {
    let stop = timer();
    await sequence.evaluateWithoutGeneratingNewTokens(tokens.slice(0, PREFILL));
    const prefill = rates(PREFILL, stop());
    stop = timer();
    for (let i = 0; i < DECODE; i++) await sequence.evaluateWithoutGeneratingNewTokens([tokens[PREFILL + i]]);
    return { prefill, decode: rates(DECODE, stop()) };
  } finally {
    sequence.dispose();
  }
}

function stats(values) {
  const v = [...values].sort((a, b) => a - b);
  return { median: v[Math.floor(v.length / 2)], min: v[0], max: v[v.length - 1], runs: values };
}

// Rounds of one run per engine; even rounds start with this engine, odd ones with llama.cpp.
async function compare(llama, file, threads, tokens, rounds) {
  const ours = await chai.loadModel(file, { device: 'cpu', threads });
  const { info } = ours;
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  const context = await model.createContext({ contextSize: 512, batchSize: PREFILL, threads: { ideal: threads, min: threads } });
  const a = [];
  const b = [];
  try {
    await runOurs(ours, tokens); // warm-up (page cache, allocations)
    await runLlamaCpp(context, tokens);
    for (let r = 0; r < rounds; r++) {
      if (r % 2 === 0) {
        a.push(await runOurs(ours, tokens));
        b.push(await runLlamaCpp(context, tokens));
      } else {
        b.push(await runLlamaCpp(context, tokens));
        a.push(await runOurs(ours, tokens));
      }
    }
  } finally {
    await context.dispose();
    await model.dispose();
    ours.dispose();
  }
  const row = { model: path.basename(file), threads, weightBytes: info.weightBytes, chai: {}, llamaCpp: {}, ratio: {}, roundRatio: {} };
  row.cpuTime = { chai: {}, llamaCpp: {}, ratio: {} };
  for (const phase of ['prefill', 'decode']) {
    row.chai[phase] = stats(a.map((x) => x[phase].wall));
    row.llamaCpp[phase] = stats(b.map((x) => x[phase].wall));
    row.ratio[phase] = row.chai[phase].median / row.llamaCpp[phase].median;
    row.roundRatio[phase] = stats(a.map((x, i) => x[phase].wall / b[i][phase].wall));
    row.cpuTime.chai[phase] = stats(a.map((x) => x[phase].cpu));
    row.cpuTime.llamaCpp[phase] = stats(b.map((x) => x[phase].cpu));
    row.cpuTime.ratio[phase] = row.cpuTime.chai[phase].median / row.cpuTime.llamaCpp[phase].median;
  }
  // Decode's bytes per token: the weights (the embedding table counted whole, though one row of it
  // is read: a little high) and the f32 KV cache at the middle of the decoded tokens.
  const kvBytes = 2 * info.layers * info.kvHeads * info.headDim * 4 * (PREFILL + DECODE / 2);
  row.decodeBytesPerToken = info.weightBytes + kvBytes;
  const gbps = (rate) => (rate * row.decodeBytesPerToken) / 1e9;
  row.decodeGbps = { chai: gbps(row.chai.decode.median), llamaCpp: gbps(row.llamaCpp.decode.median) };
  row.decodeGbpsCpuTime = { chai: gbps(row.cpuTime.chai.decode.median), llamaCpp: gbps(row.cpuTime.llamaCpp.decode.median) };
  return row;
}

// One thread's streaming-read bandwidth (native/bench/bench_read, built by `node scripts/native.js
// bench` or `cmake --build build-native --target bench_read`), the ceiling of decoding on one
// thread; null when the program is not built.
function measureReadCeiling() {
  const program = path.join(root, 'build-native', 'native', 'bench', 'bench_read');
  if (!fs.existsSync(program)) {
    console.log(`no ${path.relative(root, program)}: decode is not compared with the read bandwidth`);
    return null;
  }
  const r = spawnSync(program, [], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bench_read failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

function cpuFlags() {
  try {
    const line = fs.readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    return line ? line.split(':')[1].trim().split(/\s+/) : [];
  } catch {
    return [];
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.rounds < 5) console.log(`note: ${args.rounds} round(s) only, a quick look (the comparison asks for at least 5)`);
  const { getLlama, LlamaLogLevel } = await import(pathToFileURL(path.join(args.llamaCppDir, 'node_modules', 'node-llama-cpp', 'dist', 'index.js')).href);
  let files = args.files;
  if (!files) {
    files = [];
    if (args.set !== 'large') files.push(...SMALL);
    if (args.set !== 'small') files.push(...ensureLargeFiles(args.llamaCppDir));
  }
  const readCeiling = measureReadCeiling();
  const text = fs.readFileSync(path.join(root, '..', 'shared', 'data', 'stories-calib.txt'), 'utf8').slice(0, 4000);
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, maxThreads: Math.max(...args.threads) });
  const rows = [];
  for (const name of files) {
    const file = locate(name);
    const probe = await chai.loadModel(file, { device: 'cpu' });
    const tokens = probe.tokenizer.encode(text).slice(0, PREFILL + DECODE);
    probe.dispose();
    if (tokens.length < PREFILL + DECODE) throw new Error(`need ${PREFILL + DECODE} tokens of text, got ${tokens.length}`);
    for (const threads of args.threads) {
      const row = await compare(llama, file, threads, tokens, args.rounds);
      rows.push(row);
      console.log(`${name} ${threads} thread(s): prefill ${row.ratio.prefill.toFixed(2)}x, decode ${row.ratio.decode.toFixed(2)}x`);
    }
  }
  await llama.dispose();

  const cpu = os.cpus()[0].model.trim();
  const kernels = chai.devices().cpu.simdKernels; // CHAI_SIMD=avx2 measures the AVX2 kernels
  const f = (x) => x.toFixed(x < 100 ? 1 : 0);
  const cell = (s) => `${f(s.median)} (${f(s.min)}..${f(s.max)})`;
  console.log(`\nCPU: ${cpu}; this engine's kernels: ${kernels}; llama.cpp via node-llama-cpp 3.22.1; ${args.rounds} alternating rounds, median (min..max)`);
  for (const phase of ['prefill', 'decode']) {
    console.log(`\n${phase} tok/s (wall time)`);
    console.log('model                      threads  chai                   llama.cpp              ratio of medians (per-round min..max)  by CPU time');
    for (const r of rows) {
      console.log(`${r.model.padEnd(27)}${String(r.threads).padStart(7)}  ${cell(r.chai[phase]).padEnd(23)}${cell(r.llamaCpp[phase]).padEnd(23)}` +
        `${`${r.ratio[phase].toFixed(2)}x (${r.roundRatio[phase].min.toFixed(2)}..${r.roundRatio[phase].max.toFixed(2)})`.padEnd(39)}${r.cpuTime.ratio[phase].toFixed(2)}x`);
    }
  }
  if (readCeiling) {
    // By CPU time: on a shared machine wall-time bandwidths depend on the neighbours of the moment.
    console.log(`\none thread's read bandwidth (bench_read): ${readCeiling.readGbps} GB/s by wall time, ${readCeiling.readGbpsCpuTime} GB/s by CPU time`);
    // Files whose bytes per token fit in the caches decode faster than memory can be read.
    for (const r of rows.filter((x) => x.threads === 1 && x.decodeBytesPerToken > 256e6)) {
      const c = r.decodeGbpsCpuTime;
      console.log(`${r.model.padEnd(27)} decode reads ${(r.decodeBytesPerToken / 1e6).toFixed(0)} MB/token; by CPU time chai ${c.chai.toFixed(2)} GB/s ` +
        `(${((100 * c.chai) / readCeiling.readGbpsCpuTime).toFixed(0)}% of the read bandwidth), llama.cpp ${c.llamaCpp.toFixed(2)} GB/s`);
    }
  }
  const outDir = path.join(root, 'bench', 'results');
  fs.mkdirSync(outDir, { recursive: true });
  const out = path.join(outDir, `${new Date().toISOString().slice(0, 10)}-${os.hostname()}-${kernels}-vs-llama-cpp.json`);
  fs.writeFileSync(out, JSON.stringify({
    date: new Date().toISOString(), cpu, cpuFlags: cpuFlags(), cpuThreads: os.cpus().length, kernels, note: args.note,
    llamaCpp: 'node-llama-cpp 3.22.1', prefillTokens: PREFILL, decodeTokens: DECODE, rounds: args.rounds,
    largeModel: LARGE_CONFIG, readCeiling, rows,
  }, null, 2));
  console.log(`wrote ${path.relative(root, out)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
