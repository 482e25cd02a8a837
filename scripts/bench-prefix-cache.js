#!/usr/bin/env node
// Time to first token with prefix caching: a prompt of a 2k-token prefix and a short question,
// (a) with nothing cached (the prefix is computed) and (b) after another request with the same
// prefix and another question (the prefix's pages come from the cache). Runs on the CPU, on the
// test model (stories260K, context 2048: a 2000-token prefix) and on a synthetic random-weight model
// large enough for the matrix work to dominate (context 4096: a 2048-token prefix). Prints the
// medians and their ratio measured in this run, checks that both give the same first-token logits,
// and writes JSON to bench/results/.
//   npm run build && node scripts/bench-prefix-cache.js
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const chai = require('../dist');

const root = path.join(__dirname, '..');
const REPEATS = 5;
const QUESTION = 32;

function ids(n, seed, vocab) {
  let s = seed;
  return Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return 3 + (s % (vocab - 3));
  });
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function relativeError(a, ref) {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < ref.length; i++) {
    diff += (a[i] - ref[i]) ** 2;
    norm += ref[i] ** 2;
  }
  return Math.sqrt(diff / norm);
}

/** Seconds until evaluate() returns the prompt's last logits (what the first token is sampled from). */
async function firstToken(model, prompt) {
  const session = model.createSession({ prefixCache: true, maxTokens: prompt.length + 1 });
  const start = performance.now();
  const logits = await session.evaluate(prompt);
  const seconds = (performance.now() - start) / 1000;
  const cached = session.cachedTokens;
  await session.dispose();
  return { seconds, cached, logits };
}

async function measure(name, file, prefixTokens) {
  const model = await chai.loadModel(file, { device: 'cpu' });
  try {
    const vocab = model.info.vocabSize;
    const prefix = [1, ...ids(prefixTokens - 1, 7, vocab)];
    const cold = [];
    const warm = [];
    let worst = 0;
    for (let r = 0; r < REPEATS; r++) {
      const prompt = [...prefix, ...ids(QUESTION, 100 + r, vocab)];
      model.prefixCache.clear();
      const miss = await firstToken(model, prompt);
      if (miss.cached !== 0) throw new Error('a cleared cache served tokens');
      cold.push(miss.seconds);
      // Another request with the same prefix fills the cache; then the measured one reads it.
      model.prefixCache.clear();
      await firstToken(model, [...prefix, ...ids(QUESTION, 200 + r, vocab)]);
      const hit = await firstToken(model, prompt);
      if (hit.cached < prefixTokens - 16) throw new Error(`only ${hit.cached} of ${prefixTokens} prefix tokens came from the cache`);
      warm.push(hit.seconds);
      worst = Math.max(worst, relativeError(hit.logits, miss.logits));
    }
    return {
      model: name,
      layers: model.info.layers,
      embeddingLength: model.info.embeddingLength,
      prefixTokens,
      questionTokens: QUESTION,
      uncachedSeconds: median(cold),
      cachedSeconds: median(warm),
      speedup: median(cold) / median(warm),
      logitsRelativeError: worst,
    };
  } finally {
    model.dispose();
  }
}

async function main() {
  const stories = path.join(root, '..', 'shared', 'models', 'stories260K.gguf');
  if (!fs.existsSync(stories)) throw new Error(`the test model is missing: ${stories} (../shared must sit beside the checkout)`);
  const synthetic = path.join(os.tmpdir(), 'chai-bench-synthetic-f16.gguf');
  const syntheticConfig = { layers: 8, embeddingLength: 512, heads: 8, kvHeads: 8, feedForwardLength: 1376, vocabSize: 4096, weights: 'F16', seed: 7 };
  chai.writeSyntheticLlama(synthetic, syntheticConfig);
  const rows = [await measure('stories260K (F32)', stories, 2000), await measure('synthetic 8x512 (F16)', synthetic, 2048)];

  const cpu = `${os.cpus()[0].model.trim()}, ${chai.devices().cpu.threads} threads`;
  console.log(`\nTime to first token, prompt = prefix + ${QUESTION} tokens (${cpu}; median of ${REPEATS})`);
  console.log('model                     prefix  uncached ms  cached ms  speedup  logits rel.err');
  for (const r of rows) {
    console.log(
      `${r.model.padEnd(26)}${String(r.prefixTokens).padStart(6)}${(r.uncachedSeconds * 1000).toFixed(1).padStart(13)}` +
        `${(r.cachedSeconds * 1000).toFixed(1).padStart(11)}${r.speedup.toFixed(1).padStart(8)}x${r.logitsRelativeError.toExponential(1).padStart(16)}`,
    );
  }
  const out = path.join(root, 'bench', 'results', `${new Date().toISOString().slice(0, 10)}-prefix-cache.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), cpu, repeats: REPEATS, syntheticConfig, rows }, null, 2) + '\n');
  console.log(`\nwrote ${path.relative(root, out)}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
