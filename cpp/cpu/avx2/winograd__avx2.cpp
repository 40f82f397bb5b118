// winograd__avx2.cpp — Winograd F(2x2, 3x3) / F(2x2, 5x5) forward (channels or tiles in the
// lanes), bwd_data as the forward's transpose, and the 3x3 weight gradient F(3x3, 2x2):
// ../conv2d_winograd*.inl instantiated over simd__avx2.h. Compiled with -mavx2 -mfma only;
// everything except the exported `__avx2` entry points is file-local.
//
// Tiles for 16 ymm registers: point GEMMs of at most 2 channel vectors (6 tiles x 2 vectors + 2
// weight vectors + a broadcast = 15 registers; 12 x 1 with one vector), tiles-in-lanes blocks of
// up to 3 units (6 channels x 2 unit vectors + 2 + 1, or 4 channels x 3 + 3 + 1), weight-gradient tiles of 6 input channels x 2
// vectors (12 x 1).
#include <immintrin.h>

#include <cstdint>

#include "fastconv/cpu_kernels.h"
#include "fastconv/winograd.h"
#include "fastconv/winograd_rows.h"

namespace {
#include "simd__avx2.h"
#include "../conv2d_winograd.inl"
#include "../conv2d_winograd_tiles.inl"
#include "../conv2d_winograd_bww.inl"
#include "../conv2d_winograd_one_plane.inl"

constexpr int kMaxCov = 2, kRegs = 16, kMaxUnits = 3, kTilesCoWide = 4;
template <int R>
using Channels = WinogradF2<VecAvx2, R, kMaxCov, kRegs>;
template <int R>
using Tiles = WinogradTilesF2<VecAvx2, R, kMaxUnits, kTilesCoWide>;
using Tiles4x2 = WinogradTilesF2<VecAvx2, 5, kMaxUnits, kTilesCoWide, 4>;
}  // namespace

namespace fastconv {
namespace cpu {

void conv2d_fwd_winograd__avx2(float* ycl, const float* xpad, const float* u, float* work,
                               const ClConvArgs& a) {
  if (a.kh == 5) {
    Channels<5>::run(ycl, xpad, u, work, a);
  } else {
    Channels<3>::run(ycl, xpad, u, work, a);
  }
}

void conv2d_fwd_winograd_tiles__avx2(float* y, const float* xpad, const float* u,
                                     const float* bias, bool relu, float* work,
                                     const WinogradTilesArgs& a) {
  if (a.kh == 5) {
    Tiles<5>::run(y, xpad, u, bias, relu, work, a);
  } else {
    Tiles<3>::run(y, xpad, u, bias, relu, work, a);
  }
}

void conv2d_fwd_winograd_tiles_4x2__avx2(float* y, const float* xpad, const float* u,
                                         const float* bias, bool relu, float* work,
                                         const WinogradTilesArgs& a) {
  Tiles4x2::run(y, xpad, u, bias, relu, work, a);
}

// 4 channels x 3 vectors of tiles: 12 accumulators + 3 point vectors + a broadcast.
void conv2d_fwd_winograd_one_plane__avx2(float* y, const float* xpad, const float* u,
                                    const float* bias, bool relu, float* work,
                                    const WinogradTilesArgs& a) {
  WinogradOnePlaneF2x5<VecAvx2, 4, 3>::run(y, xpad, u, bias, relu, work, a);
}

void conv2d_bwd_data_winograd__avx2(float* dxcl, const float* dy, const float* u, float* work,
                                    const ClConvArgs& a) {
  if (a.kh == 5) {
    Channels<5>::run_transposed(dxcl, dy, u, work, a);
  } else {
    Channels<3>::run_transposed(dxcl, dy, u, work, a);
  }
}

void conv2d_bwd_weights_winograd__avx2(float* acc, const float* xpad, const float* dyT,
                                       float* work, const ClConvArgs& a, const PrefetchSpans& next) {
  WinogradBww<VecAvx2, 3, kMaxCov, kRegs>::run(acc, xpad, dyT, work, a, next);
}

}  // namespace cpu
}  // namespace fastconv
