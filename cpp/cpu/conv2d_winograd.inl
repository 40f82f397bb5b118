// conv2d_winograd.inl — Winograd F(2x2, 3x3) and F(2x2, 5x5) convolution of ONE image with the
// output channels in the lanes (forward, and bwd_data as the transposed conv), stride 1, dilation
// 1, even output size. Include INSIDE the anonymous namespace of an ISA's translation unit,
// after its SIMD interface (V: simd__avx512.h, simd__avx2.h) and fastconv/winograd.h.
//
// Why: the layers with many channels run the direct kernels at 65-85% of the FMA peak, and so
// does oneDNN: to be faster the multiply count itself has to go down. F(2x2, r x r) computes each
// 2x2 output tile from an n x n input patch (n = r + 1) with n^2 products per (ci, co) instead of
// 4 r^2 (3x3: 16 vs 36, 5x5: 36 vs 100), the transforms being a few additions (Lavin & Gray, 2016):
//   Y = A^T [ U (.) V ] A,   U = G g G^T (weights, done once per call by the driver),
//   V = B^T d B (input patch d), summed over input channels before the output transform.
// Per block of tiles (whole tile rows, about 32+ tiles):
//   1. input transform, tiles in the lanes: W consecutive tiles of a tile row are the even/odd
//      columns of 2 x W consecutive floats of each padded input row (one permute per vector; two
//      rows of <= W/2 tiles share a vector), their n^2 transformed points stored at
//      v[pt*v_pitch + ci*tb + tile] (masked stores, or on AVX2 whole vectors whose junk lanes
//      land where later stores go);
//   2. per point, a small GEMM m[pt][tile][co] = sum_ci v[pt][ci][tile] * u[pt][ci][co]: a tile
//      of NT tiles x COV channel vectors, per ci COV weight loads + NT broadcasts for NT*COV FMAs
//      (the fwd_cl kernel's tile, with the taps replaced by points);
//   3. output transform per tile and channel vector into ycl[(oy*ow + ox)*coutp + co].
// The rounding differs from a direct sum (F(2, 3): about the same error; F(2, 5): a few times
// larger, from B^T's 4s and 5s), tested against the float64 reference like every path.
// Tile sizes per ISA: MaxCov channel vectors per point-GEMM tile and the register file's size
// (Regs: 32 zmm on AVX-512, 16 ymm on AVX2), see nt_max.

template <class V, int R, int MaxCov = 4, int Regs = 32>
struct WinogradF2 {
  using reg = typename V::reg;
  using Args = fastconv::cpu::ClConvArgs;
  using M = fastconv::cpu::Winograd<R>;
  static constexpr int N = M::n, NP = N * N;

  // sum_c coef[c] * d[c] for a row of constant coefficients: after unrolling, the zero terms
  // vanish and +-1 become additions (the branches fold: coef is a compile-time table).
  template <int K>
  static inline __attribute__((always_inline)) reg combo(const double (&coef)[K],
                                                        const reg (&d)[K]) {
    reg acc = V::zero();
    bool first = true;
#pragma GCC unroll 8
    for (int c = 0; c < K; ++c) {
      const float k = float(coef[c]);
      if (k == 0.0f) continue;
      if (first) {
        acc = k == 1.0f ? d[c] : V::mul(V::set1(k), d[c]);
        first = false;
      } else if (k == 1.0f) {
        acc = V::add(acc, d[c]);
      } else if (k == -1.0f) {
        acc = V::sub(acc, d[c]);
      } else {
        acc = V::fmadd(V::set1(k), d[c], acc);
      }
    }
    return acc;
  }

  // o = B^T d. F(2, 5)'s rows factored by hand: 14 operations instead of one per nonzero
  // coefficient (22; GCC may not reassociate float sums itself), rows 1/2 and 3/4 sharing their
  // sums and differences: 4 d0 - 5 d2 + d4, (d3 + d4) - 4 (d1 + d2),
  // (d4 - d3) + 4 (d1 - d2), (d4 - d2) +- 2 (d3 - d1), 4 d1 - 5 d3 + d5.
  static inline __attribute__((always_inline)) void bt(const reg (&d)[N], reg (&o)[N]) {
    if constexpr (R == 5) {
      const reg four = V::set1(4.0f), mfour = V::set1(-4.0f), mfive = V::set1(-5.0f);
      const reg two = V::set1(2.0f), mtwo = V::set1(-2.0f);
      o[0] = V::fmadd(four, d[0], V::fmadd(mfive, d[2], d[4]));
      o[1] = V::fmadd(mfour, V::add(d[1], d[2]), V::add(d[3], d[4]));
      o[2] = V::fmadd(four, V::sub(d[1], d[2]), V::sub(d[4], d[3]));
      const reg p = V::sub(d[4], d[2]), q = V::sub(d[3], d[1]);
      o[3] = V::fmadd(two, q, p);
      o[4] = V::fmadd(mtwo, q, p);
      o[5] = V::fmadd(four, d[1], V::fmadd(mfive, d[3], d[5]));
    } else {
#pragma GCC unroll 8
      for (int j = 0; j < N; ++j) o[j] = combo(M::BT[j], d);
    }
  }

  // The NP transformed points of W tiles whose patches start at xr (lanes [0, W/2)) and xr +
  // second (lanes [W/2, W)): second = W for W consecutive tiles of a tile row, 2 * wp for two
  // rows of <= W/2 tiles (the even/odd split of two input rows is the same permute as that of 2W
  // consecutive floats). store(pt, vector) gets each point. Ordered false: the tiles in the
  // lanes in V::deinterleave_tiles' order (no lane-crossing permute; for the tiles-in-lanes
  // kernel, which only puts them back in order with V::interleave_tiles at its output).
  template <bool Ordered = true, class Store>
  static inline __attribute__((always_inline)) void transform_patches(const float* xr,
                                                                      int64_t second, int64_t wp,
                                                                      Store&& store) {
    reg e[N][N];  // e[r] = d[r] B: row r of the patch times B
#pragma GCC unroll 8
    for (int r = 0; r < N; ++r, xr += wp) {
      reg d[N];  // patch columns 0 .. N-1 of row r for the W tiles
#pragma GCC unroll 4
      for (int k = 0; k < N / 2; ++k)
        if constexpr (Ordered) {
          V::deinterleave(V::loadu(xr + 2 * k), V::loadu(xr + 2 * k + second), d[2 * k],
                          d[2 * k + 1]);
        } else {
          V::deinterleave_tiles(V::loadu(xr + 2 * k), V::loadu(xr + 2 * k + second), d[2 * k],
                                d[2 * k + 1]);
        }
      bt(d, e[r]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < N; ++j) {  // B^T (d B), point (i, j) at pt = N*i + j
      reg col[N];
#pragma GCC unroll 8
      for (int r = 0; r < N; ++r) col[r] = e[r][j];
      reg o[N];
      bt(col, o);
#pragma GCC unroll 8
      for (int i = 0; i < N; ++i) store(N * i + j, o[i]);
    }
  }

  // v's pitch from one point to the next: cin * tb floats and W of slack. Where masked stores
  // are slow (V::masked_store_fast false: vmaskmovps is microcoded on AMD cores, and with 7 tiles
  // a row every store of fashion.conv2 was one, half of AVX2 bwd_data's transform time), the
  // transforms store whole vectors, their junk lanes landing past the real tiles: on tiles (or
  // rows, or the next channel's) that a later store of the same loop writes, or for the last
  // channel in the slack.
  static int64_t v_pitch(int64_t cin, int64_t tb) { return cin * tb + V::W; }

  // A vector of W tiles' values into a row of v: one tile row (lanes [0, tw - tx0) real, mask
  // m) or, paired, two rows of tw <= W/2 tiles (the lower half and, if `two`, the upper half
  // moved down).
  static inline __attribute__((always_inline)) void store_tiles(float* out, reg x, bool paired,
                                                                bool two, int64_t tw,
                                                                typename V::tmask m) {
    if constexpr (V::masked_store_fast) {
      V::store_tail(out, x, m);
      if (paired && two) V::store_tail(out + tw, V::swap_halves(x), m);
    } else {
      V::storeu(out, x);
      if (paired && two) V::storeu(out + tw, V::swap_halves(x));
    }
  }

  // 1. The transformed points of tile rows [ty0, ty1) (tw tiles each) of every input channel:
  // v[pt*v_pitch + ci*tb + t], t = (ty - ty0)*tw + tx (only the real tiles: masked stores, or
  // junk lanes past them: v_pitch).
  // Rows of <= W/2 tiles go two per vector (the block's rows are even then, but for the last).
  static void input_transform(float* v, const float* xpad, const Args& a, int64_t ty0,
                              int64_t ty1, int64_t tw) {
    const int64_t tb = (ty1 - ty0) * tw, pstride = v_pitch(a.cin, tb);
    const bool paired = tw <= V::W / 2;
    for (int64_t ci = 0; ci < a.cin; ++ci)
      for (int64_t ty = ty0; ty < ty1; ty += paired ? 2 : 1)
        for (int64_t tx0 = 0; tx0 < tw; tx0 += V::W) {
          const float* xr = xpad + ci * a.plane + 2 * ty * a.wp + 2 * tx0;
          float* out = v + ci * tb + (ty - ty0) * tw + tx0;
          const bool two = paired && ty + 1 < ty1;
          const auto m = V::tail(paired ? tw : tw - tx0 < V::W ? tw - tx0 : V::W);
          transform_patches(xr, paired ? 2 * a.wp : V::W, a.wp, [&](int pt, reg x) {
            store_tiles(out + pt * pstride, x, paired, two, tw, m);
          });
        }
  }

  // 2. m[(pt*tb + t)*coutp + co] for NT tiles t0.. and COV channel vectors co0..
  template <int COV, int NT>
  static void point_tile(float* mp, const float* vp, const float* up, const Args& a, int64_t tb,
                         int64_t t0, int64_t co0) {
    reg acc[NT][COV];
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t)
#pragma GCC unroll 4
      for (int c = 0; c < COV; ++c) acc[t][c] = V::zero();
    const float* vt = vp + t0;
    const float* uc = up + co0;
    for (int64_t ci = 0; ci < a.cin; ++ci, vt += tb, uc += a.coutp) {
      reg wv[COV];
#pragma GCC unroll 4
      for (int c = 0; c < COV; ++c) {
        wv[c] = V::loadu(uc + c * V::W);
        asm("" : "+v"(wv[c]));  // keep in registers (see conv2d_fwd_cl.inl)
      }
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const reg xb = V::set1(vt[t]);
#pragma GCC unroll 4
        for (int c = 0; c < COV; ++c) acc[t][c] = V::fmadd(xb, wv[c], acc[t][c]);
      }
    }
    float* out = mp + t0 * a.coutp + co0;
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t)
#pragma GCC unroll 4
      for (int c = 0; c < COV; ++c) V::storeu(out + t * a.coutp + c * V::W, acc[t][c]);
  }

  template <int COV, int NT>
  static void point_tile_n(int64_t nt, float* mp, const float* vp, const float* up, const Args& a,
                           int64_t tb, int64_t t0, int64_t co0) {
    if (nt == NT) {
      point_tile<COV, NT>(mp, vp, up, a, tb, t0, co0);
    } else if constexpr (NT > 1) {
      point_tile_n<COV, NT - 1>(nt, mp, vp, up, a, tb, t0, co0);
    }
  }

  // Tiles per GEMM step for COV channel vectors: NT*COV accumulators + COV weights + a broadcast
  // within the registers, and at most ~1 load per 2 FMAs (16 registers: COV <= 2).
  static constexpr int nt_max(int cov) {
    return Regs >= 32 ? (cov == 1 ? 16 : cov == 2 ? 12 : cov == 3 ? 8 : 6) : (cov == 1 ? 12 : 6);
  }

  template <int COV>
  static void points(float* m, const float* v, const float* u, const Args& a, int64_t tb,
                     int64_t co0) {
    constexpr int NT = nt_max(COV);
    for (int64_t pt = 0; pt < NP; ++pt) {
      const float* vp = v + pt * v_pitch(a.cin, tb);
      const float* up = u + pt * a.cin * a.coutp;
      float* mp = m + pt * tb * a.coutp;
      for (int64_t t0 = 0; t0 < tb; t0 += NT) {
        const int64_t nt = tb - t0 < NT ? tb - t0 : NT;
        point_tile_n<COV, NT>(nt, mp, vp, up, a, tb, t0, co0);
      }
    }
  }

  // 3. Y = A^T m A for tile t of the block, every channel vector.
  static void output_transform(float* ycl, const float* m, const Args& a, int64_t tb, int64_t t,
                               int64_t oy, int64_t ox) {
    const int64_t ps = tb * a.coutp;
    float* y0 = ycl + (oy * a.ow + ox) * a.coutp;
    for (int64_t co = 0; co < a.coutp; co += V::W) {
      const float* mt = m + t * a.coutp + co;
      reg f[2][N];  // f[j][i] = (m A)[i][j]
#pragma GCC unroll 8
      for (int i = 0; i < N; ++i) {
        reg row[N];
#pragma GCC unroll 8
        for (int j = 0; j < N; ++j) row[j] = V::loadu(mt + (N * i + j) * ps);
        f[0][i] = combo(M::AT[0], row);
        f[1][i] = combo(M::AT[1], row);
      }
#pragma GCC unroll 2
      for (int io = 0; io < 2; ++io)
#pragma GCC unroll 2
        for (int jo = 0; jo < 2; ++jo)
          V::storeu(y0 + (io * a.ow + jo) * a.coutp + co, combo(M::AT[io], f[jo]));
    }
  }

  // points<COV> for COV = cov (1 <= cov <= MaxCov).
  template <int COV = MaxCov>
  static void points_cov(int64_t cov, float* m, const float* v, const float* u, const Args& a,
                         int64_t tb, int64_t co0) {
    if constexpr (COV > 1) {
      if (cov < COV) return points_cov<COV - 1>(cov, m, v, u, a, tb, co0);
    }
    points<COV>(m, v, u, a, tb, co0);
  }

  // 2. for every channel vector, in chunks of <= MaxCov vectors.
  static void all_points(float* m, const float* v, const float* u, const Args& a, int64_t tb) {
    const int64_t nvec = a.coutp / V::W;
    const int64_t chunks = (nvec + MaxCov - 1) / MaxCov, per = (nvec + chunks - 1) / chunks;
    for (int64_t v0 = 0; v0 < nvec; v0 += per) {
      const int64_t cov = nvec - v0 < per ? nvec - v0 : per, co0 = v0 * V::W;
      points_cov(cov, m, v, u, a, tb, co0);
    }
  }

  // u[(pt*cin + ci)*coutp + co]: the transformed weights (pt = N*i + j, zero past the real
  // channels); work: the driver's winograd_work_floats(a) floats.
  static void run(float* ycl, const float* xpad, const float* u, float* work, const Args& a) {
    const int64_t th = a.oh / 2, tw = a.ow / 2, rows = fastconv::cpu::winograd_block_rows(tw);
    for (int64_t ty0 = 0; ty0 < th; ty0 += rows) {
      const int64_t ty1 = ty0 + rows < th ? ty0 + rows : th, tb = (ty1 - ty0) * tw;
      float* v = work;
      float* m = work + NP * v_pitch(a.cin, tb);
      input_transform(v, xpad, a, ty0, ty1, tw);
      all_points(m, v, u, a, tb);
      for (int64_t t = 0; t < tb; ++t)
        output_transform(ycl, m, a, tb, t, 2 * (ty0 + t / tw), 2 * (t % tw));
    }
  }

  // --- bwd_data as the forward's adjoint ----------------------------------------------------
  // The forward maps each input patch d to its tile's output by A^T [U (.) (B^T d B)] A; its
  // transpose maps each 2x2 tile of dy to a patch of dx: dd = B [U^T (.) (A dy A^T)] B^T, added
  // at the patch's place (patches overlap by n - 2). Same tiles as the forward (oh*ow/4), where
  // the full correlation of dy bordered by k - 1 runs h*w/4 of them: 36 vs 16 for keras.conv2's
  // valid 12 -> 8. Here a is the forward's geometry with cin = the layer's output channels (dy,
  // reduced) and coutp = its input channels rounded up to the lanes (dx, in the lanes).
  static constexpr auto B = fastconv::cpu::transpose(M::BT);  // B.m[r][i] = BT[i][r]
  static constexpr auto A = fastconv::cpu::transpose(M::AT);  // A.m[i][a] = AT[a][i]

  // 1'. v[(pt*cin + co)*tb + t] = (A dy_t A^T)[pt] for the block's tiles: the even/odd columns
  // of dy's rows 2ty and 2ty + 1, split like the forward's patches (masked loads: dy has no
  // border to read into).
  static void dy_transform(float* v, const float* dy, const Args& a, int64_t ty0, int64_t ty1,
                           int64_t tw) {
    const int64_t tb = (ty1 - ty0) * tw, pstride = v_pitch(a.cin, tb), ow = a.ow;
    const bool paired = tw <= V::W / 2;
    for (int64_t co = 0; co < a.cin; ++co)
      for (int64_t ty = ty0; ty < ty1; ty += paired ? 2 : 1)
        for (int64_t tx0 = 0; tx0 < tw; tx0 += V::W) {
          const float* dr = dy + (co * a.oh + 2 * ty) * ow + 2 * tx0;
          float* out = v + co * tb + (ty - ty0) * tw + tx0;
          if (tx0 == 0 && ty1 < a.oh / 2) {  // the next block's rows (no border copy warmed dy)
            const char* next = reinterpret_cast<const char*>(dr + 2 * (ty1 - ty0) * ow);
            for (int64_t b = 0; b < 4 * ow * (paired ? 4 : 2); b += 64)
              __builtin_prefetch(next + b, 0, 3);  // prefetcht0 (the compiler's, not an ISA's)
          }
          const bool two = paired && ty + 1 < ty1;
          // floats of [dr, dr + W) and [dr + second, dr + second + W) inside the row(s)
          const int64_t rest = ow - 2 * tx0, second = paired ? 2 * ow : V::W;
          const int64_t n0 = rest < V::W ? rest : V::W;
          const int64_t n1 = paired ? (two ? ow : 0) : rest - V::W < 0 ? 0 : rest - V::W;
          const auto m0 = V::tail(n0), m1 = V::tail(n1 < V::W ? n1 : V::W);
          reg d0[2], d1[2];  // dy[0][0..1], dy[1][0..1] of the W tiles
          V::deinterleave(V::load_tail(dr, m0), V::load_tail(dr + second, m1), d0[0], d0[1]);
          V::deinterleave(V::load_tail(dr + ow, m0), V::load_tail(dr + ow + second, m1), d1[0],
                          d1[1]);
          const auto m = V::tail(paired ? tw : tw - tx0 < V::W ? tw - tx0 : V::W);
#pragma GCC unroll 8
          for (int j = 0; j < N; ++j) {  // h = dy A^T, then A h
            const reg h[2] = {combo(A.m[j], d0), combo(A.m[j], d1)};
#pragma GCC unroll 8
            for (int i = 0; i < N; ++i)
              store_tiles(out + (N * i + j) * pstride, combo(A.m[i], h), paired, two, tw, m);
          }
        }
  }

  // 3'. dxcl patch at (oy, ox) += B m_t B^T for tile t of the block, every channel vector.
  static void scatter_tile(float* dxcl, const float* m, const Args& a, int64_t tb, int64_t t,
                           int64_t oy, int64_t ox) {
    const int64_t ps = tb * a.coutp;
    for (int64_t c = 0; c < a.coutp; c += V::W) {
      const float* mt = m + t * a.coutp + c;
      reg e[N][N];  // e[i][col] = (m_t B^T)[i][col]
#pragma GCC unroll 8
      for (int i = 0; i < N; ++i) {
        reg row[N];
#pragma GCC unroll 8
        for (int j = 0; j < N; ++j) row[j] = V::loadu(mt + (N * i + j) * ps);
#pragma GCC unroll 8
        for (int col = 0; col < N; ++col) e[i][col] = combo(B.m[col], row);
      }
#pragma GCC unroll 8
      for (int col = 0; col < N; ++col) {
        reg colv[N];
#pragma GCC unroll 8
        for (int i = 0; i < N; ++i) colv[i] = e[i][col];
#pragma GCC unroll 8
        for (int r = 0; r < N; ++r) {
          float* d = dxcl + ((oy + r) * a.wp + ox + col) * a.coutp + c;
          V::storeu(d, V::add(V::loadu(d), combo(B.m[r], colv)));
        }
      }
    }
  }

  // dxcl ((oh + kh - 1) x wp x coutp, zeroed by the caller) += dx of the bordered image from
  // dy (cin planes of oh x ow); u[(pt*cin + co)*coutp + ci] = (G g G^T)[pt] of g = w[co][ci].
  static void run_transposed(float* dxcl, const float* dy, const float* u, float* work,
                             const Args& a) {
    const int64_t th = a.oh / 2, tw = a.ow / 2, rows = fastconv::cpu::winograd_block_rows(tw);
    for (int64_t ty0 = 0; ty0 < th; ty0 += rows) {
      const int64_t ty1 = ty0 + rows < th ? ty0 + rows : th, tb = (ty1 - ty0) * tw;
      float* v = work;
      float* m = work + NP * v_pitch(a.cin, tb);
      dy_transform(v, dy, a, ty0, ty1, tw);
      all_points(m, v, u, a, tb);
      for (int64_t t = 0; t < tb; ++t)
        scatter_tile(dxcl, m, a, tb, t, 2 * (ty0 + t / tw), 2 * (t % tw));
    }
  }
};
