// Calibration by a quality budget (planted head groups are recovered exactly), plans that record
// how they were chosen, the chart, and what chai: 'auto' means (the plan cached per model file).
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LayerOption, LayerSearch } from '../lib/calibrate';
import { autoPlan, BUILTIN_CALIBRATION_TEXT, calibrate, calibrationChartSvg, cachedPlanPath, ClusterPlan, loadModel, Model, modelFileHash, planCacheDir, writeSyntheticLlama } from '../lib';

// Heads in groups with identical Q and K rows; sharp attention and confident logits make any merge
// across groups cost far more than the default budget (0.02 nats), while merges inside a group cost 0.
const GROUPS = [[0, 3, 5], [1, 2], [4, 6, 7]];
const small = { windows: 4, windowTokens: 24 };

let dir: string;
let file: string;
let model: Model;
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chai-calibration-'));
  process.env.CHAI_CACHE_DIR = path.join(dir, 'cache');
  file = path.join(dir, 'planted.gguf');
  writeSyntheticLlama(file, { layers: 3, embeddingLength: 64, heads: 8, kvHeads: 8, feedForwardLength: 96, vocabSize: 300, seed: 3, plantedGroups: GROUPS, attentionScale: 2, logitScale: 8 });
  model = await loadModel(file, { device: 'cpu' });
});
afterAll(() => {
  model.dispose();
  delete process.env.CHAI_CACHE_DIR;
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('calibrate with a KL budget', () => {
  test.each(['kmeans', 'agglomerative'] as const)('%s: recovers the planted groups at zero KL with the exact bytes saved', async (method) => {
    const plan = await calibrate(model, BUILTIN_CALIBRATION_TEXT, { ...small, method });
    expect(plan.clusters).toEqual([3, 3, 3]);
    const c = plan.calibration!;
    expect(c.rule).toBe('kl-budget');
    expect(c.budget).toEqual({ maxKl: 0.02 });
    expect(c.measured.klMean).toBe(0);
    expect(c.measured.top1Agreement).toBe(1);
    expect(c.measured.perplexityChai).toBe(c.measured.perplexityFull);
    // K for 3 of 8 heads, V for all 8: (8 - 3) / 16 of the K+V bytes.
    expect(c.measured.bytesSavedFraction).toBeCloseTo(5 / 16, 12);
    // Every merge across groups was measured, alone, above the budget.
    const crossGroup = c.candidates.filter((m) => m.kind === 'layer' && Math.min(...m.clusters) < 3);
    expect(crossGroup).toHaveLength(3 * 2);
    for (const m of crossGroup) expect(m.klMean).toBeGreaterThan(0.02);
    // The sessions of the plan cluster heads exactly as planted.
    const s = model.createSession({ maxTokens: 32, chai: plan });
    await s.evaluate([1, 40, 41, 42, 43, 44, 45, 46]);
    for (let l = 0; l < 3; l++) expect(s.assignment(l)!.membership).toEqual([0, 1, 1, 0, 2, 0, 2, 2]);
    await s.dispose();
  });

  test('records the budget, the text hash, uniform and budgeted plans; round-trips through JSON', async () => {
    const text = BUILTIN_CALIBRATION_TEXT;
    const plan = await calibrate(model, text, { ...small, maxKl: 0.05, keepFirstLayers: 1 });
    expect(plan.clusters).toEqual([8, 3, 3]);
    const c = plan.calibration!;
    expect(c.budget).toEqual({ maxKl: 0.05 });
    expect(c.textSha256).toBe(crypto.createHash('sha256').update(text).digest('hex'));
    expect(c.candidates.filter((m) => m.kind === 'uniform').map((m) => m.clusters[0])).toEqual([7, 6, 5, 4, 3, 2, 1]);
    expect(c.candidates.filter((m) => m.kind === 'budgeted').length).toBeGreaterThanOrEqual(5);
    expect(c.windows).toBe(4);
    expect(c.seconds).toBeGreaterThan(0);
    const again = ClusterPlan.fromJSON(JSON.parse(JSON.stringify(plan.toJSON())));
    expect(again.toJSON()).toEqual(plan.toJSON());
    expect(again.calibration).toEqual(c);
  });

  test('a target saving takes the least KL that reaches it', async () => {
    const plan = await calibrate(model, BUILTIN_CALIBRATION_TEXT, { ...small, targetSavings: 0.2 });
    const c = plan.calibration!;
    expect(c.budget).toEqual({ targetSavings: 0.2 });
    expect(c.measured.bytesSavedFraction).toBeGreaterThanOrEqual(0.2);
    expect(c.measured.klMean).toBe(0); // reachable inside the groups
  });

  test('a top-1 budget holds on the calibration windows', async () => {
    const plan = await calibrate(model, BUILTIN_CALIBRATION_TEXT, { ...small, minTop1: 0.99 });
    expect(plan.calibration!.measured.top1Agreement).toBeGreaterThanOrEqual(0.99);
    expect(plan.clusters).toEqual([3, 3, 3]);
  });

  test("rule 'elbow' keeps the inertia curves and measures its plan", async () => {
    const plan = await calibrate(model, BUILTIN_CALIBRATION_TEXT, { ...small, rule: 'elbow' });
    const c = plan.calibration!;
    expect(c.rule).toBe('elbow');
    expect(c.inertia).toHaveLength(3);
    for (const curve of c.inertia!) expect(curve[2]).toBeCloseTo(0, 9); // three exact groups
    expect(typeof c.measured.klMean).toBe('number');
    expect(plan.elbowSvg().match(/<polyline/g)).toHaveLength(3);
  });

  test('bad budgets are typed errors', async () => {
    await expect(calibrate(model, BUILTIN_CALIBRATION_TEXT, { maxKl: -1 })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    await expect(calibrate(model, BUILTIN_CALIBRATION_TEXT, { maxKl: 0.1, minTop1: 0.9 })).rejects.toThrow(/one budget/);
    await expect(calibrate(model, BUILTIN_CALIBRATION_TEXT, { targetSavings: 2 })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    await expect(calibrate(model, BUILTIN_CALIBRATION_TEXT, { levels: [8] })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    await expect(calibrate(model, 'too short', small)).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
  });
});

describe('the calibration chart', () => {
  test('plots bytes saved against KL and top-1 with axes, units, every uniform plan and the chosen point', async () => {
    const plan = await calibrate(model, BUILTIN_CALIBRATION_TEXT, small);
    const svg = calibrationChartSvg(plan);
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('K+V cache bytes saved (% of full attention)');
    expect(svg).toContain('mean KL(full ‖ CHAI), nats per token');
    expect(svg).toContain('top-1 agreement (%)');
    expect(svg).toContain('budget: KL ≤ 0.02');
    expect(svg.match(/>chosen</g)).toHaveLength(2);
    // full attention and k = 7..1, in both panels
    expect(svg.match(/<circle [^>]*r="3.5"/g)).toHaveLength(2 * 8);
    expect(() => calibrationChartSvg(ClusterPlan.create(model.info, [8, 8, 8]))).toThrow(/calibration record/);
  });

  test("follows the model's head count and the rule; KL 0 sits on the axis floor, marked 0; labels stay inside their panel", async () => {
    const file4 = path.join(dir, 'four-heads.gguf');
    writeSyntheticLlama(file4, { layers: 2, embeddingLength: 32, heads: 4, kvHeads: 4, feedForwardLength: 48, vocabSize: 300, seed: 5, plantedGroups: [[0, 1], [2, 3]], attentionScale: 2, logitScale: 8 });
    const four = await loadModel(file4, { device: 'cpu' });
    try {
      const elbow = calibrationChartSvg(await calibrate(four, BUILTIN_CALIBRATION_TEXT, { ...small, rule: 'elbow' }));
      expect(elbow).toContain('k=4 of 4: full attention');
      expect(elbow).not.toMatch(/k=8|orange/);
      expect(elbow).toContain('chosen by the elbow rule');
      expect(elbow).toContain('CHAI calibration (elbow rule): chosen 2 2');
      expect(calibrationChartSvg(await calibrate(four, BUILTIN_CALIBRATION_TEXT, small))).toContain('orange: the budget search');

      // The KL panel: its frame, the full-attention point (KL 0) and the axis labels.
      const frame = /<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)" fill="none"/.exec(elbow)!.slice(1).map(Number);
      const floor = frame[1] + frame[3];
      const full = /<circle cx="[\d.]+" cy="([\d.]+)" r="3.5"[^>]*><title>k=4<\/title>/.exec(elbow)!;
      expect(Number(full[1])).toBeCloseTo(floor, 1);
      expect(elbow).toContain(`y="${(floor + 3).toFixed(1)}" font-size="10" text-anchor="end">0</text>`);
      // Point labels and 'chosen' (started at x, about 0.6 em a character) end inside their panel.
      const width = Number(/width="(\d+)"/.exec(elbow)![1]);
      for (const [, x, size, anchor, text] of elbow.matchAll(/<text x="([\d.]+)" y="[\d.]+" font-size="(9|10)"( text-anchor="end")?[^>]*>([^<]*)<\/text>/g)) {
        if (anchor || Number(x) < 64) continue;
        const panelRight = Number(x) < width / 2 ? width / 2 : width;
        expect(Number(x) + text.length * Number(size) * 0.6).toBeLessThanOrEqual(panelRight);
      }
    } finally {
      four.dispose();
    }
  });
});

describe("chai: 'auto' is the plan cached for the model file", () => {
  test('the cache folder follows CHAI_CACHE_DIR, then XDG_CACHE_HOME', () => {
    expect(planCacheDir()).toBe(path.join(dir, 'cache'));
    const saved = process.env.CHAI_CACHE_DIR;
    delete process.env.CHAI_CACHE_DIR;
    const xdg = process.env.XDG_CACHE_HOME;
    process.env.XDG_CACHE_HOME = '/somewhere';
    expect(planCacheDir()).toBe(path.join('/somewhere', 'chai-attention'));
    if (xdg === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = xdg;
    process.env.CHAI_CACHE_DIR = saved;
  });

  test('the key is the content hash of the model file', () => {
    const copy = path.join(dir, 'copy.gguf');
    fs.copyFileSync(file, copy);
    expect(modelFileHash(copy)).toBe(modelFileHash(file));
    expect(modelFileHash(file)).toBe(crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex'));
    expect(cachedPlanPath(file)).toBe(path.join(dir, 'cache', `${modelFileHash(file)}.chai.json`));
  });

  test('createSession never calibrates; autoPlan calibrates when asked, caches, and sessions then use it', async () => {
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const before = model.createSession({ maxTokens: 16, chai: 'auto' });
    expect(before.plan).toBeNull();
    expect(before.chaiSource).toBe('auto-uncalibrated');
    await before.dispose();
    expect(String(warn.mock.calls[0][0])).toMatch(/no cluster plan cached .* running full attention/);
    warn.mockRestore();

    expect(await autoPlan(model)).toBeNull();
    const progress: number[] = [];
    const plan = await autoPlan(model, { calibrate: true, ...small, onProgress: (p) => progress.push(p.done) });
    expect(plan!.clusters).toEqual([3, 3, 3]);
    expect(progress.length).toBeGreaterThan(0);
    expect(fs.existsSync(cachedPlanPath(file))).toBe(true);
    expect(fs.readdirSync(dir).filter((f) => /auto/.test(f))).toEqual([]);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.json'))).toEqual([]); // nothing beside the model

    const after = model.createSession({ maxTokens: 16, chai: 'auto' });
    expect(after.chaiSource).toBe('cached');
    expect(after.plan!.toJSON()).toEqual(plan!.toJSON());
    await after.dispose();
    expect((await autoPlan(model, { calibrate: true }))!.toJSON()).toEqual(plan!.toJSON()); // cached: not calibrated again
  });
});

describe('the per-layer search', () => {
  // Every combination, for small random instances: the most gain within the cost, then the least cost.
  const brute = (choices: LayerOption[][], fits: (cost: number, gain: number) => boolean, better: (a: [number, number], b: [number, number]) => boolean): number[] => {
    let best: { ks: number[]; cost: number; gain: number } | null = null;
    const walk = (l: number, ks: number[], cost: number, gain: number): void => {
      if (l === choices.length) {
        if (fits(cost, gain) && (!best || better([cost, gain], [best.cost, best.gain]))) best = { ks, cost, gain };
        return;
      }
      for (const o of choices[l]) walk(l + 1, [...ks, o.k], cost + o.cost, gain + o.gain);
    };
    walk(0, [], 0, 0);
    return best!.ks;
  };
  const round = (g: number): number => Math.round(g * 10000);
  test('is exact against trying every combination', () => {
    let seed = 7;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let trial = 0; trial < 40; trial++) {
      const choices: LayerOption[][] = Array.from({ length: 4 }, () => [
        { k: 4, cost: 0, gain: 0 },
        ...[3, 2, 1].map((k) => ({ k, cost: rnd() * 0.05, gain: round(rnd() * 0.1) / 10000 })),
      ]);
      const search = new LayerSearch(choices);
      const budget = rnd() * 0.1;
      const within = search.withinCost(budget);
      const expected = brute(choices, (c) => c <= budget + 1e-12, ([c, g], [bc, bg]) => round(g) > round(bg) || (round(g) === round(bg) && c < bc));
      const sum = (ks: number[], f: 'cost' | 'gain'): number => ks.reduce((t, k, l) => t + choices[l].find((o) => o.k === k)![f], 0);
      expect(round(sum(within, 'gain'))).toBe(round(sum(expected, 'gain')));
      expect(sum(within, 'cost')).toBeCloseTo(sum(expected, 'cost'), 12);
      const target = rnd() * choices.reduce((t, layer) => t + Math.max(...layer.map((o) => o.gain)), 0); // reachable
      const least = search.leastCostFor(target);
      const cheapest = brute(choices, (_c, g) => round(g) >= Math.ceil(target * 10000 - 1e-9), ([c], [bc]) => c < bc);
      expect(sum(least, 'cost')).toBeCloseTo(sum(cheapest, 'cost'), 12);
    }
  });
});
