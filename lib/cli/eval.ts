import { Command } from 'commander';
import { evaluateChai } from '../evaluate';
import { loadModel } from '../model';
import { ClusterPlan } from '../plan';
import { paragraphWindows } from '../quality';
import { kib, note, number, planLine, qualityLines, readText, withFlags, withProgress, MODEL_HELP } from './format';
import { CALIBRATION_DATA_HELP, PLAN_FLAG_HELP, planFromFlag } from './plan-flag';

const FLAGS = { windows: '--windows', windowTokens: '--window-tokens', maxTokens: '--window-tokens', chai: '--plan', plan: '--plan' };

interface EvalFlags {
  model: string;
  data: string;
  plan: string;
  calibrationData?: string;
  windows: number;
  windowTokens: number;
  json?: boolean;
}

async function evalCommand(flags: EvalFlags): Promise<void> {
  const model = await loadModel(flags.model, { device: 'cpu' });
  try {
    const text = readText(flags.data);
    // Bad --windows / --window-tokens fail now, not after a calibration that --plan auto may run.
    paragraphWindows(model, text, flags.windowTokens, flags.windows);
    const chosen = await planFromFlag(model, flags.plan, flags.calibrationData, Boolean(flags.json));
    const plan = chosen === 'off' ? ClusterPlan.create(model.info, new Array<number>(model.info.layers).fill(model.info.heads)) : chosen;
    const report = await withProgress('evaluating', Boolean(flags.json), (tick) =>
      evaluateChai(model, text, { plan, windows: flags.windows, windowTokens: flags.windowTokens, onProgress: (p) => tick(p.window, p.windows) }),
    );
    if (report.windows < flags.windows) {
      note(`--windows ${flags.windows}: the text has only ${report.windows} paragraphs of --window-tokens ${flags.windowTokens} tokens; scored ${report.windows}`);
    }
    if (flags.json) {
      process.stdout.write(`${JSON.stringify(report)}\n`);
      return;
    }
    const lines = [planLine(plan)];
    if (plan.calibration) lines.push(`  measured at calibration: ${qualityLines(plan.calibration.measured).join('; ')}`);
    lines.push(
      `on ${flags.data}: ${report.windows} windows, ${report.tokens} scored tokens`,
      ...qualityLines(report),
      `cache per window: K ${kib(report.kBytesFull)} -> ${kib(report.kBytesChai)}, V ${kib(report.vBytesFull)} -> ${kib(report.vBytesChai)}`,
      `decode: full ${report.decodeTokensPerSecondFull!.toFixed(0)} tok/s, CHAI ${report.decodeTokensPerSecondChai!.toFixed(0)} tok/s`,
    );
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    model.dispose();
  }
}

export function registerEvalCommand(program: Command): void {
  program
    .command('eval')
    .description('compare CHAI with full attention on text: perplexity, KL, top-1 agreement, cache bytes, decode speed')
    .requiredOption('--model <model>', MODEL_HELP)
    .requiredOption('--data <file>', 'evaluation text (paragraphs separated by blank lines)')
    .option('--plan <file|auto|off>', PLAN_FLAG_HELP, 'auto')
    .option('--calibration-data <file>', CALIBRATION_DATA_HELP)
    .option('--windows <n>', 'paragraphs to score', number('int'), 32)
    .option('--window-tokens <n>', 'tokens per paragraph window', number('int'), 128)
    .option('--json', 'print one JSON object')
    .action((opts: EvalFlags) => withFlags(FLAGS, () => evalCommand(opts)));
}
