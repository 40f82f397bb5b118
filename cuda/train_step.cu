// train_step.cu — the two element-wise kernels of a CUDA-graph-captured training step whose
// per-step inputs live in device memory (python/fastconv/nn/cuda_graph.py):
//   dropout_mask  the dropout mask of the step: seed = seeds[*step], decisions from the CPU's
//                 generator (dropout_rng.h), so the GPU's masks are the CPU's bits;
//   adam_update   one Adam step with lr_t = lr_table[*step] (bias correction and any schedule
//                 computed on the host, a table per epoch), the CPU's formula (adam_step.h).
// A captured graph bakes kernel arguments in: a per-step value passed by value would replay the
// first step's value forever. Reading it through `step` (a device counter the graph advances) is
// what makes a replay the next step. This file is compiled with --fmad=false (cmake/cuda.cmake),
// as adam_cpu.cpp is with -ffp-contract=off, so every operation of the shared formula rounds once.
#include <cstdint>

#include "common.cuh"
#include "fastconv/adam_step.h"
#include "fastconv/dropout_rng.h"
#include "fastconv/ops_cuda.h"

namespace fastconv {
namespace gpu {
namespace {

namespace rng = dropout_rng;

// One thread per (generator block, lane): each lane's draws are sequential (xoshiro has no jump
// that is cheaper than stepping), so this is the unit of parallelism (n / 16 threads).
__global__ void dropout_mask_kernel(float* mask, int64_t n, const uint64_t* seeds,
                                    const int32_t* step, int32_t thresh, float scale) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t blocks = ceil_div(n, rng::kBlock);
  if (t >= blocks * rng::kLanes) return;
  const uint64_t key = rng::key_of(seeds[*step]);
  rng::fill_lane(mask, n, key, thresh, scale, t / rng::kLanes, int(t % rng::kLanes));
}

__global__ void adam_update_kernel(float* p, float* m, float* v, const float* g, int64_t n,
                                   const float* lr_table, const int32_t* step, AdamConstants k) {
  k.lr = lr_table[*step];
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float pi = p[i], mi = m[i], vi = v[i];
    adam_element(pi, mi, vi, g[i], k);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace

void dropout_mask__cuda(float* mask, int64_t n, double keep, const uint64_t* seeds,
                        const int32_t* step, cudaStream_t stream) {
  FC_CHECK(keep > 0.0 && keep <= 1.0, "keep must be in (0, 1], got ", keep);
  if (n <= 0) return;
  const int64_t threads = ceil_div(n, rng::kBlock) * rng::kLanes;
  const float scale = 1.0f / float(keep);  // the CPU's scale: np.float32(1) / np.float32(keep)
  launch(dropout_mask_kernel, grid_1d(threads, 128), 128, stream, mask, n, seeds, step,
         rng::threshold(keep), scale);
  CHECK_LAUNCH("dropout_mask_kernel", stream);
}

void adam_update__cuda(float* p, float* m, float* v, const float* g, int64_t n,
                       const float* lr_table, const int32_t* step, double beta_1, double beta_2,
                       double epsilon, cudaStream_t stream) {
  if (n <= 0) return;
  const AdamConstants k = adam_constants(0.0, beta_1, beta_2, epsilon);  // lr from the table
  const int64_t blocks = ceil_div(n, 256) < 4096 ? ceil_div(n, 256) : 4096;  // grid-stride
  launch(adam_update_kernel, unsigned(blocks), 256, stream, p, m, v, g, n, lr_table, step, k);
  CHECK_LAUNCH("adam_update_kernel", stream);
}

}  // namespace gpu
}  // namespace fastconv
