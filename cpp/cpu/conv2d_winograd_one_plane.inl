// conv2d_winograd_one_plane.inl — Winograd F(2, 5) along the rows only, for ONE image of a 5x5,
// stride-1, one-input-channel forward with an even output width (cnn1.conv1). Include INSIDE the
// anonymous namespace of an ISA's translation unit, after conv2d_winograd.inl (its F(2, 5) input
// transform rows, WinogradF2::bt).
//
// Why: with C_in = 1 the direct kernel's reduction is the 25 taps alone and its shifted-plane
// tiles run at 82-88% of the FMA peak (PERF_LOG round 16); 2x PyTorch on cnn1.conv1 needs more.
// A 1-D F(2, 5) along x computes each pair of neighbouring outputs of a kernel row from 6 points
// instead of 10 products, and the input transform is shared by all output channels and kernel
// rows: per pair of outputs and channel 30 FMAs + the output transform's 8 operations, against
// 50 FMAs. Only along x: the 2-D F(2x2, 5x5) rounds 3-4x coarser than a direct sum (its
// transforms' 4s, 5s and 1/6s twice); one direction keeps it near the direct sum (tested).
//
// Layout, tw = ow / 2 tiles per row, hp = oh + 4 padded rows:
//   1. v[p][r*tw + t] = (B^T d)[p] of d = xpad[r][2t .. 2t + 5], every padded row r, p < 6: one
//      plane per point, flat over (row, tile), so a tile of output row oy and kernel row ky reads
//      point p at the output tile's own flat index q = oy*tw + t plus ky*tw;
//   2. m[p][co][q] = sum_ky u[co][ky][p] * v[p][q + ky*tw] for CB channels x NQ vectors of q at a
//      time (per (p, ky) NQ loads + CB broadcasts for CB*NQ FMAs), kept in a stack buffer;
//   3. y[co][2q + j] = (A^T m[.][co][q])[j] + bias, ReLU: the two outputs of W tiles interleaved
//      are 2W consecutive outputs of the flat (oh*ow) plane, stored straight into NCHW.
// Lanes past oh*tw compute junk from the planes' slack and are never stored.

template <class V, int CB, int NQ>
struct WinogradOnePlaneF2x5 {
  using reg = typename V::reg;
  using Args = fastconv::cpu::WinogradTilesArgs;
  using Cl = WinogradF2<V, 5>;
  static constexpr int N = 6, K = 5;

  static int64_t tiles_per_row(const Args& a) { return a.ow / 2; }
  static int64_t hp(const Args& a) { return a.plane / a.wp; }
  // One point's plane: hp rows of tw tiles and NQ*W floats of slack (the last chunk's junk lanes).
  static int64_t plane_floats(const Args& a) { return hp(a) * tiles_per_row(a) + NQ * V::W; }

  // 1. The whole image's points: W tiles at a time, whole-vector stores in increasing address
  // order, so the lanes past a row's last tile land on the next row's first tiles (rewritten by
  // the next store) or, after the last row, in the slack.
  static void input_transform(float* v, const float* xpad, const Args& a) {
    const int64_t tw = tiles_per_row(a), rows = hp(a), ps = plane_floats(a);
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = xpad + r * a.wp;
      float* out = v + r * tw;
      for (int64_t t0 = 0; t0 < tw; t0 += V::W) {
        reg d[N];
#pragma GCC unroll 4
        for (int k = 0; k < N / 2; ++k)
          V::deinterleave(V::loadu(xr + 2 * t0 + 2 * k), V::loadu(xr + 2 * t0 + 2 * k + V::W),
                          d[2 * k], d[2 * k + 1]);
        reg o[N];
        Cl::bt(d, o);
#pragma GCC unroll 8
        for (int p = 0; p < N; ++p) V::storeu(out + p * ps + t0, o[p]);
      }
    }
  }

  // 2 + 3 for channels co0 .. co0 + nco - 1 (nco <= CB; u is zero past the real channels) and
  // NV <= NQ vectors of tiles from q0.
  template <int NV>
  static void tile(float* y, const float* v, const float* u, const float* bias, bool relu,
                   const Args& a, int64_t ps, int64_t co0, int64_t nco, int64_t q0) {
    const int64_t tw = tiles_per_row(a), ohw = a.oh * a.ow;
    alignas(64) float m[N][CB][NV][V::W];
    const float* uc = u + co0 * K * N;  // u[(co*K + ky)*N + p]: compile-time offsets below
    // Not unrolled over the points: unrolled, GCC interleaved the points' tiles and spilled.
#pragma GCC unroll 1
    for (int p = 0; p < N; ++p, ++uc) {
      reg acc[CB][NV];  // set by the first kernel row (a zero register would be the 17th)
      const float* vp = v + p * ps + q0;
#pragma GCC unroll 8
      for (int ky = 0; ky < K; ++ky) {
        reg xv[NV];
#pragma GCC unroll 4
        for (int t = 0; t < NV; ++t) {
          xv[t] = V::loadu(vp + t * V::W);
          asm("" : "+v"(xv[t]));  // keep in registers (see conv2d_fwd_cl.inl)
        }
#pragma GCC unroll 8
        for (int c = 0; c < CB; ++c) {
          const reg wb = V::set1(uc[(c * K + ky) * N]);
#pragma GCC unroll 4
          for (int t = 0; t < NV; ++t)
            acc[c][t] = ky == 0 ? V::mul(xv[t], wb) : V::fmadd(xv[t], wb, acc[c][t]);
        }
        // One running pointer stepped behind an empty asm: GCC otherwise keeps the 30 (p, ky)
        // addresses in registers it does not have (spills, as in the tiles' output transform).
        vp += tw;
        asm("" : "+r"(vp));
      }
#pragma GCC unroll 8
      for (int c = 0; c < CB; ++c)
#pragma GCC unroll 4
        for (int t = 0; t < NV; ++t) V::storeu(m[p][c][t], acc[c][t]);
    }
    if (nco == CB && 2 * (q0 + NV * V::W) <= a.oh * a.ow) {
      outputs<NV, true>(y, &m[0][0][0][0], bias, relu, a, co0, nco, q0);
    } else {
      outputs<NV, false>(y, &m[0][0][0][0], bias, relu, a, co0, nco, q0);
    }
  }

  // 3. for the tile's m[N][CB][NV][W]. Whole: all CB channels real and every output inside the
  // plane (no checks: the branches were a third of this step's instructions).
  template <int NV, bool Whole>
  static inline __attribute__((always_inline)) void outputs(float* y, const float* m,
                                                           const float* bias, bool relu,
                                                           const Args& a, int64_t co0,
                                                           int64_t nco, int64_t q0) {
    const int64_t ohw = a.oh * a.ow;
    const reg two = V::set1(2.0f);
#pragma GCC unroll 8
    for (int c = 0; c < CB; ++c) {
      if (!Whole && c >= nco) break;
      const reg vb = V::set1(bias != nullptr ? bias[co0 + c] : 0.0f);
      float* yc = y + (co0 + c) * ohw + 2 * q0;
#pragma GCC unroll 4
      for (int t = 0; t < NV; ++t) {
        reg mp[N];
#pragma GCC unroll 8
        for (int p = 0; p < N; ++p) mp[p] = V::loadu(m + ((p * CB + c) * NV + t) * V::W);
        // A^T rows (1, 1, 1, 1, 1, 0) and (0, 1, -1, 2, -2, 1)
        reg y0 = V::add(V::add(V::add(mp[0], mp[1]), V::add(mp[2], mp[3])), V::add(mp[4], vb));
        reg y1 = V::add(V::fmadd(two, V::sub(mp[3], mp[4]), V::sub(mp[1], mp[2])),
                        V::add(mp[5], vb));
        if (relu) y0 = V::relu(y0), y1 = V::relu(y1);
        reg lo, hi;
        V::interleave(y0, y1, lo, hi);
        float* yo = yc + 2 * t * V::W;
        const int64_t left = ohw - 2 * (q0 + t * V::W);
        if (Whole || left >= 2 * V::W) {
          V::storeu(yo, lo);
          V::storeu(yo + V::W, hi);
        } else if (left > 0) {
          if (left >= V::W) {
            V::storeu(yo, lo);
            if (left > V::W) V::store_first(yo + V::W, hi, left - V::W);
          } else {
            V::store_first(yo, lo, left);
          }
        }
      }
    }
  }

  // u[(co*5 + ky)*6 + p] = (G g_ky)[p] of kernel row ky of channel co (zero for co >= cout, up to
  // a multiple of CB); work: winograd_one_plane_work_floats(a) floats; y: the (cout, oh, ow)
  // output.
  static void run(float* y, const float* xpad, const float* u, const float* bias, bool relu,
                  float* work, const Args& a) {
    input_transform(work, xpad, a);
    const int64_t ps = plane_floats(a);
    const int64_t nvec = (a.oh * tiles_per_row(a) + V::W - 1) / V::W;
    for (int64_t co0 = 0; co0 < a.cout; co0 += CB) {
      const int64_t nco = a.cout - co0 < CB ? a.cout - co0 : CB;
      int64_t q = 0;
      for (; q + NQ <= nvec; q += NQ) tile<NQ>(y, work, u, bias, relu, a, ps, co0, nco, q * V::W);
      if (q < nvec) tail<NQ - 1>(nvec - q, y, work, u, bias, relu, a, ps, co0, nco, q * V::W);
    }
  }

  template <int NV>
  static void tail(int64_t nv, float* y, const float* v, const float* u, const float* bias,
                   bool relu, const Args& a, int64_t ps, int64_t co0, int64_t nco, int64_t q0) {
    if constexpr (NV >= 1) {
      if (nv == NV) return tile<NV>(y, v, u, bias, relu, a, ps, co0, nco, q0);
      tail<NV - 1>(nv, y, v, u, bias, relu, a, ps, co0, nco, q0);
    }
  }
};
