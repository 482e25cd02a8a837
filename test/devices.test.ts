import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { buildInfo, devices, matmul, resolveDevice } from '../lib';

const dist = path.join(__dirname, '..', 'dist');
// The kernel level a fresh process reports with CHAI_SIMD set (the level is read once per process).
function levelWith(simd: string) {
  const code = `try { console.log(require(${JSON.stringify(dist)}).devices().cpu.simdKernels) } catch (e) { console.log(e.code, e.message) }`;
  return spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', env: { ...process.env, CHAI_SIMD: simd } }).stdout.trim();
}

describe('devices and build info', () => {
  test('the CPU is listed with its threads and kernel level', () => {
    const d = devices();
    expect(d.cpu.threads).toBeGreaterThan(0);
    expect(['scalar', 'avx2', 'avx512']).toContain(d.cpu.simdKernels);
  });

  test('CHAI_SIMD caps the kernel level and rejects unknown levels', () => {
    expect(levelWith('scalar')).toBe('scalar');
    const best = devices().cpu.simdKernels;
    expect(levelWith('avx512')).toBe(best); // never above what the CPU has
    if (best !== 'scalar') expect(levelWith('avx2')).toBe('avx2');
    expect(levelWith('sse9')).toMatch(/^E_INVALID_ARGUMENT .*CHAI_SIMD='sse9'.*scalar, avx2 or avx512/);
  });

  test('CUDA is either available with devices or unavailable with a precise reason', () => {
    const { cuda } = devices();
    if (cuda.available) {
      expect(cuda.devices.length).toBeGreaterThan(0);
      expect(cuda.reason).toBeNull();
    } else {
      expect(cuda.devices).toHaveLength(0);
      // error 35 (no or too old driver), 100 (no device), or a build without CUDA
      expect(cuda.reason).toMatch(/driver|device|nvcc/);
    }
  });

  test('the build lists its backends and, with CUDA, sm_80 and sm_90', () => {
    const b = buildInfo();
    expect(b.backends).toContain('cpu');
    if (b.backends.includes('cuda')) expect(b.cudaArchitectures).toEqual(expect.arrayContaining([80, 90]));
    else expect(b.cudaArchitectures).toEqual([]);
  });

  test("'auto' falls back to the CPU and says why when CUDA is unavailable", () => {
    const r = resolveDevice('auto');
    if (devices().cuda.available) expect(r.device).toBe('cuda:0');
    else {
      expect(r.device).toBe('cpu');
      expect(r.why).toMatch(/CUDA unavailable/);
    }
  });

  test('asking for a CUDA device that cannot be used is E_DEVICE_UNAVAILABLE', async () => {
    const w = { dtype: 'f32' as const, rows: 1, cols: 1, data: new Float32Array([2]) };
    const bad = `cuda:${devices().cuda.devices.length}` as const;
    await expect(matmul(new Float32Array([1]), 1, w, { device: bad })).rejects.toMatchObject({ code: 'E_DEVICE_UNAVAILABLE' });
  });
});
