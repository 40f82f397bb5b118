// conv2d_direct.inl — direct convolution (no im2col) for small C_in, stride 1, dilation 1, one
// image at a time, written against the SIMD interface of avx2/simd__avx2.h and
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
// Bwd-weights tile: CB output channels x T taps (one kernel row's kx0 .. kx0+T-1) of per-lane
// partial sums, streaming the image's dy rows and input rows; the T shifted input vectors are
// shared by CB channels and the CB dy vectors by T taps. Partial sums stay in lanes (the caller
// sums them in a fixed order at the end) so the result does not depend on the ISA's shuffles.

template <class V, int R_WIDE, int R_NARROW, int CB_BWD>
struct DirectConv {
  using reg = typename V::reg;

  // --- forward ---------------------------------------------------------------------------------
  template <int R, int NV, int CB>
  static void fwd_tile(float* y, const float* xpad, const float* w, const float* bias, bool relu,
                       const fastconv::cpu::DirectConvArgs& a, int64_t co0, int64_t oy0,
                       int64_t ox0) {
    const int64_t KK = a.kh * a.kw, wstride = a.cin * KK;
    const float* wc[CB];
#pragma GCC unroll 8
    for (int c = 0; c < CB; ++c) {
      const int64_t co = co0 + c < a.cout ? co0 + c : a.cout - 1;  // tail channels: duplicates
      wc[c] = w + co * wstride;
    }
    reg acc[R][NV][CB];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
#pragma GCC unroll 8
        for (int c = 0; c < CB; ++c) acc[i][v][c] = V::zero();
    const int64_t rows_in = R + a.kh - 1;
    for (int64_t ci = 0; ci < a.cin; ++ci) {
      const float* xc = xpad + ci * a.plane + oy0 * a.wp + ox0;
      const int64_t woff = ci * KK;
      for (int64_t r = 0; r < rows_in; ++r) {
        const float* xr = xc + r * a.wp;
        for (int64_t kx = 0; kx < a.kw; ++kx) {
          reg xv[NV];
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) xv[v] = V::loadu(xr + kx + v * V::W);
#pragma GCC unroll 8
          for (int i = 0; i < R; ++i) {
            const int64_t ky = r - i;
            if (ky < 0 || ky >= a.kh) continue;
            const int64_t t = woff + ky * a.kw + kx;
#pragma GCC unroll 8
            for (int c = 0; c < CB; ++c) {
              const reg wv = V::set1(wc[c][t]);
#pragma GCC unroll 4
              for (int v = 0; v < NV; ++v) acc[i][v][c] = V::fmadd(xv[v], wv, acc[i][v][c]);
            }
          }
        }
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

  template <int R, int NV, int CB>
  static void fwd_image(float* y, const float* xpad, const float* w, const float* bias, bool relu,
                        const fastconv::cpu::DirectConvArgs& a) {
    for (int64_t co0 = 0; co0 < a.cout; co0 += CB)
      for (int64_t oy0 = 0; oy0 < a.oh; oy0 += R)
        for (int64_t ox0 = 0; ox0 < a.ow; ox0 += NV * V::W)
          fwd_tile<R, NV, CB>(y, xpad, w, bias, relu, a, co0, oy0, ox0);
  }

  // Channel block among 4, 5, 6 with the least padding (ties: the larger block).
  static int pick_cb(int64_t cout) {
    int best = 6;
    int64_t best_pad = (cout + 5) / 6 * 6 - cout;
    for (int cb = 5; cb >= 4; --cb) {
      const int64_t pad = (cout + cb - 1) / cb * cb - cout;
      if (pad < best_pad) best = cb, best_pad = pad;
    }
    return best;
  }

  template <int R, int NV>
  static void fwd_cb(int cb, float* y, const float* xpad, const float* w, const float* bias,
                     bool relu, const fastconv::cpu::DirectConvArgs& a) {
    switch (cb) {
      case 4: fwd_image<R, NV, 4>(y, xpad, w, bias, relu, a); break;
      case 5: fwd_image<R, NV, 5>(y, xpad, w, bias, relu, a); break;
      default: fwd_image<R, NV, 6>(y, xpad, w, bias, relu, a); break;
    }
  }

  static void fwd(float* y, const float* xpad, const float* w, const float* bias, bool relu,
                  const fastconv::cpu::DirectConvArgs& a) {
    const int cb = pick_cb(a.cout);
    if (a.ow <= V::W) {
      fwd_cb<R_NARROW, 1>(cb, y, xpad, w, bias, relu, a);
    } else {
      fwd_cb<R_WIDE, 2>(cb, y, xpad, w, bias, relu, a);
    }
  }

  // --- backward weights ------------------------------------------------------------------------
  template <int T>
  static void bww_tile(float* acc, const float* dy, const float* xpad,
                       const fastconv::cpu::DirectConvArgs& a, int64_t co0, int64_t ci,
                       int64_t ky, int64_t kx0) {
    constexpr int CB = CB_BWD;
    const int64_t KK = a.kh * a.kw, ckk = a.cin * KK, ohw = a.oh * a.ow;
    const float* dyc[CB];
    float* ap[CB];
    reg s[CB][T];
#pragma GCC unroll 8
    for (int c = 0; c < CB; ++c) {
      const bool valid = co0 + c < a.cout;
      const int64_t co = valid ? co0 + c : a.cout - 1;
      dyc[c] = dy + co * ohw;
      ap[c] = valid ? acc + (co * ckk + ci * KK + ky * a.kw + kx0) * V::W : nullptr;
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) s[c][t] = valid ? V::loadu(ap[c] + t * V::W) : V::zero();
    }
    const int64_t nfull = a.ow / V::W * V::W;
    const auto mtail = V::tail(a.ow - nfull);
    const float* xbase = xpad + ci * a.plane + ky * a.wp + kx0;
    for (int64_t oy = 0; oy < a.oh; ++oy) {
      const float* xr = xbase + oy * a.wp;
      const int64_t dro = oy * a.ow;
      for (int64_t ox = 0; ox < nfull; ox += V::W) {
        reg d[CB];
#pragma GCC unroll 8
        for (int c = 0; c < CB; ++c) d[c] = V::loadu(dyc[c] + dro + ox);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const reg xv = V::loadu(xr + ox + t);
#pragma GCC unroll 8
          for (int c = 0; c < CB; ++c) s[c][t] = V::fmadd(d[c], xv, s[c][t]);
        }
      }
      if (nfull < a.ow) {  // masked loads: lanes past OW contribute 0 * 0, never 0 * Inf
        reg d[CB];
#pragma GCC unroll 8
        for (int c = 0; c < CB; ++c) d[c] = V::load_tail(dyc[c] + dro + nfull, mtail);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const reg xv = V::load_tail(xr + nfull + t, mtail);
#pragma GCC unroll 8
          for (int c = 0; c < CB; ++c) s[c][t] = V::fmadd(d[c], xv, s[c][t]);
        }
      }
    }
#pragma GCC unroll 8
    for (int c = 0; c < CB; ++c) {
      if (ap[c] == nullptr) continue;
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) V::storeu(ap[c] + t * V::W, s[c][t]);
    }
  }

  static void bwd_weights(float* acc, float* dbacc, const float* dy, const float* xpad,
                          const fastconv::cpu::DirectConvArgs& a) {
    constexpr int TMAX = 5;
    for (int64_t co0 = 0; co0 < a.cout; co0 += CB_BWD)
      for (int64_t ci = 0; ci < a.cin; ++ci)
        for (int64_t ky = 0; ky < a.kh; ++ky)
          for (int64_t kx0 = 0; kx0 < a.kw; kx0 += TMAX) {
            switch (a.kw - kx0 < TMAX ? a.kw - kx0 : TMAX) {
              case 1: bww_tile<1>(acc, dy, xpad, a, co0, ci, ky, kx0); break;
              case 2: bww_tile<2>(acc, dy, xpad, a, co0, ci, ky, kx0); break;
              case 3: bww_tile<3>(acc, dy, xpad, a, co0, ci, ky, kx0); break;
              case 4: bww_tile<4>(acc, dy, xpad, a, co0, ci, ky, kx0); break;
              default: bww_tile<5>(acc, dy, xpad, a, co0, ci, ky, kx0); break;
            }
          }
    if (dbacc == nullptr) return;
    const int64_t ohw = a.oh * a.ow, nfull = ohw / V::W * V::W;
    for (int64_t co = 0; co < a.cout; ++co) {
      const float* d = dy + co * ohw;
      reg s0 = V::loadu(dbacc + co * V::W), s1 = V::zero();
      int64_t i = 0;
      for (; i + 2 * V::W <= nfull; i += 2 * V::W) {
        s0 = V::add(s0, V::loadu(d + i));
        s1 = V::add(s1, V::loadu(d + i + V::W));
      }
      for (; i < nfull; i += V::W) s0 = V::add(s0, V::loadu(d + i));
      if (nfull < ohw) s1 = V::add(s1, V::load_tail(d + nfull, V::tail(ohw - nfull)));
      V::storeu(dbacc + co * V::W, V::add(s0, s1));
    }
  }
};
