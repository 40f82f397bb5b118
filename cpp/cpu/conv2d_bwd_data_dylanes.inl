// conv2d_bwd_data_dylanes.inl — bwd_data of a stride-1, dilation-1 conv with dy's channels (the
// reduction) in the lanes. Include INSIDE the anonymous namespace of an ISA translation unit, after
// its SIMD interface.
//
// Why: a valid conv's bwd_data done as a forward over dy padded by k-1 multiplies the wide zero
// border too (lenet.conv2: 14x14 from 10x10 with 5x5 taps, 1.96x the useful products), and with
// few dx channels (6) neither the dx-channel-lane kernels nor Winograd fill the lanes. Here
//     dx[ci][y][x] = sum over (ky, kx) of sum over co of wf[ky][kx][ci][co] * dyp[y + ky - top][x + kx][co]
// with co in the lanes (C_out = 16: one full vector), wf the flipped weights and dyp dy
// channels-last with kw-1-pad zero columns on each side. Rows are exact: taps whose dy row lies
// outside dy are never run. Columns: a tile of P neighbouring pixels runs the union of their taps,
// the border zeros filling in (lenet.conv2: 1.2x the useful products instead of 1.96x). Each
// (pixel, ci) ends as a vector of per-lane partial sums, added across the lanes in a fixed tree.

// Tiles: up to PMax pixels x CIMax dx channels (PMax*CIMax sums + PMax dy vectors + a weight
// vector: 4 x 6 on AVX-512's 32 registers, 2 x 6 on AVX2's 16).
template <class V, int PMax = 4, int CIMax = 6>
struct BwdDataDyLanes {
  using reg = typename V::reg;

  // Lane sums of a0..a3 into lanes 0..3 (in order), a fixed tree (V::sum_lanes4).
  static inline __attribute__((always_inline)) reg sum4(reg a0, reg a1, reg a2, reg a3) {
    return V::sum_lanes4(a0, a1, a2, a3);
  }

  // P pixels (x0 ..) of dx row y by CI channels (ci0 ..).
  // NV > 0: C_out rounded up is NV vectors (compile time), 0: a.coutp / W (run time).
  template <int P, int CI, int NV>
  static inline __attribute__((always_inline)) void tile(float* dx, const float* dyp, const float* wf,
                   const fastconv::cpu::DyLanesArgs& a, int64_t y, int64_t x0, int64_t ci0) {
    const int64_t ky0 = a.top - y > 0 ? a.top - y : 0;
    const int64_t ky1 = a.top + a.oh - y < a.kh ? a.top + a.oh - y : a.kh;
    const int64_t kx0 = a.left - (x0 + P - 1) > 0 ? a.left - (x0 + P - 1) : 0;
    const int64_t kx1 = a.left + a.ow - x0 < a.kw ? a.left + a.ow - x0 : a.kw;
    const int64_t nv = NV > 0 ? NV : a.coutp / V::W;
    reg acc[P][CI];
#pragma GCC unroll 4
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 6
      for (int c = 0; c < CI; ++c) acc[p][c] = V::zero();
    for (int64_t ky = ky0; ky < ky1; ++ky) {
      const float* row = dyp + (y + ky - a.top) * a.wq * a.coutp;
      for (int64_t kx = kx0; kx < kx1; ++kx) {
        const float* d0 = row + (x0 + kx) * a.coutp;
        const float* w0 = wf + ((ky * a.kw + kx) * a.cin + ci0) * a.coutp;
        for (int64_t v = 0; v < nv; ++v) {
          reg d[P];
#pragma GCC unroll 4
          for (int p = 0; p < P; ++p) {
            d[p] = V::loadu(d0 + p * a.coutp + v * V::W);
            asm("" : "+v"(d[p]));  // one load per pixel, not one per FMA (see conv2d_bww_cl.inl)
          }
#pragma GCC unroll 6
          for (int c = 0; c < CI; ++c) {
            reg wv = V::loadu(w0 + c * a.coutp + v * V::W);
            // Pinned too: GCC otherwise folds the weight load into each pixel's FMA, P loads
            // per weight vector (AVX2 2 x 6: 28 loads per 24 FMAs, load-bound).
            asm("" : "+v"(wv));
#pragma GCC unroll 4
            for (int p = 0; p < P; ++p) acc[p][c] = V::fmadd(d[p], wv, acc[p][c]);
          }
        }
      }
    }
    const int64_t plane = a.h * a.w;
    float* out = dx + ci0 * plane + y * a.w + x0;
    if constexpr (P == 2) {
      // Two channels' 2 pixels per lane sum: half the reductions, two 64-bit stores.
#pragma GCC unroll 3
      for (int c = 0; c + 1 < CI; c += 2)
        V::store_pairs(out + c * plane, out + (c + 1) * plane,
                       sum4(acc[0][c], acc[P - 1][c], acc[0][c + 1], acc[P - 1][c + 1]));
      if constexpr (CI % 2 == 1) {
        const reg s = sum4(acc[0][CI - 1], acc[P - 1][CI - 1], V::zero(), V::zero());
        V::store_tail(out + (CI - 1) * plane, s, V::tail(2));
      }
    } else {
#pragma GCC unroll 6
      for (int c = 0; c < CI; ++c) {
        const reg s = sum4(acc[0][c], P > 1 ? acc[P > 1 ? 1 : 0][c] : V::zero(),
                           P > 2 ? acc[P > 2 ? 2 : 0][c] : V::zero(),
                           P > 3 ? acc[P > 3 ? 3 : 0][c] : V::zero());
        V::store_tail(out + c * plane, s, V::tail(P));
      }
    }
  }

  // tile<n, CI, NV> for the row's last n < PMax pixels (none for n = 0).
  template <int P, int CI, int NV>
  static void last_tile(int64_t n, float* dx, const float* dyp, const float* wf,
                        const fastconv::cpu::DyLanesArgs& a, int64_t y, int64_t x0, int64_t ci0) {
    if constexpr (P >= 1) {
      if (n == P) return tile<P, CI, NV>(dx, dyp, wf, a, y, x0, ci0);
      last_tile<P - 1, CI, NV>(n, dx, dyp, wf, a, y, x0, ci0);
    }
  }

  template <int CI, int NV>
  static void row(float* dx, const float* dyp, const float* wf, const fastconv::cpu::DyLanesArgs& a,
                  int64_t y, int64_t ci0) {
    int64_t x0 = 0;
    for (; x0 + PMax <= a.w; x0 += PMax) tile<PMax, CI, NV>(dx, dyp, wf, a, y, x0, ci0);
    last_tile<PMax - 1, CI, NV>(a.w - x0, dx, dyp, wf, a, y, x0, ci0);
  }

  template <int CI>
  static void row_nv(float* dx, const float* dyp, const float* wf,
                     const fastconv::cpu::DyLanesArgs& a, int64_t y, int64_t ci0) {
    if (a.coutp == V::W) {
      row<CI, 1>(dx, dyp, wf, a, y, ci0);  // C_out <= W (lenet.conv2 on AVX-512): no vector loop
    } else if (a.coutp == 2 * V::W) {
      row<CI, 2>(dx, dyp, wf, a, y, ci0);  // (lenet.conv2 on AVX2)
    } else {
      row<CI, 0>(dx, dyp, wf, a, y, ci0);
    }
  }

  // row_nv<ci> for 1 <= ci <= CI.
  template <int CI = CIMax>
  static void row_ci(int64_t ci, float* dx, const float* dyp, const float* wf,
                     const fastconv::cpu::DyLanesArgs& a, int64_t y, int64_t ci0) {
    if constexpr (CI > 1) {
      if (ci < CI) return row_ci<CI - 1>(ci, dx, dyp, wf, a, y, ci0);
    }
    row_nv<CI>(dx, dyp, wf, a, y, ci0);
  }

  // One image: every dx row by blocks of up to CIMax channels.
  static void run(float* dx, const float* dyp, const float* wf, const fastconv::cpu::DyLanesArgs& a) {
    for (int64_t ci0 = 0; ci0 < a.cin; ci0 += CIMax) {
      const int64_t ci = a.cin - ci0 < CIMax ? a.cin - ci0 : CIMax;
      for (int64_t y = 0; y < a.h; ++y) row_ci(ci, dx, dyp, wf, a, y, ci0);
    }
  }
};
