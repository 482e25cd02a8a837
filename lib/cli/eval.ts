import { Command } from 'commander';
import { evaluateChai } from '../evaluate';
import { loadModel } from '../model';
import { kib, note, number, pct, planFlag, readText, withFlags, withProgress } from './format';

const FLAGS = { windows: '--windows', windowTokens: '--window-tokens', maxTokens: '--window-tokens', chai: '--plan' };

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
    const plan = planFlag(flags.plan ?? 'auto', model);
    const report = await withProgress('evaluating', Boolean(flags.json), (tick) =>
      evaluateChai(model, readText(flags.data), { plan, windows: flags.windows, windowTokens: flags.windowTokens, onProgress: (p) => tick(p.window, p.windows) }),
    );
    if (report.windows < flags.windows) {
      note(`--windows ${flags.windows}: the text has only ${report.windows} paragraphs of --window-tokens ${flags.windowTokens} tokens; scored ${report.windows}`);
    }
    if (flags.json) {
      process.stdout.write(`${JSON.stringify(report)}\n`);
      return;
    }
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

export function registerEvalCommand(program: Command): void {
  program
    .command('eval')
    .description('compare CHAI with full attention on text: perplexity, KL, top-1 agreement, cache bytes, decode speed')
    .requiredOption('--model <file>', 'a .gguf model file')
    .requiredOption('--data <file>', 'evaluation text (paragraphs separated by blank lines)')
    .option('--plan <file>', "cluster plan (default: 'auto', the plan beside the model or the default plan)")
    .option('--windows <n>', 'paragraphs to score', number('int'), 32)
    .option('--window-tokens <n>', 'tokens per paragraph window', number('int'), 128)
    .option('--json', 'print one JSON object')
    .action((opts: EvalFlags) => withFlags(FLAGS, () => evalCommand(opts)));
}
