import { ChaiError, callNative, callNativeSync, optionsArgument } from './errors';
import { DeviceRequest, resolveDevice } from './device';
import { native } from './native';

/** Storage types of weight matrices. f16 and bf16 weights are passed as raw bits. */
export type WeightDType = 'f32' | 'f16' | 'bf16';
export type HalfDType = 'f16' | 'bf16';

/** A row-major weight matrix [rows, cols] as the kernels read it. */
export interface WeightMatrix {
  dtype: WeightDType;
  rows: number;
  cols: number;
  /** Float32Array for 'f32'; Uint16Array of raw bits for 'f16' / 'bf16'. */
  data: Float32Array | Uint16Array;
}

export interface OpOptions {
  /** Default 'auto': the first working CUDA device, else the CPU. */
  device?: DeviceRequest;
}

function requireRows(what: string, data: Float32Array, rows: number, cols: number): void {
  if (!(data instanceof Float32Array)) throw new ChaiError('E_INVALID_ARGUMENT', `${what} must be a Float32Array`);
  if (!Number.isInteger(rows) || rows < 1 || !Number.isInteger(cols) || cols < 1) {
    throw new ChaiError('E_INVALID_ARGUMENT', `${what}: rows and cols must be positive integers, got ${rows} × ${cols}`);
  }
  if (data.length !== rows * cols) {
    throw new ChaiError('E_INVALID_ARGUMENT', `${what}: expected ${rows} × ${cols} = ${rows * cols} values, got ${data.length}`);
  }
}

/** Rounds float values to f16 or bf16 (nearest even), returning the raw bits. */
export function toHalf(values: Float32Array, dtype: HalfDType): Uint16Array {
  return callNativeSync(() => native().toHalf(values, dtype));
}

/** Decodes f16 or bf16 bits to floats. */
export function fromHalf(bits: Uint16Array, dtype: HalfDType): Float32Array {
  return callNativeSync(() => native().fromHalf(bits, dtype));
}

/** y[rows, w.rows] = x[rows, w.cols] · wᵀ, accumulated in f32, weights read in their stored type. */
export async function matmul(x: Float32Array, rows: number, w: WeightMatrix, options: OpOptions = {}): Promise<Float32Array> {
  if (typeof w !== 'object' || w === null) throw new ChaiError('E_INVALID_ARGUMENT', 'matmul needs a weight matrix { dtype, rows, cols, data }');
  requireRows('matmul input', x, rows, w.cols);
  const { device } = resolveDevice(optionsArgument(options, 'matmul').device);
  return callNative(() => native().matmul(device, x, rows, w.cols, w.data, w.dtype, w.rows));
}

/** Each row divided by its root mean square (plus eps) and scaled by `weight`. */
export async function rmsnorm(x: Float32Array, rows: number, weight: Float32Array, eps = 1e-5, options: OpOptions = {}): Promise<Float32Array> {
  if (!(weight instanceof Float32Array)) throw new ChaiError('E_INVALID_ARGUMENT', 'rmsnorm weight must be a Float32Array');
  requireRows('rmsnorm input', x, rows, weight.length);
  const { device } = resolveDevice(optionsArgument(options, 'rmsnorm').device);
  return callNative(() => native().rmsnorm(device, x, rows, weight.length, weight, eps));
}

/** Softmax of every row of x[rows, cols]. */
export async function softmax(x: Float32Array, rows: number, cols: number, options: OpOptions = {}): Promise<Float32Array> {
  requireRows('softmax input', x, rows, cols);
  const { device } = resolveDevice(optionsArgument(options, 'softmax').device);
  return callNative(() => native().softmax(device, x, rows, cols));
}
