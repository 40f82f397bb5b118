// conv2d_gemm_host_check.cpp — runs the tiled implicit-GEMM algorithm of cuda/conv2d.cu serially
// on the CPU, with the very index maps the kernel uses (cuda/conv2d_gemm.cuh), and compares all
// three passes with a plain float64 loop over random geometries (strides, asymmetric padding,
// dilation, groups, tails). It proves the index arithmetic without a GPU, over more geometries and
// faster than the emulator; the emulator (cuda/emu, tests/test_cuda_emulated.py) runs the kernel
// source itself, barriers and launch configuration included.
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

// Serial emulation of conv_gemm_tiled<G, T>: same tile sizes, loader layout, r-table, early exit.
template <class G, class T = Tile64>
void emulate_tiled(const G& gm) {
  constexpr int BM = T::BM, BN = T::BN, TM = T::TM, TN = T::TN;
  constexpr int kALoads = (BM * kBK + kThreads - 1) / kThreads;
  const int gx = int((gm.Ncols() + BN - 1) / BN), gy = int((gm.M() + BM - 1) / BM);
  std::vector<float> As(kBK * BM), Bs(kBK * BN);
  std::vector<typename G::RCtx> rtab(kBK);
  std::vector<float> acc(size_t(kThreads) * TM * TN);
  for (int z = 0; z < gm.Z(); ++z)
    for (int by = 0; by < gy; ++by)
      for (int bx = 0; bx < gx; ++bx) {
        const typename G::ZCtx zc = gm.zctx(z);
        const int m0 = by * BM, n0 = bx * BN;
        if (n0 >= gm.ncols(zc)) continue;
        int r_begin, r_end;
        gm.range(zc, &r_begin, &r_end);
        std::fill(acc.begin(), acc.end(), 0.0f);
        std::fill(As.begin(), As.end(), NAN);  // a slot the loaders miss would poison the result
        std::fill(Bs.begin(), Bs.end(), NAN);
        for (int r0 = r_begin; r0 < r_end; r0 += kBK) {
          for (int t = 0; t < kBK; ++t) rtab[t] = gm.rctx(zc, r0 + t, r_end);
          for (int tid = 0; tid < kThreads; ++tid) {
            const int a_rr = tid % kBK, a_mm = tid / kBK, b_nn = tid % BN, b_rr = tid / BN;
            const auto col = gm.colctx(zc, n0 + b_nn);
            for (int i = 0; i < kALoads; ++i) {
              const int mm = a_mm + i * (kThreads / kBK);
              if (BM * kBK % kThreads == 0 || mm < BM) As[a_rr * BM + mm] = gemm_a(gm, zc, m0 + mm, rtab[a_rr]);
            }
            for (int i = 0; i < kBK * BN / kThreads; ++i) {
              const int rr = b_rr + i * (kThreads / BN);
              Bs[rr * BN + b_nn] = gemm_b(gm, col, rtab[rr]);
            }
          }
          for (int tid = 0; tid < kThreads; ++tid) {
            const int tx = tid % (BN / TN), ty = tid / (BN / TN);
            for (int k = 0; k < kBK; ++k)
              for (int i = 0; i < TM; ++i)
                for (int j = 0; j < TN; ++j)
                  acc[(tid * TM + i) * TN + j] = std::fma(As[k * BM + ty * TM + i], Bs[k * BN + tx * TN + j],
                                                          acc[(tid * TM + i) * TN + j]);
          }
        }
        for (int tid = 0; tid < kThreads; ++tid) {
          const int tx = tid % (BN / TN), ty = tid / (BN / TN);
          for (int i = 0; i < TM; ++i)
            for (int j = 0; j < TN; ++j) {
              const int m = m0 + ty * TM + i, n = n0 + tx * TN + j;
              if (m < gm.M() && n < gm.ncols(zc)) gm.store(zc, m, n, acc[(tid * TM + i) * TN + j]);
            }
        }
      }
}

// phase_taps / phase_axis / clip_taps against brute force over every position and tap of one axis.
int check_phase_axis(int In, int K, int s, int d, int pad, int O) {
  int bad = 0;
  std::vector<int> seen(In, 0);
  for (int ph = 0; ph < s; ++ph) {
    const PhaseAxis a = phase_axis(ph, In, K, s, d, pad);
    for (int j = 0; j < a.n_in; ++j) {
      const int i = a.i0 + j * s;
      if (i < 0 || i >= In || (i + pad) % s != ph) ++bad;
      else ++seen[i];
      // the taps it lists, in order, must be exactly the k with (i + pad - k*d) divisible by s
      std::vector<int> want, got;
      for (int k = 0; k < K; ++k)
        if ((i + pad - k * d) % s == 0) want.push_back(k);
      for (int jt = 0; jt < a.taps.count; ++jt) {
        const int k = a.taps.k0 + jt * a.taps.step;
        got.push_back(k);
        if ((i + pad - k * d) / s != a.o0 + j - jt * a.taps.shift) ++bad;  // exact: divisible
      }
      if (want != got) ++bad;
      // clip_taps: exactly the listed taps whose output lies in [0, O)
      int lo, hi;
      clip_taps(a.taps, a.o0 + j, O, &lo, &hi);
      for (int jt = 0; jt < a.taps.count; ++jt) {
        const int o = a.o0 + j - jt * a.taps.shift;
        if ((o >= 0 && o < O) != (jt >= lo && jt < hi)) ++bad;
      }
    }
  }
  for (int i = 0; i < In; ++i) bad += seen[i] != 1;
  return bad;
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

  // The per-axis phase arithmetic on its own, exhaustively over small sizes.
  int axis_bad = 0, axis_cases = 0;
  for (int s = 1; s <= 5; ++s)
    for (int d = 1; d <= 4; ++d)
      for (int K = 1; K <= 11; ++K)
        for (int pad = 0; pad <= 6; ++pad)
          for (int In = 1; In <= 20; ++In) {
            const int O = int(conv_out_size(In, pad, U(0, 6), K, s, d));
            if (O <= 0) continue;
            axis_bad += check_phase_axis(In, K, s, d, pad, O);
            ++axis_cases;
          }
  std::printf("phase axes: %d cases, %d mismatches\n", axis_cases, axis_bad);
  failures += axis_bad != 0;

  for (int t = 0; t < 600; ++t) {
    const int groups = U(0, 3) == 0 ? U(2, 4) : 1;
    const int cin_g = t % 3 == 0 ? U(17, 80) : U(1, 9), cout_g = t % 4 == 0 ? U(33, 80) : U(1, 20);
    const bool big_k = U(0, 3) == 0;
    const Pair k{big_k ? U(5, 11) : U(1, 5), big_k ? U(5, 11) : U(1, 5)}, s{U(1, 4), U(1, 4)},
        d{U(1, 3) == 1 ? 2 : 1, U(1, 3) == 1 ? U(2, 3) : 1};
    PaddingSpec pad;
    const int mode = U(0, 2);
    pad.mode = mode == 0 ? PadMode::Explicit : mode == 1 ? PadMode::Valid : PadMode::Same;
    if (pad.mode == PadMode::Same && (s.h != 1 || s.w != 1)) pad.mode = PadMode::Explicit;
    pad.pad = {U(0, 3), U(0, 3)};
    const int64_t H = d.h * (k.h - 1) + 1 + U(0, 12), W = d.w * (k.w - 1) + 1 + U(0, 14);
    Conv2dParams p;
    try {
      p = make_conv2d_params({U(1, 3), int64_t(cin_g) * groups, H, W},
                             {int64_t(cout_g) * groups, cin_g, k.h, k.w}, s, pad, d, groups);
    } catch (const ValueError&) {
      continue;
    }
    if (t % 4 == 1) {  // asymmetric explicit padding (the kernels take any four pads)
      p.pad = {U(0, 4), U(0, 4), U(0, 4), U(0, 4)};
      p.y.h = conv_out_size(p.x.h, p.pad.top, p.pad.bottom, k.h, s.h, d.h);
      p.y.w = conv_out_size(p.x.w, p.pad.left, p.pad.right, k.w, s.w, d.w);
      if (p.y.h <= 0 || p.y.w <= 0) continue;
    }
    const ConvGeom g = conv_geom(p);
    std::vector<float> x(p.x.numel()), w(p.wt.numel()), dy(p.y.numel());
    for (auto* v : {&x, &w, &dy})
      for (auto& e : *v) e = val(rng);
    const Ref r = reference(g, x, w, dy);
    std::vector<float> y(p.y.numel(), NAN), dw(p.wt.numel(), NAN);
    emulate_tiled(FwdGemm{x.data(), w.data(), nullptr, y.data(), g, false});
    // bwd_data: the direct kernel's element function and the phase GEMM with every tile shape.
    double edx = 0;
    std::vector<float> dx(p.x.numel(), NAN), dx_direct(p.x.numel(), NAN);
    for (int i = 0; i < int(dx_direct.size()); ++i) dx_direct[i] = bwd_data_direct_at(g, dy.data(), w.data(), i);
    edx = std::max(edx, max_err(dx_direct, r.dx));
    const BwdDataGemm bd{dy.data(), w.data(), dx.data(), g};
    auto run_bd = [&](auto tile) {
      std::fill(dx.begin(), dx.end(), NAN);
      emulate_tiled<BwdDataGemm, decltype(tile)>(bd);
      edx = std::max(edx, max_err(dx, r.dx));
      // same order of the same products as the direct kernel; fma(a, 0, acc) == acc for finite a
      for (size_t i = 0; i < dx.size(); ++i)
        if (dx[i] != dx_direct[i] && !(dx[i] == 0 && dx_direct[i] == 0)) {
          edx = std::max(edx, 1e30);
          break;
        }
    };
    run_bd(Tile1{}); run_bd(Tile4{}); run_bd(Tile8{}); run_bd(Tile16{}); run_bd(Tile32{}); run_bd(Tile64{});
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
    const double ey = max_err(y, r.y), edw = max_err(dw, r.dw);
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
