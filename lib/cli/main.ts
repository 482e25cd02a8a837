#!/usr/bin/env node
// chai-attn: one file per command in this folder; this file only wires them together.
import { Command } from 'commander';
import { ChaiError } from '../errors';
import { registerBenchCommand } from './bench';
import { registerCalibrateCommand } from './calibrate';
import { registerChatCommand } from './chat';
import { registerEvalCommand } from './eval';
import { registerGenerateCommand } from './generate';
import { registerInfoCommand } from './info';

async function main(argv: string[]): Promise<void> {
  const program = new Command();
  program.name('chai-attn').description('LLaMA-family inference with CHAI (Clustered Head Attention)');
  registerInfoCommand(program);
  registerGenerateCommand(program);
  registerChatCommand(program);
  registerBenchCommand(program);
  registerCalibrateCommand(program);
  registerEvalCommand(program);
  await program.parseAsync(argv);
}

main(process.argv).catch((error: unknown) => {
  const e = error as Error;
  process.stderr.write(`chai-attn: ${e instanceof ChaiError ? `${e.code}: ` : ''}${e.message}\n`);
  process.exitCode = 1;
});
