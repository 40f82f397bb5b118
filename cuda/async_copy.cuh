// async_copy.cuh — cp.async (global to shared memory copies that bypass registers, sm_80+) behind
// portable functions, for multi-stage (double-buffered) tile loaders. Three builds of one call:
//   sm_80+            the PTX instructions;
//   older GPUs        a plain synchronous copy (commit and wait do nothing);
//   the CPU emulator  (cuda/emu) the copy waits in the thread's queue until the cp_async_wait that
//                     PTX says completes it — the latest legal moment — so a read of the buffer
//                     before that wait (and the __syncthreads after it) sees the old contents.
// Usage per stage: issue cp_async for the next tile, cp_async_commit(); before reading a tile,
// cp_async_wait<stages still in flight>() then __syncthreads() (the wait covers only the calling
// thread's copies; the barrier publishes every thread's).
#pragma once

#include <cuda_runtime.h>  // the emulator's stand-in under FASTCONV_CUDA_EMU

#include <cstring>

namespace fastconv {
namespace gpu {

// Copies Bytes (4, 8 or 16; both addresses aligned to it) from global `gmem` to shared `smem`, or
// writes Bytes zeros when !valid (nothing is read then, but pass a valid address anyway, e.g. the
// tensor's base): the tile loader's bounds check without a branch around the copy.
template <int Bytes>
__device__ __forceinline__ void cp_async(void* smem, const void* gmem, bool valid = true) {
  static_assert(Bytes == 4 || Bytes == 8 || Bytes == 16, "cp.async copies 4, 8 or 16 bytes");
#if defined(FASTCONV_CUDA_EMU)
  ::emu::async_copy(smem, gmem, Bytes, valid ? Bytes : 0);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int src_bytes = valid ? Bytes : 0;
  if constexpr (Bytes == 16) {  // .cg: bypass L1, the usual choice for streamed tiles
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(src_bytes));
  } else {  // .cg takes only 16 bytes
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(dst), "l"(gmem), "n"(Bytes),
                 "r"(src_bytes));
  }
#else
  if (valid) memcpy(smem, gmem, Bytes);
  else memset(smem, 0, Bytes);
#endif
}

// Closes the group of copies this thread issued since the last commit.
__device__ __forceinline__ void cp_async_commit() {
#if defined(FASTCONV_CUDA_EMU)
  ::emu::async_commit();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}

// Waits until at most `Pending` of this thread's committed groups are still in flight (0: all).
template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
#if defined(FASTCONV_CUDA_EMU)
  ::emu::async_wait(Pending);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending));
#endif
}

}  // namespace gpu
}  // namespace fastconv
