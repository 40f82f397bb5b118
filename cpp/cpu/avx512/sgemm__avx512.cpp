// sgemm__avx512.cpp — AVX-512F GEMM micro-kernel, 8 rows x 32 columns: 16 zmm accumulators, two
// B vectors and a broadcast per row (32 zmm registers). Compiled with -mavx512f -mavx2 -mfma;
// everything here is file-local (anonymous namespace).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "fastconv/cpu_kernels.h"

namespace {

struct MicroKernelAvx512 {
  static constexpr int64_t MR = 8, NR = 32, MC = 128, KC = 256, NC = 2048;
  static void run(int64_t kc, const float* pa, const float* pb, float* c, int64_t ldc,
                  bool load_c) {
    __m512 acc[MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; ++k) {
      const __m512 b0 = _mm512_loadu_ps(pb), b1 = _mm512_loadu_ps(pb + 16);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const __m512 a = _mm512_set1_ps(pa[i]);
        acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
      }
      pa += MR;
      pb += NR;
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      __m512 v0 = acc[i][0], v1 = acc[i][1];
      if (load_c) {
        v0 = _mm512_add_ps(v0, _mm512_loadu_ps(c + i * ldc));
        v1 = _mm512_add_ps(v1, _mm512_loadu_ps(c + i * ldc + 16));
      }
      _mm512_storeu_ps(c + i * ldc, v0);
      _mm512_storeu_ps(c + i * ldc + 16, v1);
    }
  }
};

#include "../sgemm_blocked.inl"

}  // namespace

namespace fastconv {
namespace cpu {
void sgemm__avx512(const GemmArgs& g) { BlockedSgemm<MicroKernelAvx512>::run(g); }
void sgemm_packed__avx512(const PackedGemmArgs& g) {
  BlockedSgemm<MicroKernelAvx512>::run_packed(g);
}
}  // namespace cpu
}  // namespace fastconv
