import path from 'node:path';
import { Command, Option } from 'commander';
import { DeviceRequest } from '../device';
import { ChaiError } from '../errors';
import { GenerateOptions } from '../session';
import { ResponseFormat } from '../structured/schema';
import { interrupted, number, readText } from './format';
import { CALIBRATION_DATA_HELP, PLAN_FLAG_HELP } from './plan-flag';

/** API option → the flag that sets it in generate and chat, for error messages. */
export const GENERATION_FLAG_NAMES = {
  maxNewTokens: '--max-tokens',
  maxTokens: '--context',
  temperature: '--temperature',
  topK: '--top-k',
  topP: '--top-p',
  seed: '--seed',
  minP: '--min-p',
  frequencyPenalty: '--frequency-penalty',
  presencePenalty: '--presence-penalty',
  repeatPenalty: '--repeat-penalty',
  repeatLastN: '--repeat-last-n',
  stop: '--stop',
  threads: '--threads',
  kvCacheType: '--kv-cache',
  device: '--device',
  chai: '--plan',
  responseFormat: '--json-schema',
};

/** The flags generate and chat share: sampling, session size, device, CHAI plan and cache type. */
export interface GenerationFlags {
  model: string;
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed?: number;
  minP?: number;
  frequencyPenalty?: number;
  presencePenalty?: number;
  repeatPenalty?: number;
  repeatLastN?: number;
  stop: string[];
  threads?: number;
  device: DeviceRequest;
  context?: number;
  plan: string;
  calibrationData?: string;
  kvCache: 'f32' | 'f16';
  jsonSchema?: string;
  jsonObject?: boolean;
}

/** Adds the shared flags; `maxTokensHelp` and `contextHelp` say what one reply and one session are. */
export function addGenerationFlags(command: Command, defaults: { maxTokens: number; maxTokensHelp: string; contextHelp: string }): Command {
  return command
    .option('--max-tokens <n>', defaults.maxTokensHelp, number('int'), defaults.maxTokens)
    .option('--temperature <t>', '0 = greedy', number('float'), 0.8)
    .option('--top-k <k>', 'keep the k most likely tokens (0 = all)', number('int'), 40)
    .option('--top-p <p>', 'nucleus sampling threshold', number('float'), 0.95)
    .option('--seed <s>', 'sampler seed (default: random)', number('int'))
    .option('--min-p <p>', 'drop tokens less likely than p times the most likely one (0 = off)', number('float'))
    .option('--frequency-penalty <x>', "OpenAI's: lower a token's logit by x for each time this reply produced it (-2..2)", number('float'))
    .option('--presence-penalty <x>', "OpenAI's: lower a token's logit by x once this reply produced it (-2..2)", number('float'))
    .option('--repeat-penalty <x>', "llama.cpp's: divide (or multiply, when negative) the logits of the last --repeat-last-n tokens, prompt included, by x (1 = off)", number('float'))
    .option('--repeat-last-n <n>', 'tokens --repeat-penalty looks back over (-1 = all)', number('int'))
    .option('--stop <text>', 'end the reply before this text (repeat the flag for several)', (value: string, list: string[]) => [...list, value], [] as string[])
    .option('--threads <n>', 'CPU threads (default: all)', number('int'))
    .option('--context <n>', defaults.contextHelp, number('int'))
    .addOption(new Option('--device <device>', "'auto', 'cpu' or 'cuda:N'").default('auto'))
    .option('--plan <file|auto|off>', PLAN_FLAG_HELP, 'off')
    .option('--calibration-data <file>', CALIBRATION_DATA_HELP)
    .addOption(new Option('--kv-cache <type>', 'KV cache element type').choices(['f32', 'f16']).default('f32'))
    .option('--json-schema <file>', 'constrain the output to JSON that satisfies the JSON Schema in this file (see README: the supported subset)')
    .option('--json-object', 'constrain the output to a JSON object');
}

/** --json-schema FILE or --json-object as a response format (the file's schema is read and parsed here). */
function responseFormat(flags: GenerationFlags): ResponseFormat | undefined {
  if (flags.jsonSchema !== undefined && flags.jsonObject) {
    throw new ChaiError('E_INVALID_ARGUMENT', 'give --json-schema or --json-object, not both', { option: '--json-schema' });
  }
  if (flags.jsonObject) return { type: 'json_object' };
  if (flags.jsonSchema === undefined) return undefined;
  let schema: unknown;
  try {
    schema = JSON.parse(readText(flags.jsonSchema));
  } catch (error) {
    if (error instanceof ChaiError) throw new ChaiError(error.code, `--json-schema: ${error.message}`, { option: '--json-schema' });
    throw new ChaiError('E_INVALID_ARGUMENT', `--json-schema: '${flags.jsonSchema}' is not JSON: ${(error as Error).message}`, { option: '--json-schema' });
  }
  return { type: 'json_schema', json_schema: { name: path.basename(flags.jsonSchema, '.json'), schema: schema as Record<string, unknown> } };
}

/** The sampling options of one generation, stopped by Ctrl-C. */
export function generationOptions(flags: GenerationFlags): GenerateOptions {
  return {
    maxNewTokens: flags.maxTokens,
    temperature: flags.temperature,
    topK: flags.topK,
    topP: flags.topP,
    seed: flags.seed,
    minP: flags.minP,
    frequencyPenalty: flags.frequencyPenalty,
    presencePenalty: flags.presencePenalty,
    repeatPenalty: flags.repeatPenalty,
    repeatLastN: flags.repeatLastN,
    stop: flags.stop,
    responseFormat: responseFormat(flags),
    signal: interrupted.signal,
  };
}
