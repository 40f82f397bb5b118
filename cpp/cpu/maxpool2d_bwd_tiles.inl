// maxpool2d_bwd_tiles.inl — the max-pool 2x2 / stride 2 backward "tile writers": every dx element
// of a plane written once, in order (the gradient where the window's index or code points, +0
// elsewhere), instead of zero-fill + scatter. Written against the Vec interface of
// avx2/simd__avx2.h and avx512/simd__avx512.h; include INSIDE the anonymous namespace of an ISA
// translation unit, after its Vec struct.
//
// The writer works in dx order. A vector covers W consecutive cells of one dx row, i.e. P = W / 2
// windows; the cell at flat position f = (2*oy + r)*W + j belongs to window (oy, j / 2) and gets
// that window's gradient iff its index equals f (the code variant: iff its code is 2r + (j & 1)). So each window's index (or code) is duplicated into two adjacent 32-bit lanes
// (V::dup_low32 / V::codes_pairs, in-lane), its gradient likewise (V::dup_pairs), and one compare
// per dx row against the cells' own flat positions picks the winner: no interleaving shuffles.
// Which windows point outside their own tile is folded into vectors tested once per plane.

// The floor-mode remainder column of a row pair (W odd) gets no gradient.
inline void zero_floor_columns(float* r0, float* r1, int64_t W, int64_t OW) {
  if (2 * OW < W) {
    std::memset(r0 + 2 * OW, 0, size_t(W - 2 * OW) * sizeof(float));
    std::memset(r1 + 2 * OW, 0, size_t(W - 2 * OW) * sizeof(float));
  }
}

// Both dx rows of the n (<= W/2) windows at g: k0 / k1 mark the winning cells of the top / bottom
// row; whole vectors by plain stores (vgg.pool's backward 0.166 -> 0.160 ms at 1 thread against
// masked stores throughout), the remainder masked to its 2n cells.
template <class V>
inline __attribute__((always_inline)) void store_tile_rows(float* p0, float* p1,
                                                           typename V::pmask k0,
                                                           typename V::pmask k1,
                                                           typename V::reg g, int64_t n) {
  if (2 * n == V::W) {
    V::storeu(p0, V::keep(k0, g));
    V::storeu(p1, V::keep(k1, g));
  } else {
    V::store_first(p0, V::keep(k0, g), 2 * n);
    V::store_first(p1, V::keep(k1, g), 2 * n);
  }
}

// Max-pool 2x2/2 backward of ONE plane from int64 indices (MaxPool2x2BwdFn). Returns whether every
// index lies in its own tile: its high dword 0 (OR-ed over the plane) and its low dword equal to
// one of the window's four cells. A window's index can match at most one of the four lanes it is
// compared in (distinct cells), so all windows are inside iff the plane's matches number OH*OW:
// a per-lane count, summed once per plane, no branch per step (round 12: cnn1.pool1's 2000 planes
// in a C++ loop, 1 thread, 0.18-0.22 -> 0.15-0.19 ms against a mask test per step). Lanes past
// a row's last window compare zeros against cells > 0 and match nothing.
template <class V>
bool maxpool2d_bwd_2x2s2_tiles(float* dx, const float* dy, const int64_t* idx, int64_t H,
                               int64_t W, int64_t OH, int64_t OW) {
  using ireg = typename V::ireg;
  constexpr int64_t P = V::W / 2;  // windows per vector
  if (H * W >= (int64_t(1) << 31)) return false;  // flat positions compared as int32
  const ireg step = V::iset1(int32_t(V::W)), down = V::iset1(int32_t(W));
  ireg high = V::izero(), hits = V::izero();
  for (int64_t oy = 0; oy < OH; ++oy) {
    float* r0 = dx + 2 * oy * W;
    float* r1 = r0 + W;
    const int64_t* ir = idx + oy * OW;
    const float* gr = dy + oy * OW;
    ireg f0 = V::iadd(V::iset1(int32_t(2 * oy * W)), V::iota());  // flat positions of r0's cells
    int64_t ox = 0;
    for (; ox + P <= OW; ox += P) {
      const ireg a = V::load_i64(ir + ox, P);
      high = V::ior(high, a);
      const ireg d = V::dup_low32(a);
      const auto k0 = V::ieq(d, f0), k1 = V::ieq(d, V::iadd(f0, down));
      store_tile_rows<V>(r0 + 2 * ox, r1 + 2 * ox, k0, k1, V::dup_pairs(gr + ox, P), P);
      hits = V::count_hits(hits, k0, k1);
      f0 = V::iadd(f0, step);
    }
    if (ox < OW) {  // n < P windows, zeros loaded past them
      const int64_t n = OW - ox;
      const ireg a = V::load_i64(ir + ox, n);
      high = V::ior(high, a);
      const ireg d = V::dup_low32(a);
      const auto k0 = V::ieq(d, f0), k1 = V::ieq(d, V::iadd(f0, down));
      store_tile_rows<V>(r0 + 2 * ox, r1 + 2 * ox, k0, k1, V::dup_pairs(gr + ox, n), n);
      hits = V::count_hits(hits, k0, k1);
    }
    zero_floor_columns(r0, r1, W, OW);
  }
  if (2 * OH < H) std::memset(dx + 2 * OH * W, 0, size_t((H - 2 * OH) * W) * sizeof(float));
  return V::odd32_zero(high) && V::isum(hits) == OH * OW;
}

// Backward of the coded pooling (Unpool2x2CodesFn) over `planes` planes: cell (r, c) of a window
// gets its gradient iff the code is 2r + c (a code with bit 2 set, "no gradient", matches none).
// Returns false if some code is >= 8.
template <class V>
bool unpool2d_codes_2x2s2_tiles(float* dx, const float* dy, const uint8_t* codes, int64_t H,
                                int64_t W, int64_t OH, int64_t OW, int64_t planes) {
  using ireg = typename V::ireg;
  constexpr int64_t P = V::W / 2;
  const ireg one = V::iset1(1), two = V::iset1(2), high_bits = V::iset1(~7);
  const ireg cell0 = V::iand(V::iota(), one), cell1 = V::iadd(cell0, two);  // 0 1 0 1.. / 2 3 2 3..
  ireg bad = V::izero();
  const uint8_t* codes_end = codes + planes * OH * OW;
  for (int64_t pl = 0; pl < planes; ++pl) {
    float* dxp = dx + pl * H * W;
    for (int64_t oy = 0; oy < OH; ++oy) {
      float* r0 = dxp + 2 * oy * W;
      float* r1 = r0 + W;
      const uint8_t* cr = codes + (pl * OH + oy) * OW;
      const float* gr = dy + (pl * OH + oy) * OW;
      for (int64_t ox = 0; ox < OW; ox += P) {
        const int64_t n = OW - ox < P ? OW - ox : P;
        ireg c;
        if (cr + ox + P <= codes_end) {  // P bytes readable inside this call's codes
          c = V::codes_pairs(cr + ox);
          if (n < P) c = V::izero_past(c, 2 * n);
        } else {  // the call's last few codes
          uint8_t tmp[P] = {};
          std::memcpy(tmp, cr + ox, size_t(n));
          c = V::codes_pairs(tmp);
        }
        bad = V::ior(bad, V::iand(c, high_bits));
        store_tile_rows<V>(r0 + 2 * ox, r1 + 2 * ox, V::ieq(c, cell0), V::ieq(c, cell1),
                           V::dup_pairs(gr + ox, n), n);
      }
      zero_floor_columns(r0, r1, W, OW);
    }
    if (2 * OH < H) std::memset(dxp + 2 * OH * W, 0, size_t((H - 2 * OH) * W) * sizeof(float));
  }
  return V::all_zero(bad);
}
