// conv2d_winograd_rows.inl — the channel-lane forward (conv2d_fwd_cl.inl) with a 1-D Winograd
// F(m, r) down the columns (fastconv/winograd_rows.h), stride 1, dilation 1, r = 3 or 5, even oh:
// 5x5 in tiles of 4 rows (F(4, 5)) and a last F(2, 5) tile where oh % 4 = 2, 3x3 by F(2, 3). Include INSIDE the
// anonymous namespace of an ISA translation unit, after its SIMD interface and conv2d_fwd_cl.inl.
//
// Why: with few channels (lenet.conv2: 6 -> 16) the 2-D Winograd transforms cost as much as they
// save, while the direct channel-lane tile runs FMA-bound. Along one axis the transforms are
// whole-row vector combinations (no tile gather, no per-tile output transform): two output rows
// y0 .. y0 + m - 1 of a tile starting at output row y0 are
//     y[y0 + i][ox][co] = sum_pt AT[i][pt] * s[pt][ox][co],
//     s[pt][ox][co]     = sum_(ci, kx) v[ci][pt][ox + kx] * u[pt][ci][kx][co],
//     v[ci][pt][x]      = sum_j BT[pt][j] * xpad[ci][y0 + j][x],   u = G along ky,
// so n = m + r - 1 products per m output rows instead of m r (5x5: F(2, 5) 0.6x the FMAs,
// F(4, 5) 0.4x; lenet.conv2's 10 rows as 4 + 4 + 2: 0.44x). The point sums m
// are the channel-lane tile on v with one kernel row (its rows are the points, each with its own
// weights u[pt]), the same loads, broadcasts and column skipping as the direct forward.
// Rounding: one transform each way along one axis, about 2x the direct sum's error.

template <class V, class Cl, int R>
struct WinogradRowsF {
  using reg = typename V::reg;
  using Args = fastconv::cpu::ClConvArgs;
  static constexpr int MBig = R == 5 ? 4 : 2;  // rows per tile (the last tile of 5x5 may be 2)
  using Big = fastconv::cpu::WinogradRows<MBig, R>;
  using Two = fastconv::cpu::WinogradRows<2, R>;

  // sum_c coef[c] * d[c] for a compile-time coefficient row: zero terms vanish, +-1 add.
  template <int K>
  static inline __attribute__((always_inline)) reg combo(const double (&coef)[K],
                                                        const reg (&d)[K]) {
    reg acc = V::zero();
    bool first = true;
#pragma GCC unroll 8
    for (int c = 0; c < K; ++c) {
      const float k = float(coef[c]);
      if (k == 0.0f) continue;
      if (first) {
        acc = k == 1.0f ? d[c] : V::mul(V::set1(k), d[c]);
        first = false;
      } else if (k == 1.0f) {
        acc = V::add(acc, d[c]);
      } else if (k == -1.0f) {
        acc = V::sub(acc, d[c]);
      } else {
        acc = V::fmadd(V::set1(k), d[c], acc);
      }
    }
    return acc;
  }

  // Row pitch of v: the padded row rounded up to whole vectors (the tiles read columns < wp).
  static int64_t v_pitch(const Args& a) { return (a.wp + V::W - 1) / V::W * V::W; }

  // v[(ci*N + pt)*vp + x] for the tile at output row y0: N rows of each input plane combined by
  // BT, whole vectors, the row's last vector by a masked load (no read past the planes: the
  // input may be the caller's array, read in place).
  template <class Mx>
  static void transform_rows(float* v, const float* xpad, const Args& a, int64_t y0) {
    constexpr int N = Mx::n;
    const int64_t vp = v_pitch(a), full = a.wp / V::W * V::W;
    const auto m = V::tail(a.wp - full);
    for (int64_t ci = 0; ci < a.cin; ++ci) {
      const float* xr = xpad + ci * a.plane + y0 * a.wp;
      float* vr = v + ci * N * vp;
      for (int64_t x = 0; x < full; x += V::W) {
        reg d[N];
#pragma GCC unroll 8
        for (int j = 0; j < N; ++j) d[j] = V::loadu(xr + j * a.wp + x);
#pragma GCC unroll 8
        for (int pt = 0; pt < N; ++pt) V::storeu(vr + pt * vp + x, combo(Mx::BT[pt], d));
      }
      if (full < a.wp) {
        reg d[N];
#pragma GCC unroll 8
        for (int j = 0; j < N; ++j) d[j] = V::load_tail(xr + j * a.wp + full, m);
#pragma GCC unroll 8
        for (int pt = 0; pt < N; ++pt) V::storeu(vr + pt * vp + full, combo(Mx::BT[pt], d));
      }
    }
  }

  // Output rows y0 .. y0 + m - 1 of ycl from the point sums s[(pt*ow + ox)*coutp + co].
  template <class Mx>
  static void transform_out(float* ycl, const float* s, const Args& a, int64_t y0) {
    const int64_t ps = a.ow * a.coutp;
    float* y = ycl + y0 * ps;
    for (int64_t i = 0; i < ps; i += V::W) {
      reg d[Mx::n];
#pragma GCC unroll 8
      for (int pt = 0; pt < Mx::n; ++pt) d[pt] = V::loadu(s + pt * ps + i);
#pragma GCC unroll 4
      for (int r = 0; r < Mx::m; ++r) V::storeu(y + r * ps + i, combo(Mx::AT[r], d));
    }
  }

  // Row oy of the tile geometry t, channels [co0, co0 + COV*W), all input channels; wcl is the
  // point's weights (the tile adds (ky*cin + ci)*kw*coutp with ky = 0).
  template <int COV>
  static void row(float* s, const float* v, const float* wcl, const Args& t, int64_t oy,
                  int64_t co0) {
    constexpr int NPM = Cl::np_max(COV);
    const int64_t tiles = (t.ow + NPM - 1) / NPM, np = (t.ow + tiles - 1) / tiles;
    for (int64_t ox0 = 0; ox0 < t.ow; ox0 += np) {
      const int64_t n = t.ow - ox0 < np ? t.ow - ox0 : np;
      Cl::template tile_n<COV, NPM>(n, s, v, wcl, t, oy, ox0, co0, 0, t.cin);
    }
  }

  // One tile of Mx::m output rows at y0; u: its N points' weights.
  template <class Mx>
  static void tile_rows(float* ycl, const float* xpad, const float* u, float* v, float* s,
                        const Args& a, int64_t y0) {
    constexpr int N = Mx::n;
    transform_rows<Mx>(v, xpad, a, y0);
    // The point sums as the channel-lane tile sees them: N "rows" (the points) of one kernel
    // row, input rows at pitch vp, channel planes N rows apart; the columns as in xpad.
    Args t = a;
    t.kh = 1;
    t.top = 0;
    t.h = N;
    t.wp = v_pitch(a);
    t.plane = N * t.wp;
    t.oh = N;
    const int64_t nvec = a.coutp / V::W, cm = Cl::pick_cov(a);
    const int64_t chunks = (nvec + cm - 1) / cm, per = (nvec + chunks - 1) / chunks;
    const int64_t wstep = a.cin * a.kw * a.coutp;  // from one point's weights to the next
    for (int64_t v0 = 0; v0 < nvec; v0 += per) {
      const int64_t cov = nvec - v0 < per ? nvec - v0 : per;
      for (int pt = 0; pt < N; ++pt) {
        const float* up = u + pt * wstep;  // the point's weights: the tile's ky = 0 row
        switch (cov) {
          case 1: row<1>(s, v, up, t, pt, v0 * V::W); break;
          case 2: row<2>(s, v, up, t, pt, v0 * V::W); break;
          case 3: row<3>(s, v, up, t, pt, v0 * V::W); break;
          default: row<4>(s, v, up, t, pt, v0 * V::W); break;
        }
      }
    }
    transform_out<Mx>(ycl, s, a, y0);
  }

  // One image: u[((pt*cin + ci)*kw + kx)*coutp + co] the weights transformed along ky (zero past
  // the real channels), Big's n points, then (5x5) F(2, 5)'s r + 1; work: cin*8*vp + 8*ow*coutp
  // floats (winograd_rows_work_floats). Writes ycl like the direct channel-lane forward.
  static void run(float* ycl, const float* xpad, const float* u, float* work, const Args& a) {
    float* v = work;
    float* s = v + a.cin * Big::n * v_pitch(a);
    const float* u2 = MBig == 2 ? u : u + Big::n * a.cin * a.kw * a.coutp;
    int64_t y0 = 0;
    for (; y0 + MBig <= a.oh; y0 += MBig) tile_rows<Big>(ycl, xpad, u, v, s, a, y0);
    if constexpr (MBig != 2) {
      if (y0 < a.oh) tile_rows<Two>(ycl, xpad, u2, v, s, a, y0);
    }
  }
};
