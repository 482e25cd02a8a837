import crypto from 'node:crypto';
import { BUILTIN_CALIBRATION_TEXT } from './calibration-text';
import { ChaiError, invalidOption, optionsArgument } from './errors';
import type { Model } from './model';
import { CalibrationRecord, CalibrationRule, ClusterMethod, ClusterPlan, kneeOf, MeasuredPlan, PlanQuality, QualityBudget, RepresentativeRule } from './plan';
import { loadCachedPlan, saveCachedPlan } from './plan-cache';
import { measurePlans, paragraphWindows } from './quality';

/** The default budget: mean KL(full ‖ CHAI) on the calibration text at most this many nats per token. */
export const DEFAULT_MAX_KL = 0.02;

export interface CalibrateProgress {
  /** 'layers': each layer clustered alone and every layer at one k; 'budgets': plans the search picks; 'verify': checking a backed-off plan; 'elbow': inertia curves; 'uniform': the elbow plan and every layer at one k. */
  stage: 'layers' | 'uniform' | 'budgets' | 'verify' | 'elbow';
  /** Window evaluations done and planned so far (the total grows when a plan must be backed off). */
  done: number;
  total: number;
}

export interface CalibrateOptions {
  /**
   * 'kl-budget' (default): per layer the cluster count that saves the most K+V bytes while the
   * quality budget holds on the calibration text. 'elbow': the paper's rule, the knee of each
   * layer's K-Means inertia curve (see kneeOf).
   */
  rule?: CalibrationRule;
  /** Budget: mean KL(full ‖ CHAI) at most this (nats/token). Default 0.02 unless minTop1 or targetSavings is given. */
  maxKl?: number;
  /** Budget: top-1 agreement with full attention at least this (0..1). */
  minTop1?: number;
  /** Instead of a quality budget: save at least this fraction of K+V bytes (0..1) with the least KL. */
  targetSavings?: number;
  /** Paragraph windows of the text to measure on (and, for 'elbow', t0-token sentence windows). Default 32. */
  windows?: number;
  /** Tokens per paragraph window. Default 128. */
  windowTokens?: number;
  /** Cluster counts tried in each layer (default: every k < heads when heads <= 16, else 8 counts from heads·7/8 down to 1). */
  levels?: number[];
  /** Layers 0..keepFirstLayers-1 stay unclustered. Default 0. */
  keepFirstLayers?: number;
  /** Rules written into the plan for the online clustering (and used while measuring). Defaults as ClusterPlan.create. */
  t0?: number;
  method?: ClusterMethod;
  representative?: RepresentativeRule;
  seed?: number;
  restarts?: number;
  onProgress?: (progress: CalibrateProgress) => void;
}

/**
 * Windows shaped like request openings for the inertia curves: BOS (when the model uses one) and
 * then the text from the start of a sentence, t0 tokens in all, spread evenly over all sentences.
 */
export function calibrationWindows(model: Model, texts: readonly string[], t0: number, count: number): number[][] {
  const sentences = texts
    .flatMap((t) => t.split(/(?<=[.!?])\s+/))
    .map((s) => s.trim())
    .filter(Boolean);
  const candidates: number[][] = [];
  for (const s of sentences) {
    const tokens = model.tokenizer.encode(s).slice(0, t0);
    if (tokens.length === t0) candidates.push(tokens);
  }
  if (candidates.length === 0) {
    throw new ChaiError('E_INVALID_ARGUMENT', `calibration text has no sentence of ${t0} tokens or more`);
  }
  if (candidates.length <= count) return candidates;
  return Array.from({ length: count }, (_, i) => candidates[Math.floor((i * candidates.length) / count)]);
}

function fraction(v: number | undefined, name: string): void {
  if (v !== undefined && !(typeof v === 'number' && v >= 0 && v <= 1)) throw invalidOption(name, `must be a number in 0..1, got ${String(v)}`);
}

/** The one budget calibrate() holds, from the options (maxKl 0.02 when none is given). */
function budgetOf(options: CalibrateOptions): QualityBudget {
  const { maxKl, minTop1, targetSavings } = options;
  if (maxKl !== undefined && !(typeof maxKl === 'number' && maxKl >= 0 && Number.isFinite(maxKl))) {
    throw invalidOption('maxKl', `must be a number >= 0 (nats per token), got ${String(maxKl)}`);
  }
  fraction(minTop1, 'minTop1');
  fraction(targetSavings, 'targetSavings');
  const given = [maxKl, minTop1, targetSavings].filter((v) => v !== undefined).length;
  if (given > 1) throw new ChaiError('E_INVALID_ARGUMENT', 'give one budget: maxKl, minTop1 or targetSavings', { option: minTop1 !== undefined ? 'minTop1' : 'targetSavings' });
  if (minTop1 !== undefined) return { minTop1 };
  if (targetSavings !== undefined) return { targetSavings };
  return { maxKl: maxKl ?? DEFAULT_MAX_KL };
}

function defaultLevels(heads: number): number[] {
  if (heads <= 16) return Array.from({ length: heads - 1 }, (_, i) => heads - 1 - i);
  return [...new Set([7, 6, 5, 4, 3, 2, 1].map((e) => Math.max(1, Math.round((heads * e) / 8))).concat(1))].filter((k) => k < heads);
}

/** One choice for one layer: keep k clusters at this cost (KL or top-1 loss) for this gain (fraction of K+V bytes saved). */
export interface LayerOption {
  k: number;
  cost: number;
  gain: number;
}

// Gains are counted in steps of 1/GAIN_STEPS of the K+V bytes (0.01%).
const GAIN_STEPS = 10000;

/**
 * @internal The least total cost for each total gain over all per-layer choices (a
 * multiple-choice knapsack, solved exactly by dynamic programming over gains counted in steps of
 * 0.01%): costs and gains of layers add up.
 */
export class LayerSearch {
  private readonly minCost: Float64Array;
  private readonly choice: Int16Array[];
  private readonly units: number[][];

  constructor(private readonly options: LayerOption[][]) {
    const units = options.map((layer) => layer.map((o) => Math.max(0, Math.round(o.gain * GAIN_STEPS))));
    const maxGain = units.reduce((sum, u) => sum + Math.max(...u), 0);
    let cost = new Float64Array(maxGain + 1).fill(Infinity);
    cost[0] = 0;
    this.choice = [];
    options.forEach((layer, l) => {
      const next = new Float64Array(maxGain + 1).fill(Infinity);
      const pick = new Int16Array(maxGain + 1).fill(-1);
      for (let g = 0; g <= maxGain; g++) {
        if (cost[g] === Infinity) continue;
        layer.forEach((o, j) => {
          const to = g + units[l][j];
          const c = cost[g] + Math.max(0, o.cost);
          if (c < next[to]) {
            next[to] = c;
            pick[to] = j;
          }
        });
      }
      this.choice.push(pick);
      cost = next;
    });
    this.minCost = cost;
    this.units = units;
  }

  private clustersFor(gain: number): number[] {
    const out: number[] = [];
    for (let l = this.options.length - 1; l >= 0; l--) {
      const j = this.choice[l][gain];
      out.unshift(this.options[l][j].k);
      gain -= this.units[l][j];
    }
    return out;
  }

  /** The most gain whose cost stays within `budget` (of equal gains, the least cost). */
  withinCost(budget: number): number[] {
    let best = 0;
    for (let g = 0; g < this.minCost.length; g++) if (this.minCost[g] <= budget + 1e-12) best = g;
    return this.clustersFor(best);
  }

  /** The least cost that gains at least `target` (a fraction); the most gain when none reaches it. */
  leastCostFor(target: number): number[] {
    let best = -1;
    for (let g = Math.min(this.minCost.length - 1, Math.ceil(target * GAIN_STEPS - 1e-9)); g < this.minCost.length; g++) {
      if (this.minCost[g] < Infinity && (best < 0 || this.minCost[g] < this.minCost[best])) best = g;
    }
    return this.clustersFor(best < 0 ? this.minCost.length - 1 : best);
  }
}

/** How far a measured plan is from the budget: <= 1 holds. */
function budgetUse(budget: QualityBudget, q: PlanQuality): number {
  if (budget.maxKl !== undefined) return budget.maxKl > 0 ? q.klMean / budget.maxKl : q.klMean > 1e-9 ? Infinity : 0;
  if (budget.minTop1 !== undefined) return budget.minTop1 < 1 ? (1 - q.top1Agreement) / (1 - budget.minTop1) : q.top1Agreement < 1 ? Infinity : 0;
  return 0;
}

function sha256(text: string): string {
  return crypto.createHash('sha256').update(text).digest('hex');
}

/**
 * Offline CHAI calibration: chooses each layer's cluster count on calibration text.
 *
 * Rule 'kl-budget' (default): measure every layer clustered alone at each candidate k (KL, top-1
 * agreement and bytes saved against full attention on paragraph windows of the text), pick the
 * per-layer counts that save the most K+V bytes while the summed per-layer cost stays within the
 * budget, measure that combined plan, and back off (tighten the budget) until the measured plan
 * holds. Rule 'elbow': the paper's knee of the inertia curves. Either way the plan records the
 * rule, the budget, a hash of the text and its measured quality, with every plan measured on the
 * way (drawn by calibrationChartSvg).
 */
export async function calibrate(model: Model, texts: string | readonly string[], options: CalibrateOptions = {}): Promise<ClusterPlan> {
  const started = performance.now();
  optionsArgument(options, 'calibrate');
  if (typeof texts !== 'string' && !(Array.isArray(texts) && texts.every((t) => typeof t === 'string'))) {
    throw new ChaiError('E_INVALID_ARGUMENT', 'calibrate needs calibration text: a string or an array of strings');
  }
  const rule = options.rule ?? 'kl-budget';
  if (rule !== 'kl-budget' && rule !== 'elbow') throw invalidOption('rule', `must be 'kl-budget' or 'elbow', got ${JSON.stringify(rule)}`);
  const budget = rule === 'elbow' ? {} : budgetOf(options);
  const t0 = options.t0 ?? 5;
  const count = options.windows ?? 32;
  const windowTokens = options.windowTokens ?? 128;
  const keepFirstLayers = options.keepFirstLayers ?? 0;
  const seed = options.seed ?? 0;
  const restarts = options.restarts ?? 10;
  if (!Number.isInteger(t0) || t0 < 2 || t0 > 32) throw invalidOption('t0', `must be an integer in 2..32, got ${String(options.t0)}`);
  if (!Number.isInteger(keepFirstLayers) || keepFirstLayers < 0) throw invalidOption('keepFirstLayers', `must be an integer >= 0, got ${String(options.keepFirstLayers)}`);
  const { layers, heads } = model.info;
  const levels = options.levels ?? defaultLevels(heads);
  if (!Array.isArray(levels) || levels.some((k) => !Number.isInteger(k) || k < 1 || k >= heads)) {
    throw invalidOption('levels', `must be cluster counts in 1..${heads - 1}, got ${JSON.stringify(options.levels)}`);
  }
  const textList = typeof texts === 'string' ? [texts] : [...texts];
  const text = textList.join('\n\n');
  const windows = paragraphWindows(model, text, windowTokens, count);
  const planOptions = { t0, seed, restarts, method: options.method, representative: options.representative };
  const planOf = (clusters: number[]): ClusterPlan => ClusterPlan.create(model.info, clusters, planOptions);
  const whole = (): number[] => new Array<number>(layers).fill(heads);

  let done = 0;
  let total = 0;
  // Measures each distinct plan once (full attention runs once per window for all of them).
  const measure = async (stage: CalibrateProgress['stage'], plans: number[][]): Promise<PlanQuality[]> => {
    const keys = plans.map((c) => c.join(' '));
    const distinct = [...new Set(keys)];
    total += distinct.length * windows.length;
    const { qualities } = await measurePlans(model, windows, distinct.map((key) => planOf(key.split(' ').map(Number))), () =>
      options.onProgress?.({ stage, done: ++done, total }),
    );
    return keys.map((key) => qualities[distinct.indexOf(key)]);
  };
  const candidates: MeasuredPlan[] = [];
  const record = (kind: MeasuredPlan['kind'], clusters: number[][], qualities: PlanQuality[], budgets?: number[]): void => {
    clusters.forEach((c, i) => candidates.push({ kind, clusters: c, ...(budgets ? { budget: budgets[i] } : {}), ...qualities[i] }));
  };

  let chosen: number[];
  let measured: PlanQuality;
  let inertia: number[][] | undefined;
  if (rule === 'elbow') {
    const short = calibrationWindows(model, textList, t0, count);
    total += short.length;
    inertia = Array.from({ length: layers }, () => new Array<number>(heads).fill(0));
    const session = model.createSession({ maxTokens: t0 });
    try {
      for (let w = 0; w < short.length; w++) {
        const curves = await session.windowInertia(short[w], t0, seed + w, restarts);
        for (let l = 0; l < layers; l++) for (let k = 0; k < heads; k++) inertia[l][k] += curves[l * heads + k];
        options.onProgress?.({ stage: 'elbow', done: ++done, total });
      }
    } finally {
      await session.dispose();
    }
    chosen = inertia.map((curve, l) => (l < keepFirstLayers ? heads : kneeOf(curve)));
    const uniform = levels.map((k) => new Array<number>(layers).fill(k));
    const [q, ...rest] = await measure('uniform', [chosen, ...uniform]);
    record('uniform', uniform, rest);
    measured = q;
  } else {
    // Each layer alone at each level, and every layer at one level (for the chart).
    const single: { l: number; k: number; clusters: number[] }[] = [];
    for (let l = keepFirstLayers; l < layers; l++) for (const k of levels) single.push({ l, k, clusters: whole().map((h, i) => (i === l ? k : h)) });
    const uniform = levels.map((k) => new Array<number>(layers).fill(k));
    const all = await measure('layers', [...single.map((s) => s.clusters), ...uniform]);
    const alone = all.slice(0, single.length);
    record('layer', single.map((s) => s.clusters), alone);
    record('uniform', uniform, all.slice(single.length));

    const costOf = (q: PlanQuality): number => (budget.minTop1 !== undefined ? 1 - q.top1Agreement : q.klMean);
    const choices: LayerOption[][] = Array.from({ length: layers }, () => [{ k: heads, cost: 0, gain: 0 }]);
    single.forEach((s, i) => choices[s.l].push({ k: s.k, cost: costOf(alone[i]), gain: alone[i].bytesSavedFraction }));
    const search = new LayerSearch(choices);

    // The plans the search picks at a range of budgets (the chosen budget among them).
    const limit = budget.maxKl ?? (budget.minTop1 !== undefined ? 1 - budget.minTop1 : budget.targetSavings!);
    const scales = [0.25, 0.5, 1, 2, 4];
    const pick = (b: number): number[] => (budget.targetSavings !== undefined ? search.leastCostFor(Math.min(1, b)) : search.withinCost(b));
    const family = scales.map((s) => pick(limit * s));
    const familyQuality = await measure('budgets', family);
    record('budgeted', family, familyQuality, scales.map((s) => limit * s));

    chosen = family[scales.indexOf(1)];
    measured = familyQuality[scales.indexOf(1)];
    // Back off: costs measured alone need not add up exactly; tighten until the combined plan holds.
    let allowed = limit;
    while (budgetUse(budget, measured) > 1 && chosen.some((k) => k < heads)) {
      allowed *= Math.min(0.8, 1 / budgetUse(budget, measured));
      const next = allowed < limit * 1e-6 ? whole() : pick(allowed);
      if (next.every((k, l) => k === chosen[l])) continue;
      chosen = next;
      [measured] = await measure('verify', [chosen]);
      record('budgeted', [chosen], [measured], [allowed]);
    }
  }

  const calibration: CalibrationRecord = {
    rule,
    budget,
    textSha256: sha256(text),
    windows: windows.length,
    windowTokens,
    measured,
    candidates,
    ...(inertia ? { inertia } : {}),
    seconds: (performance.now() - started) / 1000,
  };
  return ClusterPlan.create(model.info, chosen, planOptions, calibration);
}

export interface AutoPlanOptions extends CalibrateOptions {
  /** Calibrate (and cache) when no plan is cached for the model file. Default false. */
  calibrate?: boolean;
  /** Calibration text when calibrating. Default: the package's built-in text (BUILTIN_CALIBRATION_TEXT). */
  text?: string | readonly string[];
}

/**
 * What chai: 'auto' means, resolved ahead of createSession: the plan cached for this model file
 * (keyed by its content hash, see planCacheDir()). Without one: null, or with `calibrate: true` a
 * plan calibrated now (default budget unless options say otherwise) and cached for next time.
 */
export async function autoPlan(model: Model, options: AutoPlanOptions = {}): Promise<ClusterPlan | null> {
  const cached = loadCachedPlan(model.path);
  if (cached) {
    cached.checkFits(model.info);
    return cached;
  }
  if (!options.calibrate) return null;
  const plan = await calibrate(model, options.text ?? BUILTIN_CALIBRATION_TEXT, options);
  saveCachedPlan(model.path, plan);
  return plan;
}
