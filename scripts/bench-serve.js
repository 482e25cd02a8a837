#!/usr/bin/env node
// Load benchmark of `chai-attn serve` (not a test): for the test model (../shared) and a synthetic
// F16 model, starts the CLI server on a free loopback port, then
//   1. one client at a time: SEQUENTIAL streaming requests, back to back;
//   2. CLIENTS streaming clients at once (all admitted together: --max-concurrent CLIENTS).
// Every request asks for TOKENS greedy tokens. Prints aggregate generated tok/s of both (and their
// ratio, measured in this run), time to first token p50/p99 and inter-token p50/p99 as the
// clients see them, and the mean batch the server ran; checks every request completed; writes JSON
// to bench/results/. Usage: node scripts/bench-serve.js [--clients 64] [--tokens 128] [--sequential 8]
// [--threads N (the server's; default all)]
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const chai = require('../dist');

const root = path.join(__dirname, '..');
const cli = path.join(root, 'dist', 'cli', 'main.js');

function flag(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
}
const CLIENTS = flag('clients', 64);
const TOKENS = flag('tokens', 128);
const SEQUENTIAL = flag('sequential', 8);
const THREADS = flag('threads', 0); // the server's CPU threads; 0: its default (all)
const PROMPTS = ['Once upon a time', 'The little dog', 'Tom and Lily went to the park', 'One day, a big red ball', 'The sun was', 'A girl named Sue', 'In the garden', 'Max had a toy'];

function percentile(values, p) {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function startServer(model) {
  const child = spawn(process.execPath, [cli, 'serve', '--model', model, '--port', '0', '--max-concurrent', String(CLIENTS), '--max-queue', String(CLIENTS), '--kv-memory', '2', ...(THREADS > 0 ? ['--threads', String(THREADS)] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  const url = new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.on('exit', () => reject(new Error(`the server exited: ${stderr}`)));
  });
  return { child, url, exited, stderr: () => stderr };
}

/** One streaming completion read as server-sent events: when each text chunk came, and the usage. */
async function streamOne(url, modelId, prompt) {
  const start = performance.now();
  const response = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: modelId, prompt, max_tokens: TOKENS, temperature: 0, stream: true, stream_options: { include_usage: true } }),
  });
  if (response.status !== 200) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  const decoder = new TextDecoder();
  const arrivals = [];
  let buffer = '';
  let usage = null;
  let done = false;
  for await (const bytes of response.body) {
    buffer += decoder.decode(bytes, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (!event.startsWith('data: ')) continue;
      const data = event.slice(6);
      if (data === '[DONE]') {
        done = true;
        continue;
      }
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      if (chunk.choices?.[0]?.text) arrivals.push(performance.now());
    }
  }
  if (!done || !usage) throw new Error('the stream ended without its usage and [DONE]');
  const gaps = arrivals.slice(1).map((t, i) => (t - arrivals[i]) / 1000);
  return { start, end: performance.now(), ttft: (arrivals[0] - start) / 1000, gaps, tokens: usage.completion_tokens };
}

function summarise(results, seconds) {
  const tokens = results.reduce((n, r) => n + r.tokens, 0);
  return {
    requests: results.length,
    tokens,
    seconds,
    tokensPerSecond: tokens / seconds,
    ttftP50: percentile(results.map((r) => r.ttft), 50),
    ttftP99: percentile(results.map((r) => r.ttft), 99),
    interTokenP50: percentile(results.flatMap((r) => r.gaps), 50),
    interTokenP99: percentile(results.flatMap((r) => r.gaps), 99),
  };
}

async function meanBatch(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const read = (name) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { steps: read('chai_batch_sequences_count'), sequences: read('chai_batch_sequences_sum') };
}

async function benchModel(name, file) {
  const server = startServer(file);
  const url = await server.url;
  const modelId = path.basename(file).replace(/\.gguf$/i, '');
  try {
    await streamOne(url, modelId, PROMPTS[0]); // warm-up
    const sequential = [];
    const t0 = performance.now();
    for (let i = 0; i < SEQUENTIAL; i++) sequential.push(await streamOne(url, modelId, PROMPTS[i % PROMPTS.length]));
    const one = summarise(sequential, (performance.now() - t0) / 1000);

    const before = await meanBatch(url);
    const t1 = performance.now();
    const settled = await Promise.allSettled(Array.from({ length: CLIENTS }, (_, i) => streamOne(url, modelId, PROMPTS[i % PROMPTS.length])));
    const wall = (performance.now() - t1) / 1000;
    const after = await meanBatch(url);
    const failed = settled.filter((s) => s.status === 'rejected').map((s) => String(s.reason));
    const many = summarise(settled.filter((s) => s.status === 'fulfilled').map((s) => s.value), wall);
    const batch = (after.sequences - before.sequences) / (after.steps - before.steps);
    return { model: name, file: path.basename(file), oneAtATime: one, concurrent: { clients: CLIENTS, completed: many.requests, failed, ...many, meanBatch: batch }, speedup: many.tokensPerSecond / one.tokensPerSecond };
  } finally {
    server.child.kill('SIGTERM');
    const code = await server.exited;
    if (code !== 0) throw new Error(`the server exited with ${code} on SIGTERM: ${server.stderr()}`);
  }
}

async function main() {
  const shared = path.join(root, '..', 'shared', 'models', 'stories260K.gguf');
  if (!fs.existsSync(shared)) throw new Error(`the test model is missing: ${shared} (../shared must sit beside the checkout)`);
  const synthetic = path.join(os.tmpdir(), 'chai-bench-serve-synthetic-f16.gguf');
  const syntheticConfig = { layers: 8, embeddingLength: 512, heads: 8, kvHeads: 8, feedForwardLength: 1376, vocabSize: 4096, weights: 'F16', seed: 7 };
  chai.writeSyntheticLlama(synthetic, syntheticConfig);
  const rows = [];
  try {
    rows.push(await benchModel('stories260K (F32)', shared));
    rows.push(await benchModel('synthetic 8x512 (F16)', synthetic));
  } finally {
    fs.rmSync(synthetic, { force: true });
  }

  const ms = (s) => (s === null ? '-' : `${(s * 1000).toFixed(1)}`);
  console.log(`\nchai-attn serve, ${CLIENTS} streaming clients x ${TOKENS} greedy tokens (${os.cpus()[0].model.trim()}, ${os.cpus().length} cores, load average ${os.loadavg()[0].toFixed(1)}; server threads ${THREADS || 'all'}; clients on the same machine)`);
  console.log('model                    mode              done   tok/s  ratio  TTFT p50/p99 ms   inter-token p50/p99 ms  mean batch');
  for (const r of rows) {
    const line = (mode, s, done, ratio, batch) =>
      console.log(`${r.model.padEnd(25)}${mode.padEnd(17)}${done.padStart(6)}${s.tokensPerSecond.toFixed(0).padStart(8)}${ratio.padStart(7)}${`${ms(s.ttftP50)} / ${ms(s.ttftP99)}`.padStart(17)}${`${ms(s.interTokenP50)} / ${ms(s.interTokenP99)}`.padStart(24)}${batch.padStart(12)}`);
    line('one at a time', r.oneAtATime, `${r.oneAtATime.requests}`, '1.00x', '1');
    line(`${CLIENTS} at once`, r.concurrent, `${r.concurrent.completed}/${CLIENTS}`, `${r.speedup.toFixed(2)}x`, r.concurrent.meanBatch.toFixed(1));
    if (r.concurrent.failed.length > 0) console.log(`  failed: ${r.concurrent.failed.join('; ')}`);
  }
  const outDir = path.join(root, 'bench', 'results');
  fs.mkdirSync(outDir, { recursive: true });
  const out = path.join(outDir, `${new Date().toISOString().slice(0, 10)}-${os.hostname()}-serve.json`);
  fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), cpu: os.cpus()[0].model.trim(), cores: os.cpus().length, loadAverage: os.loadavg(), serverThreads: THREADS || 'all', clients: CLIENTS, tokens: TOKENS, sequential: SEQUENTIAL, syntheticConfig, rows }, null, 2));
  console.log(`wrote ${path.relative(root, out)}`);
  if (rows.some((r) => r.concurrent.completed !== CLIENTS)) process.exitCode = 1;
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
