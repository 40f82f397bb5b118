// conv2d_bench.cu — scratch bench for the conv kernels (not built by CMake, not installed).
// For each pass and kernel family (direct, tiled) on one layer: run, check against a float64 CPU
// loop (max |err| and the first bad coordinate), then time with CUDA events, flushing L2 between
// runs, median of 50. Iterate on a kernel here; move the winner into cuda/conv2d.cu.
//
//   nvcc -O3 -std=c++17 -arch=sm_90 -Icpp/include -Icuda cuda/dev/conv2d_bench.cu cuda/conv2d.cu \
//        cuda/device.cu cpp/params.cpp cpp/debug.cpp -o /tmp/conv2d_bench
//   /tmp/conv2d_bench N C H W K KH KW stride pad [groups]     (default: vgg.b at batch 64)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "common.cuh"
#include "fastconv/ops_cuda.h"

using namespace fastconv;

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int main(int argc, char** argv) {
  int64_t a[10] = {64, 128, 28, 28, 128, 3, 3, 1, 1, 1};
  for (int i = 1; i < argc && i <= 10; ++i) a[i - 1] = std::atoll(argv[i]);
  PaddingSpec pad;
  pad.pad = {a[8], a[8]};
  const Conv2dParams p = make_conv2d_params({a[0], a[1], a[2], a[3]}, {a[4], a[1] / a[9], a[5], a[6]},
                                            {a[7], a[7]}, pad, {1, 1}, a[9]);
  std::printf("%s  %.3f GFLOP/pass\n", to_string(p).c_str(), p.flops() / 1e9);

  std::mt19937 rng(0);
  std::uniform_real_distribution<float> U(-1, 1);
  std::vector<float> x(p.x.numel()), w(p.wt.numel()), dy(p.y.numel());
  for (auto* v : {&x, &w, &dy}) for (auto& e : *v) e = U(rng);

  // float64 reference of all three passes
  std::vector<double> ry(p.y.numel(), 0), rdx(p.x.numel(), 0), rdw(p.wt.numel(), 0);
  const int64_t cg = p.cin_per_group(), kg = p.cout_per_group();
  for (int64_t n = 0; n < p.x.n; ++n)
    for (int64_t co = 0; co < p.y.c; ++co)
      for (int64_t oy = 0; oy < p.y.h; ++oy)
        for (int64_t ox = 0; ox < p.y.w; ++ox) {
          const int64_t yi = ((n * p.y.c + co) * p.y.h + oy) * p.y.w + ox;
          for (int64_t c = 0; c < cg; ++c)
            for (int64_t ky = 0; ky < p.wt.h; ++ky)
              for (int64_t kx = 0; kx < p.wt.w; ++kx) {
                const int64_t iy = oy * p.stride.h - p.pad.top + ky, ix = ox * p.stride.w - p.pad.left + kx;
                if (iy < 0 || iy >= p.x.h || ix < 0 || ix >= p.x.w) continue;
                const int64_t xi = ((n * p.x.c + (co / kg) * cg + c) * p.x.h + iy) * p.x.w + ix;
                const int64_t wi = ((co * cg + c) * p.wt.h + ky) * p.wt.w + kx;
                ry[yi] += double(w[wi]) * x[xi];
                rdx[xi] += double(w[wi]) * dy[yi];
                rdw[wi] += double(dy[yi]) * x[xi];
              }
        }

  float *dX, *dW, *dY, *dDY, *dDX, *dDW, *ws = nullptr, *flush;
  const size_t flush_bytes = 256 << 20;
  CUDA_CHECK(cudaMalloc(&dX, 4 * x.size()));
  CUDA_CHECK(cudaMalloc(&dW, 4 * w.size()));
  CUDA_CHECK(cudaMalloc(&dY, 4 * dy.size()));
  CUDA_CHECK(cudaMalloc(&dDY, 4 * dy.size()));
  CUDA_CHECK(cudaMalloc(&dDX, 4 * x.size()));
  CUDA_CHECK(cudaMalloc(&dDW, 4 * w.size()));
  CUDA_CHECK(cudaMalloc(&flush, flush_bytes));
  CUDA_CHECK(cudaMemcpy(dX, x.data(), 4 * x.size(), cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(dW, w.data(), 4 * w.size(), cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(dDY, dy.data(), 4 * dy.size(), cudaMemcpyHostToDevice));
  cudaEvent_t e0, e1;
  CUDA_CHECK(cudaEventCreate(&e0));
  CUDA_CHECK(cudaEventCreate(&e1));

  for (gpu::ConvAlgo algo : {gpu::ConvAlgo::Direct, gpu::ConvAlgo::Tiled}) {
    gpu::set_conv_algo(algo);
    const size_t wsb = gpu::conv2d_bwd_weights_workspace__cuda(p);
    if (wsb) CUDA_CHECK(cudaMalloc(&ws, wsb));
    struct Pass { const char* name; float* out; size_t n; const std::vector<double>* ref; };
    const Pass passes[] = {{"fwd", dY, dy.size(), &ry}, {"bwd_data", dDX, x.size(), &rdx},
                           {"bwd_weights", dDW, w.size(), &rdw}};
    for (int k = 0; k < 3; ++k) {
      auto run = [&] {
        if (k == 0) gpu::conv2d_fwd__cuda(dY, dX, dW, nullptr, p, false, nullptr);
        if (k == 1) gpu::conv2d_bwd_data__cuda(dDX, dDY, dW, p, nullptr);
        if (k == 2) gpu::conv2d_bwd_weights__cuda(dDW, nullptr, dDY, dX, p, ws, wsb, nullptr);
      };
      CUDA_CHECK(cudaMemset(passes[k].out, 0xFF, 4 * passes[k].n));  // poison
      run();
      CUDA_CHECK(cudaDeviceSynchronize());
      std::vector<float> got(passes[k].n);
      CUDA_CHECK(cudaMemcpy(got.data(), passes[k].out, 4 * got.size(), cudaMemcpyDeviceToHost));
      double worst = 0, num = 0, den = 0;
      size_t at = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        const double d = std::isnan(got[i]) ? INFINITY : std::fabs(got[i] - (*passes[k].ref)[i]);
        if (d > worst) { worst = d; at = i; }
        num += d * d;
        den += (*passes[k].ref)[i] * (*passes[k].ref)[i];
      }
      std::vector<double> t;
      for (int r = 0; r < 55; ++r) {
        CUDA_CHECK(cudaMemsetAsync(flush, r, flush_bytes));
        CUDA_CHECK(cudaEventRecord(e0));
        run();
        CUDA_CHECK(cudaEventRecord(e1));
        CUDA_CHECK(cudaEventSynchronize(e1));
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        if (r >= 5) t.push_back(ms);
      }
      const double ms = median(t);
      std::printf("%-7s %-12s %9.4f ms %8.2f TFLOP/s  rel err %.1e  max |err| %.2e at %zu\n",
                  algo == gpu::ConvAlgo::Direct ? "direct" : "tiled", passes[k].name, ms,
                  p.flops() / ms / 1e9, std::sqrt(num / std::max(den, 1e-300)), worst, at);
    }
    if (ws) CUDA_CHECK(cudaFree(ws));
    ws = nullptr;
  }
  return 0;
}
