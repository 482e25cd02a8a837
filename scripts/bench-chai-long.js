#!/usr/bin/env node
// CHAI at long context on the CPU: decode tokens/s with full attention against a uniform CHAI plan
// (the same cluster count in every layer) at 4k, 16k and 32k cached tokens, on two attention-heavy
// random-weight models (lib/synthetic, F16 weights): MHA (dim 1024, 8 heads of 128, 2 layers, ffn
// 512) and GQA (dim 1024, 16 heads of 64 on 4 KV heads, 2 layers, ffn 512), with an f32 and an f16
// KV cache. Both sessions of a model grow together to each length; then, for --rounds rounds, each
// decodes --steps single tokens, alternating which goes first, and the median rates are compared.
//
// Beside each measured ratio is the one predicted from the bytes a decode step reads: the weights
// (all but the embedding table) plus, per layer, K of the KV heads that attention scores with and
// V of every KV head. Full attention scores with every KV head; a clustered layer only with those
// holding a representative's keys, read from the session's assignment (with GQA a plan's saving
// depends on which KV heads its representatives fall in, so each row states them).
//   node scripts/bench-chai-long.js [--lengths 4096,16384,32768] [--clusters 2] [--rounds 5] [--steps 8]
//       [--threads N] [--kv f32,f16] [--models mha,gqa] [--note TEXT]
// Writes bench/results/<date>-<host>-chai-long-context.json. The model files (about 25 MB each) go to
// $CHAI_BENCH_CACHE (default ~/.cache/chai-attention/bench).
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Command } = require('commander');
const chai = require('../dist');

const root = path.join(__dirname, '..');
const list = (v) => v.split(',').filter(Boolean);
const opts = new Command()
  .option('--lengths <list>', 'cached tokens at which decoding is measured', (v) => list(v).map(Number), [4096, 16384, 32768])
  .option('--clusters <n>', 'clusters in every layer of the CHAI plan', (v) => parseInt(v, 10), 2)
  .option('--rounds <n>', 'alternating rounds per length', (v) => parseInt(v, 10), 5)
  .option('--steps <n>', 'decode steps per session per round', (v) => parseInt(v, 10), 8)
  .option('--threads <n>', 'CPU threads (0: all)', (v) => parseInt(v, 10), 1)
  .option('--kv <list>', 'KV cache types', list, ['f32', 'f16'])
  .option('--models <list>', 'mha and/or gqa', list, ['mha', 'gqa'])
  .option('--note <text>', 'a remark kept in the JSON (e.g. that the machine was shared)', '')
  .parse()
  .opts();

const MODELS = {
  mha: { layers: 2, embeddingLength: 1024, heads: 8, kvHeads: 8, feedForwardLength: 512, vocabSize: 512, weights: 'F16', seed: 41 },
  gqa: { layers: 2, embeddingLength: 1024, heads: 16, kvHeads: 4, feedForwardLength: 512, vocabSize: 512, weights: 'F16', seed: 42 },
};
const CHUNK = 4096; // prompt tokens per evaluate() while growing a session

const seconds = (start) => Number(process.hrtime.bigint() - start) / 1e9;
function stats(values) {
  const v = [...values].sort((a, b) => a - b);
  return { median: v[Math.floor(v.length / 2)], min: v[0], max: v[v.length - 1], runs: values };
}

async function growTo(session, tokens, length) {
  while (session.tokens.length < length) {
    const from = session.tokens.length;
    await session.evaluate(tokens.slice(from, Math.min(length, from + CHUNK)));
  }
}

async function decodeRate(session, tokens, steps) {
  const start = process.hrtime.bigint();
  for (let i = 0; i < steps; i++) await session.evaluate([tokens[session.tokens.length]]);
  return steps / seconds(start);
}

// Bytes one decode step reads at `cached` tokens: weights, and per layer K of the scoring KV heads
// and V of all KV heads. kvHeadsScored[l]: KV heads whose keys layer l reads.
function stepBytes(config, weightBytes, cached, kvBytes, kvHeadsScored) {
  const headDim = config.embeddingLength / config.heads;
  const embeddingTable = config.vocabSize * config.embeddingLength * 2; // F16; one row is read
  let bytes = weightBytes - embeddingTable;
  for (const scored of kvHeadsScored) bytes += (scored + config.kvHeads) * cached * headDim * kvBytes;
  return bytes;
}

async function benchModel(name, kv) {
  const config = { ...MODELS[name] };
  const maxLength = Math.max(...opts.lengths) + (opts.rounds + 1) * opts.steps + 1;
  config.metadata = { 'llama.context_length': { type: 'u32', value: maxLength } };
  const dir = process.env.CHAI_BENCH_CACHE ?? path.join(os.homedir(), '.cache', 'chai-attention', 'bench');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `chai-long-${name}-${maxLength}.gguf`);
  if (!fs.existsSync(file)) chai.writeSyntheticLlama(file, config);
  const model = await chai.loadModel(file, { device: 'cpu', threads: opts.threads, kvCacheType: kv });
  const rows = [];
  try {
    const plan = chai.ClusterPlan.create(model.info, Array(config.layers).fill(opts.clusters));
    const full = model.createSession({ maxTokens: maxLength, chai: 'off' });
    const clustered = model.createSession({ maxTokens: maxLength, chai: plan });
    let seed = 12345;
    const tokens = Array.from({ length: maxLength + 1 }, () => 3 + ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % (config.vocabSize - 3)));
    try {
      for (const length of opts.lengths) {
        const start = process.hrtime.bigint();
        await growTo(full, tokens, length);
        await growTo(clustered, tokens, length);
        process.stderr.write(`${name} ${kv}: grew both sessions to ${length} tokens in ${seconds(start).toFixed(0)} s\n`);
        await decodeRate(full, tokens, 1); // warm-up at this length
        await decodeRate(clustered, tokens, 1);
        const a = [];
        const b = [];
        for (let r = 0; r < opts.rounds; r++) {
          if (r % 2 === 0) {
            a.push(await decodeRate(full, tokens, opts.steps));
            b.push(await decodeRate(clustered, tokens, opts.steps));
          } else {
            b.push(await decodeRate(clustered, tokens, opts.steps));
            a.push(await decodeRate(full, tokens, opts.steps));
          }
        }
        const group = config.heads / config.kvHeads;
        const scored = [];
        for (let l = 0; l < config.layers; l++) {
          const assignment = clustered.assignment(l);
          scored.push(assignment ? new Set(assignment.representatives.map((h) => Math.floor(h / group))).size : config.kvHeads);
        }
        const cached = length + opts.rounds * opts.steps; // the middle of the timed steps, roughly
        const kvBytes = kv === 'f16' ? 2 : 4;
        const bytesFull = stepBytes(config, model.info.weightBytes, cached, kvBytes, Array(config.layers).fill(config.kvHeads));
        const bytesChai = stepBytes(config, model.info.weightBytes, cached, kvBytes, scored);
        const fullStats = stats(a);
        const chaiStats = stats(b);
        const row = {
          model: name, heads: config.heads, kvHeads: config.kvHeads, kv, cachedTokens: length,
          plan: `k=${opts.clusters} in every layer; KV heads scored per layer: ${scored.join(', ')} of ${config.kvHeads}`,
          kvHeadsScored: scored, full: fullStats, chai: chaiStats,
          measured: chaiStats.median / fullStats.median, predicted: bytesFull / bytesChai,
          roundRatio: stats(b.map((x, i) => x / a[i])), bytesPerStep: { full: bytesFull, chai: bytesChai },
          fullGBps: (fullStats.median * bytesFull) / 1e9, chaiGBps: (chaiStats.median * bytesChai) / 1e9,
        };
        rows.push(row);
        process.stderr.write(`  ${length}: measured ${row.measured.toFixed(2)}x, predicted ${row.predicted.toFixed(2)}x (${row.plan})\n`);
      }
    } finally {
      await full.dispose();
      await clustered.dispose();
    }
  } finally {
    model.dispose();
  }
  return rows;
}

async function main() {
  const rows = [];
  const cpu = os.cpus()[0].model.trim();
  const kernels = chai.devices().cpu.simdKernels;
  const outDir = path.join(root, 'bench', 'results');
  fs.mkdirSync(outDir, { recursive: true });
  const out = path.join(outDir, `${new Date().toISOString().slice(0, 10)}-${os.hostname()}-chai-long-context.json`);
  // Written after every model, so that a long run stopped part-way keeps what it measured.
  const save = () =>
    fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), cpu, kernels, threads: opts.threads, note: opts.note, rounds: opts.rounds, steps: opts.steps, models: MODELS, rows }, null, 2));
  for (const name of opts.models) {
    for (const kv of opts.kv) {
      rows.push(...(await benchModel(name, kv)));
      save();
    }
  }
  console.log(`\nCHAI decode at long context, CPU ${cpu} (kernels ${kernels}), ${opts.threads} thread(s), ${opts.rounds} alternating rounds of ${opts.steps} steps, median (min..max)`);
  console.log('model  kv   cached  full tok/s           CHAI tok/s           measured  predicted  of predicted  plan');
  const cell = (s) => `${s.median.toFixed(1)} (${s.min.toFixed(1)}..${s.max.toFixed(1)})`.padEnd(21);
  for (const r of rows) {
    console.log(`${r.model.padEnd(7)}${r.kv.padEnd(5)}${String(r.cachedTokens).padStart(6)}  ${cell(r.full)}${cell(r.chai)}${(r.measured.toFixed(2) + 'x').padStart(8)}` +
      `${(r.predicted.toFixed(2) + 'x').padStart(11)}${((100 * r.measured) / r.predicted).toFixed(0).padStart(12)}%  ${r.plan}`);
  }
  console.log(`wrote ${path.relative(root, out)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
