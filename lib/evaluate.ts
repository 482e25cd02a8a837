import { measureThroughput } from './bench';
import { ChaiError, invalidOption } from './errors';
import type { Model } from './model';
import { ClusterPlan, ClusterPlanJson } from './plan';
import type { CacheStats } from './session';

export interface EvaluateOptions {
  /** The CHAI side: a plan, or 'auto' (as createSession). */
  plan: ClusterPlan | 'auto';
  /** Tokens per window (each window is one request: BOS and the start of a paragraph). Default 128. */
  windowTokens?: number;
  /** How many windows (paragraphs) to score. Default 32. */
  windows?: number;
  /**
   * Decode speed: the first window's first half is prefilled and its second half decoded token by
   * token, this many times (the median counts), with full attention and with CHAI. Default 3.
   */
  decodeRepeats?: number;
  onProgress?: (progress: { window: number; windows: number }) => void;
}

/** Full attention against CHAI on the same windows (field names are the CLI's JSON). */
export interface EvaluationReport {
  windows: number;
  /** Next-token predictions scored (window length − 1 per window). */
  tokens: number;
  perplexityFull: number;
  perplexityChai: number;
  /** Mean over scored positions of KL(p_full ‖ p_chai), in nats. */
  klMean: number;
  /** Fraction of positions where both pick the same most likely token. */
  top1Agreement: number;
  /** Cache bytes per window (the mean over windows), full attention and CHAI. */
  kvBytesFull: number;
  kvBytesChai: number;
  kBytesFull: number;
  kBytesChai: number;
  vBytesFull: number;
  vBytesChai: number;
  decodeTokensPerSecondFull: number;
  decodeTokensPerSecondChai: number;
  plan: ClusterPlanJson;
}

// Indexed loops: iterators and Float64Array.from's callback cost 10x here on 150k-token vocabularies.
function logSoftmax(row: Float32Array): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i] > max) max = row[i];
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(row.length);
  for (let i = 0; i < row.length; i++) out[i] = row[i] - lse;
  return out;
}

function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** Paragraph openings of `windowTokens` tokens (BOS first when the model uses one). */
export function evaluationWindows(model: Model, text: string, windowTokens: number, count: number): number[][] {
  const paragraphs = text.split(/\n\s*\n/).map((p) => p.trim()).filter(Boolean);
  const candidates = paragraphs.map((p) => model.tokenizer.encode(p).slice(0, windowTokens)).filter((t) => t.length === windowTokens);
  if (candidates.length === 0) {
    throw new ChaiError('E_INVALID_ARGUMENT', `the evaluation text has no paragraph of ${windowTokens} tokens or more: lower windowTokens`, { option: 'windowTokens' });
  }
  if (candidates.length <= count) return candidates;
  return Array.from({ length: count }, (_, i) => candidates[Math.floor((i * candidates.length) / count)]);
}

/**
 * Scores CHAI against full attention on the same text: perplexity of each, KL divergence and
 * top-1 agreement of their next-token distributions, cache bytes of each, and decode speed.
 */
export async function evaluateChai(model: Model, text: string, options: EvaluateOptions): Promise<EvaluationReport> {
  if (typeof options !== 'object' || options === null) throw new ChaiError('E_INVALID_ARGUMENT', "evaluateChai needs options with a plan ({ plan: ClusterPlan | 'auto' })");
  if (typeof text !== 'string') throw new ChaiError('E_INVALID_ARGUMENT', 'evaluateChai needs the evaluation text as a string');
  const windowTokens = options.windowTokens ?? 128;
  const count = options.windows ?? 32;
  // Two tokens at least: a window scores the prediction of each token after the first.
  if (!Number.isInteger(windowTokens) || windowTokens < 2) throw invalidOption('windowTokens', `must be an integer >= 2, got ${String(options.windowTokens)}`);
  if (!Number.isInteger(count) || count < 1) throw invalidOption('windows', `must be an integer >= 1, got ${String(options.windows)}`);
  const windows = evaluationWindows(model, text, windowTokens, count);
  const full = model.createSession({ maxTokens: windowTokens, chai: 'off' });
  const chai = model.createSession({ maxTokens: windowTokens, chai: options.plan });
  const vocab = model.info.vocabSize;
  let nllFull = 0;
  let nllChai = 0;
  let kl = 0;
  let agree = 0;
  let scored = 0;
  const bytes = { kFull: 0, vFull: 0, kChai: 0, vChai: 0 };
  const add = (s: CacheStats, side: 'Full' | 'Chai'): void => {
    bytes[`k${side}`] += s.kBytes;
    bytes[`v${side}`] += s.vBytes;
  };
  try {
    for (let w = 0; w < windows.length; w++) {
      const tokens = windows[w];
      await full.reset();
      await chai.reset();
      const a = await full.evaluate(tokens, { allLogits: true });
      const b = await chai.evaluate(tokens, { allLogits: true });
      add(full.cache.stats(), 'Full');
      add(chai.cache.stats(), 'Chai');
      for (let i = 0; i + 1 < tokens.length; i++) {
        const rowA = a.subarray(i * vocab, (i + 1) * vocab);
        const rowB = b.subarray(i * vocab, (i + 1) * vocab);
        const la = logSoftmax(rowA);
        const lb = logSoftmax(rowB);
        nllFull -= la[tokens[i + 1]];
        nllChai -= lb[tokens[i + 1]];
        for (let v = 0; v < vocab; v++) kl += Math.exp(la[v]) * (la[v] - lb[v]);
        if (argmax(rowA) === argmax(rowB)) agree++;
        scored++;
      }
      options.onProgress?.({ window: w + 1, windows: windows.length });
    }
    const half = Math.floor(windowTokens / 2);
    const speed = (side: ClusterPlan | 'auto' | 'off') =>
      measureThroughput(model, windows[0], { prefillTokens: half, decodeTokens: windowTokens - half, repeats: options.decodeRepeats ?? 3, chai: side });
    const decodeFull = (await speed('off')).decodeTokensPerSecond;
    const decodeChai = (await speed(options.plan)).decodeTokensPerSecond;
    const n = windows.length;
    return {
      windows: n,
      tokens: scored,
      perplexityFull: Math.exp(nllFull / scored),
      perplexityChai: Math.exp(nllChai / scored),
      klMean: kl / scored,
      top1Agreement: agree / scored,
      kvBytesFull: (bytes.kFull + bytes.vFull) / n,
      kvBytesChai: (bytes.kChai + bytes.vChai) / n,
      kBytesFull: bytes.kFull / n,
      kBytesChai: bytes.kChai / n,
      vBytesFull: bytes.vFull / n,
      vBytesChai: bytes.vChai / n,
      decodeTokensPerSecondFull: decodeFull,
      decodeTokensPerSecondChai: decodeChai,
      plan: (chai.plan ?? ClusterPlan.create(model.info, new Array(model.info.layers).fill(model.info.heads))).toJSON(),
    };
  } finally {
    await full.dispose();
    await chai.dispose();
  }
}
