import { Command, InvalidArgumentError, Option } from 'commander';
import { measureThroughput } from '../bench';
import { loadModel } from '../model';
import { ClusterPlan } from '../plan';
import { interrupted, number, readText, withFlags, MODEL_HELP } from './format';
import { CALIBRATION_DATA_HELP, PLAN_FLAG_HELP, planFromFlag } from './plan-flag';

const FLAGS = { threads: '--threads', kvCacheType: '--kv-cache', sessions: '--sessions', chai: '--plan' };

interface BenchFlags {
  model: string;
  data?: string;
  plan?: string;
  calibrationData?: string;
  threads: number;
  sessions: number[];
  kvCache: 'f32' | 'f16';
  json?: boolean;
}

/** --sessions: a comma-separated list of positive integers. */
function sessionCounts(value: string): number[] {
  return value.split(',').map((v) => {
    const n = number('int')(v.trim());
    if (n < 1) throw new InvalidArgumentError(`session counts must be >= 1, got ${n}`);
    return n;
  });
}

async function benchCommand(flags: BenchFlags): Promise<void> {
  const model = await loadModel(flags.model, { device: 'cpu', threads: flags.threads, kvCacheType: flags.kvCache });
  try {
    // Real text where given, else every token id in turn (speed does not depend on the text).
    const tokens = flags.data
      ? model.tokenizer.encode(readText(flags.data))
      : Array.from({ length: model.info.vocabSize }, (_, i) => i);
    const sides: [string, 'off' | ClusterPlan][] = [['full attention', 'off']];
    const plan = flags.plan ? await planFromFlag(model, flags.plan, flags.calibrationData, Boolean(flags.json)) : 'off';
    if (plan !== 'off') sides.push(['CHAI plan', plan]);
    const rows = [];
    for (const [name, chai] of sides) {
      for (const sessions of flags.sessions) {
        interrupted.signal.throwIfAborted();
        rows.push({ attention: name, ...(await measureThroughput(model, tokens, { sessions, chai })) });
      }
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

export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description('prefill and decode tokens/s of a model on the CPU, full attention and a CHAI plan, 1 or more sessions at once')
    .requiredOption('--model <model>', MODEL_HELP)
    .option('--data <file>', 'text to take the tokens from (default: token ids in turn)')
    .option('--plan <file|auto>', `also measure a CHAI plan (${PLAN_FLAG_HELP})`)
    .option('--calibration-data <file>', CALIBRATION_DATA_HELP)
    .option('--threads <n>', 'CPU threads (0 = all)', number('int'), 0)
    .option('--sessions <list>', 'comma-separated session counts', sessionCounts, [1, 4])
    .addOption(new Option('--kv-cache <type>', 'KV cache element type').choices(['f32', 'f16']).default('f32'))
    .option('--json', 'print one JSON object')
    .action((opts: BenchFlags) => withFlags(FLAGS, () => benchCommand(opts)));
}
