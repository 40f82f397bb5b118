// sgemm__avx2.cpp — the AVX2+FMA GEMM: ../sgemm_micro.inl over simd__avx2.h, 6 rows x 16 columns
// (12 ymm accumulators, two B vectors and one broadcast A value per step fit the 16 ymm registers
// with room for the loads), blocked by ../sgemm_blocked.inl. Compiled with -mavx2 -mfma;
// everything here is file-local (anonymous namespace).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "fastconv/cpu_kernels.h"

namespace {

#include "simd__avx2.h"
#include "../sgemm_micro.inl"

using MicroKernelAvx2 = GemmMicroKernel<VecAvx2, 6, 144, 256, 2048>;

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
