// adam_step.h — one element of the Adam update, the one definition for the CPU kernel
// (cpp/cpu/adam_cpu.cpp) and the CUDA kernel of the graph-captured training step
// (cuda/train_step.cu). Both translation units are compiled without FMA contraction
// (-ffp-contract=off, nvcc --fmad=false), so each operation rounds once, in this order, and the
// GPU's update is the CPU's bits:
//   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*(g*g);  p -= (lr_t*m) / (sqrt(v) + eps)
// (constants rounded to float32 by the caller; 1-b1 and 1-b2 taken in double first).
#pragma once

#include <cmath>

#include "fastconv/params.h"  // FASTCONV_HD

namespace fastconv {

struct AdamConstants {
  float lr, b1, c1, b2, c2, eps;  // lr_t, beta_1, 1 - beta_1, beta_2, 1 - beta_2, epsilon
};

FASTCONV_HD AdamConstants adam_constants(double lr_t, double beta_1, double beta_2,
                                         double epsilon) {
  return {float(lr_t),   float(beta_1),          float(1.0 - beta_1),
          float(beta_2), float(1.0 - beta_2), float(epsilon)};
}

FASTCONV_HD void adam_element(float& p, float& m, float& v, float g, const AdamConstants& k) {
  m = m * k.b1 + k.c1 * g;
  v = v * k.b2 + k.c2 * (g * g);
#if defined(__CUDA_ARCH__)
  const float root = sqrtf(v);  // IEEE-exact (nvcc's default -prec-sqrt=true), as std::sqrt
#else
  const float root = std::sqrt(v);
#endif
  p = p - (k.lr * m) / (root + k.eps);
}

}  // namespace fastconv
