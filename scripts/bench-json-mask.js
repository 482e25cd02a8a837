#!/usr/bin/env node
// Structured output: what masking costs per token on a model's whole vocabulary. For each model,
// the tokens of JSON texts (written by hand, and generated greedily under the schema) are replayed
// through a JsonConstraint; each step is timed from the mask's computation through setting the
// disallowed logits to -Infinity to accepting the token. The sampler's own per-token time on the
// same logits (no mask) is measured in the same run for scale. Prints a table, writes JSON to
// bench/results/. Run after `npm run build`: node scripts/bench-json-mask.js
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const chai = require('../dist');
const { JsonConstraint, Vocabulary } = require('../dist/structured/token-mask');
const { compileResponseFormat } = require('../dist/structured/schema');
const { TokenSampler } = require('../dist/sampling');

const root = path.join(__dirname, '..');
const models = path.join(root, '..', 'shared', 'models');
const REPEATS = 5;

const TEAM_SCHEMA = {
  type: 'object',
  properties: {
    team: { type: 'string' },
    size: { type: 'integer' },
    active: { type: 'boolean' },
    members: {
      type: 'array',
      items: {
        type: 'object',
        properties: { role: { enum: ['lead', 'dev', 'ops'] }, age: { type: 'integer' }, nickname: { type: ['string', 'null'] } },
        required: ['role', 'age', 'nickname'],
        additionalProperties: false,
      },
    },
    home: { type: 'object', properties: { lat: { type: 'number' }, ok: { const: true } }, required: ['lat', 'ok'] },
  },
  required: ['team', 'size', 'members', 'home'],
  additionalProperties: false,
};
const TEAM = { type: 'json_schema', json_schema: { name: 'team', schema: TEAM_SCHEMA } };
const TEAM_TEXTS = [
  { team: 'Core "platform" team — Zürich 日本', size: 12, active: true, members: [{ role: 'lead', age: 41, nickname: 'Al' }, { role: 'dev', age: 29, nickname: null }, { role: 'ops', age: 35, nickname: 'Ops\\Ninja\n' }], home: { lat: 47.3769, ok: true } },
  { team: 'x', size: -3, members: [], home: { lat: -1e-7, ok: true } },
];
const OBJECT_TEXTS = [{ title: 'A long title with some words in it, to be read as a string', tags: ['a', 'bb', 'ccc'], nested: { n: 1.5, ok: false, none: null, list: [1, 2, [3, { deep: 'yes' }]] } }];

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

/**
 * Times each step of replaying `tokens` under `format`: wall milliseconds per step, and the
 * process's CPU milliseconds over all of them (on a shared machine, wall time also counts the
 * time other processes held the core).
 */
function replay(vocabulary, format, tokens, logits) {
  const grammar = compileResponseFormat(format);
  const times = [];
  const cpu = process.cpuUsage();
  for (let r = 0; r < REPEATS; r++) {
    const constraint = new JsonConstraint(grammar, vocabulary);
    const work = new Float32Array(logits.length);
    for (const token of tokens) {
      work.set(logits);
      const start = process.hrtime.bigint();
      constraint.apply(work);
      constraint.accept(token);
      times.push(Number(process.hrtime.bigint() - start) / 1e6);
      if (work[token] === -Infinity) throw new Error(`token ${token} was masked`);
    }
  }
  const used = process.cpuUsage(cpu);
  return { times, cpuMs: (used.user + used.system) / 1000 };
}

async function greedy(model, format, maxNewTokens) {
  const session = model.createSession();
  const stream = session.generate('The team:', { responseFormat: format, temperature: 0, maxNewTokens });
  let step;
  while (!(step = await stream.next()).done);
  await session.dispose();
  return step.value;
}

async function benchModel(name, file) {
  const model = await chai.loadModel(file, { device: 'cpu', threads: 1 });
  try {
    const tokenizer = model.tokenizer;
    let start = performance.now();
    const vocabulary = Vocabulary.of(tokenizer);
    const prepareMs = performance.now() - start;
    start = performance.now();
    vocabulary.stringClass(0);
    const plainStringClassMs = performance.now() - start;

    const session = model.createSession();
    const logits = await session.evaluate(tokenizer.encode('The team:'));
    await session.dispose();
    const generated = await greedy(model, TEAM, 300);
    const cases = [
      ...[...TEAM_TEXTS.map((v, i) => ({ what: `team schema, text ${i + 1}`, format: TEAM, text: JSON.stringify(v, null, i === 0 ? 2 : undefined) })),
        ...OBJECT_TEXTS.map((v) => ({ what: 'json_object', format: { type: 'json_object' }, text: JSON.stringify(v) }))].map((c) => ({ ...c, tokens: tokenizer.encode(c.text, { addBos: false }) })),
      { what: `team schema, greedy generation (${generated.finishReason})`, format: TEAM, tokens: generated.tokens },
    ];
    // SentencePiece puts a space before a text it encodes, which no JSON text starts with: such
    // tokenizations are left out (the generated tokens are what the model writes).
    const writes = (c) => Buffer.concat(c.tokens.map((t) => Buffer.from(vocabulary.tokenBytes(t)))).toString() === c.text;
    const all = [];
    let cpuMs = 0;
    const rows = cases.filter((c) => c.text === undefined || writes(c)).map((c) => {
      const r = replay(vocabulary, c.format, c.tokens, logits);
      all.push(...r.times);
      cpuMs += r.cpuMs;
      const sorted = [...r.times].sort((a, b) => a - b);
      return { case: c.what, tokens: c.tokens.length, meanMs: r.times.reduce((s, t) => s + t, 0) / r.times.length, cpuMeanMs: r.cpuMs / r.times.length, medianMs: percentile(sorted, 0.5), p99Ms: percentile(sorted, 0.99), maxMs: sorted[sorted.length - 1] };
    });
    const sorted = [...all].sort((a, b) => a - b);

    // The sampler's own per-token work on the same logits (top-k 40, top-p 0.95, temperature 0.8), no mask.
    const sampler = new TokenSampler({ seed: 1 }, tokenizer.vocabSize, []);
    for (let i = 0; i < 20; i++) sampler.next(logits);
    start = performance.now();
    const samples = 200;
    for (let i = 0; i < samples; i++) sampler.next(logits);
    const samplerMs = (performance.now() - start) / samples;

    const meanMs = all.reduce((s, t) => s + t, 0) / all.length;
    return {
      model: name,
      vocabSize: tokenizer.vocabSize,
      trieNodes: vocabulary.trie.nodes,
      prepareMs,
      plainStringClassMs,
      steps: all.length,
      meanMs,
      cpuMeanMs: cpuMs / all.length,
      medianMs: percentile(sorted, 0.5),
      p99Ms: percentile(sorted, 0.99),
      maxMs: sorted[sorted.length - 1],
      samplerMs,
      maskOverSampler: meanMs / samplerMs,
      cases: rows,
    };
  } finally {
    model.dispose();
  }
}

async function main() {
  const results = [];
  for (const [name, file] of [['synth-llama3', 'synth-llama3.gguf'], ['stories260K', 'stories260K.gguf']]) {
    const p = path.join(models, file);
    if (!fs.existsSync(p)) throw new Error(`the test model is missing: ${p} (../shared must sit beside the checkout)`);
    results.push(await benchModel(name, p));
  }
  const cpu = os.cpus()[0].model.trim();
  console.log(`\nJSON masking per token (${cpu}, load average ${os.loadavg()[0].toFixed(1)}, ${REPEATS} replays of each text)`);
  console.log('model          vocab   mean ms  cpu ms/token  median ms  p99 ms   max ms  sampler ms  mask/sampler  prepare ms (once)');
  for (const r of results) {
    console.log(
      `${r.model.padEnd(13)}${String(r.vocabSize).padStart(7)}${r.meanMs.toFixed(3).padStart(10)}${r.cpuMeanMs.toFixed(3).padStart(14)}${r.medianMs.toFixed(3).padStart(11)}${r.p99Ms.toFixed(3).padStart(8)}${r.maxMs.toFixed(2).padStart(9)}${r.samplerMs.toFixed(3).padStart(12)}${r.maskOverSampler.toFixed(2).padStart(14)}${(r.prepareMs + r.plainStringClassMs).toFixed(0).padStart(19)}`,
    );
    for (const c of r.cases) console.log(`  ${c.case.padEnd(48)} ${String(c.tokens).padStart(4)} tokens  mean ${c.meanMs.toFixed(3)} ms (cpu ${c.cpuMeanMs.toFixed(3)}), median ${c.medianMs.toFixed(3)}, p99 ${c.p99Ms.toFixed(3)} ms`);
  }
  const date = new Date().toISOString().slice(0, 10);
  const out = path.join(root, 'bench', 'results', `${date}-json-mask.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify({ date, cpu, loadAverage: os.loadavg()[0], node: process.version, repeats: REPEATS, results }, null, 2) + '\n');
  console.log(`\nwrote ${path.relative(root, out)}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
