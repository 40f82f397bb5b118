// conv2d_cpu.cpp — CPU Conv2D drivers: im2col / col2im over pixel blocks + the ISA's packed GEMM.
//
// Design (docs/DESIGN.md): for each (image n, group g) the convolution is a GEMM
//   fwd:         Y_g (Cout_g x P)  = W_g (Cout_g x K) * col (K x P)
//   bwd_data:    dcol (K x P)      = W_g^T (K x Cout_g) * dY_g (Cout_g x P), then col2im (add)
//   bwd_weights: dW_g (Cout_g x K) += dY_g (Cout_g x P) * col^T (P x K), summed over n
// with K = C_in/groups * KH * KW and P = OH * OW. The pixel axis is cut into blocks of at most
// 256 columns so the im2col block stays in L2 and every thread works on its own block.
// 1x1, stride-1, unpadded convolutions skip im2col: the input already is the col matrix.
// Threading is over (n, g, pixel block) for fwd, (n, g) for bwd_data (col2im of neighbouring
// blocks would overlap) and over samples for bwd_weights, whose per-thread partial sums are then
// added in a fixed order — deterministic at a given thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "fastconv/cpu_kernels.h"
#include "fastconv/ops.h"
#include "fastconv/parallel.h"

namespace fastconv {
namespace cpu {
namespace {

constexpr float kPoison = std::numeric_limits<float>::quiet_NaN();

void poison(float* p, int64_t n) {
  if (debug_poison()) std::fill(p, p + n, kPoison);
}

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

// col (K x pn, row-major) <- patches of x_g (the group's C_in/groups channels of one image).
void im2col(const Conv2dParams& p, const Geometry& g, const float* x_g, int64_t p0, int64_t pn,
            float* col) {
  const int64_t W = p.x.w, s = p.stride.w;
  for_each_tap_segment(p, g, p0, pn, [&](int64_t row, int64_t c, int64_t iy, int64_t ix0,
                                         int64_t run, int64_t off) {
    float* dst = col + row * pn + off;
    if (iy < 0) {
      std::fill(dst, dst + run, 0.0f);
      return;
    }
    const float* src = x_g + (c * p.x.h + iy) * W;
    int64_t lo, hi;
    inside_range(ix0, s, run, W, &lo, &hi);
    std::fill(dst, dst + lo, 0.0f);
    if (s == 1) {
      std::memcpy(dst + lo, src + ix0 + lo, size_t(hi - lo) * sizeof(float));
    } else {
      for (int64_t t = lo; t < hi; ++t) dst[t] = src[ix0 + t * s];
    }
    std::fill(dst + hi, dst + run, 0.0f);
  });
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

// A per-thread scratch buffer that only grows: no heap traffic once warmed up.
float* scratch(int64_t n) {
  thread_local std::vector<float> buf;
  if (buf.size() < size_t(n)) buf.resize(size_t(n));
  poison(buf.data(), n);
  return buf.data();
}

}  // namespace

void conv2d_fwd__cpu(float* y, const float* x, const float* w, const float* b,
                     const Conv2dParams& p, bool relu) {
  poison(y, p.y.numel());
  const Geometry g = geometry(p);
  const SgemmFn sgemm = kernels().sgemm;
  const int64_t G = p.groups, tasks = p.x.n * G * g.nblocks;
  parallel_for(tasks, [&](int64_t begin, int64_t end, int) {
    float* col = g.pointwise ? nullptr : scratch(g.K * g.block);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / (G * g.nblocks), gi = (t / g.nblocks) % G, blk = t % g.nblocks;
      const int64_t p0 = blk * g.block, pn = std::min(g.block, g.P - p0);
      const float* x_g = x + (n * p.x.c + gi * g.cin_g) * g.HW;
      GemmArgs a{};
      a.m = g.cout_g;
      a.n = pn;
      a.k = g.K;
      a.a = w + gi * g.cout_g * g.K;
      a.rs_a = g.K;
      a.cs_a = 1;
      if (g.pointwise) {
        a.b = x_g + p0;
        a.rs_b = g.HW;
      } else {
        im2col(p, g, x_g, p0, pn, col);
        a.b = col;
        a.rs_b = pn;
      }
      a.cs_b = 1;
      a.c = y + (n * p.y.c + gi * g.cout_g) * g.P + p0;
      a.ldc = g.P;
      a.accumulate = false;
      a.bias = b != nullptr ? b + gi * g.cout_g : nullptr;
      a.relu = relu;
      sgemm(a);
    }
  });
}

void conv2d_bwd_data__cpu(float* dx, const float* dy, const float* w, const Conv2dParams& p) {
  poison(dx, p.x.numel());
  const Geometry g = geometry(p);
  const SgemmFn sgemm = kernels().sgemm;
  const int64_t G = p.groups, tasks = p.x.n * G;
  parallel_for(tasks, [&](int64_t begin, int64_t end, int) {
    float* col = g.pointwise ? nullptr : scratch(g.K * g.block);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / G, gi = t % G;
      float* dx_g = dx + (n * p.x.c + gi * g.cin_g) * g.HW;
      if (!g.pointwise) std::fill(dx_g, dx_g + g.cin_g * g.HW, 0.0f);
      for (int64_t blk = 0; blk < g.nblocks; ++blk) {
        const int64_t p0 = blk * g.block, pn = std::min(g.block, g.P - p0);
        GemmArgs a{};
        a.m = g.K;
        a.n = pn;
        a.k = g.cout_g;
        a.a = w + gi * g.cout_g * g.K;  // W_g^T: element (kk, co) at w[co*K + kk]
        a.rs_a = 1;
        a.cs_a = g.K;
        a.b = dy + (n * p.y.c + gi * g.cout_g) * g.P + p0;
        a.rs_b = g.P;
        a.cs_b = 1;
        if (g.pointwise) {
          a.c = dx_g + p0;
          a.ldc = g.HW;
        } else {
          a.c = col;
          a.ldc = pn;
        }
        sgemm(a);
        if (!g.pointwise) col2im_add(p, g, col, p0, pn, dx_g);
      }
    }
  });
}

void conv2d_bwd_weights__cpu(float* dw, float* db, const float* dy, const float* x,
                             const Conv2dParams& p) {
  const int64_t wsize = p.wt.numel(), C_out = p.y.c;
  poison(dw, wsize);
  if (db != nullptr) poison(db, C_out);
  const Geometry g = geometry(p);
  const SgemmFn sgemm = kernels().sgemm;
  const int64_t G = p.groups;
  // One partial (dw, db) per thread chunk of samples; chunk 0 accumulates straight into the output.
  const int parts = parallel_parts(p.x.n);
  std::vector<float> partial_dw(size_t(parts - 1) * size_t(wsize));
  std::vector<float> partial_db(size_t(parts) * size_t(C_out), 0.0f);
  std::fill(dw, dw + wsize, 0.0f);
  std::fill(partial_dw.begin(), partial_dw.end(), 0.0f);
  parallel_for(p.x.n, [&](int64_t begin, int64_t end, int part) {
    float* my_dw = part == 0 ? dw : partial_dw.data() + (part - 1) * wsize;
    float* my_db = partial_db.data() + part * C_out;
    float* col = g.pointwise ? nullptr : scratch(g.K * g.block);
    for (int64_t n = begin; n < end; ++n) {
      for (int64_t gi = 0; gi < G; ++gi) {
        const float* x_g = x + (n * p.x.c + gi * g.cin_g) * g.HW;
        const float* dy_g = dy + (n * p.y.c + gi * g.cout_g) * g.P;
        for (int64_t blk = 0; blk < g.nblocks; ++blk) {
          const int64_t p0 = blk * g.block, pn = std::min(g.block, g.P - p0);
          GemmArgs a{};
          a.m = g.cout_g;
          a.n = g.K;
          a.k = pn;
          a.a = dy_g + p0;
          a.rs_a = g.P;
          a.cs_a = 1;
          if (g.pointwise) {  // col^T: element (pixel, kk) at x_g[kk*HW + p0 + pixel]
            a.b = x_g + p0;
            a.rs_b = 1;
            a.cs_b = g.HW;
          } else {
            im2col(p, g, x_g, p0, pn, col);
            a.b = col;
            a.rs_b = 1;
            a.cs_b = pn;
          }
          a.c = my_dw + gi * g.cout_g * g.K;
          a.ldc = g.K;
          a.accumulate = true;
          sgemm(a);
        }
        if (db != nullptr) {
          for (int64_t co = 0; co < g.cout_g; ++co) {
            const float* r = dy_g + co * g.P;
            float s = 0.0f;
            for (int64_t i = 0; i < g.P; ++i) s += r[i];
            my_db[gi * g.cout_g + co] += s;
          }
        }
      }
    }
  });
  // Fixed-order reduction of the partial sums.
  for (int part = 1; part < parts; ++part) {
    const float* src = partial_dw.data() + (part - 1) * wsize;
    for (int64_t i = 0; i < wsize; ++i) dw[i] += src[i];
  }
  if (db != nullptr) {
    for (int64_t co = 0; co < C_out; ++co) {
      float s = 0.0f;
      for (int part = 0; part < parts; ++part) s += partial_db[part * C_out + co];
      db[co] = s;
    }
  }
}

}  // namespace cpu
}  // namespace fastconv
