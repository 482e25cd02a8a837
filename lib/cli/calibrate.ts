import fs from 'node:fs';
import { Command, Option } from 'commander';
import { calibrate } from '../calibrate';
import { loadModel } from '../model';
import { note, number, readText, withFlags, withProgress } from './format';

const FLAGS = { t0: '--t0', windows: '--windows', keepFirstLayers: '--keep-first-layers', seed: '--seed' };

interface CalibrateFlags {
  model: string;
  data: string;
  out: string;
  plot?: string;
  t0: number;
  windows: number;
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
      calibrate(model, readText(flags.data), {
        t0: flags.t0,
        windows: flags.windows,
        keepFirstLayers: flags.keepFirstLayers,
        seed: flags.seed,
        method: flags.method,
        representative: flags.representative,
        onProgress: (p) => tick(p.window, p.windows),
      }),
    );
    const used = plan.toJSON().calibration!.windows;
    if (used < flags.windows) note(`--windows ${flags.windows}: the text has only ${used} sentences of --t0 ${flags.t0} tokens; calibrated on ${used}`);
    plan.save(flags.out);
    if (flags.plot) fs.writeFileSync(flags.plot, plan.elbowSvg());
    if (flags.json) process.stdout.write(`${JSON.stringify(plan.toJSON())}\n`);
    else {
      process.stdout.write(`clusters per layer: ${plan.clusters.join(' ')} (of ${model.info.heads} heads; ${plan.toJSON().calibration!.windows} windows)\n`);
      process.stdout.write(`wrote ${flags.out}${flags.plot ? ` and ${flags.plot}` : ''}\n`);
    }
  } finally {
    model.dispose();
  }
}

export function registerCalibrateCommand(program: Command): void {
  program
    .command('calibrate')
    .description('choose the number of head clusters per layer from calibration text (writes a cluster plan)')
    .requiredOption('--model <file>', 'a .gguf model file')
    .requiredOption('--data <file>', 'calibration text')
    .requiredOption('--out <file>', 'where to write the plan (JSON)')
    .option('--plot <file>', 'also write the elbow curves (SVG)')
    .option('--t0 <n>', 'tokens whose attention chooses the clusters', number('int'), 5)
    .option('--windows <n>', 'calibration windows', number('int'), 64)
    .option('--keep-first-layers <n>', 'leave the first N layers unclustered', number('int'), 0)
    .option('--seed <n>', 'K-Means seed', number('int'), 0)
    .addOption(new Option('--method <m>', 'online clustering written into the plan').choices(['kmeans', 'agglomerative']).default('kmeans'))
    .addOption(new Option('--representative <r>', 'representative rule written into the plan').choices(['medoid', 'first']).default('medoid'))
    .option('--json', 'print the plan as JSON')
    .action((opts: CalibrateFlags) => withFlags(FLAGS, () => calibrateCommand(opts)));
}
