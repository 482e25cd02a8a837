// CHAI_X86: whether this build targets x86-64, where the vector kernels (compiled per function with
// target attributes and chosen at run time) use the intrinsics of <immintrin.h>.
#pragma once

#if defined(__x86_64__) || defined(_M_X64)
#define CHAI_X86 1
#include <immintrin.h>
#else
#define CHAI_X86 0
#endif
