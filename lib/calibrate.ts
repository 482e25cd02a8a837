import { ChaiError, invalidOption, optionsArgument } from './errors';
import type { Model } from './model';
import { ClusterMethod, ClusterPlan, KNEE_RULE, kneeOf, RepresentativeRule } from './plan';

export interface CalibrateOptions {
  /** Tokens per window whose attention patterns are the features (the online t0). Default 5. */
  t0?: number;
  /** How many windows (request openings) to draw from the texts. Default 64. */
  windows?: number;
  /** Layers 0..keepFirstLayers-1 stay unclustered whatever their curves say. Default 0. */
  keepFirstLayers?: number;
  /** Seed of the K-Means starts. Default 0. */
  seed?: number;
  /** K-Means runs per clustering. Default 10. */
  restarts?: number;
  /** Rules written into the plan for the online clustering. Default 'kmeans' and 'medoid'. */
  method?: ClusterMethod;
  representative?: RepresentativeRule;
  onProgress?: (progress: { window: number; windows: number }) => void;
}

/**
 * Windows shaped like request openings: BOS (when the model uses one) and then the text from
 * the start of a sentence, t0 tokens in all, spread evenly over all sentences of all texts.
 */
export function calibrationWindows(model: Model, texts: readonly string[], t0: number, count: number): number[][] {
  const sentences = texts
    .flatMap((t) => t.split(/(?<=[.!?])\s+/))
    .map((s) => s.trim())
    .filter(Boolean);
  const tokenizer = model.tokenizer;
  const candidates: number[][] = [];
  for (const s of sentences) {
    const tokens = tokenizer.encode(s).slice(0, t0);
    if (tokens.length === t0) candidates.push(tokens);
  }
  if (candidates.length === 0) {
    throw new ChaiError('E_INVALID_ARGUMENT', `calibration text has no sentence of ${t0} tokens or more`);
  }
  if (candidates.length <= count) return candidates;
  return Array.from({ length: count }, (_, i) => candidates[Math.floor((i * candidates.length) / count)]);
}

/**
 * Offline CHAI calibration (SPEC section 1): run the model over calibration windows, take the
 * per-head features of every layer, K-Means inertia for k = 1..H summed over windows, and pick
 * each layer's k at the knee of its curve (kneeOf). The plan keeps the curves for elbowSvg().
 */
export async function calibrate(model: Model, texts: string | readonly string[], options: CalibrateOptions = {}): Promise<ClusterPlan> {
  optionsArgument(options, 'calibrate');
  if (typeof texts !== 'string' && !(Array.isArray(texts) && texts.every((t) => typeof t === 'string'))) {
    throw new ChaiError('E_INVALID_ARGUMENT', 'calibrate needs calibration text: a string or an array of strings');
  }
  const t0 = options.t0 ?? 5;
  const count = options.windows ?? 64;
  const keepFirstLayers = options.keepFirstLayers ?? 0;
  const seed = options.seed ?? 0;
  const restarts = options.restarts ?? 10;
  if (!Number.isInteger(t0) || t0 < 2 || t0 > 32) throw invalidOption('t0', `must be an integer in 2..32, got ${String(options.t0)}`);
  if (!Number.isInteger(count) || count < 1) throw invalidOption('windows', `must be an integer >= 1, got ${String(options.windows)}`);
  if (!Number.isInteger(keepFirstLayers) || keepFirstLayers < 0) throw invalidOption('keepFirstLayers', `must be an integer >= 0, got ${String(options.keepFirstLayers)}`);

  const { layers, heads } = model.info;
  const windows = calibrationWindows(model, typeof texts === 'string' ? [texts] : texts, t0, count);
  const inertia = Array.from({ length: layers }, () => new Array<number>(heads).fill(0));
  const session = model.createSession({ maxTokens: t0 });
  try {
    for (let w = 0; w < windows.length; w++) {
      const curves = await session.windowInertia(windows[w], t0, seed + w, restarts);
      for (let l = 0; l < layers; l++) for (let k = 0; k < heads; k++) inertia[l][k] += curves[l * heads + k];
      options.onProgress?.({ window: w + 1, windows: windows.length });
    }
  } finally {
    await session.dispose();
  }
  const clusters = inertia.map((curve, l) => (l < keepFirstLayers ? heads : kneeOf(curve)));
  return ClusterPlan.create(
    model.info,
    clusters,
    { t0, seed, restarts, method: options.method, representative: options.representative },
    { windows: windows.length, kneeRule: KNEE_RULE, keepFirstLayers, inertia },
  );
}
