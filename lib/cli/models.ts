// `list` and `rm`: the models `pull` downloaded into the models cache.
import { Command } from 'commander';
import { listPulledModels, modelsCacheDir, removePulledModel } from '../models/cache';
import { mib } from './format';

async function list(flags: { json?: boolean }): Promise<void> {
  const models = await listPulledModels();
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(models, null, 2)}\n`);
    return;
  }
  if (models.length === 0) {
    process.stdout.write(`no models in ${modelsCacheDir()}; download one with chai-attn pull NAME\n`);
    return;
  }
  for (const m of models) process.stdout.write(`${m.name}\n  ${mib(m.bytes)}, sha256 ${m.sha256}\n  ${m.path}\n`);
}

export function registerModelsCommands(program: Command): void {
  program
    .command('list')
    .description(`the models pulled into the models cache (${modelsCacheDir()}): name, size, sha256, path`)
    .option('--json', 'print a JSON array of { name, path, bytes, sha256 }')
    .action((opts: { json?: boolean }) => list(opts));
  program
    .command('rm')
    .description('delete a pulled model from the models cache (with its record and any unfinished download)')
    .argument('<name>', 'the name it was pulled as (as `chai-attn list` shows it)')
    .action(async (name: string) => {
      process.stdout.write(`removed ${await removePulledModel(name)}\n`);
    });
}
