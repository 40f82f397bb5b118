// support.h — what the CPU conv drivers share: per-thread scratch and the caller's workspace, the
// zero-bordered plane layouts the direct and channel-lane kernels read, where a per-image driver
// writes its output (ImageSink) and reads its dy (DySource), and the weight-gradient reduction
// skeleton. Internal to cpp/cpu/conv2d/ (compiled for the baseline ISA).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "fastconv/cpu_kernels.h"
#include "fastconv/ops.h"
#include "fastconv/parallel.h"
#include "fastconv/params.h"

namespace fastconv {
namespace cpu {

// NaN-fill p[0, n) in debug-poison mode (tests): an element a kernel forgets to write shows up.
void poison(float* p, int64_t n);

// A per-thread scratch buffer that only grows: no heap traffic once warmed up (poisoned in debug
// mode).
float* scratch(int64_t n);

// The calling thread's workspace for results that outlive a parallel region (per-part partial
// sums of bwd_weights, packed weights). Grows to the largest request and is reused: no heap
// traffic once warm. Thread-local on the caller, so two Python threads calling in concurrently
// never share it.
float* caller_workspace(int64_t n);

inline int64_t round_up(int64_t v, int64_t r) { return (v + r - 1) / r * r; }

// Ask for p[0, n) in the caches, one prefetch per 64-byte line: a per-image driver calls it for
// the next image's input before computing this one, so a batch that was not in cache (each
// training step's fresh activations) streams in behind the kernel's FMAs instead of stalling its
// transposes (lenet.conv2's weight gradient read its 1.1 MB from L3: 17% slower than in cache).
inline void prefetch_floats(const float* p, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) __builtin_prefetch(p + i, 0, 2);
}

// The per-core L2 the drivers size their prefetches of coming images against (Zen 4: 1 MB): a
// next image trickled in behind the kernel's tiles (PrefetchSpans) must not evict their operands.
constexpr int64_t kL2Bytes = 1 << 20;

// --- zero-bordered planes (the direct kernels' input, cpu_kernels.h DirectConvArgs) -------------

// Output-channel block of the direct forward kernel: 4, 5 or 6, the one wasting the fewest channels
// (ties: the larger block): 20 -> 5, 75 -> 5, 32/64/128 -> 4, 6 -> 6, 16 -> 4; 1 for one channel.
int64_t direct_channel_block(int64_t cout);

// The forward's geometry: x bordered by the layer's padding.
DirectConvArgs direct_args(const Conv2dParams& p);

inline int64_t xpad_size(const DirectConvArgs& a) {
  return a.cin * a.plane + kDirectSlackRows * a.wp + kDirectSlack;
}

// xpad <- the a.cin planes (H x W) of src placed at (top, left) inside zero-bordered planes of
// a.hp x a.wp, plus zero slack (see cpu_kernels.h). The zeros sit at the same places for every
// image and the kernels only read xpad: a per-thread buffer is zeroed once (pad_planes_zero) and
// then gets each image's rows (pad_planes_rows): fashion.conv2's weight gradient ran ~7% faster
// than with the borders filled again for every image.
inline void pad_planes_zero(float* xpad, const DirectConvArgs& a) {
  std::fill(xpad, xpad + xpad_size(a), 0.0f);
}

inline void pad_planes_rows(float* xpad, const float* src, int64_t H, int64_t W, int64_t top,
                            int64_t left, const DirectConvArgs& a) {
  for (int64_t c = 0; c < a.cin; ++c)
    for (int64_t iy = 0; iy < H; ++iy)
      std::memcpy(xpad + (c * a.hp + top + iy) * a.wp + left, src + (c * H + iy) * W,
                  size_t(W) * sizeof(float));
}

inline void pad_image_rows(float* xpad, const float* x_n, const Conv2dParams& p,
                           const DirectConvArgs& a) {
  pad_planes_rows(xpad, x_n, p.x.h, p.x.w, p.pad.top, p.pad.left, a);
}

// Input of the C_in < 4 kernels (DirectBwdWeightsFn, conv2d_fwd_direct_shifted): per (ci, kx)
// the zero-padded plane shifted left by kx with row pitch ow,
// xs[((ci*kw + kx)*hp + r)*ow + ox] = xpad[ci][r][ox + kx], so that every tap reads its inputs
// at the output's (and dy's) own flat index oy*ow + ox. The zeros sit at the same places for
// every image: shifted_planes_zero once per buffer, then the ISA's ShiftPlanesFn copies the
// image's rows (every table with direct kernels has one).
inline int64_t shifted_planes_size(const DirectConvArgs& a) {
  return a.cin * a.kw * a.hp * a.ow + kDirectSlack;
}

inline void shifted_planes_zero(float* xs, const DirectConvArgs& a) {
  std::fill(xs, xs + shifted_planes_size(a), 0.0f);
}

inline void shifted_planes(float* xs, const float* x_n, const Conv2dParams& p,
                           const DirectConvArgs& a, ShiftPlanesFn fn) {
  fn(xs, x_n, p.x.h, p.x.w, p.pad.top, p.pad.left, a);
}

// --- where a per-image driver writes and reads ----------------------------------------------------

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

// Where a per-image driver reads image n's dy (C planes of OH x OW): straight from dy, or, for
// conv2d_relu_maxpool2d's backward, unpooled from the pooled gradient and the window codes into
// the thread's scratch (the full-size gradient never goes to memory).
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
  // Where images [n0, n1)'s gradient is read from, and how many floats (pooled: the pooled
  // values; the codes are a quarter).
  const float* span(int64_t n0, int64_t n1, int64_t* floats) const {
    const int64_t per = pooled() ? c * (oh / 2) * (ow / 2) : c * oh * ow;
    *floats = (n1 - n0) * per;
    return (pooled() ? pdy : dy) + n0 * per;
  }
  // prefetch_floats of image n's gradient.
  void prefetch(int64_t n) const {
    int64_t floats = 0;
    const float* p = span(n, n + 1, &floats);
    prefetch_floats(p, floats);
  }
  // prefetch(n) and, pooled, image n's window codes too.
  void prefetch_with_codes(int64_t n) const {
    prefetch(n);
    if (!pooled()) return;
    const int64_t pp = (oh / 2) * (ow / 2);
    const uint8_t* cn = codes + n * c * pp;
    for (int64_t i = 0; i < c * pp; i += 64) __builtin_prefetch(cn + i, 0, 2);
  }
  const float* image(int64_t n, float* tmp) const {
    if (!pooled()) return dy + n * c * oh * ow;
    const int64_t pp = (oh / 2) * (ow / 2);
    relu_maxpool2d_unpool_planes(tmp, pdy + n * c * pp, codes + n * c * pp, oh, ow, c);
    return tmp;
  }
};

// --- the weight-gradient reduction skeleton -----------------------------------------------------

// Images [0, N) in reduction_parts(N) fixed ranges (parallel_for_parts); part i accumulates into
// its own per_part floats of the caller's workspace, zeroed by the thread that fills it (parts <=
// images, so every part runs; a serial fill by the caller also left the other thread's lines in
// its own cache). The caller then adds the parts in part order: deterministic at a given thread
// count, whichever thread computed which part.
struct PartSums {
  float* ws;
  int parts;
  int64_t per_part;
  const float* part(int i) const { return ws + i * per_part; }
  // out[i] = the parts' values at offset + i, added in part order (the bias sums).
  void sum_into(float* out, int64_t offset, int64_t n) const {
    for (int64_t i = 0; i < n; ++i) {
      float s = 0.0f;
      for (int q = 0; q < parts; ++q) s += ws[q * per_part + offset + i];
      out[i] = s;
    }
  }
};

// fn(acc, begin, end) adds images [begin, end) into acc (per_part floats, zeroed).
template <class Fn>
PartSums accumulate_parts(int64_t n_images, int64_t per_part, Fn&& fn) {
  const int parts = reduction_parts(n_images);
  float* ws = caller_workspace(parts * per_part);
  parallel_for_parts(n_images, parts, [&](int64_t begin, int64_t end, int part) {
    float* acc = ws + part * per_part;
    std::fill(acc, acc + per_part, 0.0f);
    fn(acc, begin, end);
  });
  return PartSums{ws, parts, per_part};
}

// --- channels in the lanes ------------------------------------------------------------------------

// out[co] += the sum of rows[co*len, (co+1)*len) for co < nrows: 8 independent partial sums
// (vectorisable, fixed order), then combined in order. The weight gradients' bias sums.
void sum_rows_into(float* out, const float* rows, int64_t nrows, int64_t len);

// The lanes past C_out of every dyT row zeroed, once per buffer (transpose_to_lanes keeps them).
void zero_lane_padding(float* dyT, int64_t P, int64_t C_out, int64_t coutp);

// dyT[q*coutp + co] <- dy_n[co*P + q] for co < C_out. vec: the ISA's vectorised transpose of
// blocks of `lanes` channels, taken when coutp >= round_up(C_out, lanes) (nullptr: a plain loop;
// ~15% of fashion.conv2's Winograd weight gradient at 1 thread).
void transpose_to_lanes(float* dyT, const float* dy_n, int64_t C_out, int64_t P, int64_t coutp,
                        TransposeToLanesFn vec, int64_t lanes);

// y (C planes of rows x W, NCHW) <- ycl, channels-last with `lanes` floats per pixel and `pitch`
// pixels per row, columns [col0, col0 + W) [+ bias] [ReLU]; runs of 64 pixels so the strided
// reads stay in L1. A flat image is one row of rows*W pixels (pitch = W, col0 = 0).
void unpack_channels_last(float* y, const float* ycl, int64_t C, int64_t rows, int64_t W,
                          int64_t pitch, int64_t col0, int64_t lanes, const float* bias,
                          bool relu);

// A stride-1 forward's geometry for the per-image channel-lane kernels: `cin` planes of h x w
// zero-bordered by (top, left, bottom, right), `cout` output channels rounded up to the lanes.
ClConvArgs padded_cl_args(const Conv2dParams& p, const KernelTable& kt, int64_t cin, int64_t cout,
                          int64_t h, int64_t w, int64_t top, int64_t left, int64_t bottom,
                          int64_t right);

// The forward: x bordered by the layer's padding.
inline ClConvArgs fwd_cl_args(const Conv2dParams& p, const KernelTable& kt) {
  return padded_cl_args(p, kt, p.x.c, p.y.c, p.x.h, p.x.w, p.pad.top, p.pad.left, p.pad.bottom,
                        p.pad.right);
}

// bwd_data as the forward of dy bordered by k-1-pad (with flipped, in/out-transposed weights).
inline ClConvArgs bwd_data_cl_args(const Conv2dParams& p, const KernelTable& kt) {
  const int64_t kh1 = p.wt.h - 1, kw1 = p.wt.w - 1;
  return padded_cl_args(p, kt, p.y.c, p.x.c, p.y.h, p.y.w, kh1 - p.pad.top, kw1 - p.pad.left,
                        kh1 - p.pad.bottom, kw1 - p.pad.right);
}

// The weights as the forward sees them: layer weights, or (bwd_data) layer co is this conv's input
// channel, layer ci its output channel, taps flipped.
inline auto fwd_weight(const float* w, const ClConvArgs& a) {
  return [w, a](int64_t co, int64_t ci, int64_t ky, int64_t kx) {
    return w[((co * a.cin + ci) * a.kh + ky) * a.kw + kx];
  };
}
inline auto bwd_data_weight(const float* w, const ClConvArgs& a, int64_t C_in, bool flip = true) {
  return [w, a, C_in, flip](int64_t ci, int64_t co, int64_t ky, int64_t kx) {
    if (flip) ky = a.kh - 1 - ky, kx = a.kw - 1 - kx;
    return w[((co * C_in + ci) * a.kh + ky) * a.kw + kx];
  };
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

// Shared by the per-image forward / bwd_data kernels that read zero-bordered planes: per image,
// src (a.cin planes of h x w) is bordered into the thread's scratch and kernel(dst, xpad, extra)
// writes the image's output dst (C planes, NCHW; extra: extra_floats of the thread's scratch).
// reads_in_bounds: the kernel reads no float outside the planes (no vector over-reads into the
// slack), so an unbordered plain src (valid padding) is passed as it is, without the copy
// (lenet.conv2's channel-lane forward: ~3% of its time went to it).
// prefetch_next: ask for image n + 1's input while image n computes (a training step's
// activations come from L3, not L2).
template <class Kernel>
void run_padded_images(const ImageSink& out, const DySource& src, int64_t n_images,
                       const ClConvArgs& a, int64_t extra_floats, Kernel&& kernel,
                       bool reads_in_bounds = false, bool prefetch_next = false) {
  DirectConvArgs d{};  // the pixels-in-lanes path's padded-plane layout (pad_planes, xpad_size)
  d.cin = a.cin;
  d.hp = a.plane / a.wp;  // oh + kh - 1, or more zero rows below (winograd_tiles_4x2)
  d.wp = a.wp;
  d.plane = a.plane;
  const bool in_place = reads_in_bounds && !src.pooled() && a.top == 0 && a.left == 0 &&
                        a.wp == a.w && d.hp == a.h;
  const int64_t xsize = in_place ? 0 : xpad_size(d);
  parallel_for(n_images, [&](int64_t begin, int64_t end, int) {
    float* xpad = scratch(xsize + out.scratch_floats() + src.scratch_floats() + extra_floats);
    float* tmp = xpad + xsize;
    float* src_tmp = tmp + out.scratch_floats();
    float* extra = src_tmp + src.scratch_floats();
    if (!in_place) pad_planes_zero(xpad, d);
    for (int64_t n = begin; n < end; ++n) {
      const float* image = src.image(n, src_tmp);
      if (!in_place) pad_planes_rows(xpad, image, a.h, a.w, a.top, a.left, d);
      if (prefetch_next && n + 1 < end) src.prefetch_with_codes(n + 1);
      float* dst = out.target(n, tmp);
      kernel(dst, in_place ? image : xpad, extra);
      out.finish(n, dst);
    }
  });
}

// The channels-last kernels (CL, Winograd): kernel(ycl, xpad, work) writes ycl (work:
// work_floats), which is unpacked into dst (C_dst planes) [+ bias] [ReLU] by `unpack` (the
// ISA's, ChannelLaneKernels::unpack; nullptr: unpack_channels_last's loop).
template <class Kernel>
void run_cl_images(const ImageSink& out, const DySource& src, const float* bias, bool relu,
                   int64_t n_images, int64_t C_dst, const ClConvArgs& a, int64_t work_floats,
                   UnpackChannelsLastFn unpack, Kernel&& kernel, bool reads_in_bounds = false) {
  const int64_t P = a.oh * a.ow;
  run_padded_images(
      out, src, n_images, a, P * a.coutp + work_floats,
      [&](float* dst, const float* xpad, float* ycl) {
        kernel(ycl, xpad, ycl + P * a.coutp);
        if (unpack != nullptr) {
          unpack(dst, ycl, C_dst, P, a.coutp, bias, relu);
        } else {
          unpack_channels_last(dst, ycl, C_dst, 1, P, P, 0, a.coutp, bias, relu);
        }
      },
      reads_in_bounds);
}

}  // namespace cpu
}  // namespace fastconv
