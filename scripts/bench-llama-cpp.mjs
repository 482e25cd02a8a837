#!/usr/bin/env node
// This engine against llama.cpp (through node-llama-cpp 3.22.1's prebuilt CPU binary)
// on the CPU, in one run on the same files: prefill (one batch of 128 tokens) and decode (64
// single-token steps, teacher-forced, as measureThroughput does) tokens/s with 1 and 2 threads,
// on synth-kq-q4_k_m.gguf and synth-kq-q6_k.gguf (../shared/models). Median of 5 runs after a
// warm-up. Prints the ratios and writes JSON to bench/results/. node-llama-cpp is large (its
// optional GPU packages are ~700 MB), so it is not a dependency: install it elsewhere and point at it
// (as scripts/compare-llama-cpp.mjs does):
//   mkdir /tmp/llcpp && cd /tmp/llcpp && npm install --omit=optional node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1
//   npm run build && node scripts/bench-llama-cpp.mjs /tmp/llcpp
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const chai = require(path.join(root, 'dist'));
const llamaCppDir = process.argv[2];
if (!llamaCppDir) {
  console.error('usage: node scripts/bench-llama-cpp.mjs <folder where node-llama-cpp 3.22.1 is installed> (see the header)');
  process.exit(2);
}
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(path.join(llamaCppDir, 'node_modules', 'node-llama-cpp', 'dist', 'index.js')).href);

const PREFILL = 128;
const DECODE = 64;
const REPEATS = 5;
// BENCH_FILES=a.gguf,b.gguf (names in ../shared/models) measures other files.
const FILES = (process.env.BENCH_FILES ?? 'synth-kq-q4_k_m.gguf,synth-kq-q6_k.gguf').split(',');
const THREADS = (process.env.BENCH_THREADS ?? '1,2').split(',').map(Number);

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const seconds = (start) => Number(process.hrtime.bigint() - start) / 1e9;

async function llamaCpp(llama, file, threads, tokens) {
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  const context = await model.createContext({ contextSize: 512, batchSize: PREFILL, threads: { ideal: threads, min: threads } });
  const prefillRates = [];
  const decodeRates = [];
  try {
    for (let r = 0; r <= REPEATS; r++) {
      const sequence = context.getSequence();
      let start = process.hrtime.bigint();
      await sequence.evaluateWithoutGeneratingNewTokens(tokens.slice(0, PREFILL));
      const prefillSeconds = seconds(start);
      start = process.hrtime.bigint();
      for (let i = 0; i < DECODE; i++) await sequence.evaluateWithoutGeneratingNewTokens([tokens[PREFILL + i]]);
      const decodeSeconds = seconds(start);
      sequence.dispose();
      if (r === 0) continue; // warm-up
      prefillRates.push(PREFILL / prefillSeconds);
      decodeRates.push(DECODE / decodeSeconds);
    }
  } finally {
    await context.dispose();
    await model.dispose();
  }
  return { prefillTokensPerSecond: median(prefillRates), decodeTokensPerSecond: median(decodeRates) };
}

async function ours(file, threads, tokens) {
  const model = await chai.loadModel(file, { device: 'cpu', threads });
  try {
    return await chai.measureThroughput(model, tokens, { prefillTokens: PREFILL, decodeTokens: DECODE, repeats: REPEATS });
  } finally {
    model.dispose();
  }
}

async function main() {
  const models = path.join(root, '..', 'shared', 'models');
  const text = fs.readFileSync(path.join(root, '..', 'shared', 'data', 'stories-calib.txt'), 'utf8').slice(0, 4000);
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, maxThreads: Math.max(...THREADS) });
  const rows = [];
  for (const name of FILES) {
    const file = path.join(models, name);
    const probe = await chai.loadModel(file, { device: 'cpu' });
    const tokens = probe.tokenizer.encode(text).slice(0, PREFILL + DECODE);
    probe.dispose();
    if (tokens.length < PREFILL + DECODE) throw new Error(`need ${PREFILL + DECODE} tokens of text, got ${tokens.length}`);
    for (const threads of THREADS) {
      const a = await ours(file, threads, tokens);
      const b = await llamaCpp(llama, file, threads, tokens);
      rows.push({
        model: name, threads,
        chai: { prefill: a.prefillTokensPerSecond, decode: a.decodeTokensPerSecond },
        llamaCpp: { prefill: b.prefillTokensPerSecond, decode: b.decodeTokensPerSecond },
        ratio: { prefill: a.prefillTokensPerSecond / b.prefillTokensPerSecond, decode: a.decodeTokensPerSecond / b.decodeTokensPerSecond },
      });
    }
  }
  await llama.dispose();

  const cpu = os.cpus()[0].model.trim();
  const kernels = chai.devices().cpu.simdKernels; // CHAI_SIMD=avx2 measures the AVX2 kernels
  console.log(`\nCPU: ${cpu}; this engine's kernels: ${kernels}; llama.cpp via node-llama-cpp 3.22.1`);
  console.log('model                  threads   prefill tok/s (chai / llama.cpp = ratio)   decode tok/s (chai / llama.cpp = ratio)');
  const f = (x) => x.toFixed(0).padStart(6);
  for (const r of rows) {
    console.log(`${r.model.padEnd(24)}${String(r.threads).padStart(5)}   ${f(r.chai.prefill)} / ${f(r.llamaCpp.prefill)} = ${r.ratio.prefill.toFixed(2)}x` +
      `                ${f(r.chai.decode)} / ${f(r.llamaCpp.decode)} = ${r.ratio.decode.toFixed(2)}x`);
  }
  const outDir = path.join(root, 'bench', 'results');
  fs.mkdirSync(outDir, { recursive: true });
  const out = path.join(outDir, `${new Date().toISOString().slice(0, 10)}-${os.hostname()}-${kernels}-vs-llama-cpp.json`);
  fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), cpu, kernels, llamaCpp: 'node-llama-cpp 3.22.1', prefillTokens: PREFILL, decodeTokens: DECODE, repeats: REPEATS, rows }, null, 2));
  console.log(`wrote ${path.relative(root, out)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
