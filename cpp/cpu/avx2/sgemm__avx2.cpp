// sgemm__avx2.cpp — AVX2+FMA GEMM micro-kernel, 6 rows x 16 columns: 12 ymm accumulators, two B
// vectors and one broadcast A value per step fit the 16 ymm registers with room for the loads.
// Compiled with -mavx2 -mfma; everything here is file-local (anonymous namespace).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "fastconv/cpu_kernels.h"

namespace {

struct MicroKernelAvx2 {
  static constexpr int64_t MR = 6, NR = 16, MC = 144, KC = 256, NC = 2048;
  static void run(int64_t kc, const float* pa, const float* pb, float* c, int64_t ldc,
                  bool load_c) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; ++k) {
      const __m256 b0 = _mm256_loadu_ps(pb), b1 = _mm256_loadu_ps(pb + 8);
      __m256 a;
      a = _mm256_broadcast_ss(pa + 0); c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
      a = _mm256_broadcast_ss(pa + 1); c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
      a = _mm256_broadcast_ss(pa + 2); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
      a = _mm256_broadcast_ss(pa + 3); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
      a = _mm256_broadcast_ss(pa + 4); c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
      a = _mm256_broadcast_ss(pa + 5); c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
      pa += MR;
      pb += NR;
    }
    store_row(c + 0 * ldc, c00, c01, load_c);
    store_row(c + 1 * ldc, c10, c11, load_c);
    store_row(c + 2 * ldc, c20, c21, load_c);
    store_row(c + 3 * ldc, c30, c31, load_c);
    store_row(c + 4 * ldc, c40, c41, load_c);
    store_row(c + 5 * ldc, c50, c51, load_c);
  }
  static void store_row(float* c, __m256 v0, __m256 v1, bool load_c) {
    if (load_c) {
      v0 = _mm256_add_ps(v0, _mm256_loadu_ps(c));
      v1 = _mm256_add_ps(v1, _mm256_loadu_ps(c + 8));
    }
    _mm256_storeu_ps(c, v0);
    _mm256_storeu_ps(c + 8, v1);
  }
};

#include "../sgemm_blocked.inl"

}  // namespace

namespace fastconv {
namespace cpu {
void sgemm__avx2(const GemmArgs& g) { BlockedSgemm<MicroKernelAvx2>::run(g); }
void sgemm_packed__avx2(const PackedGemmArgs& g) {
  BlockedSgemm<MicroKernelAvx2>::run_packed(g);
}
}  // namespace cpu
}  // namespace fastconv
