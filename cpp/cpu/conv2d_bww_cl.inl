// conv2d_bww_cl.inl — weight gradient of a stride-1, dilation-1 conv with (kx, ci) in the lanes.
// Include INSIDE the anonymous namespace of an ISA translation unit, after its SIMD interface.
//
// Why: the output-channels-in-lanes kernel (conv2d_direct_bwd_weights.inl, bwd_weights_t) wastes the lanes
// past C_out (cnn1.conv2: 20 channels in 32 lanes) and needs 0.7 loads per FMA. Here the image is
// laid out channels-last and zero-padded, xcl[(row*wp + col)*cin + ci], so the KW*C_in inputs one
// kernel row meets at an output pixel are L = KW*C_in contiguous floats. For each (co, ky):
//     acc[(co*kh + ky)*lp + j] += sum over pixels (oy, ox) of dy[co][oy][ox] * xcl[((oy+ky)*wp + ox)*cin + j]
// with j = kx*cin + ci < L (lp = L rounded up to the lanes). A tile is CO channels x NV vectors of
// j: per pixel NV vector loads + CO broadcasts of dy for CO*NV FMAs (3 x 7: 10 loads, 21 FMAs;
// 8 x 3 for rows of <= 3 vectors: 11 loads, 24 FMAs),
// every lane useful but the last vector's tail (cnn1.conv2: 100 of 112, vgg: all). The lanes past
// L accumulate whatever follows in xcl and are never read. Complete dot products, no per-lane
// partials: the caller sums its threads' acc in a fixed order (deterministic at a thread count).

// Chunk k of n vectors cut into nch chunks whose sizes differ by at most one, the larger first:
// 13 vectors in chunks of <= 3 are 3+3+3+2+2, not 3+3+3+3+1 (on AVX2 a 4 x 1 tile is load-bound:
// 5 loads per 4 FMAs; cnn1.conv2's rows of 13 vectors spent 12% of the weight gradient there).
inline int64_t chunk_size(int64_t n, int64_t nch, int64_t k) {
  return n / nch + (k < n % nch ? 1 : 0);
}

template <class V, int CO_MAX, int NV_MAX>
struct BwdWeightsChannelsLast {
  using reg = typename V::reg;
  static constexpr int kCoMax = CO_MAX, kNvMax = NV_MAX;

  // Out of line: GCC inlined the tiles into the rows Winograd's point loop once it took a
  // between() and spilled there (cnn1.conv2 1.2x slower).
  template <int CO, int NV>
  [[gnu::noinline]] static void tile(float* acc, const float* dy, const float* xcl,
                   const fastconv::cpu::DirectConvArgs& a, int64_t lp, int64_t co0, int64_t ky,
                   int64_t j0, int64_t oy0, int64_t oy1) {
    const int64_t P = a.oh * a.ow, row = a.wp * a.cin;
    reg s[CO][NV];
#pragma GCC unroll 8
    for (int c = 0; c < CO; ++c)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) s[c][v] = V::zero();
    const float* dyc[CO];
#pragma GCC unroll 8
    for (int c = 0; c < CO; ++c) dyc[c] = dy + (co0 + c) * P;
    // The partial sums this tile adds into at its end: fetched now, behind the tile's FMAs (the
    // whole acc is C_out x KH x lp floats, keras.conv2 750 KB, and each tile's slice is touched
    // once per image: its read-modify-write missed L1/L2, ~30% of the AVX2 tile's samples).
#pragma GCC unroll 8
    for (int c = 0; c < CO; ++c)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v)
        __builtin_prefetch(acc + ((co0 + c) * a.kh + ky) * lp + j0 + v * V::W, 0, 3);
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      const float* xr = xcl + (oy + ky) * row + j0;
      const int64_t q0 = oy * a.ow;
      for (int64_t ox = 0; ox < a.ow; ++ox) {
        const float* xp = xr + ox * a.cin;
        reg xv[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
          xv[v] = V::loadu(xp + v * V::W);
          // Keep the vector in a register: GCC otherwise folds the load into each of the CO
          // FMAs that use it (CO*NV loads instead of NV, and this loop becomes load-bound).
          asm("" : "+v"(xv[v]));
        }
#pragma GCC unroll 8
        for (int c = 0; c < CO; ++c) {
          const reg d = V::set1(dyc[c][q0 + ox]);
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) s[c][v] = V::fmadd(xv[v], d, s[c][v]);
        }
      }
    }
#pragma GCC unroll 8
    for (int c = 0; c < CO; ++c) {
      float* ap = acc + ((co0 + c) * a.kh + ky) * lp + j0;
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v)
        V::storeu(ap + v * V::W, V::add(V::loadu(ap + v * V::W), s[c][v]));
    }
  }

  template <int CO>
  static void chunk(float* acc, const float* dy, const float* xcl,
                    const fastconv::cpu::DirectConvArgs& a, int64_t lp, int64_t co0, int64_t ky,
                    int64_t j0, int64_t nv, int64_t oy0, int64_t oy1) {
    static_assert(NV_MAX >= 1 && NV_MAX <= 8, "NV_MAX: 1..8");
    switch (nv) {
      case 1: tile<CO, 1>(acc, dy, xcl, a, lp, co0, ky, j0, oy0, oy1); break;
      case 2: tile<CO, (NV_MAX >= 2 ? 2 : 1)>(acc, dy, xcl, a, lp, co0, ky, j0, oy0, oy1); break;
      case 3: tile<CO, (NV_MAX >= 3 ? 3 : 1)>(acc, dy, xcl, a, lp, co0, ky, j0, oy0, oy1); break;
      case 4: tile<CO, (NV_MAX >= 4 ? 4 : 1)>(acc, dy, xcl, a, lp, co0, ky, j0, oy0, oy1); break;
      case 5: tile<CO, (NV_MAX >= 5 ? 5 : 1)>(acc, dy, xcl, a, lp, co0, ky, j0, oy0, oy1); break;
      case 6: tile<CO, (NV_MAX >= 6 ? 6 : 1)>(acc, dy, xcl, a, lp, co0, ky, j0, oy0, oy1); break;
      case 7: tile<CO, (NV_MAX >= 7 ? 7 : 1)>(acc, dy, xcl, a, lp, co0, ky, j0, oy0, oy1); break;
      default: tile<CO, NV_MAX>(acc, dy, xcl, a, lp, co0, ky, j0, oy0, oy1); break;
    }
  }

  template <int CO>
  static void chunk_co(int64_t co, float* acc, const float* dy, const float* xcl,
                       const fastconv::cpu::DirectConvArgs& a, int64_t lp, int64_t co0,
                       int64_t ky, int64_t j0, int64_t nv, int64_t oy0, int64_t oy1) {
    if (co == CO) {
      chunk<CO>(acc, dy, xcl, a, lp, co0, ky, j0, nv, oy0, oy1);
    } else if constexpr (CO > 1) {
      chunk_co<CO - 1>(co, acc, dy, xcl, a, lp, co0, ky, j0, nv, oy0, oy1);
    }
  }

  // One image: every (channel block, kernel row, lane chunk). The lp/W vectors are cut into equal
  // chunks of at most NV_MAX (24 vectors -> 4 x 6, not 7+7+7+3; chunk_size), so no tile runs
  // nearly empty.
  // When the padded image is larger than L1 (~40 KB), output rows are taken in blocks of rb rows
  // (~32 KB of input) and every channel block runs over a block before the next: vgg.b's 460 KB
  // image was otherwise streamed from L2 once per (channel block, kernel row, chunk). Images that
  // fit keep one block (cnn1.conv2 ran 10% slower with 3-row blocks: more accumulator traffic).
  static void run(float* acc, const float* dy, const float* xcl,
                  const fastconv::cpu::DirectConvArgs& a, int64_t lp) {
    run(acc, dy, xcl, a, lp, [] {});
  }

  // ... with between() called after every tile (BwdWeightsRows: a few prefetches of the next
  // images each).
  template <class Between>
  static void run(float* acc, const float* dy, const float* xcl,
                  const fastconv::cpu::DirectConvArgs& a, int64_t lp, Between&& between) {
    const int64_t nvec = lp / V::W;
    // Channel blocks of equal size up to CO_MAX (CO_MAX 3: 100 -> 32 x 3 + 2 x 2, not a last
    // block of 1 whose tile is load-bound; CO_MAX 8: 16 -> 8 + 8).
    const int64_t cblocks = (a.cout + CO_MAX - 1) / CO_MAX;
    const int64_t nchunks = (nvec + NV_MAX - 1) / NV_MAX;
    const int64_t row_bytes = a.wp * a.cin * int64_t(sizeof(float));
    int64_t rb = (a.oh + a.kh - 1) * row_bytes <= 40 * 1024 ? a.oh : (32 * 1024) / row_bytes;
    rb = rb < 1 ? 1 : rb > a.oh ? a.oh : rb;
    for (int64_t oy0 = 0; oy0 < a.oh; oy0 += rb) {
      const int64_t oy1 = a.oh - oy0 < rb ? a.oh : oy0 + rb;
      for (int64_t ky = 0; ky < a.kh; ++ky)
        for (int64_t k = 0, v0 = 0; k < nchunks; ++k) {
          const int64_t nv = chunk_size(nvec, nchunks, k);
          const int64_t j0 = v0 * V::W;
          v0 += nv;
          for (int64_t b = 0, co0 = 0; b < cblocks; ++b) {
            const int64_t co1 = (b + 1) * a.cout / cblocks;
            chunk_co<CO_MAX>(co1 - co0, acc, dy, xcl, a, lp, co0, ky, j0, nv, oy0, oy1);
            between();
            co0 = co1;
          }
        }
    }
  }
};

// The same weight gradient with the lanes over the whole (ky, kx, ci) reduction, f = ky*L + kx*cin
// + ci < kh*L: acc[co*lpf + f], lpf = kh*L rounded up to the lanes. Why: with L % W small the
// per-row layout wastes a tail vector per kernel row (cnn1.conv2: L = 100, 5 rows x 7 vectors =
// 35 for 500 lanes); flattened it takes 32. A vector whose lanes cross from kernel row ky to ky+1
// (a "split" vector) is two masked loads: its low lanes from row ky, its high lanes from row ky+1,
// which in xcl is `row - L` floats further on. Needs L >= W (a vector meets at most two rows).
// Vectors are cut into runs that start at every split vector and every row start, so all the
// vectors of a run after its first lie in one kernel row; runs are cut into equal chunks of at
// most NV_MAX, and a chunk's split vector (if any) is its first.
template <class V, int CO_MAX, int NV_MAX>
struct BwdWeightsFlatLanes {
  using reg = typename V::reg;

  // ky_b: the kernel row of the chunk's vectors (for a split first vector: of its high lanes);
  // lo_n > 0: the first vector is split, its lanes [0, lo_n) from row ky_b - 1.
  template <int CO, int NV, bool SPLIT>
  static void tile(float* acc, const float* dy, const float* xcl,
                   const fastconv::cpu::DirectConvArgs& a, int64_t lpf, int64_t co0, int64_t f0,
                   int64_t ky_b, int64_t lo_n, int64_t oy0, int64_t oy1) {
    const int64_t P = a.oh * a.ow, row = a.wp * a.cin, L = a.kw * a.cin;
    const int64_t back = row - L;  // from a lane's float in row ky_b to the same lane in ky_b - 1
    const int64_t jb = f0 - ky_b * L;  // < 0 for a split chunk: its high lanes start at -jb
    const typename V::tmask lo = V::tail(SPLIT ? lo_n : 0), hi = V::range(SPLIT ? lo_n : 0, V::W);
    reg s[CO][NV];
#pragma GCC unroll 4
    for (int c = 0; c < CO; ++c)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) s[c][v] = V::zero();
    const float* dyc[CO];
#pragma GCC unroll 4
    for (int c = 0; c < CO; ++c) dyc[c] = dy + (co0 + c) * P;
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      const float* xr = xcl + (oy + ky_b) * row + jb;
      const int64_t q0 = oy * a.ow;
      for (int64_t ox = 0; ox < a.ow; ++ox) {
        const float* xp = xr + ox * a.cin;
        reg xv[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
          if (SPLIT && v == 0) {
            xv[0] = V::load_merge(V::load_tail(xp - back, lo), hi, xp);
          } else {
            xv[v] = V::loadu(xp + v * V::W);
          }
          asm("" : "+v"(xv[v]));  // keep it in a register (see BwdWeightsChannelsLast::tile)
        }
#pragma GCC unroll 4
        for (int c = 0; c < CO; ++c) {
          const reg d = V::set1(dyc[c][q0 + ox]);
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) s[c][v] = V::fmadd(xv[v], d, s[c][v]);
        }
      }
    }
#pragma GCC unroll 4
    for (int c = 0; c < CO; ++c) {
      float* ap = acc + (co0 + c) * lpf + f0;
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v)
        V::storeu(ap + v * V::W, V::add(V::loadu(ap + v * V::W), s[c][v]));
    }
  }

  template <int CO, bool SPLIT>
  static void chunk_nv(int64_t nv, float* acc, const float* dy, const float* xcl,
                       const fastconv::cpu::DirectConvArgs& a, int64_t lpf, int64_t co0,
                       int64_t f0, int64_t ky_b, int64_t lo_n, int64_t oy0, int64_t oy1) {
    static_assert(NV_MAX >= 1 && NV_MAX <= 8, "NV_MAX: 1..8");
#define FC_FLAT_TILE(N) \
  tile<CO, (NV_MAX >= N ? N : 1), SPLIT>(acc, dy, xcl, a, lpf, co0, f0, ky_b, lo_n, oy0, oy1)
    switch (nv) {
      case 1: FC_FLAT_TILE(1); break;
      case 2: FC_FLAT_TILE(2); break;
      case 3: FC_FLAT_TILE(3); break;
      case 4: FC_FLAT_TILE(4); break;
      case 5: FC_FLAT_TILE(5); break;
      case 6: FC_FLAT_TILE(6); break;
      case 7: FC_FLAT_TILE(7); break;
      default: FC_FLAT_TILE(8); break;
    }
#undef FC_FLAT_TILE
  }

  template <bool SPLIT>
  static void chunk(int64_t nv, float* acc, const float* dy, const float* xcl,
                    const fastconv::cpu::DirectConvArgs& a, int64_t lpf, int64_t f0, int64_t ky_b,
                    int64_t lo_n, int64_t oy0, int64_t oy1) {
    for (int64_t co0 = 0; co0 < a.cout; co0 += CO_MAX) {
      const int64_t co = a.cout - co0 < CO_MAX ? a.cout - co0 : CO_MAX;
      if (co == CO_MAX)
        chunk_nv<CO_MAX, SPLIT>(nv, acc, dy, xcl, a, lpf, co0, f0, ky_b, lo_n, oy0, oy1);
      else if (co == 3)
        chunk_nv<(CO_MAX >= 3 ? 3 : 1), SPLIT>(nv, acc, dy, xcl, a, lpf, co0, f0, ky_b, lo_n, oy0, oy1);
      else if (co == 2)
        chunk_nv<(CO_MAX >= 2 ? 2 : 1), SPLIT>(nv, acc, dy, xcl, a, lpf, co0, f0, ky_b, lo_n, oy0, oy1);
      else
        chunk_nv<1, SPLIT>(nv, acc, dy, xcl, a, lpf, co0, f0, ky_b, lo_n, oy0, oy1);
    }
  }

  // One image (output rows in one block: the flat layout is taken only for images that fit L1,
  // see the driver).
  static void run(float* acc, const float* dy, const float* xcl,
                  const fastconv::cpu::DirectConvArgs& a, int64_t lpf) {
    const int64_t L = a.kw * a.cin, nvec = lpf / V::W;
    const auto split = [&](int64_t v) {
      const int64_t f = v * V::W, r = f / L;
      return r < a.kh - 1 && f + V::W > (r + 1) * L;
    };
    const auto run_start = [&](int64_t v) { return split(v) || (v * V::W) % L == 0; };
    for (int64_t v0 = 0; v0 < nvec;) {
      int64_t v1 = v0 + 1;
      while (v1 < nvec && !run_start(v1)) ++v1;
      const int64_t len = v1 - v0, nch = (len + NV_MAX - 1) / NV_MAX;
      for (int64_t k = 0, c0 = v0; k < nch; c0 += chunk_size(len, nch, k++)) {
        const int64_t nv = chunk_size(len, nch, k), f0 = c0 * V::W;
        if (c0 == v0 && split(v0)) {
          const int64_t ky_b = f0 / L + 1;
          chunk<true>(nv, acc, dy, xcl, a, lpf, f0, ky_b, ky_b * L - f0, 0, a.oh);
        } else {
          chunk<false>(nv, acc, dy, xcl, a, lpf, f0, f0 / L, 0, 0, a.oh);
        }
      }
      v0 = v1;
    }
  }
};
