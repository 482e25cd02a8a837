#!/usr/bin/env node
// Cross-checks the CPU engine against llama.cpp (through node-llama-cpp's prebuilt CPU binary) on
// prompts the golden files do not contain: greedy continuations, token for token, and at each
// divergence the gap between our two best logits (a near-tie is < 0.02). Not part of `npm test`:
// node-llama-cpp is large, so install it elsewhere and point at it:
//   mkdir /tmp/llcpp && cd /tmp/llcpp && npm install --omit=optional node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1
//   node scripts/compare-llama-cpp.mjs --llama-cpp /tmp/llcpp [--model FILE] [--prompts N] [--new 48] [--json OUT]
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Command } from 'commander';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const chai = require(path.join(root, 'dist', 'index.js'));

const opts = new Command()
  .requiredOption('--llama-cpp <dir>', 'folder where node-llama-cpp is installed')
  .option('--model <file>', 'GGUF model', path.join(root, '..', 'shared', 'models', 'stories260K.gguf'))
  .option('--data <file>', 'text to cut prompts from', path.join(root, '..', 'shared', 'data', 'stories-calib.txt'))
  .option('--prompts <n>', 'number of prompts', (v) => parseInt(v, 10), 100)
  .option('--new <n>', 'greedy tokens per prompt', (v) => parseInt(v, 10), 48)
  .option('--json <file>', 'write the per-prompt results')
  .parse()
  .opts();

// Prompts: the opening words of each story (3 to 20 words), and a few unusual strings.
const stories = fs.readFileSync(opts.data, 'utf8').split(/\n\s*\n/).map((s) => s.trim()).filter(Boolean);
const prompts = [];
for (let i = 0; prompts.length < opts.prompts - 6 && i < stories.length; i++) {
  const words = stories[i].split(/\s+/);
  prompts.push(words.slice(0, 3 + (i * 7) % 18).join(' '));
}
prompts.push('The number 42 is', 'Café, naïve — “quoted”', '  two leading spaces', 'Tabs\tand\nnewlines', 'ALL CAPS STORY', '日本語のテキスト');

const { getLlama } = await import(pathToFileURL(path.join(opts.llamaCpp, 'node_modules', 'node-llama-cpp', 'dist', 'index.js')).href);
const llama = await getLlama({ gpu: false, build: 'never' });
const refModel = await llama.loadModel({ modelPath: opts.model });
const refContext = await refModel.createContext({ contextSize: 512, threads: 1 });
const ours = await chai.loadModel(opts.model, { device: 'cpu' });

const results = [];
for (const prompt of prompts) {
  const refTokens = refModel.tokenize(prompt);
  const promptTokens = [...(refModel.tokens.bos != null ? [refModel.tokens.bos] : []), ...refTokens];
  const ourPrompt = ours.tokenizer.encode(prompt);
  const sequence = refContext.getSequence();
  const refGreedy = [];
  let refEndedWithEos = false;
  for await (const token of sequence.evaluate(promptTokens, {})) {
    if (token === refModel.tokens.eos) refEndedWithEos = true;
    if (refGreedy.length >= opts.new || refEndedWithEos) break;
    refGreedy.push(token);
  }
  sequence.dispose();
  // Teacher-force llama.cpp's tokens through our engine; note the first step where we differ.
  const session = ours.createSession({ maxTokens: 512 });
  let logits = await session.evaluate(promptTokens);
  let divergence = null;
  // After the last token, llama.cpp's choice is known only when it was EOS.
  const steps = refEndedWithEos ? refGreedy.length + 1 : refGreedy.length;
  for (let k = 0; k < steps; k++) {
    const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]);
    const expected = k < refGreedy.length ? refGreedy[k] : refModel.tokens.eos;
    if (order[0] !== expected && divergence === null) {
      divergence = { step: k, ours: order[0], llamaCpp: expected, gap: logits[order[0]] - logits[expected], top2Gap: logits[order[0]] - logits[order[1]] };
    }
    if (k + 1 >= steps || k >= refGreedy.length) break;
    logits = await session.evaluate([refGreedy[k]]);
  }
  await session.dispose();
  results.push({ prompt, tokenizerMatch: JSON.stringify(ourPrompt) === JSON.stringify(promptTokens), promptTokens, refGreedy, divergence });
}

const exact = results.filter((r) => r.divergence === null).length;
const nearTies = results.filter((r) => r.divergence && r.divergence.gap < 0.02).length;
const tokenizer = results.filter((r) => r.tokenizerMatch).length;
console.log(`model ${path.basename(opts.model)}: ${results.length} prompts`);
console.log(`tokenizer ids equal: ${tokenizer}/${results.length}`);
console.log(`greedy equal token for token: ${exact}/${results.length} (${((100 * exact) / results.length).toFixed(1)}%)`);
console.log(`divergences at near-ties (gap < 0.02): ${nearTies}/${results.length - exact}`);
for (const r of results) {
  if (!r.tokenizerMatch) console.log(`  tokenizer differs: ${JSON.stringify(r.prompt)}`);
  if (r.divergence) console.log(`  diverges at step ${r.divergence.step} (gap ${r.divergence.gap.toFixed(4)}): ${JSON.stringify(r.prompt)}`);
}
if (opts.json) fs.writeFileSync(opts.json, JSON.stringify({ model: opts.model, results }, null, 1));
ours.dispose();
await refContext.dispose();
await refModel.dispose();
