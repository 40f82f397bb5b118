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
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "fastconv/cpu_kernels.h"
#include "fastconv/error.h"
#include "fastconv/winograd.h"
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

// The calling thread's workspace for results that outlive a parallel region (per-part partial
// sums of bwd_weights). Grows to the largest request and is reused: no heap traffic once warm.
// Thread-local on the caller, so two Python threads calling in concurrently never share it.
float* caller_workspace(int64_t n) {
  thread_local std::vector<float> ws;
  if (ws.size() < size_t(n)) {
    ws = std::vector<float>();
    ws.resize(size_t(n));
  }
  return ws.data();
}

// --- direct path ---------------------------------------------------------------------------------
// Forward (and bwd_data, as a stride-1 conv of the padded dy) use the direct kernel when the ISA has
// one and the layer is groups = 1, stride 1, dilation 1, for every C_in: its weight-stationary
// tile reads the zero-bordered input straight from L1/L2, with no im2col copy (measured >= the
// packed GEMM on every NETWORKS.md layer). bwd_weights' direct kernel keeps per-lane partial sums
// of every weight, so it only wins for small C_in (<= 24, FASTCONV_DIRECT_MAX_CIN; 0 disables the
// direct path everywhere, for A/B runs).
// An integer tuning knob from the environment (A/B runs), read once per knob by the caller.
int64_t env_int(const char* name, int64_t fallback) {
  const char* e = std::getenv(name);
  return e == nullptr || *e == '\0' ? fallback : int64_t(std::strtol(e, nullptr, 10));
}

int64_t direct_max_cin() {
  static const int64_t v = env_int("FASTCONV_DIRECT_MAX_CIN", 24);
  return v;
}

bool direct_geometry(const Conv2dParams& p, const void* fn) {
  return fn != nullptr && direct_max_cin() > 0 && p.groups == 1 && p.stride.h == 1 &&
         p.stride.w == 1 && p.dilation.h == 1 && p.dilation.w == 1;
}

bool use_direct_fwd(const Conv2dParams& p, const void* fn) { return direct_geometry(p, fn); }

bool use_direct_bwd_weights(const Conv2dParams& p, const void* fn) {
  return direct_geometry(p, fn) && p.x.c <= direct_max_cin();
}

// bwd_data as a forward conv needs padding k-1-pad >= 0 on every side, and enough output
// channels (C_in of the layer) to fill a channel block, or exactly one (the C_in = 1 layers: a
// one-channel block; fashion.conv1 1.32 -> 0.34 ms, cnn1.conv1 2.86 -> 1.25 at 1 thread, against
// GEMM + col2im and the tiles Winograd; C_in = 2, 3 stay on GEMM). The full correlation computes H*W/(OH*OW) times the useful multiply-adds (zeros of dy's wide border):
// 1 for "same" padding, 2.25 for keras.conv2 (12x12 -> 8x8), where the packed GEMM + col2im is
// 2.5x faster; small-channel layers (lenet.conv2, C_out 16, ratio 1.96) still win with direct.
bool use_direct_bwd_data(const Conv2dParams& p, const void* fn) {
  if (!(direct_geometry(p, fn) && (p.x.c >= 4 || p.x.c == 1) && p.pad.top <= p.wt.h - 1 &&
        p.pad.bottom <= p.wt.h - 1 && p.pad.left <= p.wt.w - 1 && p.pad.right <= p.wt.w - 1))
    return false;
  const double waste = double(p.x.h * p.x.w) / double(p.y.h * p.y.w);
  return waste <= 1.3 || p.y.c <= direct_max_cin();
}

// Output-channel block of the direct forward kernel: 4, 5 or 6, the one wasting the fewest channels
// (ties: the larger block): 20 -> 5, 75 -> 5, 32/64/128 -> 4, 6 -> 6, 16 -> 4; 1 for one channel.
int64_t direct_channel_block(int64_t cout) {
  if (cout == 1) return 1;  // bwd_data of the C_in = 1 layers: one dx plane
  int64_t best = 6, best_pad = (cout + 5) / 6 * 6 - cout;
  for (int64_t cb = 5; cb >= 4; --cb) {
    const int64_t pad = (cout + cb - 1) / cb * cb - cout;
    if (pad < best_pad) best = cb, best_pad = pad;
  }
  return best;
}

DirectConvArgs direct_args(const Conv2dParams& p) {
  DirectConvArgs a{};
  a.cin = p.x.c;
  a.cout = p.y.c;
  a.kh = p.wt.h;
  a.kw = p.wt.w;
  a.hp = p.x.h + p.pad.top + p.pad.bottom;
  a.wp = p.x.w + p.pad.left + p.pad.right;
  a.plane = a.hp * a.wp;
  a.oh = p.y.h;
  a.ow = p.y.w;
  a.cb = direct_channel_block(a.cout);
  return a;
}

int64_t xpad_size(const DirectConvArgs& a) {
  return a.cin * a.plane + kDirectSlackRows * a.wp + kDirectSlack;
}

// xpad <- the a.cin planes (H x W) of src placed at (top, left) inside zero-bordered planes of
// a.hp x a.wp, plus zero slack (see cpu_kernels.h). The zeros sit at the same places for every
// image and the kernels only read xpad: a per-thread buffer is zeroed once (pad_planes_zero) and
// then gets each image's rows (pad_planes_rows): fashion.conv2's weight gradient ran ~7% faster
// than with the borders filled again for every image.
void pad_planes_zero(float* xpad, const DirectConvArgs& a) {
  std::fill(xpad, xpad + xpad_size(a), 0.0f);
}

void pad_planes_rows(float* xpad, const float* src, int64_t H, int64_t W, int64_t top,
                     int64_t left, const DirectConvArgs& a) {
  for (int64_t c = 0; c < a.cin; ++c)
    for (int64_t iy = 0; iy < H; ++iy)
      std::memcpy(xpad + (c * a.hp + top + iy) * a.wp + left, src + (c * H + iy) * W,
                  size_t(W) * sizeof(float));
}

void pad_image_rows(float* xpad, const float* x_n, const Conv2dParams& p,
                    const DirectConvArgs& a) {
  pad_planes_rows(xpad, x_n, p.x.h, p.x.w, p.pad.top, p.pad.left, a);
}

// Input of the C_in < 4 kernels (DirectBwdWeightsFn, conv2d_fwd_direct_shifted): per (ci, kx)
// the zero-padded plane shifted left by kx with row pitch ow,
// xs[((ci*kw + kx)*hp + r)*ow + ox] = xpad[ci][r][ox + kx], so that every tap reads its inputs
// at the output's (and dy's) own flat index oy*ow + ox. The zeros sit at the same places for
// every image: shifted_planes_zero once per buffer, then shifted_planes copies the image's rows.
int64_t shifted_planes_size(const DirectConvArgs& a) {
  return a.cin * a.kw * a.hp * a.ow + kDirectSlack;
}

void shifted_planes_zero(float* xs, const DirectConvArgs& a) {
  std::fill(xs, xs + shifted_planes_size(a), 0.0f);
}

// The image's rows into the shifted planes: the ISA's kernel (every table with direct kernels has
// one).
void shifted_planes(float* xs, const float* x_n, const Conv2dParams& p, const DirectConvArgs& a,
                    ShiftPlanesFn fn) {
  fn(xs, x_n, p.x.h, p.x.w, p.pad.top, p.pad.left, a);
}

// The forward of the C_in < 4 layers over shifted planes (FASTCONV_FWD_SHIFTED=0: padded planes).
bool use_fwd_shifted(const Conv2dParams& p, const KernelTable& kt) {
  static const bool on = env_int("FASTCONV_FWD_SHIFTED", 1) != 0;
  return on && kt.conv2d_fwd_direct_shifted != nullptr && p.x.c < 4;
}

// Packed forward weights (see DirectFwdFn): wt[((co/cb)*rows + r)*cb + co%cb] = weight(co, r) with
// r = (ci*KH + ky)*KW + kx, zero for co >= cout; weight(co, r) = src[co*s_co + r_index(r)].
template <class Src>
float* pack_direct_weights(const DirectConvArgs& a, Src&& weight) {
  const int64_t rows = a.cin * a.kh * a.kw, cb = a.cb, blocks = (a.cout + cb - 1) / cb;
  float* wt = caller_workspace(blocks * rows * cb);
  for (int64_t bi = 0; bi < blocks; ++bi)
    for (int64_t r = 0; r < rows; ++r) {
      float* d = wt + (bi * rows + r) * cb;
      for (int64_t c = 0; c < cb; ++c) {
        const int64_t co = bi * cb + c;
        d[c] = co < a.cout ? weight(co, r) : 0.0f;
      }
    }
  return wt;
}

// Where a per-image forward driver puts image n's output (C planes of OH x OW): straight into y,
// or, for conv2d_relu_maxpool2d, into the thread's scratch, pooled from there into py / codes
// while it is in L1/L2 (the full-size activation never goes to memory).
struct ImageSink {
  float* y = nullptr;           // plain: the (N, C, OH, OW) output
  float* py = nullptr;          // pooled: (N, C, OH/2, OW/2) values and window codes
  uint8_t* codes = nullptr;
  int64_t c = 0, oh = 0, ow = 0;

  static ImageSink plain(float* y, int64_t c, int64_t oh, int64_t ow) {
    ImageSink s;
    s.y = y;
    s.c = c, s.oh = oh, s.ow = ow;
    return s;
  }
  static ImageSink pooled_into(float* py, uint8_t* codes, const Shape4& conv_out) {
    ImageSink s;
    s.py = py;
    s.codes = codes;
    s.c = conv_out.c, s.oh = conv_out.h, s.ow = conv_out.w;
    return s;
  }
  bool pooled() const { return py != nullptr; }
  int64_t scratch_floats() const { return pooled() ? c * oh * ow : 0; }
  // The buffer image n's output goes to (tmp: scratch_floats() of the thread's scratch).
  float* target(int64_t n, float* tmp) const { return pooled() ? tmp : y + n * c * oh * ow; }
  void finish(int64_t n, const float* img) const {
    if (!pooled()) return;
    const int64_t pp = (oh / 2) * (ow / 2);
    relu_maxpool2d_codes_planes(py + n * c * pp, codes + n * c * pp, img, oh, ow, c);
  }
};

// Where a per-image weight-gradient driver reads image n's dy (C planes of OH x OW): straight from
// dy, or, for conv2d_relu_maxpool2d's backward, unpooled from the pooled gradient and the window
// codes into the thread's scratch (the full-size gradient never goes to memory).
struct DySource {
  const float* dy = nullptr;    // plain: the (N, C, OH, OW) gradient
  const float* pdy = nullptr;   // pooled: (N, C, OH/2, OW/2) gradient and window codes
  const uint8_t* codes = nullptr;
  int64_t c = 0, oh = 0, ow = 0;

  static DySource plain(const float* a, int64_t c, int64_t h, int64_t w) {
    DySource s;
    s.dy = a;
    s.c = c, s.oh = h, s.ow = w;
    return s;
  }
  static DySource pooled_from(const float* pdy, const uint8_t* codes, const Shape4& conv_out) {
    DySource s;
    s.pdy = pdy;
    s.codes = codes;
    s.c = conv_out.c, s.oh = conv_out.h, s.ow = conv_out.w;
    return s;
  }
  bool pooled() const { return pdy != nullptr; }
  int64_t scratch_floats() const { return pooled() ? c * oh * ow : 0; }
  const float* image(int64_t n, float* tmp) const {
    if (!pooled()) return dy + n * c * oh * ow;
    const int64_t pp = (oh / 2) * (ow / 2);
    relu_maxpool2d_unpool_planes(tmp, pdy + n * c * pp, codes + n * c * pp, oh, ow, c);
    return tmp;
  }
};

// shifted_fn (or nullptr): the kernel to run instead over the image's shifted planes.
void conv2d_fwd_direct(const ImageSink& out, const float* x, const float* w, const float* b,
                       const Conv2dParams& p, bool relu, DirectFwdFn fn, DirectFwdFn shifted_fn,
                       ShiftPlanesFn shift) {
  const DirectConvArgs a = direct_args(p);
  const int64_t rows = a.cin * a.kh * a.kw;
  const float* wt =
      pack_direct_weights(a, [&](int64_t co, int64_t r) { return w[co * rows + r]; });
  const int64_t xs = p.x.c * p.x.h * p.x.w;
  const int64_t in_size = shifted_fn != nullptr ? shifted_planes_size(a) : xpad_size(a);
  parallel_for(p.x.n, [&](int64_t begin, int64_t end, int) {
    float* xin = scratch(in_size + out.scratch_floats());
    float* tmp = xin + in_size;
    if (shifted_fn != nullptr)
      shifted_planes_zero(xin, a);
    else
      pad_planes_zero(xin, a);
    for (int64_t n = begin; n < end; ++n) {
      float* dst = out.target(n, tmp);
      if (shifted_fn != nullptr) {
        shifted_planes(xin, x + n * xs, p, a, shift);
        shifted_fn(dst, xin, wt, b, relu, a);
      } else {
        pad_image_rows(xin, x + n * xs, p, a);
        fn(dst, xin, wt, b, relu, a);
      }
      out.finish(n, dst);
    }
  });
}

// bwd_data of a stride-1, dilation-1 conv is a stride-1 conv of dy zero-padded by (k-1-pad) with
// the flipped, in/out-transposed weights: dx[ci][iy][ix] = sum_{co,ky,kx} dyp[co][iy+ky][ix+kx] *
// w[co][ci][KH-1-ky][KW-1-kx]. Same kernel, same threading (images), no col2im.
void conv2d_bwd_data_direct(float* dx, const DySource& dy, const float* w, const Conv2dParams& p,
                            DirectFwdFn fn) {
  DirectConvArgs a{};
  a.cin = p.y.c;
  a.cout = p.x.c;
  a.kh = p.wt.h;
  a.kw = p.wt.w;
  const int64_t top = a.kh - 1 - p.pad.top, left = a.kw - 1 - p.pad.left;
  a.hp = p.y.h + top + (a.kh - 1 - p.pad.bottom);
  a.wp = p.y.w + left + (a.kw - 1 - p.pad.right);
  a.plane = a.hp * a.wp;
  a.oh = p.x.h;
  a.ow = p.x.w;
  a.cb = direct_channel_block(a.cout);
  // Transposed conv's weight (out = layer ci, r = (co*KH + ky)*KW + kx) = w[co][ci][KH-1-ky][KW-1-kx]
  // = w[co*K + ci*KK + (KK-1 - (ky*KW + kx))], K = C_in*KK.
  const int64_t KK = a.kh * a.kw, K = p.x.c * KK;
  const float* wt = pack_direct_weights(a, [&](int64_t ci, int64_t r) {
    const int64_t co = r / KK, t = r % KK;
    return w[co * K + ci * KK + (KK - 1 - t)];
  });
  const int64_t xs = p.x.c * p.x.h * p.x.w;
  parallel_for(p.x.n, [&](int64_t begin, int64_t end, int) {
    float* dypad = scratch(xpad_size(a) + dy.scratch_floats());
    float* tmp = dypad + xpad_size(a);
    pad_planes_zero(dypad, a);
    for (int64_t n = begin; n < end; ++n) {
      pad_planes_rows(dypad, dy.image(n, tmp), p.y.h, p.y.w, top, left, a);
      fn(dx + n * xs, dypad, wt, nullptr, false, a);
    }
  });
}

// Each fixed range of samples (parallel_for_parts) accumulates per-lane partial sums in its slice
// of the caller's workspace; the parts, then the lanes, are summed in a fixed order:
// deterministic at a given thread count. Workspace: parts * C_out * (C_in*KH*KW + 1) * lanes floats.
void conv2d_bwd_weights_direct(float* dw, float* db, const DySource& dy, const float* x,
                               const Conv2dParams& p, DirectBwdWeightsFn fn, int lanes,
                               ShiftPlanesFn shift) {
  const DirectConvArgs a = direct_args(p);
  const int64_t xs = p.x.c * p.x.h * p.x.w;
  const int64_t K = p.reduction(), C_out = p.y.c;
  const int64_t per_part = C_out * (K + 1) * lanes;
  const int parts = reduction_parts(p.x.n);
  float* ws = caller_workspace(parts * per_part);
  parallel_for_parts(p.x.n, parts, [&](int64_t begin, int64_t end, int part) {
    float* acc = ws + part * per_part;
    // Zeroed by the thread that sums into it, not serially by the caller beforehand (parts <=
    // images, so every part runs; the caller's fill also left the other thread's lines in its
    // own cache).
    std::fill(acc, acc + per_part, 0.0f);
    float* dbacc = db != nullptr ? acc + C_out * K * lanes : nullptr;
    float* xsh = scratch(shifted_planes_size(a) + dy.scratch_floats());
    float* tmp = xsh + shifted_planes_size(a);
    shifted_planes_zero(xsh, a);
    for (int64_t n = begin; n < end; ++n) {
      shifted_planes(xsh, x + n * xs, p, a, shift);
      fn(acc, dbacc, dy.image(n, tmp), xsh, a);
    }
  });
  // The parts lane by lane in part order (independent lanes: vectorised), then the lanes as a
  // fixed pairwise tree: 4 adds deep, where a chain of 16 dependent scalar adds per part ran
  // before (on the calling thread alone).
  auto total = [&](int64_t i) {
    float t[16];  // lanes: the kernel table's vector width, 8 or 16
    for (int l = 0; l < lanes; ++l) t[l] = ws[i * lanes + l];
    for (int part = 1; part < parts; ++part)
      for (int l = 0; l < lanes; ++l) t[l] += ws[part * per_part + i * lanes + l];
    for (int w = lanes / 2; w >= 1; w /= 2)
      for (int l = 0; l < w; ++l) t[l] += t[l + w];
    return t[0];
  };
  for (int64_t i = 0; i < C_out * K; ++i) dw[i] = total(i);
  if (db != nullptr)
    for (int64_t co = 0; co < C_out; ++co) db[co] = total(C_out * K + co);
}

// --- packed-operand helpers for the GEMM path --------------------------------------------------
int64_t round_up(int64_t v, int64_t r) { return (v + r - 1) / r * r; }

// dst <- slivers of width R of a (rows x len) matrix whose element (i, kk) is src[i*si + kk*sk]:
// element (i, kk) lands at dst[(i/R)*len*R + kk*R + i%R]; rows past `rows` are zero.
void pack_slivers(float* dst, const float* src, int64_t rows, int64_t len, int64_t si, int64_t sk,
                  int64_t R) {
  for (int64_t s = 0; s < rows; s += R) {
    float* d = dst + s * len;
    const int64_t n = std::min(R, rows - s);
    if (si == 1) {  // a sliver's R values are contiguous in src: copy them as a run
      for (int64_t kk = 0; kk < len; ++kk) {
        const float* col = src + kk * sk + s;
        float* dk = d + kk * R;
        for (int64_t i = 0; i < n; ++i) dk[i] = col[i];
        for (int64_t i = n; i < R; ++i) dk[i] = 0.0f;
      }
    } else {  // walk each source row once
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
      if (s == 1) {
        const float* sp = src + ix0 + t;
        for (int64_t u = a; u < b; ++u) d[u] = sp[u];
      } else {
        for (int64_t u = a; u < b; ++u) d[u] = src[ix0 + (t + u) * s];
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

// Large-C_in bwd_weights without im2col (stride 1, dilation 1, groups 1): per image, x is padded
// and dy transposed to (pixels, C_out rounded up to the lanes) so output channels ride in the
// vector lanes and input pixels are broadcast straight from the padded rows. Threads take
// fixed ranges of samples (parallel_for_parts), each with its own (K x coutp) + C_out partial
// sums in the caller's workspace, summed in a fixed order: deterministic at a thread count.
// Workspace: parts * (C_in*KH*KW * coutp + C_out) floats; per thread one padded image +
// OH*OW * coutp floats.
int64_t bww_t_min_cin() {
  static const int64_t v = env_int("FASTCONV_BWW_T_MIN_CIN", 4);
  return v;
}

bool use_direct_bwd_weights_t(const Conv2dParams& p, const void* fn) {
  return direct_geometry(p, fn) && p.x.c >= bww_t_min_cin();
}

void sum_rows_into(float* out, const float* rows, int64_t nrows, int64_t len) {
  for (int64_t co = 0; co < nrows; ++co) {
    // 8 independent partial sums (vectorisable, fixed order), then combined in order.
    const float* r = rows + co * len;
    float s8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= len; i += 8)
      for (int j = 0; j < 8; ++j) s8[j] += r[i + j];
    float s = 0.0f;
    for (; i < len; ++i) s += r[i];
    for (int j = 0; j < 8; ++j) s += s8[j];
    out[co] += s;
  }
}

// dyT[q*coutp + co] <- dy_n[co*P + q] for co < C_out (the lanes past C_out keep their zeros:
// zero_lane_padding once per buffer).
void zero_lane_padding(float* dyT, int64_t P, int64_t C_out, int64_t coutp) {
  for (int64_t q = 0; q < P; ++q) std::fill(dyT + q * coutp + C_out, dyT + (q + 1) * coutp, 0.0f);
}
// vec: the ISA's vectorised transpose (nullptr: this loop; ~15% of fashion.conv2's Winograd
// weight gradient at 1 thread).
void transpose_to_lanes(float* dyT, const float* dy_n, int64_t C_out, int64_t P, int64_t coutp,
                        TransposeToLanesFn vec) {
  if (vec != nullptr && coutp >= round_up(C_out, 16)) {
    vec(dyT, dy_n, C_out, P, coutp);
    return;
  }
  for (int64_t q0 = 0; q0 < P; q0 += 16) {  // 16-pixel strips: the 16 dyT rows stay in L1
    const int64_t q1 = std::min(P, q0 + 16);
    for (int64_t co = 0; co < C_out; ++co)
      for (int64_t q = q0; q < q1; ++q) dyT[q * coutp + co] = dy_n[co * P + q];
  }
}

void conv2d_bwd_weights_direct_t(float* dw, float* db, const DySource& dy, const float* x,
                                 const Conv2dParams& p, DirectBwdWeightsTFn fn, int lanes,
                                 TransposeToLanesFn transpose) {
  const DirectConvArgs a = direct_args(p);
  const int64_t xs = p.x.c * p.x.h * p.x.w;
  const int64_t K = p.reduction(), C_out = p.y.c, P = p.y.h * p.y.w;
  const int64_t coutp = round_up(C_out, lanes);
  const int64_t per_part = K * coutp + C_out;
  const int parts = reduction_parts(p.x.n);
  float* ws = caller_workspace(parts * per_part);
  parallel_for_parts(p.x.n, parts, [&](int64_t begin, int64_t end, int part) {
    float* acc = ws + part * per_part;
    // zeroed by its own thread (see conv2d_bwd_weights_direct)
    std::fill(acc, acc + per_part, 0.0f);
    float* dbp = acc + K * coutp;
    const int64_t xsize = xpad_size(a);
    float* xpad = scratch(xsize + P * coutp + dy.scratch_floats());
    float* dyT = xpad + xsize;
    float* tmp = dyT + P * coutp;
    zero_lane_padding(dyT, P, C_out, coutp);
    pad_planes_zero(xpad, a);
    for (int64_t n = begin; n < end; ++n) {
      pad_image_rows(xpad, x + n * xs, p, a);
      const float* dy_n = dy.image(n, tmp);
      transpose_to_lanes(dyT, dy_n, C_out, P, coutp, transpose);
      fn(acc, dyT, xpad, a);
      if (db != nullptr) sum_rows_into(dbp, dy_n, C_out, P);
    }
  });
  parallel_for(C_out, [&](int64_t c0, int64_t c1, int) {  // threaded, each in part order
    for (int64_t co = c0; co < c1; ++co)
      for (int64_t r = 0; r < K; ++r) {
        float s = 0.0f;
        for (int part = 0; part < parts; ++part) s += ws[part * per_part + r * coutp + co];
        dw[co * K + r] = s;
      }
  });
  if (db != nullptr) {
    for (int64_t co = 0; co < C_out; ++co) {
      float s = 0.0f;
      for (int part = 0; part < parts; ++part) s += ws[part * per_part + K * coutp + co];
      db[co] = s;
    }
  }
}

// bwd_weights with (kx, ci) in lanes (conv2d_bww_cl.inl), stride 1, dilation 1, groups 1: per
// image x is zero-padded into channels-last rows, so the KW*C_in inputs of one kernel row at one
// output pixel are contiguous; fixed ranges of samples (parallel_for_parts), each with its own
// (C_out x KH x lp) + C_out partial sums (flat lanes: C_out x lp), added in a fixed order and
// un-permuted into (co, ci, ky, kx) at the end. Workspace: parts * (C_out*KH*lp + C_out) floats
// (flat: parts * (C_out*lp + C_out)); per thread one channels-last padded image
// (hp*wp*C_in + lanes floats).
bool bww_cl_enabled() {
  static const bool on = env_int("FASTCONV_BWW_CL", 1) != 0;
  return on;
}

// Flat lanes over (ky, kx, ci): -1 (default) where they save at least 5% of the vectors of the
// per-row layout and the padded image fits L1 (the flat kernel has no row blocks), 0 never, 1
// whenever kw*C_in fills a vector.
std::atomic<int>& bww_flat_mode_ref() {
  static std::atomic<int> mode{int(env_int("FASTCONV_BWW_FLAT", -1))};
  return mode;
}

bool use_bww_flat(const DirectConvArgs& a, int lanes) {
  const int64_t L = a.kw * a.cin;
  if (L < lanes) return false;
  const int mode = bww_flat_mode_ref().load(std::memory_order_relaxed);
  if (mode >= 0) return mode == 1;
  const int64_t flat = round_up(a.kh * L, lanes) / lanes, per_row = a.kh * (round_up(L, lanes) / lanes);
  return flat * 20 <= per_row * 19 && a.hp * a.wp * a.cin * int64_t(sizeof(float)) <= 40 * 1024;
}

bool use_direct_bwd_weights_cl(const Conv2dParams& p, const void* fn) {
  return bww_cl_enabled() && direct_geometry(p, fn) && p.x.c >= bww_t_min_cin();
}

void conv2d_bwd_weights_direct_cl(float* dw, float* db, const DySource& dy, const float* x,
                                  const Conv2dParams& p, DirectBwdWeightsClFn fn, int lanes,
                                  PadChannelsLastFn pad_cl) {
  const DirectConvArgs a = direct_args(p);
  const int64_t xs = p.x.c * p.x.h * p.x.w;
  const int64_t C_out = p.y.c, C_in = p.x.c, P = p.y.h * p.y.w;
  const int64_t L = a.kw * C_in;
  const bool flat = use_bww_flat(a, lanes);
  const int64_t lp = round_up(flat ? a.kh * L : L, lanes);
  // where (co, ky, 0, 0) sits in acc: per-row layout (co, ky, lp), flat layout (co, ky*L)
  const int64_t co_stride = flat ? lp : a.kh * lp, ky_stride = flat ? L : lp;
  const int64_t per_part = C_out * co_stride + C_out;
  const int parts = reduction_parts(p.x.n);
  float* ws = caller_workspace(parts * per_part);
  parallel_for_parts(p.x.n, parts, [&](int64_t begin, int64_t end, int part) {
    float* acc = ws + part * per_part;
    // zeroed by its own thread (see conv2d_bwd_weights_direct)
    std::fill(acc, acc + per_part, 0.0f);
    float* dbp = acc + C_out * co_stride;
    const int64_t xsize = a.hp * a.wp * C_in + lanes;
    float* xcl = scratch(xsize + dy.scratch_floats());
    float* tmp = xcl + xsize;
    // The border (and the tail the last lanes read) zeroed once; per image the ISA's kernel
    // transposes the interior in (cnn1.conv2 ~2% faster than a fill per image).
    std::fill(xcl, xcl + xsize, 0.0f);
    for (int64_t n = begin; n < end; ++n) {
      pad_cl(xcl, x + n * xs, p.x.h, p.x.w, C_in, p.pad.top, p.pad.left, a.wp);
      const float* dy_n = dy.image(n, tmp);
      fn(acc, dy_n, xcl, a, lp, flat);
      if (db != nullptr) sum_rows_into(dbp, dy_n, C_out, P);
    }
  });
  // Threaded over output channels, reading the parts' rows in order (a serial, ci-strided loop
  // here was ~8% of keras.conv2's call at 2 threads); each weight is summed in part order.
  parallel_for(C_out, [&](int64_t c0, int64_t c1, int) {
    for (int64_t co = c0; co < c1; ++co)
      for (int64_t ky = 0; ky < a.kh; ++ky)
        for (int64_t kx = 0; kx < a.kw; ++kx) {
          const int64_t src = co * co_stride + ky * ky_stride + kx * C_in;
          float* d = dw + (co * C_in * a.kh + ky) * a.kw + kx;
          for (int64_t ci = 0; ci < C_in; ++ci) {
            float s = 0.0f;
            for (int part = 0; part < parts; ++part) s += ws[part * per_part + src + ci];
            d[ci * a.kh * a.kw] = s;
          }
        }
  });
  if (db != nullptr) {
    for (int64_t co = 0; co < C_out; ++co) {
      float s = 0.0f;
      for (int part = 0; part < parts; ++part) s += ws[part * per_part + C_out * co_stride + co];
      db[co] = s;
    }
  }
}

// --- channels-in-lanes direct path (conv2d_fwd_cl.inl) --------------------------------------------
// Forward and bwd_data with output channels in the vector lanes, for layers whose short output
// rows waste the pixels-in-lanes kernel's lanes (keras.conv2: rows of 8 in 16 lanes) and for
// bwd_data whose dy border the full correlation would multiply (the CL kernel skips those taps).
// FASTCONV_FWD_CL: -1 (default) picks by lane use, 0 never, 1 whenever the geometry allows;
// FASTCONV_CL_COV (1..4) forces the kernel's channel vectors per tile (A/B runs).
std::atomic<int>& fwd_cl_mode_ref() {
  static std::atomic<int> mode{int(env_int("FASTCONV_FWD_CL", -1))};
  return mode;
}

int64_t fwd_cl_mode() { return fwd_cl_mode_ref().load(std::memory_order_relaxed); }

int64_t cl_cov_max() {
  static const int64_t v = env_int("FASTCONV_CL_COV", 0);
  return v;
}

// Useful-lane fraction of the pixels-in-lanes kernel (its better of row and flat tiles, roughly)
// against the channels-in-lanes kernel's (output channels over their rounding to the lanes); the
// CL kernel needs a few input channels to amortise its per-tap weight loads (C_in = 1 layers
// measured 1.5x slower on it). Measured at 1 thread (DESIGN.md, round 5): CL/pixel time 0.84
// keras.conv2 fwd, 0.83 lenet.conv2 fwd, 0.83-0.93 fashion.conv2, 0.95-1.01 vgg.b; the rule's
// losers 1.05-1.07 vgg.a, 1.25-1.30 cnn1.conv2 (20 channels in 32 lanes).
bool cl_wins(int64_t in_channels, int64_t out_channels, int64_t ow, int64_t oh, int64_t wp,
             int lanes) {
  if (fwd_cl_mode() >= 0) return fwd_cl_mode() > 0;
  if (in_channels < 4) return false;
  const double cl = double(out_channels) / double(round_up(out_channels, lanes));
  const double row = double(ow) / double(round_up(ow, lanes));
  const double flat = double(oh * ow) / double(round_up(oh * wp, lanes));
  return cl >= 1.05 * std::max(row, flat);
}

bool use_fwd_cl(const Conv2dParams& p, const KernelTable& kt) {
  if (kt.conv2d_fwd_cl == nullptr ||
      !direct_geometry(p, reinterpret_cast<const void*>(kt.conv2d_fwd_cl)))
    return false;
  const int64_t wp = p.x.w + p.pad.left + p.pad.right;
  return cl_wins(p.x.c, p.y.c, p.y.w, p.y.h, wp, kt.direct_lanes);
}

// bwd_data: the same border-waste limit as the pixels-in-lanes kernel (the CL kernel skips whole
// zero kernel rows, but a full-row tile still multiplies the zero columns: keras.conv2, 1.5x the
// useful work, stays on GEMM + col2im, 34 vs 39 ms).
bool use_bwd_data_cl(const Conv2dParams& p, const KernelTable& kt) {
  if (kt.conv2d_fwd_cl == nullptr ||
      !direct_geometry(p, reinterpret_cast<const void*>(kt.conv2d_fwd_cl)) ||
      p.pad.top > p.wt.h - 1 || p.pad.bottom > p.wt.h - 1 || p.pad.left > p.wt.w - 1 ||
      p.pad.right > p.wt.w - 1)
    return false;
  const double waste = double(p.x.h * p.x.w) / double(p.y.h * p.y.w);
  const int64_t wp = p.y.w + 2 * (p.wt.w - 1) - p.pad.left - p.pad.right;
  return (waste <= 1.3 || fwd_cl_mode() > 0) && cl_wins(p.y.c, p.x.c, p.x.w, p.x.h, wp, kt.direct_lanes);
}

// y (C planes of rows x W, NCHW) <- ycl, channels-last with `lanes` floats per pixel and `pitch`
// pixels per row, columns [col0, col0 + W) [+ bias] [ReLU]; runs of 64 pixels so the strided
// reads stay in L1. A flat image is one row of rows*W pixels (pitch = W, col0 = 0).
void unpack_channels_last(float* y, const float* ycl, int64_t C, int64_t rows, int64_t W,
                          int64_t pitch, int64_t col0, int64_t lanes, const float* bias,
                          bool relu) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* src_row = ycl + (r * pitch + col0) * lanes;
    for (int64_t x0 = 0; x0 < W; x0 += 64) {
      const int64_t x1 = std::min(W, x0 + 64);
      for (int64_t c = 0; c < C; ++c) {
        const float b = bias != nullptr ? bias[c] : 0.0f;
        float* yr = y + (c * rows + r) * W;
        const float* src = src_row + c;
        for (int64_t x = x0; x < x1; ++x) {
          const float v = src[x * lanes] + b;
          yr[x] = relu && v < 0.0f ? 0.0f : v;  // NaN stays NaN, as in every path
        }
      }
    }
  }
}

// Shared by the per-image forward / bwd_data kernels that read zero-bordered planes: per image,
// src (a.cin planes of h x w) is bordered into the thread's scratch and kernel(dst, xpad, extra)
// writes the image's output dst (C planes, NCHW; extra: extra_floats of the thread's scratch).
template <class Kernel>
void run_padded_images(const ImageSink& out, const DySource& src, int64_t n_images,
                       const ClConvArgs& a, int64_t extra_floats, Kernel&& kernel) {
  DirectConvArgs d{};  // the pixels-in-lanes path's padded-plane layout (pad_planes, xpad_size)
  d.cin = a.cin;
  d.hp = a.oh + a.kh - 1;
  d.wp = a.wp;
  d.plane = a.plane;
  const int64_t xsize = xpad_size(d);
  parallel_for(n_images, [&](int64_t begin, int64_t end, int) {
    float* xpad = scratch(xsize + out.scratch_floats() + src.scratch_floats() + extra_floats);
    float* tmp = xpad + xsize;
    float* src_tmp = tmp + out.scratch_floats();
    float* extra = src_tmp + src.scratch_floats();
    pad_planes_zero(xpad, d);
    for (int64_t n = begin; n < end; ++n) {
      pad_planes_rows(xpad, src.image(n, src_tmp), a.h, a.w, a.top, a.left, d);
      float* dst = out.target(n, tmp);
      kernel(dst, xpad, extra);
      out.finish(n, dst);
    }
  });
}

// The channels-last kernels (CL, Winograd): kernel(ycl, xpad, work) writes ycl (work:
// work_floats), which is unpacked into dst (C_dst planes) [+ bias] [ReLU].
template <class Kernel>
void run_cl_images(const ImageSink& out, const DySource& src, const float* bias, bool relu,
                   int64_t n_images, int64_t C_dst, const ClConvArgs& a, int64_t work_floats,
                   Kernel&& kernel) {
  const int64_t P = a.oh * a.ow;
  run_padded_images(out, src, n_images, a, P * a.coutp + work_floats,
                    [&](float* dst, const float* xpad, float* ycl) {
                      kernel(ycl, xpad, ycl + P * a.coutp);
                      unpack_channels_last(dst, ycl, C_dst, 1, P, P, 0, a.coutp, bias, relu);
                    });
}

// Weights with one channel axis in the lanes: out[((ky*R + r)*kw + kx)*lanes_p + l] =
// weight(l, r, ky, kx) for l < L, zero up to lanes_p. R is the reduced channel axis. Used as
// wcl (l = output channel, r = input channel) and as the scatter's wb (l = input, r = output).
template <class Weight>
float* pack_lane_weights(int64_t kh, int64_t kw, int64_t R, int64_t lanes_p, int64_t L,
                         Weight&& weight) {
  float* out = caller_workspace(kh * R * kw * lanes_p);
  float* d = out;
  for (int64_t ky = 0; ky < kh; ++ky)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t kx = 0; kx < kw; ++kx, d += lanes_p) {
        for (int64_t l = 0; l < L; ++l) d[l] = weight(l, r, ky, kx);
        std::fill(d + L, d + lanes_p, 0.0f);
      }
  return out;
}

// A stride-1 forward's geometry for the per-image kernels: `cin` planes of h x w zero-bordered by
// (top, left, bottom, right), `cout` output channels rounded up to the lanes.
ClConvArgs padded_cl_args(const Conv2dParams& p, const KernelTable& kt, int64_t cin, int64_t cout,
                          int64_t h, int64_t w, int64_t top, int64_t left, int64_t bottom,
                          int64_t right) {
  ClConvArgs a{};
  a.cin = cin;
  a.coutp = round_up(cout, kt.direct_lanes);
  a.kh = p.wt.h;
  a.kw = p.wt.w;
  a.top = top;
  a.left = left;
  a.h = h;
  a.w = w;
  a.wp = w + left + right;
  a.plane = (h + top + bottom) * a.wp;
  a.oh = h + top + bottom - a.kh + 1;
  a.ow = w + left + right - a.kw + 1;
  a.cov_max = cl_cov_max();
  return a;
}

// The forward: x bordered by the layer's padding.
ClConvArgs fwd_cl_args(const Conv2dParams& p, const KernelTable& kt) {
  return padded_cl_args(p, kt, p.x.c, p.y.c, p.x.h, p.x.w, p.pad.top, p.pad.left, p.pad.bottom,
                        p.pad.right);
}

// bwd_data as the forward of dy bordered by k-1-pad (with flipped, in/out-transposed weights).
ClConvArgs bwd_data_cl_args(const Conv2dParams& p, const KernelTable& kt) {
  const int64_t kh1 = p.wt.h - 1, kw1 = p.wt.w - 1;
  return padded_cl_args(p, kt, p.y.c, p.x.c, p.y.h, p.y.w, kh1 - p.pad.top, kw1 - p.pad.left,
                        kh1 - p.pad.bottom, kw1 - p.pad.right);
}

// The weights as the forward sees them: layer weights, or (bwd_data) layer co is this conv's input
// channel, layer ci its output channel, taps flipped.
auto fwd_weight(const float* w, const ClConvArgs& a) {
  return [w, a](int64_t co, int64_t ci, int64_t ky, int64_t kx) {
    return w[((co * a.cin + ci) * a.kh + ky) * a.kw + kx];
  };
}
auto bwd_data_weight(const float* w, const ClConvArgs& a, int64_t C_in, bool flip = true) {
  return [w, a, C_in, flip](int64_t ci, int64_t co, int64_t ky, int64_t kx) {
    if (flip) ky = a.kh - 1 - ky, kx = a.kw - 1 - kx;
    return w[((co * C_in + ci) * a.kh + ky) * a.kw + kx];
  };
}

void conv2d_fwd_cl(const ImageSink& out, const float* x, const float* w, const float* b,
                   const Conv2dParams& p, bool relu, const KernelTable& kt) {
  const ClConvArgs a = fwd_cl_args(p, kt);
  const float* wcl = pack_lane_weights(a.kh, a.kw, a.cin, a.coutp, p.y.c, fwd_weight(w, a));
  run_cl_images(out, DySource::plain(x, a.cin, a.h, a.w), b, relu, p.x.n, p.y.c, a, 0,
                [&](float* ycl, const float* xpad, float*) {
                  kt.conv2d_fwd_cl(ycl, xpad, wcl, a);
                });
}

void conv2d_bwd_data_cl(float* dx, const DySource& dy, const float* w, const Conv2dParams& p,
                        const KernelTable& kt) {
  const ClConvArgs a = bwd_data_cl_args(p, kt);
  const float* wcl = pack_lane_weights(a.kh, a.kw, a.cin, a.coutp, p.x.c,
                                       bwd_data_weight(w, a, p.x.c));
  run_cl_images(ImageSink::plain(dx, p.x.c, p.x.h, p.x.w), dy, nullptr, false, p.x.n, p.x.c, a, 0,
                [&](float* ycl, const float* xpad, float*) {
                  kt.conv2d_fwd_cl(ycl, xpad, wcl, a);
                });
}

// --- Winograd F(2x2, 3x3) and F(2x2, 5x5) (conv2d_winograd.inl, conv2d_winograd_tiles.inl) ------
// n^2 products per 2x2 output tile and channel pair instead of 4 r^2 (3x3: 16 vs 36, 5x5: 36 vs
// 100), forward and (as the forward of padded dy) bwd_data. Two layouts: output channels in the
// lanes (many channels: vgg.*, fashion.conv2, keras.conv2) or tiles in the lanes (few channels:
// cnn1.conv2). FASTCONV_WINOGRAD / FASTCONV_WINOGRAD_TILES: -1 (default) picks, 0 never, 1
// whenever the geometry allows (the channels-in-lanes one first).
std::atomic<int>& winograd_mode_ref() {
  static std::atomic<int> mode{int(env_int("FASTCONV_WINOGRAD", -1))};
  return mode;
}
std::atomic<int>& winograd_tiles_mode_ref() {
  static std::atomic<int> mode{int(env_int("FASTCONV_WINOGRAD_TILES", -1))};
  return mode;
}
std::atomic<int>& winograd_transposed_mode_ref() {
  static std::atomic<int> mode{int(env_int("FASTCONV_WINOGRAD_TRANSPOSED", -1))};
  return mode;
}

int64_t winograd_mode() { return winograd_mode_ref().load(std::memory_order_relaxed); }
int64_t winograd_tiles_mode() { return winograd_tiles_mode_ref().load(std::memory_order_relaxed); }

enum class Wino { none, channels, tiles, transposed };

// Geometry both kernels take (3x3 or 5x5, stride 1, dilation 1, groups 1, even output: whole 2x2
// tiles over the zero-bordered input), then the choice. Channels in lanes: output channels filling
// >= 85% of the lanes and >= 16 input channels (the input transform is paid per input channel and
// tile, the point GEMM per channel pair). Tiles in lanes: the other layers with >= 8 input
// channels and >= 4 output channels (its channel blocks are 4-6: the C_in = 1 layers' bwd_data,
// one dx plane, ran 6x the products there). Measured at 1 thread, DESIGN.md round 7.
bool winograd_geometry(const Conv2dParams& p, const void* fn, int64_t oh, int64_t ow) {
  return fn != nullptr && direct_geometry(p, fn) && p.wt.h == p.wt.w &&
         (p.wt.h == 3 || p.wt.h == 5) && oh % 2 == 0 && ow % 2 == 0;
}
bool lanes_full(int64_t channels, const KernelTable& kt) {
  return double(channels) / double(round_up(channels, kt.direct_lanes)) >= 0.85;
}

Wino winograd_pick(const Conv2dParams& p, const KernelTable& kt, int64_t cin, int64_t cout,
                   int64_t oh, int64_t ow) {
  if (kt.conv2d_fwd_winograd_tiles == nullptr ||
      !winograd_geometry(p, reinterpret_cast<const void*>(kt.conv2d_fwd_winograd), oh, ow))
    return Wino::none;
  const bool full = lanes_full(cout, kt);
  const int64_t cm = winograd_mode(), tm = winograd_tiles_mode();
  if (cm > 0 || (cm < 0 && cin >= 16 && full)) return Wino::channels;
  if (tm > 0 || (tm < 0 && cin >= 8 && cout >= 4 && !full)) return Wino::tiles;
  return Wino::none;
}

Wino fwd_winograd(const Conv2dParams& p, const KernelTable& kt) {
  return winograd_pick(p, kt, p.x.c, p.y.c, p.y.h, p.y.w);
}

// bwd_data: pad <= k-1 on every side (dy padded by k-1-pad). A valid conv's full correlation
// multiplies dy's wide zero border (H*W / (OH*OW) the useful work); the channel-lane kernel still
// takes it where its product count times that waste stays under 85% of the direct count
// (keras.conv2: 36/100 x 2.25 = 0.81; 26.5 -> 25.4 ms at 1 thread, 14.0 -> 12.9 at 2, against
// the scatter kernel), the tiles kernel only for "same"-like sizes (lenet.conv2 ran 2x slower).
//
// The transposed kernel (the forward's adjoint, channels in the lanes) runs the forward's tiles
// instead, from dy unbordered, adding each tile's patch into a channels-last dx: taken for the
// channel-lane layers whose dy is much smaller than x (valid: keras.conv2 25.2 -> 12.9 ms at 1
// thread) or whose channels-last dx stays within 128 KB (fashion.conv2 0.93 -> 0.78 ms; vgg.b's
// 460 KB ran 3-12% slower, its patches' read-modify-writes going to L2).
// FASTCONV_WINOGRAD_TRANSPOSED: -1 picks, 0 never, 1 whenever the geometry allows (even dy).
Wino bwd_data_winograd(const Conv2dParams& p, const KernelTable& kt) {
  const double waste = double(p.x.h * p.x.w) / double(p.y.h * p.y.w);
  const int tm = winograd_transposed_mode_ref().load(std::memory_order_relaxed);
  if (tm != 0 && (tm > 0 || winograd_mode() != 0) &&
      winograd_geometry(p, reinterpret_cast<const void*>(kt.conv2d_bwd_data_winograd), p.y.h,
                        p.y.w)) {  // the forward's tiles: dy's even size
    const bool lanes = p.y.c >= 16 && lanes_full(p.x.c, kt);  // the forward's rule, roles swapped
    const double dx_bytes = 4.0 * double(round_up(p.x.c, kt.direct_lanes) *
                                         (p.y.h + p.wt.h - 1) * (p.y.w + p.wt.w - 1));
    if (tm > 0 || (lanes && (waste > 1.3 || dx_bytes <= 128 * 1024))) return Wino::transposed;
  }
  const int64_t k1 = p.wt.h - 1;
  if (p.pad.top > k1 || p.pad.bottom > k1 || p.pad.left > k1 || p.pad.right > k1) return Wino::none;
  const Wino w = winograd_pick(p, kt, p.y.c, p.x.c, p.x.h, p.x.w);
  const double n = double(p.wt.h + 1), products = n * n / (4.0 * double(p.wt.h * p.wt.h));
  const bool forced = (w == Wino::channels && winograd_mode() > 0) ||
                      (w == Wino::tiles && winograd_tiles_mode() > 0);
  const bool cheap = waste <= 1.3 || (w == Wino::channels && products * waste <= 0.85);
  return cheap || forced ? w : Wino::none;
}

// A double buffer of at least n values that lives as long as the thread (grows, never shrinks:
// no heap traffic once warm), for the Winograd weight transforms below.
double* double_scratch(int64_t n) {
  thread_local std::vector<double> buf;
  if (int64_t(buf.size()) < n) buf.resize(size_t(n));
  return buf.data();
}

// dst[i] += c * src[i] for i < n, skipped for c = 0 (the transforms' zero entries); vectorises.
template <class T>
void add_scaled_row(double* dst, double c, const T* src, int64_t n) {
  if (c == 0.0) return;
  for (int64_t i = 0; i < n; ++i) dst[i] += c * double(src[i]);
}

// u[(pt*R + r)*lanes_p + l] = (G g G^T)[pt] of g = weight(l, r, ., .), pt = n*i + j, in double
// and rounded once (F(2, 5)'s G has 1/6, 1/12, 1/24). The inner loops run over l (vectorised):
// a per-element version cost ~0.5 ms per vgg.b call, 15% of its forward at 2 threads. Threaded
// over r (each r's values are computed alike by any thread): on the calling thread alone it was
// ~8% of keras.conv2's forward and bwd-data at 2 threads.
template <int K, class Weight>
float* pack_winograd_weights(int64_t R, int64_t lanes_p, int64_t L, Weight&& weight) {
  using Wm = Winograd<K>;
  constexpr int n = Wm::n;
  float* u = caller_workspace(n * n * R * lanes_p);
  parallel_for(R, [&](int64_t r0, int64_t r1, int) {
    double* g = double_scratch((K * K + K * n + 1) * L);  // g[ky][kx][l], t[ky][j][l], row[l]
    double* t = g + K * K * L;
    double* row = t + K * n * L;
    for (int64_t r = r0; r < r1; ++r) {
      for (int ky = 0; ky < K; ++ky)
        for (int kx = 0; kx < K; ++kx)
          for (int64_t l = 0; l < L; ++l) g[(ky * K + kx) * L + l] = weight(l, r, ky, kx);
      for (int ky = 0; ky < K; ++ky)  // t = g G^T
        for (int j = 0; j < n; ++j) {
          double* tj = t + (ky * n + j) * L;
          std::fill(tj, tj + L, 0.0);
          for (int kx = 0; kx < K; ++kx)
            add_scaled_row(tj, Wm::G[j][kx], g + (ky * K + kx) * L, L);
        }
      for (int i = 0; i < n; ++i)  // G t
        for (int j = 0; j < n; ++j) {
          std::fill(row, row + L, 0.0);
          for (int ky = 0; ky < K; ++ky)
            add_scaled_row(row, Wm::G[i][ky], t + (ky * n + j) * L, L);
          float* out = u + ((n * i + j) * R + r) * lanes_p;
          for (int64_t l = 0; l < L; ++l) out[l] = float(row[l]);
          std::fill(out + L, out + lanes_p, 0.0f);
        }
    }
  });
  return u;
}

template <class Weight>
float* pack_winograd_weights(int64_t k, int64_t R, int64_t lanes_p, int64_t L, Weight&& weight) {
  return k == 5 ? pack_winograd_weights<5>(R, lanes_p, L, weight)
                : pack_winograd_weights<3>(R, lanes_p, L, weight);
}

// Either Winograd layout on the geometry a (fwd_cl_args / bwd_data_cl_args) with the forward's
// weights `weight` (L = real output channels): out gets the n_images outputs.
template <class Weight>
void run_winograd(Wino kind, const ImageSink& out, const DySource& src, const float* bias,
                  bool relu, int64_t n_images, int64_t L, ClConvArgs a, Weight&& weight,
                  const KernelTable& kt) {
  if (kind == Wino::channels) {
    const float* u = pack_winograd_weights(a.kh, a.cin, a.coutp, L, weight);
    run_cl_images(out, src, bias, relu, n_images, L, a, winograd_work_floats(a),
                  [&](float* ycl, const float* xpad, float* work) {
                    kt.conv2d_fwd_winograd(ycl, xpad, u, work, a);
                  });
    return;
  }
  WinogradTilesArgs t{};
  t.cin = a.cin;
  t.cout = L;
  t.coutp = L + 8;  // the point GEMM's channel blocks (<= 6) may read past L: zeros
  t.kh = a.kh;
  t.cb = direct_channel_block(L);  // 20 -> 5, 16 -> 4, 18 -> 6
  t.wp = a.wp;
  t.plane = a.plane;
  t.oh = a.oh;
  t.ow = a.ow;
  const float* u = pack_winograd_weights(a.kh, a.cin, t.coutp, L, weight);
  run_padded_images(out, src, n_images, a, winograd_tiles_work_floats(t),
                    [&](float* dst, const float* xpad, float* work) {
                      kt.conv2d_fwd_winograd_tiles(dst, xpad, u, bias, relu, work, t);
                    });
}

void conv2d_fwd_winograd(Wino kind, const ImageSink& out, const float* x, const float* w,
                         const float* b, const Conv2dParams& p, bool relu, const KernelTable& kt) {
  const ClConvArgs a = fwd_cl_args(p, kt);
  run_winograd(kind, out, DySource::plain(x, a.cin, a.h, a.w), b, relu, p.x.n, p.y.c, a,
               fwd_weight(w, a), kt);
}

// bwd_data by the forward's adjoint (WinogradBwdDataFn): per image the kernel adds the dx of the
// layer-padded image into channels-last scratch, whose interior is unpacked into dx's planes.
void conv2d_bwd_data_winograd_transposed(float* dx, const DySource& dy, const float* w,
                                         const Conv2dParams& p, const KernelTable& kt) {
  const ClConvArgs a = padded_cl_args(p, kt, p.y.c, p.x.c, p.x.h, p.x.w, p.pad.top, p.pad.left,
                                      p.pad.bottom, p.pad.right);
  const float* u = pack_winograd_weights(a.kh, a.cin, a.coutp, p.x.c,
                                         bwd_data_weight(w, a, p.x.c, /*flip=*/false));
  const int64_t dsize = (a.oh + a.kh - 1) * a.wp * a.coutp, work_floats = winograd_work_floats(a);
  const int64_t xs = p.x.c * p.x.h * p.x.w;
  parallel_for(p.x.n, [&](int64_t begin, int64_t end, int) {
    float* dxcl = scratch(dsize + work_floats + dy.scratch_floats());
    float* work = dxcl + dsize;
    float* dy_tmp = work + work_floats;
    for (int64_t n = begin; n < end; ++n) {
      std::fill(dxcl, dxcl + dsize, 0.0f);
      kt.conv2d_bwd_data_winograd(dxcl, dy.image(n, dy_tmp), u, work, a);
      unpack_channels_last(dx + n * xs, dxcl + a.top * a.wp * a.coutp, p.x.c, p.x.h, p.x.w, a.wp,
                           a.left, a.coutp, nullptr, false);
    }
  });
}

void conv2d_bwd_data_winograd(Wino kind, float* dx, const DySource& dy, const float* w,
                              const Conv2dParams& p, const KernelTable& kt) {
  if (kind == Wino::transposed) {
    conv2d_bwd_data_winograd_transposed(dx, dy, w, p, kt);
    return;
  }
  const ClConvArgs a = bwd_data_cl_args(p, kt);
  run_winograd(kind, ImageSink::plain(dx, p.x.c, p.x.h, p.x.w), dy, nullptr, false, p.x.n, p.x.c,
               a, bwd_data_weight(w, a, p.x.c), kt);
}

// --- 3x3 weight gradient by Winograd F(3x3, 2x2) (conv2d_winograd_bww.inl) -----------------------
// The 3x3 layers the channels-in-lanes Winograd forward takes (>= 16 input channels, output
// channels filling >= 85% of the lanes): vgg.*, fashion.conv2 (1 thread: vgg.a 9.5 -> 6.6 ms,
// vgg.b 9.5 -> 5.5, fashion.conv2 1.12 -> 0.98). Fixed ranges of samples
// (parallel_for_parts) accumulate n^2 x C_in x coutp transformed-domain sums (+ C_out bias sums),
// added in a fixed order, then dW = A_W^T (.) A_W in double. Workspace: parts * (n^2 * C_in *
// coutp + C_out) floats; per thread the padded image, dy as (pixels, coutp) and the block's
// transforms (winograd_bww_work_floats). FASTCONV_WINOGRAD_BWW: -1 picks,
// 0 never, 1 whenever the geometry allows.
std::atomic<int>& winograd_bww_mode_ref() {
  static std::atomic<int> mode{int(env_int("FASTCONV_WINOGRAD_BWW", -1))};
  return mode;
}

bool use_bwd_weights_winograd(const Conv2dParams& p, const KernelTable& kt) {
  if (kt.conv2d_bwd_weights_winograd == nullptr ||
      !direct_geometry(p, reinterpret_cast<const void*>(kt.conv2d_bwd_weights_winograd)) ||
      p.wt.h != 3 || p.wt.w != 3 || p.y.h % 2 != 0 || p.y.w % 2 != 0)
    return false;
  const int mode = winograd_bww_mode_ref().load(std::memory_order_relaxed);
  if (mode >= 0) return mode > 0;
  return p.x.c >= 16 &&
         double(p.y.c) / double(round_up(p.y.c, kt.direct_lanes)) >= 0.85;
}

// dw[co][ci][ky][kx] = (A_W^T S A_W)[ky][kx] of S[pt] = sums[(pt*C_in + ci)*coutp + co], in
// double, vectorised over co (the per-element version cost ~0.4 ms per vgg.b call). sums holds
// `parts` partial sums per_part floats apart; they are added into the first in part order. Input
// channels are independent, so both steps run threaded over them (they ran on the calling thread
// alone: ~8% of fashion.conv2's weight gradient at 2 threads); every element is summed in the
// same order whoever computes it.
template <int K>
void winograd_weights_from_sums(float* dw, float* sums, int64_t per_part, int parts,
                                int64_t C_out, int64_t C_in, int64_t coutp) {
  using Wm = Winograd<K>;
  constexpr int n = Wm::n;
  parallel_for(C_in, [&](int64_t c0, int64_t c1, int) {
    double* t = double_scratch((K * n + 1) * C_out);  // t[ky][j][co], row[co]
    double* row = t + K * n * C_out;
    for (int64_t ci = c0; ci < c1; ++ci) {
      for (int pt = 0; pt < n * n; ++pt) {
        float* s0 = sums + (pt * C_in + ci) * coutp;
        for (int part = 1; part < parts; ++part)
          for (int64_t co = 0; co < coutp; ++co) s0[co] += s0[part * per_part + co];
      }
      for (int ky = 0; ky < K; ++ky)  // t = A_W^T S
        for (int j = 0; j < n; ++j) {
          double* tj = t + (ky * n + j) * C_out;
          std::fill(tj, tj + C_out, 0.0);
          for (int i = 0; i < n; ++i)
            add_scaled_row(tj, Wm::AWT[ky][i], sums + ((n * i + j) * C_in + ci) * coutp, C_out);
        }
      for (int ky = 0; ky < K; ++ky)  // (t A_W)[ky][kx]
        for (int kx = 0; kx < K; ++kx) {
          std::fill(row, row + C_out, 0.0);
          for (int j = 0; j < n; ++j)
            add_scaled_row(row, Wm::AWT[kx][j], t + (ky * n + j) * C_out, C_out);
          for (int64_t co = 0; co < C_out; ++co)
            dw[((co * C_in + ci) * K + ky) * K + kx] = float(row[co]);
        }
    }
  });
}

void conv2d_bwd_weights_winograd(float* dw, float* db, const DySource& dy, const float* x,
                                 const Conv2dParams& p, const KernelTable& kt) {
  const ClConvArgs a = fwd_cl_args(p, kt);
  const DirectConvArgs d = direct_args(p);
  const int64_t xs = p.x.c * p.x.h * p.x.w;
  const int64_t C_out = p.y.c, C_in = p.x.c, P = p.y.h * p.y.w, n = a.kh + 1;
  const int64_t sums = n * n * C_in * a.coutp, per_part = sums + C_out;
  const int parts = reduction_parts(p.x.n);
  float* ws = caller_workspace(parts * per_part);
  parallel_for_parts(p.x.n, parts, [&](int64_t begin, int64_t end, int part) {
    float* acc = ws + part * per_part;
    // zeroed by its own thread (see conv2d_bwd_weights_direct)
    std::fill(acc, acc + per_part, 0.0f);
    float* dbp = acc + sums;
    const int64_t xsize = xpad_size(d), work_floats = winograd_bww_work_floats(a);
    float* xpad = scratch(xsize + P * a.coutp + work_floats + dy.scratch_floats());
    float* dyT = xpad + xsize;
    float* work = dyT + P * a.coutp;
    float* tmp = work + work_floats;
    zero_lane_padding(dyT, P, C_out, a.coutp);
    pad_planes_zero(xpad, d);
    for (int64_t n_ = begin; n_ < end; ++n_) {
      pad_image_rows(xpad, x + n_ * xs, p, d);
      const float* dy_n = dy.image(n_, tmp);
      transpose_to_lanes(dyT, dy_n, C_out, P, a.coutp, kt.transpose_to_lanes);
      kt.conv2d_bwd_weights_winograd(acc, xpad, dyT, work, a);
      if (db != nullptr) sum_rows_into(dbp, dy_n, C_out, P);
    }
  });
  winograd_weights_from_sums<3>(dw, ws, per_part, parts, C_out, C_in, a.coutp);
  if (db != nullptr) {
    for (int64_t co = 0; co < C_out; ++co) {
      float s = 0.0f;
      for (int part = 0; part < parts; ++part) s += ws[part * per_part + sums + co];
      db[co] = s;
    }
  }
}

// --- scatter bwd_data (conv2d_bwd_data_cl.inl) ---------------------------------------------------
// Every multiply-add useful, input channels in the lanes: for layers whose dx is larger than dy
// (valid padding: keras.conv2, 12x12 from 8x8), where the forward-of-padded-dy kernels multiply
// the zero border. FASTCONV_BWD_SCATTER: -1 (default) picks, 0 never, 1 whenever allowed.
std::atomic<int>& bwd_scatter_mode_ref() {
  static std::atomic<int> mode{int(env_int("FASTCONV_BWD_SCATTER", -1))};
  return mode;
}

int64_t bwd_scatter_mode() { return bwd_scatter_mode_ref().load(std::memory_order_relaxed); }

bool use_bwd_data_scatter(const Conv2dParams& p, const KernelTable& kt) {
  if (kt.conv2d_bwd_data_scatter == nullptr ||
      !direct_geometry(p, reinterpret_cast<const void*>(kt.conv2d_bwd_data_scatter)) ||
      !(p.wt.w == 3 || p.wt.w == 5))
    return false;
  if (bwd_scatter_mode() >= 0) return bwd_scatter_mode() > 0;
  const double lanes = double(p.x.c) / double(round_up(p.x.c, kt.direct_lanes));
  const double waste = double(p.x.h * p.x.w) / double(p.y.h * p.y.w);
  // Measured at 1 thread against the next choice (DESIGN.md, round 5): keras.conv2 27.4 vs 34.7 ms
  // (GEMM), fashion.conv2 1.03 vs 1.24 (channels-in-lanes); wide rows lose to the latter on the
  // tiles' overlapping columns (vgg.a 11.9 vs 9.1, vgg.b even), 20 channels in 32 lanes too.
  return p.y.c >= 4 && lanes >= 0.85 && (waste > 1.3 || p.y.w <= 16);
}

void conv2d_bwd_data_scatter(float* dx, const DySource& dy, const float* w, const Conv2dParams& p,
                             const KernelTable& kt) {
  ScatterArgs a{};
  a.cout = p.y.c;
  a.cinp = round_up(p.x.c, kt.direct_lanes);
  a.kh = p.wt.h;
  a.kw = p.wt.w;
  a.oh = p.y.h;
  a.ow = p.y.w;
  a.h = p.x.h;
  a.top = p.pad.top;
  const int64_t C_in = p.x.c, KK = a.kh * a.kw, H = p.x.h, W = p.x.w;
  // wb[((ky*cout + co)*kw + kx)*cinp + ci] = w[co][ci][ky][kx]
  const float* wb = pack_lane_weights(a.kh, a.kw, a.cout, a.cinp, C_in,
                                      [&](int64_t ci, int64_t co, int64_t ky, int64_t kx) {
                                        return w[(co * C_in + ci) * KK + ky * a.kw + kx];
                                      });
  const int64_t wrow = a.ow + a.kw - 1, ysize = H * wrow * a.cinp;
  const int64_t dxs = C_in * H * W;
  parallel_for(p.x.n, [&](int64_t begin, int64_t end, int) {
    float* ycl = scratch(ysize + dy.scratch_floats());
    float* tmp = ycl + ysize;
    for (int64_t n = begin; n < end; ++n) {
      std::fill(ycl, ycl + ysize, 0.0f);
      kt.conv2d_bwd_data_scatter(ycl, dy.image(n, tmp), wb, a);
      // the real columns [pad_left, pad_left + W) of each padded row
      unpack_channels_last(dx + n * dxs, ycl, C_in, H, W, wrow, p.pad.left, a.cinp, nullptr,
                           false);
    }
  });
}

// bwd_data with dy's channels in the lanes (conv2d_bwd_data_dylanes.inl): for valid-padded
// layers with few dx channels, where a forward over dy padded by k-1 multiplies the wide zero
// border (lenet.conv2: 1.96x the useful products) and dx-channel lanes would run mostly empty
// (6 of 16). FASTCONV_BWD_DY_LANES: -1 (default) picks, 0 never, 1 whenever the geometry allows.
std::atomic<int>& bwd_dy_lanes_mode_ref() {
  static std::atomic<int> mode{int(env_int("FASTCONV_BWD_DY_LANES", -1))};
  return mode;
}

bool use_bwd_data_dylanes(const Conv2dParams& p, const KernelTable& kt) {
  if (kt.conv2d_bwd_data_dylanes == nullptr ||
      !direct_geometry(p, reinterpret_cast<const void*>(kt.conv2d_bwd_data_dylanes)) ||
      p.pad.top > p.wt.h - 1 || p.pad.bottom > p.wt.h - 1 || p.pad.left > p.wt.w - 1 ||
      p.pad.right > p.wt.w - 1)
    return false;
  const int mode = bwd_dy_lanes_mode_ref().load(std::memory_order_relaxed);
  if (mode >= 0) return mode == 1;
  const double lanes = double(p.y.c) / double(round_up(p.y.c, kt.direct_lanes));
  const double waste = double(p.x.h * p.x.w) / double(p.y.h * p.y.w);
  // 4..8 dx channels: a full tile is 4 pixels x up to 6 of them; with 1-3 it is load-bound
  return waste > 1.3 && lanes >= 0.85 && p.x.c >= 4 && p.x.c <= 8;
}

void conv2d_bwd_data_dylanes(float* dx, const DySource& dy, const float* w, const Conv2dParams& p,
                             const KernelTable& kt) {
  DyLanesArgs a{};
  a.cin = p.x.c;
  a.coutp = round_up(p.y.c, kt.direct_lanes);
  a.kh = p.wt.h;
  a.kw = p.wt.w;
  a.oh = p.y.h;
  a.ow = p.y.w;
  a.h = p.x.h;
  a.w = p.x.w;
  a.top = a.kh - 1 - p.pad.top;
  a.left = a.kw - 1 - p.pad.left;
  a.wq = a.w + a.kw - 1;
  const int64_t C_out = p.y.c, C_in = p.x.c, KK = a.kh * a.kw, P = a.oh * a.ow;
  float* wf = caller_workspace(KK * C_in * a.coutp);
  for (int64_t ky = 0; ky < a.kh; ++ky)
    for (int64_t kx = 0; kx < a.kw; ++kx)
      for (int64_t ci = 0; ci < C_in; ++ci) {
        float* dst = wf + ((ky * a.kw + kx) * C_in + ci) * a.coutp;
        for (int64_t co = 0; co < a.coutp; ++co)
          dst[co] = co < C_out ? w[(co * C_in + ci) * KK + (a.kh - 1 - ky) * a.kw + (a.kw - 1 - kx)]
                               : 0.0f;
      }
  const int64_t dyp_size = a.oh * a.wq * a.coutp, dyT_size = P * a.coutp;
  const int64_t dxs = C_in * a.h * a.w;
  parallel_for(p.x.n, [&](int64_t begin, int64_t end, int) {
    float* dyp = scratch(dyp_size + dyT_size + dy.scratch_floats());
    float* dyT = dyp + dyp_size;
    float* tmp = dyT + dyT_size;
    std::fill(dyp, dyp + dyp_size, 0.0f);  // the border columns stay zero for every image
    zero_lane_padding(dyT, P, C_out, a.coutp);
    for (int64_t n = begin; n < end; ++n) {
      transpose_to_lanes(dyT, dy.image(n, tmp), C_out, P, a.coutp, kt.transpose_to_lanes);
      for (int64_t r = 0; r < a.oh; ++r)
        std::copy(dyT + r * a.ow * a.coutp, dyT + (r + 1) * a.ow * a.coutp,
                  dyp + (r * a.wq + a.left) * a.coutp);
      kt.conv2d_bwd_data_dylanes(dx + n * dxs, dyp, wf, a);
    }
  });
}

}  // namespace

namespace {
// The run-time switch behind a path name (tests and fastconv.set_winograd flip them).
std::atomic<int>& path_mode_ref(const std::string& path) {
  if (path == "fwd_cl") return fwd_cl_mode_ref();
  if (path == "winograd") return winograd_mode_ref();
  if (path == "winograd_tiles") return winograd_tiles_mode_ref();
  if (path == "winograd_bww") return winograd_bww_mode_ref();
  if (path == "bww_flat") return bww_flat_mode_ref();
  if (path == "bwd_dy_lanes") return bwd_dy_lanes_mode_ref();
  if (path == "winograd_transposed") return winograd_transposed_mode_ref();
  FC_CHECK(path == "bwd_scatter",
           "path must be 'fwd_cl', 'winograd', 'winograd_tiles', 'winograd_bww', "
           "'winograd_transposed', 'bww_flat', 'bwd_dy_lanes' or 'bwd_scatter', got '", path, "'");
  return bwd_scatter_mode_ref();
}
}  // namespace

int set_path_mode(const std::string& path, int mode) {
  FC_CHECK(mode >= -1 && mode <= 1, "mode must be -1 (auto), 0 (off) or 1 (on), got ", mode);
  return path_mode_ref(path).exchange(mode);
}

int get_path_mode(const std::string& path) {
  return path_mode_ref(path).load(std::memory_order_relaxed);
}

// Forward, GEMM path: per group the weights are packed once (MR slivers, shared by all threads);
// each task (image, group, pixel block) writes its patches straight into NR slivers and runs the
// packed GEMM with bias + ReLU fused into the store. Workspace: the caller's packed weights
// (C_out rounded up to MR per group x K floats) + per thread K x round_up(block, NR) floats.
namespace {
// The per-image forward paths write each image through an ImageSink; true if one of them ran.
bool fwd_per_image(const ImageSink& out, const float* x, const float* w, const float* b,
                   const Conv2dParams& p, bool relu, const KernelTable& kt) {
  if (const Wino kind = fwd_winograd(p, kt); kind != Wino::none) {
    conv2d_fwd_winograd(kind, out, x, w, b, p, relu, kt);
    return true;
  }
  if (use_fwd_cl(p, kt)) {
    conv2d_fwd_cl(out, x, w, b, p, relu, kt);
    return true;
  }
  if (use_direct_fwd(p, reinterpret_cast<const void*>(kt.conv2d_fwd_direct))) {
    conv2d_fwd_direct(out, x, w, b, p, relu, kt.conv2d_fwd_direct,
                      use_fwd_shifted(p, kt) ? kt.conv2d_fwd_direct_shifted : nullptr,
                      kt.shift_planes);
    return true;
  }
  return false;
}
}  // namespace

void conv2d_fwd__cpu(float* y, const float* x, const float* w, const float* b,
                     const Conv2dParams& p, bool relu) {
  poison(y, p.y.numel());
  const KernelTable& kt = kernels();
  if (fwd_per_image(ImageSink::plain(y, p.y.c, p.y.h, p.y.w), x, w, b, p, relu, kt)) return;
  const Geometry g = geometry(p);
  const int64_t G = p.groups, MR = kt.gemm_mr, NR = kt.gemm_nr;
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
      kt.sgemm_packed(a);
    }
  });
}

// Conv + ReLU + 2x2/2 max-pool: the per-image paths (channels-in-lanes, direct) pool each image
// from the thread's scratch; other geometries (stride, dilation, groups: GEMM) convolve the whole
// batch into a temporary first. Same kernels as conv2d_fwd__cpu, so the same values and winners.
void conv2d_relu_maxpool2d_fwd__cpu(float* py, uint8_t* codes, const float* x, const float* w,
                                    const float* b, const Conv2dParams& p) {
  const int64_t pooled = p.y.n * p.y.c * (p.y.h / 2) * (p.y.w / 2);
  poison(py, pooled);
  if (debug_poison()) std::fill(codes, codes + pooled, uint8_t(0xFF));
  if (fwd_per_image(ImageSink::pooled_into(py, codes, p.y), x, w, b, p, true, kernels())) return;
  std::vector<float> y(size_t(p.y.numel()));  // off the training layers' paths: heap is fine
  conv2d_fwd__cpu(y.data(), x, w, b, p, true);
  relu_maxpool2d_fwd__cpu(py, codes, y.data(), p.y);
}

namespace {
// The per-image bwd_data paths read dy through a DySource; true if one of them ran.
bool bwd_data_per_image(float* dx, const DySource& dy, const float* w, const Conv2dParams& p,
                        const KernelTable& kt) {
  if (const Wino kind = bwd_data_winograd(p, kt); kind != Wino::none) {
    conv2d_bwd_data_winograd(kind, dx, dy, w, p, kt);
    return true;
  }
  if (use_bwd_data_scatter(p, kt)) {
    conv2d_bwd_data_scatter(dx, dy, w, p, kt);
    return true;
  }
  if (use_bwd_data_cl(p, kt)) {
    conv2d_bwd_data_cl(dx, dy, w, p, kt);
    return true;
  }
  if (use_bwd_data_dylanes(p, kt)) {
    conv2d_bwd_data_dylanes(dx, dy, w, p, kt);
    return true;
  }
  if (use_direct_bwd_data(p, reinterpret_cast<const void*>(kt.conv2d_fwd_direct))) {
    conv2d_bwd_data_direct(dx, dy, w, p, kt.conv2d_fwd_direct);
    return true;
  }
  return false;
}
}  // namespace

// bwd_data of the fused conv + ReLU + pool from the pooled gradient and codes: per image unpooled
// into the thread's scratch on the per-image paths; the GEMM path gets the full-size gradient.
void conv2d_relu_maxpool2d_bwd_data__cpu(float* dx, const float* pdy, const uint8_t* codes,
                                         const float* w, const Conv2dParams& p) {
  poison(dx, p.x.numel());
  if (bwd_data_per_image(dx, DySource::pooled_from(pdy, codes, p.y), w, p, kernels())) return;
  std::vector<float> dy(size_t(p.y.numel()));  // off the training layers' paths: heap is fine
  relu_maxpool2d_bwd__cpu(dy.data(), pdy, codes, p.y);
  conv2d_bwd_data__cpu(dx, dy.data(), w, p);
}

// Backward data: dcol (K x pn) = W_g^T (K x C_out/g, packed once per call) * dY block (packed per
// block, small), then col2im-add into dx. Threads over (image, group): neighbouring pixel blocks'
// col2im overlap in dx. Workspace: the caller's packed W^T (round_up(K, MR) x C_out/g per group)
// + per thread (C_out/g x round_up(block, NR)) + K x block floats.
void conv2d_bwd_data__cpu(float* dx, const float* dy, const float* w, const Conv2dParams& p) {
  poison(dx, p.x.numel());
  const KernelTable& kt = kernels();
  if (bwd_data_per_image(dx, DySource::plain(dy, p.y.c, p.y.h, p.y.w), w, p, kt)) return;
  const Geometry g = geometry(p);
  const int64_t G = p.groups, MR = kt.gemm_mr, NR = kt.gemm_nr;
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
        kt.sgemm_packed(a);
        if (!g.pointwise) col2im_add(p, g, col, p0, pn, dx_g);
      }
    }
  });
}

// Backward weights: dW_g (C_out/g x K) += dY block (C_out/g x pn, MR slivers) * col^T (pn x K,
// im2col'd straight into NR tap slivers), summed over the thread's samples; per-thread partial
// sums are then added in a fixed order (deterministic at a given thread count).
// Workspace: caller's (parts - 1) * |dW| + parts * C_out floats; per thread
// round_up(C_out/g, MR) * block + block * round_up(K, NR) floats.
namespace {
void conv2d_bwd_weights_from(float* dw, float* db, const DySource& dy, const float* x,
                             const Conv2dParams& p) {
  const int64_t wsize = p.wt.numel(), C_out = p.y.c;
  poison(dw, wsize);
  if (db != nullptr) poison(db, C_out);
  if (p.x.n == 0) {
    std::fill(dw, dw + wsize, 0.0f);
    if (db != nullptr) std::fill(db, db + C_out, 0.0f);
    return;
  }
  const KernelTable& kt = kernels();
  if (use_bwd_weights_winograd(p, kt)) {
    conv2d_bwd_weights_winograd(dw, db, dy, x, p, kt);
    return;
  }
  if (use_direct_bwd_weights_cl(p, reinterpret_cast<const void*>(kt.conv2d_bwd_weights_direct_cl))) {
    conv2d_bwd_weights_direct_cl(dw, db, dy, x, p, kt.conv2d_bwd_weights_direct_cl,
                                 kt.direct_lanes, kt.pad_channels_last);
    return;
  }
  if (use_direct_bwd_weights_t(p, reinterpret_cast<const void*>(kt.conv2d_bwd_weights_direct_t))) {
    conv2d_bwd_weights_direct_t(dw, db, dy, x, p, kt.conv2d_bwd_weights_direct_t,
                                kt.direct_lanes, kt.transpose_to_lanes);
    return;
  }
  if (use_direct_bwd_weights(p, reinterpret_cast<const void*>(kt.conv2d_bwd_weights_direct))) {
    conv2d_bwd_weights_direct(dw, db, dy, x, p, kt.conv2d_bwd_weights_direct, kt.direct_lanes,
                              kt.shift_planes);
    return;
  }
  const Geometry g = geometry(p);
  const int64_t G = p.groups, MR = kt.gemm_mr, NR = kt.gemm_nr;
  const int parts = reduction_parts(p.x.n);
  float* partial_dw = caller_workspace((parts - 1) * wsize + parts * C_out);
  float* partial_db = partial_dw + (parts - 1) * wsize;
  std::fill(dw, dw + wsize, 0.0f);
  std::fill(partial_dw, partial_dw + (parts - 1) * wsize + parts * C_out, 0.0f);
  parallel_for_parts(p.x.n, parts, [&](int64_t begin, int64_t end, int part) {
    float* my_dw = part == 0 ? dw : partial_dw + (part - 1) * wsize;
    float* my_db = partial_db + part * C_out;
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
          a.c = my_dw + gi * g.cout_g * g.K;
          a.ldc = g.K;
          a.accumulate = true;
          kt.sgemm_packed(a);
        }
        if (db != nullptr) {
          for (int64_t co = 0; co < g.cout_g; ++co) {
            // 8 independent partial sums (vectorisable, fixed order), then combined in order.
            const float* r = dy_g + co * g.P;
            float s8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            int64_t i = 0;
            for (; i + 8 <= g.P; i += 8)
              for (int j = 0; j < 8; ++j) s8[j] += r[i + j];
            float s = 0.0f;
            for (; i < g.P; ++i) s += r[i];
            for (int j = 0; j < 8; ++j) s += s8[j];
            my_db[gi * g.cout_g + co] += s;
          }
        }
      }
    }
  });
  // Fixed-order reduction of the partial sums.
  for (int part = 1; part < parts; ++part) {
    const float* src = partial_dw + (part - 1) * wsize;
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
}  // namespace

void conv2d_bwd_weights__cpu(float* dw, float* db, const float* dy, const float* x,
                             const Conv2dParams& p) {
  conv2d_bwd_weights_from(dw, db, DySource::plain(dy, p.y.c, p.y.h, p.y.w), x, p);
}

void conv2d_relu_maxpool2d_bwd_weights__cpu(float* dw, float* db, const float* pdy,
                                            const uint8_t* codes, const float* x,
                                            const Conv2dParams& p) {
  conv2d_bwd_weights_from(dw, db, DySource::pooled_from(pdy, codes, p.y), x, p);
}

}  // namespace cpu
}  // namespace fastconv
