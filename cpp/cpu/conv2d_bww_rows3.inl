// conv2d_bww_rows3.inl — the rows Winograd weight gradient (conv2d_bww_rows.inl) over groups of
// THREE output rows: 9 products per 3 rows instead of 10.5 (pairs) or 15 (direct). Include INSIDE
// the anonymous namespace of an ISA translation unit, after conv2d_bww_rows.inl.
//
// Output rows oy = 3s .. 3s+2 (g0, g1, g2; rows past oh are zero, so any oh works) meet the
// padded input rows d0 .. d6 = 3s .. 3s+6 (rows past hp read as zero: they only meet zero dy
// rows). ky = 0..2 is a 1-D F(3, 3) over d0 .. d4 (points 0, 1, -1, 2, inf: 5 products) and
// ky = 3..4 an F(2, 3) over d3 .. d6 (0, 1, -1, inf: 4 products). Every fraction of the
// transforms sits in the output transform (the driver's, in double), so both input transforms
// are small integer sums: dy operands g0, g0 + g1 + g2, g0 - g1 + g2, g0 + 2 g1 + 4 g2, g2
// (kRows3DyBlocks), x points
//     F(3, 3): 2 d0 - d1 - 2 d2 + d3, 2 d1 + d2 - d3, -2 d1 + 3 d2 - d3, d3 - d1,
//              2 d1 - d2 - 2 d3 + d4
//     F(2, 3): d3 - d5, d4 + d5, d5 - d4, d6 - d4
// and the output transform (rows3_output_transform) has the 1/2, 1/6 and 1/3. The point GEMMs
// are BwdWeightsRows's, on ceil(oh/3) rows. Rounding (NumPy model, cnn1.conv2-sized sums): mean
// dw error 1.15x the direct sum's (ky = 2, the row with point 2's 4 g2, 2x).

template <class V, class CL>
struct BwdWeightsRows3 {
  using Base = BwdWeightsRows<V, CL>;
  static constexpr int kPoints = fastconv::cpu::kRows3Points;

  // V[j*blk + s*step + i] from the padded channels-last rows 3s .. 3s+6 (zero: the rows past hp).
  static void transform_x(float* v, const float* xcl, const float* zero,
                          const fastconv::cpu::DirectConvArgs& a, int64_t step, int64_t blk) {
    const int64_t S = (a.oh + 2) / 3, row = a.wp * a.cin;
    for (int64_t s = 0; s < S; ++s) {
      const float* d[7];
      for (int t = 0; t < 7; ++t) d[t] = 3 * s + t < a.hp ? xcl + (3 * s + t) * row : zero;
      float* o = v + s * step;
      Base::whole_vectors(row, [&](auto ops, int64_t i) {
        using O = decltype(ops);
        using R = typename O::reg;
        const R d0 = O::loadu(d[0] + i), d1 = O::loadu(d[1] + i), d2 = O::loadu(d[2] + i),
                d3 = O::loadu(d[3] + i), d4 = O::loadu(d[4] + i), d5 = O::loadu(d[5] + i),
                d6 = O::loadu(d[6] + i);
        const R two = O::set1(2.0f), t = O::sub(d3, d1);
        O::storeu(o + i, O::add(O::mul(O::sub(d0, d2), two), t));  // F(3, 3)
        O::storeu(o + blk + i, O::sub(O::add(d1, d2), t));
        O::storeu(o + 2 * blk + i, O::sub(O::mul(O::sub(d2, d1), O::set1(3.0f)), t));
        O::storeu(o + 3 * blk + i, t);
        O::storeu(o + 4 * blk + i, O::sub(O::sub(d4, d2), O::mul(t, two)));
        O::storeu(o + 5 * blk + i, O::sub(d3, d5));  // F(2, 3)
        O::storeu(o + 6 * blk + i, O::add(d4, d5));
        O::storeu(o + 7 * blk + i, O::sub(d5, d4));
        O::storeu(o + 8 * blk + i, O::sub(d6, d4));
      });
    }
  }

  // U[b*blk + co*co_stride + s*step + ox]: the kRows3DyBlocks operands of dy rows 3s .. 3s+2;
  // g2's (b = 4) with co_stride2, and only for s < S2 (the triples whose g2 is not all zero).
  static void transform_dy(float* u, const float* dy, const float* zero,
                           const fastconv::cpu::DirectConvArgs& a, int64_t co_stride,
                           int64_t co_stride2, int64_t S2, int64_t step, int64_t blk) {
    const int64_t S = (a.oh + 2) / 3, ow = a.ow;
    for (int64_t co = 0; co < a.cout; ++co)
      for (int64_t s = 0; s < S; ++s) {
        const float* g[3];
        for (int t = 0; t < 3; ++t) g[t] = 3 * s + t < a.oh ? dy + (co * a.oh + 3 * s + t) * ow : zero;
        float* o = u + co * co_stride + s * step;
        float* o2 = u + 4 * blk + co * co_stride2 + s * step;
        const bool g2 = s < S2;
        Base::whole_vectors(ow, [&](auto ops, int64_t i) {
          using O = decltype(ops);
          using R = typename O::reg;
          const R g0 = O::loadu(g[0] + i), g1 = O::loadu(g[1] + i), v2 = O::loadu(g[2] + i);
          const R even = O::add(g0, v2);
          O::storeu(o + i, g0);
          O::storeu(o + blk + i, O::add(even, g1));
          O::storeu(o + 2 * blk + i, O::sub(even, g1));
          O::storeu(o + 3 * blk + i, O::add(O::add(g0, O::add(g1, g1)), O::mul(v2, O::set1(4.0f))));
          if (g2) O::storeu(o2 + i, v2);
        });
      }
  }

  // As BwdWeightsRows::run, with kRows3Points points over ceil(oh/3) rows; work:
  // rows3_winograd_work_floats(a, V::W, images) floats (its last ones a zero row).
  static void run(float* acc, const float* dy, const float* xcl,
                  const fastconv::cpu::DirectConvArgs& a, int64_t lp, float* work, int64_t slot,
                  int64_t images, const fastconv::cpu::PrefetchSpans& next) {
    static constexpr int kDyBlock[kPoints] = {0, 1, 2, 3, 4, 0, 1, 2, 4};  // point j's dy operand
    // Where oh % 3 != 0 the last triple's g2 is zero: the g2 points skip it.
    const int64_t S = (a.oh + 2) / 3, S2 = a.oh / 3, vblk = S * a.wp * a.cin, uimg = S * a.ow;
    const int64_t vpt = images * vblk, ublk = a.cout * images * uimg;
    float* v = work;
    float* u = work + kPoints * vpt + V::W;
    float* zero = u + fastconv::cpu::kRows3DyBlocks * ublk;
    const int64_t zn = a.wp * a.cin + a.ow;
    for (int64_t i = 0; i < zn; ++i) zero[i] = 0.0f;
    // rows in (s, image) order, so that the group's last row triples (all images') end each GEMM
    transform_x(v + slot * a.wp * a.cin, xcl, zero, a, images * a.wp * a.cin, vpt);
    transform_dy(u + slot * a.ow, dy, zero, a, images * uimg, images * S2 * a.ow, S2,
                 images * a.ow, ublk);
    if (slot + 1 < images) return;
    fastconv::cpu::DirectConvArgs g = a;  // one point's GEMM: a one-row kernel over the rows
    g.kh = 1;
    const int64_t tiles = kPoints * ((a.cout + CL::kCoMax - 1) / CL::kCoMax) *
                          ((lp / V::W + CL::kNvMax - 1) / CL::kNvMax);
    PrefetchTrickle trickle(next, tiles);
    for (int j = 0; j < kPoints; ++j) {
      g.oh = images * (kDyBlock[j] == 4 ? S2 : S);
      g.hp = g.oh;
      if (g.oh > 0)
        CL::run(acc + j * a.cout * lp, u + kDyBlock[j] * ublk, v + j * vpt, g, lp,
                [&] { trickle.step(); });
    }
  }
};
