// sgemm__avx512.cpp — the AVX-512F GEMM: ../sgemm_micro.inl over simd__avx512.h, 8 rows x 32
// columns (16 zmm accumulators, two B vectors and a broadcast per row: 32 zmm registers), blocked
// by ../sgemm_blocked.inl. Compiled with -mavx512f -mavx2 -mfma; everything here is file-local
// (anonymous namespace).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "fastconv/cpu_kernels.h"

namespace {

#include "simd__avx512.h"
#include "../sgemm_micro.inl"

using MicroKernelAvx512 = GemmMicroKernel<VecAvx512, 8, 128, 256, 2048>;

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
