// conv2d_tf32.cuh — the TF32 tensor-core conv kernel (family "tf32", only ever forced): the same
// implicit GEMMs, 128x128 tile and two-stage cp.async pipeline as conv_gemm_tiled128
// (conv2d_pipelined.cuh), with the multiply on mma.sync m16n8k8 TF32 (warp_mma.cuh).
//
// Precision: every A and B element is rounded to TF32 (10 mantissa bits, |error| <= 2^-11
// relative) before its product; products and sums are FP32. So each term carries a relative error
// of at most about 2 * 2^-11, and a sum of K terms of magnitude <= 1 is off by at most K * 2^-10
// (plus FP32 rounding) — against FP32's ~K * 2^-24. Deterministic (a fixed sequence of mma per
// output), but not bit-equal to any FP32 family.
#pragma once

#include <cstdint>

#include "conv2d_pipelined.cuh"
#include "warp_mma.cuh"

namespace fastconv {
namespace gpu {

// 8 warps as 2 (M) x 4 (N), each warp a 64 x 32 tile: 4 x 4 mma tiles of 16 x 8 per 8-deep step,
// 64 accumulators per thread. Rows padded by 8 floats (not 4): the fragment reads touch rows t and
// t + 4 at columns g (lane = 4g + t), banks 8t + g — all 32 different. The price: the loader's A
// writes (k = tid % 8) meet 2-way bank conflicts.
template <class G>
__global__ void __launch_bounds__(kThreads, 2) conv_gemm_tf32(const G gm) {
  constexpr int LD = kBM128 + 8;
  static_assert(kBM128 == kBN128, "one padded row length for A and B");
  __shared__ __align__(16) float As[2][kBK8][LD];
  __shared__ __align__(16) float Bs[2][kBK8][LD];
  __shared__ typename G::RCtx rtab[2][kBK8];

  const typename G::ZCtx zc = gm.zctx(blockIdx.z);
  const int m0 = blockIdx.y * kBM128, n0 = blockIdx.x * kBN128;
  if (n0 >= gm.ncols(zc)) return;  // block-uniform, so every warp stays whole for mma.sync
  int r_begin = 0, r_end = 0;
  gm.range(zc, &r_begin, &r_end);
  const PipelinedLoader<G, LD, LD> ld(gm, zc, m0, n0, r_begin, r_end);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int wm = (warp / 4) * 64, wn = (warp % 4) * 32;

  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int h = 0; h < 4; ++h) acc[i][j][h] = 0.0f;

  run_pipeline(ld, As, Bs, rtab, [&](const float (*a)[LD], const float (*b)[LD]) {
    uint32_t af[4][4], bf[4][2];
#pragma unroll
    for (int i = 0; i < 4; ++i) {  // A fragment of rows wm + 16i .. +15 (warp_mma.cuh layout)
      const int m = wm + 16 * i + g;
      af[i][0] = to_tf32(a[t][m]);
      af[i][1] = to_tf32(a[t][m + 8]);
      af[i][2] = to_tf32(a[t + 4][m]);
      af[i][3] = to_tf32(a[t + 4][m + 8]);
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {  // B fragment of columns wn + 8j .. +7
      const int n = wn + 8 * j + g;
      bf[j][0] = to_tf32(b[t][n]);
      bf[j][1] = to_tf32(b[t + 4][n]);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) mma_m16n8k8_tf32(acc[i][j], af[i], bf[j], acc[i][j]);
  });

  // Accumulator h of tile (i, j): row g (+8 for h >= 2), column 2t (+1 for odd h).
  const int M = gm.M(), Ncols = gm.ncols(zc);
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int h = 0; h < 4; ++h) {
        const int m = m0 + wm + 16 * i + g + (h >= 2 ? 8 : 0);
        const int n = n0 + wn + 8 * j + 2 * t + (h & 1);
        if (m < M && n < Ncols) gm.store(zc, m, n, acc[i][j][h]);
      }
}

}  // namespace gpu
}  // namespace fastconv
