// lanes__avx2.cpp — the channel-lane direct kernels on AVX2: forward / bwd_data with output
// channels in the lanes (../conv2d_fwd_cl.inl), scatter bwd_data (../conv2d_bwd_data_cl.inl),
// bwd_data with dy's channels in the lanes (../conv2d_bwd_data_dylanes.inl) and the (kx, ci) /
// (ky, kx, ci)-lane weight gradients (../conv2d_bww_cl.inl), instantiated over simd__avx2.h with
// tiles for 16 ymm registers. Compiled with -mavx2 -mfma only; everything except the exported
// `__avx2` entry points is file-local.
#include <immintrin.h>

#include <cstdint>

#include "fastconv/cpu_kernels.h"

namespace {
#include "simd__avx2.h"
#include "../conv2d_fwd_cl.inl"
#include "../conv2d_bwd_data_cl.inl"
#include "../conv2d_bwd_data_dylanes.inl"
#include "../conv2d_bww_cl.inl"
}  // namespace

namespace fastconv {
namespace cpu {

// Pixels per tile by channel vectors: NP*COV sums + COV weights + a broadcast <= 16 registers.
void conv2d_fwd_cl__avx2(float* ycl, const float* xpad, const float* wcl, const ClConvArgs& a) {
  FwdChannelsInLanes<VecAvx2, 12, 6, 4, 2>::run(ycl, xpad, wcl, a);
}

// Scatter: up to 13 (one channel vector) or 6 (two) accumulator columns.
void conv2d_bwd_data_scatter__avx2(float* ycl, const float* dy, const float* wb,
                                   const ScatterArgs& a) {
  BwdDataScatter<VecAvx2, 13, 6>::run(ycl, dy, wb, a);
}

// 2 pixels x 6 dx channels: 12 sums + 2 dy vectors + a weight vector.
void conv2d_bwd_data_dylanes__avx2(float* dx, const float* dyp, const float* wf,
                                   const DyLanesArgs& a) {
  BwdDataDyLanes<VecAvx2, 2, 6>::run(dx, dyp, wf, a);
}

// Channels x lane vectors: CO*NV sums + NV input vectors + a broadcast <= 16 registers.
void conv2d_bwd_weights_direct_cl__avx2(float* acc, const float* dy, const float* xcl,
                                        const DirectConvArgs& a, int64_t lp, bool flat) {
  if (flat) {
    BwdWeightsFlatLanes<VecAvx2, 4, 2>::run(acc, dy, xcl, a, lp);
  } else if (lp <= 2 * VecAvx2::W) {
    BwdWeightsChannelsLast<VecAvx2, 6, 2>::run(acc, dy, xcl, a, lp);
  } else {
    BwdWeightsChannelsLast<VecAvx2, 3, 3>::run(acc, dy, xcl, a, lp);
  }
}

// The image's rows into the padded channels-last buffer (a plain transposing loop: C-strided
// stores, small next to the weight gradient it feeds).
void pad_channels_last__avx2(float* xcl, const float* x_n, int64_t H, int64_t W, int64_t C,
                             int64_t top, int64_t left, int64_t wp) {
  for (int64_t iy = 0; iy < H; ++iy) {
    float* row = xcl + ((iy + top) * wp + left) * C;
    for (int64_t c = 0; c < C; ++c) {
      const float* src = x_n + (c * H + iy) * W;
      for (int64_t ix = 0; ix < W; ++ix) row[ix * C + c] = src[ix];
    }
  }
}

}  // namespace cpu
}  // namespace fastconv
