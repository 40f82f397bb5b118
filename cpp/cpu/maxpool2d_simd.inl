// maxpool2d_simd.inl — vectorised max-pool 2x2 / stride 2 / no padding forward (int64 indices, or
// one-byte window codes for the fused conv + ReLU + pool), written against
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

// One step of the tournament: the n (<= W) windows of output row oy starting at column ox, rows r0
// and r1 of the input; v = their maxima, off = the winner's cell as one of o0..o3 (cells (0,0),
// (0,1), (1,0), (1,1) of the window).
template <class V>
inline __attribute__((always_inline)) void pool_step(const float* r0, const float* r1, int64_t ox,
                                                     int64_t n, typename V::reg o0,
                                                     typename V::reg o1, typename V::reg o2,
                                                     typename V::reg o3, typename V::reg& v,
                                                     typename V::reg& off) {
  using reg = typename V::reg;
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
  const reg va = V::blend(ma, ae, ao), oa = V::blend(ma, o0, o1);
  const auto mb = V::take_right(bo, be);
  const reg vb = V::blend(mb, be, bo), ob = V::blend(mb, o2, o3);
  const auto m = V::take_right(vb, va);
  v = V::blend(m, va, vb);
  off = V::blend(m, oa, ob);
}

template <class V>
void maxpool2d_fwd_2x2s2(float* y, int64_t* idx, const float* x, int64_t H, int64_t W,
                         int64_t OH, int64_t OW, int64_t planes) {
  using reg = typename V::reg;
  const reg v_zero = V::zero(), v_one = V::set1(1.0f);
  const reg v_w = V::set1(float(W)), v_w1 = V::set1(float(W + 1));
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x + pl * H * W;
    float* yp = y + pl * OH * OW;
    int64_t* ip = idx + pl * OH * OW;
    for (int64_t oy = 0; oy < OH; ++oy) {
      const float* r0 = xp + 2 * oy * W;
      float* yr = yp + oy * OW;
      int64_t* ir = ip + oy * OW;
      const int64_t base = 2 * oy * W;
      for (int64_t ox = 0; ox < OW; ox += V::W) {
        const int64_t n = OW - ox < V::W ? OW - ox : V::W;
        reg v, off;
        pool_step<V>(r0, r0 + W, ox, n, v_zero, v_one, v_w, v_w1, v, off);
        if (n == V::W) {
          V::storeu(yr + ox, v);
        } else {
          V::store_first(yr + ox, v, n);  // AVX2: no vmaskmovps store (slow on AMD)
        }
        V::store_idx(ir + ox, n, base + 2 * ox, 2, off);
      }
    }
  }
}

// The same pooling of ReLU outputs with one-byte window codes (see MaxPool2x2CodesFn): the
// winner's cell 0..3, + 4 where the maximum is not > 0 (the ReLU passes no gradient there).
// Memory: 4 floats in, 1 float + 1 byte out per output (the int64 indices were 8 bytes).
// A row's last windows, where they are fewer than W but the row has W or more, are pooled as the
// row's last W windows, overlapping the step before (its outputs written again, the same
// values): whole loads and stores instead of masked loads and the tail stores (cnn1.conv1's 14
// windows a row on AVX2: 8 + 8 from 6, not 8 + 6).
template <class V>
void maxpool2d_codes_2x2s2(float* y, uint8_t* codes, const float* x, int64_t H, int64_t W,
                           int64_t OH, int64_t OW, int64_t planes) {
  using reg = typename V::reg;
  const reg c0 = V::zero(), c1 = V::set1(1.0f), c2 = V::set1(2.0f), c3 = V::set1(3.0f);
  const reg c4 = V::set1(4.0f);
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x + pl * H * W;
    float* yp = y + pl * OH * OW;
    uint8_t* cp = codes + pl * OH * OW;
    for (int64_t oy = 0; oy < OH; ++oy) {
      const float* r0 = xp + 2 * oy * W;
      float* yr = yp + oy * OW;
      uint8_t* cr = cp + oy * OW;
      for (int64_t step = 0; step < OW; step += V::W) {
        const bool whole = OW - step >= V::W || OW < V::W;
        const int64_t ox = whole ? step : OW - V::W;
        const int64_t n = OW - ox < V::W ? OW - ox : V::W;
        reg v, off;
        pool_step<V>(r0, r0 + W, ox, n, c0, c1, c2, c3, v, off);
        if (n == V::W) {
          V::storeu(yr + ox, v);
        } else {
          V::store_first(yr + ox, v, n);  // AVX2: no vmaskmovps store (slow on AMD)
        }
        V::store_codes(cr + ox, n, V::blend(V::not_positive(v), off, V::add(off, c4)));
      }
    }
  }
}
