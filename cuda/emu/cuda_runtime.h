// cuda_runtime.h — the CPU emulator's stand-in for the CUDA toolkit header (cuda/emu; tests and
// development only, never part of the wheel). Building fastconv's cuda/*.cu with a host C++
// compiler, -DFASTCONV_CUDA_EMU and -Icuda/emu makes `#include <cuda_runtime.h>` land here, so
// the kernels compile unchanged: the CUDA keywords, the device built-ins they use, and the few
// runtime calls of cuda/*.cu. "Device memory" is host memory: a device pointer is a host pointer.
// Kernels are launched through gpu::launch (cuda/common.cuh), which calls emu::launch below.
#pragma once

#ifndef FASTCONV_CUDA_EMU
#error "cuda/emu/cuda_runtime.h is the CPU emulator's stand-in for CUDA; build with -DFASTCONV_CUDA_EMU"
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "simt.h"

// ---- keywords ------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
// One copy per OS worker = per block in flight (simt.h); poisoned at every block start. Not for
// `extern __shared__`: dynamic shared memory goes through dynamic_shared<T>() (dynamic_shared.cuh).
#define __shared__ static thread_local
#define CUDART_VERSION 0  // runtime_version() reports 0: no CUDA runtime here

// ---- runtime API subset (runtime.cpp) ------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorLaunchFailure = 719,
};
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
struct cudaDeviceProp {
  char name[256];
  int major, minor, multiProcessorCount;
};
typedef struct CUstream_st* cudaStream_t;  // as cuda_runtime.h (and ops_cuda.h) declare it

cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorName(cudaError_t err);
const char* cudaGetErrorString(cudaError_t err);
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaMalloc(void** ptr, size_t bytes);
template <class T>
cudaError_t cudaMalloc(T** ptr, size_t bytes) {  // the toolkit's typed overload
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemset(void* ptr, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream = nullptr);
// A kernel may use more than 48 KB of dynamic shared memory only after this raised its limit.
cudaError_t cudaFuncSetAttribute(const void* kernel, cudaFuncAttribute attr, int value);
template <class T>
cudaError_t cudaFuncSetAttribute(T* kernel, cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), attr, value);
}

namespace emu {

// Two emulated devices: 0 with an H100's 132 SMs, 1 with 4 (split plans depend on the count).
// Makes the next cudaGetLastError return err; `why` is kept for last_launch_error().
void set_launch_error(cudaError_t err, const std::string& why);
const std::string& last_launch_error();

// Every launch, in order, for tests that check which kernel ran (the kernel's address) and how.
struct LaunchRecord {
  const void* kernel;
  dim3 grid, block;
  size_t shared_bytes;
};
// The dynamic shared memory `kernel` may use (48 KB unless cudaFuncSetAttribute raised it).
size_t max_dynamic_shared(const void* kernel);
void record_launch(const LaunchRecord& r);
// The launches since the last call, oldest first.
std::vector<LaunchRecord> take_launches();

// gpu::launch's emulated half: converts the arguments to the kernel's parameter types once, as a
// launch does, then runs the grid; a refused launch or a barrier error becomes a launch error.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t,
            Args&&... args) {
  const std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);
  const void* id = reinterpret_cast<const void*>(kernel);
  record_launch({id, grid, block, shared_bytes});
  if (shared_bytes > max_dynamic_shared(id)) {
    set_launch_error(cudaErrorInvalidValue,
                     std::to_string(shared_bytes) + " bytes of dynamic shared memory, more than the "
                     "kernel's limit of " + std::to_string(max_dynamic_shared(id)) +
                     " (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, n) "
                     "raises it)");
    return;
  }
  std::string why;
  if (!run_grid(grid, block, shared_bytes, [&] { std::apply(kernel, params); }, &why)) {
    set_launch_error(why.rfind("invalid launch", 0) == 0 ? cudaErrorInvalidConfiguration
                                                         : cudaErrorLaunchFailure,
                     why);
  }
}

}  // namespace emu

// ---- vector types (the alignment is what makes a float4 load one 16-byte access on the GPU) --
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) int2 {
  int x, y;
};
struct alignas(16) int4 {
  int x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }

// ---- device built-ins ----------------------------------------------------------------------
inline void __syncthreads() { emu::sync_block(); }
// Ends the launch with cudaErrorLaunchFailure (the emulator stops the block, as the GPU does).
inline void __trap() { emu::trap(); }

inline unsigned __float_as_uint(float v) {
  unsigned u;
  std::memcpy(&u, &v, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}
inline int __float_as_int(float v) { return int(__float_as_uint(v)); }
inline float __int_as_float(int i) { return __uint_as_float(unsigned(i)); }
// Round-to-nearest arithmetic the compiler may not contract into an FMA: the host's plain ops.
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float rsqrtf(float v) { return 1.0f / std::sqrt(v); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::sync_warp(mask); }

template <class T>
T __ldg(const T* p) { return *p; }

using std::isfinite;
using std::isinf;
using std::isnan;
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline int64_t min(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max(int64_t a, int64_t b) { return a > b ? a : b; }

// Atomics: real atomics, since several OS workers run blocks at once.
inline float atomicAdd(float* address, float value) {
  uint32_t old_bits = __atomic_load_n(reinterpret_cast<uint32_t*>(address), __ATOMIC_RELAXED);
  for (;;) {
    float old_value, new_value;
    std::memcpy(&old_value, &old_bits, 4);
    new_value = old_value + value;
    uint32_t new_bits;
    std::memcpy(&new_bits, &new_value, 4);
    if (__atomic_compare_exchange_n(reinterpret_cast<uint32_t*>(address), &old_bits, new_bits, false,
                                    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
      return old_value;
  }
}
inline int atomicAdd(int* address, int value) { return __atomic_fetch_add(address, value, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned* address, unsigned value) {
  return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
}

// Warp shuffles (any 4- or 8-byte trivially copyable T). The source lane is computed as on the
// GPU: within segments of `width` lanes; a source outside the segment returns the caller's value.
namespace emu {
template <class T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of 1-8 byte values");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}
template <class T>
T shuffle(unsigned mask, T v, int src, bool inside) {
  const uint64_t got = warp_exchange(mask, to_bits(v), inside ? src : lane_id());
  return from_bits<T>(got);
}
}  // namespace emu

template <class T>
T __shfl_sync(unsigned mask, T v, int src, int width = warpSize) {
  const int lane = emu::lane_id(), seg = lane & ~(width - 1);
  return emu::shuffle(mask, v, seg + (src & (width - 1)), true);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize) {
  const int lane = emu::lane_id(), src = lane ^ lane_mask;
  return emu::shuffle(mask, v, src, (src & ~(width - 1)) == (lane & ~(width - 1)));
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  const int lane = emu::lane_id(), src = lane + int(delta);
  return emu::shuffle(mask, v, src, (src & ~(width - 1)) == (lane & ~(width - 1)));
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  const int lane = emu::lane_id(), src = lane - int(delta);
  return emu::shuffle(mask, v, src, src >= 0 && (src & ~(width - 1)) == (lane & ~(width - 1)));
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  uint64_t all[32];
  emu::warp_exchange(mask, predicate != 0, -1, all);
  unsigned bits = 0;
  for (int l = 0; l < 32; ++l)
    if ((mask >> l & 1u) && all[l] != 0) bits |= 1u << l;
  return bits;
}
inline int __any_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }
inline int __all_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) == mask; }
