import { ChaiError, devices, fromHalf, matmul, rmsnorm, softmax, toHalf, WeightDType, WeightMatrix } from '../lib';
import { randomNonZero, relativeError } from './helpers';

// Float64 references, computed in JS from the same (decoded) inputs.
function matmulRef(x: Float32Array, w: Float32Array, n: number, m: number, k: number): Float64Array {
  const y = new Float64Array(n * m);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let c = 0; c < k; c++) s += x[i * k + c] * w[j * k + c];
      y[i * m + j] = s;
    }
  return y;
}

function weights(values: Float32Array, dtype: WeightDType, rows: number, cols: number): { w: WeightMatrix; decoded: Float32Array } {
  if (dtype === 'f32') return { w: { dtype, rows, cols, data: values }, decoded: values };
  const bits = toHalf(values, dtype);
  return { w: { dtype, rows, cols, data: bits }, decoded: fromHalf(bits, dtype) };
}

const shapes: [number, number, number][] = [
  [1, 1, 1],
  [1, 7, 13],
  [3, 17, 33],
  [37, 65, 129],
  [2, 300, 1000],
];

describe('matmul on the CPU backend', () => {
  for (const dtype of ['f32', 'f16', 'bf16'] as const) {
    for (const [n, m, k] of shapes) {
      test(`${dtype} n=${n} m=${m} k=${k} matches a float64 reference`, async () => {
        const x = randomNonZero(n * k, n * 1000 + k);
        const { w, decoded } = weights(randomNonZero(m * k, m * 7 + k), dtype, m, k);
        const y = await matmul(x, n, w, { device: 'cpu' });
        expect(y).toHaveLength(n * m);
        expect(relativeError(y, matmulRef(x, decoded, n, m, k))).toBeLessThan(1e-5);
      });
    }
  }

  test('f16 rounding is to nearest even and decodes exactly', () => {
    const bits = toHalf(new Float32Array([1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504, 1e6]), 'f16');
    expect(Array.from(bits)).toEqual([0x3c00, 0x3c00, 0x3c02, 0x7bff, 0x7c00]);
    expect(Array.from(fromHalf(bits, 'f16')).slice(0, 4)).toEqual([1, 1, 1 + 2 ** -9, 65504]);
  });

  test('shape mismatches are typed errors', async () => {
    const w: WeightMatrix = { dtype: 'f32', rows: 2, cols: 3, data: new Float32Array(6).fill(1) };
    await expect(matmul(new Float32Array(5), 2, w, { device: 'cpu' })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    const badData: WeightMatrix = { dtype: 'f16', rows: 2, cols: 3, data: new Float32Array(6) };
    await expect(matmul(new Float32Array(3), 1, badData, { device: 'cpu' })).rejects.toBeInstanceOf(ChaiError);
    const shortW: WeightMatrix = { dtype: 'f32', rows: 2, cols: 3, data: new Float32Array(5) };
    await expect(matmul(new Float32Array(3), 1, shortW, { device: 'cpu' })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
  });

  test('an unknown device is a typed error', async () => {
    const w: WeightMatrix = { dtype: 'f32', rows: 1, cols: 1, data: new Float32Array([1]) };
    await expect(matmul(new Float32Array([1]), 1, w, { device: 'tpu' as 'cpu' })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
  });
});

describe('rmsnorm and softmax on the CPU backend', () => {
  for (const [n, d] of [
    [1, 1],
    [3, 7],
    [17, 172],
  ]) {
    test(`rmsnorm n=${n} d=${d}`, async () => {
      const x = randomNonZero(n * d, 11 * n + d, 3);
      const g = randomNonZero(d, 5 + d);
      const ref = new Float64Array(n * d);
      for (let i = 0; i < n; i++) {
        let ss = 0;
        for (let c = 0; c < d; c++) ss += x[i * d + c] ** 2;
        const scale = 1 / Math.sqrt(ss / d + 1e-5);
        for (let c = 0; c < d; c++) ref[i * d + c] = x[i * d + c] * scale * g[c];
      }
      expect(relativeError(await rmsnorm(x, n, g, 1e-5, { device: 'cpu' }), ref)).toBeLessThan(1e-6);
    });

    test(`softmax n=${n} d=${d}`, async () => {
      const x = randomNonZero(n * d, 13 * n + d, 5);
      const ref = new Float64Array(n * d);
      for (let i = 0; i < n; i++) {
        const row = Array.from(x.subarray(i * d, (i + 1) * d));
        const max = Math.max(...row);
        const e = row.map((v) => Math.exp(v - max));
        const sum = e.reduce((a, b) => a + b, 0);
        e.forEach((v, c) => (ref[i * d + c] = v / sum));
      }
      expect(relativeError(await softmax(x, n, d, { device: 'cpu' }), ref)).toBeLessThan(1e-6);
    });
  }
});

describe('CUDA ops against the CPU backend', () => {
  const cuda = devices().cuda;
  if (!cuda.available) {
    // eslint-disable-next-line no-console
    console.log(`skipping CUDA op tests: ${cuda.reason}`);
  }
  const gpuTest = cuda.available ? test : test.skip;
  gpuTest('matmul f16, rmsnorm and softmax agree with the CPU', async () => {
    const [n, m, k] = [5, 97, 255];
    const x = randomNonZero(n * k, 1);
    const { w } = weights(randomNonZero(m * k, 2), 'f16', m, k);
    const cpuY = await matmul(x, n, w, { device: 'cpu' });
    expect(relativeError(await matmul(x, n, w, { device: 'cuda:0' }), cpuY)).toBeLessThan(2e-3);
    const g = randomNonZero(k, 3);
    expect(relativeError(await rmsnorm(x, n, g, 1e-5, { device: 'cuda:0' }), await rmsnorm(x, n, g, 1e-5, { device: 'cpu' }))).toBeLessThan(2e-3);
    expect(relativeError(await softmax(x, n, k, { device: 'cuda:0' }), await softmax(x, n, k, { device: 'cpu' }))).toBeLessThan(2e-3);
  });
});
