import { Command } from 'commander';
import { loadModel } from '../model';
import { GenerationResult } from '../session';
import { note, withFlags, MODEL_HELP } from './format';
import { addGenerationFlags, GENERATION_FLAG_NAMES, GenerationFlags, generationOptions } from './generation-flags';
import { planFromFlag } from './plan-flag';

interface GenerateFlags extends GenerationFlags {
  prompt: string;
  json?: boolean;
}

async function generate(flags: GenerateFlags): Promise<void> {
  const model = await loadModel(flags.model, { device: flags.device, kvCacheType: flags.kvCache, threads: flags.threads });
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
    const stream = session.generate(flags.prompt, generationOptions(flags));
    let result: GenerationResult | undefined;
    let shown = 0;
    const show = (text: string): void => {
      if (flags.json || !text) return;
      process.stdout.write(text);
      shown += text.length;
      lineOpen = !text.endsWith('\n');
    };
    for (;;) {
      const step = await stream.next();
      if (step.done) {
        result = step.value;
        show(result.text.slice(shown)); // text the stream held back (an incomplete character, the start of a --stop)
        break;
      }
      show(step.value.text);
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
  const command = program
    .command('generate')
    .description('stream a continuation of a prompt')
    .requiredOption('--model <model>', MODEL_HELP)
    .requiredOption('--prompt <text>', 'the text to continue');
  addGenerationFlags(command, {
    maxTokens: 128,
    maxTokensHelp: 'most new tokens',
    contextHelp: 'session size in tokens (default: min(model context, 4096))',
  })
    .option('--json', 'print one JSON object with token ids, text, speed and cache stats')
    .action((opts: GenerateFlags) => withFlags(GENERATION_FLAG_NAMES, () => generate(opts)));
}
