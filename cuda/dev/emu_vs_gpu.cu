// emu_vs_gpu.cu — the CPU emulator's self-test kernels (cuda/emu/selftest.cu) on a real GPU,
// checked against the expectations tests/test_cuda_emulated.py holds the emulator to: proves that
// the emulator's model of warp shuffles and ballots, cp.async pipelines, the TF32 mma.sync
// fragments (and cvt.rna.tf32), float4 access and dynamic shared memory above 48 KB matches the
// hardware. One line per check, exit status 1 if any fails. Not built or installed; run by
// bench/gpu_check.sh (step emu):
//   nvcc -std=c++17 -arch=sm_90 -Icpp/include -Icuda cuda/dev/emu_vs_gpu.cu -o /tmp/emu_vs_gpu && /tmp/emu_vs_gpu
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "../emu/selftest.cu"

namespace {

int g_failures = 0;

void report(const char* name, bool ok, double worst) {
  std::printf("%-28s %s (worst difference %.3g)\n", name, ok ? "PASS" : "FAIL", worst);
  if (!ok) ++g_failures;
}

bool check_cuda(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return true;
  std::printf("%-28s FAIL (%s: %s)\n", what, cudaGetErrorName(err), cudaGetErrorString(err));
  ++g_failures;
  return false;
}

// Runs kernel(out, in) on `blocks` blocks of 256 threads (plus `shared` dynamic bytes); out has
// out_floats floats, poisoned with NaN first.
std::vector<float> run(void (*kernel)(float*, const float*), const std::vector<float>& in, int blocks,
                       size_t out_floats, size_t shared = 0) {
  float *d_in = nullptr, *d_out = nullptr;
  std::vector<float> out(out_floats, NAN);
  cudaMalloc(&d_in, in.size() * 4);
  cudaMalloc(&d_out, out_floats * 4);
  cudaMemcpy(d_in, in.data(), in.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(d_out, out.data(), out_floats * 4, cudaMemcpyHostToDevice);
  fastconv::gpu::launch_with_shared(kernel, blocks, kBlock, shared, nullptr, d_out, d_in);
  if (check_cuda(cudaGetLastError(), "launch") && check_cuda(cudaDeviceSynchronize(), "run"))
    cudaMemcpy(out.data(), d_out, out_floats * 4, cudaMemcpyDeviceToHost);
  cudaFree(d_in);
  cudaFree(d_out);
  return out;
}

std::vector<float> uniform(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

float tf32_host(float x) {  // cvt.rna.tf32.f32 as warp_mma.cuh's fallback and the test's NumPy
  uint32_t b;
  std::memcpy(&b, &x, 4);
  b = (b + 0x1000u) & 0xffffe000u;
  std::memcpy(&x, &b, 4);
  return x;
}

void check_warp_ops() {
  const std::vector<float> x = uniform(512, 1);
  const std::vector<float> o = run(warp_ops, x, 2, 512 * 5);
  double worst = 0;
  bool exact = true;
  for (int w = 0; w < 16; ++w) {
    double sum = 0, scan = 0;
    unsigned ballot = 0;
    for (int l = 0; l < 32; ++l) {
      sum += x[w * 32 + l];
      ballot |= (x[w * 32 + l] > 0.0f ? 1u : 0u) << l;
    }
    for (int l = 0; l < 32; ++l) {
      const float* r = &o[(w * 32 + l) * 5];
      scan += x[w * 32 + l];
      worst = std::fmax(worst, std::fabs(r[1] - sum));
      worst = std::fmax(worst, std::fabs(r[2] - scan));
      if (l == 0) worst = std::fmax(worst, std::fabs(r[0] - sum));
      exact = exact && (l == 0 || r[0] == 0.0f) && r[3] == x[w * 32] &&
              r[4] == float(ballot & 0xffffu) + float(ballot >> 16) * 65536.0f;
    }
  }
  report("warp shuffles and ballot", exact && worst < 1e-4, worst);
}

void check_async_pipeline() {
  const std::vector<float> x = uniform(2 * kTiles * kBlock, 2);
  const std::vector<float> o = run(async_pipeline<false>, x, 2, x.size());
  double worst = 0;
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < kTiles; ++t)
      for (int i = 0; i < kBlock; ++i) {
        const int j = (i + 1) % kBlock;  // each thread stores its neighbour's element
        const float want = t == kTiles - 1 && j >= kBlock - kInvalid ? 0.0f : x[(b * kTiles + t) * kBlock + j];
        const float got = o[(b * kTiles + t) * kBlock + i];
        worst = std::isnan(got) ? INFINITY : std::fmax(worst, std::fabs(got - want));
      }
  report("cp.async pipeline", worst == 0.0, worst);
}

void check_mma() {
  const std::vector<float> x = uniform(16 * 192, 3);  // 2 blocks x 8 warps: A 16x8, B 8x8 each
  const std::vector<float> o = run(mma_tf32, x, 2, 16 * 128);
  double worst = 0;
  for (int w = 0; w < 16; ++w)
    for (int r = 0; r < 16; ++r)
      for (int c = 0; c < 8; ++c) {
        double want = 1.0;
        for (int k = 0; k < 8; ++k)
          want += double(tf32_host(x[w * 192 + r * 8 + k])) * double(tf32_host(x[w * 192 + 128 + k * 8 + c]));
        const float got = o[w * 128 + r * 8 + c];
        worst = std::isnan(got) ? INFINITY : std::fmax(worst, std::fabs(got - want));
      }
  report("mma.sync m16n8k8 tf32", worst < 1e-5, worst);
}

void check_vectors_and_isolation() {
  const std::vector<float> x = uniform(2 * kBlock * 4, 4);
  const std::vector<float> o = run(vector_reverse4, x, 2, x.size());
  bool ok = true;
  for (size_t i = 0; i < x.size(); ++i) ok = ok && o[i] == x[(i / 4) * 4 + 3 - i % 4];
  report("float4 access", ok, 0.0);
  const std::vector<float> s = run(shared_isolation, {0.0f}, 64, 64 * kBlock);
  ok = true;
  for (size_t i = 0; i < s.size(); ++i) ok = ok && s[i] == float(i / kBlock);
  report("shared memory per block", ok, 0.0);
}

void check_dynamic_shared() {
  const int bytes = 64 * 1024;
  if (!check_cuda(cudaFuncSetAttribute(reverse_dynamic_shared, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       bytes),
                  "cudaFuncSetAttribute"))
    return;
  const std::vector<float> x = uniform(3 * kBlock, 5);
  float *d_in = nullptr, *d_out = nullptr;
  std::vector<float> o(x.size(), NAN);
  cudaMalloc(&d_in, x.size() * 4);
  cudaMalloc(&d_out, x.size() * 4);
  cudaMemcpy(d_in, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
  fastconv::gpu::launch_with_shared(reverse_dynamic_shared, 3, kBlock, size_t(bytes), nullptr, d_out,
                                    static_cast<const float*>(d_in), kBlock);
  if (check_cuda(cudaGetLastError(), "launch 64 KB") && check_cuda(cudaDeviceSynchronize(), "run 64 KB"))
    cudaMemcpy(o.data(), d_out, x.size() * 4, cudaMemcpyDeviceToHost);
  bool ok = true;
  for (size_t i = 0; i < x.size(); ++i) ok = ok && o[i] == x[(i / kBlock) * kBlock + kBlock - 1 - i % kBlock];
  report("dynamic shared 64 KB", ok, 0.0);
  cudaFree(d_in);
  cudaFree(d_out);
}

}  // namespace

int main() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    std::printf("emu_vs_gpu: no CUDA device\n");
    return 2;
  }
  check_warp_ops();
  check_async_pipeline();
  check_mma();
  check_vectors_and_isolation();
  check_dynamic_shared();
  std::printf("emu_vs_gpu: %d failure(s)\n", g_failures);
  return g_failures == 0 ? 0 : 1;
}
