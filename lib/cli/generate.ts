import { Command, Option } from 'commander';
import { DeviceRequest } from '../device';
import { loadModel } from '../model';
import { GenerationResult } from '../session';
import { interrupted, note, number, withFlags, MODEL_HELP } from './format';
import { CALIBRATION_DATA_HELP, PLAN_FLAG_HELP, planFromFlag } from './plan-flag';

/** API option → the flag of this command (and of chat, which takes the same) that sets it, for error messages. */
export const GENERATE_FLAGS = {
  maxNewTokens: '--max-tokens',
  maxTokens: '--context',
  temperature: '--temperature',
  topK: '--top-k',
  topP: '--top-p',
  seed: '--seed',
  kvCacheType: '--kv-cache',
  device: '--device',
  chai: '--plan',
};

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
  plan: string;
  calibrationData?: string;
  kvCache: 'f32' | 'f16';
}

async function generate(flags: GenerateFlags): Promise<void> {
  const model = await loadModel(flags.model, { device: flags.device, kvCacheType: flags.kvCache });
  let session;
  try {
    const chai = await planFromFlag(model, flags.plan, flags.calibrationData, Boolean(flags.json));
    session = model.createSession({ maxTokens: flags.context, chai });
  } catch (error) {
    model.dispose();
    throw error;
  }
  let lineOpen = false; // text written since the last newline
  try {
    const stream = session.generate(flags.prompt, {
      maxNewTokens: flags.maxTokens,
      temperature: flags.temperature,
      topK: flags.topK,
      topP: flags.topP,
      seed: flags.seed,
      signal: interrupted.signal,
    });
    let result: GenerationResult | undefined;
    for (;;) {
      const step = await stream.next();
      if (step.done) {
        result = step.value;
        break;
      }
      if (!flags.json && step.value.text) {
        process.stdout.write(step.value.text);
        lineOpen = !step.value.text.endsWith('\n');
      }
    }
    if (result.finishReason === 'contextFull') {
      note(`stopped after ${result.tokens.length} of --max-tokens ${flags.maxTokens} new tokens: the session is full at ${session.maxTokens} tokens (--context)`);
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
    lineOpen = false;
  } finally {
    if (lineOpen) process.stdout.write('\n'); // stopped mid-line (Ctrl-C or an error): finish it
    await session.dispose();
    model.dispose();
  }
}

export function registerGenerateCommand(program: Command): void {
  program
    .command('generate')
    .description('stream a continuation of a prompt')
    .requiredOption('--model <model>', MODEL_HELP)
    .requiredOption('--prompt <text>', 'the text to continue')
    .option('--max-tokens <n>', 'most new tokens', number('int'), 128)
    .option('--temperature <t>', '0 = greedy', number('float'), 0.8)
    .option('--top-k <k>', 'keep the k most likely tokens (0 = all)', number('int'), 40)
    .option('--top-p <p>', 'nucleus sampling threshold', number('float'), 0.95)
    .option('--seed <s>', 'sampler seed (default: random)', number('int'))
    .option('--context <n>', 'session size in tokens (default: min(model context, 4096))', number('int'))
    .addOption(new Option('--device <device>', "'auto', 'cpu' or 'cuda:N'").default('auto'))
    .option('--plan <file|auto|off>', PLAN_FLAG_HELP, 'off')
    .option('--calibration-data <file>', CALIBRATION_DATA_HELP)
    .addOption(new Option('--kv-cache <type>', 'KV cache element type').choices(['f32', 'f16']).default('f32'))
    .option('--json', 'print one JSON object with token ids, text, speed and cache stats')
    .action((opts: GenerateFlags) => withFlags(GENERATE_FLAGS, () => generate(opts)));
}
