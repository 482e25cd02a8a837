import fs from 'node:fs';
import { ChaiError } from './errors';
import type { ModelShape } from './model-info';
import type { NativePlan } from './native';

export type ClusterMethod = 'kmeans' | 'agglomerative';
export type RepresentativeRule = 'medoid' | 'first';

/** Quality of a plan against full attention on some text (calibration or evaluation). */
export interface PlanQuality {
  /** Mean over scored positions of KL(p_full ‖ p_chai), in nats. */
  klMean: number;
  /** Fraction of positions where both pick the same most likely token. */
  top1Agreement: number;
  perplexityFull: number;
  perplexityChai: number;
  /** 1 − (K+V bytes with CHAI) / (K+V bytes of full attention), measured from the caches. */
  bytesSavedFraction: number;
}

/** A plan measured during calibration (kept for the chart and for checking the choice). */
export interface MeasuredPlan extends PlanQuality {
  /** 'layer': one layer clustered alone; 'uniform': every layer at the same k; 'budgeted': the search at some budget. */
  kind: 'layer' | 'uniform' | 'budgeted';
  clusters: number[];
  /** For 'budgeted': the budget the search was given. */
  budget?: number;
}

export type CalibrationRule = 'kl-budget' | 'elbow';

/** The quality budget of the 'kl-budget' rule: one of the three. */
export interface QualityBudget {
  /** Mean KL(full ‖ CHAI) at most this (nats per token). */
  maxKl?: number;
  /** Top-1 agreement with full attention at least this. */
  minTop1?: number;
  /** Save at least this fraction of K+V bytes, with the least KL. */
  targetSavings?: number;
}

/** How calibration chose each layer's cluster count; kept in the plan so the choice can be checked. */
export interface CalibrationRecord {
  rule: CalibrationRule;
  budget: QualityBudget;
  /** sha256 (hex) of the calibration text (texts joined by blank lines). */
  textSha256: string;
  windows: number;
  windowTokens: number;
  /** The chosen plan measured on the calibration windows. */
  measured: PlanQuality;
  /** Every plan measured on the way (per-layer costs, uniform plans, budgeted plans). */
  candidates: MeasuredPlan[];
  /** 'elbow' only: inertia[l][k - 1], K-Means inertia of layer l with k clusters, summed over t0-token windows. */
  inertia?: number[][];
  /** Wall-clock seconds the calibration took. */
  seconds: number;
}

/** The JSON form of a plan (version 1). */
export interface ClusterPlanJson {
  version: 1;
  model: { layers: number; heads: number; kvHeads: number; headDim: number };
  t0: number;
  method: ClusterMethod;
  representative: RepresentativeRule;
  seed: number;
  /** K-Means runs per clustering (the lowest inertia wins). */
  restarts: number;
  /** clusters === heads: the layer is not clustered. */
  layers: { clusters: number }[];
  calibration?: CalibrationRecord;
}

export interface PlanOptions {
  /** Tokens whose attention patterns choose the clusters. Default 5 (the paper's). */
  t0?: number;
  method?: ClusterMethod;
  representative?: RepresentativeRule;
  seed?: number;
  restarts?: number;
}

function invalid(message: string): never {
  throw new ChaiError('E_INVALID_ARGUMENT', `cluster plan: ${message}`);
}

function positiveInteger(v: unknown, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) invalid(`${what} must be an integer in 1..${max}, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * Per layer, how many clusters of heads CHAI keeps (SPEC section 1), with the rules that pick
 * the clusters online. Made by calibrate(), by ClusterPlan.create(), or loaded from JSON.
 */
export class ClusterPlan {
  /** @internal the addon's form, encoded once */
  readonly native: Readonly<NativePlan>;

  private constructor(private readonly json: Readonly<ClusterPlanJson>) {
    this.native = Object.freeze({ t0: json.t0, method: json.method, representative: json.representative, seed: json.seed, restarts: json.restarts, clusters: json.layers.map((l) => l.clusters) });
  }

  /** A plan for `model` with the given cluster count per layer (heads = not clustered). */
  static create(model: ModelShape, clusters: number[], options: PlanOptions = {}, calibration?: CalibrationRecord): ClusterPlan {
    if (typeof model !== 'object' || model === null) invalid('create needs the model info ({ layers, heads, kvHeads, headDim }), e.g. model.info');
    if (!Array.isArray(clusters)) invalid(`create needs the cluster count of every layer as an array, got ${clusters === null ? 'null' : typeof clusters}`);
    if (typeof options !== 'object' || options === null) invalid('create takes an options object');
    return ClusterPlan.fromJSON({
      version: 1,
      model: { layers: model.layers, heads: model.heads, kvHeads: model.kvHeads, headDim: model.headDim },
      t0: options.t0 ?? 5,
      method: options.method ?? 'kmeans',
      representative: options.representative ?? 'medoid',
      seed: options.seed ?? 0,
      restarts: options.restarts ?? 10,
      layers: clusters.map((k) => ({ clusters: k })),
      ...(calibration ? { calibration } : {}),
    });
  }

  /** Parses and checks a plan; malformed plans are E_INVALID_ARGUMENT. */
  static fromJSON(value: unknown): ClusterPlan {
    if (typeof value !== 'object' || value === null) invalid('expected a JSON object');
    const o = value as Record<string, unknown>;
    if (o.version !== 1) invalid(`unsupported version ${JSON.stringify(o.version)} (this package reads version 1)`);
    const m = o.model as Record<string, unknown> | undefined;
    if (typeof m !== 'object' || m === null) invalid("missing 'model' ({ layers, heads, kvHeads, headDim })");
    const model = {
      layers: positiveInteger(m.layers, 'model.layers'),
      heads: positiveInteger(m.heads, 'model.heads'),
      kvHeads: positiveInteger(m.kvHeads, 'model.kvHeads'),
      headDim: positiveInteger(m.headDim, 'model.headDim'),
    };
    const t0 = positiveInteger(o.t0, 't0', 32);
    if (o.method !== 'kmeans' && o.method !== 'agglomerative') invalid(`method must be 'kmeans' or 'agglomerative', got ${JSON.stringify(o.method)}`);
    if (o.representative !== 'medoid' && o.representative !== 'first') invalid(`representative must be 'medoid' or 'first', got ${JSON.stringify(o.representative)}`);
    if (typeof o.seed !== 'number' || !Number.isSafeInteger(o.seed) || o.seed < 0) invalid(`seed must be an integer in 0..${Number.MAX_SAFE_INTEGER}, got ${JSON.stringify(o.seed)}`);
    const restarts = positiveInteger(o.restarts, 'restarts', 1000);
    if (!Array.isArray(o.layers) || o.layers.length !== model.layers) invalid(`'layers' must list ${model.layers} entries (model.layers)`);
    const layers = o.layers.map((l: unknown, i) => ({ clusters: positiveInteger((l as { clusters?: unknown })?.clusters, `layers[${i}].clusters`, model.heads) }));
    const json: ClusterPlanJson = { version: 1, model, t0, method: o.method, representative: o.representative, seed: o.seed, restarts, layers };
    if (o.calibration !== undefined) {
      const c = o.calibration as Partial<CalibrationRecord> | null;
      if (typeof c !== 'object' || c === null || (c.rule !== 'kl-budget' && c.rule !== 'elbow') || typeof c.measured !== 'object') {
        invalid("'calibration' must be the record calibrate() writes ({ rule: 'kl-budget' | 'elbow', budget, measured, ... })");
      }
      json.calibration = c as CalibrationRecord;
    }
    return new ClusterPlan(json);
  }

  static load(file: string): ClusterPlan {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new ChaiError('E_INVALID_ARGUMENT', `cannot read cluster plan '${file}': ${(e as Error).message}`);
    }
    try {
      return ClusterPlan.fromJSON(JSON.parse(text));
    } catch (e) {
      if (e instanceof ChaiError) throw e;
      throw new ChaiError('E_INVALID_ARGUMENT', `cluster plan '${file}' is not valid JSON: ${(e as Error).message}`);
    }
  }

  save(file: string): void {
    fs.writeFileSync(file, `${JSON.stringify(this.json, null, 2)}\n`);
  }

  toJSON(): ClusterPlanJson {
    return this.json as ClusterPlanJson;
  }

  /** Cluster count per layer. */
  get clusters(): number[] {
    return [...this.native.clusters];
  }

  /** How calibrate() chose this plan and what it measured (absent for hand-made plans). */
  get calibration(): Readonly<CalibrationRecord> | undefined {
    return this.json.calibration;
  }

  get t0(): number {
    return this.json.t0;
  }

  /** Throws E_PLAN_MISMATCH unless the plan was made for a model of this shape. */
  checkFits(model: ModelShape): void {
    const p = this.json.model;
    const diffs = (['layers', 'heads', 'kvHeads', 'headDim'] as const).filter((k) => p[k] !== model[k]).map((k) => `${k} ${p[k]} vs ${model[k]}`);
    if (diffs.length) {
      throw new ChaiError('E_PLAN_MISMATCH', `the cluster plan was made for another model (${diffs.join(', ')}): calibrate one for this model with 'chai-attn calibrate'`);
    }
  }

  /** An SVG with one elbow curve per layer (normalised inertia against k) and the chosen k marked. */
  elbowSvg(): string {
    const cal = this.json.calibration;
    if (!cal?.inertia) throw new ChaiError('E_INVALID_ARGUMENT', "this plan has no inertia curves to plot (made by calibrate() with rule 'elbow' only)");
    const heads = this.json.model.heads;
    const cols = Math.min(4, cal.inertia.length);
    const rows = Math.ceil(cal.inertia.length / cols);
    const w = 220;
    const h = 160;
    const pad = 30;
    const parts: string[] = [];
    cal.inertia.forEach((curve, l) => {
      const ox = (l % cols) * w;
      const oy = Math.floor(l / cols) * h + 30;
      const top = Math.max(...curve) || 1;
      const x = (k: number): number => ox + pad + ((k - 1) / Math.max(1, heads - 1)) * (w - 2 * pad);
      const y = (v: number): number => oy + h - pad - (v / top) * (h - 2 * pad);
      const points = curve.map((v, i) => `${x(i + 1).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
      const chosen = this.json.layers[l].clusters;
      parts.push(
        `<g><rect x="${ox + pad}" y="${oy + pad}" width="${w - 2 * pad}" height="${h - 2 * pad}" fill="none" stroke="#ccc"/>`,
        `<polyline points="${points}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>`,
        `<circle cx="${x(chosen).toFixed(1)}" cy="${y(curve[chosen - 1]).toFixed(1)}" r="4" fill="#d62728"/>`,
        `<text x="${ox + pad}" y="${oy + pad - 6}" font-size="11">layer ${l}: k = ${chosen}${chosen === heads ? ' (not clustered)' : ''}</text>`,
        `<text x="${ox + pad}" y="${oy + h - 8}" font-size="9" fill="#666">k = 1</text>`,
        `<text x="${ox + w - pad - 24}" y="${oy + h - 8}" font-size="9" fill="#666">k = ${heads}</text></g>`,
      );
    });
    const title = `CHAI elbow curves: K-Means inertia vs clusters (${cal.windows} windows, ${KNEE_RULE})`;
    return (
      `<svg xmlns="http://www.w3.org/2000/svg" width="${cols * w}" height="${rows * h + 30}" font-family="sans-serif">` +
      `<rect width="100%" height="100%" fill="white"/><text x="10" y="18" font-size="13">${title}</text>${parts.join('')}</svg>\n`
    );
  }
}

export const KNEE_RULE = 'chord-distance knee';

/**
 * The knee of a decreasing inertia curve (inertia[k - 1] for k = 1..H): normalise k and inertia
 * to [0, 1] and pick the k farthest below the straight line from (1, I_1) to (H, I_H), the
 * "Kneedle" choice. Ties go to the smaller k. A curve with no point below the line (no elbow)
 * gives H: the layer is not clustered.
 */
export function kneeOf(inertia: readonly number[]): number {
  const heads = inertia.length;
  if (heads <= 2) return heads;
  const first = inertia[0];
  const last = inertia[heads - 1];
  const span = first - last;
  if (!(span > 0)) return heads;
  let best = heads;
  let bestGap = 1e-9;
  for (let k = 1; k <= heads; k++) {
    const x = (k - 1) / (heads - 1);
    const y = (inertia[k - 1] - last) / span;
    const gap = 1 - x - y;
    if (gap > bestGap) {
      bestGap = gap;
      best = k;
    }
  }
  return best;
}
