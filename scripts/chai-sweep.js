#!/usr/bin/env node
// CHAI against full attention on stories260K-mha over text from ../shared/data: the elbow-rule plan
// and a sweep of plans (k in {1, 2, 4, 6} clusters on the last 1..5 layers, both clustering
// methods, both representative rules). Writes bench/results/<date>-chai-sweep.json and a
// markdown table to docs/chai-sweep.md.
//   node scripts/chai-sweep.js [--windows 32] [--window-tokens 128]
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { Command } = require('commander');
const chai = require('../dist');

const root = path.join(__dirname, '..');
const opts = new Command()
  .option('--model <file>', 'model', path.join(root, '..', 'shared', 'models', 'stories260K-mha.gguf'))
  .option('--data <file>', 'text', path.join(root, '..', 'shared', 'data', 'stories-calib.txt'))
  .option('--windows <n>', 'paragraph windows', (v) => parseInt(v, 10), 32)
  .option('--window-tokens <n>', 'tokens per window', (v) => parseInt(v, 10), 128)
  .parse()
  .opts();

async function main() {
  const model = await chai.loadModel(opts.model, { device: 'cpu' });
  const text = fs.readFileSync(opts.data, 'utf8');
  const { layers, heads } = model.info;
  const plans = [];
  // The paper's rule (the knee of each layer's inertia curve); the default budgeted calibration is
  // checked on held-out text by scripts/calibration-sweep.js.
  const elbow = await chai.calibrate(model, text, { rule: 'elbow', windows: 64 });
  plans.push({ name: 'elbow rule', plan: elbow });
  for (const method of ['kmeans', 'agglomerative'])
    for (const representative of ['medoid', 'first'])
      for (const k of [1, 2, 4, 6])
        for (let last = 1; last <= layers; last++) {
          const clusters = Array.from({ length: layers }, (_, l) => (l >= layers - last ? k : heads));
          plans.push({ name: `k=${k} last ${last}`, plan: chai.ClusterPlan.create(model.info, clusters, { method, representative }) });
        }
  const rows = [];
  for (const { name, plan } of plans) {
    const r = await chai.evaluateChai(model, text, { plan, windows: opts.windows, windowTokens: opts.windowTokens, decodeRepeats: 1 });
    const p = r.plan;
    rows.push({
      name,
      clusters: p.layers.map((l) => l.clusters),
      method: p.method,
      representative: p.representative,
      kvSaved: 1 - r.kvBytesChai / r.kvBytesFull,
      kSaved: 1 - r.kBytesChai / r.kBytesFull,
      top1Agreement: r.top1Agreement,
      klMean: r.klMean,
      perplexityFull: r.perplexityFull,
      perplexityChai: r.perplexityChai,
      decodeSpeedup: r.decodeTokensPerSecondChai / r.decodeTokensPerSecondFull,
      report: r,
    });
    process.stderr.write(`${rows.length}/${plans.length}\r`);
  }
  model.dispose();

  const date = new Date().toISOString().slice(0, 10);
  const outJson = path.join(root, 'bench', 'results', `${date}-chai-sweep.json`);
  fs.mkdirSync(path.dirname(outJson), { recursive: true });
  fs.writeFileSync(outJson, JSON.stringify({ date, model: path.basename(opts.model), windows: opts.windows, windowTokens: opts.windowTokens, rows }, null, 1));
  const pct = (x) => `${(100 * x).toFixed(1)}%`;
  const lines = [
    `# CHAI sweep on ${path.basename(opts.model)}`,
    '',
    `${date}. ${opts.windows} windows of ${opts.windowTokens} tokens from \`${path.basename(opts.data)}\`; full-attention perplexity ${rows[0].perplexityFull.toFixed(3)}.`,
    'Reproduce: `npm run build && node scripts/chai-sweep.js`.',
    '',
    '| plan | clusters per layer | method | representative | K+V saved | K saved | top-1 agreement | KL (nats/token) | perplexity CHAI |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.name} | ${r.clusters.join(' ')} | ${r.method} | ${r.representative} | ${pct(r.kvSaved)} | ${pct(r.kSaved)} | ${pct(r.top1Agreement)} | ${r.klMean.toFixed(4)} | ${r.perplexityChai.toFixed(3)} |`),
    '',
  ];
  fs.mkdirSync(path.join(root, 'docs'), { recursive: true });
  fs.writeFileSync(path.join(root, 'docs', 'chai-sweep.md'), lines.join('\n'));
  console.log(lines.slice(0, 8 + 21).join('\n'));
  console.log(`wrote ${path.relative(root, outJson)} and docs/chai-sweep.md`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
