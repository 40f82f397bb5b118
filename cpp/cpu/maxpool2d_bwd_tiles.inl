// maxpool2d_bwd_tiles.inl — the max-pool 2x2 / stride 2 backward "tile writers": every dx element
// of a plane written once, in order (the gradient where the window's index or code points, +0
// elsewhere), instead of zero-fill + scatter. Written against the Vec interface of
// avx2/simd__avx2.h and avx512/simd__avx512.h; include INSIDE the anonymous namespace of an ISA
// translation unit, after its Vec struct.
//
// The writer works in dx order. A vector covers W consecutive cells of one dx row, i.e. P = W / 2
// windows; the cell at flat position f = (2*oy + r)*W + j belongs to window (oy, j / 2) and gets
// that window's gradient iff its index equals f (the code variant: iff its code is 2r + (j & 1)).
// So each window's index (or code) is duplicated into two adjacent 32-bit lanes (V::dup_low32 /
// V::codes_pairs, in-lane), its gradient likewise (V::dup_pairs), and one compare per dx row
// against the cells' own flat positions picks the winner: no interleaving shuffles. Which windows
// point outside their own tile is folded into vectors tested once per call.

// The cells no window covers (floor-mode remainder columns and rows: W odd, H odd, or a wider
// input) get no gradient. A pass of its own after the windows' loops: a memset call inside them
// made GCC keep the accumulators on the stack (AVX2, cnn1.pool1, 1 thread: 0.17 -> 0.38 ms).
inline void zero_uncovered(float* dx, int64_t H, int64_t W, int64_t OH, int64_t OW,
                           int64_t planes) {
  if (2 * OW == W && 2 * OH == H) return;
  for (int64_t pl = 0; pl < planes; ++pl) {
    float* p = dx + pl * H * W;
    if (2 * OW + 1 == W) {  // W odd: one cell per row (a memset call each cost odd planes 2x)
      for (int64_t r = 0; r < 2 * OH; ++r) p[r * W + 2 * OW] = 0.0f;
    } else if (2 * OW < W) {
      for (int64_t r = 0; r < 2 * OH; ++r)
        std::memset(p + r * W + 2 * OW, 0, size_t(W - 2 * OW) * sizeof(float));
    }
    if (2 * OH < H) std::memset(p + 2 * OH * W, 0, size_t((H - 2 * OH) * W) * sizeof(float));
  }
}

// Both dx rows of the n (<= W/2) windows at g: k0 / k1 mark the winning cells of the top / bottom
// row; whole vectors by plain stores (vgg.pool's backward 0.166 -> 0.160 ms at 1 thread against
// masked stores throughout), the remainder by V::store_first to its 2n cells.
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

// Max-pool 2x2/2 backward of `planes` planes from int64 indices (MaxPool2x2BwdFn). Returns whether
// every index lies in its own tile: its high dword 0 (OR-ed over the call) and its low dword equal
// to one of the window's four cells. A window's index can match at most one of the four lanes it
// is compared in (distinct cells), so all windows are inside iff the matches number OH*OW per
// plane: a per-lane count, summed once per block of planes, no branch per step (round 12: a mask
// test + branch per step cost cnn1.pool1's 2000 planes 0.18-0.22 against 0.15-0.19 ms). Lanes past
// a row's last window compare zeros against cells > 0 and match nothing. Many planes per call
// (round 14, AVX2, 1 thread, against one plane per call: keras.pool2's 8x8 planes 0.316 -> 0.188
// ms, lenet.pool2 0.046 -> 0.034, cnn1.pool1 0.195 -> 0.170).
template <class V>
bool maxpool2d_bwd_2x2s2_tiles(float* dx, const float* dy, const int64_t* idx, int64_t H,
                               int64_t W, int64_t OH, int64_t OW, int64_t planes) {
  using ireg = typename V::ireg;
  constexpr int64_t P = V::W / 2;  // windows per vector
  if (H * W >= (int64_t(1) << 31)) return false;  // flat positions compared as int32
  const ireg step = V::iset1(int32_t(V::W)), down = V::iset1(int32_t(W));
  const ireg row_pair = V::iset1(int32_t(2 * W));
  // Planes per block: its match count stays below 2^31 in every lane.
  const int64_t block = std::max<int64_t>(1, (int64_t(1) << 30) / std::max<int64_t>(1, OH * OW));
  // Matches a row counts when all its windows are inside: the overlapped ones twice.
  const int64_t counted = OW >= P ? (OW + P - 1) / P * P : OW;
  ireg high = V::izero();
  bool inside = true;
  for (int64_t pb = 0; pb < planes; pb += block) {
    const int64_t pe = std::min(planes, pb + block);
    ireg hits = V::izero();
    for (int64_t pl = pb; pl < pe; ++pl) {
      ireg row0 = V::iota();  // flat positions of the first W cells of the pair's top row
      for (int64_t oy = 0; oy < OH; ++oy, row0 = V::iadd(row0, row_pair)) {
        float* r0 = dx + (pl * H + 2 * oy) * W;
        float* r1 = r0 + W;
        const int64_t* ir = idx + (pl * OH + oy) * OW;
        const float* gr = dy + (pl * OH + oy) * OW;
        ireg f0 = row0;
        int64_t ox = 0;
        for (; ox + P <= OW; ox += P, f0 = V::iadd(f0, step)) {
          const ireg a = V::load_i64(ir + ox, P);
          high = V::ior(high, a);
          const ireg d = V::dup_low32(a);
          const auto k0 = V::ieq(d, f0), k1 = V::ieq(d, V::iadd(f0, down));
          store_tile_rows<V>(r0 + 2 * ox, r1 + 2 * ox, k0, k1, V::dup_pairs(gr + ox, P), P);
          hits = V::count_hits(hits, k0, k1);
        }
        if (ox < OW && OW >= P) {
          // The row's last P windows again as whole vectors (the overlap rewrites the same
          // values), no masked loads or stores: AVX2, 1 thread, cnn1.pool2 0.055 -> 0.049 ms,
          // fashion.pool2 0.057 -> 0.051, lenet.pool2 0.029 -> 0.027.
          const int64_t o = OW - P;
          const ireg fo = V::iadd(row0, V::iset1(int32_t(2 * o)));
          const ireg a = V::load_i64(ir + o, P);
          high = V::ior(high, a);
          const ireg d = V::dup_low32(a);
          const auto k0 = V::ieq(d, fo), k1 = V::ieq(d, V::iadd(fo, down));
          store_tile_rows<V>(r0 + 2 * o, r1 + 2 * o, k0, k1, V::dup_pairs(gr + o, P), P);
          hits = V::count_hits(hits, k0, k1);
        } else if (ox < OW) {  // n < P windows, zeros loaded past them
          const int64_t n = OW - ox;
          const ireg a = V::load_i64(ir + ox, n);
          high = V::ior(high, a);
          const ireg d = V::dup_low32(a);
          const auto k0 = V::ieq(d, f0), k1 = V::ieq(d, V::iadd(f0, down));
          store_tile_rows<V>(r0 + 2 * ox, r1 + 2 * ox, k0, k1, V::dup_pairs(gr + ox, n), n);
          hits = V::count_hits(hits, k0, k1);
        }
      }
    }
    inside = inside && V::isum(hits) == (pe - pb) * OH * counted;
  }
  zero_uncovered(dx, H, W, OH, OW, planes);
  return inside && V::odd32_zero(high);
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
        } else {  // the call's last few codes, byte by byte (no memcpy call: see zero_uncovered)
          uint8_t tmp[P] = {};
          for (int64_t j = 0; j < n; ++j) tmp[j] = cr[ox + j];
          c = V::codes_pairs(tmp);
        }
        bad = V::ior(bad, V::iand(c, high_bits));
        store_tile_rows<V>(r0 + 2 * ox, r1 + 2 * ox, V::ieq(c, cell0), V::ieq(c, cell1),
                           V::dup_pairs(gr + ox, n), n);
      }
    }
  }
  zero_uncovered(dx, H, W, OH, OW, planes);
  return V::all_zero(bad);
}
