// ops_cuda.h — the CUDA entry points (cuda/*.cu), mirroring ops.h's CPU entries one for one:
// outputs first, then inputs, then the validated params, then the stream. Every pointer is a dense
// NCHW (or OIHW) float32 device buffer on the current device; indices are int64 h*W + w offsets.
// Work is queued on `stream` and not waited for. Errors throw gpu::CudaError (std::runtime_error)
// or ValueError. This header needs no CUDA headers, so the pybind11 file can include it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "fastconv/params.h"

struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;  // the same declaration cuda_runtime.h makes

namespace fastconv {
namespace gpu {

// Kernel choice per conv pass (the CPU registry's vocabulary, conv_algos.h): Auto picks by shape;
// Direct (one thread or block per output element), Tiled (implicit GEMM in shared memory, 64x64
// tiles) and Tiled128 (128x128 tiles, cp.async pipeline; never chosen by Auto yet) force a family,
// for tests and benchmarks. Tf32 (Tiled128 on TF32 tensor cores: inputs rounded to 10 mantissa
// bits) is an explicit opt-in, never chosen by Auto.
enum class ConvAlgo { Auto = 0, Direct = 1, Tiled = 2, Tiled128 = 3, Tf32 = 4 };
enum class ConvPass { Fwd = 0, BwdData = 1, BwdWeights = 2 };
void set_conv_algo(ConvPass pass, ConvAlgo algo);
ConvAlgo conv_algo(ConvPass pass);
// The family a call of the pass would run on p: Direct or Tiled, or the forced one if set.
ConvAlgo chosen_conv_algo(ConvPass pass, const Conv2dParams& p);

// y (N, C_out, OH, OW) = conv(x, w) + b, ReLU-clamped when relu; b may be nullptr.
void conv2d_fwd__cuda(float* y, const float* x, const float* w, const float* b,
                      const Conv2dParams& p, bool relu, cudaStream_t stream);
// dx (N, C_in, H, W) from dy (N, C_out, OH, OW) and w.
void conv2d_bwd_data__cuda(float* dx, const float* dy, const float* w, const Conv2dParams& p,
                           cudaStream_t stream);
// Bytes of device workspace conv2d_bwd_weights__cuda needs for p on the current device (0: none).
size_t conv2d_bwd_weights_workspace__cuda(const Conv2dParams& p);
// dw (C_out, C_in/groups, KH, KW) and db (C_out,) (nullptr: skip) from dy and x. Deterministic:
// split-reduction partials go to `workspace` and are summed in a fixed order, no atomics.
void conv2d_bwd_weights__cuda(float* dw, float* db, const float* dy, const float* x,
                              const Conv2dParams& p, float* workspace, size_t workspace_bytes,
                              cudaStream_t stream);

// y (N, C, OH, OW) = window max and idx its flat h*W + w; the CPU's tie/NaN rule exactly.
void maxpool2d_fwd__cuda(float* y, int64_t* idx, const float* x, const Pool2dParams& p,
                         cudaStream_t stream);
// dx (x_shape) = dy (y_shape) added into the cells idx names. With `geometry` (the forward's
// params) each input cell gathers from the windows that contain it: deterministic, no atomics.
// Without it, a scatter with atomicAdd: exact when no two windows pick one cell (stride >= kernel),
// otherwise the few overlapping contributions are added in an unspecified order. idx entries
// outside [0, H*W) are skipped (the Python layer rejects them first).
void maxpool2d_bwd__cuda(float* dx, const float* dy, const int64_t* idx, Shape4 x_shape,
                         Shape4 y_shape, const Pool2dParams* geometry, cudaStream_t stream);

// The graph-captured training step's kernels (cuda/train_step.cu). Per-step values are read from
// device memory at `step` (an int32 counter the captured graph advances), never passed by value.
// mask (n floats) = dropout's mask for seed seeds[*step]: (kept ? 1/keep : 0), the CPU's bits.
void dropout_mask__cuda(float* mask, int64_t n, double keep, const uint64_t* seeds,
                        const int32_t* step, cudaStream_t stream);
// One Adam step in place on n floats with lr_t = lr_table[*step]; the CPU's formula and roundings.
void adam_update__cuda(float* p, float* m, float* v, const float* g, int64_t n,
                       const float* lr_table, const int32_t* step, double beta_1, double beta_2,
                       double epsilon, cudaStream_t stream);

// Devices the CUDA runtime sees (0 when there is no driver or no device; never throws).
int device_count();
// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)"; throws CudaError when the device is not usable.
std::string device_name(int device);
// Make `device` current on this thread (the pybind11 entries call it before each op).
void set_device(int device);
// cudaStreamSynchronize(stream) with the error check (tests and the error path use it).
void synchronize(cudaStream_t stream);
// The CUDA runtime version this module was built with, e.g. 13000.
int runtime_version();

}  // namespace gpu
}  // namespace fastconv
