// conv2d_winograd_bww.inl — the weight gradient of ONE image by Winograd F(r x r, 2x2) (r = 3 is
// used), output channels in the lanes, stride 1, dilation 1, even dy size. Include INSIDE the anonymous
// namespace of an ISA's translation unit, after conv2d_winograd.inl (it reuses its input
// transform: the same B^T, see fastconv/winograd.h).
//
// Why: dW[co][ci] = sum over dy's 2x2 tiles of the r x r correlation of the tile's n x n input
// patch with the tile, n = r + 1: n^2 products per (tile, ci, co) instead of 4 r^2 (3x3: 16 vs
// 36). The sums over tiles stay in the transformed domain, acc[pt][ci][co] += DY[pt][tile][co] *
// X[pt][ci][tile], and one inverse transform per weight at the end (by the driver, in double).
// Per block of tile rows:
//   1. X: the forward kernel's input transform (tiles in the lanes, masked to the real tiles);
//   2. DY = GW dy GW^T per tile, channel vectors read from dy transposed to (pixels, coutp);
//   3. per point, acc[pt][ci][co] += sum over the block's tiles: a tile of CI input channels x COV
//      channel vectors kept in registers across the tiles (a long reduction: acc goes to memory
//      once per block), per tile COV loads + CI broadcasts for CI*COV FMAs.

// Tile sizes per ISA: MaxCov channel vectors per tile and the register file's size (Regs), see
// ci_max.
#include "prefetch_trickle.inl"

template <class V, int R, int MaxCov = 4, int Regs = 32>
struct WinogradBww {
  using reg = typename V::reg;
  using Args = fastconv::cpu::ClConvArgs;
  using Fwd = WinogradF2<V, R, MaxCov, Regs>;
  using M = fastconv::cpu::Winograd<R>;
  static constexpr int N = M::n, NP = N * N;

  // 2. dyh[(pt*tb + t)*coutp + co] for tile t at (ty, tx).
  static void dy_transform(float* dyh, const float* dyT, const Args& a, int64_t tb, int64_t t,
                           int64_t ty, int64_t tx) {
    const float* d00 = dyT + (2 * ty * a.ow + 2 * tx) * a.coutp;
    const int64_t down = a.ow * a.coutp;
    for (int64_t co = 0; co < a.coutp; co += V::W) {
      reg d[2][2];  // d[a][b] = dy(2ty + a, 2tx + b)
      d[0][0] = V::loadu(d00 + co);
      d[0][1] = V::loadu(d00 + a.coutp + co);
      d[1][0] = V::loadu(d00 + down + co);
      d[1][1] = V::loadu(d00 + down + a.coutp + co);
      reg h[N][2];  // GW d
#pragma GCC unroll 8
      for (int i = 0; i < N; ++i)
#pragma GCC unroll 2
        for (int b = 0; b < 2; ++b) {
          const reg col[2] = {d[0][b], d[1][b]};
          h[i][b] = Fwd::combo(M::GW[i], col);
        }
#pragma GCC unroll 8
      for (int i = 0; i < N; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < N; ++j)
          V::storeu(dyh + ((N * i + j) * tb + t) * a.coutp + co, Fwd::combo(M::GW[j], h[i]));
    }
  }

  // 3. acc[(pt*cin + ci)*coutp + co] += sum_t dyh[pt][t][co] * x[pt][ci][t] for CI channels
  // ci0.. and COV vectors co0..
  template <int COV, int CI>
  static void point_tile(float* accp, const float* dyp, const float* vp, const Args& a,
                         int64_t tb, int64_t ci0, int64_t co0) {
    reg s[CI][COV];
#pragma GCC unroll 16
    for (int c = 0; c < CI; ++c)
#pragma GCC unroll 4
      for (int v = 0; v < COV; ++v) s[c][v] = V::loadu(accp + (ci0 + c) * a.coutp + co0 + v * V::W);
    // Input c of tile t at xg[(c/3)*3*tb + (c%3)*tb]: a base per 3 channels, indexed by tb*1 or
    // tb*2 (x86 scaled addressing), instead of CI row pointers that GCC spilled.
    constexpr int NG = (CI + 2) / 3;
    const float* xg[NG];
#pragma GCC unroll 8
    for (int g = 0; g < NG; ++g) xg[g] = vp + (ci0 + 3 * g) * tb;
    const float* dr = dyp + co0;
    for (int64_t t = 0; t < tb; ++t, dr += a.coutp) {
      reg dv[COV];
#pragma GCC unroll 4
      for (int v = 0; v < COV; ++v) {
        dv[v] = V::loadu(dr + v * V::W);
        asm("" : "+v"(dv[v]));  // keep in registers (see conv2d_fwd_cl.inl)
      }
#pragma GCC unroll 16
      for (int c = 0; c < CI; ++c) {
        const reg xb = V::set1(xg[c / 3][t + (c % 3) * tb]);
#pragma GCC unroll 4
        for (int v = 0; v < COV; ++v) s[c][v] = V::fmadd(xb, dv[v], s[c][v]);
      }
    }
#pragma GCC unroll 16
    for (int c = 0; c < CI; ++c)
#pragma GCC unroll 4
      for (int v = 0; v < COV; ++v) V::storeu(accp + (ci0 + c) * a.coutp + co0 + v * V::W, s[c][v]);
  }

  template <int COV, int CI>
  static void point_tile_n(int64_t nci, float* accp, const float* dyp, const float* vp,
                           const Args& a, int64_t tb, int64_t ci0, int64_t co0) {
    if (nci == CI) {
      point_tile<COV, CI>(accp, dyp, vp, a, tb, ci0, co0);
    } else if constexpr (CI > 1) {
      point_tile_n<COV, CI - 1>(nci, accp, dyp, vp, a, tb, ci0, co0);
    }
  }

  // CI*COV accumulators + COV dy vectors + a broadcast in the registers (16: COV <= 2); CI row
  // pointers in GPRs.
  static constexpr int ci_max(int cov) {
    return Regs >= 32 ? (cov == 1 ? 12 : cov == 2 ? 10 : cov == 3 ? 7 : 6) : (cov == 1 ? 12 : 6);
  }

  // points<COV> for COV = cov (1 <= cov <= MaxCov).
  template <int COV = MaxCov>
  static void points_cov(int64_t cov, float* acc, const float* dyh, const float* v, const Args& a,
                         int64_t tb, int64_t co0, PrefetchTrickle& trickle) {
    if constexpr (COV > 1) {
      if (cov < COV) return points_cov<COV - 1>(cov, acc, dyh, v, a, tb, co0, trickle);
    }
    points<COV>(acc, dyh, v, a, tb, co0, trickle);
  }

  template <int COV>
  static void points(float* acc, const float* dyh, const float* v, const Args& a, int64_t tb,
                     int64_t co0, PrefetchTrickle& trickle) {
    // Input-channel blocks of equal size up to CI (32 -> 6 x 5.33: 5, 5, 5, 5, 6, 6 rather than
    // five 6s and a 2 whose tile would run at a third of the FMA rate).
    constexpr int CI = ci_max(COV);
    const int64_t blocks = (a.cin + CI - 1) / CI;
    for (int64_t pt = 0; pt < NP; ++pt) {
      float* accp = acc + pt * a.cin * a.coutp;
      const float* dyp = dyh + pt * tb * a.coutp;
      const float* vp = v + pt * Fwd::v_pitch(a.cin, tb);
      for (int64_t b = 0, ci0 = 0; b < blocks; ++b) {
        const int64_t ci1 = (b + 1) * a.cin / blocks;
        point_tile_n<COV, CI>(ci1 - ci0, accp, dyp, vp, a, tb, ci0, co0);
        trickle.step();
        ci0 = ci1;
      }
    }
  }

  // acc: NP * cin * coutp partial sums (the caller zeroes it once per part); xpad: the image
  // zero-bordered as for the forward (planes of (oh + r - 1) x wp); dyT: dy (oh*ow, coutp), zero
  // past the real channels; work: winograd_bww_work_floats(a); next: prefetched a few lines per
  // point tile.
  static void run(float* acc, const float* xpad, const float* dyT, float* work, const Args& a,
                  const fastconv::cpu::PrefetchSpans& next) {
    const int64_t th = a.oh / 2, tw = a.ow / 2, rows = fastconv::cpu::winograd_block_rows(tw);
    const int64_t nvec = a.coutp / V::W;
    const int64_t chunks = (nvec + MaxCov - 1) / MaxCov, per = (nvec + chunks - 1) / chunks;
    // point tiles per image: per block of tile rows and channel chunk, NP points x the input-
    // channel blocks of the widest chunk (points<COV>)
    const int64_t ci_blocks = (a.cin + ci_max(int(per)) - 1) / ci_max(int(per));
    PrefetchTrickle trickle(next, (th + rows - 1) / rows * chunks * NP * ci_blocks);
    for (int64_t ty0 = 0; ty0 < th; ty0 += rows) {
      const int64_t ty1 = ty0 + rows < th ? ty0 + rows : th, tb = (ty1 - ty0) * tw;
      float* v = work;
      float* dyh = work + NP * Fwd::v_pitch(a.cin, tb);
      Fwd::input_transform(v, xpad, a, ty0, ty1, tw);
      for (int64_t t = 0; t < tb; ++t) dy_transform(dyh, dyT, a, tb, t, ty0 + t / tw, t % tw);
      for (int64_t v0 = 0; v0 < nvec; v0 += per) {
        const int64_t cov = nvec - v0 < per ? nvec - v0 : per, co0 = v0 * V::W;
        points_cov(cov, acc, dyh, v, a, tb, co0, trickle);
      }
    }
  }
};
