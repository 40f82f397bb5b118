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

// CoWide > 0: the channel block of the point tiles of 3+ units (AVX2: 4 channels x 3 units = 12
// accumulators + 3 unit vectors + a broadcast in 16 registers), a.cb otherwise.
template <class V, int R, int MaxUnits = 4, int CoWide = 0>
struct WinogradTilesF2 {
  using reg = typename V::reg;
  using Args = fastconv::cpu::WinogradTilesArgs;
  using Cl = WinogradF2<V, R>;
  static constexpr int N = Cl::N, NP = Cl::NP;

  // Units: two tile rows of W/2 when a row has <= W/2 tiles, otherwise W tiles of one row.
  static bool paired(const Args& a) { return a.ow / 2 <= V::W / 2; }
  static int64_t units(const Args& a) {
    const int64_t th = a.oh / 2, tw = a.ow / 2;
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

  static void input_transform(float* v, const float* xpad, const Args& a, int64_t ci, int64_t u,
                              int64_t nl, int64_t slot) {
    int64_t ty, tx0;
    unit_origin(a, u, ty, tx0);
    const float* xr = xpad + ci * a.plane + 2 * ty * a.wp + 2 * tx0;
    float* out = v + ci * nl + slot;
    const int64_t pstride = a.cin * nl;
    Cl::template transform_patches<false>(xr, paired(a) ? 2 * a.wp : V::W, a.wp,
                          [&](int pt, reg x) { V::storeu(out + pt * pstride, x); });
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
  static void store_unit_rows(float* y, const Args& a, int64_t ty, int64_t tx0, int io, reg y0,
                              reg y1) {
    reg first, second;
    V::interleave_tiles(y0, y1, first, second);
    if (paired(a)) {  // ow <= W
      store_n(y + (2 * ty + io) * a.ow, first, a.ow);
      if (2 * ty + 2 < a.oh) store_n(y + (2 * ty + 2 + io) * a.ow, second, a.ow);
    } else {
      float* row = y + (2 * ty + io) * a.ow + 2 * tx0;
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
      reg f[2][N];
#pragma GCC unroll 8
      for (int i = 0; i < N; ++i) {
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
#pragma GCC unroll 2
      for (int io = 0; io < 2; ++io) {
        reg out[2];
#pragma GCC unroll 2
        for (int jo = 0; jo < 2; ++jo) {
          out[jo] = V::add(Cl::combo(Cl::M::AT[io], f[jo]), vb);
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
      for (int64_t ci = 0; ci < a.cin; ++ci)
        for (int64_t k = 0; k < tv; ++k) input_transform(v, xpad, a, ci, u0 + k, nl, k * V::W);
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
