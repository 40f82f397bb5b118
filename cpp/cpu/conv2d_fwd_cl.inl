// conv2d_fwd_cl.inl — direct convolution of ONE image with the output channels in the lanes
// (forward, and bwd_data as the transposed conv), stride 1, dilation 1. Include INSIDE the
// anonymous namespace of an ISA translation unit, after its SIMD interface.
//
// Why: the pixels-in-lanes kernels (conv2d_direct.inl) waste the lanes past a short output row
// (keras.conv2: 8 of 16 columns, lenet.conv2: 10 of 16). Here the lanes hold output channels
// (rounded up to coutp) and a tile is NP consecutive output pixels of one row x COV vectors of
// channels: per tap (ci, ky, kx), COV weight loads + NP broadcasts of the zero-bordered input
// (the NP pixels' inputs are consecutive floats of one padded row) for NP*COV FMAs. Weights come
// packed as wcl[((ky*cin + ci)*kw + kx)*coutp + co]; the input channels are cut into blocks whose
// weights stay in L1 while every tile of the image runs over them (partial sums go through ycl).
// Taps that only meet the zero border (rows outside [top, top + h), columns outside
// [left, left + w)) are skipped: whole kernel rows per output row, and a kx range per tile. That is
// exact (those products are 0) and takes most of the border waste out of bwd_data.
// The tiles write ycl[(oy*ow + ox)*coutp + co]; the driver transposes it into NCHW.

template <class V, int NP1, int NP2, int NP3, int NP4>
struct FwdChannelsInLanes {
  using reg = typename V::reg;
  using Args = fastconv::cpu::ClConvArgs;

  template <int COV, int NP>
  static void tile(float* ycl, const float* xpad, const float* wcl, const Args& a, int64_t oy,
                   int64_t ox0, int64_t co0, int64_t ci0, int64_t ci1) {
    float* out = ycl + (oy * a.ow + ox0) * a.coutp + co0;
    reg acc[NP][COV];
#pragma GCC unroll 16
    for (int p = 0; p < NP; ++p)
#pragma GCC unroll 4
      for (int c = 0; c < COV; ++c)
        acc[p][c] = ci0 == 0 ? V::zero() : V::loadu(out + p * a.coutp + c * V::W);
    const int64_t ky0 = a.top - oy > 0 ? a.top - oy : 0;
    const int64_t ky1 = a.top + a.h - oy < a.kh ? a.top + a.h - oy : a.kh;
    const int64_t kx0 = a.left - (ox0 + NP - 1) > 0 ? a.left - (ox0 + NP - 1) : 0;
    const int64_t kx1 = a.left + a.w - ox0 < a.kw ? a.left + a.w - ox0 : a.kw;
    for (int64_t ky = ky0; ky < ky1; ++ky) {
      const float* xr = xpad + ci0 * a.plane + (oy + ky) * a.wp + ox0;
      const float* wr = wcl + (ky * a.cin + ci0) * a.kw * a.coutp + co0;
      for (int64_t ci = ci0; ci < ci1; ++ci, xr += a.plane, wr += a.kw * a.coutp) {
        for (int64_t kx = kx0; kx < kx1; ++kx) {
          reg wv[COV];
#pragma GCC unroll 4
          for (int c = 0; c < COV; ++c) {
            wv[c] = V::loadu(wr + kx * a.coutp + c * V::W);
            // Keep the weights in registers: GCC otherwise folds each load into all NP FMAs.
            asm("" : "+v"(wv[c]));
          }
          // The NP pixels' inputs are consecutive floats. Opaque pointer: GCC otherwise carries
          // the loaded inputs from one kx to the next through stack spills and register shuffles.
          const float* xk = xr + kx;
          asm("" : "+r"(xk));
#pragma GCC unroll 16
          for (int p = 0; p < NP; ++p) {
            const reg xb = V::set1(xk[p]);
#pragma GCC unroll 4
            for (int c = 0; c < COV; ++c) acc[p][c] = V::fmadd(xb, wv[c], acc[p][c]);
          }
        }
      }
    }
#pragma GCC unroll 16
    for (int p = 0; p < NP; ++p)
#pragma GCC unroll 4
      for (int c = 0; c < COV; ++c) V::storeu(out + p * a.coutp + c * V::W, acc[p][c]);
  }

  // tile<COV, np> for a run-time np in [1, NP].
  template <int COV, int NP>
  static void tile_n(int64_t np, float* ycl, const float* xpad, const float* wcl, const Args& a,
                     int64_t oy, int64_t ox0, int64_t co0, int64_t ci0, int64_t ci1) {
    if (np == NP) {
      tile<COV, NP>(ycl, xpad, wcl, a, oy, ox0, co0, ci0, ci1);
    } else if constexpr (NP > 1) {
      tile_n<COV, NP - 1>(np, ycl, xpad, wcl, a, oy, ox0, co0, ci0, ci1);
    }
  }

  static constexpr int np_max(int cov) {
    return cov == 1 ? NP1 : cov == 2 ? NP2 : cov == 3 ? NP3 : NP4;
  }

  // Every output pixel of the image for channels [co0, co0 + COV*W), input channels [ci0, ci1):
  // the block's weights (ci1 - ci0) * kh * kw * COV vectors stay in L1 across all the tiles.
  // (Narrow tiles at the row ends, to skip more of bwd_data's zero taps, measured slower.)
  template <int COV>
  static void block(float* ycl, const float* xpad, const float* wcl, const Args& a, int64_t co0,
                    int64_t ci0, int64_t ci1) {
    constexpr int NPM = np_max(COV);
    const int64_t tiles = (a.ow + NPM - 1) / NPM, np = (a.ow + tiles - 1) / tiles;
    for (int64_t oy = 0; oy < a.oh; ++oy)
      for (int64_t ox0 = 0; ox0 < a.ow; ox0 += np) {
        const int64_t n = a.ow - ox0 < np ? a.ow - ox0 : np;
        tile_n<COV, NPM>(n, ycl, xpad, wcl, a, oy, ox0, co0, ci0, ci1);
      }
  }

  // Channel chunks: the coutp/W vectors cut into equal chunks of at most cov_max (7 -> 4 + 3).
  // cov_max trades weight reuse (pixels per tile, np_max(cov)) against broadcast reuse (cov):
  // the default minimises weight loads (counted double: they stream from L2) plus broadcasts
  // per FMA; a.cov_max > 0 forces it (A/B runs).
  static int64_t pick_cov(const Args& a) {
    if (a.cov_max >= 1 && a.cov_max <= 4) return a.cov_max;
    const int64_t nvec = a.coutp / V::W;
    int64_t best = 1;
    double best_cost = 1e30;
    for (int64_t cm = 4; cm >= 1; --cm) {
      const int64_t chunks = (nvec + cm - 1) / cm;
      const double cov = double(nvec) / double(chunks);
      const int64_t npm = np_max(int(cm)), tiles = (a.ow + npm - 1) / npm;
      const double np = double(a.ow) / double(tiles);
      const double cost = 2.0 / np + 1.0 / cov;
      if (cost < best_cost - 1e-9) best = cm, best_cost = cost;
    }
    return best;
  }

  static void run(float* ycl, const float* xpad, const float* wcl, const Args& a) {
    const int64_t nvec = a.coutp / V::W, cm = pick_cov(a);
    const int64_t chunks = (nvec + cm - 1) / cm, per = (nvec + chunks - 1) / chunks;
    // Input-channel blocks whose weights (cib * kh * kw * per vectors) fit ~16 KB of L1: the
    // whole weight set (keras.conv2: 840 KB) would otherwise stream from L2/L3 for every tile.
    const int64_t wbytes = a.kh * a.kw * per * V::W * int64_t(sizeof(float));
    const int64_t cib = wbytes >= 16 * 1024 ? 1 : (16 * 1024) / wbytes;
    for (int64_t v0 = 0; v0 < nvec; v0 += per) {
      const int64_t cov = nvec - v0 < per ? nvec - v0 : per;
      const int64_t co0 = v0 * V::W;
      for (int64_t ci0 = 0; ci0 < a.cin; ci0 += cib) {
        const int64_t ci1 = a.cin - ci0 < cib ? a.cin : ci0 + cib;
        switch (cov) {
          case 1: block<1>(ycl, xpad, wcl, a, co0, ci0, ci1); break;
          case 2: block<2>(ycl, xpad, wcl, a, co0, ci0, ci1); break;
          case 3: block<3>(ycl, xpad, wcl, a, co0, ci0, ci1); break;
          default: block<4>(ycl, xpad, wcl, a, co0, ci0, ci1); break;
        }
      }
    }
  }
};
