// selftest.cu — kernels written to show what the emulator catches and what it runs (built into
// the emulator library, where tests/test_cuda_emulated.py drives them through fc_emu_selftest; the
// kernels also compile under nvcc, which .ci/cuda_build uses to check the PTX of async_copy.cuh and
// warp_mma.cuh). Several are wrong on purpose: a reduction missing its barrier, a read of shared
// memory no thread wrote, a barrier in divergent code, a cp.async buffer read before its wait. The
// others exercise warp operations, cp.async pipelines, the TF32 mma fragments, and the isolation
// of blocks that run at the same time on different OS workers.
#include <cstdint>
#include <string>

#include "async_copy.cuh"
#include "common.cuh"
#include "dynamic_shared.cuh"
#include "warp_mma.cuh"

namespace {

constexpr int kBlock = 256;

// Tree reduction WITHOUT the barrier between levels: a race the thread order exposes (forward
// order gives a wrong sum; reverse order happens to give the right one).
__global__ void sum_missing_barrier(float* out, const float* in) {
  __shared__ float sh[kBlock];
  sh[threadIdx.x] = in[blockIdx.x * kBlock + threadIdx.x];
  __syncthreads();
  for (int s = kBlock / 2; s > 0; s >>= 1)
    if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
  if (threadIdx.x == 0) out[blockIdx.x] = sh[0];
}

// The loader skips the last slot; every thread then reads its neighbour's slot.
__global__ void read_unwritten_shared(float* out, const float* in) {
  __shared__ float sh[kBlock];
  if (threadIdx.x < kBlock - 1) sh[threadIdx.x] = in[threadIdx.x];
  __syncthreads();
  out[blockIdx.x * kBlock + threadIdx.x] = sh[(threadIdx.x + 1) % kBlock];
}

// Only the first warp reaches the barrier; the others exit.
__global__ void divergent_barrier(float* out, const float*) {
  if (threadIdx.x < 32) {
    __syncthreads();
    out[threadIdx.x] = 1.0f;
  }
}

// Per warp: the sum by __shfl_down_sync (lane 0), the sum by a __shfl_xor_sync butterfly (every
// lane), an inclusive prefix sum by __shfl_up_sync, lane 0's value by __shfl_sync, and the
// ballot of positive values. out has 5 floats per thread.
__global__ void warp_ops(float* out, const float* in) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x, lane = threadIdx.x % 32;
  const float v = in[i];
  float down = v, xr = v, scan = v;
  for (int d = 16; d > 0; d >>= 1) down += __shfl_down_sync(0xffffffffu, down, d);
  for (int m = 16; m > 0; m >>= 1) xr += __shfl_xor_sync(0xffffffffu, xr, m);
  for (int d = 1; d < 32; d <<= 1) {
    const float up = __shfl_up_sync(0xffffffffu, scan, d);
    if (lane >= d) scan += up;
  }
  const float first = __shfl_sync(0xffffffffu, v, 0);
  const unsigned ballot = __ballot_sync(0xffffffffu, v > 0.0f);
  float* o = out + 5 * i;
  o[0] = lane == 0 ? down : 0.0f;
  o[1] = xr;
  o[2] = scan;
  o[3] = first;
  o[4] = float(ballot & 0xffffu) + float(ballot >> 16) * 65536.0f;
}

// Each block fills its shared array with its own index, meets its threads at a few barriers and
// reads a neighbour's slot back: with blocks of one launch on several OS workers at once, a block
// must only ever see its own shared memory.
__global__ void shared_isolation(float* out, const float*) {
  __shared__ float sh[kBlock];
  sh[threadIdx.x] = float(blockIdx.x);
  for (int k = 0; k < 4; ++k) __syncthreads();
  out[blockIdx.x * kBlock + threadIdx.x] = sh[(threadIdx.x + 7) % kBlock];
}

// A double-buffered cp.async pipeline: kTiles tiles of kBlock floats per block go through two
// shared buffers; out = in, except the last tile's last kInvalid elements, which the loader marks
// invalid (zero-filled). Each thread stores its neighbour's element, so the barrier after the wait
// matters too. Two bugs on purpose: kEarlyRead reads each buffer before waiting for its copies
// (the emulator's deferred copies expose it), kEarlyRefill drops the barrier that keeps the next
// refill from overwriting a buffer other threads still read (eager copies expose it).
constexpr int kTiles = 4, kInvalid = 10;

template <bool kEarlyRead, bool kEarlyRefill = false>
__global__ void async_pipeline(float* out, const float* in) {
  using fastconv::gpu::cp_async;
  __shared__ float buf[2][kBlock];
  const int tid = threadIdx.x;
  const float* src = in + blockIdx.x * kTiles * kBlock;
  auto issue = [&](int t) {
    const bool valid = t < kTiles - 1 || tid < kBlock - kInvalid;
    cp_async<4>(&buf[t % 2][tid], valid ? src + t * kBlock + tid : src, valid);
    fastconv::gpu::cp_async_commit();
  };
  issue(0);
  for (int t = 0; t < kTiles; ++t) {
    if (t + 1 < kTiles) issue(t + 1);
    else fastconv::gpu::cp_async_commit();  // an empty group keeps the wait count uniform
    float v;
    if (kEarlyRead) {
      __syncthreads();
      v = buf[t % 2][(tid + 1) % kBlock];
      fastconv::gpu::cp_async_wait<1>();
    } else {
      fastconv::gpu::cp_async_wait<1>();
      __syncthreads();
      v = buf[t % 2][(tid + 1) % kBlock];
    }
    out[(blockIdx.x * kTiles + t) * kBlock + tid] = v;
    if (!kEarlyRefill) __syncthreads();  // the buffer is refilled by the next iteration's issue
  }
}

// Per warp: D = A * B + 1 by mma_m16n8k8_tf32, A (16x8) and B (8x8) row-major from in (192 floats
// per warp), D (16x8) row-major to out (128 floats per warp).
__global__ void mma_tf32(float* out, const float* in) {
  using fastconv::gpu::to_tf32;
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const float* A = in + warp * 192;
  const float* B = A + 128;
  const uint32_t a[4] = {to_tf32(A[g * 8 + t]), to_tf32(A[(g + 8) * 8 + t]), to_tf32(A[g * 8 + t + 4]),
                         to_tf32(A[(g + 8) * 8 + t + 4])};
  const uint32_t b[2] = {to_tf32(B[t * 8 + g]), to_tf32(B[(t + 4) * 8 + g])};
  const float c[4] = {1.0f, 1.0f, 1.0f, 1.0f};
  float d[4];
  fastconv::gpu::mma_m16n8k8_tf32(d, a, b, c);
  float* D = out + warp * 128;
  D[g * 8 + 2 * t] = d[0];
  D[g * 8 + 2 * t + 1] = d[1];
  D[(g + 8) * 8 + 2 * t] = d[2];
  D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

// float4 loads and stores: each thread reverses one group of four floats.
__global__ void vector_reverse4(float* out, const float* in) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const float4 v = reinterpret_cast<const float4*>(in)[i];
  reinterpret_cast<float4*>(out)[i] =
      make_float4(v.w, v.z, __uint_as_float(__float_as_uint(v.y)), v.x);
}

// Thread 17 of block 0 traps: the launch must fail.
__global__ void trap_one_thread(float* out, const float*) {
  if (blockIdx.x == 0 && threadIdx.x == 17) __trap();
  out[blockIdx.x * blockDim.x + threadIdx.x] = 1.0f;
}

// For cuda/emu/check_kernels.cpp's memcheck: with its input of kCheckInput floats and 2 blocks,
// the last thread reads one element past the end.
constexpr int kCheckInput = 16 * 256 * 5;
__global__ void read_past_end(float* out, const float* in) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  out[i] = in[(i + 1) * (kCheckInput / (2 * kBlock))];
}

// Reverses each block's slice of `in` through dynamic shared memory; only the first n_written
// threads load, so with n_written < blockDim.x the rest read slots no thread wrote (NaN).
__global__ void reverse_dynamic_shared(float* out, const float* in, int n_written) {
  float* sh = fastconv::gpu::dynamic_shared<float>();
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (int(threadIdx.x) < n_written) sh[threadIdx.x] = in[i];
  __syncthreads();
  out[i] = sh[blockDim.x - 1 - threadIdx.x];
}

}  // namespace

#ifdef FASTCONV_CUDA_EMU
namespace {
std::string g_selftest_error;
}

// which: 0 sum_missing_barrier, 1 read_unwritten_shared, 2 divergent_barrier, 3 warp_ops,
// 4 shared_isolation, 5 warp_ops with 2048 threads per block (an invalid launch),
// 6 async_pipeline, 7 async_pipeline reading early, 8 mma_tf32, 9 vector_reverse4,
// 10 trap_one_thread, 11 async_pipeline refilling early, 12 read_past_end.
// Returns 0, or 2 with the CUDA error in fc_emu_selftest_error().
extern "C" int fc_emu_selftest(int which, float* out, const float* in, int blocks) {
  using fastconv::gpu::launch;
  static void (*const kKernels[])(float*, const float*) = {
      sum_missing_barrier, read_unwritten_shared, divergent_barrier, warp_ops, shared_isolation,
      warp_ops, async_pipeline<false>, async_pipeline<true>, mma_tf32, vector_reverse4,
      trap_one_thread, async_pipeline<false, true>, read_past_end};
  if (which < 0 || which > 12) return 1;
  launch(kKernels[which], blocks, which == 5 ? 2048 : kBlock, nullptr, out, in);
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return 0;
  g_selftest_error = std::string(cudaGetErrorName(err)) + ": " + emu::last_launch_error();
  return 2;
}

// reverse_dynamic_shared with `shared_bytes` of dynamic shared memory, the kernel's limit raised to
// that first when raise_limit (needed above 48 KB).
extern "C" int fc_emu_selftest_dynamic_shared(float* out, const float* in, int blocks,
                                              int shared_bytes, int raise_limit, int n_written) {
  if (raise_limit != 0) {
    cudaFuncSetAttribute(reverse_dynamic_shared, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         shared_bytes);
  }
  fastconv::gpu::launch_with_shared(reverse_dynamic_shared, blocks, kBlock, size_t(shared_bytes),
                                    nullptr, out, in, n_written);
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return 0;
  g_selftest_error = std::string(cudaGetErrorName(err)) + ": " + emu::last_launch_error();
  return 2;
}

extern "C" const char* fc_emu_selftest_error() { return g_selftest_error.c_str(); }
#endif  // FASTCONV_CUDA_EMU
