// conv2d_bwd_data_dylanes.inl — bwd_data of a stride-1, dilation-1 conv with dy's channels (the
// reduction) in the lanes. AVX-512 only: include INSIDE the anonymous namespace of the AVX-512
// translation unit, after its SIMD interface.
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

template <class V>
struct BwdDataDyLanes {
  using reg = typename V::reg;

  // Lane sums of a0..a3 into lanes 0..3 (in order), a fixed tree (V::sum_lanes4).
  static inline __attribute__((always_inline)) reg sum4(reg a0, reg a1, reg a2, reg a3) {
    return V::sum_lanes4(a0, a1, a2, a3);
  }

  // P pixels (x0 ..) of dx row y by CI channels (ci0 ..).
  // NV > 0: C_out rounded up is NV vectors (compile time), 0: a.coutp / 16 (run time).
  template <int P, int CI, int NV>
  static void tile(float* dx, const float* dyp, const float* wf,
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
            const reg wv = V::loadu(w0 + c * a.coutp + v * V::W);
#pragma GCC unroll 4
            for (int p = 0; p < P; ++p) acc[p][c] = V::fmadd(d[p], wv, acc[p][c]);
          }
        }
      }
    }
    const int64_t plane = a.h * a.w;
    float* out = dx + ci0 * plane + y * a.w + x0;
#pragma GCC unroll 6
    for (int c = 0; c < CI; ++c) {
      const reg s = sum4(acc[0][c], P > 1 ? acc[P > 1 ? 1 : 0][c] : V::zero(),
                         P > 2 ? acc[P > 2 ? 2 : 0][c] : V::zero(),
                         P > 3 ? acc[P > 3 ? 3 : 0][c] : V::zero());
      V::store_tail(out + c * plane, s, V::tail(P));
    }
  }

  template <int CI, int NV>
  static void row(float* dx, const float* dyp, const float* wf, const fastconv::cpu::DyLanesArgs& a,
                  int64_t y, int64_t ci0) {
    int64_t x0 = 0;
    for (; x0 + 4 <= a.w; x0 += 4) tile<4, CI, NV>(dx, dyp, wf, a, y, x0, ci0);
    switch (a.w - x0) {
      case 3: tile<3, CI, NV>(dx, dyp, wf, a, y, x0, ci0); break;
      case 2: tile<2, CI, NV>(dx, dyp, wf, a, y, x0, ci0); break;
      case 1: tile<1, CI, NV>(dx, dyp, wf, a, y, x0, ci0); break;
      default: break;
    }
  }

  template <int CI>
  static void row_nv(float* dx, const float* dyp, const float* wf,
                     const fastconv::cpu::DyLanesArgs& a, int64_t y, int64_t ci0) {
    if (a.coutp == V::W) {
      row<CI, 1>(dx, dyp, wf, a, y, ci0);  // C_out <= 16 (lenet.conv2): no channel-vector loop
    } else {
      row<CI, 0>(dx, dyp, wf, a, y, ci0);
    }
  }

  // One image: every dx row by blocks of up to 6 channels (P*CI = 24 sums, 4 dy vectors and one
  // weight vector: 29 registers).
  static void run(float* dx, const float* dyp, const float* wf, const fastconv::cpu::DyLanesArgs& a) {
    for (int64_t ci0 = 0; ci0 < a.cin; ci0 += 6) {
      const int64_t ci = a.cin - ci0 < 6 ? a.cin - ci0 : 6;
      for (int64_t y = 0; y < a.h; ++y) {
        switch (ci) {
          case 6: row_nv<6>(dx, dyp, wf, a, y, ci0); break;
          case 5: row_nv<5>(dx, dyp, wf, a, y, ci0); break;
          case 4: row_nv<4>(dx, dyp, wf, a, y, ci0); break;
          case 3: row_nv<3>(dx, dyp, wf, a, y, ci0); break;
          case 2: row_nv<2>(dx, dyp, wf, a, y, ci0); break;
          default: row_nv<1>(dx, dyp, wf, a, y, ci0); break;
        }
      }
    }
  }
};
