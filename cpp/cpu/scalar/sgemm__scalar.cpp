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
    float acc[MR][NR] = {};
    for (int64_t k = 0; k < kc; ++k) {
      for (int64_t i = 0; i < MR; ++i)
        for (int64_t j = 0; j < NR; ++j) acc[i][j] += pa[k * MR + i] * pb[k * NR + j];
    }
    for (int64_t i = 0; i < MR; ++i)
      for (int64_t j = 0; j < NR; ++j)
        c[i * ldc + j] = load_c ? c[i * ldc + j] + acc[i][j] : acc[i][j];
  }
};

#include "../sgemm_blocked.inl"

void sgemm__scalar(const fastconv::cpu::GemmArgs& g) { BlockedSgemm<MicroKernelScalar>::run(g); }
void sgemm_packed__scalar(const fastconv::cpu::PackedGemmArgs& g) {
  BlockedSgemm<MicroKernelScalar>::run_packed(g);
}

}  // namespace

namespace fastconv {
namespace cpu {
const KernelTable& kernel_table__scalar() {
  static const KernelTable table{"portable", sgemm__scalar, sgemm_packed__scalar, 4, 8,
                                 nullptr, nullptr, nullptr, 0, nullptr, nullptr, nullptr,
                                 nullptr, nullptr, nullptr, nullptr, nullptr,
                                 nullptr, nullptr, nullptr, nullptr};
  return table;
}
}  // namespace cpu
}  // namespace fastconv
