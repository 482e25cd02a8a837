#!/usr/bin/env node
// Prints how far this engine's last logits land from llama.cpp's on the architecture fixtures
// (relative L2 over the stored ids) and where greedy decoding first differs, teacher-forcing
// llama.cpp's tokens (the gap between our two candidates there). Needs `npm run build`.
//   node scripts/architecture-parity.js [synth-llama3 synth-qwen2 synth-qwen3]
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { loadModel } = require('..');

const shared = path.join(__dirname, '..', '..', 'shared');
const argmax = (v) => v.reduce((best, x, i) => (x > v[best] ? i : best), 0);

async function parity(name) {
  const golden = JSON.parse(fs.readFileSync(path.join(shared, 'golden', `${name}.json`), 'utf8'));
  const model = await loadModel(path.join(shared, 'models', `${name}.gguf`), { device: 'cpu' });
  const errors = [];
  const divergences = [];
  for (const c of golden.cases) {
    const session = model.createSession({ maxTokens: 128 });
    let logits = await session.evaluate(c.promptTokens);
    let diff = 0;
    let norm = 0;
    c.lastLogits.forEach((v, i) => {
      diff += (logits[i] - v) ** 2;
      norm += v ** 2;
    });
    errors.push(Math.sqrt(diff / norm));
    for (let step = 0; step < c.greedy.length; step++) {
      const ours = argmax(logits);
      if (ours !== c.greedy[step]) {
        divergences.push({ prompt: c.prompt.slice(0, 30), step, gap: logits[ours] - logits[c.greedy[step]] });
        break;
      }
      logits = await session.evaluate([c.greedy[step]]);
    }
    await session.dispose();
  }
  model.dispose();
  const mean = errors.reduce((s, e) => s + e, 0) / errors.length;
  return { model: name, cases: errors.length, relativeL2Mean: mean, relativeL2Max: Math.max(...errors), greedyIdentical: errors.length - divergences.length, divergences };
}

(async () => {
  const names = process.argv.slice(2);
  for (const name of names.length ? names : ['synth-llama3', 'synth-qwen2', 'synth-qwen3']) {
    process.stdout.write(`${JSON.stringify(await parity(name))}\n`);
  }
})().catch((e) => {
  process.stderr.write(`${e.stack}\n`);
  process.exitCode = 1;
});
