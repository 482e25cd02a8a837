export { ChaiError, ErrorCode } from './errors';
export { devices, buildInfo, resolveDevice, Device, DeviceRequest, DeviceList, BuildInfo, CudaDevice } from './device';
export { matmul, rmsnorm, softmax, toHalf, fromHalf, WeightMatrix, WeightDType, HalfDType, OpOptions } from './ops';
