import fs from 'node:fs';
import { SingleBar } from 'cli-progress';
import { InvalidArgumentError } from 'commander';
import { ChaiError } from '../errors';
import { Model } from '../model';

export function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

export function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
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
