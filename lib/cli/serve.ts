import os from 'node:os';
import { Command, Option } from 'commander';
import { chatTemplateSource } from '../chat/template';
import { DeviceRequest, devices, resolveDevice } from '../device';
import { ChaiError } from '../errors';
import { loadModel } from '../model';
import { serveModel } from '../server/server';
import { interrupted, mib, MODEL_HELP, note, number, withFlags } from './format';
import { CALIBRATION_DATA_HELP, PLAN_FLAG_HELP, planFromFlag } from './plan-flag';

/** API option → the flag of this command that sets it (for error messages). */
const FLAGS = {
  kvCacheType: '--kv-cache',
  kvCacheBytes: '--kv-memory',
  device: '--device',
  threads: '--threads',
  chai: '--plan',
  maxConcurrent: '--max-concurrent',
  maxQueue: '--max-queue',
  prefillTokensPerStep: '--prefill-tokens',
  contextTokens: '--context',
  port: '--port',
  host: '--host',
  corsOrigin: '--cors-origin',
  prefixCache: '--no-prefix-cache',
};

interface ServeFlags {
  model: string;
  plan: string;
  calibrationData?: string;
  host: string;
  port: number;
  apiKey?: string;
  corsOrigin?: string;
  modelName?: string;
  maxConcurrent: number;
  maxQueue: number;
  prefillTokens: number;
  context?: number;
  kvMemory?: number;
  kvCache: 'f32' | 'f16';
  device: DeviceRequest;
  threads?: number;
  shutdownGrace: number;
  prefixCache: boolean;
}

/** The default KV cache cap: half the free RAM for the CPU, half a GPU's memory for cuda:N. */
function defaultKvBytes(request: DeviceRequest): number {
  const { device } = request === 'auto' ? { device: 'cpu' } : resolveDevice(request);
  if (device === 'cpu') return Math.floor(os.freemem() / 2);
  const gpu = devices().cuda.devices.find((d) => `cuda:${d.index}` === device);
  if (!gpu) throw new ChaiError('E_DEVICE_UNAVAILABLE', `${device} is not available: run \`chai-attn info\``);
  return Math.floor(gpu.totalMemoryBytes / 2);
}

async function serve(flags: ServeFlags): Promise<void> {
  if (flags.kvMemory !== undefined && !(flags.kvMemory > 0)) throw new ChaiError('E_INVALID_ARGUMENT', `--kv-memory must be a positive number of GiB, got ${flags.kvMemory}`);
  const kvCacheBytes = flags.kvMemory !== undefined ? Math.floor(flags.kvMemory * 2 ** 30) : defaultKvBytes(flags.device);
  const model = await loadModel(flags.model, { device: flags.device, kvCacheType: flags.kvCache, threads: flags.threads, kvCacheBytes });
  try {
    const server = await serveModel(model, {
      host: flags.host,
      port: flags.port,
      apiKey: flags.apiKey ?? process.env.CHAI_API_KEY,
      corsOrigin: flags.corsOrigin,
      modelId: flags.modelName,
      maxConcurrent: flags.maxConcurrent,
      maxQueue: flags.maxQueue,
      prefillTokensPerStep: flags.prefillTokens,
      contextTokens: flags.context,
      chai: await planFromFlag(model, flags.plan, flags.calibrationData, false),
      prefixCache: flags.prefixCache,
    });
    const pool = model.kvPool.stats();
    const plan = server.scheduler.plan;
    note(
      `serving ${server.modelId} (${plan ? `CHAI, clusters ${plan.clusters.join(' ')}` : 'full attention'}), ` +
        `up to ${server.scheduler.maxConcurrent} sequences of ${server.scheduler.contextTokens} tokens, queue ${server.scheduler.maxQueue}, ` +
        `KV cache cap ${mib(kvCacheBytes)} (${pool.pagesTotal} pages of ${pool.pageBytes} bytes), prefix cache ${flags.prefixCache ? 'on' : 'off'}`,
    );
    if (chatTemplateSource(model) === null) note('the model has no chat template; /v1/chat/completions uses the plain "User: / Assistant:" format');
    process.stdout.write(`listening on ${server.url}\n`);

    // SIGTERM, or the first Ctrl-C (chai-attn then exits with 130; a second one exits at once).
    const signal = await new Promise<string>((resolve) => {
      process.once('SIGTERM', () => resolve('SIGTERM'));
      interrupted.signal.addEventListener('abort', () => resolve('Ctrl-C'), { once: true });
    });
    note(`${signal}: no new requests; the running ones may finish for ${flags.shutdownGrace} s`);
    await server.close(flags.shutdownGrace * 1000);
  } finally {
    model.dispose();
  }
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('serve a model over the OpenAI API (completions, chat, streaming) with continuous batching')
    .requiredOption('--model <model>', MODEL_HELP)
    .option('--plan <file|auto|off>', PLAN_FLAG_HELP, 'off')
    .option('--calibration-data <file>', CALIBRATION_DATA_HELP)
    .option('--host <address>', 'address to bind (loopback unless told otherwise)', '127.0.0.1')
    .option('--port <n>', 'port (0: any free port)', number('int'), 8080)
    .option('--api-key <key>', 'bearer token that /v1/* requests must carry (default: $CHAI_API_KEY, else none)')
    .option('--cors-origin <origin>', "let browser pages of this origin (http://host:port) or of any ('*') call the API; preflights need no key, requests do (default: off)")
    .option('--model-name <id>', "the model's id in the API (default: the file name without .gguf)")
    .option('--max-concurrent <n>', 'most sequences decoding together', number('int'), 16)
    .option('--max-queue <n>', 'most requests waiting for a place; more get 429', number('int'), 64)
    .option('--prefill-tokens <n>', 'prompt tokens per step over all sequences (long prompts are read in chunks between decode steps)', number('int'), 256)
    .option('--context <n>', 'most tokens per sequence, prompt included (default: min(model context, 4096))', number('int'))
    .option('--kv-memory <GiB>', 'KV cache cap in GiB (default: half the free RAM, or half the GPU memory)', number('float'))
    .addOption(new Option('--kv-cache <type>', 'KV cache element type').choices(['f32', 'f16']).default('f32'))
    .addOption(new Option('--device <device>', "'auto', 'cpu' or 'cuda:N'").default('auto'))
    .option('--threads <n>', 'CPU threads (default: all)', number('int'))
    .option('--no-prefix-cache', "compute every prompt in full: do not keep or reuse the KV pages of prompts' shared prefixes (a request can also opt out with cache_prompt: false)")
    .option('--shutdown-grace <seconds>', 'on SIGTERM/SIGINT, how long running requests may finish before they are cancelled', number('float'), 30)
    .action((opts: ServeFlags) => withFlags(FLAGS, () => serve(opts)));
}
