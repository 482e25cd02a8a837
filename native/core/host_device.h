// CHAI_HOST_DEVICE marks small helpers that run on the host and inside CUDA kernels alike.
#pragma once

#ifdef __CUDACC__
#define CHAI_HOST_DEVICE __host__ __device__
#else
#define CHAI_HOST_DEVICE
#endif
