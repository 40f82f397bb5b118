// conv2d_gemm.cuh — the three conv passes as implicit GEMMs: index maps only, no CUDA intrinsics,
// so the same code compiles for the device (cuda/conv2d.cu) and for the host (cuda/dev/
// conv2d_gemm_host_check.cpp runs the tiled algorithm serially on the CPU against a plain loop).
//
// Each pass is C[z](m, n) = sum over r in [r_begin, r_end) of A(z, m, r) * B(z, r, n), where z is
// the grid's third axis (group, group x split, or group x stride phase). The tiled kernel first
// decodes z once into a ZCtx (an int for fwd and bwd_weights), keeps an (m, n) tile in registers
// and walks r in steps of BK; for each step it decomposes the BK values of r once into an RCtx
// table (shared memory), and each thread decomposes its B column once into a ColCtx, so the inner
// gathers are an add, two compares and a load — no division per element. a_at / b_at give an
// element's address and whether it exists (else the tensor's base, a safe address for a
// zero-filling cp.async); gemm_a / gemm_b below read the value for the register loaders.
//
//   pass         M        N (columns)               r (reduction)                A                 B (gathered)
//   fwd          Cout/g   N*OH*OW pixels            (c, ky, kx) Cin/g            w[co][r]          x at the tap
//   bwd_data     Cin/g    N*H*W/(sh*sw) pixels of   (co, ky, kx) Cout/g, only    w[co][ci][ky][kx] dy at the tap
//                         one stride phase          the taps of that phase
//   bwd_weights  Cout/g   (c, ky, kx)               (n, oy, ox)                  dy[n][co][oy][ox] x at the tap
//
// All indices are int32: the entries check that every tensor has < 2^31 elements.
#pragma once

#include "fastconv/params.h"

namespace fastconv {
namespace gpu {

// Every tiled kernel: 256 threads, BK-deep reduction steps.
constexpr int kBK = 16, kThreads = 256;
static_assert(kThreads % kBK == 0, "loader layout");

// Tile shape: BM x BN outputs per block, each thread a TM x TN micro-tile. The 64x64 tile serves
// every pass; the narrow-M tiles serve bwd_data when C_in/groups is small (first layers), where a
// 64-row tile would be mostly padding.
template <int BM_, int BN_, int TM_, int TN_>
struct Tile {
  static constexpr int BM = BM_, BN = BN_, TM = TM_, TN = TN_;
  static_assert((BM / TM) * (BN / TN) == kThreads && BM % TM == 0 && BN % TN == 0, "tile / thread mismatch");
  static_assert(kThreads % BN == 0, "B loader: each thread keeps one column");
};
using Tile64 = Tile<64, 64, 4, 4>;
using Tile32 = Tile<32, 128, 4, 4>;
using Tile16 = Tile<16, 256, 4, 4>;
using Tile8 = Tile<8, 256, 8, 1>;
using Tile4 = Tile<4, 256, 4, 1>;
using Tile1 = Tile<1, 256, 1, 1>;
// The classic names (64x64 tile) used by the launchers and split planning.
constexpr int kBM = Tile64::BM, kBN = Tile64::BN;

// Plain integer geometry of one conv problem (the int32 copy of Conv2dParams the kernels use).
struct ConvGeom {
  int N, C, H, W;     // input
  int K, OH, OW;      // output channels and size
  int KH, KW, sh, sw, dh, dw, pt, pl;
  int groups, cin_g, cout_g;
};

inline ConvGeom conv_geom(const Conv2dParams& p) {
  ConvGeom g{};
  g.N = int(p.x.n); g.C = int(p.x.c); g.H = int(p.x.h); g.W = int(p.x.w);
  g.K = int(p.y.c); g.OH = int(p.y.h); g.OW = int(p.y.w);
  g.KH = int(p.wt.h); g.KW = int(p.wt.w);
  g.sh = int(p.stride.h); g.sw = int(p.stride.w);
  g.dh = int(p.dilation.h); g.dw = int(p.dilation.w);
  g.pt = int(p.pad.top); g.pl = int(p.pad.left);
  g.groups = int(p.groups); g.cin_g = int(p.cin_per_group()); g.cout_g = int(p.cout_per_group());
  return g;
}

FASTCONV_HD bool inside(int i, int n) { return static_cast<unsigned>(i) < static_cast<unsigned>(n); }

// ---------------------------------------------------------------------------------------------
// Stride phases (bwd_data). Along one axis (input size In, kernel K, stride s, dilation d, leading
// pad), input position i and tap k meet output o = (i + pad - k*d) / s only when that divides
// exactly, i.e. when k*d = (i + pad) mod s. So the taps that reach i depend only on its phase
// p = (i + pad) mod s: they are k0, k0 + step, ... (count of them, step = s / gcd(s, d)), and each
// step moves o down by shift = d / gcd(s, d). The other K - count taps contribute nothing.

FASTCONV_HD int gcd_int(int a, int b) {
  while (b != 0) {
    const int t = a % b;
    a = b;
    b = t;
  }
  return a;
}

// The taps of one phase along one axis: k0 + j*step for j in [0, count), count may be 0.
struct PhaseTaps {
  int k0, count, step, shift;
};

FASTCONV_HD PhaseTaps phase_taps(int phase, int K, int s, int d) {
  const int gd = gcd_int(s, d);
  PhaseTaps t{0, 0, s / gd, d / gd};
  // k*d mod s repeats with period `step`, so a first tap, if any, lies in [0, step).
  int k0 = 0;
  while (k0 < t.step && (k0 * d) % s != phase) ++k0;
  if (k0 < t.step && k0 < K) {
    t.k0 = k0;
    t.count = (K - 1 - k0) / t.step + 1;
  }
  return t;
}

// One axis of one phase: its input positions i0 + j*s (j in [0, n_in)), its taps, and o0, the
// output row that input i0 meets through tap k0 (may lie outside [0, O)); input i0 + j*s meets
// output o0 + j - jt*shift through tap k0 + jt*step.
struct PhaseAxis {
  int i0, n_in, o0;
  PhaseTaps taps;
};

FASTCONV_HD PhaseAxis phase_axis(int phase, int In, int K, int s, int d, int pad) {
  PhaseAxis a{0, 0, 0, phase_taps(phase, K, s, d)};
  a.i0 = ((phase - pad) % s + s) % s;  // the first i >= 0 with (i + pad) mod s == phase
  a.n_in = a.i0 < In ? (In - 1 - a.i0) / s + 1 : 0;
  // Exact division: i0 + pad and k0*d are both = phase (mod s). Truncation is exact for negatives.
  if (a.taps.count > 0) a.o0 = (a.i0 + pad - a.taps.k0 * d) / s;
  return a;
}

// The taps jt in [lo, hi) that keep o0 - jt*shift inside [0, O): the direct kernel's loop bounds.
FASTCONV_HD void clip_taps(const PhaseTaps& t, int o0, int O, int* lo, int* hi) {
  *lo = o0 >= O ? (o0 - O) / t.shift + 1 : 0;           // o0 - jt*shift <= O - 1
  const int last = o0 >= 0 ? o0 / t.shift : -1;          // o0 - jt*shift >= 0
  *hi = last + 1 < t.count ? last + 1 : t.count;
  if (*hi < *lo) *hi = *lo;
}

// ---------------------------------------------------------------------------------------------
// fwd: y[n][g*cout_g + m][oy][ox] = sum_{c,ky,kx} w[g*cout_g + m][c][ky][kx] * x[n][g*cin_g + c][iy][ix]
struct FwdGemm {
  const float* x; const float* w; const float* b; float* y;
  ConvGeom g; bool relu;

  struct RCtx { int valid, r, off, ky, kx; };  // off = c*H*W, ky/kx pre-multiplied by dilation
  struct ColCtx { int valid, base, iy0, ix0; };

  using ZCtx = int;  // the group
  FASTCONV_HD ZCtx zctx(int z) const { return z; }
  FASTCONV_HD int M() const { return g.cout_g; }
  FASTCONV_HD int Ncols() const { return g.N * g.OH * g.OW; }
  FASTCONV_HD int ncols(int) const { return Ncols(); }
  FASTCONV_HD int Z() const { return g.groups; }
  FASTCONV_HD void range(int, int* r0, int* r1) const { *r0 = 0; *r1 = g.cin_g * g.KH * g.KW; }

  FASTCONV_HD RCtx rctx(int, int r, int r_end) const {
    RCtx t{r < r_end, r, 0, 0, 0};
    const int khw = g.KH * g.KW, c = r / khw, kk = r - c * khw, ky = kk / g.KW;
    t.off = c * g.H * g.W; t.ky = ky * g.dh; t.kx = (kk - ky * g.KW) * g.dw;
    return t;
  }
  FASTCONV_HD ColCtx colctx(int z, int n) const {
    ColCtx t{n < Ncols(), 0, 0, 0};
    const int ohw = g.OH * g.OW, img = n / ohw, pix = n - img * ohw, oy = pix / g.OW;
    t.base = (img * g.C + z * g.cin_g) * g.H * g.W;
    t.iy0 = oy * g.sh - g.pt; t.ix0 = (pix - oy * g.OW) * g.sw - g.pl;
    return t;
  }
  FASTCONV_HD const float* a_at(int z, int m, const RCtx& t, bool* ok) const {
    const int R = g.cin_g * g.KH * g.KW;
    *ok = t.valid && m < g.cout_g;
    return *ok ? w + (z * g.cout_g + m) * R + t.r : w;
  }
  FASTCONV_HD const float* b_at(const ColCtx& c, const RCtx& t, bool* ok) const {
    const int iy = c.iy0 + t.ky, ix = c.ix0 + t.kx;
    *ok = c.valid && t.valid && inside(iy, g.H) && inside(ix, g.W);
    return *ok ? x + c.base + t.off + iy * g.W + ix : x;
  }
  FASTCONV_HD void store(int z, int m, int n, float v) const {
    const int ohw = g.OH * g.OW, img = n / ohw, pix = n - img * ohw, co = z * g.cout_g + m;
    if (b != nullptr) v += b[co];
    if (relu) v = v < 0.0f ? 0.0f : v;  // the CPU's rule: NaN stays NaN
    y[(img * g.K + co) * ohw + pix] = v;
  }
};

// ---------------------------------------------------------------------------------------------
// bwd_data: dx[n][g*cin_g + m][iy][ix] = sum_{co,ky,kx} w[g*cout_g + co][m][ky][kx] * dy[n][g*cout_g + co][oy][ox]
// where oy = (iy + pt - ky*dh) / sh when that divides exactly and lands in [0, OH) (same for x).
// Sub-pixel decomposition: z = group * sh*sw + phase, phase = py*sw + px. The columns of z are the
// dx pixels with (iy + pt) mod sh == py and (ix + pl) mod sw == px; its reduction runs over
// (co, jy, jx), the taps that reach that phase only (PhaseAxis), so a stride-s conv does not
// multiply by the s*s - 1 zero taps, and the gather needs no division. Phases that no tap reaches
// have an empty reduction: their blocks store zeros. Each dx element belongs to exactly one phase
// and is summed over co, ky, kx ascending (the direct kernel's order too).
struct BwdDataGemm {
  const float* dy; const float* w; float* dx;
  ConvGeom g;

  struct ZCtx { int grp; PhaseAxis y, x; };
  struct RCtx { int valid, woff, dyoff, doy, dox; };  // woff = co*cin_g*KH*KW + ky*KW + kx, dyoff = co*OH*OW
  struct ColCtx { int valid, base, oy0, ox0; };       // output row/col that tap (jy, jx) = (0, 0) meets

  FASTCONV_HD ZCtx zctx(int z) const {
    const int phases = g.sh * g.sw, ph = z % phases;
    return ZCtx{z / phases, phase_axis(ph / g.sw, g.H, g.KH, g.sh, g.dh, g.pt),
                phase_axis(ph % g.sw, g.W, g.KW, g.sw, g.dw, g.pl)};
  }
  FASTCONV_HD int M() const { return g.cin_g; }
  // The most columns any phase has (the grid's x extent); ncols(zc) is this phase's count.
  FASTCONV_HD int Ncols() const { return g.N * ((g.H + g.sh - 1) / g.sh) * ((g.W + g.sw - 1) / g.sw); }
  FASTCONV_HD int ncols(const ZCtx& zc) const { return g.N * zc.y.n_in * zc.x.n_in; }
  FASTCONV_HD int Z() const { return g.groups * g.sh * g.sw; }
  FASTCONV_HD void range(const ZCtx& zc, int* r0, int* r1) const {
    *r0 = 0; *r1 = g.cout_g * zc.y.taps.count * zc.x.taps.count;
  }

  FASTCONV_HD RCtx rctx(const ZCtx& zc, int r, int r_end) const {
    RCtx t{r < r_end, 0, 0, 0, 0};
    if (!t.valid) return t;  // also keeps an empty reduction free of divisions by 0
    const int nk = zc.y.taps.count * zc.x.taps.count, co = r / nk, kk = r - co * nk;
    const int jy = kk / zc.x.taps.count, jx = kk - jy * zc.x.taps.count;
    const int ky = zc.y.taps.k0 + jy * zc.y.taps.step, kx = zc.x.taps.k0 + jx * zc.x.taps.step;
    t.woff = co * g.cin_g * g.KH * g.KW + ky * g.KW + kx; t.dyoff = co * g.OH * g.OW;
    t.doy = jy * zc.y.taps.shift; t.dox = jx * zc.x.taps.shift;
    return t;
  }
  FASTCONV_HD ColCtx colctx(const ZCtx& zc, int n) const {
    ColCtx t{n < ncols(zc), 0, 0, 0};
    if (!t.valid) return t;  // also covers phases without pixels (n_in == 0)
    const int hw = zc.y.n_in * zc.x.n_in, img = n / hw, pix = n - img * hw, jy = pix / zc.x.n_in;
    t.base = (img * g.K + zc.grp * g.cout_g) * g.OH * g.OW;
    t.oy0 = zc.y.o0 + jy; t.ox0 = zc.x.o0 + (pix - jy * zc.x.n_in);
    return t;
  }
  FASTCONV_HD const float* a_at(const ZCtx& zc, int m, const RCtx& t, bool* ok) const {
    const int khw = g.KH * g.KW;
    *ok = t.valid && m < g.cin_g;
    return *ok ? w + zc.grp * g.cout_g * g.cin_g * khw + t.woff + m * khw : w;
  }
  FASTCONV_HD const float* b_at(const ColCtx& c, const RCtx& t, bool* ok) const {
    const int oy = c.oy0 - t.doy, ox = c.ox0 - t.dox;
    *ok = c.valid && t.valid && inside(oy, g.OH) && inside(ox, g.OW);
    return *ok ? dy + c.base + t.dyoff + oy * g.OW + ox : dy;
  }
  FASTCONV_HD void store(const ZCtx& zc, int m, int n, float v) const {
    const int hw = zc.y.n_in * zc.x.n_in, img = n / hw, pix = n - img * hw, jy = pix / zc.x.n_in;
    const int iy = zc.y.i0 + jy * g.sh, ix = zc.x.i0 + (pix - jy * zc.x.n_in) * g.sw;
    dx[((img * g.C + zc.grp * g.cin_g + m) * g.H + iy) * g.W + ix] = v;
  }
};

// The direct bwd_data kernel's work for dx element i (flat NCHW): the same sum as BwdDataGemm,
// over co, ky, kx ascending, visiting only the taps that land on a dy element (no zero taps, no
// division inside the loops).
FASTCONV_HD float bwd_data_direct_at(const ConvGeom& g, const float* dy, const float* w, int i) {
  const int ix = i % g.W, iy = (i / g.W) % g.H, ci = (i / (g.W * g.H)) % g.C;
  const int n = i / (g.W * g.H * g.C), grp = ci / g.cin_g, cl = ci - grp * g.cin_g;
  const int ty = iy + g.pt, tx = ix + g.pl;
  const PhaseTaps ky = phase_taps(ty % g.sh, g.KH, g.sh, g.dh), kx = phase_taps(tx % g.sw, g.KW, g.sw, g.dw);
  // Output row/col that tap k0 meets (exact division, see phase_axis), and the taps inside dy.
  const int oy0 = ky.count > 0 ? (ty - ky.k0 * g.dh) / g.sh : 0, ox0 = kx.count > 0 ? (tx - kx.k0 * g.dw) / g.sw : 0;
  int jy0, jy1, jx0, jx1;
  clip_taps(ky, oy0, g.OH, &jy0, &jy1);
  clip_taps(kx, ox0, g.OW, &jx0, &jx1);
  const int khw = g.KH * g.KW, ohw = g.OH * g.OW;
  float acc = 0.0f;
  for (int col = 0; col < g.cout_g; ++col) {
    const int co = grp * g.cout_g + col;
    const float* dyc = dy + (n * g.K + co) * ohw;
    const float* wk = w + (co * g.cin_g + cl) * khw;
    for (int jy = jy0; jy < jy1; ++jy) {
      const int dyrow = (oy0 - jy * ky.shift) * g.OW + ox0, wrow = (ky.k0 + jy * ky.step) * g.KW + kx.k0;
      for (int jx = jx0; jx < jx1; ++jx) acc = fmaf(wk[wrow + jx * kx.step], dyc[dyrow - jx * kx.shift], acc);
    }
  }
  return acc;
}

// ---------------------------------------------------------------------------------------------
// bwd_weights: dw[g*cout_g + m][c][ky][kx] = sum_{n,oy,ox} dy[n][g*cout_g + m][oy][ox] * x[n][g*cin_g + c][iy][ix]
// The reduction (N*OH*OW, long) is split into `splits` chunks; z = group * splits + split. With
// splits > 1 each chunk's partial goes to ws[split][co][c][ky][kx] and a second kernel adds the
// chunks in order 0, 1, ... — deterministic, no atomics.
struct BwdWeightsGemm {
  const float* dy; const float* x; float* dw; float* ws;
  ConvGeom g; int splits, chunk;

  struct RCtx { int valid, dyoff, xoff, iy0, ix0; };  // dyoff = img*K*OH*OW + pix, xoff = img*C*H*W
  struct ColCtx { int valid, off, ky, kx; };          // off = (g*cin_g + c)*H*W

  using ZCtx = int;  // group * splits + split
  FASTCONV_HD ZCtx zctx(int z) const { return z; }
  FASTCONV_HD int M() const { return g.cout_g; }
  FASTCONV_HD int Ncols() const { return g.cin_g * g.KH * g.KW; }
  FASTCONV_HD int ncols(int) const { return Ncols(); }
  FASTCONV_HD int Z() const { return g.groups * splits; }
  FASTCONV_HD void range(int z, int* r0, int* r1) const {
    const int s = z % splits, R = g.N * g.OH * g.OW;
    *r0 = s * chunk;
    *r1 = *r0 + chunk < R ? *r0 + chunk : R;
  }

  FASTCONV_HD RCtx rctx(int, int r, int r_end) const {
    RCtx t{r < r_end, 0, 0, 0, 0};
    const int ohw = g.OH * g.OW, img = r / ohw, pix = r - img * ohw, oy = pix / g.OW;
    t.dyoff = img * g.K * ohw + pix; t.xoff = img * g.C * g.H * g.W;
    t.iy0 = oy * g.sh - g.pt; t.ix0 = (pix - oy * g.OW) * g.sw - g.pl;
    return t;
  }
  FASTCONV_HD ColCtx colctx(int z, int n) const {
    ColCtx t{n < Ncols(), 0, 0, 0};
    const int khw = g.KH * g.KW, c = n / khw, kk = n - c * khw, ky = kk / g.KW;
    t.off = ((z / splits) * g.cin_g + c) * g.H * g.W;
    t.ky = ky * g.dh; t.kx = (kk - ky * g.KW) * g.dw;
    return t;
  }
  FASTCONV_HD const float* a_at(int z, int m, const RCtx& t, bool* ok) const {
    *ok = t.valid && m < g.cout_g;
    return *ok ? dy + t.dyoff + ((z / splits) * g.cout_g + m) * g.OH * g.OW : dy;
  }
  FASTCONV_HD const float* b_at(const ColCtx& c, const RCtx& t, bool* ok) const {
    const int iy = t.iy0 + c.ky, ix = t.ix0 + c.kx;
    *ok = c.valid && t.valid && inside(iy, g.H) && inside(ix, g.W);
    return *ok ? x + t.xoff + c.off + iy * g.W + ix : x;
  }
  FASTCONV_HD void store(int z, int m, int n, float v) const {
    const int grp = z / splits, s = z % splits, kg = Ncols();
    const int i = (grp * g.cout_g + m) * kg + n;
    if (splits == 1) dw[i] = v;
    else ws[s * g.K * kg + i] = v;
  }
};

// The values behind a_at / b_at (0 outside the tensor or the reduction): the register loaders.
template <class G>
FASTCONV_HD float gemm_a(const G& gm, const typename G::ZCtx& zc, int m, const typename G::RCtx& t) {
  bool ok = false;
  const float* p = gm.a_at(zc, m, t, &ok);
  return ok ? *p : 0.0f;
}
template <class G>
FASTCONV_HD float gemm_b(const G& gm, const typename G::ColCtx& c, const typename G::RCtx& t) {
  bool ok = false;
  const float* p = gm.b_at(c, t, &ok);
  return ok ? *p : 0.0f;
}

}  // namespace gpu
}  // namespace fastconv
