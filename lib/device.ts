import { ChaiError, callNativeSync } from './errors';
import { native, NativeDevices } from './native';

/** Where work runs: the CPU backend or one CUDA device. */
export type Device = 'cpu' | `cuda:${number}`;
/** What a caller may ask for: a device, or 'auto' (the first working GPU, else the CPU). */
export type DeviceRequest = Device | 'auto';

export interface CudaDevice {
  index: number;
  name: string;
  /** e.g. "9.0" for an H100 */
  computeCapability: string;
  totalMemoryBytes: number;
  multiprocessors: number;
}

export interface DeviceList {
  cpu: { threads: number; features: string[]; simdKernels: string };
  cuda: {
    /** The addon contains the CUDA backend. */
    compiled: boolean;
    available: boolean;
    /** Why CUDA cannot be used, when it cannot. */
    reason: string | null;
    /** e.g. "13.0"; null when no driver is installed. */
    driverVersion: string | null;
    runtimeVersion: string;
    devices: CudaDevice[];
  };
}

export interface BuildInfo {
  version: string;
  backends: ('cpu' | 'cuda')[];
  /** CUDA architectures with code in this binary, e.g. [80, 90]. */
  cudaArchitectures: number[];
  compiler: string;
  napiVersion: number;
}

function cudaVersion(v: number): string {
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}

function fromNativeDevices(d: NativeDevices): DeviceList {
  return {
    cpu: { threads: d.cpu.threads, features: d.cpu.features.split(' ').filter(Boolean), simdKernels: d.cpu.simd },
    cuda: {
      compiled: d.cuda.compiled,
      available: d.cuda.available,
      reason: d.cuda.reason,
      driverVersion: d.cuda.driverVersion > 0 ? cudaVersion(d.cuda.driverVersion) : null,
      runtimeVersion: cudaVersion(d.cuda.runtimeVersion),
      devices: d.cuda.devices.map((g) => ({
        index: g.index,
        name: g.name,
        computeCapability: g.computeCapability,
        totalMemoryBytes: g.totalMemory,
        multiprocessors: g.multiprocessors,
      })),
    },
  };
}

/** The CPU and each CUDA device, or the reason CUDA is unavailable. */
export function devices(): DeviceList {
  return fromNativeDevices(callNativeSync(() => native().devices()));
}

/** Which backends and CUDA architectures this binary contains. */
export function buildInfo(): BuildInfo {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { version } = require('../package.json') as { version: string };
  const b = callNativeSync(() => native().buildInfo());
  return { version, ...b, backends: b.backends as BuildInfo['backends'] };
}

let cachedDevices: DeviceList | undefined;

/**
 * Turns a request into a concrete device. 'auto' picks cuda:0 when CUDA works and says why not
 * otherwise; an explicit CUDA device that cannot be used is an E_DEVICE_UNAVAILABLE error.
 */
export function resolveDevice(request: DeviceRequest = 'auto'): { device: Device; why: string } {
  if (request === 'cpu') return { device: 'cpu', why: 'requested' };
  cachedDevices ??= devices(); // devices do not come and go within a process
  const list = cachedDevices;
  if (request === 'auto') {
    if (list.cuda.available) return { device: 'cuda:0', why: `CUDA device 0: ${list.cuda.devices[0].name}` };
    return { device: 'cpu', why: `CUDA unavailable: ${list.cuda.reason}` };
  }
  const match = /^cuda:(\d+)$/.exec(request);
  if (!match) {
    throw new ChaiError('E_INVALID_ARGUMENT', `unknown device '${request}': use 'auto', 'cpu' or 'cuda:N'`, { option: 'device' });
  }
  if (!list.cuda.available) {
    throw new ChaiError('E_DEVICE_UNAVAILABLE', `${request} requested but CUDA is unavailable: ${list.cuda.reason}; use device 'cpu' or 'auto'`, { option: 'device' });
  }
  const index = Number(match[1]);
  if (index >= list.cuda.devices.length) {
    throw new ChaiError('E_DEVICE_UNAVAILABLE', `${request} does not exist: this machine has ${list.cuda.devices.length} CUDA device(s)`);
  }
  return { device: request, why: 'requested' };
}

