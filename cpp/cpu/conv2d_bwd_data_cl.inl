// conv2d_bwd_data_cl.inl — bwd_data of ONE image, stride 1, dilation 1, with the input channels
// (dx's channels) in the lanes and dy read in place: every multiply-add is a useful one.
// Include INSIDE the anonymous namespace of an ISA translation unit, after its SIMD interface.
//
// Why: as a forward conv of the zero-padded dy (conv2d_fwd_cl.inl), keras.conv2's bwd_data (dy 8x8,
// dx 12x12, 5x5) multiplies 1.5x the useful work even with zero kernel rows skipped, because a
// tile of dx pixels needs every kx. Scattering instead: dy pixel (oy, ox) adds
// w[co][.][ky][kx] * dy[co][oy][ox] to dx column ox + kx - pad_left of row oy + ky - pad_top, so a
// tile of TX consecutive dy pixels of one row feeds the TX + KW - 1 padded dx columns
// [ox0, ox0 + TX + KW - 1) held in registers (COV vectors of channels each): per (co, kx), COV
// weight loads + TX broadcasts of dy for TX*COV FMAs, none of them on zeros. Tiles of one row
// overlap by KW - 1 columns, so they add into ycl, a zeroed (H x (OW + KW - 1) x cinp) buffer
// with the padded columns; the driver unpacks columns [pad_left, pad_left + W).
// Weights: wb[((ky*cout + co)*KW + kx)*cinp + ci] = w[co][ci][ky][kx]. Output channels (the
// reduction) are cut into blocks whose weights stay in L1 while all the image's tiles run.

template <class V, int NX1, int NX2>
struct BwdDataScatter {
  using reg = typename V::reg;
  using Args = fastconv::cpu::ScatterArgs;

  template <int COV, int TX, int KW>
  static void tile(float* ycl, const float* dy, const float* wb, const Args& a, int64_t iy,
                   int64_t ox0, int64_t c0, int64_t co0, int64_t co1) {
    constexpr int NX = TX + KW - 1;
    const int64_t wrow = a.ow + KW - 1;
    float* out = ycl + (iy * wrow + ox0) * a.cinp + c0;
    reg acc[NX][COV];
#pragma GCC unroll 16
    for (int x = 0; x < NX; ++x)
#pragma GCC unroll 4
      for (int c = 0; c < COV; ++c) acc[x][c] = V::loadu(out + x * a.cinp + c * V::W);
    const int64_t ohw = a.oh * a.ow;
    // Kernel rows whose dy row oy = iy + top - ky exists.
    const int64_t ky0 = iy + a.top - (a.oh - 1) > 0 ? iy + a.top - (a.oh - 1) : 0;
    const int64_t ky1 = iy + a.top + 1 < a.kh ? iy + a.top + 1 : a.kh;
    for (int64_t ky = ky0; ky < ky1; ++ky) {
      const float* d = dy + co0 * ohw + (iy + a.top - ky) * a.ow + ox0;
      const float* w = wb + ((ky * a.cout + co0) * KW) * a.cinp + c0;
      for (int64_t co = co0; co < co1; ++co, d += ohw, w += KW * a.cinp) {
        // Opaque pointer: GCC otherwise carries broadcasts across iterations through spills.
        const float* dd = d;
        asm("" : "+r"(dd));
#pragma GCC unroll 8
        for (int kx = 0; kx < KW; ++kx) {
          reg wv[COV];
#pragma GCC unroll 4
          for (int c = 0; c < COV; ++c) {
            wv[c] = V::loadu(w + kx * a.cinp + c * V::W);
            asm("" : "+v"(wv[c]));  // one load per vector, not one per FMA
          }
#pragma GCC unroll 16
          for (int t = 0; t < TX; ++t) {
            const reg db = V::set1(dd[t]);
#pragma GCC unroll 4
            for (int c = 0; c < COV; ++c) acc[t + kx][c] = V::fmadd(db, wv[c], acc[t + kx][c]);
          }
        }
      }
    }
#pragma GCC unroll 16
    for (int x = 0; x < NX; ++x)
#pragma GCC unroll 4
      for (int c = 0; c < COV; ++c) V::storeu(out + x * a.cinp + c * V::W, acc[x][c]);
  }

  // tile<COV, tx, KW> for a run-time tx in [1, TX].
  template <int COV, int TX, int KW>
  static void tile_n(int64_t tx, float* ycl, const float* dy, const float* wb, const Args& a,
                     int64_t iy, int64_t ox0, int64_t c0, int64_t co0, int64_t co1) {
    if (tx == TX) {
      tile<COV, TX, KW>(ycl, dy, wb, a, iy, ox0, c0, co0, co1);
    } else if constexpr (TX > 1) {
      tile_n<COV, TX - 1, KW>(tx, ycl, dy, wb, a, iy, ox0, c0, co0, co1);
    }
  }

  // Registers: NX = TX + KW - 1 columns x COV accumulators + COV weights + one broadcast.
  static constexpr int nx_max(int cov) { return cov == 1 ? NX1 : NX2; }

  template <int COV, int KW>
  static void block(float* ycl, const float* dy, const float* wb, const Args& a, int64_t c0,
                    int64_t co0, int64_t co1) {
    constexpr int TXM = nx_max(COV) - (KW - 1);
    static_assert(TXM >= 1, "tile too small");
    const int64_t tiles = (a.ow + TXM - 1) / TXM, tx = (a.ow + tiles - 1) / tiles;
    for (int64_t iy = 0; iy < a.h; ++iy)
      for (int64_t ox0 = 0; ox0 < a.ow; ox0 += tx)
        tile_n<COV, TXM, KW>(a.ow - ox0 < tx ? a.ow - ox0 : tx, ycl, dy, wb, a, iy, ox0, c0, co0,
                             co1);
  }

  template <int KW>
  static void run_kw(float* ycl, const float* dy, const float* wb, const Args& a) {
    const int64_t nvec = a.cinp / V::W;
    const int64_t per = nvec >= 2 ? 2 : 1;
    // Output-channel blocks whose weights (cob * kh * KW * per vectors) fit ~16 KB of L1.
    const int64_t wbytes = a.kh * KW * per * V::W * int64_t(sizeof(float));
    const int64_t cob = wbytes >= 16 * 1024 ? 1 : (16 * 1024) / wbytes;
    for (int64_t v0 = 0; v0 < nvec; v0 += per) {
      const int64_t c0 = v0 * V::W;
      for (int64_t co0 = 0; co0 < a.cout; co0 += cob) {
        const int64_t co1 = a.cout - co0 < cob ? a.cout : co0 + cob;
        if (nvec - v0 >= 2) {
          block<2, KW>(ycl, dy, wb, a, c0, co0, co1);
        } else {
          block<1, KW>(ycl, dy, wb, a, c0, co0, co1);
        }
      }
    }
  }

  // Compile-time kernel widths (the accumulator indices t + kx must be constants): 3 and 5, the
  // NETWORKS.md kernels; the caller keeps other widths on the other paths.
  static bool supports(int64_t kw) { return kw == 3 || kw == 5; }

  static void run(float* ycl, const float* dy, const float* wb, const Args& a) {
    if (a.kw == 3) {
      run_kw<3>(ycl, dy, wb, a);
    } else {
      run_kw<5>(ycl, dy, wb, a);
    }
  }
};
