// train_ops.h — the training-step ops the layer API calls once per step besides the layers'
// kernels: dropout and the Adam update (elementwise, below), and the sparse softmax cross-entropy. Flat float32 buffers of n elements; threaded over fastconv's pool, and every
// element's result depends only on its own inputs (and, for dropout, on (seed, index)), so the
// results are the same bits at any thread count.
#pragma once

#include <cstdint>

#include "fastconv/cpu_kernels.h"

namespace fastconv {
namespace cpu {

// Dropout's keep decision for element i: u(seed, i) < keep, u uniform in [0, 1) on a 2^-24 grid,
// drawn per fixed block of elements by a generator seeded from (seed, block) (dropout_cpu.cpp), so
// u depends on (seed, i) only. keep in (0, 1] (the binding checks it). Buffers do not overlap.
//   y[i] = x[i] * m[i], m[i] = keep_i ? 1/keep : 0 (1/keep rounded to float32 once, as NumPy's
//   np.float32(1) / np.float32(keep)); mask, when not nullptr, receives m.
void dropout_fwd__cpu(float* y, float* mask, const float* x, int64_t n, double keep,
                      uint64_t seed);
// keep_i as bytes 0/1 (for devices that draw the decisions on the host and scale them there).
void dropout_keep__cpu(uint8_t* keep_bits, int64_t n, double keep, uint64_t seed);

// One Adam step in place, in float32 and in the order NumPy's optimizers.Adam._update rounds:
//   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*(g*g);  p -= (lr_t*m) / (sqrt(v) + eps)
// (constants rounded to float32 from the double arguments, 1-b1 and 1-b2 taken in double first).
void adam_update__cpu(float* p, float* m, float* v, const float* g, int64_t n, double lr_t,
                      double beta_1, double beta_2, double epsilon);

// Softmax cross-entropy of logits z (n x c, row-major) against labels in [0, c) (the caller checks
// them), in one pass (softmax_xent_cpu.cpp): *loss_sum = sum over rows of -log softmax(z)[r, y_r];
// dz = (softmax(z) - onehot(y)) * scale; *correct = rows whose argmax (NumPy's: the first maximum,
// a NaN first) equals the label. Single-threaded; dz must not overlap z.
void sparse_softmax_xent__cpu(const float* z, const int64_t* labels, int64_t n, int64_t c,
                              float* dz, double scale, double* loss_sum, int64_t* correct);

// The Dense layers' C = op(A) @ op(B) on strided operands (g as for kt.gemm.run, with C's ldc),
// cut into one part per thread of fastconv's pool (matmul_cpu.cpp): the same bits at any thread
// count.
void matmul__cpu(const GemmArgs& g);

}  // namespace cpu
}  // namespace fastconv
