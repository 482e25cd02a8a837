#!/usr/bin/env node
import { Command, InvalidArgumentError, Option } from 'commander';
import { ChaiError } from './errors';
import { buildInfo, devices, DeviceRequest } from './device';
import { loadModel, Model } from './model';
import { GenerationResult } from './session';

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
}

async function generate(flags: GenerateFlags): Promise<void> {
  const model = await loadModel(flags.model, { device: flags.device });
  const session = model.createSession(flags.context ? { maxTokens: flags.context } : {});
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
    .option('--json', 'print one JSON object with token ids, text, speed and cache stats')
    .action((opts: GenerateFlags) => generate(opts));
  await program.parseAsync(argv);
}

main(process.argv).catch((error: unknown) => {
  const e = error as Error;
  process.stderr.write(`chai-attn: ${e instanceof ChaiError ? `${e.code}: ` : ''}${e.message}\n`);
  process.exitCode = 1;
});
