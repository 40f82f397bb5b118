// conv2d_direct_fwd.inl — the direct forward kernels of DirectConv (conv2d_direct.inl): row tiles
// and flat tiles over the zero-padded image (every C_in; bwd_data runs them on the bordered dy),
// flat tiles over shifted planes for C_in < 4, and shift_planes, which writes those planes (the
// per-lane weight gradient in conv2d_direct_bwd_weights.inl reads them too). Template arguments
// as DirectConv's (BWD_REGS: the ISA's vector registers, which the forward tiles size by too).

template <class V, int R_WIDE, int R_NARROW, int BWD_REGS, int NQ_MAX>
struct DirectConvFwd {
  using reg = typename V::reg;

  // --- forward ---------------------------------------------------------------------------------
  // One kernel tap of a row tile: R x NV input vectors (rows i of the tile, pitch wp) each meet
  // the CB broadcast weights of the tap.
  template <int R, int NV, int CB>
  static inline __attribute__((always_inline)) void row_tap(reg (&acc)[R][NV][CB], const float* xk,
                                                            const float* wk, int64_t wp) {
    reg xv[R][NV];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) xv[i][v] = V::loadu(xk + i * wp + v * V::W);
#pragma GCC unroll 8
    for (int c = 0; c < CB; ++c) {
      const reg wv = V::set1(wk[c]);
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v][c] = V::fmadd(xv[i][v], wv, acc[i][v][c]);
    }
  }

  // One kernel tap of a flat tile: NQ consecutive input vectors meet the CB broadcast weights.
  template <int NQ, int CB>
  static inline __attribute__((always_inline)) void flat_tap(reg (&acc)[NQ][CB], const float* xk,
                                                             const float* wk) {
    reg xv[NQ];
#pragma GCC unroll 8
    for (int j = 0; j < NQ; ++j) xv[j] = V::loadu(xk + j * V::W);
#pragma GCC unroll 8
    for (int c = 0; c < CB; ++c) {
      const reg wv = V::set1(wk[c]);
#pragma GCC unroll 8
      for (int j = 0; j < NQ; ++j) acc[j][c] = V::fmadd(xv[j], wv, acc[j][c]);
    }
  }

  // Weight-stationary inner step: for each (ci, ky, kx) the CB weights are broadcast once and each
  // meets the R x NV input vectors (rows oy0+i+ky, columns ox0+kx+v*W, unaligned loads from the
  // padded plane): R*NV + CB loads per R*NV*CB FMAs, no branches. Weights arrive packed per
  // channel block (CB = a.cb): wt[((co0/CB)*cin*KH*KW + (ci*KH + ky)*KW + kx)*CB + c], zeros past
  // cout, so one tile streams one contiguous cin*KH*KW*CB slab and tail blocks multiply by zeros.
  // KH/KW > 0: compile-time kernel size (3x3 and 5x5 fully unrolled); 0: run-time.
  template <int R, int NV, int CB, int KH, int KW>
  static void fwd_tile(float* y, const float* xpad, const float* wt, const float* bias, bool relu,
                       const fastconv::cpu::DirectConvArgs& a, int64_t co0, int64_t oy0,
                       int64_t ox0) {
    const int64_t kh = KH > 0 ? KH : a.kh, kw = KW > 0 ? KW : a.kw;
    constexpr int64_t ld = CB;
    reg acc[R][NV][CB];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
#pragma GCC unroll 8
        for (int c = 0; c < CB; ++c) acc[i][v][c] = V::zero();
    const float* wb = wt + co0 * a.cin * kh * kw;  // co0 = (co0/CB) * CB
    for (int64_t ci = 0; ci < a.cin; ++ci) {
      const float* xc = xpad + ci * a.plane + oy0 * a.wp + ox0;
      const float* wci = wb + ci * kh * kw * ld;
      // Tap loops unrolled for 3x3 only: fully unrolled 5x5 bodies ran 1.2-1.3x slower (GCC
      // hoists later taps' loads and then shuffles registers; PERF_LOG.md, round 4), while 3x3
      // layers lose ~10% without the unrolling.
      if constexpr (KW == 3 && KH == 3) {
#pragma GCC unroll 3
        for (int64_t ky = 0; ky < 3; ++ky)
#pragma GCC unroll 3
          for (int64_t kx = 0; kx < 3; ++kx)
            row_tap<R, NV, CB>(acc, xc + ky * a.wp + kx, wci + (ky * 3 + kx) * ld, a.wp);
      } else {
#pragma GCC unroll 1
        for (int64_t ky = 0; ky < kh; ++ky)
#pragma GCC unroll 1
          for (int64_t kx = 0; kx < kw; ++kx)
            row_tap<R, NV, CB>(acc, xc + ky * a.wp + kx, wci + (ky * kw + kx) * ld, a.wp);
      }
    }
    const int64_t ohw = a.oh * a.ow;
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const int64_t oy = oy0 + i;
      if (oy >= a.oh) break;
#pragma GCC unroll 8
      for (int c = 0; c < CB; ++c) {
        const int64_t co = co0 + c;
        if (co >= a.cout) break;
        const reg vb = V::set1(bias != nullptr ? bias[co] : 0.0f);
        float* yr = y + co * ohw + oy * a.ow;
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          const int64_t ox = ox0 + v * V::W;
          if (ox >= a.ow) break;
          reg o = V::add(acc[i][v][c], vb);
          if (relu) o = V::relu(o);
          if (a.ow - ox >= V::W) {
            V::storeu(yr + ox, o);
          } else {
            V::store_tail(yr + ox, o, V::tail(a.ow - ox));
          }
        }
      }
    }
  }

  // One output channel (CB = 1, the C_in = 1 layers' bwd_data: one dx plane), compile-time KH x
  // KW: per (ci, kx) the KH weights are broadcast once and each of the R + KH - 1 input rows of
  // the tile's window is loaded once and meets the weights of every output row it feeds (ky = r
  // - i): (R + KH - 1)*NV loads + KH broadcasts per R*KH*NV FMAs (5x5, 4 x 2: 21 per 40), where
  // fwd_tile's per-tap loads made it one load per FMA, and its 2 accumulator chains on AVX2 (1 x 2
  // x 1) waited on each FMA's latency (cnn1.conv1 bwd_data: 15% of the FMA peak). Sums run over
  // (ci, kx, ky) in that order.
  template <int R, int NV, int KH, int KW>
  static void fwd_one_tile(float* y, const float* xpad, const float* wt,
                           const fastconv::cpu::DirectConvArgs& a, int64_t oy0, int64_t ox0) {
    reg acc[R][NV];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = V::zero();
    for (int64_t ci = 0; ci < a.cin; ++ci) {
      const float* xc = xpad + ci * a.plane + oy0 * a.wp + ox0;
      const float* wci = wt + ci * KH * KW;
#pragma GCC unroll 1
      for (int kx = 0; kx < KW; ++kx) {
        reg wv[KH];
#pragma GCC unroll 8
        for (int ky = 0; ky < KH; ++ky) wv[ky] = V::set1(wci[ky * KW + kx]);
#pragma GCC unroll 16
        for (int r = 0; r < R + KH - 1; ++r) {
          reg xv[NV];
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) xv[v] = V::loadu(xc + r * a.wp + kx + v * V::W);
#pragma GCC unroll 8
          for (int i = 0; i < R; ++i) {
            const int ky = r - i;
            if (ky < 0 || ky >= KH) continue;
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) acc[i][v] = V::fmadd(xv[v], wv[ky], acc[i][v]);
          }
        }
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const int64_t oy = oy0 + i;
      if (oy >= a.oh) break;
      float* yr = y + oy * a.ow;
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const int64_t ox = ox0 + v * V::W;
        if (ox >= a.ow) break;
        if (a.ow - ox >= V::W) {
          V::storeu(yr + ox, acc[i][v]);
        } else {
          V::store_tail(yr + ox, acc[i][v], V::tail(a.ow - ox));
        }
      }
    }
  }

  template <int R, int NV, int KH, int KW>
  static void fwd_one_image(float* y, const float* xpad, const float* wt,
                            const fastconv::cpu::DirectConvArgs& a) {
    for (int64_t oy0 = 0; oy0 < a.oh; oy0 += R)
      for (int64_t ox0 = 0; ox0 < a.ow; ox0 += NV * V::W) {
        if (a.oh - oy0 <= 2) {  // oh = 14: 12 + 2 rows, not 16
          fwd_one_tile<2, NV, KH, KW>(y, xpad, wt, a, oy0, ox0);
        } else {
          fwd_one_tile<R, NV, KH, KW>(y, xpad, wt, a, oy0, ox0);
        }
      }
  }

  // Row tiles outside channel blocks: a row tile's input rows (all ci) are reused by every block.
  // When R = 4 and only 1 or 2 rows are left (oh = 14: 12 + 2), a 2-row tile finishes the image
  // instead of computing 2-3 junk rows.
  template <int R, int NV, int CB, int KH, int KW>
  static void fwd_image(float* y, const float* xpad, const float* wt, const float* bias,
                        bool relu, const fastconv::cpu::DirectConvArgs& a) {
    constexpr int RT = R >= 4 ? 2 : R;
    for (int64_t oy0 = 0; oy0 < a.oh; oy0 += R) {
      const bool short_tail = RT < R && a.oh - oy0 <= RT;
      for (int64_t co0 = 0; co0 < a.cout; co0 += CB)
        for (int64_t ox0 = 0; ox0 < a.ow; ox0 += NV * V::W) {
          if (short_tail) {
            fwd_tile<RT, NV, CB, KH, KW>(y, xpad, wt, bias, relu, a, co0, oy0, ox0);
          } else {
            fwd_tile<R, NV, CB, KH, KW>(y, xpad, wt, bias, relu, a, co0, oy0, ox0);
          }
        }
    }
  }

  // Flat tile (narrow or odd-sized rows): NQ vectors of consecutive positions q = oy*wp + ox of
  // the output laid out with the padded row pitch wp; position q reads xpad[ci*plane + q + ky*wp +
  // kx], so one unaligned load per vector and step, whatever the row width. Columns ox >= ow are
  // junk (kw - 1 per row) and never stored: each vector is stored as its (at most a few) row
  // segments with lane-range masks. Wastes (wp - ow)/wp lanes instead of the row tile's rounding
  // of ow up to NV*W and of oh up to R (lenet.conv2: 69% useful lanes vs 52%).
  template <int NQ, int CB, int KH, int KW>
  static void fwd_flat_tile(float* y, const float* xpad, const float* wt, const float* bias,
                            bool relu, const fastconv::cpu::DirectConvArgs& a, int64_t co0,
                            int64_t q0) {
    const int64_t kh = KH > 0 ? KH : a.kh, kw = KW > 0 ? KW : a.kw;
    reg acc[NQ][CB];
#pragma GCC unroll 8
    for (int j = 0; j < NQ; ++j)
#pragma GCC unroll 8
      for (int c = 0; c < CB; ++c) acc[j][c] = V::zero();
    const float* wb = wt + co0 * a.cin * kh * kw;
    for (int64_t ci = 0; ci < a.cin; ++ci) {
      const float* xc = xpad + ci * a.plane + q0;
      const float* wci = wb + ci * kh * kw * CB;
      if constexpr (KW == 3 && KH == 3) {  // same unrolling rule as fwd_tile
#pragma GCC unroll 3
        for (int64_t ky = 0; ky < 3; ++ky)
#pragma GCC unroll 3
          for (int64_t kx = 0; kx < 3; ++kx)
            flat_tap<NQ, CB>(acc, xc + ky * a.wp + kx, wci + (ky * 3 + kx) * CB);
      } else {
#pragma GCC unroll 1
        for (int64_t ky = 0; ky < kh; ++ky)
#pragma GCC unroll 1
          for (int64_t kx = 0; kx < kw; ++kx)
            flat_tap<NQ, CB>(acc, xc + ky * a.wp + kx, wci + (ky * kw + kx) * CB);
      }
    }
    const int64_t ohw = a.oh * a.ow, qend = a.oh * a.wp;
    reg vb[CB];
#pragma GCC unroll 8
    for (int c = 0; c < CB; ++c)
      vb[c] = V::set1(bias != nullptr && co0 + c < a.cout ? bias[co0 + c] : 0.0f);
    const int ncb = a.cout - co0 < CB ? int(a.cout - co0) : CB;
#pragma GCC unroll 8
    for (int j = 0; j < NQ; ++j) {
      const int64_t qv = q0 + j * V::W;
      if (qv >= qend) break;
      // (no std::min here: an inline std template instantiated in an ISA TU could be shared)
      const int64_t last_row = (qv + V::W - 1) / a.wp;
      const int64_t last = last_row < a.oh - 1 ? last_row : a.oh - 1;
      for (int64_t oy = qv / a.wp, rs = oy * a.wp; oy <= last; ++oy, rs += a.wp) {
        const int64_t l0 = rs > qv ? rs - qv : 0;
        const int64_t l1 = rs + a.ow - qv < V::W ? rs + a.ow - qv : int64_t(V::W);
        if (l1 <= l0) continue;
        // lane l of the vector is output (oy, qv + l - rs): address yc + oy*ow - rs + qv + l.
        const int64_t off = oy * a.ow - rs + qv;
        const bool full = l0 == 0 && l1 == V::W;
        const auto m = V::range(l0, l1);
#pragma GCC unroll 8
        for (int c = 0; c < CB; ++c) {
          if (c >= ncb) break;
          reg o = V::add(acc[j][c], vb[c]);
          if (relu) o = V::relu(o);
          float* base = y + (co0 + c) * ohw + off;
          if (full) {
            V::storeu(base, o);
          } else {
            V::store_tail(base, o, m);
          }
        }
      }
    }
  }

  template <int NQ, int CB, int KH, int KW>
  static void fwd_flat_image(float* y, const float* xpad, const float* wt, const float* bias,
                             bool relu, const fastconv::cpu::DirectConvArgs& a) {
    const int64_t qend = a.oh * a.wp;
    for (int64_t q0 = 0; q0 < qend; q0 += NQ * V::W)
      for (int64_t co0 = 0; co0 < a.cout; co0 += CB)
        fwd_flat_tile<NQ, CB, KH, KW>(y, xpad, wt, bias, relu, a, co0, q0);
  }

  template <int NQ, int CB>
  static void fwd_flat_k(float* y, const float* xpad, const float* wt, const float* bias,
                         bool relu, const fastconv::cpu::DirectConvArgs& a) {
    if (a.kh == 3 && a.kw == 3) {
      fwd_flat_image<NQ, CB, 3, 3>(y, xpad, wt, bias, relu, a);
    } else if (a.kh == 5 && a.kw == 5) {
      fwd_flat_image<NQ, CB, 5, 5>(y, xpad, wt, bias, relu, a);
    } else {
      fwd_flat_image<NQ, CB, 0, 0>(y, xpad, wt, bias, relu, a);
    }
  }

  template <int NQ>
  static void fwd_flat_cb(int cb, float* y, const float* xpad, const float* wt,
                          const float* bias, bool relu, const fastconv::cpu::DirectConvArgs& a) {
    switch (cb) {
      case 1: fwd_flat_k<NQ, 1>(y, xpad, wt, bias, relu, a); break;
      case 4: fwd_flat_k<NQ, 4>(y, xpad, wt, bias, relu, a); break;
      case 5: fwd_flat_k<NQ, 5>(y, xpad, wt, bias, relu, a); break;
      default: fwd_flat_k<NQ, 6>(y, xpad, wt, bias, relu, a); break;
    }
  }

  // Flat tiles over shifted planes (C_in < 4; the driver's shifted_planes, which bwd_weights reads
  // too): output position q = oy*ow + ox of tap (ci, ky, kx) reads xs[((ci*kw + kx)*hp + ky)*ow + q],
  // so the image's oh*ow outputs are one run of vectors, with no junk lanes and no row ends (28x28:
  // 49 full vectors, where row tiles put rows of 28 in 32 lanes). One tile: NQ vectors from q0 by
  // one channel block; FULL: every vector lies inside the plane (no checks, no masks), else the
  // plane's last vector is stored masked.
  template <int NQ, int CB, int KH, int KW, bool FULL>
  static inline __attribute__((always_inline)) void fwd_shifted_body(
      float* y, const float* xs, const float* wt, const float* bias, bool relu,
      const fastconv::cpu::DirectConvArgs& a, int64_t co0, int64_t q0) {
    const int64_t kh = KH > 0 ? KH : a.kh, kw = KW > 0 ? KW : a.kw, slab = a.hp * a.ow;
    const int ncb = a.cout - co0 < CB ? int(a.cout - co0) : CB;
    const int64_t P = a.oh * a.ow;
    const float* wb = wt + co0 * a.cin * kh * kw;
    // The sums start from the bias: with only 9 taps (3x3, one input channel) per tile, an add
    // per output vector in the store is a tenth of the tile's work.
    reg acc[NQ][CB];
#pragma GCC unroll 8
    for (int c = 0; c < CB; ++c) {
      const reg vb = V::set1(bias != nullptr && c < ncb ? bias[co0 + c] : 0.0f);
#pragma GCC unroll 8
      for (int j = 0; j < NQ; ++j) acc[j][c] = vb;
    }
    for (int64_t ci = 0; ci < a.cin; ++ci) {
      const float* xc = xs + ci * kw * slab + q0;
      const float* wci = wb + ci * kh * kw * CB;
      if constexpr (KW == 3 && KH == 3) {  // same unrolling rule as fwd_tile
#pragma GCC unroll 3
        for (int64_t ky = 0; ky < 3; ++ky)
#pragma GCC unroll 3
          for (int64_t kx = 0; kx < 3; ++kx)
            flat_tap<NQ, CB>(acc, xc + kx * slab + ky * a.ow, wci + (ky * 3 + kx) * CB);
      } else {
#pragma GCC unroll 1
        for (int64_t ky = 0; ky < kh; ++ky)
#pragma GCC unroll 1
          for (int64_t kx = 0; kx < kw; ++kx)
            flat_tap<NQ, CB>(acc, xc + kx * slab + ky * a.ow, wci + (ky * kw + kx) * CB);
      }
    }
#pragma GCC unroll 8
    for (int c = 0; c < CB; ++c) {
      if (c >= ncb) break;
      float* yc = y + (co0 + c) * P;
#pragma GCC unroll 8
      for (int j = 0; j < NQ; ++j) {
        const int64_t qv = q0 + j * V::W;
        if (!FULL && qv >= P) break;
        reg o = acc[j][c];
        if (relu) o = V::relu(o);
        if (FULL || P - qv >= V::W) {
          V::storeu(yc + qv, o);
        } else {
          V::store_tail(yc + qv, o, V::tail(P - qv));
        }
      }
    }
  }

  template <int NQ, int CB, int KH, int KW, bool FULL>
  static void fwd_shifted_tile(float* y, const float* xs, const float* wt, const float* bias,
                               bool relu, const fastconv::cpu::DirectConvArgs& a, int64_t co0,
                               int64_t q0) {
    fwd_shifted_body<NQ, CB, KH, KW, FULL>(y, xs, wt, bias, relu, a, co0, q0);
  }

  // The `ntiles` whole tiles from q = 0 of one whole channel block (CB channels from co0), in one
  // call: the sums start from the bias (broadcast per tile from a CB-float copy, zeros without
  // one), no channel or plane-end checks, ReLU a template choice, and the output and weight
  // pointers set up once. A 9-tap tile (3x3, one input channel) is only 36 FMA cycles, and the
  // checked per-tile code spent about as many instructions again on set-up and stores.
  template <int NQ, int CB, int KH, int KW, bool RELU, int CIN>
  static void fwd_shifted_run(float* y, const float* xs, const float* wt, const float* bias,
                              const fastconv::cpu::DirectConvArgs& a, int64_t co0,
                              int64_t ntiles) {
    const int64_t kh = KH > 0 ? KH : a.kh, kw = KW > 0 ? KW : a.kw, slab = a.hp * a.ow;
    const int64_t cin = CIN > 0 ? CIN : a.cin;
    const int64_t P = a.oh * a.ow;
    const float* wb = wt + co0 * a.cin * kh * kw;
    float b[CB];
    for (int c = 0; c < CB; ++c) b[c] = bias != nullptr ? bias[co0 + c] : 0.0f;
    float* yb = y + co0 * P;
    for (int64_t t = 0; t < ntiles; ++t) {
      const int64_t q0 = t * NQ * V::W;
      reg acc[NQ][CB];
#pragma GCC unroll 8
      for (int c = 0; c < CB; ++c) {
        const reg vb = V::set1(b[c]);
#pragma GCC unroll 8
        for (int j = 0; j < NQ; ++j) acc[j][c] = vb;
      }
      // The weights' base through an empty asm, per tile: else GCC hoists every tap's weight
      // address out of the tile loop (36 pointers for 3x3 x 4 channels) and reloads them from the
      // stack, one scalar load per broadcast.
      const float* wtile = wb;
      asm("" : "+r"(wtile));
      for (int64_t ci = 0; ci < cin; ++ci) {
        const float* xc = xs + ci * kw * slab + q0;
        const float* wci = wtile + ci * kh * kw * CB;
        if constexpr (KW == 3 && KH == 3) {
#pragma GCC unroll 3
          for (int64_t ky = 0; ky < 3; ++ky)
#pragma GCC unroll 3
            for (int64_t kx = 0; kx < 3; ++kx)
              flat_tap<NQ, CB>(acc, xc + kx * slab + ky * a.ow, wci + (ky * 3 + kx) * CB);
        } else {
#pragma GCC unroll 1
          for (int64_t ky = 0; ky < kh; ++ky)
#pragma GCC unroll 1
            for (int64_t kx = 0; kx < kw; ++kx)
              flat_tap<NQ, CB>(acc, xc + kx * slab + ky * a.ow, wci + (ky * kw + kx) * CB);
        }
      }
#pragma GCC unroll 8
      for (int c = 0; c < CB; ++c)
#pragma GCC unroll 8
        for (int j = 0; j < NQ; ++j)
          V::storeu(yb + c * P + q0 + j * V::W, RELU ? V::relu(acc[j][c]) : acc[j][c]);
    }
  }

  // Vectors per tile: NQ*CB accumulators + NQ inputs + one broadcast weight fit the registers
  // (AVX-512: 4 channels x 6 vectors, 5 x 5, 6 x 4). With the 3x3 taps unrolled, GCC shuffles
  // registers unless 3 stay free (4 x 6 ran 1.25x slower than 4 x 5 on fashion.conv1).
  static constexpr int shifted_nq(int cb, bool unrolled) {
    const int n = (BWD_REGS - (unrolled ? 4 : 1)) / (cb + 1);
    return n < 1 ? 1 : n < 8 ? n : 8;
  }

  // Tail tile of t <= NQ vectors, the plane's last (run-time kernel size: it is at most one tile
  // per channel block).
  template <int CB, int NQ>
  static void fwd_shifted_tail(int64_t t, float* y, const float* xs, const float* wt,
                               const float* bias, bool relu, const fastconv::cpu::DirectConvArgs& a,
                               int64_t co0, int64_t q0) {
    if (t == NQ) {
      fwd_shifted_tile<NQ, CB, 0, 0, false>(y, xs, wt, bias, relu, a, co0, q0);
    } else if constexpr (NQ > 1) {
      fwd_shifted_tail<CB, NQ - 1>(t, y, xs, wt, bias, relu, a, co0, q0);
    }
  }

  // Per channel block: its whole tiles of NQ vectors in one call (fwd_shifted_run; a last,
  // partial channel block by the checked tile), then one tail tile with the rest (AVX-512, 28x28:
  // 49 vectors with NQ = 5, 9 x 5 + 4; AVX2: 98 = 49 x 2, no tail).
  template <int CB, int KH, int KW>
  static void fwd_shifted_image(float* y, const float* xs, const float* wt, const float* bias,
                                bool relu, const fastconv::cpu::DirectConvArgs& a) {
    constexpr int NQ = shifted_nq(CB, KH == 3 && KW == 3);
    const int64_t P = a.oh * a.ow, nvec = (P + V::W - 1) / V::W;
    const int64_t ntiles = P / V::W / NQ, rest = nvec - ntiles * NQ;
    for (int64_t co0 = 0; co0 < a.cout; co0 += CB) {
      if (a.cout - co0 < CB) {
        for (int64_t t = 0; t < ntiles; ++t)
          fwd_shifted_tile<NQ, CB, KH, KW, true>(y, xs, wt, bias, relu, a, co0, t * NQ * V::W);
      } else if (a.cin == 1) {
        if (relu) {
          fwd_shifted_run<NQ, CB, KH, KW, true, 1>(y, xs, wt, bias, a, co0, ntiles);
        } else {
          fwd_shifted_run<NQ, CB, KH, KW, false, 1>(y, xs, wt, bias, a, co0, ntiles);
        }
      } else if (relu) {
        fwd_shifted_run<NQ, CB, KH, KW, true, 0>(y, xs, wt, bias, a, co0, ntiles);
      } else {
        fwd_shifted_run<NQ, CB, KH, KW, false, 0>(y, xs, wt, bias, a, co0, ntiles);
      }
      if (rest > 0)
        fwd_shifted_tail<CB, NQ>(rest, y, xs, wt, bias, relu, a, co0, ntiles * NQ * V::W);
    }
  }

  template <int CB>
  static void fwd_shifted_k(float* y, const float* xs, const float* wt, const float* bias,
                            bool relu, const fastconv::cpu::DirectConvArgs& a) {
    if (a.kh == 3 && a.kw == 3) {
      fwd_shifted_image<CB, 3, 3>(y, xs, wt, bias, relu, a);
    } else if (a.kh == 5 && a.kw == 5) {
      fwd_shifted_image<CB, 5, 5>(y, xs, wt, bias, relu, a);
    } else {
      fwd_shifted_image<CB, 0, 0>(y, xs, wt, bias, relu, a);
    }
  }

  static void fwd_shifted(float* y, const float* xs, const float* wt, const float* bias,
                          bool relu, const fastconv::cpu::DirectConvArgs& a) {
    switch (a.cb) {
      case 1: fwd_shifted_k<1>(y, xs, wt, bias, relu, a); break;
      case 4: fwd_shifted_k<4>(y, xs, wt, bias, relu, a); break;
      case 5: fwd_shifted_k<5>(y, xs, wt, bias, relu, a); break;
      default: fwd_shifted_k<6>(y, xs, wt, bias, relu, a); break;
    }
  }

  // Useful fraction of the computed lanes: row tiles (R rows x NV vectors) vs flat tiles of NQ.
  static double row_efficiency(const fastconv::cpu::DirectConvArgs& a, int64_t R, int64_t NV) {
    const int64_t tw = NV * V::W, rem = a.oh % R;
    const int64_t rows = a.oh / R * R + (rem == 0 ? 0 : (R >= 4 && rem <= 2) ? 2 : R);
    return double(a.ow) / double((a.ow + tw - 1) / tw * tw) * double(a.oh) / double(rows);
  }
  static double flat_efficiency(const fastconv::cpu::DirectConvArgs& a, int64_t NQ) {
    const int64_t tq = NQ * V::W, q = a.oh * a.wp;
    return double(a.oh * a.ow) / double((q + tq - 1) / tq * tq);
  }

  template <int R, int NV, int CB>
  static void fwd_k(float* y, const float* xpad, const float* wt, const float* bias, bool relu,
                    const fastconv::cpu::DirectConvArgs& a) {
    if (a.kh == 3 && a.kw == 3) {
      fwd_image<R, NV, CB, 3, 3>(y, xpad, wt, bias, relu, a);
    } else if (a.kh == 5 && a.kw == 5) {
      fwd_image<R, NV, CB, 5, 5>(y, xpad, wt, bias, relu, a);
    } else {
      fwd_image<R, NV, CB, 0, 0>(y, xpad, wt, bias, relu, a);
    }
  }

  template <int R, int NV>
  static void fwd_cb(int cb, float* y, const float* xpad, const float* wt, const float* bias,
                     bool relu, const fastconv::cpu::DirectConvArgs& a) {
    switch (cb) {
      case 1: fwd_k<R, NV, 1>(y, xpad, wt, bias, relu, a); break;
      case 4: fwd_k<R, NV, 4>(y, xpad, wt, bias, relu, a); break;
      case 5: fwd_k<R, NV, 5>(y, xpad, wt, bias, relu, a); break;
      default: fwd_k<R, NV, 6>(y, xpad, wt, bias, relu, a); break;
    }
  }

  // fwd_one_tile for one output channel: on AVX2 (16 registers); AVX-512 keeps its 2 x 2 row
  // tile there (4 chains).
  static constexpr bool ONE_TILE = BWD_REGS < 32;

  static void fwd(float* y, const float* xpad, const float* wt, const float* bias, bool relu,
                  const fastconv::cpu::DirectConvArgs& a) {
    const int cb = int(a.cb);
    const bool narrow = a.ow <= V::W;
    // Score = useful-lane fraction / load pressure (loads per FMA above 1/2 assumed to slow the
    // step down proportionally). Flat tiles only when the reduction is long enough to hide their
    // dearer, row-split stores (not for the C_in = 1 layers).
    auto pressure = [cb](int64_t vecs) {
      const double r = 2.0 * double(vecs + cb) / double(vecs * cb);
      return r > 1.0 ? r : 1.0;
    };
    const double row = narrow ? row_efficiency(a, R_NARROW, 1) / pressure(R_NARROW)
                              : row_efficiency(a, R_WIDE, 2) / pressure(2 * R_WIDE);
    int best_nq = 0;  // 0: row tiles
    double best = row * 1.03;
    if (a.cin * a.kh * a.kw >= 32) {
      for (int nq = NQ_MAX; nq >= 2; --nq) {
        const double e = flat_efficiency(a, nq) / pressure(nq);
        if (e > best) best = e, best_nq = nq;
      }
    }
    if (ONE_TILE && cb == 1 && !narrow && bias == nullptr && !relu &&
        a.kh == a.kw && (a.kh == 3 || a.kh == 5)) {
      if (a.kh == 5) {
        fwd_one_image<4, 2, 5, 5>(y, xpad, wt, a);
      } else {
        fwd_one_image<4, 2, 3, 3>(y, xpad, wt, a);
      }
    } else if (best_nq == 4 && NQ_MAX >= 4) {
      fwd_flat_cb<NQ_MAX >= 4 ? 4 : 2>(cb, y, xpad, wt, bias, relu, a);
    } else if (best_nq == 3 && NQ_MAX >= 3) {
      fwd_flat_cb<NQ_MAX >= 3 ? 3 : 2>(cb, y, xpad, wt, bias, relu, a);
    } else if (best_nq == 2) {
      fwd_flat_cb<2>(cb, y, xpad, wt, bias, relu, a);
    } else if (narrow) {
      fwd_cb<R_NARROW, 1>(cb, y, xpad, wt, bias, relu, a);
    } else {
      fwd_cb<R_WIDE, 2>(cb, y, xpad, wt, bias, relu, a);
    }
  }

  // --- shifted planes (the C_in < 4 kernels' input) ----------------------------------------------
  // The image's rows into the shifted planes (layout: ShiftPlanesFn); the zeros around them are
  // the caller's, written once per buffer. A row of n >= W floats (~28) is whole vectors, the
  // last one ending at n and overlapping the one before (the same values twice; no masked load,
  // no branchy partial store); shorter rows are one masked vector.
  static void shift_planes(float* xs, const float* x_n, int64_t H, int64_t W, int64_t top,
                           int64_t left, const fastconv::cpu::DirectConvArgs& a) {
    for (int64_t ci = 0; ci < a.cin; ++ci)
      for (int64_t kx = 0; kx < a.kw; ++kx) {
        // output column ox reads input column ox + kx - left, which exists for ox in [lo, hi)
        const int64_t lo0 = left - kx < 0 ? 0 : left - kx, lo = lo0 < a.ow ? lo0 : a.ow;
        const int64_t hi0 = W + left - kx < a.ow ? W + left - kx : a.ow, hi = hi0 < lo ? lo : hi0;
        const int64_t n = hi - lo;
        float* d = xs + ((ci * a.kw + kx) * a.hp + top) * a.ow + lo;
        const float* src = x_n + ci * H * W + lo + kx - left;
        if (n >= V::W) {
          for (int64_t iy = 0; iy < H; ++iy, d += a.ow, src += W) {
            for (int64_t i = 0; i < n - V::W; i += V::W) V::storeu(d + i, V::loadu(src + i));
            V::storeu(d + n - V::W, V::loadu(src + n - V::W));
          }
          continue;
        }
        if (n == 0) continue;
        const auto m = V::tail(n);
        for (int64_t iy = 0; iy < H; ++iy, d += a.ow, src += W)
          V::store_first(d, V::load_tail(src, m), n);
      }
  }
};
