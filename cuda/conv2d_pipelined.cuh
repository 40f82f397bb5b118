// conv2d_pipelined.cuh — the 128x128-tile implicit-GEMM kernels for large layers: the two-stage
// cp.async shared-memory pipeline they share (PipelinedLoader), and the FP32 kernel
// (conv_gemm_tiled128, family "tiled128"). The TF32 tensor-core kernel (conv2d_tf32.cuh) uses the
// same loader. Index maps: the G classes of conv2d_gemm.cuh (fwd, bwd_data phases, bwd_weights).
//
// Block tile 128 (M) x 128 (N), 256 threads, 8-deep reduction steps. Per step a thread issues
// 4 + 4 four-byte cp.async (A and B gathers; zero-filled outside the tensor or the reduction), so
// the copies of step s + 1 are in flight while the block multiplies step s: one barrier per step.
// Why 4-byte copies: B is an im2col gather (any stride, dilation, padding), and A's reduction
// index is contiguous only for fwd with (C_in/groups)·KH·KW a multiple of 4 — one path for every
// geometry was worth more than a 16-byte special case written blind.
#pragma once

#include "async_copy.cuh"
#include "conv2d_gemm.cuh"

namespace fastconv {
namespace gpu {

constexpr int kBM128 = 128, kBN128 = 128, kBK8 = 8;
static_assert(kThreads == 256 && kBM128 * kBK8 == 4 * kThreads && kBN128 * kBK8 == 4 * kThreads,
              "PipelinedLoader: four A and four B elements per thread and step");

// Loads one 8 x 128 A slice and one 8 x 128 B slice per step into shared buffers As[k][m] and
// Bs[k][n] (row strides LDA, LDB, chosen by the kernel for its reads). Thread layout, for
// coalescing: A along r (contiguous in w for fwd, in dy for bwd_weights): k = tid % 8,
// m = tid / 8 + 32 i; B along the output columns (contiguous pixels): n = tid % 128,
// k = tid / 128 + 2 i; each thread keeps its B column's decomposition (ColCtx) for the kernel.
// The RCtx of the step's 8 reduction indices is computed by 8 threads into a shared table first.
template <class G, int LDA, int LDB>
struct PipelinedLoader {
  using ZCtx = typename G::ZCtx;
  using RCtx = typename G::RCtx;
  using ColCtx = typename G::ColCtx;

  const G& gm;
  const ZCtx& zc;
  int m0, r_begin, r_end, tid;
  ColCtx col;

  __device__ PipelinedLoader(const G& g, const ZCtx& z, int m0_, int n0, int rb, int re)
      : gm(g), zc(z), m0(m0_), r_begin(rb), r_end(re), tid(int(threadIdx.x)),
        col(g.colctx(z, n0 + int(threadIdx.x) % kBN128)) {}

  __device__ int steps() const { return (r_end - r_begin + kBK8 - 1) / kBK8; }

  // Step s's reduction table; read by issue() after the next barrier.
  __device__ void table(int s, RCtx* rtab) const {
    if (tid < kBK8) rtab[tid] = gm.rctx(zc, r_begin + s * kBK8 + tid, r_end);
  }

  // Step s's copies into As / Bs (this stage's buffers), from the table `rtab` of step s.
  __device__ void issue(const RCtx* rtab, float (*As)[LDA], float (*Bs)[LDB]) const {
    const int ak = tid % kBK8, am = tid / kBK8;
    const RCtx ta = rtab[ak];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int m = am + i * (kThreads / kBK8);
      bool ok = false;
      const float* src = gm.a_at(zc, m0 + m, ta, &ok);
      cp_async<4>(&As[ak][m], src, ok);
    }
    const int bn = tid % kBN128, bk = tid / kBN128;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int k = bk + i * (kThreads / kBN128);
      bool ok = false;
      const float* src = gm.b_at(col, rtab[k], &ok);
      cp_async<4>(&Bs[k][bn], src, ok);
    }
  }
};

// The step loop every pipelined kernel runs: stage s % 2 holds step s. Per step: the table of step
// s + 1, wait for step s's copies, one barrier (step s visible to all; everyone is done with
// step s - 1's buffers and table), issue step s + 1 into the other stage, then compute(stage).
template <class G, int LDA, int LDB, class Compute>
__device__ __forceinline__ void run_pipeline(const PipelinedLoader<G, LDA, LDB>& ld,
                                             float (*As)[kBK8][LDA], float (*Bs)[kBK8][LDB],
                                             typename G::RCtx (*rtab)[kBK8], Compute&& compute) {
  const int steps = ld.steps();
  if (steps <= 0) return;  // an empty reduction (a bwd_data phase no tap reaches): zeros
  ld.table(0, rtab[0]);
  __syncthreads();
  ld.issue(rtab[0], As[0], Bs[0]);
  cp_async_commit();
  for (int s = 0; s < steps; ++s) {
    const int cur = s & 1, nxt = cur ^ 1;
    if (s + 1 < steps) ld.table(s + 1, rtab[nxt]);
    cp_async_wait<0>();
    __syncthreads();
    if (s + 1 < steps) ld.issue(rtab[nxt], As[nxt], Bs[nxt]);
    cp_async_commit();
    compute(As[cur], Bs[cur]);
  }
}

// ---------------------------------------------------------------------------------------------
// FP32: each thread an 8 x 8 micro-tile, rows {4ty .. 4ty+3, 64+4ty .. 64+4ty+3} and the same
// split of columns around 4tx (tx = tid % 16, ty = tid / 16): a quarter-warp's float4 reads of a
// B row are then 8 consecutive 16-byte words (no bank conflict), and the warp's two A rows are
// broadcasts. Rows padded by 4 floats: the loader's A writes (k = tid % 8, m = tid / 8) hit 32
// different banks, and float4 reads stay 16-byte aligned. Each output sums r ascending, one fmaf
// per r, as conv_gemm_tiled does: results equal that kernel's bit for bit.
template <class G>
__global__ void __launch_bounds__(kThreads, 2) conv_gemm_tiled128(const G gm) {
  constexpr int LD = kBM128 + 4;
  static_assert(kBM128 == kBN128, "one padded row length for A and B");
  __shared__ __align__(16) float As[2][kBK8][LD];
  __shared__ __align__(16) float Bs[2][kBK8][LD];
  __shared__ typename G::RCtx rtab[2][kBK8];

  const typename G::ZCtx zc = gm.zctx(blockIdx.z);
  const int m0 = blockIdx.y * kBM128, n0 = blockIdx.x * kBN128;
  if (n0 >= gm.ncols(zc)) return;  // bwd_data: this phase has fewer columns; block-uniform
  int r_begin = 0, r_end = 0;
  gm.range(zc, &r_begin, &r_end);
  const PipelinedLoader<G, LD, LD> ld(gm, zc, m0, n0, r_begin, r_end);
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;

  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  run_pipeline(ld, As, Bs, rtab, [&](const float (*a)[LD], const float (*b)[LD]) {
#pragma unroll
    for (int k = 0; k < kBK8; ++k) {
      const float4 a0 = *reinterpret_cast<const float4*>(&a[k][4 * ty]);
      const float4 a1 = *reinterpret_cast<const float4*>(&a[k][64 + 4 * ty]);
      const float4 b0 = *reinterpret_cast<const float4*>(&b[k][4 * tx]);
      const float4 b1 = *reinterpret_cast<const float4*>(&b[k][64 + 4 * tx]);
      const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
  });

  const int M = gm.M(), Ncols = gm.ncols(zc);
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int m = m0 + (i < 4 ? 4 * ty + i : 64 + 4 * ty + i - 4);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int n = n0 + (j < 4 ? 4 * tx + j : 64 + 4 * tx + j - 4);
      if (m < M && n < Ncols) gm.store(zc, m, n, acc[i][j]);
    }
  }
}

}  // namespace gpu
}  // namespace fastconv
