// conv_pool__avx2.cpp — the avx2 direct convolution (fwd / bwd_data, both bwd_weights kernels) and
// max-pool 2x2/2 kernels:
// ../conv2d_direct.inl, ../maxpool2d_simd.inl and ../maxpool2d_bwd_tiles.inl instantiated over
// simd__avx2.h. Compiled with
// -mavx2 -mfma only; everything except the exported `__avx2` entry points is file-local.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "fastconv/cpu_kernels.h"

namespace {
#include "simd__avx2.h"
#include "../conv2d_direct.inl"
#include "../maxpool2d_simd.inl"
#include "../maxpool2d_bwd_tiles.inl"

// Tiles: forward R = 1 rows x 2 vectors (or 2 rows x 1 vector when OW fits one) x 4..6
// channels; backward-weights up to 4 channels x 3 taps or 2 x 5 (16 vector registers).
using Direct = DirectConv<VecAvx2, 1, 2, 16, 2, 2>;
}  // namespace

namespace fastconv {
namespace cpu {

void conv2d_fwd_direct__avx2(float* y, const float* xpad, const float* w, const float* bias,
                             bool relu, const DirectConvArgs& a) {
  Direct::fwd(y, xpad, w, bias, relu, a);
}

void conv2d_fwd_direct_shifted__avx2(float* y, const float* xs, const float* w,
                                     const float* bias, bool relu, const DirectConvArgs& a) {
  Direct::fwd_shifted(y, xs, w, bias, relu, a);
}

void shift_planes__avx2(float* xs, const float* x_n, int64_t H, int64_t W, int64_t top,
                  int64_t left, const DirectConvArgs& a) {
  Direct::shift_planes(xs, x_n, H, W, top, left, a);
}

void conv2d_bwd_weights_direct__avx2(float* acc, float* dbacc, const float* dy,
                                     const float* xs, const DirectConvArgs& a) {
  Direct::bwd_weights(acc, dbacc, dy, xs, a);
}

void maxpool2d_codes_2x2s2__avx2(float* y, uint8_t* codes, const float* x, int64_t H,
                                 int64_t W, int64_t OH, int64_t OW, int64_t planes) {
  maxpool2d_codes_2x2s2<VecAvx2>(y, codes, x, H, W, OH, OW, planes);
}

void maxpool2d_fwd_2x2s2__avx2(float* y, int64_t* idx, const float* x, int64_t H, int64_t W,
                               int64_t OH, int64_t OW, int64_t planes) {
  maxpool2d_fwd_2x2s2<VecAvx2>(y, idx, x, H, W, OH, OW, planes);
}

bool unpool2d_codes_2x2s2__avx2(float* dx, const float* dy, const uint8_t* codes, int64_t H,
                                int64_t W, int64_t OH, int64_t OW, int64_t planes) {
  return unpool2d_codes_2x2s2_tiles<VecAvx2>(dx, dy, codes, H, W, OH, OW, planes);
}

bool maxpool2d_bwd_2x2s2__avx2(float* dx, const float* dy, const int64_t* idx, int64_t H,
                               int64_t W, int64_t OH, int64_t OW, int64_t planes) {
  return maxpool2d_bwd_2x2s2_tiles<VecAvx2>(dx, dy, idx, H, W, OH, OW, planes);
}

void conv2d_bwd_weights_direct_t__avx2(float* acc, const float* dyT, const float* xpad,
                                   const DirectConvArgs& a) {
  Direct::bwd_weights_t(acc, dyT, xpad, a);
}

}  // namespace cpu
}  // namespace fastconv
