// image_lanes__avx2.cpp — bwd_data with the images in the lanes by a 1-D Winograd F(4, 5) along
// the rows (../conv2d_bwd_data_image_lanes.inl) over simd__avx2.h: tiles of 2 Winograd tiles x 6
// dx channels (12 sums + 2 point vectors + a broadcast of 16 ymm registers). Compiled with -mavx2
// -mfma only; everything except the exported `__avx2` entry points is file-local.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "fastconv/cpu_kernels.h"

namespace {
#include "simd__avx2.h"
#include "../conv2d_bwd_data_image_lanes.inl"
}  // namespace

namespace fastconv {
namespace cpu {

void conv2d_bwd_data_image_lanes__avx2(float* const* dx, const float* const* dy, int64_t count,
                                       const float* u, float* work, int64_t t0, int64_t t1,
                                       const ImageLanesArgs& a) {
  BwdDataImageLanes<VecAvx2>::run(dx, dy, count, u, work, t0, t1, a);
}

int64_t conv2d_bwd_data_image_lanes_work__avx2(const ImageLanesArgs& a) {
  return BwdDataImageLanes<VecAvx2>::work_floats(a);
}

}  // namespace cpu
}  // namespace fastconv
