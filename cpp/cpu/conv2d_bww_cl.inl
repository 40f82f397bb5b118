// conv2d_bww_cl.inl — weight gradient of a stride-1, dilation-1 conv with (kx, ci) in the lanes.
// Include INSIDE the anonymous namespace of an ISA translation unit, after its SIMD interface.
//
// Why: the output-channels-in-lanes kernel (conv2d_direct.inl, bwd_weights_t) wastes the lanes
// past C_out (cnn1.conv2: 20 channels in 32 lanes) and needs 0.7 loads per FMA. Here the image is
// laid out channels-last and zero-padded, xcl[(row*wp + col)*cin + ci], so the KW*C_in inputs one
// kernel row meets at an output pixel are L = KW*C_in contiguous floats. For each (co, ky):
//     acc[(co*kh + ky)*lp + j] += sum over pixels (oy, ox) of dy[co][oy][ox] * xcl[((oy+ky)*wp + ox)*cin + j]
// with j = kx*cin + ci < L (lp = L rounded up to the lanes). A tile is CO channels x NV vectors of
// j: per pixel NV vector loads + CO broadcasts of dy for CO*NV FMAs (3 x 7: 10 loads, 21 FMAs),
// every lane useful but the last vector's tail (cnn1.conv2: 100 of 112, vgg: all). The lanes past
// L accumulate whatever follows in xcl and are never read. Complete dot products, no per-lane
// partials: the caller sums its threads' acc in a fixed order (deterministic at a thread count).

template <class V, int CO_MAX, int NV_MAX>
struct BwdWeightsChannelsLast {
  using reg = typename V::reg;

  template <int CO, int NV>
  static void tile(float* acc, const float* dy, const float* xcl,
                   const fastconv::cpu::DirectConvArgs& a, int64_t lp, int64_t co0, int64_t ky,
                   int64_t j0, int64_t oy0, int64_t oy1) {
    const int64_t P = a.oh * a.ow, row = a.wp * a.cin;
    reg s[CO][NV];
#pragma GCC unroll 4
    for (int c = 0; c < CO; ++c)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) s[c][v] = V::zero();
    const float* dyc[CO];
#pragma GCC unroll 4
    for (int c = 0; c < CO; ++c) dyc[c] = dy + (co0 + c) * P;
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

  // One image: every (channel block, kernel row, lane chunk). The lp/W vectors are cut into equal
  // chunks of at most NV_MAX (24 vectors -> 4 x 6, not 7+7+7+3), so no tile runs nearly empty.
  // When the padded image is larger than L1 (~40 KB), output rows are taken in blocks of rb rows
  // (~32 KB of input) and every channel block runs over a block before the next: vgg.b's 460 KB
  // image was otherwise streamed from L2 once per (channel block, kernel row, chunk). Images that
  // fit keep one block (cnn1.conv2 ran 10% slower with 3-row blocks: more accumulator traffic).
  static void run(float* acc, const float* dy, const float* xcl,
                  const fastconv::cpu::DirectConvArgs& a, int64_t lp) {
    const int64_t nvec = lp / V::W;
    const int64_t nchunks = (nvec + NV_MAX - 1) / NV_MAX;
    const int64_t per = (nvec + nchunks - 1) / nchunks;
    const int64_t row_bytes = a.wp * a.cin * int64_t(sizeof(float));
    int64_t rb = (a.oh + a.kh - 1) * row_bytes <= 40 * 1024 ? a.oh : (32 * 1024) / row_bytes;
    rb = rb < 1 ? 1 : rb > a.oh ? a.oh : rb;
    for (int64_t oy0 = 0; oy0 < a.oh; oy0 += rb) {
      const int64_t oy1 = a.oh - oy0 < rb ? a.oh : oy0 + rb;
      for (int64_t ky = 0; ky < a.kh; ++ky)
        for (int64_t v0 = 0; v0 < nvec; v0 += per) {
          const int64_t nv = nvec - v0 < per ? nvec - v0 : per;
          const int64_t j0 = v0 * V::W;
          for (int64_t co0 = 0; co0 < a.cout; co0 += CO_MAX) {
            const int64_t co = a.cout - co0 < CO_MAX ? a.cout - co0 : CO_MAX;
            if (co == CO_MAX)
              chunk<CO_MAX>(acc, dy, xcl, a, lp, co0, ky, j0, nv, oy0, oy1);
            else if (co == 2)
              chunk<(CO_MAX >= 2 ? 2 : 1)>(acc, dy, xcl, a, lp, co0, ky, j0, nv, oy0, oy1);
            else
              chunk<1>(acc, dy, xcl, a, lp, co0, ky, j0, nv, oy0, oy1);
          }
        }
    }
  }
};
