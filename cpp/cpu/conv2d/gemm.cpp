// gemm.cpp — the im2col + packed GEMM drivers, for every geometry (groups, stride, dilation):
// the last entry of each pass's list in the registry and the only one on the portable path.
//
// For each (image n, group g) the convolution is a GEMM
//   fwd:         Y_g (Cout_g x P)  = W_g (Cout_g x K) * col (K x P)
//   bwd_data:    dcol (K x P)      = W_g^T (K x Cout_g) * dY_g (Cout_g x P), then col2im (add)
//   bwd_weights: dW_g (Cout_g x K) += dY_g (Cout_g x P) * col^T (P x K), summed over n
// with K = C_in/groups * KH * KW and P = OH * OW. The pixel axis is cut into blocks of at most
// 256 columns so the im2col block stays in L2 and every thread works on its own block.
// 1x1, stride-1, unpadded convolutions skip im2col: the input already is the col matrix.
// Threading is over (n, g, pixel block) for fwd, (n, g) for bwd_data (col2im of neighbouring
// blocks would overlap) and over samples for bwd_weights, whose per-part partial sums are then
// added in a fixed order — deterministic at a given thread count.
#include <algorithm>
#include <cstring>
#include <vector>

#include "drivers.h"
#include "fastconv/parallel.h"

namespace fastconv {
namespace cpu {
namespace {

struct Geometry {
  int64_t cin_g, cout_g, K, P, HW, nblocks, block;
  bool pointwise;  // 1x1, stride 1, no padding: col == input
};

Geometry geometry(const Conv2dParams& p) {
  Geometry g{};
  g.cin_g = p.cin_per_group();
  g.cout_g = p.cout_per_group();
  g.K = p.reduction();
  g.P = p.y.h * p.y.w;
  g.HW = p.x.h * p.x.w;
  g.pointwise = p.wt.h == 1 && p.wt.w == 1 && p.stride.h == 1 && p.stride.w == 1 &&
                p.pad.top == 0 && p.pad.left == 0 && p.pad.bottom == 0 && p.pad.right == 0;
  // Balanced blocks of <= 256 pixels, rounded to 32 (the widest micro-kernel tile).
  g.nblocks = std::max<int64_t>(1, (g.P + 255) / 256);
  g.block = std::min<int64_t>(g.P, ((g.P + g.nblocks - 1) / g.nblocks + 31) / 32 * 32);
  g.nblocks = (g.P + g.block - 1) / g.block;
  return g;
}

// For output pixels [p0, p0 + pn) of one group of one image, walk every (c, ky, kx) row of col and
// call fn(row, x_row_or_null, ix0, run, col_offset) per output-row segment, where the input row is
// x_row (nullptr when the tap falls in vertical padding) and input column ix0 + t*stride_w feeds
// col position col_offset + t. Shared by im2col (gather) and col2im (scatter-add).
template <class Fn>
void for_each_tap_segment(const Conv2dParams& p, const Geometry& g, int64_t p0, int64_t pn,
                          Fn&& fn) {
  const int64_t KH = p.wt.h, KW = p.wt.w, OW = p.y.w, H = p.x.h, W = p.x.w;
  for (int64_t c = 0; c < g.cin_g; ++c) {
    for (int64_t ky = 0; ky < KH; ++ky) {
      for (int64_t kx = 0; kx < KW; ++kx) {
        const int64_t row = (c * KH + ky) * KW + kx;
        int64_t oy = p0 / OW, ox = p0 % OW, done = 0;
        while (done < pn) {
          const int64_t run = std::min(OW - ox, pn - done);
          const int64_t iy = oy * p.stride.h - p.pad.top + ky * p.dilation.h;
          const int64_t ix0 = ox * p.stride.w - p.pad.left + kx * p.dilation.w;
          const bool row_inside = iy >= 0 && iy < H;
          fn(row, c, row_inside ? iy : -1, ix0, run, done);
          done += run;
          ox = 0;
          ++oy;
        }
        (void)W;
      }
    }
  }
}

// Range of t in [0, run) with 0 <= ix0 + t*s < W.
inline void inside_range(int64_t ix0, int64_t s, int64_t run, int64_t W, int64_t* lo,
                         int64_t* hi) {
  int64_t a = ix0 >= 0 ? 0 : (-ix0 + s - 1) / s;
  int64_t b = ix0 >= W ? 0 : (W - 1 - ix0) / s + 1;
  a = std::min(a, run);
  b = std::min(std::max(b, a), run);
  *lo = a;
  *hi = b;
}


// dx_g += scatter of col (K x pn) back onto the input positions it was gathered from.
void col2im_add(const Conv2dParams& p, const Geometry& g, const float* col, int64_t p0,
                int64_t pn, float* dx_g) {
  const int64_t W = p.x.w, s = p.stride.w;
  for_each_tap_segment(p, g, p0, pn, [&](int64_t row, int64_t c, int64_t iy, int64_t ix0,
                                         int64_t run, int64_t off) {
    if (iy < 0) return;
    const float* src = col + row * pn + off;
    float* dst = dx_g + (c * p.x.h + iy) * W;
    int64_t lo, hi;
    inside_range(ix0, s, run, W, &lo, &hi);
    for (int64_t t = lo; t < hi; ++t) dst[ix0 + t * s] += src[t];
  });
}


// dst <- slivers of width R of a (rows x len) matrix whose element (i, kk) is src[i*si + kk*sk]:
// element (i, kk) lands at dst[(i/R)*len*R + kk*R + i%R]; rows past `rows` are zero.
void pack_slivers(float* dst, const float* src, int64_t rows, int64_t len, int64_t si, int64_t sk,
                  int64_t R) {
  if (si == 1) {  // a sliver's R values are contiguous in src: copy them as runs
    // In bands of 8 source rows: each band reads 8 rows as runs and writes each sliver's 8 rows
    // as one run. Sliver by sliver over all rows (R floats from each of keras.conv1's 75 dY rows
    // in turn) kept more streams open than the prefetchers follow; row by row wrote every sliver
    // R floats at a time (slower with AVX2's 16-float slivers).
    for (int64_t k0 = 0; k0 < len; k0 += 8) {
      const int64_t k1 = std::min(len, k0 + 8);
      for (int64_t s = 0; s < rows; s += R) {
        const int64_t n = std::min(R, rows - s);
        for (int64_t kk = k0; kk < k1; ++kk) {
          const float* col = src + kk * sk + s;
          float* dk = dst + s * len + kk * R;
          for (int64_t i = 0; i < n; ++i) dk[i] = col[i];
          for (int64_t i = n; i < R; ++i) dk[i] = 0.0f;
        }
      }
    }
    return;
  }
  for (int64_t s = 0; s < rows; s += R) {  // walk each source row once
    float* d = dst + s * len;
    const int64_t n = std::min(R, rows - s);
    for (int64_t i = 0; i < R; ++i) {
      if (i < n) {
        const float* row = src + (s + i) * si;
        for (int64_t kk = 0; kk < len; ++kk) d[kk * R + i] = row[kk * sk];
      } else {
        for (int64_t kk = 0; kk < len; ++kk) d[kk * R + i] = 0.0f;
      }
    }
  }
}

// Forward B: the (K x pn) patch matrix of pixels [p0, p0 + pn) written straight into NR-wide
// pixel slivers: (kk, j) at pb[(j/NR)*K*NR + kk*NR + j%NR]; columns pn .. round_up(pn, NR) zero.
// One pass over the input instead of im2col + pack.
void im2col_pixel_slivers(const Conv2dParams& p, const Geometry& g, const float* x_g, int64_t p0,
                          int64_t pn, int64_t NR, float* pb) {
  const int64_t W = p.x.w, s = p.stride.w, K = g.K, nr_mask = NR - 1;  // NR is a power of two
  for_each_tap_segment(p, g, p0, pn, [&](int64_t row, int64_t c, int64_t iy, int64_t ix0,
                                         int64_t run, int64_t off) {
    const float* src = iy < 0 ? nullptr : x_g + (c * p.x.h + iy) * W;
    int64_t lo = run, hi = run;  // [lo, hi): the taps that fall inside the image row
    if (src != nullptr) {
      if (s == 1) {  // no divisions on the common path
        lo = std::min(run, std::max<int64_t>(0, -ix0));
        hi = std::max(lo, std::min(run, W - ix0));
      } else {
        inside_range(ix0, s, run, W, &lo, &hi);
      }
    }
    int64_t t = 0;
    while (t < run) {  // one piece per NR-wide sliver the segment crosses
      const int64_t j = off + t, jj = j & nr_mask;
      const int64_t len = std::min(run - t, NR - jj);
      float* d = pb + (j - jj) * K + row * NR + jj;  // d[u] holds tap t + u
      const int64_t a = std::min(std::max(lo, t), t + len) - t;
      const int64_t b = std::min(std::max(hi, a + t), t + len) - t;
      for (int64_t u = 0; u < a; ++u) d[u] = 0.0f;
      if (a < b) {  // src is null in vertical padding: form no pointer from it then (UBSan)
        if (s == 1) {
          const float* sp = src + (ix0 + t + a);  // the first tap inside the row
          for (int64_t u = a; u < b; ++u) d[u] = sp[u - a];
        } else {
          for (int64_t u = a; u < b; ++u) d[u] = src[ix0 + (t + u) * s];
        }
      }
      for (int64_t u = b; u < len; ++u) d[u] = 0.0f;
      t += len;
    }
  });
  const int64_t npad = round_up(pn, NR);
  if (npad > pn) {
    float* last = pb + (npad - NR) * K;
    for (int64_t kk = 0; kk < K; ++kk)
      for (int64_t jj = pn - (npad - NR); jj < NR; ++jj) last[kk * NR + jj] = 0.0f;
  }
}

// Backward-weights B = col^T (pn x K) written straight into NR-wide tap slivers:
// (pixel j, kk) at pb[(kk/NR)*pn*NR + j*NR + kk%NR]; taps K .. round_up(K, NR) zero.
void im2col_tap_slivers(const Conv2dParams& p, const Geometry& g, const float* x_g, int64_t p0,
                        int64_t pn, int64_t NR, float* pb) {
  const int64_t W = p.x.w, s = p.stride.w;
  for_each_tap_segment(p, g, p0, pn, [&](int64_t row, int64_t c, int64_t iy, int64_t ix0,
                                         int64_t run, int64_t off) {
    const int64_t rr = row & (NR - 1);  // NR is a power of two
    float* d = pb + (row - rr) * pn + off * NR + rr;
    if (iy < 0) {
      for (int64_t t = 0; t < run; ++t) d[t * NR] = 0.0f;
      return;
    }
    const float* src = x_g + (c * p.x.h + iy) * W;
    int64_t lo, hi;
    inside_range(ix0, s, run, W, &lo, &hi);
    for (int64_t t = 0; t < lo; ++t) d[t * NR] = 0.0f;
    for (int64_t t = lo; t < hi; ++t) d[t * NR] = src[ix0 + t * s];
    for (int64_t t = hi; t < run; ++t) d[t * NR] = 0.0f;
  });
  const int64_t kpad = round_up(g.K, NR);
  if (kpad > g.K) {
    float* last = pb + (kpad - NR) * pn;
    for (int64_t j = 0; j < pn; ++j)
      for (int64_t kk = g.K - (kpad - NR); kk < NR; ++kk) last[j * NR + kk] = 0.0f;
  }
}

}  // namespace

// Forward, GEMM path: per group the weights are packed once (MR slivers, shared by all threads);
// each task (image, group, pixel block) writes its patches straight into NR slivers and runs the
// packed GEMM with bias + ReLU fused into the store. Workspace: the caller's packed weights
// (C_out rounded up to MR per group x K floats) + per thread K x round_up(block, NR) floats.
void fwd_gemm(const ImageSink& out, const float* x, const float* w, const float* b,
              const Conv2dParams& p, bool relu, const KernelTable& kt) {
  if (out.pooled()) {  // the whole batch's conv output first, then the pool (off the layers' paths)
    std::vector<float> y(size_t(p.y.numel()));
    poison(y.data(), p.y.numel());
    fwd_gemm(ImageSink::plain(y.data(), p.y.c, p.y.h, p.y.w), x, w, b, p, relu, kt);
    relu_maxpool2d_fwd__cpu(out.py, out.codes, y.data(), p.y);
    return;
  }
  float* y = out.y;
  const Geometry g = geometry(p);
  const int64_t G = p.groups, MR = kt.gemm.mr, NR = kt.gemm.nr;
  const int64_t a_size = round_up(g.cout_g, MR) * g.K;
  float* pa_all = caller_workspace(G * a_size);
  for (int64_t gi = 0; gi < G; ++gi)
    pack_slivers(pa_all + gi * a_size, w + gi * g.cout_g * g.K, g.cout_g, g.K, g.K, 1, MR);
  const int64_t tasks = p.x.n * G * g.nblocks;
  parallel_for(tasks, [&](int64_t begin, int64_t end, int) {
    float* pb = scratch(g.K * round_up(g.block, NR));
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / (G * g.nblocks), gi = (t / g.nblocks) % G, blk = t % g.nblocks;
      const int64_t p0 = blk * g.block, pn = std::min(g.block, g.P - p0);
      const float* x_g = x + (n * p.x.c + gi * g.cin_g) * g.HW;
      im2col_pixel_slivers(p, g, x_g, p0, pn, NR, pb);
      PackedGemmArgs a{};
      a.m = g.cout_g;
      a.n = pn;
      a.k = g.K;
      a.pa = pa_all + gi * a_size;
      a.pb = pb;
      a.c = y + (n * p.y.c + gi * g.cout_g) * g.P + p0;
      a.ldc = g.P;
      a.accumulate = false;
      a.bias = b != nullptr ? b + gi * g.cout_g : nullptr;
      a.relu = relu;
      kt.gemm.packed(a);
    }
  });
}

// Backward data: dcol (K x pn) = W_g^T (K x C_out/g, packed once per call) * dY block (packed per
// block, small), then col2im-add into dx. Threads over (image, group): neighbouring pixel blocks'
// col2im overlap in dx. Workspace: the caller's packed W^T (round_up(K, MR) x C_out/g per group)
// + per thread (C_out/g x round_up(block, NR)) + K x block floats.
void bwd_data_gemm(float* dx, const DySource& dy_src, const float* w, const Conv2dParams& p,
                   const KernelTable& kt) {
  std::vector<float> unpooled;  // the fused op's full-size gradient (off the layers' paths)
  if (dy_src.pooled()) {
    unpooled.resize(size_t(p.y.numel()));
    relu_maxpool2d_bwd__cpu(unpooled.data(), dy_src.pdy, dy_src.codes, p.y);
  }
  const float* dy = dy_src.pooled() ? unpooled.data() : dy_src.dy;
  const Geometry g = geometry(p);
  const int64_t G = p.groups, MR = kt.gemm.mr, NR = kt.gemm.nr;
  const int64_t a_size = round_up(g.K, MR) * g.cout_g;
  float* pa_all = caller_workspace(G * a_size);
  for (int64_t gi = 0; gi < G; ++gi)  // W_g^T: element (kk, co) at w[co*K + kk]
    pack_slivers(pa_all + gi * a_size, w + gi * g.cout_g * g.K, g.K, g.cout_g, 1, g.K, MR);
  const int64_t tasks = p.x.n * G;
  parallel_for(tasks, [&](int64_t begin, int64_t end, int) {
    const int64_t pb_size = g.cout_g * round_up(g.block, NR);
    float* buf = scratch(pb_size + (g.pointwise ? 0 : g.K * g.block));
    float* pb = buf;
    float* col = buf + pb_size;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / G, gi = t % G;
      float* dx_g = dx + (n * p.x.c + gi * g.cin_g) * g.HW;
      if (!g.pointwise) std::fill(dx_g, dx_g + g.cin_g * g.HW, 0.0f);
      for (int64_t blk = 0; blk < g.nblocks; ++blk) {
        const int64_t p0 = blk * g.block, pn = std::min(g.block, g.P - p0);
        // dY block (C_out/g x pn, rows of stride P): element (kk = co, j) -> pixel slivers.
        pack_slivers(pb, dy + (n * p.y.c + gi * g.cout_g) * g.P + p0, pn, g.cout_g, 1, g.P, NR);
        PackedGemmArgs a{};
        a.m = g.K;
        a.n = pn;
        a.k = g.cout_g;
        a.pa = pa_all + gi * a_size;
        a.pb = pb;
        if (g.pointwise) {
          a.c = dx_g + p0;
          a.ldc = g.HW;
        } else {
          a.c = col;
          a.ldc = pn;
        }
        kt.gemm.packed(a);
        if (!g.pointwise) col2im_add(p, g, col, p0, pn, dx_g);
      }
    }
  });
}

// Backward weights: dW_g (C_out/g x K) += dY block (C_out/g x pn, MR slivers) * col^T (pn x K,
// im2col'd straight into NR tap slivers), summed over the thread's samples; per-thread partial
// sums are then added in a fixed order (deterministic at a given thread count).
// Workspace: parts * (|dW| + C_out) floats (accumulate_parts); per thread
// round_up(C_out/g, MR) * block + block * round_up(K, NR) floats.
void bwd_weights_gemm(float* dw, float* db, const DySource& dy, const float* x,
                      const Conv2dParams& p, const KernelTable& kt) {
  const int64_t wsize = p.wt.numel(), C_out = p.y.c;
  const Geometry g = geometry(p);
  const int64_t G = p.groups, MR = kt.gemm.mr, NR = kt.gemm.nr;
  const PartSums sums = accumulate_parts(p.x.n, wsize + C_out, [&](float* acc, int64_t begin,
                                                                   int64_t end) {
    float* my_db = acc + wsize;
    const int64_t pa_size = round_up(g.cout_g, MR) * g.block;
    float* pa = scratch(pa_size + g.block * round_up(g.K, NR) + dy.scratch_floats());
    float* pb = pa + pa_size;
    float* tmp = pb + g.block * round_up(g.K, NR);
    for (int64_t n = begin; n < end; ++n) {
      const float* dy_n = dy.image(n, tmp);
      for (int64_t gi = 0; gi < G; ++gi) {
        const float* x_g = x + (n * p.x.c + gi * g.cin_g) * g.HW;
        const float* dy_g = dy_n + gi * g.cout_g * g.P;
        for (int64_t blk = 0; blk < g.nblocks; ++blk) {
          const int64_t p0 = blk * g.block, pn = std::min(g.block, g.P - p0);
          pack_slivers(pa, dy_g + p0, g.cout_g, pn, g.P, 1, MR);
          im2col_tap_slivers(p, g, x_g, p0, pn, NR, pb);
          PackedGemmArgs a{};
          a.m = g.cout_g;
          a.n = g.K;
          a.k = pn;
          a.pa = pa;
          a.pb = pb;
          a.c = acc + gi * g.cout_g * g.K;
          a.ldc = g.K;
          a.accumulate = true;
          kt.gemm.packed(a);
        }
        if (db != nullptr) sum_rows_into(my_db + gi * g.cout_g, dy_g, g.cout_g, g.P);
      }
    }
  });
  // The parts in part order, vectorised over the weights.
  std::copy(sums.part(0), sums.part(0) + wsize, dw);
  for (int part = 1; part < sums.parts; ++part) {
    const float* src = sums.part(part);
    for (int64_t i = 0; i < wsize; ++i) dw[i] += src[i];
  }
  if (db != nullptr) sums.sum_into(db, wsize, C_out);
}

}  // namespace cpu
}  // namespace fastconv
