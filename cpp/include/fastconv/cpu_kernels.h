// cpu_kernels.h — the CPU kernel table: one entry per ISA (portable, AVX2, AVX-512), picked at run
// time by cpu_dispatch.cpp. Each ISA lives in its own translation unit compiled with its own flags,
// with every internal symbol file-local, so an AVX2 copy of a helper can never be linked into the
// portable path. Drivers (im2col, threading, pooling loops) are compiled once, for the baseline.
#pragma once

#include <cstdint>

namespace fastconv {
namespace cpu {

// One single-threaded GEMM: C(M x N) = [C +] A(M x K) * B(K x N), then optionally + bias[i] per
// row and max(0, .). A's element (i, k) is a[i*rs_a + k*cs_a]; B's (k, j) is b[k*rs_b + j*cs_b];
// C is row-major with leading dimension ldc. Strided operands let callers pass transposes free.
struct GemmArgs {
  int64_t m, n, k;
  const float* a;
  int64_t rs_a, cs_a;
  const float* b;
  int64_t rs_b, cs_b;
  float* c;
  int64_t ldc;
  bool accumulate;     // C += A*B instead of C = A*B
  const float* bias;   // nullptr or M values added to each row (applied after the full sum)
  bool relu;           // clamp at 0 after bias
};

using SgemmFn = void (*)(const GemmArgs&);

struct KernelTable {
  const char* isa;  // "portable", "avx2", "avx512"
  SgemmFn sgemm;
};

// Defined in cpu/scalar/sgemm__scalar.cpp, cpu/avx2/sgemm__avx2.cpp, cpu/avx512/sgemm__avx512.cpp.
const KernelTable& kernel_table__scalar();
const KernelTable& kernel_table__avx2();
const KernelTable& kernel_table__avx512();

// cpu_dispatch.cpp: the table in use (FASTCONV_CPU_ISA or the best the CPU supports).
const KernelTable& kernels();
bool isa_supported(const char* isa);
void set_isa(const char* isa);  // throws ValueError for unknown/unsupported names
const char* best_isa();

}  // namespace cpu
}  // namespace fastconv
