// sgemm_micro.inl — the packed GEMM's micro-kernel, written once over the SIMD interface of
// avx2/simd__avx2.h and avx512/simd__avx512.h: MR rows x 2 vectors of C held in 2*MR
// accumulators; per k step the two B vectors are loaded once and each row's A value is broadcast
// once and meets both. AVX2: 6 x 16 (12 of the 16 ymm registers, with room for the loads),
// AVX-512: 8 x 32 (16 of the 32 zmm). MC, KC, NC: the cache blocking sgemm_blocked.inl uses with it.
// Include INSIDE the anonymous namespace of an ISA translation unit.

template <class V, int64_t MR_, int64_t MC_, int64_t KC_, int64_t NC_>
struct GemmMicroKernel {
  using reg = typename V::reg;
  static constexpr int64_t MR = MR_, NR = 2 * V::W, MC = MC_, KC = KC_, NC = NC_;

  // C[0..MR) x [0..NR) (row pitch ldc) = (load_c ? C : 0) + A sliver (kc x MR) * B sliver (kc x NR).
  static void run(int64_t kc, const float* pa, const float* pb, float* c, int64_t ldc,
                  bool load_c) {
    run_a(kc, pa, 1, MR, pb, c, ldc, load_c);
  }

  // The same with A read in place: row i's value at step k is a[i * rs_a + k * cs_a] (the packed
  // sliver is rs_a = 1, cs_a = MR). Inlined into run, where the strides are constants.
  __attribute__((always_inline)) static void run_a(int64_t kc, const float* a, int64_t rs_a,
                                                   int64_t cs_a, const float* pb, float* c,
                                                   int64_t ldc, bool load_c) {
    reg acc[MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = V::zero();
    for (int64_t k = 0; k < kc; ++k) {
      const reg b0 = V::loadu(pb), b1 = V::loadu(pb + V::W);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const reg ai = V::set1(a[i * rs_a]);
        acc[i][0] = V::fmadd(ai, b0, acc[i][0]);
        acc[i][1] = V::fmadd(ai, b1, acc[i][1]);
      }
      a += cs_a;
      pb += NR;
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      reg v0 = acc[i][0], v1 = acc[i][1];
      if (load_c) {
        v0 = V::add(v0, V::loadu(c + i * ldc));
        v1 = V::add(v1, V::loadu(c + i * ldc + V::W));
      }
      V::storeu(c + i * ldc, v0);
      V::storeu(c + i * ldc + V::W, v1);
    }
  }
};
