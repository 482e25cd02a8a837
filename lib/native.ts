import path from 'node:path';
import { ChaiError } from './errors';

/** The raw addon surface (native/addon/addon.cpp). Wrapped by typed functions elsewhere. */
export interface NativeBinding {
  devices(): NativeDevices;
  buildInfo(): { backends: string[]; cudaArchitectures: number[]; compiler: string; napiVersion: number };
  matmul(device: string, x: Float32Array, n: number, k: number, w: Float32Array | Uint16Array, wDtype: string, m: number): Promise<Float32Array>;
  rmsnorm(device: string, x: Float32Array, n: number, d: number, weight: Float32Array, eps: number): Promise<Float32Array>;
  softmax(device: string, x: Float32Array, n: number, d: number): Promise<Float32Array>;
  toHalf(values: Float32Array, dtype: 'f16' | 'bf16'): Uint16Array;
  fromHalf(bits: Uint16Array, dtype: 'f16' | 'bf16'): Float32Array;
  loadModel(path: string, device: string, threads: number, kvCacheType: 'f32' | 'f16', kvCacheBytes: number): Promise<unknown>;
  disposeModel(model: unknown): void;
  kvPoolInfo(model: unknown): unknown;
  createSession(model: unknown, maxTokens: number, plan: NativePlan | undefined, prefixCache: boolean): unknown;
  evaluateBatch(sessions: unknown[], tokens: Int32Array[], allLogits: boolean[]): Promise<(Float32Array | { code: string; message: string })[]>;
  rewind(session: unknown, tokens: number): void;
  reusePrefix(session: unknown, prompt: Int32Array): number;
  prefixCacheInfo(model: unknown): NativePrefixCacheInfo;
  clearPrefixCache(model: unknown): void;
  sessionInfo(session: unknown): unknown;
  disposeSession(session: unknown): void;
  assignment(session: unknown, layer: number): { membership: number[]; representatives: number[] } | null;
  windowInertia(session: unknown, tokens: Int32Array, t0: number, seed: number, restarts: number): Promise<Float64Array>;
}

export interface NativePrefixCacheInfo {
  lookups: number;
  hits: number;
  lookupTokens: number;
  hitTokens: number;
  evictedPages: number;
  nodes: number;
  pages: number;
}

/** A validated cluster plan as the addon takes it. */
export interface NativePlan {
  t0: number;
  method: 'kmeans' | 'agglomerative';
  representative: 'medoid' | 'first';
  seed: number;
  restarts: number;
  clusters: number[];
}

export interface NativeDevices {
  cpu: { threads: number; features: string; simd: string };
  cuda: {
    compiled: boolean;
    available: boolean;
    reason: string | null;
    driverVersion: number;
    runtimeVersion: number;
    devices: { index: number; name: string; computeCapability: string; totalMemory: number; multiprocessors: number }[];
  };
}

export const packageRoot = path.join(__dirname, '..');

let binding: NativeBinding | undefined;

/** Loads the addon once: a matching prebuild, else the local build (node-gyp-build decides). */
export function native(): NativeBinding {
  if (binding) return binding;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const load = require('node-gyp-build') as (dir: string) => NativeBinding;
    binding = load(packageRoot);
    return binding;
  } catch (error) {
    throw new ChaiError(
      'E_NATIVE_LOAD',
      `the chai-attention native addon could not be loaded (${(error as Error).message}). ` +
        'Reinstall the package, or build it from source with `npm run build:native` (needs cmake and a C++17 compiler).',
      { cause: error },
    );
  }
}
