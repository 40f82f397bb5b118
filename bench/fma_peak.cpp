// fma_peak.cpp — this machine's float32 FMA ceiling per core (the "% of peak" yardstick).
//
//   g++ -O2 -mavx512f -mavx2 -mfma bench/fma_peak.cpp -o /tmp/fma_peak && /tmp/fma_peak
//
// Runs 12 (AVX2) or 24 (AVX-512) independent FMA chains — enough to cover the FMA latency on two
// ports — for ~0.3 s per ISA on the calling thread, best of 5 trials, and prints GFLOP/s per core.
#include <immintrin.h>

#include <chrono>
#include <cstdio>

template <class V, int N, class Fma>
double run(V a, V b, Fma fma, V (*zero)(), float (*sum)(V)) {
  double best = 0;
  for (int trial = 0; trial < 5; ++trial) {
    V acc[N];
    for (int i = 0; i < N; ++i) acc[i] = zero();
    const long iters = 20000000;
    auto t0 = std::chrono::steady_clock::now();
    for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 24
      for (int i = 0; i < N; ++i) acc[i] = fma(a, acc[i], b);
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    float keep = 0;
    for (int i = 0; i < N; ++i) keep += sum(acc[i]);
    if (keep == 12345.f) std::printf(" ");
    const double flops = 2.0 * iters * N * (sizeof(V) / sizeof(float));
    if (flops / s > best) best = flops / s;
  }
  return best / 1e9;
}

int main() {
  auto f256 = [](__m256 a, __m256 c, __m256 b) { return _mm256_fmadd_ps(a, c, b); };
  auto f512 = [](__m512 a, __m512 c, __m512 b) { return _mm512_fmadd_ps(a, c, b); };
  const double avx2 = run<__m256, 12>(_mm256_set1_ps(0.999f), _mm256_set1_ps(1e-3f), f256,
      [] { return _mm256_setzero_ps(); },
      [](__m256 v) { float t[8]; _mm256_storeu_ps(t, v); return t[0]; });
  std::printf("AVX2 FMA:    %.1f GFLOP/s per core\n", avx2);
  if (__builtin_cpu_supports("avx512f")) {
    const double avx512 = run<__m512, 24>(_mm512_set1_ps(0.999f), _mm512_set1_ps(1e-3f), f512,
        [] { return _mm512_setzero_ps(); }, [](__m512 v) { return _mm512_reduce_add_ps(v); });
    std::printf("AVX-512 FMA: %.1f GFLOP/s per core\n", avx512);
  }
  return 0;
}
