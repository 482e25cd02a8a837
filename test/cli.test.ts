import { spawnSync } from 'node:child_process';
import path from 'node:path';

const cli = path.join(__dirname, '..', 'dist', 'cli', 'main.js');

describe('chai-attn info', () => {
  test('prints the devices and, without a GPU, why CUDA is unavailable', () => {
    const r = spawnSync(process.execPath, [cli, 'info'], { encoding: 'utf8', env: process.env });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^cpu: \d+ threads/m);
    expect(r.stdout).toMatch(/^cuda: (unavailable, .+|driver .+)$/m);
  });

  test('--json prints one parsable object', () => {
    const r = spawnSync(process.execPath, [cli, 'info', '--json'], { encoding: 'utf8', env: process.env });
    expect(r.status).toBe(0);
    const info = JSON.parse(r.stdout) as { build: { backends: string[] }; devices: { cpu: { threads: number } } };
    expect(info.build.backends).toContain('cpu');
    expect(info.devices.cpu.threads).toBeGreaterThan(0);
  });
});

describe('chai-attn calibrate, eval and generate --plan', () => {
  const fs = require('node:fs') as typeof import('node:fs');
  const os = require('node:os') as typeof import('node:os');
  const shared = path.join(__dirname, '..', '..', 'shared');
  const model = path.join(shared, 'models', 'stories260K-mha.gguf');
  const data = path.join(shared, 'data', 'stories-calib.txt');
  let dir: string;
  let cache: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chai-cli-'));
    // Spawned commands inherit this: cached plans go to a folder of the test's own.
    cache = path.join(dir, 'cache');
    process.env.CHAI_CACHE_DIR = cache;
    // A plan for stories260K-mha that later tests use: layers 3 and 4 at 4 clusters of 8 heads.
    fs.writeFileSync(
      path.join(dir, 'sweep.json'),
      JSON.stringify({ version: 1, model: { layers: 5, heads: 8, kvHeads: 8, headDim: 8 }, t0: 5, method: 'agglomerative', representative: 'first', seed: 0, restarts: 10, layers: [8, 8, 8, 4, 4].map((clusters) => ({ clusters })) }),
    );
  });
  afterAll(() => {
    delete process.env.CHAI_CACHE_DIR;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('calibrate: a plan within the KL budget, its record, the chart, and the cached copy for --plan auto', () => {
    const out = path.join(dir, 'plan.json');
    const plot = path.join(dir, 'chart.svg');
    const r = spawnSync(process.execPath, [cli, 'calibrate', '--model', model, '--data', data, '--out', out, '--plot', plot, '--windows', '4', '--window-tokens', '32'], { encoding: 'utf8', env: process.env });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^ {2}KL\(full \|\| CHAI\): [\d.]+ nats\/token; top-1 agreement [\d.]+%$/m);
    expect(r.stdout).toMatch(/^ {2}K\+V cache bytes saved: [\d.]+%$/m);
    const plan = JSON.parse(fs.readFileSync(out, 'utf8'));
    expect(plan).toMatchObject({ version: 1, model: { layers: 5, heads: 8, kvHeads: 8, headDim: 8 }, t0: 5, method: 'kmeans', representative: 'medoid' });
    const c = plan.calibration;
    expect(c).toMatchObject({ rule: 'kl-budget', budget: { maxKl: 0.02 }, windows: 4, windowTokens: 32 });
    expect(c.textSha256).toBe(require('node:crypto').createHash('sha256').update(fs.readFileSync(data)).digest('hex'));
    expect(c.measured.klMean).toBeLessThanOrEqual(0.02);
    expect(c.measured.bytesSavedFraction).toBeGreaterThan(0);
    const svg = fs.readFileSync(plot, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('chosen');
    const cached = fs.readdirSync(cache);
    expect(cached).toHaveLength(1);
    expect(JSON.parse(fs.readFileSync(path.join(cache, cached[0]), 'utf8'))).toEqual(plan);
  });

  test('calibrate --rule elbow keeps the inertia curves; --no-cache leaves the cache alone', () => {
    const out = path.join(dir, 'elbow.json');
    const before = fs.readdirSync(cache).map((f) => fs.readFileSync(path.join(cache, f), 'utf8'));
    const r = spawnSync(process.execPath, [cli, 'calibrate', '--model', model, '--data', data, '--out', out, '--rule', 'elbow', '--no-cache', '--windows', '4', '--window-tokens', '32', '--keep-first-layers', '1'], { encoding: 'utf8', env: process.env });
    expect(r.status).toBe(0);
    const plan = JSON.parse(fs.readFileSync(out, 'utf8'));
    expect(plan.calibration.rule).toBe('elbow');
    expect(plan.layers[0].clusters).toBe(8);
    for (const curve of plan.calibration.inertia as number[][]) {
      expect(curve).toHaveLength(8);
      expect(curve[7]).toBeCloseTo(0, 9); // 8 clusters of 8 heads: no spread left
      expect(curve[0]).toBeGreaterThan(curve[7]);
    }
    expect(fs.readdirSync(cache).map((f) => fs.readFileSync(path.join(cache, f), 'utf8'))).toEqual(before);
  });

  test('eval prints the figures the plan records, for its own text', () => {
    const r = spawnSync(process.execPath, [cli, 'eval', '--model', model, '--data', data, '--plan', path.join(dir, 'plan.json'), '--windows', '4', '--window-tokens', '64'], { encoding: 'utf8', env: process.env });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/calibrated by kl-budget \(maxKl 0.02\)/);
    expect(r.stdout).toMatch(/^ {2}measured at calibration: KL/m);
    expect(r.stdout).toMatch(/^perplexity: full [\d.]+, CHAI [\d.]+ \([+-][\d.]+%\)$/m);
    expect(r.stdout).toMatch(/^K\+V cache bytes saved: [\d.]+%$/m);
  });

  test('eval --json reports the documented fields', () => {
    const planFile = path.join(dir, 'sweep.json');
    const r = spawnSync(process.execPath, [cli, 'eval', '--model', model, '--data', data, '--plan', planFile, '--windows', '4', '--window-tokens', '64', '--json'], { encoding: 'utf8', env: process.env });
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout);
    for (const key of ['perplexityFull', 'perplexityChai', 'klMean', 'top1Agreement', 'kvBytesFull', 'kvBytesChai', 'kBytesFull', 'kBytesChai', 'decodeTokensPerSecondFull', 'decodeTokensPerSecondChai']) {
      expect(typeof report[key]).toBe('number');
    }
    expect(report.kBytesChai / report.kBytesFull).toBeCloseTo((3 * 8 + 4 + 4) / 40, 6);
    expect(report.kvBytesChai).toBeLessThan(report.kvBytesFull);
    expect(report.klMean).toBeGreaterThan(0);
    expect(report.top1Agreement).toBeGreaterThan(0.5);
  });

  test('bench --json measures full attention and a plan', () => {
    const planFile = path.join(dir, 'sweep.json');
    const r = spawnSync(process.execPath, [cli, 'bench', '--model', model, '--plan', planFile, '--sessions', '1,2', '--json'], { encoding: 'utf8', env: process.env });
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { rows: { attention: string; sessions: number; prefillTokensPerSecond: number; decodeTokensPerSecond: number }[] };
    expect(out.rows.map((row) => [row.attention, row.sessions])).toEqual([
      ['full attention', 1],
      ['full attention', 2],
      ['CHAI plan', 1],
      ['CHAI plan', 2],
    ]);
    for (const row of out.rows) expect(row.decodeTokensPerSecond).toBeGreaterThan(0);
  });

  test('generate --plan --json adds cache stats; a plan for another model is E_PLAN_MISMATCH', () => {
    const planFile = path.join(dir, 'sweep.json');
    const r = spawnSync(process.execPath, [cli, 'generate', '--model', model, '--prompt', 'Once upon a time', '--temperature', '0', '--max-tokens', '8', '--plan', planFile, '--json'], { encoding: 'utf8', env: process.env });
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.tokens).toHaveLength(8);
    expect(out.cache.bytesSaved).toBeGreaterThan(0);
    const gqa = path.join(shared, 'models', 'stories260K.gguf');
    const bad = spawnSync(process.execPath, [cli, 'generate', '--model', gqa, '--prompt', 'Hi', '--plan', planFile], { encoding: 'utf8', env: process.env });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/E_PLAN_MISMATCH/);
  });

  test('--plan auto calibrates on the built-in text when no plan is cached, once', () => {
    const planted = path.join(dir, 'planted.gguf');
    require('../lib').writeSyntheticLlama(planted, { layers: 2, embeddingLength: 32, heads: 4, kvHeads: 4, feedForwardLength: 48, vocabSize: 300, seed: 5, plantedGroups: [[0, 1], [2, 3]], attentionScale: 2, logitScale: 8 });
    const args = [cli, 'generate', '--model', planted, '--prompt', 'Once upon a time', '--temperature', '0', '--max-tokens', '4', '--plan', 'auto'];
    const first = spawnSync(process.execPath, args, { encoding: 'utf8', env: process.env });
    expect(first.status).toBe(0);
    expect(first.stderr).toMatch(/no cluster plan cached for .*: calibrating on the built-in text/);
    const second = spawnSync(process.execPath, [...args, '--json'], { encoding: 'utf8', env: process.env });
    expect(second.status).toBe(0);
    expect(second.stderr).toBe('');
    expect(JSON.parse(second.stdout).cache.bytesSaved).toBeGreaterThan(0);
  });
});
