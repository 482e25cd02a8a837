import { Command } from 'commander';
import { buildInfo, devices } from '../device';
import { loadModel } from '../model';
import { gib, kib, kvBytesPerToken, MODEL_HELP } from './format';

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
        `  architecture ${i.architecture}${i.name ? ` (${i.name})` : ''}, ${i.ggufVersion ? `GGUF v${i.ggufVersion}` : 'Hugging Face folder'}`,
        `  ${i.layers} layers, embedding ${i.embeddingLength}, ${i.heads} heads / ${i.kvHeads} KV heads of ${i.headDim}, feed-forward ${i.feedForwardLength}`,
        `  vocabulary ${i.vocabSize} (${model.tokenizer.kind} tokenizer), trained context ${i.contextLength}, rope ${i.ropeStyle} base ${i.ropeFreqBase}${i.slidingWindow ? `, sliding window ${i.slidingWindow}` : ''}, rms eps ${i.rmsEps}`,
        `  tensors: ${model.tensors.length} (${types})${i.tiedOutput ? ', output tied to the embedding' : ''}`,
        `  memory: weights ${kib(i.weightBytes)} (mapped), KV cache ${kib(kvBytesPerToken(model))} per token (f32, full attention)`,
      ].join('\n') + '\n',
    );
  } finally {
    model.dispose();
  }
}

export function registerInfoCommand(program: Command): void {
  program
    .command('info')
    .description('print devices and build, or with --model the architecture, tensor types and memory use of a model')
    .option('--model <model>', MODEL_HELP)
    .option('--json', 'print one JSON object')
    .action(async (opts: { model?: string; json?: boolean }) => {
      if (opts.model) await printModel(opts.model, Boolean(opts.json));
      else printDevices(Boolean(opts.json));
    });
}
