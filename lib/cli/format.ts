import fs from 'node:fs';
import { SingleBar } from 'cli-progress';
import { InvalidArgumentError } from 'commander';
import { ChaiError } from '../errors';
import { Model } from '../model';
import { ClusterPlan } from '../plan';
import { planPathFor } from '../session';

/** Aborted by the first Ctrl-C: commands stop at their next step and chai-attn exits with 130. */
export const interrupted = new AbortController();

export function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

export function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

export function pct(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

/** A commander parser for numeric flags. */
export function number(kind: 'int' | 'float') {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || (kind === 'int' && !Number.isInteger(n))) {
      throw new InvalidArgumentError(`expected ${kind === 'int' ? 'an integer' : 'a number'}, got '${value}'`);
    }
    return n;
  };
}

/** KV cache bytes per token of full attention with an f32 cache. */
export function kvBytesPerToken(model: Model): number {
  const i = model.info;
  return i.layers * i.kvHeads * i.headDim * 2 * 4; // K and V, f32
}

/** A progress bar on stderr while `work` runs (none when stderr is not a terminal or with --json). */
export async function withProgress<T>(label: string, quiet: boolean, work: (tick: (done: number, total: number) => void) => Promise<T>): Promise<T> {
  const bar = quiet || !process.stderr.isTTY ? null : new SingleBar({ format: `${label} [{bar}] {value}/{total}`, stream: process.stderr, hideCursor: true });
  let started = false;
  try {
    return await work((done, total) => {
      interrupted.signal.throwIfAborted();
      if (!bar) return;
      if (!started) bar.start(total, 0);
      started = true;
      bar.update(done);
    });
  } finally {
    if (started) bar?.stop();
  }
}

export function readText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ChaiError('E_INVALID_ARGUMENT', `cannot read '${file}': ${(e as Error).message}`);
  }
}

/** A note on stderr, e.g. that a value was lowered. */
export function note(message: string): void {
  process.stderr.write(`chai-attn: ${message}\n`);
}

/**
 * Runs a command whose API errors about an option (ChaiError.option) are rewritten to name the
 * command-line flag the user typed instead: `flags` maps API option names to flags.
 */
export async function withFlags(flags: Record<string, string>, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (error) {
    const flag = error instanceof ChaiError && error.option !== undefined ? flags[error.option] : undefined;
    if (flag === undefined) throw error;
    const e = error as ChaiError;
    throw new ChaiError(e.code, e.message.replace(e.option!, flag), { cause: e, option: flag });
  }
}

/** A --plan value: 'auto' (never read as a file name: the plan as chai: 'auto' finds it) or a plan file. */
export function planFlag(value: string, model: Model): ClusterPlan | 'auto' {
  if (value !== 'auto') return ClusterPlan.load(value);
  const beside = planPathFor(model.path);
  if (!fs.existsSync(beside)) note(`no cluster plan at ${beside}: --plan auto uses the default plan (make one with 'chai-attn calibrate')`);
  return 'auto';
}
