// conv2d.cu — CUDA Conv2D: fwd, bwd_data, bwd_weights (the last also produces the bias gradient).
//
// Contents: kernels (anonymous namespace) / launchers / exported entries conv2d_*__cuda.
// Two kernel families per pass, both covering every geometry params.h allows (strides, asymmetric
// padding, dilation, groups, bias, fused ReLU):
//   direct  the straightforward version, written independently of the GEMM index maps:
//           fwd and bwd_data one thread per output element (bwd_data gathers: each dx element sums
//           the dy taps that read it, so no atomics); bwd_weights one block per weight, its threads
//           striding over (n, oy, ox) and reducing through shared memory in a fixed order.
//           Used for few channels per group (depthwise, C_in = 1 first layers) where a 64-wide
//           GEMM tile would be mostly empty. bwd_data visits only the taps of its stride phase.
//   tiled   implicit GEMM (conv2d_gemm.cuh): 64x64 output tile per 256-thread block, 4x4 per
//           thread, 16-deep reduction steps staged through shared memory, im2col gathered on the
//           fly. bwd_data runs one dense GEMM per stride phase (z = group x phase), with a tile
//           whose height fits C_in/groups (Tile1 ... Tile64, bwd_data_choice).
//           bwd_weights splits its long reduction (N*OH*OW) into chunks whose partials are
//           added in a fixed order by a second kernel: deterministic, no global atomics.
//   tiled128  the same implicit GEMMs with a 128x128 tile, 8x8 per thread and a two-stage
//           cp.async pipeline (conv2d_pipelined.cuh), for large layers; only when forced
//           (set_conv_algo "tiled128") until GPU timings decide where the automatic choice uses it.
//   tf32    tiled128's tile and pipeline with the products on TF32 tensor cores (mma.sync,
//           conv2d_tf32.cuh): ~10-bit-mantissa inputs, an explicit opt-in only (set_conv_algo "tf32").
// The bias gradient is one block per channel, a fixed-order tree reduction.
// Every result is deterministic for a given GPU model (split counts depend on the SM count).
#include <algorithm>

#include "common.cuh"
#include "conv2d_gemm.cuh"
#include "conv2d_pipelined.cuh"
#include "conv2d_tf32.cuh"
#include "fastconv/ops.h"
#include "fastconv/ops_cuda.h"

namespace fastconv {
namespace gpu {
namespace {

// ---------------------------------------------------------------------------------------------
// kernels: tiled implicit GEMM (one template for the three passes)

template <class G, class T>
__global__ void __launch_bounds__(kThreads) conv_gemm_tiled(const G gm) {
  constexpr int BM = T::BM, BN = T::BN, TM = T::TM, TN = T::TN;
  // +4 keeps rows 16-byte aligned and shifts banks between rows.
  __shared__ float As[kBK][BM + 4];
  __shared__ float Bs[kBK][BN + 4];
  __shared__ typename G::RCtx rtab[kBK];

  const typename G::ZCtx zc = gm.zctx(blockIdx.z);
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN, tid = threadIdx.x;
  // bwd_data's phases have different column counts; the grid covers the largest. Block-uniform,
  // before any barrier.
  if (n0 >= gm.ncols(zc)) return;
  int r_begin = 0, r_end = 0;
  gm.range(zc, &r_begin, &r_end);

  // Loader layout: A tile threads run along r (contiguous in w / dy), B tile threads run along the
  // output columns (contiguous pixels), each thread keeping one column for the whole kernel.
  // Narrow tiles (BM * kBK < kThreads) load A with the first BM * kBK threads only.
  constexpr int kALoads = (BM * kBK + kThreads - 1) / kThreads;
  const int a_rr = tid % kBK, a_mm = tid / kBK;
  const int b_nn = tid % BN, b_rr = tid / BN;
  const typename G::ColCtx col = gm.colctx(zc, n0 + b_nn);
  const int tx = tid % (BN / TN), ty = tid / (BN / TN);

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

  for (int r0 = r_begin; r0 < r_end; r0 += kBK) {
    if (tid < kBK) rtab[tid] = gm.rctx(zc, r0 + tid, r_end);
    __syncthreads();
    const typename G::RCtx ta = rtab[a_rr];
#pragma unroll
    for (int i = 0; i < kALoads; ++i) {
      const int mm = a_mm + i * (kThreads / kBK);
      if (BM * kBK % kThreads == 0 || mm < BM) As[a_rr][mm] = gemm_a(gm, zc, m0 + mm, ta);
    }
#pragma unroll
    for (int i = 0; i < kBK * BN / kThreads; ++i) {
      const int rr = b_rr + i * (kThreads / BN);
      Bs[rr][b_nn] = gemm_b(gm, col, rtab[rr]);
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kBK; ++k) {
      float av[TM], bv[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) av[i] = As[k][ty * TM + i];
#pragma unroll
      for (int j = 0; j < TN; ++j) bv[j] = Bs[k][tx * TN + j];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }

  const int M = gm.M(), Ncols = gm.ncols(zc);
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int m = m0 + ty * TM + i;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int n = n0 + tx * TN + j;
      if (m < M && n < Ncols) gm.store(zc, m, n, acc[i][j]);
    }
  }
}

// dw[i] = sum over s = 0, 1, ... of ws[s][i]: the fixed-order second half of the split reduction.
__global__ void sum_splits(float* __restrict__ dw, const float* __restrict__ ws, int numel,
                           int splits) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= numel) return;
  float s = 0.0f;
  // Unrolled so several loads are in flight; the adds stay in split order.
#pragma unroll 8
  for (int k = 0; k < splits; ++k) s += ws[k * numel + i];
  dw[i] = s;
}

// ---------------------------------------------------------------------------------------------
// kernels: direct

// One thread per y element (n, co, oy, ox), consecutive threads along ox.
__global__ void conv2d_fwd_direct(float* __restrict__ y, const float* __restrict__ x,
                                  const float* __restrict__ w, const float* __restrict__ b,
                                  const ConvGeom g, bool relu, int total) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int ox = i % g.OW, oy = (i / g.OW) % g.OH, co = (i / (g.OW * g.OH)) % g.K;
  const int n = i / (g.OW * g.OH * g.K);
  const int grp = co / g.cout_g;
  const float* xg = x + (n * g.C + grp * g.cin_g) * g.H * g.W;
  const float* wk = w + co * g.cin_g * g.KH * g.KW;
  float acc = 0.0f;
  for (int c = 0; c < g.cin_g; ++c) {
    for (int ky = 0; ky < g.KH; ++ky) {
      const int iy = oy * g.sh - g.pt + ky * g.dh;
      if (!inside(iy, g.H)) continue;
      for (int kx = 0; kx < g.KW; ++kx) {
        const int ix = ox * g.sw - g.pl + kx * g.dw;
        if (!inside(ix, g.W)) continue;
        acc = fmaf(wk[(c * g.KH + ky) * g.KW + kx], xg[(c * g.H + iy) * g.W + ix], acc);
      }
    }
  }
  if (b != nullptr) acc += b[co];
  if (relu) acc = acc < 0.0f ? 0.0f : acc;  // NaN stays NaN, as on the CPU
  y[i] = acc;
}

// One thread per dx element (n, ci, iy, ix): gather the dy positions whose window tap hits it,
// visiting only the taps of its stride phase (bwd_data_direct_at, conv2d_gemm.cuh).
__global__ void conv2d_bwd_data_direct(float* __restrict__ dx, const float* __restrict__ dy,
                                       const float* __restrict__ w, const ConvGeom g, int total) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= total) return;
  dx[i] = bwd_data_direct_at(g, dy, w, i);
}

constexpr int kReduceThreads = 256;

// Fixed-order block sum of one value per thread; result valid in thread 0.
__device__ float block_sum(float v, float* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = kReduceThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  return sh[0];
}

// One block per weight (co, c, ky, kx): threads stride over (n, oy, ox) in a fixed pattern.
__global__ void __launch_bounds__(kReduceThreads)
conv2d_bwd_weights_direct(float* __restrict__ dw, const float* __restrict__ dy,
                          const float* __restrict__ x, const ConvGeom g) {
  __shared__ float sh[kReduceThreads];
  const int i = blockIdx.x;  // flat OIHW index
  const int kx = i % g.KW, ky = (i / g.KW) % g.KH, c = (i / (g.KW * g.KH)) % g.cin_g;
  const int co = i / (g.KW * g.KH * g.cin_g);
  const int grp = co / g.cout_g, ohw = g.OH * g.OW, R = g.N * ohw;
  float acc = 0.0f;
  for (int r = threadIdx.x; r < R; r += kReduceThreads) {
    const int n = r / ohw, pix = r - n * ohw, oy = pix / g.OW, ox = pix - oy * g.OW;
    const int iy = oy * g.sh - g.pt + ky * g.dh, ix = ox * g.sw - g.pl + kx * g.dw;
    if (inside(iy, g.H) && inside(ix, g.W)) {
      acc = fmaf(dy[(n * g.K + co) * ohw + pix],
                 x[((n * g.C + grp * g.cin_g + c) * g.H + iy) * g.W + ix], acc);
    }
  }
  const float s = block_sum(acc, sh);
  if (threadIdx.x == 0) dw[i] = s;
}

// db[co] = sum of dy over (n, oy, ox): one block per channel.
__global__ void __launch_bounds__(kReduceThreads)
conv2d_bias_grad(float* __restrict__ db, const float* __restrict__ dy, int N, int K, int ohw) {
  __shared__ float sh[kReduceThreads];
  const int co = blockIdx.x;
  float acc = 0.0f;
  for (int n = 0; n < N; ++n) {
    const float* d = dy + (n * K + co) * ohw;
    for (int pix = threadIdx.x; pix < ohw; pix += kReduceThreads) acc += d[pix];
  }
  const float s = block_sum(acc, sh);
  if (threadIdx.x == 0) db[co] = s;
}

// ---------------------------------------------------------------------------------------------
// launchers

template <class G, class T = Tile64>
void launch_tiled(const G& gm, cudaStream_t stream, const char* name) {
  FC_CHECK(gm.Z() <= 65535, "conv2d on CUDA: groups x splits = ", gm.Z(), " exceeds 65535");
  const dim3 grid(static_cast<unsigned>(ceil_div(gm.Ncols(), T::BN)),
                  static_cast<unsigned>(ceil_div(gm.M(), T::BM)), static_cast<unsigned>(gm.Z()));
  FC_CHECK(grid.y <= 65535, "conv2d on CUDA: too many channels per group (", gm.M(), ")");
  launch(conv_gemm_tiled<G, T>, grid, kThreads, stream, gm);
  CHECK_LAUNCH(name, stream);
}

// The forced-only 128x128-tile families (tiled128, tf32: never chosen automatically yet).
bool forced_big_tile(ConvPass pass) {
  const ConvAlgo a = conv_algo(pass);
  return a == ConvAlgo::Tiled128 || a == ConvAlgo::Tf32;
}

// Runs pass `pass`'s GEMM on the forced 128x128-tile family; false if none is forced.
template <class G>
bool launch_big_tile(ConvPass pass, const G& gm, cudaStream_t stream) {
  if (!forced_big_tile(pass)) return false;
  const bool tf32 = conv_algo(pass) == ConvAlgo::Tf32;
  FC_CHECK(gm.Z() <= 65535, "conv2d on CUDA: groups x splits (x stride phases) = ", gm.Z(),
           " exceeds 65535");
  const dim3 grid(static_cast<unsigned>(ceil_div(gm.Ncols(), kBN128)),
                  static_cast<unsigned>(ceil_div(gm.M(), kBM128)), static_cast<unsigned>(gm.Z()));
  FC_CHECK(grid.y <= 65535, "conv2d on CUDA: too many channels per group (", gm.M(), ")");
  launch(tf32 ? conv_gemm_tf32<G> : conv_gemm_tiled128<G>, grid, kThreads, stream, gm);
  CHECK_LAUNCH(tf32 ? "conv_gemm_tf32" : "conv_gemm_tiled128", stream);
  return true;
}

void check_sizes(const Conv2dParams& p) {
  check_int32(p.x, "input");
  check_int32(p.y, "output");
  check_int32(p.wt, "weight");
}

void poison(void* ptr, size_t bytes, cudaStream_t stream) {
  // 0xFF bytes are a NaN in every float and -1 in every int64: unwritten outputs show up in tests.
  if (debug_poison() && ptr != nullptr && bytes > 0) CUDA_CHECK(cudaMemsetAsync(ptr, 0xFF, bytes, stream));
}

// Few channels per group leave a 64-row GEMM tile mostly empty: use the direct kernels then.
bool use_tiled(ConvPass pass, int64_t rows, int64_t cols_or_reduction, int64_t min_rows) {
  switch (conv_algo(pass)) {
    case ConvAlgo::Direct: return false;
    case ConvAlgo::Tiled:
    case ConvAlgo::Tiled128:
    case ConvAlgo::Tf32: return true;
    default: return rows >= min_rows && cols_or_reduction >= 16;
  }
}

struct SplitPlan {
  int splits, chunk;
};

// Split bwd_weights' reduction so that about two waves of blocks fill the GPU, each chunk a
// multiple of the 16-deep step and at least 4 steps long; at most 256 chunks (a layer with one or
// two output tiles, e.g. C_in = 1, needs that many to occupy the GPU; the workspace stays below
// 2 * SMs * bm * bn floats because splits <= 2 * SMs / tiles). bm x bn: the kernel's tile.
SplitPlan split_plan(const Conv2dParams& p, bool tiled, int bm = kBM, int bn = kBN) {
  const int64_t R = p.y.n * p.y.h * p.y.w;
  if (!tiled || R == 0) return {1, int(R)};
  const int64_t blocks = ceil_div(p.cout_per_group(), bm) * ceil_div(p.reduction(), bn) * p.groups;
  const int64_t target = 2 * int64_t(sm_count());
  int64_t splits = std::min<int64_t>({ceil_div(target, blocks), ceil_div(R, 4 * kBK), 256,
                                      std::max<int64_t>(1, 65535 / p.groups),
                                      std::max<int64_t>(1, kMaxIndex / p.wt.numel())});
  splits = std::max<int64_t>(splits, 1);
  const int64_t chunk = ceil_div(ceil_div(R, splits), kBK) * kBK;
  return {int(ceil_div(R, chunk)), int(chunk)};
}

bool fwd_tiled(const Conv2dParams& p) {
  return use_tiled(ConvPass::Fwd, p.cout_per_group(), p.reduction(), 32);
}

bool bwd_weights_tiled(const Conv2dParams& p) {
  return use_tiled(ConvPass::BwdWeights, p.cout_per_group(), p.reduction(), 16);
}

// bwd_weights' split plan for the kernel that will run (its tile sets the block count).
SplitPlan bwd_weights_plan(const Conv2dParams& p) {
  if (forced_big_tile(ConvPass::BwdWeights)) return split_plan(p, true, kBM128, kBN128);
  return split_plan(p, bwd_weights_tiled(p));
}

// bwd_data kernel choice: 0 = direct, otherwise the BM of the tile (Tile1 ... Tile64).
// Cost per useful FMA = padded rows / rows * (issue slots per FMA), the latter a paper estimate
// per tile: each column's gather (~7 instructions + a shared store) is shared by BM rows, and the
// inner loop issues TM + TN shared loads per TM * TN FMAs. The direct kernel pads nothing and
// issues ~5 instructions (two of them L1 loads) per FMA, but with stride > 1 neighbouring threads
// have different tap counts (divergence), so it competes only at stride 1.
// Not yet calibrated on a GPU: re-fit the estimates from bench/conv_cuda.py timings.
int bwd_data_choice(const Conv2dParams& p, const ConvGeom& g) {
  const ConvAlgo algo = conv_algo(ConvPass::BwdData);
  // z = group x phase; beyond 65535 the grid cannot hold it: the direct kernel handles any shape.
  if (algo == ConvAlgo::Direct || int64_t(g.groups) * g.sh * g.sw > 65535) return 0;
  struct Cand { int bm; double slots_per_fma; };
  static constexpr Cand kCands[] = {{1, 10.0}, {4, 3.2}, {8, 2.3}, {16, 1.65}, {32, 1.45}, {64, 1.37}};
  const int64_t M = p.cin_per_group();
  int best = 0;
  double best_cost = algo == ConvAlgo::Auto && g.sh == 1 && g.sw == 1 ? 5.0 : 1e300;
  for (const Cand& c : kCands) {
    const double cost = double(ceil_div(M, c.bm) * c.bm) / double(M) * c.slots_per_fma;
    if (cost < best_cost) {
      best = c.bm;
      best_cost = cost;
    }
  }
  return best;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// entries

ConvAlgo chosen_conv_algo(ConvPass pass, const Conv2dParams& p) {
  if (forced_big_tile(pass)) return conv_algo(pass);
  bool tiled = false;
  switch (pass) {
    case ConvPass::Fwd: tiled = fwd_tiled(p); break;
    case ConvPass::BwdData: tiled = bwd_data_choice(p, conv_geom(p)) != 0; break;
    default: tiled = bwd_weights_tiled(p);
  }
  return tiled ? ConvAlgo::Tiled : ConvAlgo::Direct;
}

void conv2d_fwd__cuda(float* y, const float* x, const float* w, const float* b,
                      const Conv2dParams& p, bool relu, cudaStream_t stream) {
  check_sizes(p);
  poison(y, sizeof(float) * size_t(p.y.numel()), stream);
  if (p.y.numel() == 0) return;
  const ConvGeom g = conv_geom(p);
  const FwdGemm gm{x, w, b, y, g, relu};
  if (launch_big_tile(ConvPass::Fwd, gm, stream)) return;
  if (fwd_tiled(p)) {
    launch_tiled(gm, stream, "conv_gemm_tiled<FwdGemm>");
  } else {
    const int total = int(p.y.numel());
    launch(conv2d_fwd_direct, grid_1d(total, 256), 256, stream, y, x, w, b, g, relu, total);
    CHECK_LAUNCH("conv2d_fwd_direct", stream);
  }
}

void conv2d_bwd_data__cuda(float* dx, const float* dy, const float* w, const Conv2dParams& p,
                           cudaStream_t stream) {
  check_sizes(p);
  poison(dx, sizeof(float) * size_t(p.x.numel()), stream);
  if (p.x.numel() == 0) return;
  const ConvGeom g = conv_geom(p);
  const BwdDataGemm gm{dy, w, dx, g};
  if (launch_big_tile(ConvPass::BwdData, gm, stream)) return;
  switch (bwd_data_choice(p, g)) {
    case 1: launch_tiled<BwdDataGemm, Tile1>(gm, stream, "conv_gemm_tiled<BwdDataGemm, Tile1>"); break;
    case 4: launch_tiled<BwdDataGemm, Tile4>(gm, stream, "conv_gemm_tiled<BwdDataGemm, Tile4>"); break;
    case 8: launch_tiled<BwdDataGemm, Tile8>(gm, stream, "conv_gemm_tiled<BwdDataGemm, Tile8>"); break;
    case 16: launch_tiled<BwdDataGemm, Tile16>(gm, stream, "conv_gemm_tiled<BwdDataGemm, Tile16>"); break;
    case 32: launch_tiled<BwdDataGemm, Tile32>(gm, stream, "conv_gemm_tiled<BwdDataGemm, Tile32>"); break;
    case 64: launch_tiled<BwdDataGemm, Tile64>(gm, stream, "conv_gemm_tiled<BwdDataGemm, Tile64>"); break;
    default: {
      const int total = int(p.x.numel());
      launch(conv2d_bwd_data_direct, grid_1d(total, 256), 256, stream, dx, dy, w, g, total);
      CHECK_LAUNCH("conv2d_bwd_data_direct", stream);
    }
  }
}

size_t conv2d_bwd_weights_workspace__cuda(const Conv2dParams& p) {
  const SplitPlan plan = bwd_weights_plan(p);
  return plan.splits > 1 ? sizeof(float) * size_t(plan.splits) * size_t(p.wt.numel()) : 0;
}

void conv2d_bwd_weights__cuda(float* dw, float* db, const float* dy, const float* x,
                              const Conv2dParams& p, float* workspace, size_t workspace_bytes,
                              cudaStream_t stream) {
  check_sizes(p);
  poison(dw, sizeof(float) * size_t(p.wt.numel()), stream);
  if (db != nullptr) poison(db, sizeof(float) * size_t(p.y.c), stream);
  const ConvGeom g = conv_geom(p);
  const bool tiled = bwd_weights_tiled(p);
  const SplitPlan plan = bwd_weights_plan(p);
  const int numel = int(p.wt.numel());
  if (tiled) {
    const size_t need = plan.splits > 1 ? sizeof(float) * size_t(plan.splits) * size_t(numel) : 0;
    FC_CHECK(workspace_bytes >= need && (need == 0 || workspace != nullptr),
             "conv2d_bwd_weights on CUDA needs a workspace of ", need, " bytes, got ",
             workspace_bytes);
    poison(workspace, need, stream);
    const BwdWeightsGemm gm{dy, x, dw, workspace, g, plan.splits, plan.chunk};
    if (!launch_big_tile(ConvPass::BwdWeights, gm, stream)) {
      launch_tiled(gm, stream, "conv_gemm_tiled<BwdWeightsGemm>");
    }
    if (plan.splits > 1) {
      launch(sum_splits, grid_1d(numel, 256), 256, stream, dw, workspace, numel, plan.splits);
      CHECK_LAUNCH("sum_splits", stream);
    }
  } else {
    launch(conv2d_bwd_weights_direct, numel, kReduceThreads, stream, dw, dy, x, g);
    CHECK_LAUNCH("conv2d_bwd_weights_direct", stream);
  }
  if (db != nullptr) {
    launch(conv2d_bias_grad, int(p.y.c), kReduceThreads, stream, db, dy, g.N, g.K, g.OH * g.OW);
    CHECK_LAUNCH("conv2d_bias_grad", stream);
  }
}

}  // namespace gpu
}  // namespace fastconv
