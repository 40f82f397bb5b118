// pool_bwd_floor.cpp — the memory floor of each max-pool backward in NETWORKS.md on this machine:
// the time to write dx and read dy + the int64 indices once, with no work in between.
//
//   g++ -O2 -mavx512f -pthread bench/pool_bwd_floor.cpp -o /tmp/pool_bwd_floor && /tmp/pool_bwd_floor
//   g++ -O2 -mavx2 -pthread bench/pool_bwd_floor.cpp -o /tmp/pool_bwd_floor_avx2  (256-bit loads
//   and stores: the AVX2 path's floor)
//
// A 2x2/2 backward must write N*C*H*W floats and read N*C*(H/2)*(W/2) floats and int64 indices.
// Each thread streams its share of three separate buffers of those sizes (vector loads, plain
// stores of non-zero data: all-zero lines are written faster on this machine, see PERF_LOG.md round
// 12), the same buffers every repetition, like the benchmark's repeated calls. Prints the best of
// 5 trials per layer at 1 and 2 threads; compare with the max-pool backward rows of BENCHMARKS.md.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

struct Layer {
  const char* name;
  int64_t n, c, h, w;
};

constexpr Layer kLayers[] = {
    {"cnn1.pool1", 100, 20, 28, 28}, {"cnn1.pool2", 100, 20, 14, 14},
    {"keras.pool1", 200, 75, 24, 24}, {"keras.pool2", 200, 100, 8, 8},
    {"fashion.pool1", 32, 32, 28, 28}, {"fashion.pool2", 32, 64, 14, 14},
    {"lenet.pool1", 100, 6, 28, 28},  {"lenet.pool2", 100, 16, 10, 10},
    {"vgg.pool", 8, 64, 56, 56},
};

// Writes [dx, dx + nx) and reads [dy, dy + ny) and [idx, idx + ny) (64-byte aligned, 16-float
// multiples); returns a value so the reads are not optimised away.
float stream(float* dx, int64_t nx, const float* dy, const int64_t* idx, int64_t ny) {
#ifdef __AVX512F__
  __m512 acc = _mm512_set1_ps(1.0f);
  __m512i iacc = _mm512_setzero_si512();
  for (int64_t i = 0; i < ny; i += 16) {
    acc = _mm512_add_ps(acc, _mm512_load_ps(dy + i));
    iacc = _mm512_xor_si512(iacc, _mm512_load_si512(idx + i));
    iacc = _mm512_xor_si512(iacc, _mm512_load_si512(idx + i + 8));
  }
  for (int64_t i = 0; i < nx; i += 16) _mm512_store_ps(dx + i, acc);  // non-zero data
  return _mm512_reduce_add_ps(acc) + float(_mm512_reduce_add_epi64(iacc) & 1);
#else
  __m256 acc = _mm256_set1_ps(1.0f);
  __m256i iacc = _mm256_setzero_si256();
  for (int64_t i = 0; i < ny; i += 8) {
    acc = _mm256_add_ps(acc, _mm256_load_ps(dy + i));
    iacc = _mm256_xor_si256(iacc, _mm256_load_si256(reinterpret_cast<const __m256i*>(idx + i)));
    iacc = _mm256_xor_si256(iacc, _mm256_load_si256(reinterpret_cast<const __m256i*>(idx + i + 4)));
  }
  for (int64_t i = 0; i < nx; i += 8) _mm256_store_ps(dx + i, acc);  // non-zero data
  alignas(32) float a[8];
  alignas(32) int64_t b[4];
  _mm256_store_ps(a, acc);
  _mm256_store_si256(reinterpret_cast<__m256i*>(b), iacc);
  return a[0] + a[7] + float((b[0] ^ b[3]) & 1);
#endif
}

template <class T>
T* alloc(int64_t n) {
  return static_cast<T*>(std::aligned_alloc(64, size_t(n) * sizeof(T)));
}

double floor_ms(const Layer& l, int threads) {
  const int64_t planes = l.n * l.c, hw = l.h * l.w, ohw = (l.h / 2) * (l.w / 2);
  // each thread's share, rounded up to whole vectors
  const int64_t nx = (planes * hw / threads + 15) / 16 * 16;
  const int64_t ny = (planes * ohw / threads + 15) / 16 * 16;
  std::vector<float*> dx(threads), dy(threads);
  std::vector<int64_t*> idx(threads);
  for (int t = 0; t < threads; ++t) {
    dx[t] = alloc<float>(nx);
    dy[t] = alloc<float>(ny);
    idx[t] = alloc<int64_t>(ny);
    std::fill(dx[t], dx[t] + nx, 0.0f);
    std::fill(dy[t], dy[t] + ny, 0.5f);
    std::fill(idx[t], idx[t] + ny, int64_t(3));
  }
  const int reps = int(std::max<int64_t>(20, 400000000 / (4 * planes * hw)));
  double best = 1e30;
  float sink = 0;
  for (int trial = 0; trial < 5; ++trial) {
    std::vector<float> out(threads);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        for (int r = 0; r < reps; ++r) out[t] += stream(dx[t], nx, dy[t], idx[t], ny);
      });
    for (auto& th : pool) th.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s / reps);
    for (float v : out) sink += v;
  }
  if (sink == 12345.0f) std::printf(" ");
  for (int t = 0; t < threads; ++t) {
    std::free(dx[t]);
    std::free(dy[t]);
    std::free(idx[t]);
  }
  return best * 1e3;
}

}  // namespace

int main() {
  std::printf("%-14s %9s %11s %11s\n", "layer", "MB moved", "1 thread ms", "2 threads ms");
  for (const Layer& l : kLayers) {
    const double mb = double(l.n * l.c) * (l.h * l.w * 4 + (l.h / 2) * (l.w / 2) * 12) / 1e6;
    const double one = floor_ms(l, 1), two = floor_ms(l, 2);
    std::printf("%-14s %9.2f %11.4f %11.4f\n", l.name, mb, one, two);
  }
}
