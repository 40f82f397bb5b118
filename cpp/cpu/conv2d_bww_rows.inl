// conv2d_bww_rows.inl — weight gradient of a stride-1, dilation-1 conv 5 rows high with a 1-D
// Winograd transform down the columns (pairs of output rows), (kx, ci) in the lanes. Include INSIDE
// the anonymous namespace of an ISA translation unit, after conv2d_bww_cl.inl (its tiles run the
// point GEMMs).
//
// Why: the direct (kx, ci)-lane kernels are FMA-bound at ~85% of the peak (cnn1.conv2), so fewer
// products is the lever left. Each pair of output rows oy = 2s, 2s+1 meets the six padded input
// rows 2s .. 2s+5; ky = 0..2 is a 1-D F(3, 2) over rows 2s .. 2s+3 (4 products for 6, the points
// 0, 1, -1, inf of the 3x3 weight gradient, winograd.h GW / AWT) and ky = 3..4 an F(2, 2) over rows
// 2s+3 .. 2s+5 (3 products for 4: m4 = g0 (d3 - d4), m5 = (g0 + g1) d4, m6 = g1 (d5 - d4);
// y3 = m4 + m5, y4 = m5 + m6). 7 products per pair of rows instead of 10, with only +-1 and 1/2
// in the transforms (no 2s, 4s or 16s: the 2-D F(5x5, 2x2) rounded 30x worse than the direct sum).
// Both transforms combine whole rows (of the channels-last padded image, and of dy), so they are
// plain vector arithmetic. Per point j (kRowsPoints of them) and image:
//     M[j][co][kx*cin + ci] += sum over (s, ox) of U[j][co][s][ox] * V[j][s][(ox + kx)*cin + ci]
// with U the transformed dy row pairs and V the transformed input rows: the per-row (kx, ci)-lane
// weight gradient of a one-row kernel over an image of oh/2 rows, which BwdWeightsChannelsLast::run
// computes. The caller sums M over images and parts, then applies the output transforms once.

#include "prefetch_trickle.inl"

template <class V, class CL>
struct BwdWeightsRows {
  using reg = typename V::reg;

  // One float at a time, with V's names (the rows shorter than a vector).
  struct One {
    using reg = float;
    static float loadu(const float* p) { return *p; }
    static void storeu(float* p, float v) { *p = v; }
    static float add(float a, float b) { return a + b; }
    static float sub(float a, float b) { return a - b; }
    static float mul(float a, float b) { return a * b; }
    static float set1(float v) { return v; }
  };

  // step(V{}, i) for whole vectors at i = 0, W, ... and the last one ending at n (overlapping the
  // one before: the same values rewritten, no masked tail); n < W: step(One{}, i) for each i.
  template <class Step>
  static void whole_vectors(int64_t n, Step step) {
    if (n < V::W) {
      for (int64_t i = 0; i < n; ++i) step(One{}, i);
      return;
    }
    int64_t i = 0;
    for (; i + V::W < n; i += V::W) step(V{}, i);
    step(V{}, n - V::W);
  }

  // x: the rows V[(j*S + s)*row + i] (row = wp*cin floats) from the padded channels-last image's
  // rows 2s .. 2s+5. Point 5 (row 2s+4 itself) is stored doubled, so that its dy operand is point
  // 1's (g0 + g1) / 2 (exact). The GEMM's last lanes read up to W floats past the last row: the
  // caller's slack.
  static void transform_x(float* v, const float* xcl, const fastconv::cpu::DirectConvArgs& a,
                          int64_t blk) {
    const int64_t S = a.oh / 2, row = a.wp * a.cin;
    for (int64_t s = 0; s < S; ++s) {
      const float* d = xcl + 2 * s * row;  // rows 2s .. 2s+5, row apart
      float* o = v + s * row;
      whole_vectors(row, [&](auto ops, int64_t i) {
        using O = decltype(ops);
        const typename O::reg d0 = O::loadu(d + i), d1 = O::loadu(d + row + i),
                              d2 = O::loadu(d + 2 * row + i), d3 = O::loadu(d + 3 * row + i),
                              d4 = O::loadu(d + 4 * row + i), d5 = O::loadu(d + 5 * row + i);
        O::storeu(o + i, O::sub(d0, d2));  // F(3, 2): B^T of winograd.h Winograd<3>
        O::storeu(o + blk + i, O::add(d1, d2));
        O::storeu(o + 2 * blk + i, O::sub(d2, d1));
        O::storeu(o + 3 * blk + i, O::sub(d1, d3));
        O::storeu(o + 4 * blk + i, O::sub(d3, d4));  // F(2, 2)
        O::storeu(o + 5 * blk + i, O::add(d4, d4));
        O::storeu(o + 6 * blk + i, O::sub(d5, d4));
      });
    }
  }

  // dy: the kRowsDyBlocks distinct operands of the points, U[(b*cout + co)*S*ow + s*ow + ox] from
  // the pair g0 = dy[co][2s][ox], g1 = dy[co][2s+1][ox]: g0, (g0 + g1) / 2, (g0 - g1) / 2, g1
  // (F(3, 2): GW of winograd.h Winograd<3>; F(2, 2)'s g0, g0 + g1, g1 as g0, 2 (g0 + g1) / 2, g1).
  static void transform_dy(float* u, const float* dy, const fastconv::cpu::DirectConvArgs& a,
                           int64_t co_stride, int64_t blk) {
    const int64_t S = a.oh / 2, ow = a.ow;
    for (int64_t cs = 0; cs < a.cout * S; ++cs) {  // (co, s): dy rows 2 cs and 2 cs + 1
      const float* g = dy + 2 * cs * ow;
      float* o = u + (cs / S) * co_stride + (cs % S) * ow;
      whole_vectors(ow, [&](auto ops, int64_t i) {
        using O = decltype(ops);
        const typename O::reg g0 = O::loadu(g + i), g1 = O::loadu(g + ow + i);
        O::storeu(o + i, g0);
        O::storeu(o + blk + i, O::mul(O::add(g0, g1), O::set1(0.5f)));
        O::storeu(o + 2 * blk + i, O::mul(O::sub(g0, g1), O::set1(0.5f)));
        O::storeu(o + 3 * blk + i, g1);
      });
    }
  }

  // Image `slot` of a group of `images` (slot < images <= the slots the work was sized for): its
  // transforms into the group's rows, and after the group's last image the point sums over all of
  // them, acc[(j*cout + co)*lp + kx*cin + ci] += M. The group's images are consecutive rows of one
  // GEMM (V[j][image][s][row], U[b][co][image][s][ow]), so a tile runs images * oh/2 * ow pixels
  // between its loads and stores of acc (keras.conv2: 32 per image).
  static void run(float* acc, const float* dy, const float* xcl,
                  const fastconv::cpu::DirectConvArgs& a, int64_t lp, float* work, int64_t slot,
                  int64_t images, const fastconv::cpu::PrefetchSpans& next) {
    constexpr int kPoints = fastconv::cpu::kRowsPoints;
    static constexpr int kDyBlock[kPoints] = {0, 1, 2, 3, 0, 1, 3};  // point j's dy operand
    const int64_t S = a.oh / 2, vblk = S * a.wp * a.cin, uimg = S * a.ow;
    const int64_t vpt = images * vblk, ublk = a.cout * images * uimg;
    float* v = work;
    float* u = work + kPoints * vpt + V::W;
    transform_x(v + slot * vblk, xcl, a, vpt);
    transform_dy(u + slot * uimg, dy, a, images * uimg, ublk);
    if (slot + 1 < images) return;
    fastconv::cpu::DirectConvArgs g = a;  // one point's GEMM: a one-row kernel over the rows
    g.kh = 1;
    g.oh = images * S;
    g.hp = g.oh;
    // next's lines spread evenly over the GEMMs' tiles (cblocks x chunks per point, as CL::run
    // cuts them), a few per tile.
    const int64_t tiles = kPoints * ((a.cout + CL::kCoMax - 1) / CL::kCoMax) *
                          ((lp / V::W + CL::kNvMax - 1) / CL::kNvMax);
    PrefetchTrickle trickle(next, tiles);
    for (int j = 0; j < kPoints; ++j)
      CL::run(acc + j * a.cout * lp, u + kDyBlock[j] * ublk, v + j * vpt, g, lp,
              [&] { trickle.step(); });
  }
};
