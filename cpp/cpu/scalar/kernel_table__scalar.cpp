// kernel_table__scalar.cpp — the portable path's kernel table: the plain C++ GEMM only; every conv
// runs im2col + GEMM and pooling the generic loops (the registry's last entries), so the test suite
// exercises those code shapes on every machine.
#include "fastconv/cpu_kernels.h"

namespace fastconv {
namespace cpu {

const KernelTable& kernel_table__scalar() {
  static const KernelTable table = [] {
    KernelTable t;
    t.isa = "portable";
    t.gemm.run = sgemm__scalar;
    t.gemm.packed = sgemm_packed__scalar;
    t.gemm.mr = 4;
    t.gemm.nr = 8;
    return t;
  }();
  return table;
}

}  // namespace cpu
}  // namespace fastconv
