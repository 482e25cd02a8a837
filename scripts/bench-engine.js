#!/usr/bin/env node
// Engine throughput on the CPU: prefill (one batch of 128 tokens) and decode (64 single-token
// steps) tokens/s, for 1 thread and for all hardware threads, on the test model (../shared) and on
// a synthetic F16 model large enough for the matrix work to dominate. Prints a table with the
// threads speedup measured in this run and writes JSON to bench/results/.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const chai = require('../dist');

const root = path.join(__dirname, '..');
const REPEATS = 5;
const PREFILL = 128;
const DECODE = 64;

async function measure(file, threads, tokens, sessions = 1) {
  const model = await chai.loadModel(file, { device: 'cpu', threads });
  try {
    const r = await chai.measureThroughput(model, tokens, { prefillTokens: PREFILL, decodeTokens: DECODE, repeats: REPEATS, sessions });
    return { ...r, weightBytes: model.info.weightBytes };
  } finally {
    model.dispose();
  }
}

async function main() {
  const shared = path.join(root, '..', 'shared', 'models', 'stories260K.gguf');
  const synthetic = path.join(os.tmpdir(), 'chai-bench-synthetic-f16.gguf');
  const syntheticConfig = { layers: 8, embeddingLength: 512, heads: 8, kvHeads: 8, feedForwardLength: 1376, vocabSize: 4096, weights: 'F16', seed: 7 };
  chai.writeSyntheticLlama(synthetic, syntheticConfig);
  const models = [{ name: 'stories260K (F32)', file: shared }, { name: 'synthetic 8x512 (F16)', file: synthetic, config: syntheticConfig }];
  if (!fs.existsSync(shared)) throw new Error(`the test model is missing: ${shared} (../shared must sit beside the checkout)`);

  const allThreads = chai.devices().cpu.threads;
  const threadCounts = [...new Set([1, allThreads])];
  const rows = [];
  const batching = [];
  for (const m of models) {
    const probe = await chai.loadModel(m.file, { device: 'cpu' });
    const text = fs.readFileSync(path.join(root, '..', 'shared', 'data', 'stories-calib.txt'), 'utf8').slice(0, 4000);
    const tokens = probe.tokenizer.encode(text);
    probe.dispose();
    for (const threads of threadCounts) rows.push({ model: m.name, threads, ...(await measure(m.file, threads, tokens)) });
    for (const sessions of [1, 4, 16]) {
      const r = await measure(m.file, 0, tokens, sessions);
      batching.push({ model: m.name, sessions, decodeTokensPerSecond: r.decodeTokensPerSecond });
    }
  }

  console.log(`\nCPU engine (${os.cpus()[0].model.trim()}, ${allThreads} threads, kernels ${chai.devices().cpu.simdKernels})`);
  console.log('model                     threads  prefill tok/s  decode tok/s  decode GB/s (weights)');
  for (const r of rows) {
    const gbps = (r.decodeTokensPerSecond * r.weightBytes) / 1e9;
    console.log(`${r.model.padEnd(26)}${String(r.threads).padStart(7)}${r.prefillTokensPerSecond.toFixed(0).padStart(15)}${r.decodeTokensPerSecond.toFixed(0).padStart(14)}${gbps.toFixed(2).padStart(12)}`);
  }
  const speedups = [];
  for (const m of models) {
    const one = rows.find((r) => r.model === m.name && r.threads === 1);
    const all = rows.find((r) => r.model === m.name && r.threads === allThreads);
    if (one && all && all !== one) {
      speedups.push({ model: m.name, prefill: all.prefillTokensPerSecond / one.prefillTokensPerSecond, decode: all.decodeTokensPerSecond / one.decodeTokensPerSecond });
    }
  }
  for (const s of speedups) console.log(`${s.model}: ${allThreads} threads vs 1 — prefill ${s.prefill.toFixed(2)}x, decode ${s.decode.toFixed(2)}x`);

  console.log('\nconcurrent sessions (decode steps batched into one forward pass):');
  for (const b of batching) {
    const one = batching.find((x) => x.model === b.model && x.sessions === 1);
    console.log(`${b.model.padEnd(26)}${String(b.sessions).padStart(3)} sessions: ${b.decodeTokensPerSecond.toFixed(0).padStart(7)} tok/s in all (${(b.decodeTokensPerSecond / one.decodeTokensPerSecond).toFixed(2)}x one session)`);
  }

  const outDir = path.join(root, 'bench', 'results');
  fs.mkdirSync(outDir, { recursive: true });
  const out = path.join(outDir, `${new Date().toISOString().slice(0, 10)}-${os.hostname()}-engine.json`);
  fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), cpu: os.cpus()[0].model.trim(), prefillTokens: PREFILL, decodeTokens: DECODE, repeats: REPEATS, rows, speedups, batching }, null, 2));
  console.log(`wrote ${path.relative(root, out)}`);
  fs.rmSync(synthetic, { force: true });
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
