// conv_pool__avx512.cpp — the avx512 direct convolution (fwd / bwd_data, both bwd_weights kernels) and
// max-pool 2x2/2 kernels:
// ../conv2d_direct.inl and ../maxpool2d_simd.inl instantiated over simd__avx512.h. Compiled with
// -mavx512f -mavx2 -mfma only; everything except the exported `__avx512` entry points is file-local.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "fastconv/cpu_kernels.h"
#include "fastconv/winograd.h"

namespace {
#include "simd__avx512.h"
#include "../conv2d_direct.inl"
#include "../maxpool2d_simd.inl"
#include "../conv2d_bww_cl.inl"
#include "../conv2d_bwd_data_dylanes.inl"
#include "../conv2d_fwd_cl.inl"
#include "../conv2d_bwd_data_cl.inl"
#include "../conv2d_winograd.inl"
#include "../conv2d_winograd_tiles.inl"
#include "../conv2d_winograd_bww.inl"

// Tiles: forward R = 2 rows x 2 vectors (or 4 rows x 1 vector when OW fits one) x 4..6
// channels; backward-weights up to 8 channels x 3 taps or 5 x 5 (32 vector registers).
using Direct = DirectConv<VecAvx512, 2, 4, 32, 4, 4>;

// Both input rows of 16 2x2 windows (n valid): e0/o0 the even/odd columns of the top row, e1/o1
// of the bottom one, re-interleaved and stored in one pass (masked to the 2n real columns; plain
// stores where a vector is whole: vgg.pool's backward 0.166 -> 0.160 ms at 1 thread).
inline void store_window_rows(float* p0, float* p1, __m512 e0, __m512 o0, __m512 e1, __m512 o1,
                              int64_t n) {
  const __m512i ilo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i ihi =
      _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const int64_t n2 = 2 * n;
  const __mmask16 ma = __mmask16(n2 >= 16 ? 0xFFFFu : (1u << unsigned(n2)) - 1u);
  const __mmask16 mb = __mmask16(n2 > 16 ? (1u << unsigned(n2 - 16)) - 1u : 0u);
  if (ma == 0xFFFF) {
    _mm512_storeu_ps(p0, _mm512_permutex2var_ps(e0, ilo, o0));
    _mm512_storeu_ps(p1, _mm512_permutex2var_ps(e1, ilo, o1));
  } else {
    _mm512_mask_storeu_ps(p0, ma, _mm512_permutex2var_ps(e0, ilo, o0));
    _mm512_mask_storeu_ps(p1, ma, _mm512_permutex2var_ps(e1, ilo, o1));
  }
  if (mb == 0xFFFF) {
    _mm512_storeu_ps(p0 + 16, _mm512_permutex2var_ps(e0, ihi, o0));
    _mm512_storeu_ps(p1 + 16, _mm512_permutex2var_ps(e1, ihi, o1));
  } else if (mb != 0) {
    _mm512_mask_storeu_ps(p0 + 16, mb, _mm512_permutex2var_ps(e0, ihi, o0));
    _mm512_mask_storeu_ps(p1 + 16, mb, _mm512_permutex2var_ps(e1, ihi, o1));
  }
}

// The floor-mode remainder column of a row pair (W odd) gets no gradient.
inline void zero_floor_columns(float* r0, float* r1, int64_t W, int64_t OW) {
  if (2 * OW < W) {
    std::memset(r0 + 2 * OW, 0, size_t(W - 2 * OW) * sizeof(float));
    std::memset(r1 + 2 * OW, 0, size_t(W - 2 * OW) * sizeof(float));
  }
}

// Max-pool 2x2/2 backward, one plane, 16 outputs per step: d = low dword of idx - (tile corner),
// four compares give the winner's cell, the even/odd columns are re-interleaved and both input
// rows stored in one pass. The check that every index lies in its own tile is folded into two
// vectors tested once per plane (high dwords OR-ed: all zero; min(d, d - W) unsigned: at most 1),
// not a mask test and branch per step (cnn1.pool1's 2000 planes in a C++ loop, 1 thread:
// 0.18-0.22 -> 0.15-0.19 ms; through Python at 2 threads 0.089-0.14 -> 0.080-0.10 ms).
bool pool_bwd_2x2(float* dx, const float* dy, const int64_t* idx, int64_t H, int64_t W,
                  int64_t OH, int64_t OW) {
  if (H * W >= (int64_t(1) << 31)) return false;  // corners and d are int32
  const __m512i lo_pick =
      _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i lane2 = lo_pick;  // the tile corners of 16 windows in a row: 0, 2, 4, ...
  const __m512i c0 = _mm512_setzero_si512(), c1 = _mm512_set1_epi32(1);
  const __m512i cw = _mm512_set1_epi32(int32_t(W)), cw1 = _mm512_set1_epi32(int32_t(W + 1));
  __m512i high = _mm512_setzero_si512(), worst = _mm512_setzero_si512();
  for (int64_t oy = 0; oy < OH; ++oy) {
    float* r0 = dx + 2 * oy * W;
    float* r1 = r0 + W;
    const int64_t* ir = idx + oy * OW;
    const float* gr = dy + oy * OW;
    for (int64_t ox0 = 0; ox0 < OW; ox0 += 16) {
      const int64_t n = OW - ox0 < 16 ? OW - ox0 : 16;
      const __mmask16 m = __mmask16((1u << unsigned(n)) - 1u);
      const __m512i a = _mm512_maskz_loadu_epi64(__mmask8(m), ir + ox0);
      const __m512i b = _mm512_maskz_loadu_epi64(__mmask8(m >> 8), ir + ox0 + 8);
      high = _mm512_or_si512(high, _mm512_or_si512(a, b));
      const __m512i corner =
          _mm512_add_epi32(_mm512_set1_epi32(int32_t(2 * oy * W + 2 * ox0)), lane2);
      const __m512i d = _mm512_sub_epi32(_mm512_permutex2var_epi32(a, lo_pick, b), corner);
      worst = _mm512_mask_max_epu32(worst, m, worst,
                                    _mm512_min_epu32(d, _mm512_sub_epi32(d, cw)));
      const __m512 g = _mm512_maskz_loadu_ps(m, gr + ox0);
      const __mmask16 k0 = _mm512_cmpeq_epi32_mask(d, c0), k1 = _mm512_cmpeq_epi32_mask(d, c1);
      const __mmask16 kw = _mm512_cmpeq_epi32_mask(d, cw), kw1 = _mm512_cmpeq_epi32_mask(d, cw1);
      const __m512 e0 = _mm512_maskz_mov_ps(k0, g), o0 = _mm512_maskz_mov_ps(k1, g);
      const __m512 e1 = _mm512_maskz_mov_ps(kw, g), o1 = _mm512_maskz_mov_ps(kw1, g);
      store_window_rows(r0 + 2 * ox0, r1 + 2 * ox0, e0, o0, e1, o1, n);
    }
    zero_floor_columns(r0, r1, W, OW);
  }
  if (2 * OH < H) std::memset(dx + 2 * OH * W, 0, size_t((H - 2 * OH) * W) * sizeof(float));
  // idx in its own tile: high dword 0 (idx in [0, 2^32)) and low dword - corner in {0, 1, W, W+1}
  return _mm512_mask_test_epi32_mask(__mmask16(0xAAAA), high, high) == 0 &&
         _mm512_cmpgt_epu32_mask(worst, c1) == 0;
}

// kByteMask + 16 - n: n bytes of 0xFF, then zeros.
alignas(16) constexpr uint8_t kByteMask[32] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                               0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};

// Backward of the coded pooling (Unpool2x2CodesFn), 16 windows per step: the codes widened to
// int32, four compares give the winner's cell (a code with bit 2 set matches none: no gradient),
// then store_window_rows as above.
bool unpool_codes_2x2(float* dx, const float* dy, const uint8_t* codes, int64_t H, int64_t W,
                      int64_t OH, int64_t OW, int64_t planes) {
  const __m512i c0 = _mm512_setzero_si512(), c1 = _mm512_set1_epi32(1);
  const __m512i c2 = _mm512_set1_epi32(2), c3 = _mm512_set1_epi32(3);
  const __m512i high = _mm512_set1_epi32(~7);
  __m512i bad = _mm512_setzero_si512();
  const uint8_t* codes_end = codes + planes * OH * OW;
  for (int64_t pl = 0; pl < planes; ++pl) {
    float* dxp = dx + pl * H * W;
    for (int64_t oy = 0; oy < OH; ++oy) {
      float* r0 = dxp + 2 * oy * W;
      float* r1 = r0 + W;
      const uint8_t* cr = codes + (pl * OH + oy) * OW;
      const float* gr = dy + (pl * OH + oy) * OW;
      for (int64_t ox0 = 0; ox0 < OW; ox0 += 16) {
        const int64_t n = OW - ox0 < 16 ? OW - ox0 : 16;
        const __mmask16 m = __mmask16((1u << unsigned(n)) - 1u);
        __m128i c8;
        // 16 bytes are readable while they stay inside this call's planes; lanes past n are
        // masked off below (byte-masked loads would need AVX512BW; this unit is AVX512F only).
        if (cr + ox0 + 16 <= codes_end) {
          c8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cr + ox0));
          if (n < 16) c8 = _mm_and_si128(c8, _mm_loadu_si128(reinterpret_cast<const __m128i*>(kByteMask + 16 - n)));
        } else {
          alignas(16) uint8_t tmp[16] = {};
          std::memcpy(tmp, cr + ox0, size_t(n));
          c8 = _mm_load_si128(reinterpret_cast<const __m128i*>(tmp));
        }
        const __m512i c = _mm512_cvtepu8_epi32(c8);
        bad = _mm512_or_si512(bad, _mm512_and_si512(c, high));
        const __m512 g = _mm512_maskz_loadu_ps(m, gr + ox0);
        const __m512 e0 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(c, c0), g);
        const __m512 o0 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(c, c1), g);
        const __m512 e1 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(c, c2), g);
        const __m512 o1 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(c, c3), g);
        store_window_rows(r0 + 2 * ox0, r1 + 2 * ox0, e0, o0, e1, o1, n);
      }
      zero_floor_columns(r0, r1, W, OW);
    }
    if (2 * OH < H) std::memset(dxp + 2 * OH * W, 0, size_t((H - 2 * OH) * W) * sizeof(float));
  }
  return _mm512_test_epi32_mask(bad, bad) == 0;
}
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

void conv2d_bwd_weights_direct_cl__avx512(float* acc, const float* dy, const float* xcl,
                                          const DirectConvArgs& a, int64_t lp, bool flat) {
  if (flat) {
    BwdWeightsFlatLanes<VecAvx512, 4, 6>::run(acc, dy, xcl, a, lp);
  } else if (lp <= 3 * VecAvx512::W) {  // short rows: more channels per tile (lenet.conv2 -24%)
    BwdWeightsChannelsLast<VecAvx512, 8, 3>::run(acc, dy, xcl, a, lp);
  } else {
    BwdWeightsChannelsLast<VecAvx512, 3, 7>::run(acc, dy, xcl, a, lp);
  }
}

// Channels-in-lanes forward: pixels per tile by channel vectors (acc NP*COV + COV weights + one
// broadcast within the 32 registers).
void conv2d_fwd_cl__avx512(float* ycl, const float* xpad, const float* wcl, const ClConvArgs& a) {
  FwdChannelsInLanes<VecAvx512, 16, 14, 9, 6>::run(ycl, xpad, wcl, a);
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
                                         float* work, const ClConvArgs& a) {
  WinogradBww<VecAvx512, 3>::run(acc, xpad, dyT, work, a);
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
  return unpool_codes_2x2(dx, dy, codes, H, W, OH, OW, planes);
}

bool maxpool2d_bwd_2x2s2__avx512(float* dx, const float* dy, const int64_t* idx, int64_t H,
                                 int64_t W, int64_t OH, int64_t OW) {
  return pool_bwd_2x2(dx, dy, idx, H, W, OH, OW);
}

void conv2d_bwd_weights_direct_t__avx512(float* acc, const float* dyT, const float* xpad,
                                   const DirectConvArgs& a) {
  Direct::bwd_weights_t(acc, dyT, xpad, a);
}

}  // namespace cpu
}  // namespace fastconv
