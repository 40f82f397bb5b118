// conv2d_winograd_tiles.inl — Winograd F(2x2, 3x3) / F(2x2, 5x5) of ONE image with the TILES in
// the lanes from input to output, for layers with few channels (cnn1.conv2: 20), stride 1,
// dilation 1, even output size. Include INSIDE the anonymous namespace of an ISA's translation
// unit, after conv2d_winograd.inl (it reuses its transforms: transform_patches, combo).
//
// Why a second layout: conv2d_winograd.inl puts the output channels in the lanes of its point
// GEMMs, so 20 channels use 20 of 32 lanes there, and its channels-last result needs an unpack.
// Here a lane is a 2x2 output tile throughout (in V::deinterleave_tiles' order: in-lane shuffles
// only, put back in order by V::interleave_tiles at the output): a "unit" is W tiles (one
// vector), either W consecutive tiles of one tile row, or, for rows of <= W/2 tiles, two tile
// rows of W/2 (the even/odd split of two input rows 2 apart is the same shuffle as that of 2W
// consecutive floats).
// Per block of <= MaxUnits units (4 on AVX-512; 3 on AVX2, whose 16 registers hold 6 x 2 or
// 4 x 3 accumulators):
//   1. input transform as in conv2d_winograd.inl, stored whole: v[(pt*cin + ci)*nl + lane];
//   2. per point, m[pt][co][lane] = sum_ci u[pt][ci][co] * v[pt][ci][lane]: a tile of CO channels
//      x TV unit vectors (TV <= MaxUnits), per ci TV loads + CO weight broadcasts for CO*TV FMAs;
//   3. output transform per unit and channel, + bias, ReLU, and the 2x2 outputs interleaved back
//      into rows (one permute per W outputs), stored straight into the NCHW image.
// Lanes past the real tiles compute junk from readable zero slack/neighbour rows; never stored.
//
// MY = 4 (5x5 only, `winograd_tiles_4x2`): tiles of 4 output rows x 2 columns, F(4, 5) down the
// columns (fastconv/winograd_rows.h) and F(2, 5) along the rows: 8 x 6 = 48 points per 8 outputs
// instead of 36 per 4, 0.67x the point GEMM's FMAs per output (cnn1.conv2's 14 rows as 4 tile
// rows of 4, the last 2 rows junk: AVX2 4 units of 48 points against 7 of 36, 0.76x; AVX-512, two
// tile rows to a vector, 2 against 4, 0.67x). The patch is 8 input rows, the
// last tile row's reaching up to 6 rows past the layer's padded plane: the driver borders the
// planes with winograd_tiles_rows(a) rows of zeros (a.plane). Rounding: F(4, 5)'s B^T (5.25s)
// and A^T (8s) along one axis; ~1.1-1.4x F(2x2, 5x5)'s error in a float32 simulation of
// cnn1.conv2 (PERF_LOG round 23).

// CoWide > 0: the channel block of the point tiles of 3+ units (AVX2: 4 channels x 3 units = 12
// accumulators + 3 unit vectors + a broadcast in 16 registers), a.cb otherwise.
template <class V, int R, int MaxUnits = 4, int CoWide = 0, int MY = 2>
struct WinogradTilesF2 {
  using reg = typename V::reg;
  using Args = fastconv::cpu::WinogradTilesArgs;
  using Cl = WinogradF2<V, R>;
  using My = fastconv::cpu::WinogradRows<MY, R>;  // down the columns (MY 2: Winograd<R>'s)
  static constexpr int N = Cl::N;                  // points along a row
  static constexpr int NY = My::n;                 // points down a column
  static constexpr int NP = NY * N;

  // Units: two tile rows of W/2 when a row has <= W/2 tiles, otherwise W tiles of one row.
  static bool paired(const Args& a) { return a.ow / 2 <= V::W / 2; }
  static int64_t tile_rows(const Args& a) { return (a.oh + MY - 1) / MY; }
  static int64_t units(const Args& a) {
    const int64_t th = tile_rows(a), tw = a.ow / 2;
    return paired(a) ? (th + 1) / 2 : th * ((tw + V::W - 1) / V::W);
  }
  // Unit u's first tile: row ty, column tx0 (the second half's patches start 2 input rows down
  // when paired, else W floats right: tiles tx0 + W/2 ..).
  static void unit_origin(const Args& a, int64_t u, int64_t& ty, int64_t& tx0) {
    if (paired(a)) {
      ty = 2 * u, tx0 = 0;
    } else {
      const int64_t per_row = (a.ow / 2 + V::W - 1) / V::W;
      ty = u / per_row, tx0 = (u % per_row) * V::W;
    }
  }

  // o = B^T d for F(4, 5)'s 8 points, factored by hand (26 operations instead of 44): rows
  // 1/2, 3/4 and 5/6 are the sum and difference of their even and odd taps' parts.
  static inline __attribute__((always_inline)) void bt_tall(const reg (&d)[NY], reg (&o)[NY]) {
    if constexpr (MY == 4 && R == 5) {
      const reg c525 = V::set1(5.25f), m425 = V::set1(-4.25f), m125 = V::set1(-1.25f);
      const reg m25 = V::set1(-2.5f), q = V::set1(0.25f), h = V::set1(0.5f), two = V::set1(2.0f);
      const reg four = V::set1(4.0f), m5 = V::set1(-5.0f);
      o[0] = V::fmadd(c525, V::sub(d[2], d[4]), V::sub(d[6], d[0]));
      o[7] = V::fmadd(c525, V::sub(d[3], d[5]), V::sub(d[7], d[1]));
      const reg e1 = V::fmadd(m425, d[4], V::add(d[2], d[6]));
      const reg o1 = V::fmadd(m425, d[3], V::add(d[1], d[5]));
      o[1] = V::add(e1, o1);
      o[2] = V::sub(e1, o1);
      const reg e3 = V::fmadd(q, d[2], V::fmadd(m125, d[4], d[6]));
      const reg o3 = V::fmadd(h, d[1], V::fmadd(m25, d[3], V::mul(two, d[5])));
      o[3] = V::add(e3, o3);
      o[4] = V::sub(e3, o3);
      const reg e5 = V::fmadd(four, d[2], V::fmadd(m5, d[4], d[6]));
      const reg o5 = V::fmadd(two, d[1], V::fmadd(m25, d[3], V::mul(h, d[5])));
      o[5] = V::add(e5, o5);
      o[6] = V::sub(e5, o5);
    } else {
      Cl::bt(d, o);
    }
  }

  // o = A^T f down a column: F(4, 5)'s factored by hand (16 operations instead of 25: the
  // pairs of points +-1, +-2, +-1/2 as sums and differences), F(2, r)'s by combo.
  static inline __attribute__((always_inline)) void at_tall(const reg (&f)[NY], reg (&o)[MY]) {
    if constexpr (MY == 4 && R == 5) {
      const reg a1 = V::add(f[1], f[2]), b1 = V::sub(f[1], f[2]);
      const reg a2 = V::add(f[3], f[4]), b2 = V::sub(f[3], f[4]);
      const reg a3 = V::add(f[5], f[6]), b3 = V::sub(f[5], f[6]);
      o[0] = V::add(V::add(f[0], a1), V::add(a2, a3));
      o[1] = V::fmadd(V::set1(2.0f), b2, V::fmadd(V::set1(0.5f), b3, b1));
      o[2] = V::fmadd(V::set1(4.0f), a2, V::fmadd(V::set1(0.25f), a3, a1));
      o[3] = V::add(V::fmadd(V::set1(8.0f), b2, V::fmadd(V::set1(0.125f), b3, b1)), f[7]);
    } else {
#pragma GCC unroll 4
      for (int i = 0; i < MY; ++i) o[i] = Cl::combo(My::AT[i], f);
    }
  }

  // transform_patches (tiles order) for a patch of NY rows x N columns: each row times B along
  // the row (F(2, r)), then each column by My's B^T; point (i, j) at pt = N*i + j.
  template <class Store>
  static inline __attribute__((always_inline)) void transform_patches_tall(const float* xr,
                                                                           int64_t second,
                                                                           int64_t wp,
                                                                           Store&& store) {
    reg e[NY][N];
#pragma GCC unroll 8
    for (int r = 0; r < NY; ++r, xr += wp) {
      reg d[N];
#pragma GCC unroll 4
      for (int k = 0; k < N / 2; ++k)
        V::deinterleave_tiles(V::loadu(xr + 2 * k), V::loadu(xr + 2 * k + second), d[2 * k],
                              d[2 * k + 1]);
      Cl::bt(d, e[r]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < N; ++j) {
      reg col[NY];
#pragma GCC unroll 8
      for (int r = 0; r < NY; ++r) col[r] = e[r][j];
      reg o[NY];
      bt_tall(col, o);
#pragma GCC unroll 8
      for (int i = 0; i < NY; ++i) store(N * i + j, o[i]);
    }
  }

  // Two vertically adjacent units (MY = 4, tile rows ty and ty + 1 of the same columns): their
  // patches share 4 input rows, whose row pass runs once (12 row passes instead of 16).
  static void input_transform_pair(float* v, const float* xpad, const Args& a, int64_t ci,
                                   int64_t u, int64_t nl, int64_t slot) {
    int64_t ty, tx0;
    unit_origin(a, u, ty, tx0);
    const float* xr = xpad + ci * a.plane + MY * ty * a.wp + 2 * tx0;
    float* out = v + ci * nl + slot;
    const int64_t pstride = a.cin * nl;
    reg e[NY + MY][N];
#pragma GCC unroll 12
    for (int r = 0; r < NY + MY; ++r, xr += a.wp) {
      reg d[N];
#pragma GCC unroll 4
      for (int k = 0; k < N / 2; ++k)
        V::deinterleave_tiles(V::loadu(xr + 2 * k), V::loadu(xr + 2 * k + V::W), d[2 * k],
                              d[2 * k + 1]);
      Cl::bt(d, e[r]);
    }
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h)
#pragma GCC unroll 8
      for (int j = 0; j < N; ++j) {
        reg col[NY];
#pragma GCC unroll 8
        for (int r = 0; r < NY; ++r) col[r] = e[h * MY + r][j];
        reg o[NY];
        bt_tall(col, o);
#pragma GCC unroll 8
        for (int i = 0; i < NY; ++i) V::storeu(out + (N * i + j) * pstride + h * V::W, o[i]);
      }
  }

  static void input_transform(float* v, const float* xpad, const Args& a, int64_t ci, int64_t u,
                              int64_t nl, int64_t slot) {
    int64_t ty, tx0;
    unit_origin(a, u, ty, tx0);
    const float* xr = xpad + ci * a.plane + MY * ty * a.wp + 2 * tx0;
    float* out = v + ci * nl + slot;
    const int64_t pstride = a.cin * nl;
    const int64_t second = paired(a) ? MY * a.wp : V::W;
    const auto put = [&](int pt, reg x) { V::storeu(out + pt * pstride, x); };
    if constexpr (MY == 2) {
      Cl::template transform_patches<false>(xr, second, a.wp, put);
    } else {
      transform_patches_tall(xr, second, a.wp, put);
    }
  }

  // m[(pt*cout + co)*nl + lane] for channels co0 .. co0+nco-1 (nco <= CO) and TV unit vectors.
  template <int CO, int TV>
  static void point_tile(float* mp, const float* vp, const float* up, const Args& a, int64_t nl,
                         int64_t co0, int64_t nco) {
    reg acc[CO][TV];
#pragma GCC unroll 8
    for (int c = 0; c < CO; ++c)
#pragma GCC unroll 4
      for (int t = 0; t < TV; ++t) acc[c][t] = V::zero();
    const float* vc = vp;
    const float* uc = up + co0;
    for (int64_t ci = 0; ci < a.cin; ++ci, vc += nl, uc += a.coutp) {
      reg xv[TV];
#pragma GCC unroll 4
      for (int t = 0; t < TV; ++t) {
        xv[t] = V::loadu(vc + t * V::W);
        asm("" : "+v"(xv[t]));  // keep in registers (see conv2d_fwd_cl.inl)
      }
#pragma GCC unroll 8
      for (int c = 0; c < CO; ++c) {
        const reg wb = V::set1(uc[c]);
#pragma GCC unroll 4
        for (int t = 0; t < TV; ++t) acc[c][t] = V::fmadd(xv[t], wb, acc[c][t]);
      }
    }
#pragma GCC unroll 8
    for (int c = 0; c < CO; ++c) {
      if (c >= nco) break;
#pragma GCC unroll 4
      for (int t = 0; t < TV; ++t) V::storeu(mp + (co0 + c) * nl + t * V::W, acc[c][t]);
    }
  }

  template <int CO, int TV>
  static void points(float* m, const float* v, const float* u, const Args& a, int64_t nl) {
    for (int64_t pt = 0; pt < NP; ++pt) {
      const float* vp = v + pt * a.cin * nl;
      const float* up = u + pt * a.cin * a.coutp;
      float* mp = m + pt * a.cout * nl;
      for (int64_t co0 = 0; co0 < a.cout; co0 += CO)
        point_tile<CO, TV>(mp, vp, up, a, nl, co0, a.cout - co0 < CO ? a.cout - co0 : CO);
    }
  }

  // points<CO, TV> for TV = tv (1 <= tv <= MaxUnits).
  template <int CO, int TV = MaxUnits>
  static void points_tv(int64_t tv, float* m, const float* v, const float* u, const Args& a,
                        int64_t nl) {
    if constexpr (TV > 1) {
      if (tv < TV) return points_tv<CO, TV - 1>(tv, m, v, u, a, nl);
    }
    points<CO, TV>(m, v, u, a, nl);
  }

  // The first n lanes of v to p (all W when n >= W). store_first, not a masked store: AVX2's
  // vmaskmovps stores are microcoded on AMD cores (cnn1.conv2 stores a 6-lane tail per output
  // row and channel: with them the output transform took 22% of the forward's samples).
  static void store_n(float* p, reg v, int64_t n) {
    if (n >= V::W) {
      V::storeu(p, v);
    } else {
      V::store_first(p, v, n);
    }
  }

  // Rows of 2 outputs per lane back to image rows: the unit's first W/2 tiles' (y0, y1)
  // interleaved are W consecutive outputs of its first half, the other tiles' of the second. The
  // lanes hold the tiles in V::deinterleave_tiles' order (the input transform's), which
  // interleave_tiles undoes without a lane-crossing permute (AVX2: 2 of the 4 shuffles).
  // Output rows past oh (the last MY = 4 tile row's junk rows) are not stored.
  static void store_unit_rows(float* y, const Args& a, int64_t ty, int64_t tx0, int io, reg y0,
                              reg y1) {
    const int64_t oy = MY * ty + io;
    if (oy >= a.oh) return;
    reg first, second;
    V::interleave_tiles(y0, y1, first, second);
    if (paired(a)) {  // ow <= W
      store_n(y + oy * a.ow, first, a.ow);
      if (oy + MY < a.oh) store_n(y + (oy + MY) * a.ow, second, a.ow);
    } else {
      float* row = y + oy * a.ow + 2 * tx0;
      const int64_t left = a.ow - 2 * tx0;  // outputs of this row from the unit's first column on
      if (left > V::W) {
        V::storeu(row, first);
        store_n(row + V::W, second, left - V::W);
      } else {
        store_n(row, first, left);
      }
    }
  }

  static void output_transform(float* y, const float* m, const Args& a, int64_t nl, int64_t slot,
                               int64_t u, const float* bias, bool relu) {
    int64_t ty, tx0;
    unit_origin(a, u, ty, tx0);
    const int64_t ps = a.cout * nl, ohw = a.oh * a.ow;
    for (int64_t co = 0; co < a.cout; ++co) {
      const float* mt = m + co * nl + slot;
      reg f[2][NY];
#pragma GCC unroll 8
      for (int i = 0; i < NY; ++i) {
        reg row[N];
#pragma GCC unroll 8
        for (int j = 0; j < N; ++j) {
          // One running pointer, stepped by an add per point behind an empty asm: otherwise GCC
          // hoists the NP point addresses out of the channel loop, spills them and reloads one
          // before each load (perf: a quarter of the AVX2 output transform's samples on them).
          row[j] = V::loadu(mt);
          mt += ps;
          asm("" : "+r"(mt));
        }
        f[0][i] = Cl::combo(Cl::M::AT[0], row);
        f[1][i] = Cl::combo(Cl::M::AT[1], row);
      }
      const reg vb = V::set1(bias != nullptr ? bias[co] : 0.0f);
      reg col[2][MY];  // A^T down each of the tile's 2 columns
#pragma GCC unroll 2
      for (int jo = 0; jo < 2; ++jo) at_tall(f[jo], col[jo]);
#pragma GCC unroll 4
      for (int io = 0; io < MY; ++io) {
        reg out[2];
#pragma GCC unroll 2
        for (int jo = 0; jo < 2; ++jo) {
          out[jo] = V::add(col[jo][io], vb);
          if (relu) out[jo] = V::relu(out[jo]);
        }
        store_unit_rows(y + co * ohw, a, ty, tx0, io, out[0], out[1]);
      }
    }
  }

  // u[(pt*cin + ci)*coutp + co] (coutp >= cout + 6: broadcasts past cout read zeros); work:
  // winograd_tiles_work_floats(a) floats. y: the image's (cout, oh, ow) output.
  static void run(float* y, const float* xpad, const float* u, const float* bias, bool relu,
                  float* work, const Args& a) {
    // Blocks of units whose sizes differ by at most one (AVX2, 7 units: 3 + 2 + 2, not
    // 3 + 3 + 1, whose 1-unit tile loads once per CO FMAs).
    const int64_t nu = units(a), nblocks = (nu + MaxUnits - 1) / MaxUnits;
    for (int64_t b = 0, u0 = 0; b < nblocks; ++b) {
      const int64_t tv = nu / nblocks + (b < nu % nblocks ? 1 : 0), nl = tv * V::W;
      float* v = work;
      float* m = work + NP * a.cin * nl;
      // MY = 4 with one unit per tile row: units k, k + 1 are tile rows ty, ty + 1.
      const bool pairs = MY == 4 && !paired(a) && a.ow / 2 <= V::W;
      for (int64_t ci = 0; ci < a.cin; ++ci)
        for (int64_t k = 0; k < tv; ++k) {
          if (pairs && k + 1 < tv) {
            input_transform_pair(v, xpad, a, ci, u0 + k, nl, k * V::W);
            ++k;
          } else {
            input_transform(v, xpad, a, ci, u0 + k, nl, k * V::W);
          }
        }
      if (CoWide > 0 && tv >= 3) {
        points_tv<(CoWide > 0 ? CoWide : 4)>(tv, m, v, u, a, nl);
      } else {
        switch (a.cb) {
          case 4: points_tv<4>(tv, m, v, u, a, nl); break;
          case 5: points_tv<5>(tv, m, v, u, a, nl); break;
          default: points_tv<6>(tv, m, v, u, a, nl); break;
        }
      }
      for (int64_t k = 0; k < tv; ++k) output_transform(y, m, a, nl, k * V::W, u0 + k, bias, relu);
      u0 += tv;
    }
  }
};
