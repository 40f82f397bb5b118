// conv2d_direct_bwd_weights.inl — the direct weight-gradient kernels of DirectConv
// (conv2d_direct.inl): per-lane partial sums over shifted planes for small C_in (bwd_weights) and
// output channels in the lanes for large C_in (bwd_weights_t). Template arguments as DirectConv's.

template <class V, int BWD_REGS, int COV_MAX>
struct DirectConvBwdWeights {
  using reg = typename V::reg;

  // --- backward weights ------------------------------------------------------------------------
  // Input: xs, per (ci, kx) the zero-padded plane shifted left by kx with row pitch ow (the
  // driver's shifted_planes): xs[((ci*kw + kx)*hp + r)*ow + ox] = xpad[ci][r][ox + kx]. Tap
  // (ci, ky, kx) then meets dy at the same flat index q = oy*ow + ox in both planes,
  // x = xs[((ci*kw + kx)*hp + ky)*ow + q], so a tile streams the oh*ow positions as one run: no
  // row ends and no lanes past OW but in the plane's last vector (masked: 0 * 0, never 0 * Inf).
  // Rows of 28 took one full and one 12-lane vector each, with the tile's pointers set up again
  // per row: 25% of peak on fashion.conv1 before. Tile: CB channels x T consecutive taps of
  // (ci, ky, kx); per vector CB dy loads + T input loads for CB*T FMAs, and CB*T accumulators +
  // CB dy vectors + one input vector fit BWD_REGS registers.
  static constexpr int BWW_CB_MAX = 6;
  static constexpr int bww_taps_max(int cb) {
    return (BWD_REGS - 1 - cb) / cb < 9 ? (BWD_REGS - 1 - cb) / cb : 9;
  }
  // A tile can also sum db (CB more accumulators, one add per dy vector it loads anyway) when
  // those fit the registers too: fashion.conv1's 4-tap tiles (5 x 4 + 5 + 1 + 5 = 31).
  static constexpr bool bww_db_fits(int cb, int t) { return cb * t + 2 * cb + 1 <= BWD_REGS; }

  // DB: also db[co*W + lane] += the tile's dy vectors (per-lane partial sums, like acc's).
  template <int CB, int T, bool DB>
  static void bww_tile(float* acc, float* db, const float* dy, const float* xs,
                       const fastconv::cpu::DirectConvArgs& a, int64_t co0, int64_t t0) {
    const int64_t KK = a.kh * a.kw, ckk = a.cin * KK, P = a.oh * a.ow;
    const float* xt[T];
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
      const int64_t tap = t0 + t, ci = tap / KK, ky = tap % KK / a.kw, kx = tap % a.kw;
      xt[t] = xs + ((ci * a.kw + kx) * a.hp + ky) * a.ow;
    }
    const float* dyc[CB];
    reg s[CB][T], sb[CB];
#pragma GCC unroll 8
    for (int c = 0; c < CB; ++c) {
      dyc[c] = dy + (co0 + c) * P;
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) s[c][t] = V::loadu(acc + ((co0 + c) * ckk + t0 + t) * V::W);
      if constexpr (DB) sb[c] = V::loadu(db + (co0 + c) * V::W);
    }
    const int64_t nfull = P / V::W * V::W;
    for (int64_t q = 0; q < nfull; q += V::W) {
      reg d[CB];
#pragma GCC unroll 8
      for (int c = 0; c < CB; ++c) {
        d[c] = V::loadu(dyc[c] + q);
        // Keep the loaded vectors in registers: GCC otherwise folds each load into every FMA
        // that uses it (CB*T loads instead of CB + T, and the loop becomes load-bound).
        asm("" : "+v"(d[c]));
        if constexpr (DB) sb[c] = V::add(sb[c], d[c]);
      }
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        reg x = V::loadu(xt[t] + q);
        asm("" : "+v"(x));
#pragma GCC unroll 8
        for (int c = 0; c < CB; ++c) s[c][t] = V::fmadd(d[c], x, s[c][t]);
      }
    }
    if (nfull < P) {
      const auto m = V::tail(P - nfull);
      reg d[CB];
#pragma GCC unroll 8
      for (int c = 0; c < CB; ++c) {
        d[c] = V::load_tail(dyc[c] + nfull, m);
        if constexpr (DB) sb[c] = V::add(sb[c], d[c]);
      }
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        const reg x = V::load_tail(xt[t] + nfull, m);
#pragma GCC unroll 8
        for (int c = 0; c < CB; ++c) s[c][t] = V::fmadd(d[c], x, s[c][t]);
      }
    }
#pragma GCC unroll 8
    for (int c = 0; c < CB; ++c) {
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) V::storeu(acc + ((co0 + c) * ckk + t0 + t) * V::W, s[c][t]);
      if constexpr (DB) V::storeu(db + (co0 + c) * V::W, sb[c]);
    }
  }

  // bww_tile<CB, t> / <cb, t> for run-time t in [1, T] and cb in [1, CB]; db != nullptr: the
  // tile also sums db (the caller checks bww_db_fits).
  template <int CB, int T>
  static void bww_tile_t(int64_t t, float* acc, float* db, const float* dy, const float* xs,
                         const fastconv::cpu::DirectConvArgs& a, int64_t co0, int64_t t0) {
    if (t == T) {
      if constexpr (bww_db_fits(CB, T)) {
        if (db != nullptr) return bww_tile<CB, T, true>(acc, db, dy, xs, a, co0, t0);
      }
      bww_tile<CB, T, false>(acc, nullptr, dy, xs, a, co0, t0);
    } else if constexpr (T > 1) {
      bww_tile_t<CB, T - 1>(t, acc, db, dy, xs, a, co0, t0);
    }
  }
  template <int CB>
  static void bww_tile_n(int64_t cb, int64_t t, float* acc, float* db, const float* dy,
                         const float* xs, const fastconv::cpu::DirectConvArgs& a, int64_t co0,
                         int64_t t0) {
    if (cb == CB) {
      bww_tile_t<CB, bww_taps_max(CB)>(t, acc, db, dy, xs, a, co0, t0);
    } else if constexpr (CB > 1) {
      bww_tile_n<CB - 1>(cb, t, acc, db, dy, xs, a, co0, t0);
    }
  }

  static void bwd_weights(float* acc, float* dbacc, const float* dy, const float* xs,
                          const fastconv::cpu::DirectConvArgs& a) {
    // Every (cb, t) does cout*taps FMAs per vector position; loads are cout per tap tile plus
    // taps per channel block: pick the channel block with the fewest (ties: the smaller).
    const int64_t taps = a.cin * a.kh * a.kw;
    int64_t best = 1, best_loads = -1;
    for (int cbm = 1; cbm <= BWW_CB_MAX; ++cbm) {
      const int64_t blocks = (a.cout + cbm - 1) / cbm, tm = bww_taps_max(cbm);
      const int64_t loads = (taps + tm - 1) / tm * a.cout + blocks * taps;
      if (best_loads < 0 || loads < best_loads) best = cbm, best_loads = loads;
    }
    // Equal-sized blocks and tiles (20 -> 4 x 5 channels; 25 taps at most 9 -> 9, 9, 7).
    const int64_t blocks = (a.cout + best - 1) / best, cb = (a.cout + blocks - 1) / blocks;
    const int64_t tm = bww_taps_max(int(best)), tiles = (taps + tm - 1) / tm;
    const int64_t tt = (taps + tiles - 1) / tiles;
    const int64_t ohw = a.oh * a.ow, nfull = ohw / V::W * V::W;
    const int64_t t_last = taps - (taps - 1) / tt * tt;  // taps of each block's last tile
    for (int64_t co0 = 0; co0 < a.cout; co0 += cb) {
      const int64_t co1 = a.cout - co0 < cb ? a.cout : co0 + cb;
      // db rides in the block's last (smallest) tap tile where its sums fit the registers
      const bool db_in_tile = dbacc != nullptr && bww_db_fits(int(co1 - co0), int(t_last));
      for (int64_t t0 = 0; t0 < taps; t0 += tt) {
        const int64_t t = taps - t0 < tt ? taps - t0 : tt;
        bww_tile_n<BWW_CB_MAX>(co1 - co0, t, acc, db_in_tile && t0 + t == taps ? dbacc : nullptr,
                               dy, xs, a, co0, t0);
      }
      if (dbacc == nullptr || db_in_tile) continue;
      // db of the block's channels while their dy planes are still in L1, in 8 chains: with
      // 3x3 taps it is a ninth as many adds as the tiles' FMAs (fashion.conv1: 2 chains over
      // planes back from L2 were a tenth of the call).
      for (int64_t co = co0; co < co1; ++co) {
        const float* d = dy + co * ohw;
        reg s[8];
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) s[j] = V::zero();
        int64_t i = 0;
        for (; i + 8 * V::W <= nfull; i += 8 * V::W)
#pragma GCC unroll 8
          for (int j = 0; j < 8; ++j) s[j] = V::add(s[j], V::loadu(d + i + j * V::W));
        for (; i < nfull; i += V::W) s[0] = V::add(s[0], V::loadu(d + i));
        if (nfull < ohw) s[1] = V::add(s[1], V::load_tail(d + nfull, V::tail(ohw - nfull)));
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) s[j] = V::add(s[j], s[j + 4]);
        const reg t = V::add(V::add(s[0], s[1]), V::add(s[2], s[3]));
        V::storeu(dbacc + co * V::W, V::add(V::loadu(dbacc + co * V::W), t));
      }
    }
  }
  // --- backward weights, output channels in lanes (large C_in) ---------------------------------
  // acc[r*coutp + co] += sum over the image's pixels of dyT[p*coutp + co] * x(ci, oy+ky, ox+kx),
  // r = (ci*kh + ky)*kw + kx. dyT is dy transposed to (oh*ow, coutp), zero past cout (coutp = cout
  // rounded up to W). Tile = COV vectors of output channels x T consecutive taps of one (ci, ky)
  // row: per pixel COV dy loads + T broadcasts of the input for COV*T FMAs; the sums are complete
  // dot products (no per-lane partials), loaded/added/stored once per tile and row block. Rows
  // are blocked so a block of dyT (rows x ow x COV*W floats) stays in L1 across all taps.
  template <int COV, int KB, int T>
  static void bwt_tile(float* acc, const float* dyT, const float* xpad,
                       const fastconv::cpu::DirectConvArgs& a, int64_t coutp, int64_t co0,
                       int64_t ci, int64_t ky0, int64_t kx0, int64_t oy0, int64_t oy1) {
    reg s[COV][KB][T];
#pragma GCC unroll 4
    for (int v = 0; v < COV; ++v)
#pragma GCC unroll 2
      for (int b = 0; b < KB; ++b)
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) s[v][b][t] = V::zero();
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      const float* xr = xpad + ci * a.plane + (oy + ky0) * a.wp + kx0;
      const float* dr = dyT + oy * a.ow * coutp + co0;
      for (int64_t ox = 0; ox < a.ow; ++ox) {
        reg d[COV];
#pragma GCC unroll 4
        for (int v = 0; v < COV; ++v) d[v] = V::loadu(dr + ox * coutp + v * V::W);
#pragma GCC unroll 2
        for (int b = 0; b < KB; ++b)
#pragma GCC unroll 8
          for (int t = 0; t < T; ++t) {
            const reg xb = V::set1(xr[b * a.wp + ox + t]);
#pragma GCC unroll 4
            for (int v = 0; v < COV; ++v) s[v][b][t] = V::fmadd(d[v], xb, s[v][b][t]);
          }
      }
    }
#pragma GCC unroll 2
    for (int b = 0; b < KB; ++b) {
      const int64_t r0 = (ci * a.kh + ky0 + b) * a.kw + kx0;
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        float* ar = acc + (r0 + t) * coutp + co0;
#pragma GCC unroll 4
        for (int v = 0; v < COV; ++v)
          V::storeu(ar + v * V::W, V::add(V::loadu(ar + v * V::W), s[v][b][t]));
      }
    }
  }

  // Taps per tile: one kernel row of up to 5 taps, or two rows when kw <= 3 (3x3: 6 taps, so
  // COV*6 FMAs per COV + 6 loads instead of COV*3 per COV + 3).
  template <int COV, int KB>
  static void bwt_row(float* acc, const float* dyT, const float* xpad,
                      const fastconv::cpu::DirectConvArgs& a, int64_t coutp, int64_t co0,
                      int64_t ci, int64_t ky, int64_t oy0, int64_t oy1) {
    constexpr int TMAX = 5;
    for (int64_t kx0 = 0; kx0 < a.kw; kx0 += TMAX) {
      switch (a.kw - kx0 < TMAX ? a.kw - kx0 : TMAX) {
        case 1: bwt_tile<COV, KB, 1>(acc, dyT, xpad, a, coutp, co0, ci, ky, kx0, oy0, oy1); break;
        case 2: bwt_tile<COV, KB, 2>(acc, dyT, xpad, a, coutp, co0, ci, ky, kx0, oy0, oy1); break;
        case 3: bwt_tile<COV, KB, 3>(acc, dyT, xpad, a, coutp, co0, ci, ky, kx0, oy0, oy1); break;
        case 4: bwt_tile<COV, 1, 4>(acc, dyT, xpad, a, coutp, co0, ci, ky, kx0, oy0, oy1);
                if (KB == 2) bwt_tile<COV, 1, 4>(acc, dyT, xpad, a, coutp, co0, ci, ky + 1, kx0, oy0, oy1);
                break;
        default: bwt_tile<COV, 1, 5>(acc, dyT, xpad, a, coutp, co0, ci, ky, kx0, oy0, oy1);
                 if (KB == 2) bwt_tile<COV, 1, 5>(acc, dyT, xpad, a, coutp, co0, ci, ky + 1, kx0, oy0, oy1);
                 break;
      }
    }
  }

  template <int COV>
  static void bwt_taps(float* acc, const float* dyT, const float* xpad,
                       const fastconv::cpu::DirectConvArgs& a, int64_t coutp, int64_t co0,
                       int64_t oy0, int64_t oy1) {
    const bool pair = a.kw <= 3;
    for (int64_t ci = 0; ci < a.cin; ++ci) {
      int64_t ky = 0;
      if (pair)
        for (; ky + 2 <= a.kh; ky += 2) bwt_row<COV, 2>(acc, dyT, xpad, a, coutp, co0, ci, ky, oy0, oy1);
      for (; ky < a.kh; ++ky) bwt_row<COV, 1>(acc, dyT, xpad, a, coutp, co0, ci, ky, oy0, oy1);
    }
  }

  static void bwd_weights_t(float* acc, const float* dyT, const float* xpad,
                            const fastconv::cpu::DirectConvArgs& a) {
    const int64_t coutp = (a.cout + V::W - 1) / V::W * V::W, nvec = coutp / V::W;
    // Row block: dyT block of rb*ow*COV_MAX*W floats <= ~24 KB (L1), at least one row.
    int64_t rb = (24 * 1024 / 4) / (a.ow * COV_MAX * V::W);
    if (rb < 1) rb = 1;
    for (int64_t oy0 = 0; oy0 < a.oh; oy0 += rb) {
      const int64_t oy1 = oy0 + rb < a.oh ? oy0 + rb : a.oh;
      for (int64_t v0 = 0; v0 < nvec; v0 += COV_MAX) {
        const int64_t nv = nvec - v0 < COV_MAX ? nvec - v0 : COV_MAX;
        const int64_t co0 = v0 * V::W;
        switch (nv) {
          case 1: bwt_taps<1>(acc, dyT, xpad, a, coutp, co0, oy0, oy1); break;
          case 2: bwt_taps<COV_MAX >= 2 ? 2 : 1>(acc, dyT, xpad, a, coutp, co0, oy0, oy1); break;
          case 3: bwt_taps<COV_MAX >= 3 ? 3 : 1>(acc, dyT, xpad, a, coutp, co0, oy0, oy1); break;
          default: bwt_taps<COV_MAX>(acc, dyT, xpad, a, coutp, co0, oy0, oy1); break;
        }
      }
    }
  }
};
