// conv2d_bwd_data_image_lanes.inl — bwd_data of a stride-1, dilation-1 conv with a 5-wide kernel
// for V::W images at once, one image per lane, by a 1-D Winograd F(4, 5) along the rows
// (fastconv/winograd_rows.h). Include INSIDE the anonymous namespace of an ISA translation unit,
// after its SIMD interface (which needs transpose8: W = 8).
//
// Why: a valid conv with few channels (lenet.conv2: dy 16 x 10 x 10 -> dx 6 x 14 x 14) fills
// neither dx's channels (6) nor Winograd tiles of one image, and dy-channel lanes (dy_lanes) end
// every output in a lane sum. With the images in the lanes every lane is useful and no lane sum
// runs; the kernel rows stay exact (dy rows outside dy are never multiplied) and along the row
//     dx[ci][y][4t + i] = sum_p AT[i][p] * m[t][p][y][ci],
//     m[t][p][y][ci]   = sum over (ky, co) of u[p][ky][co][ci] * v[t][p][y + ky - top][co],
//     v[t][p][yd][co]  = sum_j BT[p][j] * dyp[co][yd][4t + j],   u = G along kx of the flipped w,
// with dyp dy's rows bordered by `left` zero columns: 8 products per 4 outputs instead of 20
// (0.4x; lenet.conv2's 14 columns as 4 tiles: 0.46x the useful direct products). The point sums
// are a GEMM per (p, y) whose reduction (ky, co) is one contiguous run of v and of u.
// Rounding: one transform each way along one axis, as the forward's winograd_rows.

template <class V>
struct BwdDataImageLanes {
  using reg = typename V::reg;
  using Args = fastconv::cpu::ImageLanesArgs;
  static constexpr int W = V::W;
  static constexpr int CI = 6;   // dx channels per tile (the weights' channel block)
  static constexpr int N = 8;    // F(4, 5)'s points
  static constexpr int M = 4;    // outputs per tile

  // Row pitches (in pixels) of the bordered dy rows and of the transformed dx rows: the tiles
  // read columns < 4 tiles + 4; the output blocks read up to 8 columns from any tile start.
  static int64_t t_pitch(const Args& a) { return M * a.tiles + N; }
  static int64_t x_pitch(const Args& a) { return M * a.tiles + N; }

  // Work floats: the bordered dy rows of one channel, v of the unit's tiles, m of a tile pair,
  // dx's transformed rows of a channel block, and the plane offsets of the input transpose.
  static int64_t work_floats(const Args& a) {
    return (a.oh * t_pitch(a) + a.tiles * N * a.oh * a.cout + 2 * N * a.h * CI +
            CI * a.h * x_pitch(a)) * W + a.oh * a.ow;
  }

  // dyp row d[0..7] -> the 8 points (BT factored: 26 operations instead of 40).
  static inline __attribute__((always_inline)) void input_tile(const reg (&d)[N], float* v,
                                                               int64_t step) {
    const reg c525 = V::set1(5.25f), c425 = V::set1(-4.25f);
    V::storeu(v, V::fmadd(c525, V::sub(d[2], d[4]), V::sub(d[6], d[0])));
    const reg a1 = V::fmadd(c425, d[4], V::add(d[2], d[6]));
    const reg b1 = V::fmadd(c425, d[3], V::add(d[1], d[5]));
    V::storeu(v + step, V::add(a1, b1));
    V::storeu(v + 2 * step, V::sub(a1, b1));
    const reg a2 = V::fmadd(V::set1(-1.25f), d[4], V::fmadd(V::set1(0.25f), d[2], d[6]));
    const reg b2 = V::fmadd(V::set1(2.0f), d[5],
                            V::fmadd(V::set1(-2.5f), d[3], V::mul(V::set1(0.5f), d[1])));
    V::storeu(v + 3 * step, V::add(a2, b2));
    V::storeu(v + 4 * step, V::sub(a2, b2));
    const reg a3 = V::fmadd(V::set1(-5.0f), d[4], V::fmadd(V::set1(4.0f), d[2], d[6]));
    const reg b3 = V::fmadd(V::set1(0.5f), d[5],
                            V::fmadd(V::set1(-2.5f), d[3], V::mul(V::set1(2.0f), d[1])));
    V::storeu(v + 5 * step, V::add(a3, b3));
    V::storeu(v + 6 * step, V::sub(a3, b3));
    V::storeu(v + 7 * step, V::fmadd(c525, V::sub(d[3], d[5]), V::sub(d[7], d[1])));
  }

  // The 8 points m[0..7] -> 4 outputs (AT factored: 16 operations).
  static inline __attribute__((always_inline)) void output_tile(const reg (&m)[N], float* out) {
    const reg s1 = V::add(m[1], m[2]), d1 = V::sub(m[1], m[2]);
    const reg s2 = V::add(m[3], m[4]), d2 = V::sub(m[3], m[4]);
    const reg s3 = V::add(m[5], m[6]), d3 = V::sub(m[5], m[6]);
    V::storeu(out, V::add(V::add(m[0], s1), V::add(s2, s3)));
    V::storeu(out + W, V::fmadd(V::set1(0.5f), d3, V::fmadd(V::set1(2.0f), d2, d1)));
    V::storeu(out + 2 * W, V::fmadd(V::set1(0.25f), s3, V::fmadd(V::set1(4.0f), s2, s1)));
    V::storeu(out + 3 * W,
              V::add(V::fmadd(V::set1(0.125f), d3, V::fmadd(V::set1(8.0f), d2, d1)), m[7]));
  }

  // Channel co of the images (dy[i] + co * plane) into the bordered rows tb[(yd*tp + left + x)*W
  // + i]: 8 x 8 transposes over the flat plane, the last block overlapping the one before.
  static void load_channel(float* tb, const float* const* dy, int64_t co, const int32_t* off,
                           const Args& a) {
    const int64_t plane = a.oh * a.ow;
    const float* src[W];
#pragma GCC unroll 8
    for (int i = 0; i < W; ++i) src[i] = dy[i] + co * plane;
    if (plane < W) {
      for (int64_t q = 0; q < plane; ++q)
        for (int i = 0; i < W; ++i) tb[off[q] + i] = src[i][q];
      return;
    }
    for (int64_t q0 = 0;; q0 += W) {
      if (q0 > plane - W) q0 = plane - W;
      reg r[W];
#pragma GCC unroll 8
      for (int i = 0; i < W; ++i) r[i] = V::loadu(src[i] + q0);
      V::transpose8(r);
#pragma GCC unroll 8
      for (int j = 0; j < W; ++j) V::storeu(tb + off[q0 + j], r[j]);
      if (q0 == plane - W) break;
    }
  }

  // Tiles t0 (even: a pair) and t0 + 1 (if T2) of channel block cb: the point sums of every
  // (p, y) into m[((k*N + p)*h + y)*CI + c], k = 0, 1 the tile.
  template <bool T2>
  static void point_sums(float* m, const float* v, const float* u, const Args& a, int64_t tv,
                         int64_t cb) {
    const int64_t vt = N * a.oh * a.cout * W;  // v floats per tile
    for (int p = 0; p < N; ++p) {
      const float* vp = v + (tv * N + p) * a.oh * a.cout * W;
      const float* up = u + (cb * N + p) * a.kh * a.cout * CI;
      for (int64_t y = 0; y < a.h; ++y) {
        const int64_t ky0 = a.top - y > 0 ? a.top - y : 0;
        const int64_t ky1 = a.top + a.oh - y < a.kh ? a.top + a.oh - y : a.kh;
        reg acc0[CI], acc1[CI];
#pragma GCC unroll 6
        for (int c = 0; c < CI; ++c) acc0[c] = acc1[c] = V::zero();
        const int64_t len = ky1 > ky0 ? (ky1 - ky0) * a.cout : 0;
        const float* v0 = vp + (y + ky0 - a.top) * a.cout * W;
        const float* uk = up + ky0 * a.cout * CI;
        for (int64_t k = 0; k < len; ++k) {
          const reg d0 = V::loadu(v0 + k * W);
          reg d1 = d0;
          if constexpr (T2) d1 = V::loadu(v0 + vt + k * W);
#pragma GCC unroll 6
          for (int c = 0; c < CI; ++c) {
            const reg w = V::set1(uk[k * CI + c]);
            acc0[c] = V::fmadd(d0, w, acc0[c]);
            if constexpr (T2) acc1[c] = V::fmadd(d1, w, acc1[c]);
          }
        }
        float* m0 = m + (p * a.h + y) * CI * W;
#pragma GCC unroll 6
        for (int c = 0; c < CI; ++c) {
          V::storeu(m0 + c * W, acc0[c]);
          if constexpr (T2) V::storeu(m0 + (N * a.h * CI + c) * W, acc1[c]);
        }
      }
    }
  }

  // m of tile t (k-th of its pair) -> xt[((c*h + y)*xp + 4t + i)*W] for the block's channels.
  static void outputs(float* xt, const float* m, const Args& a, int64_t t, int k) {
    const int64_t xp = x_pitch(a);
    for (int64_t y = 0; y < a.h; ++y)
      for (int c = 0; c < CI; ++c) {
        reg pts[N];
#pragma GCC unroll 8
        for (int p = 0; p < N; ++p) pts[p] = V::loadu(m + (((k * N + p) * a.h + y) * CI + c) * W);
        output_tile(pts, xt + ((c * a.h + y) * xp + M * t) * W);
      }
  }

  // xt's columns [x0, x1) of the block's channels (< nc) to the images' dx: 8 x 8 transposes, the
  // last block overlapping the one before (a range under 8 columns: the first x1 - x0 lanes).
  static void store_block(float* const* dx, int64_t count, const float* xt, const Args& a,
                          int64_t ci0, int64_t nc, int64_t x0, int64_t x1) {
    const int64_t xp = x_pitch(a);
    for (int64_t c = 0; c < nc; ++c)
      for (int64_t y = 0; y < a.h; ++y) {
        const float* row = xt + (c * a.h + y) * xp * W;
        const int64_t plane_row = ((ci0 + c) * a.h + y) * a.w;
        for (int64_t xs = x0;; xs += W) {
          const int64_t n = x1 - x0 < W ? x1 - x0 : W;
          if (n == W && xs > x1 - W) xs = x1 - W;
          reg r[W];
#pragma GCC unroll 8
          for (int j = 0; j < W; ++j) r[j] = V::loadu(row + (xs + j) * W);
          V::transpose8(r);
          for (int64_t i = 0; i < count; ++i) {
            if (n == W) {
              V::storeu(dx[i] + plane_row + xs, r[i]);
            } else {
              V::store_first(dx[i] + plane_row + xs, r[i], n);
            }
          }
          if (xs + n >= x1) break;
        }
      }
  }

  // Images dy[0..W) (dy[i]: cout planes of oh x ow; past `count` a zero image) to dx[0..count)
  // (cin planes of h x w), tiles [t0, t1) (dx columns [4 t0, min(4 t1, w))). u[(((cb*N + p)*kh +
  // ky)*cout + co)*CI + c]: the weights (see cpu_kernels.h). work: work_floats(a).
  static void run(float* const* dx, const float* const* dy, int64_t count, const float* u,
                  float* work, int64_t t0, int64_t t1, const Args& a) {
    const int64_t tp = t_pitch(a), nt = t1 - t0;
    float* tb = work;
    float* v = tb + a.oh * tp * W;
    float* m = v + a.tiles * N * a.oh * a.cout * W;
    float* xt = m + 2 * N * a.h * CI * W;
    int32_t* off = reinterpret_cast<int32_t*>(xt + CI * a.h * x_pitch(a) * W);
    for (int64_t yd = 0; yd < a.oh; ++yd)
      for (int64_t x = 0; x < a.ow; ++x) off[yd * a.ow + x] = int32_t((yd * tp + a.left + x) * W);
    std::fill(tb, tb + a.oh * tp * W, 0.0f);  // the border columns
    // v[((t*N + p)*oh + yd)*cout + co] for the unit's tiles
    const int64_t vstep = a.oh * a.cout * W;
    for (int64_t co = 0; co < a.cout; ++co) {
      load_channel(tb, dy, co, off, a);
      for (int64_t t = 0; t < nt; ++t)
        for (int64_t yd = 0; yd < a.oh; ++yd) {
          const float* row = tb + (yd * tp + M * (t0 + t)) * W;
          reg d[N];
#pragma GCC unroll 8
          for (int j = 0; j < N; ++j) d[j] = V::loadu(row + j * W);
          input_tile(d, v + (t * N * a.oh + yd) * a.cout * W + co * W, vstep);
        }
    }
    const int64_t x0 = M * t0, x1 = M * t1 < a.w ? M * t1 : a.w;
    for (int64_t cb = 0; cb * CI < a.cin; ++cb) {
      for (int64_t t = 0; t < nt; t += 2) {
        if (t + 1 < nt) {
          point_sums<true>(m, v, u, a, t, cb);
          outputs(xt, m, a, t0 + t, 0);
          outputs(xt, m, a, t0 + t + 1, 1);
        } else {
          point_sums<false>(m, v, u, a, t, cb);
          outputs(xt, m, a, t0 + t, 0);
        }
      }
      const int64_t nc = a.cin - cb * CI < CI ? a.cin - cb * CI : CI;
      store_block(dx, count, xt, a, cb * CI, nc, x0, x1);
    }
  }
};
