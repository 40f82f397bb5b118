// matmul_cpu.cpp — the layer API's Dense GEMM, C = op(A) @ op(B), threaded over fastconv's pool.
//
// The product is cut into parts, by columns or by rows, and each part runs the ISA's strided
// GEMM (kt.gemm.run). Every element is one thread's full sum in the GEMM's fixed k order, so the
// result does not depend on the thread count or the cut.
#include <algorithm>

#include "fastconv/cpu_kernels.h"
#include "fastconv/parallel.h"
#include "fastconv/train_ops.h"

namespace fastconv {
namespace cpu {

void matmul__cpu(const GemmArgs& g) {
  if (g.m == 0 || g.n == 0) return;
  const KernelTable& kt = kernels();
  const int64_t m = g.m, n = g.n, k = g.k, mr = kt.gemm.mr, nr = kt.gemm.nr;
  // Every part packs the whole of the operand it does not cut: a cut by columns re-packs op(A)
  // (m x k) once per part, a cut by rows op(B) (k x n). So: one part per thread (finer cuts
  // multiplied that packing: keras_cnn's Dense(500) forward packed its 200 x 1600 input 8 times
  // at 2 threads, its weight gradient the transposed 1600 x 200 input 8 times) and cut along
  // the larger side. Narrow products cut by rows (the logits layers: n = 10) re-read all of B
  // per part: below ~4 MFLOP one part is faster (cnn1's Dense(10) forward: 60 us on one
  // thread, 86 us on two).
  const bool by_cols = n >= m ? n >= 2 * nr : m < 2 * mr;
  const int64_t unit = by_cols ? nr : mr, extent = by_cols ? n : m;
  const int64_t parts = !by_cols && m * n * k <= (int64_t(1) << 21)
                            ? 1
                            : std::min<int64_t>(get_num_threads(), (extent + unit - 1) / unit);
  const int64_t step = ((extent + parts - 1) / parts + unit - 1) / unit * unit;
  const int64_t tasks = (extent + step - 1) / step;
  parallel_for(tasks, [&](int64_t begin, int64_t end, int) {
    GemmArgs part = g;
    const int64_t lo = begin * step, hi = std::min(end * step, extent);
    if (by_cols) {
      part.n = hi - lo, part.b = g.b + lo * g.cs_b, part.c = g.c + lo;
    } else {
      part.m = hi - lo, part.a = g.a + lo * g.rs_a, part.c = g.c + lo * g.ldc;
    }
    kt.gemm.run(part);
  });
}

}  // namespace cpu
}  // namespace fastconv
