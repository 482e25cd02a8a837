// The install a user gets: `npm run prebuildify`, `npm pack`, then the tarball installed into an
// empty folder whose PATH holds node and npm but no cmake, g++, cc or nvcc, and used there.
// The release steps run in a copy of the sources: prebuildify moves and strips build/Release,
// which must not happen under the other test files that have the addon loaded.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.join(__dirname, '..');

function npmEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  // Drop npm_* variables of the surrounding `npm test` so the install behaves as a user's would.
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  return { ...env, ...extra };
}

function which(command: string): string {
  return execFileSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' }).trim();
}

describe('packed tarball', () => {
  let work: string;
  let src: string;
  beforeAll(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'chai-pack-'));
    src = path.join(work, 'src');
    const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard'], { cwd: root, encoding: 'utf8' });
    for (const file of files.split('\n').filter(Boolean)) {
      if (!fs.existsSync(path.join(root, file))) continue; // deleted but not yet committed
      fs.mkdirSync(path.dirname(path.join(src, file)), { recursive: true });
      fs.copyFileSync(path.join(root, file), path.join(src, file));
    }
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(src, 'node_modules'));
  });
  afterAll(() => {
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('installs and runs with no compiler on PATH', () => {
    const prebuild = spawnSync('npm', ['run', 'prebuildify'], { cwd: src, encoding: 'utf8', env: npmEnv({}) });
    if (prebuild.status !== 0) throw new Error(`npm run prebuildify failed:\n${prebuild.stdout}\n${prebuild.stderr}`);
    const prebuilt = fs.readdirSync(path.join(src, 'prebuilds', `${process.platform}-${process.arch}`));
    expect(prebuilt.some((f) => f.endsWith('.node'))).toBe(true);

    const packed = execFileSync('npm', ['pack', '--silent', '--pack-destination', work], { cwd: src, encoding: 'utf8', env: npmEnv({}) });
    const tarball = path.join(work, packed.trim().split('\n').pop()!);
    expect(fs.existsSync(tarball)).toBe(true);

    // A bin folder with only what a user without build tools has.
    const bin = path.join(work, 'bin');
    fs.mkdirSync(bin);
    for (const tool of ['node', 'npm', 'npx', 'sh', 'bash', 'env']) fs.symlinkSync(which(tool), path.join(bin, tool));
    const app = path.join(work, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    const env = npmEnv({ PATH: bin });
    for (const tool of ['cmake', 'g++', 'cc', 'nvcc']) {
      expect(spawnSync('sh', ['-c', `command -v ${tool}`], { env }).status).not.toBe(0);
    }

    const install = spawnSync('npm', ['install', '--no-audit', '--no-fund', tarball], { cwd: app, encoding: 'utf8', env });
    if (install.status !== 0) throw new Error(`npm install failed:\n${install.stdout}\n${install.stderr}`);

    const script = `
      const chai = require('chai-attention');
      const w = { dtype: 'f16', rows: 2, cols: 3, data: chai.toHalf(new Float32Array([1, 2, 3, -1, 0.5, 2]), 'f16') };
      chai.matmul(new Float32Array([1, 1, 1]), 1, w, { device: 'auto' }).then((y) => {
        console.log(JSON.stringify({ y: Array.from(y), backends: chai.buildInfo().backends, calibrationText: chai.BUILTIN_CALIBRATION_TEXT.length }));
      });`;
    const run = spawnSync('node', ['-e', script], { cwd: app, encoding: 'utf8', env });
    if (run.status !== 0) throw new Error(`using the installed package failed:\n${run.stderr}`);
    const out = JSON.parse(run.stdout.trim()) as { y: number[]; backends: string[]; calibrationText: number };
    expect(out.y).toEqual([6, 1.5]);
    expect(out.calibrationText).toBeGreaterThan(8000); // the built-in calibration text ships with the package
    expect(out.backends).toContain('cpu');
    // Where nvcc was there to build the prebuild, the binary carries the CUDA backend.
    if (spawnSync('sh', ['-c', 'command -v nvcc']).status === 0) expect(out.backends).toContain('cuda');
  }, 600000);

  test('binding.gyp compiles every C++ source of the CMake build', () => {
    // A source missing there still links (a shared object may leave symbols undefined) and fails
    // only when a user of the fallback reaches the missing code.
    const cmake = fs.readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8');
    const core = /set\(CHAI_CORE_SOURCES([^)]*)\)/.exec(cmake);
    if (!core) throw new Error('CHAI_CORE_SOURCES not found in CMakeLists.txt');
    const cmakeSources = core[1].split(/\s+/).filter(Boolean).concat('native/core/no_cuda.cpp');
    const gyp = JSON.parse(fs.readFileSync(path.join(root, 'binding.gyp'), 'utf8')) as { targets: { sources: string[] }[] };
    const gypSources = gyp.targets[0].sources.filter((file) => !file.startsWith('native/addon/'));
    expect([...gypSources].sort()).toEqual([...cmakeSources].sort());
  });

  test('binding.gyp builds the CPU-only addon with node-gyp (the no-cmake fallback)', () => {
    const gyp = spawnSync('npm', ['run', 'build:gyp'], { cwd: src, encoding: 'utf8', env: npmEnv({}) });
    if (gyp.status !== 0) throw new Error(`node-gyp build failed:\n${gyp.stdout}\n${gyp.stderr}`);
    const script = `
      const b = require('./build/Release/chai_attention.node');
      b.matmul('cpu', new Float32Array([1, 2, 3]), 1, 3, new Float32Array([1, -1, 2]), 'f32', 1)
        .then((y) => console.log(JSON.stringify({ y: Array.from(y), info: b.buildInfo(), reason: b.devices().cuda.reason })));`;
    const run = spawnSync('node', ['-e', script], { cwd: src, encoding: 'utf8' });
    if (run.status !== 0) throw new Error(run.stderr);
    const out = JSON.parse(run.stdout.trim()) as { y: number[]; info: { backends: string[] }; reason: string };
    expect(out.y).toEqual([5]);
    expect(out.info.backends).toEqual(['cpu']);
    expect(out.reason).toMatch(/no CUDA backend/);
  }, 600000);
});
