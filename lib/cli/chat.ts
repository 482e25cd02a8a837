import readline from 'node:readline';
import { Command, Option } from 'commander';
import { ChatSession } from '../chat/chat-session';
import { DeviceRequest } from '../device';
import { loadModel } from '../model';
import { interrupted, number, readText, withFlags } from './format';
import { GENERATE_FLAGS } from './generate';
import { CALIBRATION_DATA_HELP, PLAN_FLAG_HELP, planFromFlag } from './plan-flag';


interface ChatFlags {
  model: string;
  system?: string;
  template?: string;
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed?: number;
  device: DeviceRequest;
  context?: number;
  plan: string;
  calibrationData?: string;
  kvCache: 'f32' | 'f16';
}

/** One user turn per line of stdin (a terminal or a pipe); replies stream to stdout. */
async function chat(flags: ChatFlags): Promise<void> {
  const model = await loadModel(flags.model, { device: flags.device, kvCacheType: flags.kvCache });
  let conversation: ChatSession;
  try {
    conversation = new ChatSession(model, {
      systemPrompt: flags.system,
      template: flags.template === undefined ? undefined : readText(flags.template),
      maxTokens: flags.context,
      chai: await planFromFlag(model, flags.plan, flags.calibrationData, false),
    });
  } catch (error) {
    model.dispose();
    throw error;
  }
  const interactive = Boolean(process.stdin.isTTY);
  const lines = readline.createInterface({ input: process.stdin, terminal: interactive });
  try {
    if (interactive) process.stdout.write('> ');
    for await (const line of lines) {
      if (line.trim() === '') {
        if (interactive) process.stdout.write('> ');
        continue;
      }
      const stream = conversation.send(line, {
        maxNewTokens: flags.maxTokens,
        temperature: flags.temperature,
        topK: flags.topK,
        topP: flags.topP,
        seed: flags.seed,
        signal: interrupted.signal,
      });
      let shown = 0;
      for (;;) {
        const step = await stream.next();
        if (step.done) {
          process.stdout.write(step.value.text.slice(shown)); // bytes of a character the stream held back
          break;
        }
        process.stdout.write(step.value.text);
        shown += step.value.text.length;
      }
      process.stdout.write(interactive ? '\n> ' : '\n');
    }
  } finally {
    lines.close();
    await conversation.dispose();
    model.dispose();
  }
}

export function registerChatCommand(program: Command): void {
  program
    .command('chat')
    .description("chat with an instruction-tuned model through its chat template (one user turn per line of stdin)")
    .requiredOption('--model <file>', 'a .gguf model file')
    .option('--system <text>', 'system prompt')
    .option('--template <file>', "a Jinja chat template instead of the model's own")
    .option('--max-tokens <n>', 'most new tokens per reply', number('int'), 512)
    .option('--temperature <t>', '0 = greedy', number('float'), 0.8)
    .option('--top-k <k>', 'keep the k most likely tokens (0 = all)', number('int'), 40)
    .option('--top-p <p>', 'nucleus sampling threshold', number('float'), 0.95)
    .option('--seed <s>', 'sampler seed (default: random)', number('int'))
    .option('--context <n>', 'conversation size in tokens (default: min(model context, 4096))', number('int'))
    .addOption(new Option('--device <device>', "'auto', 'cpu' or 'cuda:N'").default('auto'))
    .option('--plan <file|auto|off>', PLAN_FLAG_HELP, 'off')
    .option('--calibration-data <file>', CALIBRATION_DATA_HELP)
    .addOption(new Option('--kv-cache <type>', 'KV cache element type').choices(['f32', 'f16']).default('f32'))
    .action((opts: ChatFlags) => withFlags(GENERATE_FLAGS, () => chat(opts)));
}
