// lanes__avx2.cpp — the channel-lane direct kernels on AVX2: forward / bwd_data with output
// channels in the lanes (../conv2d_fwd_cl.inl), scatter bwd_data (../conv2d_bwd_data_cl.inl),
// bwd_data with dy's channels in the lanes (../conv2d_bwd_data_dylanes.inl) and the (kx, ci) /
// (ky, kx, ci)-lane weight gradients (../conv2d_bww_cl.inl), instantiated over simd__avx2.h with
// tiles for 16 ymm registers. Compiled with -mavx2 -mfma only; everything except the exported
// `__avx2` entry points is file-local.
#include <immintrin.h>

#include <cstdint>

#include "fastconv/cpu_kernels.h"
#include "fastconv/winograd_rows.h"

namespace {
#include "simd__avx2.h"
#include "../conv2d_fwd_cl.inl"
#include "../conv2d_bwd_data_cl.inl"
#include "../conv2d_bwd_data_dylanes.inl"
#include "../conv2d_bww_cl.inl"
#include "../conv2d_winograd_rows.inl"
#include "../conv2d_bww_rows.inl"
#include "../conv2d_bww_rows3.inl"

// An 8 x 8 block: `rows` input rows (pitch in_stride) of `cols` floats each become `cols` output
// rows (pitch out_stride) of 8 lanes, lanes past `rows` zero.
inline void transpose_block8(float* out, int64_t out_stride, const float* in, int64_t in_stride,
                             int64_t rows, int64_t cols) {
  __m256 r[8];
  const __m256i cm = VecAvx2::tail(cols);
  for (int k = 0; k < 8; ++k)
    r[k] = k >= rows   ? _mm256_setzero_ps()
           : cols == 8 ? _mm256_loadu_ps(in + k * in_stride)
                       : _mm256_maskload_ps(in + k * in_stride, cm);
  VecAvx2::transpose8(r);
  for (int j = 0; j < 8 && j < cols; ++j) _mm256_storeu_ps(out + j * out_stride, r[j]);
}
}  // namespace

namespace fastconv {
namespace cpu {

// Pixels per tile by channel vectors: NP*COV sums + COV weights + a broadcast <= 16 registers.
void conv2d_fwd_cl__avx2(float* ycl, const float* xpad, const float* wcl, const ClConvArgs& a) {
  FwdChannelsInLanes<VecAvx2, 12, 6, 4, 2>::run(ycl, xpad, wcl, a);
}

// The same tiles on the 1-D Winograd points (conv2d_winograd_rows.inl).
void conv2d_fwd_winograd_rows__avx2(float* ycl, const float* xpad, const float* u, float* work,
                                    const ClConvArgs& a) {
  using Cl = FwdChannelsInLanes<VecAvx2, 12, 6, 4, 2>;
  if (a.kh == 5) {
    WinogradRowsF<VecAvx2, Cl, 5>::run(ycl, xpad, u, work, a);
  } else {
    WinogradRowsF<VecAvx2, Cl, 3>::run(ycl, xpad, u, work, a);
  }
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

// Channels x lane vectors: CO*NV sums + NV input vectors + a broadcast <= 16 registers (4 x 3:
// 7 loads per 12 FMAs; 3 x 3 had 6 per 9: keras.conv2 bwd_weights 72.5 -> 66.9 ms, cnn1.conv2
// 6.44 -> 6.18 at 1 thread, same process, alternating, medians, load ~10); flat lanes 4 x 3 too
// (4 x 2 before: lenet.conv2 1.02 -> 0.93 ms, cnn1.conv2 forced 4.85 -> 4.61).
namespace {  // the per-row tiles: the direct weight gradient and the rows Winograds
using ShortRowTile = BwdWeightsChannelsLast<VecAvx2, 6, 2>;  // rows of <= 2 vectors
using RowTile = BwdWeightsChannelsLast<VecAvx2, 4, 3>;
constexpr int64_t kShortRowLanes = 2 * VecAvx2::W;  // rows up to this take ShortRowTile

// A rows Winograd weight gradient (BwdWeightsRows, BwdWeightsRows3) on the tile for lp.
template <template <class, class> class Rows>
void rows_on_row_tiles(float* acc, const float* dy, const float* xcl, const DirectConvArgs& a,
                       int64_t lp, float* work, int64_t slot, int64_t images,
                       const PrefetchSpans& next) {
  if (lp <= kShortRowLanes) {
    Rows<VecAvx2, ShortRowTile>::run(acc, dy, xcl, a, lp, work, slot, images, next);
  } else {
    Rows<VecAvx2, RowTile>::run(acc, dy, xcl, a, lp, work, slot, images, next);
  }
}
}  // namespace

void conv2d_bwd_weights_direct_cl__avx2(float* acc, const float* dy, const float* xcl,
                                        const DirectConvArgs& a, int64_t lp, bool flat) {
  if (flat) {
    BwdWeightsFlatLanes<VecAvx2, 4, 3>::run(acc, dy, xcl, a, lp);
  } else if (lp <= kShortRowLanes) {
    ShortRowTile::run(acc, dy, xcl, a, lp);
  } else {
    RowTile::run(acc, dy, xcl, a, lp);
  }
}

// The rows Winograd's point GEMMs on the per-row tiles above (cnn1.conv2: kh*cin = 100 lanes,
// 13 vectors in chunks of 3, 3, 3, 2, 2).
void conv2d_bwd_weights_rows__avx2(float* acc, const float* dy, const float* xcl,
                                   const DirectConvArgs& a, int64_t lp, float* work, int64_t slot,
                                   int64_t images, const PrefetchSpans& next) {
  rows_on_row_tiles<BwdWeightsRows>(acc, dy, xcl, a, lp, work, slot, images, next);
}

// ... over groups of three rows (conv2d_bww_rows3.inl).
void conv2d_bwd_weights_rows3__avx2(float* acc, const float* dy, const float* xcl,
                                    const DirectConvArgs& a, int64_t lp, float* work, int64_t slot,
                                    int64_t images, const PrefetchSpans& next) {
  rows_on_row_tiles<BwdWeightsRows3>(acc, dy, xcl, a, lp, work, slot, images, next);
}

// 8 x 8 blocks: 8 channel rows of 8 pixels in, 8 pixel rows of 8 channels out (zeros in the
// lanes past C; coutp >= round_up(C, 8)). As a scalar loop it was 9.5% of lenet.conv2's dy-lanes
// bwd_data.
void transpose_to_lanes__avx2(float* dyT, const float* dy, int64_t C, int64_t P, int64_t coutp) {
  for (int64_t c0 = 0; c0 < C; c0 += 8)
    for (int64_t q0 = 0; q0 < P; q0 += 8)
      transpose_block8(dyT + q0 * coutp + c0, coutp, dy + c0 * P + q0, P, C - c0 < 8 ? C - c0 : 8,
                       P - q0 < 8 ? P - q0 : 8);
}

// 8 x 8 blocks: 8 pixel rows of 8 channels in, 8 channel rows of 8 pixels out (+ bias, ReLU as
// max(0, v), which keeps NaN and -0 as the loop does); the last P % 8 pixels by that loop. As the
// loop (lanes-strided reads) it was ~6% of lenet.conv2's channel-lane forward.
void unpack_channels_last__avx2(float* y, const float* ycl, int64_t C, int64_t P, int64_t lanes,
                                const float* bias, bool relu) {
  const int64_t p8 = P / 8 * 8;
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t c0 = 0; c0 < C; c0 += 8) {
    const int cn = C - c0 < 8 ? int(C - c0) : 8;
    float b[8];
    for (int j = 0; j < 8; ++j) b[j] = bias != nullptr && j < cn ? bias[c0 + j] : 0.0f;
    for (int64_t q0 = 0; q0 < p8; q0 += 8) {
      __m256 r[8];
      for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(ycl + (q0 + k) * lanes + c0);
      VecAvx2::transpose8(r);
      for (int j = 0; j < cn; ++j) {
        __m256 v = _mm256_add_ps(r[j], _mm256_set1_ps(b[j]));
        if (relu) v = _mm256_max_ps(zero, v);  // the second operand where either is NaN
        _mm256_storeu_ps(y + (c0 + j) * P + q0, v);
      }
    }
    for (int j = 0; j < cn; ++j)
      for (int64_t q = p8; q < P; ++q) {
        const float v = ycl[q * lanes + c0 + j] + b[j];
        y[(c0 + j) * P + q] = relu && v < 0.0f ? 0.0f : v;
      }
  }
}

// The image's rows into the padded channels-last buffer, 8 x 8 blocks per row (as a scalar loop
// with C-strided stores it was 6.5% of cnn1.conv2's weight gradient). C >= 8: the last C % 8
// channels as a whole block overlapping the one before (the same values rewritten), and likewise
// a row's last W % 8 pixels (cnn1.conv2's 20 channels of 14 pixels: the 4 channels by the loop
// and the 6 pixels by masked loads were ~8% of its row-pair Winograd weight gradient). C < 8 by
// the loop (masked stores, microcoded on AMD, made lenet.conv2's 6 channels 9% slower).
void pad_channels_last__avx2(float* xcl, const float* x_n, int64_t H, int64_t W, int64_t C,
                             int64_t top, int64_t left, int64_t wp) {
  const int64_t c8 = C / 8 * 8, clast = C >= 8 && C % 8 != 0 ? C - 8 : -1;
  const int64_t x8 = W >= 8 ? W / 8 * 8 : 0, xlast = W >= 8 && W % 8 != 0 ? W - 8 : -1;
  const auto block = [&](float* row, int64_t iy, int64_t c0) {
    const float* src = x_n + (c0 * H + iy) * W;
    for (int64_t x0 = 0; x0 < x8; x0 += 8) transpose_block8(row + x0 * C + c0, C, src + x0, H * W, 8, 8);
    if (xlast >= 0) transpose_block8(row + xlast * C + c0, C, src + xlast, H * W, 8, 8);
    if (W < 8) transpose_block8(row + c0, C, src, H * W, 8, W);
  };
  for (int64_t iy = 0; iy < H; ++iy) {
    float* row = xcl + ((iy + top) * wp + left) * C;
    for (int64_t c0 = 0; c0 < c8; c0 += 8) block(row, iy, c0);
    if (clast >= 0) {
      block(row, iy, clast);
      continue;
    }
    for (int64_t c = c8; c < C; ++c) {
      const float* src = x_n + (c * H + iy) * W;
      for (int64_t ix = 0; ix < W; ++ix) row[ix * C + c] = src[ix];
    }
  }
}

}  // namespace cpu
}  // namespace fastconv
