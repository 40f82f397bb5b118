// warp_mma.cuh — one warp's D = A * B + C on TF32 tensor cores (PTX mma.sync m16n8k8 .tf32, sm_80+)
// behind a portable function: the instruction on sm_80+; elsewhere — older GPUs and the CPU
// emulator (cuda/emu) — the same product built from warp shuffles on the same register fragments,
// so a kernel's fragment loading and the emulator's results agree with the hardware's layout.
//
// Fragments (PTX ISA, "Matrix Fragments for mma.m16n8k8", .tf32), lane = g * 4 + t:
//   A 16x8, row-major:  a[0] = A[g][t]    a[1] = A[g + 8][t]    a[2] = A[g][t + 4]    a[3] = A[g + 8][t + 4]
//   B 8x8, col-major:   b[0] = B[t][g]    b[1] = B[t + 4][g]
//   C, D 16x8:          c[0] = C[g][2t]   c[1] = C[g][2t + 1]   c[2] = C[g + 8][2t]   c[3] = C[g + 8][2t + 1]
// A and B hold TF32 values in 32-bit registers (to_tf32); the tensor cores read only their top 19
// bits, and so does the fallback. The fallback sums k = 0..7 in order with fmaf; the hardware's
// order and intermediate rounding differ in the last bits.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>  // the emulator's stand-in under FASTCONV_CUDA_EMU

#include <cstring>

namespace fastconv {
namespace gpu {

// cvt.rna.tf32.f32: round to the nearest TF32 (10 mantissa bits), ties away from zero.
__device__ __forceinline__ uint32_t to_tf32(float x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800 && !defined(FASTCONV_CUDA_EMU)
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
#else
  uint32_t bits;
  memcpy(&bits, &x, 4);
  if ((bits & 0x7f800000u) == 0x7f800000u) return bits;  // inf and NaN stay as they are
  return (bits + 0x1000u) & 0xffffe000u;                  // magnitude rounding: ties away from 0
#endif
}

namespace detail {
__device__ __forceinline__ float tf32_value(uint32_t bits) {
  bits &= 0xffffe000u;
  float v;
  memcpy(&v, &bits, 4);
  return v;
}
}  // namespace detail

// All 32 lanes of the warp must call it together (as mma.sync.aligned requires).
__device__ __forceinline__ void mma_m16n8k8_tf32(float d[4], const uint32_t a[4], const uint32_t b[2],
                                                 const float c[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800 && !defined(FASTCONV_CUDA_EMU)
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%10, %11, %12, %13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
        "f"(c[2]), "f"(c[3]));
#else
  const unsigned all = 0xffffffffu;
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  float acc[4] = {c[0], c[1], c[2], c[3]};
  for (int k = 0; k < 8; ++k) {
    // A[g][k], A[g + 8][k] live in lane 4g + k % 4 (registers 0/1 for k < 4, 2/3 above);
    // B[k][n] in lane 4n + k % 4 (register 0 for k < 4, 1 above). Every lane shuffles the same
    // registers, so the calls stay convergent.
    const int hi = k / 4, src = k % 4;
    const float a_lo = detail::tf32_value(__shfl_sync(all, a[2 * hi], g * 4 + src));
    const float a_hi = detail::tf32_value(__shfl_sync(all, a[2 * hi + 1], g * 4 + src));
    const float b0 = detail::tf32_value(__shfl_sync(all, b[hi], (2 * t) * 4 + src));
    const float b1 = detail::tf32_value(__shfl_sync(all, b[hi], (2 * t + 1) * 4 + src));
    acc[0] = fmaf(a_lo, b0, acc[0]);
    acc[1] = fmaf(a_lo, b1, acc[1]);
    acc[2] = fmaf(a_hi, b0, acc[2]);
    acc[3] = fmaf(a_hi, b1, acc[3]);
  }
  for (int i = 0; i < 4; ++i) d[i] = acc[i];
#endif
}

}  // namespace gpu
}  // namespace fastconv
