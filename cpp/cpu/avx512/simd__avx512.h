// simd__avx512.h — thin AVX-512F vector wrappers (16 floats) for the kernels in ../*.inl.
// Include ONLY from the AVX-512 translation unit, INSIDE its anonymous namespace: the struct is then
// file-local and compiled with -mavx512f, so no other ISA's code can link against it.
// Interface shared with simd__avx2.h (the .inl kernels are written against it):
//   reg / tmask (tail mask) / pmask (lane predicate), W (lanes), masked_store_fast (store_tail
//   as cheap as storeu; else kernels may store whole vectors into slack)
//   zero, set1, loadu, storeu, tail(n), range(l0, l1), load_tail, store_tail, fmadd, add, sub, mul, relu, hsum
//   swap_halves(x): the two halves exchanged (Winograd)
//   interleave(a, b, lo, hi): lo = a0 b0 a1 b1 .. (lanes 0..W/2-1), hi = the same from lane W/2
//     (deinterleave's inverse; Winograd)
//   deinterleave_tiles / interleave_tiles: deinterleave and interleave with the lanes in an
//     ISA-fixed order, in-lane shuffles only (interleave_tiles(deinterleave_tiles order) gives the
//     outputs in order; Winograd tiles)
//   load_merge(src, m, p): lanes in m from p, the others from src
//   sum_lanes4(a0, a1, a2, a3): lane k < 4 = the sum of a_k's lanes, in a fixed tree
//   store_pairs(p, q, v): lanes 0, 1 to p[0..1], lanes 2, 3 to q[0..1] (two 64-bit stores)
//   take_right(r, l): lanes where r beats l under the max-pool rule (r > l, or r NaN and l not)
//   blend(m, a, b): m ? b : a;  deinterleave(a, b, even, odd): split 2W consecutive floats
//   store_idx(dst, n, base, step, off): dst[j] = base + j*step + int(off[j]) for j < n (int64)
//   not_positive(v): lanes where !(v > 0) (0, negatives, NaN)
//   store_codes(dst, n, code): dst[j] = uint8(int(code[j])) for j < n (code holds 0..7)
//   store_first(p, v, n): lanes < n stored (n < W), by plain stores where AVX2 has no fast masked one
//   ireg (W int32 lanes): izero, iset1, iota (0, 1, ..), iadd, ior, iand, izero_past(a, n),
//     ieq(a, b) -> pmask, all_zero, isum (the lanes' sum), odd32_zero (the int64 high dwords)
//   keep(m, v): m ? v : +0
//   max-pool backward tile writers (maxpool2d_bwd_tiles.inl): load_i64(p, n) (n <= W/2 int64 as
//     W dwords, zeros past n), dup_low32 (each int64's low dword twice), dup_pairs(p, n) (p0 p0
//     p1 p1 .., zeros past n), codes_pairs(p) (W/2 bytes, each twice, as dwords),
//     count_hits(acc, k0, k1) (acc + 1 where k0 or k1)
#pragma once

struct VecAvx512 {
  using reg = __m512;
  using tmask = __mmask16;
  using pmask = __mmask16;
  static constexpr int W = 16;
  static constexpr bool masked_store_fast = true;  // native masked stores

  static reg zero() { return _mm512_setzero_ps(); }
  static reg set1(float v) { return _mm512_set1_ps(v); }
  static reg loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void storeu(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static tmask tail(int64_t n) { return tmask((1u << unsigned(n)) - 1u); }  // n in [0, 16]
  static tmask range(int64_t l0, int64_t l1) {  // lanes [l0, l1), 0 <= l0 <= l1 <= 16
    return tmask(((1u << unsigned(l1)) - 1u) & ~((1u << unsigned(l0)) - 1u));
  }
  static reg load_tail(const float* p, tmask m) { return _mm512_maskz_loadu_ps(m, p); }
  static reg load_merge(reg src, tmask m, const float* p) { return _mm512_mask_loadu_ps(src, m, p); }
  static void store_tail(float* p, reg v, tmask m) { _mm512_mask_storeu_ps(p, m, v); }
  static void store_pairs(float* p, float* q, reg v) {
    const __m128 s = _mm512_castps512_ps128(v);
    _mm_storel_pi(reinterpret_cast<__m64*>(p), s);
    _mm_storeh_pi(reinterpret_cast<__m64*>(q), s);
  }
  static reg swap_halves(reg x) { return _mm512_shuffle_f32x4(x, x, 0x4E); }
  static void interleave(reg a, reg b, reg& lo, reg& hi) {
    const __m512i ilo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i ihi = _mm512_add_epi32(ilo, _mm512_set1_epi32(8));
    lo = _mm512_permutex2var_ps(a, ilo, b);
    hi = _mm512_permutex2var_ps(a, ihi, b);
  }
  // Lanes 0 1 8 9 2 3 10 11 4 5 12 13 6 7 14 15 (per 128-bit quarter: shufps, unpcklps).
  static void deinterleave_tiles(reg a, reg b, reg& even, reg& odd) {
    even = _mm512_shuffle_ps(a, b, 0x88);
    odd = _mm512_shuffle_ps(a, b, 0xDD);
  }
  static void interleave_tiles(reg a, reg b, reg& lo, reg& hi) {
    lo = _mm512_unpacklo_ps(a, b);
    hi = _mm512_unpackhi_ps(a, b);
  }
  // 128-bit quarters folded pairwise, then the 4 floats of each quarter; lanes 4.. hold junk.
  static inline __attribute__((always_inline)) reg sum_lanes4(reg a0, reg a1, reg a2, reg a3) {
    const reg s01 = _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_shuffle_f32x4(a0, a1, _MM_SHUFFLE(3, 2, 3, 2)));
    const reg s23 = _mm512_add_ps(_mm512_shuffle_f32x4(a2, a3, _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_shuffle_f32x4(a2, a3, _MM_SHUFFLE(3, 2, 3, 2)));
    // quarter k: 4 partial sums of a_k
    const reg t = _mm512_add_ps(_mm512_shuffle_f32x4(s01, s23, _MM_SHUFFLE(2, 0, 2, 0)),
                                _mm512_shuffle_f32x4(s01, s23, _MM_SHUFFLE(3, 1, 3, 1)));
    const reg u = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(2, 3, 0, 1)));
    const reg v = _mm512_add_ps(u, _mm512_permute_ps(u, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm512_permutexvar_ps(
        _mm512_set_epi32(15, 14, 13, 11, 10, 9, 7, 6, 5, 3, 2, 1, 12, 8, 4, 0), v);
  }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg relu(reg a) { return _mm512_max_ps(_mm512_setzero_ps(), a); }  // NaN stays NaN

  static pmask take_right(reg r, reg l) {
    const pmask gt = _mm512_cmp_ps_mask(r, l, _CMP_GT_OQ);
    const pmask r_nan = _mm512_cmp_ps_mask(r, r, _CMP_UNORD_Q);
    const pmask l_num = _mm512_cmp_ps_mask(l, l, _CMP_ORD_Q);
    return pmask(gt | (r_nan & l_num));
  }
  static reg blend(pmask m, reg a, reg b) { return _mm512_mask_blend_ps(m, a, b); }
  static void deinterleave(reg a, reg b, reg& even, reg& odd) {
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    even = _mm512_permutex2var_ps(a, ie, b);
    odd = _mm512_permutex2var_ps(a, io, b);
  }
  static void store_idx(int64_t* dst, int64_t n, int64_t base, int64_t step, reg off) {
    const __m512i o32 = _mm512_cvttps_epi32(off);
    const __m512i lo_base = _mm512_setr_epi64(base, base + step, base + 2 * step, base + 3 * step,
                                              base + 4 * step, base + 5 * step, base + 6 * step,
                                              base + 7 * step);
    const __m512i hi_base = _mm512_add_epi64(lo_base, _mm512_set1_epi64(8 * step));
    const __m512i lo = _mm512_add_epi64(lo_base, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(o32)));
    const __m512i hi = _mm512_add_epi64(hi_base, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(o32, 1)));
    if (n >= 16) {
      _mm512_storeu_si512(dst, lo);
      _mm512_storeu_si512(dst + 8, hi);
    } else {
      const unsigned m = (1u << unsigned(n)) - 1u;
      _mm512_mask_storeu_epi64(dst, __mmask8(m & 0xFF), lo);
      _mm512_mask_storeu_epi64(dst + 8, __mmask8(m >> 8), hi);
    }
  }
  static void store_first(float* p, reg v, int64_t n) { _mm512_mask_storeu_ps(p, tail(n), v); }
  // --- 32-bit integer lanes and window pairs (maxpool2d_bwd_tiles.inl) ---
  using ireg = __m512i;
  static ireg izero() { return _mm512_setzero_si512(); }
  static ireg iset1(int32_t v) { return _mm512_set1_epi32(v); }
  static ireg iota() {
    return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  }
  static ireg iadd(ireg a, ireg b) { return _mm512_add_epi32(a, b); }
  static ireg ior(ireg a, ireg b) { return _mm512_or_si512(a, b); }
  static ireg iand(ireg a, ireg b) { return _mm512_and_si512(a, b); }
  static ireg izero_past(ireg a, int64_t n) { return _mm512_maskz_mov_epi32(tail(n), a); }
  static pmask ieq(ireg a, ireg b) { return _mm512_cmpeq_epi32_mask(a, b); }
  static reg keep(pmask m, reg v) { return _mm512_maskz_mov_ps(m, v); }  // m ? v : +0
  static bool all_zero(ireg a) { return _mm512_test_epi32_mask(a, a) == 0; }
  static bool odd32_zero(ireg a) {  // the high dwords of eight int64
    return _mm512_mask_test_epi32_mask(__mmask16(0xAAAA), a, a) == 0;
  }
  // n <= 8 int64 from p (zeros past n), as 16 dwords.
  static ireg load_i64(const int64_t* p, int64_t n) {
    if (n == 8) return _mm512_loadu_si512(p);
    return _mm512_maskz_loadu_epi64(__mmask8((1u << unsigned(n)) - 1u), p);
  }
  // Each int64's low dword twice: lo0 lo0 lo1 lo1 .. lo7 lo7 (in-lane).
  static ireg dup_low32(ireg a) { return _mm512_shuffle_epi32(a, _MM_PERM_ENUM(0xA0)); }
  // p0 p0 p1 p1 .. p7 p7 from n <= 8 floats (zeros past n).
  static reg dup_pairs(const float* p, int64_t n) {
    const __m512i ctl = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const reg v = n == 8 ? _mm512_castps256_ps512(_mm256_loadu_ps(p)) : _mm512_maskz_loadu_ps(tail(n), p);
    return _mm512_permutexvar_ps(ctl, v);
  }
  // The 8 bytes at p, each twice, as dwords: c0 c0 c1 c1 .. c7 c7.
  static ireg codes_pairs(const uint8_t* p) {
    const __m128i c = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    return _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(c, c));
  }
  // acc + 1 in the lanes where k0 or k1 is set (k0 and k1 disjoint).
  static ireg count_hits(ireg acc, pmask k0, pmask k1) {
    return _mm512_mask_add_epi32(acc, pmask(k0 | k1), acc, _mm512_set1_epi32(1));
  }
  static int64_t isum(ireg a) { return _mm512_reduce_add_epi32(a); }
  static pmask not_positive(reg v) { return _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NGT_UQ); }
  static void store_codes(uint8_t* dst, int64_t n, reg code) {
    const __mmask16 m = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << unsigned(n)) - 1u);
    _mm512_mask_cvtepi32_storeu_epi8(dst, m, _mm512_cvttps_epi32(code));
  }
};
