// common.cuh — what every fastconv CUDA file needs: error checking that throws, ceil_div, launch
// checks, and the int32 index guard. Included by cuda/*.cu only (no pybind11 here).
//
// Errors: CUDA_CHECK(call) and check_launch(name) throw fastconv::gpu::CudaError (a
// std::runtime_error, which pybind11 turns into Python's RuntimeError) naming the call, the CUDA
// error string, file and line. A launch is checked with cudaGetLastError right after it (bad
// configuration, missing kernel image for this GPU); faults that happen while the kernel runs
// surface at the next synchronising call — set FASTCONV_CUDA_SYNC=1 to synchronise after every
// launch and pin such an error to the kernel that caused it (debugging; slow).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "fastconv/error.h"
#include "fastconv/params.h"

namespace fastconv {
namespace gpu {

struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line);
// cudaGetLastError after a launch (and a stream sync when FASTCONV_CUDA_SYNC=1); throws CudaError.
void check_launch(const char* kernel, cudaStream_t stream, const char* file, int line);
// Multiprocessors of the current device (cached per device).
int sm_count();

#define CUDA_CHECK(expr)                                                                 \
  do {                                                                                   \
    const cudaError_t fc_err_ = (expr);                                                  \
    if (fc_err_ != cudaSuccess) ::fastconv::gpu::throw_cuda_error(fc_err_, #expr, __FILE__, __LINE__); \
  } while (0)

#define CHECK_LAUNCH(name, stream) ::fastconv::gpu::check_launch(name, stream, __FILE__, __LINE__)

FASTCONV_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Every kernel launch goes through here: the <<<>>> launch under nvcc. Built by a host compiler for
// the CPU emulator (cuda/emu, -DFASTCONV_CUDA_EMU; tests only) the same kernels run on CPU fibers:
// this is the one seam between the kernels and the emulator. Arguments convert to the kernel's
// parameter types as in a <<<>>> launch. launch_with_shared adds `shared_bytes` of dynamic shared
// memory (the kernel reaches it through dynamic_shared<T>(), cuda/dynamic_shared.cuh; above 48 KB
// the kernel needs cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, n)).
template <class... Params, class... Args>
inline void launch_with_shared(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                               cudaStream_t stream, Args&&... args) {
#ifdef FASTCONV_CUDA_EMU
  ::emu::launch(kernel, grid, block, shared_bytes, stream, std::forward<Args>(args)...);
#else
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
#endif
}

template <class... Params, class... Args>
inline void launch(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream,
                   Args&&... args) {
  launch_with_shared(kernel, grid, block, 0, stream, std::forward<Args>(args)...);
}

// 1-D grid for `total` threads in blocks of `threads` (grid.x may go up to 2^31-1).
inline dim3 grid_1d(int64_t total, int threads) {
  return dim3(static_cast<unsigned>(ceil_div(total > 0 ? total : 1, threads)));
}

// The kernels index with int32 (fast division, fewer registers); every tensor must fit.
constexpr int64_t kMaxIndex = (int64_t(1) << 31) - 1;
inline void check_int32(const Shape4& s, const char* name) {
  FC_CHECK(s.numel() <= kMaxIndex, "the CUDA kernels index with int32: ", name, " has ",
           s.numel(), " elements, more than 2^31 - 1; split the batch");
}

}  // namespace gpu
}  // namespace fastconv
