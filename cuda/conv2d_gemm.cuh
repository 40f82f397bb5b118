// conv2d_gemm.cuh — the three conv passes as implicit GEMMs: index maps only, no CUDA intrinsics,
// so the same code compiles for the device (cuda/conv2d.cu) and for the host (cuda/dev/
// conv2d_gemm_host_check.cpp runs the tiled algorithm serially on the CPU against a plain loop).
//
// Each pass is C[z](m, n) = sum over r in [r_begin, r_end) of A(z, m, r) * B(z, r, n), where z is
// the grid's third axis (group, or group x split). The tiled kernel keeps an (m, n) tile in
// registers and walks r in steps of BK; for each step it decomposes the BK values of r once into
// an RCtx table (shared memory), and each thread decomposes its B column once into a ColCtx, so
// the inner gathers are an add, two compares and a load — no division per element.
//
//   pass         M        N (columns)      r (reduction)        A                 B (gathered)
//   fwd          Cout/g   N*OH*OW pixels   (c, ky, kx) Cin/g    w[co][r]          x at the tap
//   bwd_data     Cin/g    N*H*W pixels     (co, ky, kx) Cout/g  w[co][ci][ky][kx] dy where the tap lands on a stride point
//   bwd_weights  Cout/g   (c, ky, kx)      (n, oy, ox)          dy[n][co][oy][ox] x at the tap
//
// All indices are int32: the entries check that every tensor has < 2^31 elements.
#pragma once

#include "fastconv/params.h"

namespace fastconv {
namespace gpu {

// Tile: BM x BN outputs per block of 256 threads, each thread a TM x TN micro-tile; BK-deep steps.
constexpr int kBM = 64, kBN = 64, kBK = 16, kTM = 4, kTN = 4, kThreads = 256;
static_assert(kBM * kBN == kThreads * kTM * kTN, "tile / thread mismatch");
static_assert(kThreads % kBN == 0 && kThreads % kBK == 0, "loader layout");

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
// fwd: y[n][g*cout_g + m][oy][ox] = sum_{c,ky,kx} w[g*cout_g + m][c][ky][kx] * x[n][g*cin_g + c][iy][ix]
struct FwdGemm {
  const float* x; const float* w; const float* b; float* y;
  ConvGeom g; bool relu;

  struct RCtx { int valid, r, off, ky, kx; };  // off = c*H*W, ky/kx pre-multiplied by dilation
  struct ColCtx { int valid, base, iy0, ix0; };

  FASTCONV_HD int M() const { return g.cout_g; }
  FASTCONV_HD int Ncols() const { return g.N * g.OH * g.OW; }
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
  FASTCONV_HD float a(int z, int m, const RCtx& t) const {
    const int R = g.cin_g * g.KH * g.KW;
    return t.valid && m < g.cout_g ? w[(z * g.cout_g + m) * R + t.r] : 0.0f;
  }
  FASTCONV_HD float bval(const ColCtx& c, const RCtx& t) const {
    const int iy = c.iy0 + t.ky, ix = c.ix0 + t.kx;
    return c.valid && t.valid && inside(iy, g.H) && inside(ix, g.W) ? x[c.base + t.off + iy * g.W + ix]
                                                                    : 0.0f;
  }
  FASTCONV_HD void store(int z, int m, int n, float v) const {
    const int ohw = g.OH * g.OW, img = n / ohw, pix = n - img * ohw, co = z * g.cout_g + m;
    if (b != nullptr) v += b[co];
    if (relu) v = v > 0.0f ? v : 0.0f;  // the CPU's rule: NaN -> 0
    y[(img * g.K + co) * ohw + pix] = v;
  }
};

// ---------------------------------------------------------------------------------------------
// bwd_data: dx[n][g*cin_g + m][iy][ix] = sum_{co,ky,kx} w[g*cout_g + co][m][ky][kx] * dy[n][g*cout_g + co][oy][ox]
// where oy = (iy + pt - ky*dh) / sh when that divides exactly and lands in [0, OH) (same for x).
struct BwdDataGemm {
  const float* dy; const float* w; float* dx;
  ConvGeom g;

  struct RCtx { int valid, woff, dyoff, ky, kx; };  // woff = co*cin_g*KH*KW + kk, dyoff = co*OH*OW
  struct ColCtx { int valid, base, ty0, tx0; };     // ty0 = iy + pt, tx0 = ix + pl

  FASTCONV_HD int M() const { return g.cin_g; }
  FASTCONV_HD int Ncols() const { return g.N * g.H * g.W; }
  FASTCONV_HD int Z() const { return g.groups; }
  FASTCONV_HD void range(int, int* r0, int* r1) const { *r0 = 0; *r1 = g.cout_g * g.KH * g.KW; }

  FASTCONV_HD RCtx rctx(int, int r, int r_end) const {
    RCtx t{r < r_end, 0, 0, 0, 0};
    const int khw = g.KH * g.KW, co = r / khw, kk = r - co * khw, ky = kk / g.KW;
    t.woff = co * g.cin_g * khw + kk; t.dyoff = co * g.OH * g.OW;
    t.ky = ky * g.dh; t.kx = (kk - ky * g.KW) * g.dw;
    return t;
  }
  FASTCONV_HD ColCtx colctx(int z, int n) const {
    ColCtx t{n < Ncols(), 0, 0, 0};
    const int hw = g.H * g.W, img = n / hw, pix = n - img * hw, iy = pix / g.W;
    t.base = (img * g.K + z * g.cout_g) * g.OH * g.OW;
    t.ty0 = iy + g.pt; t.tx0 = (pix - iy * g.W) + g.pl;
    return t;
  }
  FASTCONV_HD float a(int z, int m, const RCtx& t) const {
    const int khw = g.KH * g.KW;
    return t.valid && m < g.cin_g ? w[z * g.cout_g * g.cin_g * khw + t.woff + m * khw] : 0.0f;
  }
  FASTCONV_HD float bval(const ColCtx& c, const RCtx& t) const {
    const int ty = c.ty0 - t.ky, tx = c.tx0 - t.kx;
    if (!c.valid || !t.valid || ty < 0 || tx < 0) return 0.0f;
    const int oy = ty / g.sh, ox = tx / g.sw;
    if (oy * g.sh != ty || ox * g.sw != tx || oy >= g.OH || ox >= g.OW) return 0.0f;
    return dy[c.base + t.dyoff + oy * g.OW + ox];
  }
  FASTCONV_HD void store(int z, int m, int n, float v) const {
    const int hw = g.H * g.W, img = n / hw, pix = n - img * hw;
    dx[(img * g.C + z * g.cin_g + m) * hw + pix] = v;
  }
};

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

  FASTCONV_HD int M() const { return g.cout_g; }
  FASTCONV_HD int Ncols() const { return g.cin_g * g.KH * g.KW; }
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
  FASTCONV_HD float a(int z, int m, const RCtx& t) const {
    return t.valid && m < g.cout_g ? dy[t.dyoff + ((z / splits) * g.cout_g + m) * g.OH * g.OW] : 0.0f;
  }
  FASTCONV_HD float bval(const ColCtx& c, const RCtx& t) const {
    const int iy = t.iy0 + c.ky, ix = t.ix0 + c.kx;
    return c.valid && t.valid && inside(iy, g.H) && inside(ix, g.W) ? x[t.xoff + c.off + iy * g.W + ix]
                                                                    : 0.0f;
  }
  FASTCONV_HD void store(int z, int m, int n, float v) const {
    const int grp = z / splits, s = z % splits, kg = Ncols();
    const int i = (grp * g.cout_g + m) * kg + n;
    if (splits == 1) dw[i] = v;
    else ws[s * g.K * kg + i] = v;
  }
};

}  // namespace gpu
}  // namespace fastconv
