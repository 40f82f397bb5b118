// conv_pool__avx512.cpp — the avx512 direct convolution (fwd / bwd_data, both bwd_weights kernels) and
// max-pool 2x2/2 kernels:
// ../conv2d_direct.inl, ../maxpool2d_simd.inl and ../maxpool2d_bwd_tiles.inl instantiated over
// simd__avx512.h. Compiled with
// -mavx512f -mavx2 -mfma only; everything except the exported `__avx512` entry points is file-local.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "fastconv/cpu_kernels.h"
#include "fastconv/winograd.h"
#include "fastconv/winograd_rows.h"

namespace {
#include "simd__avx512.h"
#include "../conv2d_direct.inl"
#include "../maxpool2d_simd.inl"
#include "../maxpool2d_bwd_tiles.inl"
#include "../conv2d_bww_cl.inl"
#include "../conv2d_bww_rows.inl"
#include "../conv2d_bww_rows3.inl"
#include "../conv2d_bwd_data_dylanes.inl"
#include "../conv2d_fwd_cl.inl"
#include "../conv2d_bwd_data_cl.inl"
#include "../conv2d_winograd.inl"
#include "../conv2d_winograd_tiles.inl"
#include "../conv2d_winograd_bww.inl"
#include "../conv2d_winograd_rows.inl"
#include "../conv2d_winograd_one_plane.inl"

// Tiles: forward R = 2 rows x 2 vectors (or 4 rows x 1 vector when OW fits one) x 4..6
// channels; backward-weights up to 8 channels x 3 taps or 5 x 5 (32 vector registers).
using Direct = DirectConv<VecAvx512, 2, 4, 32, 4, 4>;

}  // namespace

namespace fastconv {
namespace cpu {

void conv2d_fwd_direct__avx512(float* y, const float* xpad, const float* w, const float* bias,
                             bool relu, const DirectConvArgs& a) {
  Direct::fwd(y, xpad, w, bias, relu, a);
}

void conv2d_fwd_direct_shifted__avx512(float* y, const float* xs, const float* w,
                                       const float* bias, bool relu, const DirectConvArgs& a) {
  Direct::fwd_shifted(y, xs, w, bias, relu, a);
}

void shift_planes__avx512(float* xs, const float* x_n, int64_t H, int64_t W, int64_t top,
                  int64_t left, const DirectConvArgs& a) {
  Direct::shift_planes(xs, x_n, H, W, top, left, a);
}

void conv2d_bwd_weights_direct__avx512(float* acc, float* dbacc, const float* dy,
                                     const float* xs, const DirectConvArgs& a) {
  Direct::bwd_weights(acc, dbacc, dy, xs, a);
}

void conv2d_bwd_data_dylanes__avx512(float* dx, const float* dyp, const float* wf,
                                     const DyLanesArgs& a) {
  BwdDataDyLanes<VecAvx512>::run(dx, dyp, wf, a);
}

// Short rows (<= 3 vectors): more channels per tile (lenet.conv2 -24%).
namespace {  // the per-row tiles: the direct weight gradient and the rows Winograds
using ShortRowTile = BwdWeightsChannelsLast<VecAvx512, 8, 3>;
using RowTile = BwdWeightsChannelsLast<VecAvx512, 3, 7>;
constexpr int64_t kShortRowLanes = 3 * VecAvx512::W;  // rows up to this take ShortRowTile

// A rows Winograd weight gradient (BwdWeightsRows, BwdWeightsRows3) on the tile for lp.
template <template <class, class> class Rows>
void rows_on_row_tiles(float* acc, const float* dy, const float* xcl, const DirectConvArgs& a,
                       int64_t lp, float* work, int64_t slot, int64_t images,
                       const PrefetchSpans& next) {
  if (lp <= kShortRowLanes) {
    Rows<VecAvx512, ShortRowTile>::run(acc, dy, xcl, a, lp, work, slot, images, next);
  } else {
    Rows<VecAvx512, RowTile>::run(acc, dy, xcl, a, lp, work, slot, images, next);
  }
}
}  // namespace

void conv2d_bwd_weights_direct_cl__avx512(float* acc, const float* dy, const float* xcl,
                                          const DirectConvArgs& a, int64_t lp, bool flat) {
  if (flat) {
    BwdWeightsFlatLanes<VecAvx512, 4, 6>::run(acc, dy, xcl, a, lp);
  } else if (lp <= kShortRowLanes) {
    ShortRowTile::run(acc, dy, xcl, a, lp);
  } else {
    RowTile::run(acc, dy, xcl, a, lp);
  }
}

void conv2d_bwd_weights_rows__avx512(float* acc, const float* dy, const float* xcl,
                                     const DirectConvArgs& a, int64_t lp, float* work, int64_t slot,
                                     int64_t images, const PrefetchSpans& next) {
  rows_on_row_tiles<BwdWeightsRows>(acc, dy, xcl, a, lp, work, slot, images, next);
}

// ... over groups of three rows (conv2d_bww_rows3.inl).
void conv2d_bwd_weights_rows3__avx512(float* acc, const float* dy, const float* xcl,
                                      const DirectConvArgs& a, int64_t lp, float* work, int64_t slot,
                                      int64_t images, const PrefetchSpans& next) {
  rows_on_row_tiles<BwdWeightsRows3>(acc, dy, xcl, a, lp, work, slot, images, next);
}

// Channels-in-lanes forward: pixels per tile by channel vectors (acc NP*COV + COV weights + one
// broadcast within the 32 registers).
void conv2d_fwd_cl__avx512(float* ycl, const float* xpad, const float* wcl, const ClConvArgs& a) {
  FwdChannelsInLanes<VecAvx512, 16, 14, 9, 6>::run(ycl, xpad, wcl, a);
}

void conv2d_fwd_winograd_rows__avx512(float* ycl, const float* xpad, const float* u, float* work,
                                      const ClConvArgs& a) {
  using Cl = FwdChannelsInLanes<VecAvx512, 16, 14, 9, 6>;
  if (a.kh == 5) {
    WinogradRowsF<VecAvx512, Cl, 5>::run(ycl, xpad, u, work, a);
  } else {
    WinogradRowsF<VecAvx512, Cl, 3>::run(ycl, xpad, u, work, a);
  }
}

void conv2d_fwd_winograd__avx512(float* ycl, const float* xpad, const float* u, float* work,
                                 const ClConvArgs& a) {
  if (a.kh == 5) {
    WinogradF2<VecAvx512, 5>::run(ycl, xpad, u, work, a);
  } else {
    WinogradF2<VecAvx512, 3>::run(ycl, xpad, u, work, a);
  }
}

void conv2d_fwd_winograd_tiles__avx512(float* y, const float* xpad, const float* u,
                                       const float* bias, bool relu, float* work,
                                       const WinogradTilesArgs& a) {
  if (a.kh == 5) {
    WinogradTilesF2<VecAvx512, 5>::run(y, xpad, u, bias, relu, work, a);
  } else {
    WinogradTilesF2<VecAvx512, 3>::run(y, xpad, u, bias, relu, work, a);
  }
}

void conv2d_fwd_winograd_tiles_4x2__avx512(float* y, const float* xpad, const float* u,
                                           const float* bias, bool relu, float* work,
                                           const WinogradTilesArgs& a) {
  WinogradTilesF2<VecAvx512, 5, 4, 0, 4>::run(y, xpad, u, bias, relu, work, a);
}

// 5 channels x 4 vectors of tiles: 20 accumulators + 4 point vectors + a broadcast.
void conv2d_fwd_winograd_one_plane__avx512(float* y, const float* xpad, const float* u,
                                      const float* bias, bool relu, float* work,
                                      const WinogradTilesArgs& a) {
  WinogradOnePlaneF2x5<VecAvx512, 5, 4>::run(y, xpad, u, bias, relu, work, a);
}

void conv2d_bwd_data_winograd__avx512(float* dxcl, const float* dy, const float* u, float* work,
                                      const ClConvArgs& a) {
  if (a.kh == 5) {
    WinogradF2<VecAvx512, 5>::run_transposed(dxcl, dy, u, work, a);
  } else {
    WinogradF2<VecAvx512, 3>::run_transposed(dxcl, dy, u, work, a);
  }
}

namespace {
// One 16 x 16 block by the usual unpack / 128-bit-lane shuffle ladder (64 shuffles against 256
// scalar moves): input rows i < rows of `cols` floats (in + i*in_stride; rows past `rows` read as
// zeros) become output rows j < cols of 16 floats (out + j*out_stride), lanes outside out_mask
// left untouched.
inline void transpose_block16(float* out, int64_t out_stride, const float* in, int64_t in_stride,
                              int64_t rows, int64_t cols, __mmask16 out_mask) {
  const __mmask16 m = __mmask16((1u << unsigned(cols)) - 1u);
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i)
    r[i] = i < rows ? _mm512_maskz_loadu_ps(m, in + i * in_stride) : _mm512_setzero_ps();
  for (int i = 0; i < 8; ++i) {  // pairs of rows interleaved
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int g = 0; g < 4; ++g) {  // r[4g + k]: rows 4g..4g+3 of columns k, 4 + k, 8 + k, 12 + k
    const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
    r[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int k = 0; k < 4; ++k) {  // the four 128-bit lanes of the four groups, gathered
    const __m512 a = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88);
    const __m512 b = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xdd);
    const __m512 c = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88);
    const __m512 d = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xdd);
    const __m512 col[4] = {_mm512_shuffle_f32x4(a, c, 0x88), _mm512_shuffle_f32x4(b, d, 0x88),
                           _mm512_shuffle_f32x4(a, c, 0xdd), _mm512_shuffle_f32x4(b, d, 0xdd)};
    for (int l = 0; l < 4; ++l)  // output row 4l + k
      if (4 * l + k < cols) _mm512_mask_storeu_ps(out + (4 * l + k) * out_stride, out_mask, col[l]);
  }
}
}  // namespace

// 16 x 16 blocks: 16 channel rows of 16 pixels in, 16 pixel rows of 16 channels out (zeros in
// the lanes past C).
void transpose_to_lanes__avx512(float* dyT, const float* dy, int64_t C, int64_t P, int64_t coutp) {
  for (int64_t c0 = 0; c0 < C; c0 += 16)
    for (int64_t q0 = 0; q0 < P; q0 += 16)
      transpose_block16(dyT + q0 * coutp + c0, coutp, dy + c0 * P + q0, P, C - c0,
                        P - q0 < 16 ? P - q0 : 16, __mmask16(0xffff));
}

// The image's rows into the padded channels-last buffer, 16 x 16 blocks per row: ~1.4 us per
// cnn1.conv2 image as a scalar loop with C-strided stores, 6% of its weight gradient.
void pad_channels_last__avx512(float* xcl, const float* x_n, int64_t H, int64_t W, int64_t C,
                               int64_t top, int64_t left, int64_t wp) {
  for (int64_t iy = 0; iy < H; ++iy) {
    float* row = xcl + ((iy + top) * wp + left) * C;
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
      const int64_t cn = C - c0 < 16 ? C - c0 : 16;
      for (int64_t x0 = 0; x0 < W; x0 += 16)
        transpose_block16(row + x0 * C + c0, C, x_n + (c0 * H + iy) * W + x0, H * W, cn,
                          W - x0 < 16 ? W - x0 : 16, __mmask16((1u << unsigned(cn)) - 1u));
    }
  }
}

void conv2d_bwd_weights_winograd__avx512(float* acc, const float* xpad, const float* dyT,
                                         float* work, const ClConvArgs& a, const PrefetchSpans& next) {
  WinogradBww<VecAvx512, 3>::run(acc, xpad, dyT, work, a, next);
}

// Scatter bwd_data: up to 28 (one channel vector) or 14 (two) accumulator columns.
void conv2d_bwd_data_scatter__avx512(float* ycl, const float* dy, const float* wb,
                                     const ScatterArgs& a) {
  BwdDataScatter<VecAvx512, 28, 14>::run(ycl, dy, wb, a);
}

void maxpool2d_fwd_2x2s2__avx512(float* y, int64_t* idx, const float* x, int64_t H, int64_t W,
                               int64_t OH, int64_t OW, int64_t planes) {
  maxpool2d_fwd_2x2s2<VecAvx512>(y, idx, x, H, W, OH, OW, planes);
}

void maxpool2d_codes_2x2s2__avx512(float* y, uint8_t* codes, const float* x, int64_t H,
                                   int64_t W, int64_t OH, int64_t OW, int64_t planes) {
  maxpool2d_codes_2x2s2<VecAvx512>(y, codes, x, H, W, OH, OW, planes);
}

bool unpool2d_codes_2x2s2__avx512(float* dx, const float* dy, const uint8_t* codes, int64_t H,
                                  int64_t W, int64_t OH, int64_t OW, int64_t planes) {
  return unpool2d_codes_2x2s2_tiles<VecAvx512>(dx, dy, codes, H, W, OH, OW, planes);
}

bool maxpool2d_bwd_2x2s2__avx512(float* dx, const float* dy, const int64_t* idx, int64_t H,
                                 int64_t W, int64_t OH, int64_t OW, int64_t planes) {
  return maxpool2d_bwd_2x2s2_tiles<VecAvx512>(dx, dy, idx, H, W, OH, OW, planes);
}

void conv2d_bwd_weights_direct_t__avx512(float* acc, const float* dyT, const float* xpad,
                                   const DirectConvArgs& a) {
  Direct::bwd_weights_t(acc, dyT, xpad, a);
}

}  // namespace cpu
}  // namespace fastconv
