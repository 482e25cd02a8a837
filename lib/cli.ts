#!/usr/bin/env node
import fs from 'node:fs';
import { SingleBar } from 'cli-progress';
import { Command, InvalidArgumentError, Option } from 'commander';
import { measureThroughput } from './bench';
import { calibrate } from './calibrate';
import { ChaiError } from './errors';
import { buildInfo, devices, DeviceRequest } from './device';
import { evaluateChai } from './evaluate';
import { loadModel, Model } from './model';
import { ClusterPlan } from './plan';
import { GenerationResult, planPathFor } from './session';

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

function number(kind: 'int' | 'float') {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || (kind === 'int' && !Number.isInteger(n))) {
      throw new InvalidArgumentError(`expected ${kind === 'int' ? 'an integer' : 'a number'}, got '${value}'`);
    }
    return n;
  };
}

function printDevices(json: boolean): void {
  const d = devices();
  const b = buildInfo();
  if (json) {
    process.stdout.write(`${JSON.stringify({ build: b, devices: d }, null, 2)}\n`);
    return;
  }
  const lines = [
    `chai-attention ${b.version} (N-API ${b.napiVersion}, ${b.compiler})`,
    `backends compiled: ${b.backends.join(', ')}` +
      (b.cudaArchitectures.length ? `; CUDA code for ${b.cudaArchitectures.map((a) => `sm_${a}`).join(', ')}` : ''),
    `cpu: ${d.cpu.threads} threads, kernels ${d.cpu.simdKernels} (cpu has: ${d.cpu.features.join(' ') || 'no extensions detected'})`,
  ];
  if (d.cuda.available) {
    lines.push(`cuda: driver ${d.cuda.driverVersion}, runtime ${d.cuda.runtimeVersion}`);
    for (const g of d.cuda.devices) {
      lines.push(`  cuda:${g.index} ${g.name}, compute ${g.computeCapability}, ${gib(g.totalMemoryBytes)}, ${g.multiprocessors} SMs`);
    }
  } else {
    lines.push(`cuda: unavailable, ${d.cuda.reason}`);
    lines.push(`  work runs on the CPU backend`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

function kvBytesPerToken(model: Model): number {
  const i = model.info;
  return i.layers * i.kvHeads * i.headDim * 2 * 4; // K and V, f32
}

async function printModel(file: string, json: boolean): Promise<void> {
  const model = await loadModel(file, { device: 'cpu' });
  try {
    const memory = { weightBytes: model.info.weightBytes, kvCacheBytesPerToken: kvBytesPerToken(model) };
    if (json) {
      process.stdout.write(`${JSON.stringify({ path: model.path, info: model.info, tokenizer: model.tokenizer.kind, memory, tensors: model.tensors }, null, 2)}\n`);
      return;
    }
    const i = model.info;
    const types = Object.entries(i.tensorTypes).map(([t, n]) => `${n} ${t}`).join(', ');
    process.stdout.write(
      [
        `${model.path}`,
        `  architecture ${i.architecture}${i.name ? ` (${i.name})` : ''}, GGUF v${i.ggufVersion}`,
        `  ${i.layers} layers, embedding ${i.embeddingLength}, ${i.heads} heads / ${i.kvHeads} KV heads of ${i.headDim}, feed-forward ${i.feedForwardLength}`,
        `  vocabulary ${i.vocabSize} (${model.tokenizer.kind} tokenizer), trained context ${i.contextLength}, rope base ${i.ropeFreqBase}, rms eps ${i.rmsEps}`,
        `  tensors: ${model.tensors.length} (${types})${i.tiedOutput ? ', output tied to the embedding' : ''}`,
        `  memory: weights ${kib(i.weightBytes)} (mapped), KV cache ${kib(kvBytesPerToken(model))} per token (f32, full attention)`,
      ].join('\n') + '\n',
    );
  } finally {
    model.dispose();
  }
}

/** A progress bar on stderr while `work` runs (none when stderr is not a terminal or with --json). */
async function withProgress<T>(label: string, quiet: boolean, work: (tick: (done: number, total: number) => void) => Promise<T>): Promise<T> {
  const bar = quiet || !process.stderr.isTTY ? null : new SingleBar({ format: `${label} [{bar}] {value}/{total}`, stream: process.stderr, hideCursor: true });
  let started = false;
  try {
    return await work((done, total) => {
      if (!bar) return;
      if (!started) bar.start(total, 0);
      started = true;
      bar.update(done);
    });
  } finally {
    if (started) bar?.stop();
  }
}

function readText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ChaiError('E_INVALID_ARGUMENT', `cannot read '${file}': ${(e as Error).message}`);
  }
}

interface CalibrateFlags {
  model: string;
  data: string;
  out: string;
  plot?: string;
  t0: number;
  windows: number;
  keepFirstLayers: number;
  seed: number;
  method: 'kmeans' | 'agglomerative';
  representative: 'medoid' | 'first';
  json?: boolean;
}

async function calibrateCommand(flags: CalibrateFlags): Promise<void> {
  const model = await loadModel(flags.model, { device: 'cpu' });
  try {
    const plan = await withProgress('calibrating', Boolean(flags.json), (tick) =>
      calibrate(model, readText(flags.data), {
        t0: flags.t0,
        windows: flags.windows,
        keepFirstLayers: flags.keepFirstLayers,
        seed: flags.seed,
        method: flags.method,
        representative: flags.representative,
        onProgress: (p) => tick(p.window, p.windows),
      }),
    );
    plan.save(flags.out);
    if (flags.plot) fs.writeFileSync(flags.plot, plan.elbowSvg());
    if (flags.json) process.stdout.write(`${JSON.stringify(plan.toJSON())}\n`);
    else {
      process.stdout.write(`clusters per layer: ${plan.clusters.join(' ')} (of ${model.info.heads} heads; ${plan.toJSON().calibration!.windows} windows)\n`);
      process.stdout.write(`wrote ${flags.out}${flags.plot ? ` and ${flags.plot}` : ''}\n`);
    }
  } finally {
    model.dispose();
  }
}

interface EvalFlags {
  model: string;
  data: string;
  plan?: string;
  windows: number;
  windowTokens: number;
  json?: boolean;
}

async function evalCommand(flags: EvalFlags): Promise<void> {
  const model = await loadModel(flags.model, { device: 'cpu' });
  try {
    const plan = flags.plan ? ClusterPlan.load(flags.plan) : 'auto';
    const report = await withProgress('evaluating', Boolean(flags.json), (tick) =>
      evaluateChai(model, readText(flags.data), { plan, windows: flags.windows, windowTokens: flags.windowTokens, onProgress: (p) => tick(p.window, p.windows) }),
    );
    if (flags.json) {
      process.stdout.write(`${JSON.stringify(report)}\n`);
      return;
    }
    const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
    process.stdout.write(
      [
        `plan: clusters ${report.plan.layers.map((l) => l.clusters).join(' ')} (${report.plan.method}, ${report.plan.representative}, t0 ${report.plan.t0})`,
        `${report.windows} windows, ${report.tokens} scored tokens`,
        `perplexity: full ${report.perplexityFull.toFixed(3)}, CHAI ${report.perplexityChai.toFixed(3)}`,
        `KL(full || CHAI): ${report.klMean.toFixed(5)} nats/token; top-1 agreement ${pct(report.top1Agreement)}`,
        `cache per window: K ${kib(report.kBytesFull)} -> ${kib(report.kBytesChai)}, V ${kib(report.vBytesFull)} -> ${kib(report.vBytesChai)} ` +
          `(K+V saved ${pct(1 - report.kvBytesChai / report.kvBytesFull)})`,
        `decode: full ${report.decodeTokensPerSecondFull.toFixed(0)} tok/s, CHAI ${report.decodeTokensPerSecondChai.toFixed(0)} tok/s`,
      ].join('\n') + '\n',
    );
  } finally {
    model.dispose();
  }
}

interface BenchFlags {
  model: string;
  data?: string;
  plan?: string;
  threads: number;
  sessions: string;
  kvCache: 'f32' | 'f16';
  json?: boolean;
}

async function benchCommand(flags: BenchFlags): Promise<void> {
  const model = await loadModel(flags.model, { device: 'cpu', threads: flags.threads, kvCacheType: flags.kvCache });
  try {
    const counts = flags.sessions.split(',').map((v) => number('int')(v.trim()));
    // Real text where given, else every token id in turn (speed does not depend on the text).
    const tokens = flags.data
      ? model.tokenizer.encode(readText(flags.data))
      : Array.from({ length: model.info.vocabSize }, (_, i) => i);
    const sides: [string, 'off' | ClusterPlan][] = [['full attention', 'off']];
    if (flags.plan) sides.push(['CHAI plan', flags.plan === 'auto' ? ClusterPlan.load(planPathFor(model.path)) : ClusterPlan.load(flags.plan)]);
    const rows = [];
    for (const [name, chai] of sides) {
      for (const sessions of counts) rows.push({ attention: name, ...(await measureThroughput(model, tokens, { sessions, chai })) });
    }
    if (flags.json) {
      process.stdout.write(`${JSON.stringify({ model: model.path, threads: flags.threads, kvCacheType: flags.kvCache, rows })}\n`);
      return;
    }
    process.stdout.write(`${model.path} (CPU, ${flags.threads || 'all'} threads, ${flags.kvCache} KV cache; prefill 128 tokens, decode 64 steps, median of 5)\n`);
    for (const r of rows) {
      process.stdout.write(
        `${r.attention.padEnd(15)} ${String(r.sessions).padStart(3)} session(s): prefill ${r.prefillTokensPerSecond.toFixed(0).padStart(7)} tok/s, ` +
          `decode ${r.decodeTokensPerSecond.toFixed(0).padStart(6)} tok/s\n`,
      );
    }
    process.stdout.write('The C++ microbenchmarks of every kernel (CPU and CUDA): npm run bench in a checkout.\n');
  } finally {
    model.dispose();
  }
}

interface GenerateFlags {
  model: string;
  prompt: string;
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed?: number;
  json?: boolean;
  device: DeviceRequest;
  context?: number;
  plan?: string;
  kvCache: 'f32' | 'f16';
}

async function generate(flags: GenerateFlags): Promise<void> {
  const model = await loadModel(flags.model, { device: flags.device, kvCacheType: flags.kvCache });
  const session = model.createSession({ maxTokens: flags.context, chai: flags.plan ? (flags.plan === 'auto' ? 'auto' : ClusterPlan.load(flags.plan)) : 'off' });
  const controller = new AbortController();
  const onSigint = (): void => controller.abort();
  process.once('SIGINT', onSigint);
  try {
    const stream = session.generate(flags.prompt, {
      maxNewTokens: flags.maxTokens,
      temperature: flags.temperature,
      topK: flags.topK,
      topP: flags.topP,
      seed: flags.seed,
      signal: controller.signal,
    });
    let result: GenerationResult | undefined;
    for (;;) {
      const step = await stream.next();
      if (step.done) {
        result = step.value;
        break;
      }
      if (!flags.json) process.stdout.write(step.value.text);
    }
    if (flags.json) {
      const out = {
        promptTokens: result.promptTokens,
        tokens: result.tokens,
        text: result.text,
        finishReason: result.finishReason,
        tokensPerSecond: {
          prefill: result.promptTokens.length / result.prefillSeconds,
          decode: result.decodeSteps > 0 ? result.decodeSteps / result.decodeSeconds : null,
        },
        cache: session.cache.stats(),
      };
      process.stdout.write(`${JSON.stringify(out)}\n`);
    } else {
      process.stdout.write('\n');
    }
  } finally {
    process.removeListener('SIGINT', onSigint);
    await session.dispose();
    model.dispose();
  }
}

async function main(argv: string[]): Promise<void> {
  const program = new Command();
  program.name('chai-attn').description('LLaMA-family inference with CHAI (Clustered Head Attention)');
  program
    .command('info')
    .description('print devices and build, or with --model the architecture, tensor types and memory use of a model')
    .option('--model <file>', 'a .gguf model file')
    .option('--json', 'print one JSON object')
    .action(async (opts: { model?: string; json?: boolean }) => {
      if (opts.model) await printModel(opts.model, Boolean(opts.json));
      else printDevices(Boolean(opts.json));
    });
  program
    .command('generate')
    .description('stream a continuation of a prompt')
    .requiredOption('--model <file>', 'a .gguf model file')
    .requiredOption('--prompt <text>', 'the text to continue')
    .option('--max-tokens <n>', 'most new tokens', number('int'), 128)
    .option('--temperature <t>', '0 = greedy', number('float'), 0.8)
    .option('--top-k <k>', 'keep the k most likely tokens (0 = all)', number('int'), 40)
    .option('--top-p <p>', 'nucleus sampling threshold', number('float'), 0.95)
    .option('--seed <s>', 'sampler seed (default: random)', number('int'))
    .option('--context <n>', 'session size in tokens (default: min(model context, 4096))', number('int'))
    .addOption(new Option('--device <device>', "'auto', 'cpu' or 'cuda:N'").default('auto'))
    .option('--plan <file>', "CHAI cluster plan (JSON), or 'auto' (the plan beside the model, else the default plan)")
    .addOption(new Option('--kv-cache <type>', 'KV cache element type').choices(['f32', 'f16']).default('f32'))
    .option('--json', 'print one JSON object with token ids, text, speed and cache stats')
    .action((opts: GenerateFlags) => generate(opts));
  program
    .command('bench')
    .description('prefill and decode tokens/s of a model on the CPU, full attention and a CHAI plan, 1 or more sessions at once')
    .requiredOption('--model <file>', 'a .gguf model file')
    .option('--data <file>', 'text to take the tokens from (default: token ids in turn)')
    .option('--plan <file>', "also measure this cluster plan (or 'auto': the plan beside the model)")
    .option('--threads <n>', 'CPU threads (0 = all)', number('int'), 0)
    .option('--sessions <list>', 'comma-separated session counts', '1,4')
    .addOption(new Option('--kv-cache <type>', 'KV cache element type').choices(['f32', 'f16']).default('f32'))
    .option('--json', 'print one JSON object')
    .action((opts: BenchFlags) => benchCommand(opts));
  program
    .command('calibrate')
    .description('choose the number of head clusters per layer from calibration text (writes a cluster plan)')
    .requiredOption('--model <file>', 'a .gguf model file')
    .requiredOption('--data <file>', 'calibration text')
    .requiredOption('--out <file>', 'where to write the plan (JSON)')
    .option('--plot <file>', 'also write the elbow curves (SVG)')
    .option('--t0 <n>', 'tokens whose attention chooses the clusters', number('int'), 5)
    .option('--windows <n>', 'calibration windows', number('int'), 64)
    .option('--keep-first-layers <n>', 'leave the first N layers unclustered', number('int'), 0)
    .option('--seed <n>', 'K-Means seed', number('int'), 0)
    .addOption(new Option('--method <m>', 'online clustering written into the plan').choices(['kmeans', 'agglomerative']).default('kmeans'))
    .addOption(new Option('--representative <r>', 'representative rule written into the plan').choices(['medoid', 'first']).default('medoid'))
    .option('--json', 'print the plan as JSON')
    .action((opts: CalibrateFlags) => calibrateCommand(opts));
  program
    .command('eval')
    .description('compare CHAI with full attention on text: perplexity, KL, top-1 agreement, cache bytes, decode speed')
    .requiredOption('--model <file>', 'a .gguf model file')
    .requiredOption('--data <file>', 'evaluation text (paragraphs separated by blank lines)')
    .option('--plan <file>', "cluster plan (default: 'auto', the plan beside the model or the default plan)")
    .option('--windows <n>', 'paragraphs to score', number('int'), 32)
    .option('--window-tokens <n>', 'tokens per paragraph window', number('int'), 128)
    .option('--json', 'print one JSON object')
    .action((opts: EvalFlags) => evalCommand(opts));
  await program.parseAsync(argv);
}

main(process.argv).catch((error: unknown) => {
  const e = error as Error;
  process.stderr.write(`chai-attn: ${e instanceof ChaiError ? `${e.code}: ` : ''}${e.message}\n`);
  process.exitCode = 1;
});
