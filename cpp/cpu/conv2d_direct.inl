// conv2d_direct.inl — direct convolution (no im2col), stride 1, dilation 1, one image at a time
// (forward for every C_in, also serving bwd_data; bwd_weights per-lane for C_in < 4 and
// channels-in-lanes above), written against the SIMD interface of avx2/simd__avx2.h and
// avx512/simd__avx512.h. Include INSIDE the anonymous namespace of an ISA translation unit.
//
// Why: with C_in = 1 the GEMM's reduction is only KH*KW = 9..25 long, so im2col + packing moves
// more bytes than the multiply-adds are worth. Here the input is read straight from a zero-padded
// copy of the image (padding then costs no branches) and the output is register-tiled.
//
// Forward tile: R output rows x NV vectors of output columns x CB output channels accumulators.
// Input row r of the tile's (R + KH - 1)-row window is loaded once per kx and feeds every output
// row i of the tile with ky = r - i in range, so each loaded vector serves up to min(R, KH) rows x
// CB channels; weights are broadcast from memory. Lanes past OW compute junk that is never stored.
// Bwd-weights tile: CB output channels x T taps of per-lane partial sums, streaming the image's
// dy planes and shifted copies of its input as flat runs (see bwd_weights); each loaded input
// vector is shared by CB channels and each dy vector by T taps. Partial sums stay in lanes (the
// caller sums them in a fixed order at the end) so the result does not depend on the ISA's shuffles.

template <class V, int R_WIDE, int R_NARROW, int BWD_REGS, int NQ_MAX, int COV_MAX>
struct DirectConv {
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

  // `ntiles` whole tiles from q = 0 in one call, for the 3x3 kernels: with only 9 taps a tile is
  // short, and a call per tile cost fashion.conv1 a quarter of its forward time (calls, set-up).
  // The 5x5 tiles keep a call each with the checked stores: measured, both this loop and the
  // unchecked stores made keras.conv1 9-25% slower (its 173 KB output planes stream to memory).
  template <int NQ, int CB, int KH, int KW>
  static void fwd_shifted_tiles(float* y, const float* xs, const float* wt, const float* bias,
                                bool relu, const fastconv::cpu::DirectConvArgs& a, int64_t co0,
                                int64_t ntiles) {
    for (int64_t t = 0; t < ntiles; ++t)
      fwd_shifted_body<NQ, CB, KH, KW, true>(y, xs, wt, bias, relu, a, co0, t * NQ * V::W);
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

  // The tiles of NQ whole vectors, then per channel block one tail tile with the rest (49 vectors
  // with NQ = 5: 9 x 5 + 4); 3x3: per channel block, all its tiles in one call.
  template <int CB, int KH, int KW>
  static void fwd_shifted_image(float* y, const float* xs, const float* wt, const float* bias,
                                bool relu, const fastconv::cpu::DirectConvArgs& a) {
    constexpr int NQ = shifted_nq(CB, KH == 3 && KW == 3);
    const int64_t P = a.oh * a.ow, nvec = (P + V::W - 1) / V::W;
    const int64_t ntiles = P / V::W / NQ, rest = nvec - ntiles * NQ;
    if constexpr (KH == 3 && KW == 3) {
      for (int64_t co0 = 0; co0 < a.cout; co0 += CB) {
        fwd_shifted_tiles<NQ, CB, KH, KW>(y, xs, wt, bias, relu, a, co0, ntiles);
        if (rest > 0)
          fwd_shifted_tail<CB, NQ>(rest, y, xs, wt, bias, relu, a, co0, ntiles * NQ * V::W);
      }
    } else {
      for (int64_t t = 0; t < ntiles; ++t)
        for (int64_t co0 = 0; co0 < a.cout; co0 += CB)
          fwd_shifted_tile<NQ, CB, KH, KW, false>(y, xs, wt, bias, relu, a, co0, t * NQ * V::W);
      if (rest > 0)
        for (int64_t co0 = 0; co0 < a.cout; co0 += CB)
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
  // the caller's, written once per buffer. Rows of ~28 floats: one vector + one masked vector.
  static void shift_planes(float* xs, const float* x_n, int64_t H, int64_t W, int64_t top,
                           int64_t left, const fastconv::cpu::DirectConvArgs& a) {
    for (int64_t ci = 0; ci < a.cin; ++ci)
      for (int64_t kx = 0; kx < a.kw; ++kx) {
        // output column ox reads input column ox + kx - left, which exists for ox in [lo, hi)
        const int64_t lo0 = left - kx < 0 ? 0 : left - kx, lo = lo0 < a.ow ? lo0 : a.ow;
        const int64_t hi0 = W + left - kx < a.ow ? W + left - kx : a.ow, hi = hi0 < lo ? lo : hi0;
        const int64_t n = hi - lo, nfull = n / V::W * V::W;
        const auto m = V::tail(n - nfull);
        float* d = xs + ((ci * a.kw + kx) * a.hp + top) * a.ow + lo;
        const float* src = x_n + ci * H * W + lo + kx - left;
        for (int64_t iy = 0; iy < H; ++iy, d += a.ow, src += W) {
          for (int64_t i = 0; i < nfull; i += V::W) V::storeu(d + i, V::loadu(src + i));
          if (nfull < n) V::store_tail(d + nfull, V::load_tail(src + nfull, m), m);
        }
      }
  }

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
