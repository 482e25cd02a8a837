#!/usr/bin/env node
// chai-attn: one file per command in this folder; this file only wires them together.
import fs from 'node:fs';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { ChaiError } from '../errors';
import { registerBenchCommand } from './bench';
import { registerCalibrateCommand } from './calibrate';
import { registerChatCommand } from './chat';
import { registerEvalCommand } from './eval';
import { interrupted } from './format';
import { registerGenerateCommand } from './generate';
import { registerInfoCommand } from './info';
import { registerModelsCommands } from './models';
import { registerPullCommand } from './pull';
import { registerServeCommand } from './serve';

async function main(argv: string[]): Promise<void> {
  const program = new Command();
  const { version } = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
  program.name('chai-attn').description('LLaMA-family inference with CHAI (Clustered Head Attention)').version(version);
  // Commander's own errors (unknown option, bad value) are thrown, not printed, so that they reach the
  // one error line below like every other failure. Set before the commands: they inherit it.
  program.exitOverride().configureOutput({ outputError: () => undefined });
  registerInfoCommand(program);
  registerGenerateCommand(program);
  registerChatCommand(program);
  registerBenchCommand(program);
  registerCalibrateCommand(program);
  registerEvalCommand(program);
  registerPullCommand(program);
  registerModelsCommands(program);
  registerServeCommand(program);
  await program.parseAsync(argv);
}

/** Every failure as a coded error: commander's are bad arguments; anything untyped is a bug. */
function asChaiError(error: unknown): ChaiError {
  if (error instanceof ChaiError) return error;
  if (error instanceof CommanderError) return new ChaiError('E_INVALID_ARGUMENT', error.message.replace(/^error: /, ''), { cause: error });
  return new ChaiError('E_INTERNAL', error instanceof Error ? error.message : String(error), { cause: error });
}

// Ctrl-C: the first stops the command at its next step (exit status 130, as a shell reports a
// SIGINT); a second one exits at once.
const EXIT_INTERRUPTED = 130;
process.on('SIGINT', () => {
  if (interrupted.signal.aborted) process.exit(EXIT_INTERRUPTED);
  interrupted.abort();
});

main(process.argv).then(
  () => {
    if (interrupted.signal.aborted) process.exitCode = EXIT_INTERRUPTED;
  },
  (error: unknown) => {
    if (interrupted.signal.aborted) {
      process.stderr.write('chai-attn: stopped (Ctrl-C)\n');
      process.exitCode = EXIT_INTERRUPTED;
      return;
    }
    if (error instanceof CommanderError && (error.exitCode === 0 || error.code === 'commander.help')) {
      process.exitCode = error.exitCode; // --help, --version, or the help shown for a missing command
      return;
    }
    const e = asChaiError(error);
    process.stderr.write(`chai-attn: ${e.code}: ${e.message.replace(/\s*\n\s*/g, ' ')}\n`);
    process.exitCode = 1;
  },
);
