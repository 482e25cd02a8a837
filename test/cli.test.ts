import { spawnSync } from 'node:child_process';
import path from 'node:path';

const cli = path.join(__dirname, '..', 'dist', 'cli', 'main.js');

describe('chai-attn info', () => {
  test('prints the devices and, without a GPU, why CUDA is unavailable', () => {
    const r = spawnSync(process.execPath, [cli, 'info'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^cpu: \d+ threads/m);
    expect(r.stdout).toMatch(/^cuda: (unavailable, .+|driver .+)$/m);
  });

  test('--json prints one parsable object', () => {
    const r = spawnSync(process.execPath, [cli, 'info', '--json'], { encoding: 'utf8' });
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
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chai-cli-'));
    // A plan for stories260K-mha that later tests use: layers 3 and 4 at 4 clusters of 8 heads.
    fs.writeFileSync(
      path.join(dir, 'sweep.json'),
      JSON.stringify({ version: 1, model: { layers: 5, heads: 8, kvHeads: 8, headDim: 8 }, t0: 5, method: 'agglomerative', representative: 'first', seed: 0, restarts: 10, layers: [8, 8, 8, 4, 4].map((clusters) => ({ clusters })) }),
    );
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('calibrate writes a plan that fits the model and an SVG with one curve per layer', () => {
    const out = path.join(dir, 'plan.json');
    const plot = path.join(dir, 'elbow.svg');
    const r = spawnSync(process.execPath, [cli, 'calibrate', '--model', model, '--data', data, '--out', out, '--plot', plot, '--windows', '16', '--keep-first-layers', '1'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const plan = JSON.parse(fs.readFileSync(out, 'utf8'));
    expect(plan).toMatchObject({ version: 1, model: { layers: 5, heads: 8, kvHeads: 8, headDim: 8 }, t0: 5, method: 'kmeans', representative: 'medoid' });
    expect(plan.layers[0].clusters).toBe(8);
    expect(plan.calibration.inertia).toHaveLength(5);
    for (const curve of plan.calibration.inertia as number[][]) {
      expect(curve).toHaveLength(8);
      expect(curve[7]).toBeCloseTo(0, 9); // 8 clusters of 8 heads: no spread left
      expect(curve[0]).toBeGreaterThan(curve[7]);
    }
    const svg = fs.readFileSync(plot, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.match(/<polyline/g)).toHaveLength(5);
  });

  test('eval --json reports the documented fields', () => {
    const planFile = path.join(dir, 'sweep.json');
    const r = spawnSync(process.execPath, [cli, 'eval', '--model', model, '--data', data, '--plan', planFile, '--windows', '4', '--window-tokens', '64', '--json'], { encoding: 'utf8' });
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
    const r = spawnSync(process.execPath, [cli, 'bench', '--model', model, '--plan', planFile, '--sessions', '1,2', '--json'], { encoding: 'utf8' });
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
    const r = spawnSync(process.execPath, [cli, 'generate', '--model', model, '--prompt', 'Once upon a time', '--temperature', '0', '--max-tokens', '8', '--plan', planFile, '--json'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.tokens).toHaveLength(8);
    expect(out.cache.bytesSaved).toBeGreaterThan(0);
    const gqa = path.join(shared, 'models', 'stories260K.gguf');
    const bad = spawnSync(process.execPath, [cli, 'generate', '--model', gqa, '--prompt', 'Hi', '--plan', planFile], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/E_PLAN_MISMATCH/);
  });
});
