import readline from 'node:readline';
import { Command } from 'commander';
import { ChatSession } from '../chat/chat-session';
import { loadModel } from '../model';
import { GenerateOptions } from '../session';
import { interrupted, readText, withFlags, MODEL_HELP } from './format';
import { addGenerationFlags, GENERATION_FLAG_NAMES, GenerationFlags, generationOptions } from './generation-flags';
import { planFromFlag } from './plan-flag';

const CHAT_FLAG_NAMES = { ...GENERATION_FLAG_NAMES, template: '--template', systemPrompt: '--system' };

interface ChatFlags extends GenerationFlags {
  system?: string;
  template?: string;
}

/** One user turn per line of stdin (a terminal or a pipe); replies stream to stdout. */
async function chat(flags: ChatFlags): Promise<void> {
  const model = await loadModel(flags.model, { device: flags.device, kvCacheType: flags.kvCache, threads: flags.threads });
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
  // On a terminal readline echoes what is typed (it needs the output for that) and reads Ctrl-C
  // as a key: during a reply it stops the reply, at the prompt it ends the chat (status 130).
  // From a pipe, Ctrl-C is the process's SIGINT and stops the command as it stops the others.
  const lines = readline.createInterface({ input: process.stdin, output: interactive ? process.stdout : undefined, terminal: interactive, prompt: '> ' });
  let reply: AbortController | null = null;
  lines.on('SIGINT', () => {
    if (reply) return reply.abort();
    interrupted.abort();
    lines.close();
  });
  try {
    if (interactive) lines.prompt();
    for await (const line of lines) {
      if (line.trim() !== '') {
        reply = new AbortController();
        try {
          await streamReply(conversation, line, { ...generationOptions(flags), signal: AbortSignal.any([interrupted.signal, reply.signal]) });
        } catch (error) {
          if (!reply.signal.aborted) throw error;
        } finally {
          reply = null;
        }
        process.stdout.write('\n');
      }
      if (interactive) lines.prompt();
    }
  } finally {
    lines.close();
    await conversation.dispose();
    model.dispose();
  }
}

/** Streams one reply to stdout. */
async function streamReply(conversation: ChatSession, line: string, options: GenerateOptions): Promise<void> {
  const stream = conversation.send(line, options);
  let shown = 0;
  for (;;) {
    const step = await stream.next();
    if (step.done) {
      process.stdout.write(step.value.text.slice(shown)); // bytes of a character the stream held back
      return;
    }
    process.stdout.write(step.value.text);
    shown += step.value.text.length;
  }
}

export function registerChatCommand(program: Command): void {
  const command = program
    .command('chat')
    .description('chat with an instruction-tuned model through its chat template (one user turn per line of stdin)')
    .requiredOption('--model <model>', MODEL_HELP)
    .option('--system <text>', 'system prompt')
    .option('--template <file>', "a Jinja chat template instead of the model's own");
  addGenerationFlags(command, {
    maxTokens: 512,
    maxTokensHelp: 'most new tokens per reply',
    contextHelp: 'conversation size in tokens (default: min(model context, 4096))',
  }).action((opts: ChatFlags) => withFlags(CHAT_FLAG_NAMES, () => chat(opts)));
}
