import { ChaiError, invalidOption, optionsArgument } from './errors';
import type { Model } from './model';
import type { SessionOptions } from './session';

export interface ThroughputOptions {
  /** Prompt tokens evaluated as one batch. Default 128. */
  prefillTokens?: number;
  /** Single-token steps after the prompt. Default 64. */
  decodeTokens?: number;
  /** Timed runs after one warm-up; the median is reported. Default 5. */
  repeats?: number;
  /** Sessions decoding at once (their steps are batched). Default 1. */
  sessions?: number;
  /** Full attention ('off', default) or a CHAI plan, as createSession takes it. */
  chai?: SessionOptions['chai'];
}

export interface Throughput {
  prefillTokensPerSecond: number;
  /** All sessions together. */
  decodeTokensPerSecond: number;
  sessions: number;
}

function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  return v[Math.floor(v.length / 2)];
}

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/**
 * Prefill and decode speed of `model` on `tokens` (cycled as needed): each run prefills the first
 * prefillTokens in every session, then every session decodes decodeTokens single tokens at once.
 */
export async function measureThroughput(model: Model, tokens: readonly number[], options: ThroughputOptions = {}): Promise<Throughput> {
  optionsArgument(options, 'measureThroughput');
  if (!Array.isArray(tokens)) throw new ChaiError('E_INVALID_ARGUMENT', 'measureThroughput needs an array of token ids');
  const prefill = options.prefillTokens ?? 128;
  const decode = options.decodeTokens ?? 64;
  const repeats = options.repeats ?? 5;
  const sessions = options.sessions ?? 1;
  for (const [name, v] of Object.entries({ prefillTokens: prefill, decodeTokens: decode, repeats, sessions })) {
    if (!Number.isInteger(v) || v < 1) throw invalidOption(name, `must be a positive integer, got ${String(v)}`);
  }
  if (tokens.length === 0) throw new ChaiError('E_INVALID_ARGUMENT', 'measureThroughput needs some tokens');
  const at = (i: number): number => tokens[i % tokens.length];
  const prompt = Array.from({ length: prefill }, (_, i) => at(i));
  const prefillRates: number[] = [];
  const decodeRates: number[] = [];
  for (let r = 0; r <= repeats; r++) {
    const all = Array.from({ length: sessions }, () => model.createSession({ maxTokens: prefill + decode, chai: options.chai }));
    try {
      let start = process.hrtime.bigint();
      await Promise.all(all.map((s) => s.evaluate(prompt)));
      const prefillSeconds = seconds(start);
      start = process.hrtime.bigint();
      await Promise.all(
        all.map(async (s) => {
          for (let i = 0; i < decode; i++) await s.evaluate([at(prefill + i)]);
        }),
      );
      const decodeSeconds = seconds(start);
      if (r === 0) continue; // warm-up
      prefillRates.push((sessions * prefill) / prefillSeconds);
      decodeRates.push((sessions * decode) / decodeSeconds);
    } finally {
      await Promise.all(all.map((s) => s.dispose()));
    }
  }
  return { prefillTokensPerSecond: median(prefillRates), decodeTokensPerSecond: median(decodeRates), sessions };
}
