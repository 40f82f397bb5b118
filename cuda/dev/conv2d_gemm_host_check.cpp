// conv2d_gemm_host_check.cpp — runs the tiled implicit-GEMM algorithm of cuda/conv2d.cu serially
// on the CPU, with the very index maps the kernel uses (cuda/conv2d_gemm.cuh), and compares all
// three passes with a plain float64 loop over random geometries (strides, asymmetric padding,
// dilation, groups, tails). It proves the index arithmetic without a GPU; it cannot prove
// anything about barriers, shared-memory races or launch configuration (test_cuda.py does that).
// Not installed, not part of the build.
//
//   g++ -O2 -std=c++17 -Icpp/include -Icuda cuda/dev/conv2d_gemm_host_check.cpp cpp/params.cpp -o /tmp/gemm_check && /tmp/gemm_check
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "conv2d_gemm.cuh"
#include "fastconv/error.h"

using namespace fastconv;
using namespace fastconv::gpu;

// Serial emulation of conv_gemm_tiled<G>: same tile sizes, loader layout and r-table.
template <class G>
void emulate_tiled(const G& gm) {
  const int gx = int((gm.Ncols() + kBN - 1) / kBN), gy = int((gm.M() + kBM - 1) / kBM);
  std::vector<float> As(kBK * kBM), Bs(kBK * kBN);
  std::vector<typename G::RCtx> rtab(kBK);
  std::vector<float> acc(size_t(kThreads) * kTM * kTN);
  for (int z = 0; z < gm.Z(); ++z)
    for (int by = 0; by < gy; ++by)
      for (int bx = 0; bx < gx; ++bx) {
        const int m0 = by * kBM, n0 = bx * kBN;
        int r_begin, r_end;
        gm.range(z, &r_begin, &r_end);
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int r0 = r_begin; r0 < r_end; r0 += kBK) {
          for (int t = 0; t < kBK; ++t) rtab[t] = gm.rctx(z, r0 + t, r_end);
          for (int tid = 0; tid < kThreads; ++tid) {
            const int a_rr = tid % kBK, a_mm = tid / kBK, b_nn = tid % kBN, b_rr = tid / kBN;
            const auto col = gm.colctx(z, n0 + b_nn);
            for (int i = 0; i < kBM * kBK / kThreads; ++i) {
              const int mm = a_mm + i * (kThreads / kBK);
              As[a_rr * kBM + mm] = gm.a(z, m0 + mm, rtab[a_rr]);
            }
            for (int i = 0; i < kBK * kBN / kThreads; ++i) {
              const int rr = b_rr + i * (kThreads / kBN);
              Bs[rr * kBN + b_nn] = gm.bval(col, rtab[rr]);
            }
          }
          for (int tid = 0; tid < kThreads; ++tid) {
            const int tx = tid % (kBN / kTN), ty = tid / (kBN / kTN);
            for (int k = 0; k < kBK; ++k)
              for (int i = 0; i < kTM; ++i)
                for (int j = 0; j < kTN; ++j)
                  acc[(tid * kTM + i) * kTN + j] += As[k * kBM + ty * kTM + i] * Bs[k * kBN + tx * kTN + j];
          }
        }
        for (int tid = 0; tid < kThreads; ++tid) {
          const int tx = tid % (kBN / kTN), ty = tid / (kBN / kTN);
          for (int i = 0; i < kTM; ++i)
            for (int j = 0; j < kTN; ++j) {
              const int m = m0 + ty * kTM + i, n = n0 + tx * kTN + j;
              if (m < gm.M() && n < gm.Ncols()) gm.store(z, m, n, acc[(tid * kTM + i) * kTN + j]);
            }
        }
      }
}

struct Ref {
  std::vector<double> y, dx, dw;
};

Ref reference(const ConvGeom& g, const std::vector<float>& x, const std::vector<float>& w,
              const std::vector<float>& dy) {
  Ref r;
  r.y.assign(size_t(g.N) * g.K * g.OH * g.OW, 0.0);
  r.dx.assign(x.size(), 0.0);
  r.dw.assign(w.size(), 0.0);
  for (int n = 0; n < g.N; ++n)
    for (int co = 0; co < g.K; ++co) {
      const int grp = co / g.cout_g;
      for (int oy = 0; oy < g.OH; ++oy)
        for (int ox = 0; ox < g.OW; ++ox) {
          const size_t yi = ((size_t(n) * g.K + co) * g.OH + oy) * g.OW + ox;
          for (int c = 0; c < g.cin_g; ++c)
            for (int ky = 0; ky < g.KH; ++ky)
              for (int kx = 0; kx < g.KW; ++kx) {
                const int iy = oy * g.sh - g.pt + ky * g.dh, ix = ox * g.sw - g.pl + kx * g.dw;
                if (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W) continue;
                const size_t xi = ((size_t(n) * g.C + grp * g.cin_g + c) * g.H + iy) * g.W + ix;
                const size_t wi = ((size_t(co) * g.cin_g + c) * g.KH + ky) * g.KW + kx;
                r.y[yi] += double(w[wi]) * x[xi];
                r.dx[xi] += double(w[wi]) * dy[yi];
                r.dw[wi] += double(dy[yi]) * x[xi];
              }
        }
    }
  return r;
}

double max_err(const std::vector<float>& a, const std::vector<double>& b) {
  double e = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::isnan(a[i]) ? 1e30 : std::fabs(a[i] - b[i]);
    e = d > e ? d : e;
  }
  return e;
}

int main() {
  std::mt19937 rng(1234);
  auto U = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::uniform_real_distribution<float> val(-1.f, 1.f);
  int failures = 0, cases = 0;
  for (int t = 0; t < 300; ++t) {
    const int groups = U(0, 3) == 0 ? U(2, 4) : 1;
    const int cin_g = t % 3 == 0 ? U(17, 40) : U(1, 9), cout_g = t % 4 == 0 ? U(33, 80) : U(1, 20);
    const Pair k{U(1, 5), U(1, 5)}, s{U(1, 3), U(1, 3)}, d{U(1, 2), U(1, 2)};
    PaddingSpec pad;
    const int mode = U(0, 2);
    pad.mode = mode == 0 ? PadMode::Explicit : mode == 1 ? PadMode::Valid : PadMode::Same;
    if (pad.mode == PadMode::Same && (s.h != 1 || s.w != 1)) pad.mode = PadMode::Explicit;
    pad.pad = {U(0, 2), U(0, 2)};
    const int64_t H = d.h * (k.h - 1) + 1 + U(0, 9), W = d.w * (k.w - 1) + 1 + U(0, 12);
    Conv2dParams p;
    try {
      p = make_conv2d_params({U(1, 3), int64_t(cin_g) * groups, H, W},
                             {int64_t(cout_g) * groups, cin_g, k.h, k.w}, s, pad, d, groups);
    } catch (const ValueError&) {
      continue;
    }
    const ConvGeom g = conv_geom(p);
    std::vector<float> x(p.x.numel()), w(p.wt.numel()), dy(p.y.numel());
    for (auto* v : {&x, &w, &dy})
      for (auto& e : *v) e = val(rng);
    const Ref r = reference(g, x, w, dy);
    std::vector<float> y(p.y.numel(), NAN), dx(p.x.numel(), NAN), dw(p.wt.numel(), NAN);
    emulate_tiled(FwdGemm{x.data(), w.data(), nullptr, y.data(), g, false});
    emulate_tiled(BwdDataGemm{dy.data(), w.data(), dx.data(), g});
    // bwd_weights with 1 split (direct store) and with several splits (workspace + ordered sum).
    const int R = g.N * g.OH * g.OW;
    const int splits = 1 + t % 5, chunk = ((R + splits - 1) / splits + kBK - 1) / kBK * kBK;
    const int nsplit = (R + chunk - 1) / chunk;
    std::vector<float> ws(size_t(nsplit) * w.size(), NAN);
    emulate_tiled(BwdWeightsGemm{dy.data(), x.data(), dw.data(), ws.data(), g, nsplit, chunk});
    if (nsplit > 1)
      for (size_t i = 0; i < w.size(); ++i) {
        float acc = 0;
        for (int q = 0; q < nsplit; ++q) acc += ws[q * w.size() + i];
        dw[i] = acc;
      }
    const double ey = max_err(y, r.y), edx = max_err(dx, r.dx), edw = max_err(dw, r.dw);
    const double tol = 1e-4 * (1 + std::max(R, cin_g * cout_g * int(k.h * k.w)) / 100.0);
    ++cases;
    if (ey > tol || edx > tol || edw > tol) {
      ++failures;
      std::printf("FAIL %s splits=%d: err y %.3g dx %.3g dw %.3g (tol %.3g)\n", to_string(p).c_str(),
                  nsplit, ey, edx, edw, tol);
    }
  }
  std::printf("%d/%d geometries match the float64 loop\n", cases - failures, cases);
  return failures == 0 ? 0 : 1;
}
