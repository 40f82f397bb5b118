// image_lanes__avx512.cpp — the AVX-512 path's bwd_data with the images in the lanes
// (../conv2d_bwd_data_image_lanes.inl) on 8-lane vectors (../avx2/simd__avx2.h), compiled with the
// AVX-512 flags (EVEX encodings: 32 registers). 8-image groups, not 16: lenet.conv2's 100 images
// fill 96% of 8-image groups and 89% of 16-image ones, and Zen 4 runs a 16-lane FMA as two 8-lane
// halves (PERF_LOG round 22).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "fastconv/cpu_kernels.h"

namespace {
#include "../avx2/simd__avx2.h"
#include "../conv2d_bwd_data_image_lanes.inl"
}  // namespace

namespace fastconv {
namespace cpu {

void conv2d_bwd_data_image_lanes__avx512(float* const* dx, const float* const* dy, int64_t count,
                                         const float* u, float* work, int64_t t0, int64_t t1,
                                         const ImageLanesArgs& a) {
  BwdDataImageLanes<VecAvx2>::run(dx, dy, count, u, work, t0, t1, a);
}

int64_t conv2d_bwd_data_image_lanes_work__avx512(const ImageLanesArgs& a) {
  return BwdDataImageLanes<VecAvx2>::work_floats(a);
}

}  // namespace cpu
}  // namespace fastconv
