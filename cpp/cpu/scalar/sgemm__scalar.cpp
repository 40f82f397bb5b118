// sgemm__scalar.cpp — the portable GEMM: plain C++ micro-kernel (the compiler may use the
// baseline SSE2), for CPUs without AVX2+FMA and as the A/B baseline for the SIMD paths.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fastconv/cpu_kernels.h"

namespace {

struct MicroKernelScalar {
  static constexpr int64_t MR = 4, NR = 8, MC = 128, KC = 256, NC = 2048;
  static void run(int64_t kc, const float* pa, const float* pb, float* c, int64_t ldc,
                  bool load_c) {
    run_a(kc, pa, 1, MR, pb, c, ldc, load_c);
  }
  // A read in place: row i's value at step k is a[i * rs_a + k * cs_a] (see sgemm_micro.inl).
  __attribute__((always_inline)) static void run_a(int64_t kc, const float* a, int64_t rs_a,
                                                   int64_t cs_a, const float* pb, float* c,
                                                   int64_t ldc, bool load_c) {
    float acc[MR][NR] = {};
    for (int64_t k = 0; k < kc; ++k) {
      for (int64_t i = 0; i < MR; ++i)
        for (int64_t j = 0; j < NR; ++j) acc[i][j] += a[k * cs_a + i * rs_a] * pb[k * NR + j];
    }
    for (int64_t i = 0; i < MR; ++i)
      for (int64_t j = 0; j < NR; ++j)
        c[i * ldc + j] = load_c ? c[i * ldc + j] + acc[i][j] : acc[i][j];
  }
};

#include "../sgemm_blocked.inl"

}  // namespace

namespace fastconv {
namespace cpu {
void sgemm__scalar(const GemmArgs& g) { BlockedSgemm<MicroKernelScalar>::run(g); }
void sgemm_packed__scalar(const PackedGemmArgs& g) {
  BlockedSgemm<MicroKernelScalar>::run_packed(g);
}
}  // namespace cpu
}  // namespace fastconv
