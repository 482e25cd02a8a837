import fs from 'node:fs';
import { SingleBar } from 'cli-progress';
import { InvalidArgumentError } from 'commander';
import { ChaiError } from '../errors';
import { Model } from '../model';
import type { ClusterPlan, PlanQuality } from '../plan';

/** Aborted by the first Ctrl-C: commands stop at their next step and chai-attn exits with 130. */
export const interrupted = new AbortController();

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
      interrupted.signal.throwIfAborted();
      if (!bar) return;
      if (!started) bar.start(total, 0);
      else if (total !== bar.getTotal()) bar.setTotal(total);
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

/** The quality figures calibrate records and eval measures, in the same words for both. */
export function qualityLines(q: PlanQuality): string[] {
  const change = q.perplexityChai / q.perplexityFull - 1;
  return [
    `KL(full || CHAI): ${q.klMean.toFixed(5)} nats/token; top-1 agreement ${pct(q.top1Agreement)}`,
    `perplexity: full ${q.perplexityFull.toFixed(3)}, CHAI ${q.perplexityChai.toFixed(3)} (${change >= 0 ? '+' : ''}${pct(change)})`,
    `K+V cache bytes saved: ${pct(q.bytesSavedFraction)}`,
  ];
}

/** One line on how a plan was chosen: its clusters, and the rule, budget and text of its calibration. */
export function planLine(plan: ClusterPlan): string {
  const j = plan.toJSON();
  const c = plan.calibration;
  const budget = c ? Object.entries(c.budget).map(([k, v]) => `${k} ${v}`).join(', ') : '';
  const how = c ? `; calibrated by ${c.rule}${budget ? ` (${budget})` : ''} on text sha256 ${c.textSha256.slice(0, 12)}…, ${c.windows} windows` : '; not calibrated';
  return `plan: clusters ${plan.clusters.join(' ')} of ${j.model.heads} heads (${j.method}, ${j.representative}, t0 ${j.t0})${how}`;
}

/** A note on stderr, e.g. that a value was lowered. */
export function note(message: string): void {
  process.stderr.write(`chai-attn: ${message}\n`);
}

/**
 * Runs a command whose API errors about an option (ChaiError.option) are rewritten to name the
 * command-line flags the user typed instead: `flags` maps API option names to flags.
 */
export async function withFlags(flags: Record<string, string>, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (error) {
    const flag = error instanceof ChaiError && error.option !== undefined ? flags[error.option] : undefined;
    if (flag === undefined) throw error;
    const e = error as ChaiError;
    throw new ChaiError(e.code, inFlagWords(e.message, e.option!, flags), { cause: e, option: flag });
  }
}

/**
 * An API message in the command line's words. The option at fault becomes its flag where the
 * message names it as `the X option`, else at its start, else at its first mention; API
 * identifiers (maxTokens, minTop1: never plain words) become flags wherever they appear, so a
 * message naming several options names them all as flags.
 */
function inFlagWords(message: string, option: string, flags: Record<string, string>): string {
  const word = (name: string, global = '') => new RegExp(`(?<![\\w-])${name}\\b`, global); // not inside a flag already
  const own = [new RegExp(`the ${option} option`), new RegExp(`^${option}(?= )`), word(option)].find((pattern) => pattern.test(message));
  let out = own ? message.replace(own, flags[option]) : message;
  for (const name of Object.keys(flags)) if (/[A-Z0-9]/.test(name)) out = out.replace(word(name, 'g'), flags[name]);
  return out;
}

/** The help of every --model flag. */
export const MODEL_HELP = 'a .gguf file, a Hugging Face folder, or a name fetched by `chai-attn pull` (hf:owner/repo/file.gguf, URL)';
