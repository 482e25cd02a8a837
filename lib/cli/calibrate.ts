import fs from 'node:fs';
import { Command, Option } from 'commander';
import { calibrate, DEFAULT_MAX_KL } from '../calibrate';
import { BUILTIN_CALIBRATION_TEXT } from '../calibration-text';
import { loadModel } from '../model';
import { saveCachedPlan } from '../plan-cache';
import { calibrationChartSvg } from '../quality-chart';
import { note, number, planLine, qualityLines, readText, withFlags, withProgress, MODEL_HELP } from './format';

const FLAGS = {
  t0: '--t0',
  windows: '--windows',
  windowTokens: '--window-tokens',
  keepFirstLayers: '--keep-first-layers',
  seed: '--seed',
  rule: '--rule',
  maxKl: '--max-kl',
  minTop1: '--min-top1',
  targetSavings: '--target-savings',
};

interface CalibrateFlags {
  model: string;
  data?: string;
  out?: string;
  cache: boolean;
  plot?: string;
  rule: 'kl-budget' | 'elbow';
  maxKl?: number;
  minTop1?: number;
  targetSavings?: number;
  windows: number;
  windowTokens: number;
  t0: number;
  keepFirstLayers: number;
  seed: number;
  method: 'kmeans' | 'agglomerative';
  representative: 'medoid' | 'first';
  json?: boolean;
}

async function calibrateCommand(flags: CalibrateFlags): Promise<void> {
  const model = await loadModel(flags.model, { device: 'cpu' });
  try {
    const plan = await withProgress('calibrating', Boolean(flags.json), (tick) =>
      calibrate(model, flags.data ? readText(flags.data) : BUILTIN_CALIBRATION_TEXT, {
        rule: flags.rule,
        maxKl: flags.maxKl,
        minTop1: flags.minTop1,
        targetSavings: flags.targetSavings,
        windows: flags.windows,
        windowTokens: flags.windowTokens,
        t0: flags.t0,
        keepFirstLayers: flags.keepFirstLayers,
        seed: flags.seed,
        method: flags.method,
        representative: flags.representative,
        onProgress: (p) => tick(p.done, p.total),
      }),
    );
    const used = plan.calibration!.windows;
    if (flags.data && used < flags.windows) note(`--windows ${flags.windows}: the text has only ${used} paragraphs of --window-tokens ${flags.windowTokens} tokens; calibrated on ${used}`);
    const written: string[] = [];
    if (flags.out) {
      plan.save(flags.out);
      written.push(flags.out);
    }
    if (flags.cache) written.push(`${saveCachedPlan(model.path, plan)} (what --plan auto uses for this model file)`);
    if (flags.plot) {
      fs.writeFileSync(flags.plot, calibrationChartSvg(plan));
      written.push(flags.plot);
    }
    if (flags.json) {
      process.stdout.write(`${JSON.stringify(plan.toJSON())}\n`);
      return;
    }
    const c = plan.calibration!;
    const lines = [planLine(plan), `measured on the calibration text (${c.windows} windows of ${c.windowTokens} tokens, ${c.seconds.toFixed(1)} s):`, ...qualityLines(c.measured).map((l) => `  ${l}`)];
    lines.push(...written.map((w) => `wrote ${w}`));
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    model.dispose();
  }
}

export function registerCalibrateCommand(program: Command): void {
  program
    .command('calibrate')
    .description(`choose the number of head clusters per layer: the most K+V bytes saved while mean KL from full attention stays <= ${DEFAULT_MAX_KL} nats (or another budget)`)
    .requiredOption('--model <model>', MODEL_HELP)
    .option('--data <file>', "calibration text, paragraphs separated by blank lines (default: the package's built-in text)")
    .option('--out <file>', 'also write the plan (JSON) here')
    .option('--no-cache', "do not store the plan as this model file's cached plan (the one --plan auto uses)")
    .option('--plot <file>', 'write a chart (SVG): bytes saved against KL and top-1 for uniform and budgeted plans, the chosen one marked')
    .addOption(new Option('--rule <rule>', "'kl-budget' (measured quality) or 'elbow' (the paper's inertia knee)").choices(['kl-budget', 'elbow']).default('kl-budget'))
    .option('--max-kl <nats>', `budget: mean KL(full || CHAI) per token at most this (default ${DEFAULT_MAX_KL})`, number('float'))
    .option('--min-top1 <fraction>', 'budget: top-1 agreement with full attention at least this (0..1)', number('float'))
    .option('--target-savings <fraction>', 'instead: save at least this fraction of K+V bytes (0..1) with the least KL', number('float'))
    .option('--windows <n>', 'paragraph windows of the text to measure on', number('int'), 32)
    .option('--window-tokens <n>', 'tokens per window', number('int'), 128)
    .option('--t0 <n>', 'tokens whose attention chooses the clusters', number('int'), 5)
    .option('--keep-first-layers <n>', 'leave the first N layers unclustered', number('int'), 0)
    .option('--seed <n>', 'K-Means seed', number('int'), 0)
    .addOption(new Option('--method <m>', 'online clustering written into the plan').choices(['kmeans', 'agglomerative']).default('kmeans'))
    .addOption(new Option('--representative <r>', 'representative rule written into the plan').choices(['medoid', 'first']).default('medoid'))
    .option('--json', 'print the plan as JSON')
    .action((opts: CalibrateFlags) => withFlags(FLAGS, () => calibrateCommand(opts)));
}
