// adam_cpu.cpp — the Adam update fused into one threaded pass over (p, g, m, v).
//
// Why: NumPy's version (optimizers.Adam._update) makes ~8 passes and 4 temporaries per parameter
// array, single-threaded (~2 ms per keras_cnn step for its 1 M parameters); this reads each array
// once. The operations and their float32 roundings are NumPy's, in NumPy's order, and this file is
// compiled with -ffp-contract=off (CMakeLists.txt), so no FMA merges two roundings: the result is
// the NumPy update's bits. Baseline ISA; the compiler vectorises the loop (sqrt is IEEE-exact).
#include <algorithm>

#include "fastconv/adam_step.h"
#include "fastconv/parallel.h"
#include "fastconv/train_ops.h"

namespace fastconv {
namespace cpu {

void adam_update__cpu(float* p, float* m, float* v, const float* g, int64_t n, double lr_t,
                      double beta_1, double beta_2, double epsilon) {
  const AdamConstants k = adam_constants(lr_t, beta_1, beta_2, epsilon);
  constexpr int64_t kPerTask = 16384;  // 256 KB of state per task
  // Captured by value and restrict-qualified: the binding guarantees disjoint arrays, and the
  // vectoriser gives up if a store might change a constant or another array.
  parallel_for((n + kPerTask - 1) / kPerTask, [=](int64_t b, int64_t e, int) {
    const int64_t i0 = b * kPerTask, len = std::min(e * kPerTask, n) - i0;
    float* __restrict pp = p + i0;
    float* __restrict mp = m + i0;
    float* __restrict vp = v + i0;
    const float* __restrict gp = g + i0;
    for (int64_t i = 0; i < len; ++i) {
      float pi = pp[i], mi = mp[i], vi = vp[i];
      adam_element(pi, mi, vi, gp[i], k);  // adam_step.h: shared with the CUDA training step
      pp[i] = pi;
      mp[i] = mi;
      vp[i] = vi;
    }
  });
}

}  // namespace cpu
}  // namespace fastconv
