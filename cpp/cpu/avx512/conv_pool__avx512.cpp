// conv_pool__avx512.cpp — the avx512 direct convolution (small C_in) and max-pool 2x2/2 kernels:
// ../conv2d_direct.inl and ../maxpool2d_simd.inl instantiated over simd__avx512.h. Compiled with
// -mavx512f -mavx2 -mfma only; everything except the three exported entry points is file-local.
#include <immintrin.h>

#include <cstdint>

#include "fastconv/cpu_kernels.h"

namespace {
#include "simd__avx512.h"
#include "../conv2d_direct.inl"
#include "../maxpool2d_simd.inl"

// Tiles: forward R = 2 rows x 2 vectors (or 4 rows x 1 vector when OW fits one) x 4..6
// channels; backward-weights 4 channels x up to 5 taps (register budget of the ISA).
using Direct = DirectConv<VecAvx512, 2, 4, 4>;
}  // namespace

namespace fastconv {
namespace cpu {

void conv2d_fwd_direct__avx512(float* y, const float* xpad, const float* w, const float* bias,
                             bool relu, const DirectConvArgs& a) {
  Direct::fwd(y, xpad, w, bias, relu, a);
}

void conv2d_bwd_weights_direct__avx512(float* acc, float* dbacc, const float* dy,
                                     const float* xpad, const DirectConvArgs& a) {
  Direct::bwd_weights(acc, dbacc, dy, xpad, a);
}

void maxpool2d_fwd_2x2s2__avx512(float* y, int64_t* idx, const float* x, int64_t H, int64_t W,
                               int64_t OH, int64_t OW, int64_t planes) {
  maxpool2d_fwd_2x2s2<VecAvx512>(y, idx, x, H, W, OH, OW, planes);
}

}  // namespace cpu
}  // namespace fastconv
