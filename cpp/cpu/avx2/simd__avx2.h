// simd__avx2.h — thin AVX2+FMA vector wrappers (8 floats) for the kernels in ../*.inl.
// Include ONLY from the AVX2 translation unit, INSIDE its anonymous namespace (file-local, compiled
// with -mavx2 -mfma). Same interface as simd__avx512.h (see there); masks are vector masks here.
#pragma once

struct VecAvx2 {
  using reg = __m256;
  using tmask = __m256i;
  using pmask = __m256;
  static constexpr int W = 8;
  // vmaskmovps stores are microcoded on AMD cores: kernels may store whole vectors into slack.
  static constexpr bool masked_store_fast = false;

  static reg zero() { return _mm256_setzero_ps(); }
  static reg set1(float v) { return _mm256_set1_ps(v); }
  static reg loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void storeu(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static tmask tail(int64_t n) {  // n in [0, 8]: lanes < n set
    alignas(32) static const int32_t table[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                  0,  0,  0,  0,  0,  0,  0,  0};
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(table + 8 - n));
  }
  static tmask range(int64_t l0, int64_t l1) {  // lanes [l0, l1), 0 <= l0 <= l1 <= 8
    return _mm256_andnot_si256(tail(l0), tail(l1));
  }
  static reg load_tail(const float* p, tmask m) { return _mm256_maskload_ps(p, m); }
  static void store_tail(float* p, reg v, tmask m) { _mm256_maskstore_ps(p, m, v); }
  // Lanes 0, 1 to p[0..1] and lanes 2, 3 to q[0..1]: two 64-bit stores (vmaskmovps stores are
  // microcoded on AMD cores).
  static void store_pairs(float* p, float* q, reg v) {
    const __m128 s = _mm256_castps256_ps128(v);
    _mm_storel_pi(reinterpret_cast<__m64*>(p), s);
    _mm_storeh_pi(reinterpret_cast<__m64*>(q), s);
  }
  static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg relu(reg a) { return _mm256_max_ps(_mm256_setzero_ps(), a); }  // NaN stays NaN

  static pmask take_right(reg r, reg l) {
    const reg gt = _mm256_cmp_ps(r, l, _CMP_GT_OQ);
    const reg r_nan = _mm256_cmp_ps(r, r, _CMP_UNORD_Q);
    const reg l_num = _mm256_cmp_ps(l, l, _CMP_ORD_Q);
    return _mm256_or_ps(gt, _mm256_and_ps(r_nan, l_num));
  }
  static reg blend(pmask m, reg a, reg b) { return _mm256_blendv_ps(a, b, m); }
  static void deinterleave(reg a, reg b, reg& even, reg& odd) {
    // shuffle gives [a0 a2 b0 b2 | a4 a6 b4 b6]; the 64-bit permute restores lane order.
    even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
    odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
  }
  static void interleave(reg a, reg b, reg& lo, reg& hi) {
    // unpack gives [a0 b0 a1 b1 | a4 b4 a5 b5] and [a2 b2 a3 b3 | a6 b6 a7 b7]; the 128-bit
    // permutes put the halves in order.
    const reg l = _mm256_unpacklo_ps(a, b), h = _mm256_unpackhi_ps(a, b);
    lo = _mm256_permute2f128_ps(l, h, 0x20);
    hi = _mm256_permute2f128_ps(l, h, 0x31);
  }
  // deinterleave / interleave with the lanes in a fixed order other than 0..7 (0 1 4 5 2 3 6 7):
  // in-lane shuffles only, no lane-crossing permute. Lane-wise arithmetic between the two keeps
  // the order, and interleave_tiles gives the W + W outputs in order, as interleave would.
  static void deinterleave_tiles(reg a, reg b, reg& even, reg& odd) {
    even = _mm256_shuffle_ps(a, b, 0x88);  // [a0 a2 b0 b2 | a4 a6 b4 b6]
    odd = _mm256_shuffle_ps(a, b, 0xDD);
  }
  static void interleave_tiles(reg a, reg b, reg& lo, reg& hi) {
    lo = _mm256_unpacklo_ps(a, b);  // lanes 0 1 4 5 interleaved: [a0 b0 a1 b1 | a4 b4 a5 b5]
    hi = _mm256_unpackhi_ps(a, b);
  }
  // r[j] <- column j of the 8 x 8 block r (rows r[0..7]).
  static void transpose8(reg (&r)[8]) {
    reg t[8], u[8];
    for (int k = 0; k < 4; ++k) {
      t[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]);
      t[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for (int h = 0; h < 2; ++h) {  // rows 0-3, then 4-7
      u[4 * h] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
      u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
      u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
      u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
    }
    for (int j = 0; j < 8; ++j)
      r[j] = _mm256_permute2f128_ps(u[j & 3], u[4 + (j & 3)], j < 4 ? 0x20 : 0x31);
  }
  static reg swap_halves(reg a) { return _mm256_permute2f128_ps(a, a, 0x01); }
  // Pairwise horizontal adds within each 128-bit half, then the halves added: lanes 0..3 = the
  // sums of a0..a3 (a fixed tree); lanes 4.. hold junk.
  static reg sum_lanes4(reg a0, reg a1, reg a2, reg a3) {
    const reg h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    return _mm256_castps128_ps256(s);
  }
  static reg load_merge(reg src, tmask m, const float* p) {
    return _mm256_blendv_ps(src, _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static void store_idx(int64_t* dst, int64_t n, int64_t base, int64_t step, reg off) {
    const __m256i o32 = _mm256_cvttps_epi32(off);
    const __m256i lo_base = _mm256_setr_epi64x(base, base + step, base + 2 * step, base + 3 * step);
    const __m256i hi_base = _mm256_add_epi64(lo_base, _mm256_set1_epi64x(4 * step));
    const __m256i lo = _mm256_add_epi64(lo_base, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(o32)));
    const __m256i hi = _mm256_add_epi64(hi_base, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(o32, 1)));
    if (n >= 8) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), lo);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 4), hi);
    } else {  // 32-, 16- and 8-byte stores, not a buffer copied element by element (the 2x2
              // pool forward's 7-window rows, AVX2, 1 thread: cnn1.pool2 0.170 -> 0.107 ms
              // together with store_first for the values)
      __m256i v = lo;
      if (n >= 4) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), lo);
        v = hi;
        dst += 4;
        n -= 4;
      }
      __m128i q = _mm256_castsi256_si128(v);
      if (n >= 2) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), q);
        q = _mm256_extracti128_si256(v, 1);
        dst += 2;
        n -= 2;
      }
      if (n == 1) _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), q);
    }
  }
  // The first n (< 8) lanes by 16-, 8- and 4-byte stores: vmaskmovps stores are slow on AMD
  // (Zen 3/4: the 2x2 pool backward's row tails took a third of its time with them).
  static void store_first(float* p, reg v, int64_t n) {
    __m128 q = _mm256_castps256_ps128(v);
    if (n >= 4) {
      _mm_storeu_ps(p, q);
      q = _mm256_extractf128_ps(v, 1);
      p += 4;
      n -= 4;
    }
    if (n >= 2) {
      _mm_storel_pi(reinterpret_cast<__m64*>(p), q);
      q = _mm_movehl_ps(q, q);
      p += 2;
      n -= 2;
    }
    if (n == 1) _mm_store_ss(p, q);
  }
  // --- 32-bit integer lanes and window pairs (maxpool2d_bwd_tiles.inl) ---
  using ireg = __m256i;
  static ireg izero() { return _mm256_setzero_si256(); }
  static ireg iset1(int32_t v) { return _mm256_set1_epi32(v); }
  static ireg iota() { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
  static ireg iadd(ireg a, ireg b) { return _mm256_add_epi32(a, b); }
  static ireg ior(ireg a, ireg b) { return _mm256_or_si256(a, b); }
  static ireg iand(ireg a, ireg b) { return _mm256_and_si256(a, b); }
  static ireg izero_past(ireg a, int64_t n) { return _mm256_and_si256(a, tail(n)); }
  static pmask ieq(ireg a, ireg b) { return _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, b)); }
  static reg keep(pmask m, reg v) { return _mm256_and_ps(m, v); }  // m ? v : +0
  static bool all_zero(ireg a) { return _mm256_testz_si256(a, a) != 0; }
  static bool odd32_zero(ireg a) {  // the high dwords of four int64
    return _mm256_testz_si256(a, _mm256_setr_epi32(0, -1, 0, -1, 0, -1, 0, -1)) != 0;
  }
  // n <= 4 int64 from p (zeros past n), as 8 dwords.
  static ireg load_i64(const int64_t* p, int64_t n) {
    if (n == 4) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm256_maskload_epi64(reinterpret_cast<const long long*>(p), tail(2 * n));
  }
  // Each int64's low dword twice: lo0 lo0 lo1 lo1 lo2 lo2 lo3 lo3 (in-lane).
  static ireg dup_low32(ireg a) { return _mm256_shuffle_epi32(a, 0xA0); }
  // p0 p0 p1 p1 p2 p2 p3 p3 from n <= 4 floats (zeros past n): the four broadcast to both halves,
  // then an in-lane permute.
  static reg dup_pairs(const float* p, int64_t n) {
    const __m256i ctl = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    if (n == 4) return _mm256_permutevar_ps(_mm256_broadcast_ps(reinterpret_cast<const __m128*>(p)), ctl);
    const __m128 q = _mm_maskload_ps(p, _mm256_castsi256_si128(tail(n)));
    return _mm256_permutevar_ps(_mm256_set_m128(q, q), ctl);
  }
  // The 4 bytes at p, each twice, as dwords: c0 c0 c1 c1 c2 c2 c3 c3.
  static ireg codes_pairs(const uint8_t* p) {
    int32_t v;
    __builtin_memcpy(&v, p, sizeof v);  // no <cstring> inside the namespace
    const __m128i c = _mm_cvtsi32_si128(v);
    return _mm256_cvtepu8_epi32(_mm_unpacklo_epi8(c, c));
  }
  // acc + 1 in the lanes where k0 or k1 is set (k0 and k1 disjoint).
  static ireg count_hits(ireg acc, pmask k0, pmask k1) {
    return _mm256_sub_epi32(_mm256_sub_epi32(acc, _mm256_castps_si256(k0)), _mm256_castps_si256(k1));
  }
  static int64_t isum(ireg a) {
    const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    const __m128i t = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    return _mm_cvtsi128_si32(_mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1)));
  }
  static pmask not_positive(reg v) { return _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NGT_UQ); }
  static void store_codes(uint8_t* dst, int64_t n, reg code) {
    const __m256i c = _mm256_cvttps_epi32(code);
    const __m128i c16 = _mm_packus_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
    const __m128i c8 = _mm_packus_epi16(c16, c16);
    if (n >= 8) {
      _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), c8);
    } else {
      const uint64_t v = uint64_t(_mm_cvtsi128_si64(c8));
      for (int64_t j = 0; j < n; ++j) dst[j] = uint8_t(v >> (8 * j));
    }
  }
};
