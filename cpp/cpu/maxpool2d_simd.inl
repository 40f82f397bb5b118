// maxpool2d_simd.inl — vectorised max-pool 2x2 / stride 2 / no padding forward, written against
// the SIMD interface of avx2/simd__avx2.h and avx512/simd__avx512.h. Include INSIDE the anonymous
// namespace of an ISA translation unit, after its Vec struct.
//
// One output row at a time: load 2W consecutive floats of each of the two input rows, split them
// into even / odd columns, then a tournament (row 0: even vs odd, row 1: even vs odd, then row 0
// vs row 1). The pairwise rule "right wins iff strictly greater, or NaN over a number" picks the
// first maximum of a total preorder (NaN on top), so the tournament gives exactly the sequential
// row-major scan's winner. Offsets inside the window (0, 1, W, W+1) ride along as floats (exact
// below 2^24; the driver falls back to the generic loop beyond) and become int64 h*W + w.
// Memory-bound: 4 input floats in, 1 float + 1 int64 out per output.

// The tournament over one plane; `store(oy, ox, n, v, off)` writes n outputs of row oy from
// column ox: v the window maxima, off the winner's offset as one of the four floats o[] (cells
// (0,0), (0,1), (1,0), (1,1) of the window).
template <class V, class Store>
inline __attribute__((always_inline)) void maxpool2d_2x2s2_plane(const float* xp, int64_t W,
                                                                 int64_t OH, int64_t OW,
                                                                 const float (&o)[4],
                                                                 Store&& store) {
  using reg = typename V::reg;
  const reg v_o0 = V::set1(o[0]), v_o1 = V::set1(o[1]), v_o2 = V::set1(o[2]),
            v_o3 = V::set1(o[3]);
  for (int64_t oy = 0; oy < OH; ++oy) {
    const float* r0 = xp + 2 * oy * W;
    const float* r1 = r0 + W;
    for (int64_t ox = 0; ox < OW; ox += V::W) {
      const int64_t n = OW - ox < V::W ? OW - ox : V::W;
      reg a0, a1, b0, b1;  // a: row 0, b: row 1; 0: first W floats, 1: next W
      if (n == V::W) {
        a0 = V::loadu(r0 + 2 * ox);
        a1 = V::loadu(r0 + 2 * ox + V::W);
        b0 = V::loadu(r1 + 2 * ox);
        b1 = V::loadu(r1 + 2 * ox + V::W);
      } else {  // 2n <= W - 2*ox floats are in bounds
        const int64_t c0 = 2 * n < V::W ? 2 * n : V::W, c1 = 2 * n - c0;
        const auto m0 = V::tail(c0), m1 = V::tail(c1);
        a0 = V::load_tail(r0 + 2 * ox, m0);
        a1 = V::load_tail(r0 + 2 * ox + V::W, m1);
        b0 = V::load_tail(r1 + 2 * ox, m0);
        b1 = V::load_tail(r1 + 2 * ox + V::W, m1);
      }
      reg ae, ao, be, bo;
      V::deinterleave(a0, a1, ae, ao);
      V::deinterleave(b0, b1, be, bo);
      const auto ma = V::take_right(ao, ae);
      const reg va = V::blend(ma, ae, ao), oa = V::blend(ma, v_o0, v_o1);
      const auto mb = V::take_right(bo, be);
      const reg vb = V::blend(mb, be, bo), ob = V::blend(mb, v_o2, v_o3);
      const auto m = V::take_right(vb, va);
      store(oy, ox, n, V::blend(m, va, vb), V::blend(m, oa, ob));
    }
  }
}

template <class V>
void maxpool2d_fwd_2x2s2(float* y, int64_t* idx, const float* x, int64_t H, int64_t W,
                         int64_t OH, int64_t OW, int64_t planes) {
  using reg = typename V::reg;
  const float o[4] = {0.0f, 1.0f, float(W), float(W + 1)};
  for (int64_t pl = 0; pl < planes; ++pl) {
    float* yp = y + pl * OH * OW;
    int64_t* ip = idx + pl * OH * OW;
    maxpool2d_2x2s2_plane<V>(x + pl * H * W, W, OH, OW, o,
                             [&](int64_t oy, int64_t ox, int64_t n, reg v, reg off) {
                               float* yr = yp + oy * OW + ox;
                               if (n == V::W) {
                                 V::storeu(yr, v);
                               } else {
                                 V::store_tail(yr, v, V::tail(n));
                               }
                               V::store_idx(ip + oy * OW + ox, n, 2 * oy * W + 2 * ox, 2, off);
                             });
  }
}

// The same pooling of ReLU outputs with one-byte window codes (see MaxPool2x2CodesFn): the
// winner's cell 0..3, + 4 where the maximum is not > 0 (the ReLU passes no gradient there).
// Memory: 4 floats in, 1 float + 1 byte out per output (the int64 indices were 8 bytes).
template <class V>
void maxpool2d_codes_2x2s2(float* y, uint8_t* codes, const float* x, int64_t H, int64_t W,
                           int64_t OH, int64_t OW, int64_t planes) {
  using reg = typename V::reg;
  const float o[4] = {0.0f, 1.0f, 2.0f, 3.0f};
  const reg v_four = V::set1(4.0f);
  for (int64_t pl = 0; pl < planes; ++pl) {
    float* yp = y + pl * OH * OW;
    uint8_t* cp = codes + pl * OH * OW;
    maxpool2d_2x2s2_plane<V>(x + pl * H * W, W, OH, OW, o,
                             [&](int64_t oy, int64_t ox, int64_t n, reg v, reg off) {
                               float* yr = yp + oy * OW + ox;
                               if (n == V::W) {
                                 V::storeu(yr, v);
                               } else {
                                 V::store_tail(yr, v, V::tail(n));
                               }
                               const reg code = V::blend(V::not_positive(v), off, V::add(off, v_four));
                               V::store_codes(cp + oy * OW + ox, n, code);
                             });
  }
}
