import { measureThroughput } from './bench';
import { ChaiError, invalidOption } from './errors';
import type { Model } from './model';
import { ClusterPlan, ClusterPlanJson, PlanQuality } from './plan';
import { loadCachedPlan } from './plan-cache';
import { measurePlans, paragraphWindows } from './quality';

export interface EvaluateOptions {
  /** The CHAI side: a plan, or 'auto' (the plan cached for the model file; full attention when none, see autoPlan()). */
  plan: ClusterPlan | 'auto';
  /** Tokens per window (each window is one request: BOS and the start of a paragraph). Default 128. */
  windowTokens?: number;
  /** How many windows (paragraphs) to score. Default 32. */
  windows?: number;
  /**
   * Decode speed: the first window's first half is prefilled and its second half decoded token by
   * token, this many times (the median counts), with full attention and with CHAI. Default 3;
   * 0 skips the speed measurement (the speeds are then null).
   */
  decodeRepeats?: number;
  onProgress?: (progress: { window: number; windows: number }) => void;
}

/** Full attention against CHAI on the same windows (field names are the CLI's JSON). */
export interface EvaluationReport extends PlanQuality {
  windows: number;
  /** Next-token predictions scored (window length − 1 per window). */
  tokens: number;
  /** Cache bytes per window (the mean over windows), full attention and CHAI. */
  kvBytesFull: number;
  kvBytesChai: number;
  kBytesFull: number;
  kBytesChai: number;
  vBytesFull: number;
  vBytesChai: number;
  decodeTokensPerSecondFull: number | null;
  decodeTokensPerSecondChai: number | null;
  plan: ClusterPlanJson;
}

/** Paragraph openings of `windowTokens` tokens (BOS first when the model uses one). */
export function evaluationWindows(model: Model, text: string, windowTokens: number, count: number): number[][] {
  return paragraphWindows(model, text, windowTokens, count);
}

/**
 * Scores CHAI against full attention on the same text: perplexity of each, KL divergence and
 * top-1 agreement of their next-token distributions, cache bytes of each, and decode speed.
 */
export async function evaluateChai(model: Model, text: string, options: EvaluateOptions): Promise<EvaluationReport> {
  if (typeof options !== 'object' || options === null) throw new ChaiError('E_INVALID_ARGUMENT', "evaluateChai needs options with a plan ({ plan: ClusterPlan | 'auto' })");
  if (typeof text !== 'string') throw new ChaiError('E_INVALID_ARGUMENT', 'evaluateChai needs the evaluation text as a string');
  const windowTokens = options.windowTokens ?? 128;
  const windows = paragraphWindows(model, text, windowTokens, options.windows ?? 32);
  if (options.plan !== 'auto' && !(options.plan instanceof ClusterPlan)) throw invalidOption('plan', "must be a ClusterPlan or 'auto'");
  const chosen = options.plan === 'auto' ? loadCachedPlan(model.path) : options.plan;
  chosen?.checkFits(model.info);
  const plan = chosen ?? ClusterPlan.create(model.info, new Array<number>(model.info.layers).fill(model.info.heads));
  const { qualities, bytes } = await measurePlans(model, windows, [plan], (done, total) => options.onProgress?.({ window: done, windows: total }));
  const b = bytes[0];
  const repeats = options.decodeRepeats ?? 3;
  const half = Math.floor(windowTokens / 2);
  const speed = async (side: ClusterPlan | 'off'): Promise<number | null> =>
    repeats === 0 ? null : (await measureThroughput(model, windows[0], { prefillTokens: half, decodeTokens: windowTokens - half, repeats, chai: side })).decodeTokensPerSecond;
  return {
    windows: windows.length,
    tokens: b.tokens,
    ...qualities[0],
    kvBytesFull: b.kBytesFull + b.vBytesFull,
    kvBytesChai: b.kBytesChai + b.vBytesChai,
    kBytesFull: b.kBytesFull,
    kBytesChai: b.kBytesChai,
    vBytesFull: b.vBytesFull,
    vBytesChai: b.vBytesChai,
    decodeTokensPerSecondFull: await speed('off'),
    decodeTokensPerSecondChai: await speed(plan),
    plan: plan.toJSON(),
  };
}
