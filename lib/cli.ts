#!/usr/bin/env node
import { Command } from 'commander';
import { ChaiError } from './errors';
import { buildInfo, devices } from './device';

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

function printInfo(json: boolean): void {
  const d = devices();
  const b = buildInfo();
  if (json) {
    process.stdout.write(`${JSON.stringify({ build: b, devices: d }, null, 2)}\n`);
    return;
  }
  const lines = [
    `chai-attention ${b.version} (N-API ${b.napiVersion}, ${b.compiler})`,
    `backends compiled: ${b.backends.join(', ')}` +
      (b.cudaArchitectures.length ? `; CUDA code for ${b.cudaArchitectures.map((a) => `sm_${a}`).join(', ')}` : ''),
    `cpu: ${d.cpu.threads} threads, kernels ${d.cpu.simdKernels} (cpu has: ${d.cpu.features.join(' ') || 'no extensions detected'})`,
  ];
  if (d.cuda.available) {
    lines.push(`cuda: driver ${d.cuda.driverVersion}, runtime ${d.cuda.runtimeVersion}`);
    for (const g of d.cuda.devices) {
      lines.push(`  cuda:${g.index} ${g.name}, compute ${g.computeCapability}, ${gib(g.totalMemoryBytes)}, ${g.multiprocessors} SMs`);
    }
  } else {
    lines.push(`cuda: unavailable, ${d.cuda.reason}`);
    lines.push(`  work runs on the CPU backend`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

function main(argv: string[]): void {
  const program = new Command();
  program.name('chai-attn').description('LLaMA-family inference with CHAI (Clustered Head Attention)');
  program
    .command('info')
    .description('print devices (CPU, CUDA or why CUDA is unavailable) and what this build contains')
    .option('--json', 'print one JSON object')
    .action((opts: { json?: boolean }) => printInfo(Boolean(opts.json)));
  program.parse(argv);
}

try {
  main(process.argv);
} catch (error) {
  const e = error as Error;
  process.stderr.write(`chai-attn: ${e instanceof ChaiError ? `${e.code}: ` : ''}${e.message}\n`);
  process.exitCode = 1;
}
