// dynamic_shared.cuh — a kernel's dynamic shared memory (the launch's shared_bytes, see
// launch_with_shared in common.cuh) as a typed pointer: the extern __shared__ array under nvcc, the
// running block's buffer in the CPU emulator (cuda/emu), which poisons it with NaN bytes at every
// block start like the static __shared__ arrays. Needed once a kernel's stages exceed the 48 KB of
// static shared memory (e.g. three 128-wide double-buffered tiles).
#pragma once

#include <cuda_runtime.h>  // the emulator's stand-in under FASTCONV_CUDA_EMU

namespace fastconv {
namespace gpu {

// 16-byte aligned, so float4 and 16-byte cp.async fit any multiple-of-16 offset.
template <class T>
__device__ __forceinline__ T* dynamic_shared() {
#if defined(FASTCONV_CUDA_EMU)
  return static_cast<T*>(::emu::dynamic_shared());
#else
  extern __shared__ __align__(16) unsigned char fc_dynamic_shared[];
  return reinterpret_cast<T*>(fc_dynamic_shared);
#endif
}

}  // namespace gpu
}  // namespace fastconv
