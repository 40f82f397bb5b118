// lanes.cpp — the direct drivers with channels in the vector lanes, for groups 1, stride 1,
// dilation 1 (the ISA's table has these kernels on AVX-512; AVX2 has the channel-lane weight
// gradient): forward and bwd_data with output channels in the lanes (conv2d_fwd_cl.inl), bwd_data
// by scatter (dx channels, conv2d_bwd_data_cl.inl) or with dy's channels in the lanes
// (conv2d_bwd_data_dylanes.inl), and the weight gradient with output channels or (kx, ci) taps in
// the lanes (conv2d_bww_cl.inl).
#include <algorithm>
#include <cstring>
#include <vector>

#include "drivers.h"
#include "fastconv/parallel.h"
#include "fastconv/winograd_rows.h"

namespace fastconv {
namespace cpu {

// Forward and bwd_data with output channels in the lanes, for layers whose short output rows waste
// the pixels-in-lanes kernel's lanes (keras.conv2: rows of 8 in 16 lanes); bwd_data as the
// forward of dy bordered by k-1-pad (the kernel skips the taps that meet only the border).
void fwd_channel_lanes(const ImageSink& out, const float* x, const float* w, const float* b,
                       const Conv2dParams& p, bool relu, const KernelTable& kt) {
  const ClConvArgs a = fwd_cl_args(p, kt);
  const float* wcl = pack_lane_weights(a.kh, a.kw, a.cin, a.coutp, p.y.c, fwd_weight(w, a));
  // The kernel broadcasts single floats of the taps it runs: no read outside the planes.
  run_cl_images(
      out, DySource::plain(x, a.cin, a.h, a.w), b, relu, p.x.n, p.y.c, a, 0,
      kt.channel_lanes.unpack, [&](float* ycl, const float* xpad, float*) { kt.channel_lanes.fwd(ycl, xpad, wcl, a); },
      true);
}

// The channel-lane forward with a 1-D Winograd down the columns (conv2d_winograd_rows.inl):
// u[((pt*cin + ci)*kw + kx)*coutp + co] = sum_ky G[pt][ky] * w[co][ci][ky][kx] for the points of
// F(4, 5) then F(2, 5) (5x5) or F(2, 3) (3x3), in double and rounded once.
namespace {
// out[((pt*cin + ci)*kw + kx)*coutp + co] for Mx's points pt in [pt0, pt1), from wd[((ci*kh +
// ky)*kw + kx)*coutp + co] (the weights in double, channels innermost: the sums vectorise over co).
template <class Mx>
void transform_rows_weights(float* out, const double* wd, const ClConvArgs& a, int64_t pt0,
                            int64_t pt1) {
  const int64_t cp = a.coutp, kstep = a.kw * cp;
  out += pt0 * a.cin * kstep;
  for (int64_t pt = pt0; pt < pt1; ++pt)
    for (int64_t ci = 0; ci < a.cin; ++ci)
      for (int64_t kx = 0; kx < a.kw; ++kx, out += cp) {
        const double* src = wd + (ci * a.kh * a.kw + kx) * cp;
        for (int64_t c = 0; c < cp; ++c) {
          double s = 0.0;
#pragma GCC unroll 5
          for (int ky = 0; ky < Mx::r; ++ky) s += Mx::G[pt][ky] * src[ky * kstep + c];
          out[c] = float(s);
        }
      }
}

// Threaded over the points (on the calling thread alone it was ~13 us of lenet.conv2's call).
const float* pack_rows_weights(const ClConvArgs& a, int64_t C_out, const float* w) {
  using Big = WinogradRows<4, 5>;
  using Two5 = WinogradRows<2, 5>;
  using Two3 = WinogradRows<2, 3>;
  const int64_t cp = a.coutp, taps = a.cin * a.kh * a.kw;
  const int64_t big = a.kh == 5 ? Big::n : 0, points = a.kh == 5 ? Big::n + Two5::n : Two3::n;
  float* u = caller_workspace(points * a.cin * a.kw * cp);
  thread_local std::vector<double> wd_buf;
  if (int64_t(wd_buf.size()) < taps * cp) wd_buf.resize(size_t(taps * cp));
  double* wd = wd_buf.data();
  for (int64_t co = 0; co < cp; ++co)  // zeros past the real channels
    for (int64_t t = 0; t < taps; ++t) wd[t * cp + co] = co < C_out ? double(w[co * taps + t]) : 0.0;
  parallel_for(points, [&](int64_t p0, int64_t p1, int) {
    if (a.kh != 5) return transform_rows_weights<Two3>(u, wd, a, p0, p1);
    if (p0 < big) transform_rows_weights<Big>(u, wd, a, p0, std::min(p1, big));
    if (p1 > big)
      transform_rows_weights<Two5>(u + big * a.cin * a.kw * cp, wd, a, std::max(p0, big) - big,
                                   p1 - big);
  });
  return u;
}
}  // namespace

void fwd_winograd_rows(const ImageSink& out, const float* x, const float* w, const float* b,
                       const Conv2dParams& p, bool relu, const KernelTable& kt) {
  const ClConvArgs a = fwd_cl_args(p, kt);
  const float* u = pack_rows_weights(a, p.y.c, w);
  // The kernel reads no float outside the planes (masked row ends): a valid conv's input in place.
  run_cl_images(
      out, DySource::plain(x, a.cin, a.h, a.w), b, relu, p.x.n, p.y.c, a,
      winograd_rows_work_floats(a), kt.channel_lanes.unpack,
      [&](float* ycl, const float* xpad, float* work) { kt.winograd.fwd_rows(ycl, xpad, u, work, a); },
      true);
}

void bwd_data_channel_lanes(float* dx, const DySource& dy, const float* w, const Conv2dParams& p,
                            const KernelTable& kt) {
  const ClConvArgs a = bwd_data_cl_args(p, kt);
  const float* wcl = pack_lane_weights(a.kh, a.kw, a.cin, a.coutp, p.x.c,
                                       bwd_data_weight(w, a, p.x.c));
  run_cl_images(ImageSink::plain(dx, p.x.c, p.x.h, p.x.w), dy, nullptr, false, p.x.n, p.x.c, a, 0,
                kt.channel_lanes.unpack, [&](float* ycl, const float* xpad, float*) {
                  kt.channel_lanes.fwd(ycl, xpad, wcl, a);
                });
}

// bwd_data by scatter, every multiply-add useful, dx channels in the lanes: for layers whose dx is
// larger than dy (valid padding), where the forward-of-padded-dy kernels multiply the zero border.
void bwd_data_scatter(float* dx, const DySource& dy, const float* w, const Conv2dParams& p,
                      const KernelTable& kt) {
  ScatterArgs a{};
  a.cout = p.y.c;
  a.cinp = round_up(p.x.c, kt.lanes);
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
      kt.channel_lanes.bwd_data_scatter(ycl, dy.image(n, tmp), wb, a);
      // the real columns [pad_left, pad_left + W) of each padded row
      unpack_channels_last(dx + n * dxs, ycl, C_in, H, W, wrow, p.pad.left, a.cinp, nullptr,
                           false);
    }
  });
}

// bwd_data with dy's channels in the lanes (conv2d_bwd_data_dylanes.inl): for valid-padded
// layers with few dx channels, where a forward over dy padded by k-1 multiplies the wide zero
// border and dx-channel lanes would run mostly empty.
void bwd_data_dy_lanes(float* dx, const DySource& dy, const float* w, const Conv2dParams& p,
                       const KernelTable& kt) {
  DyLanesArgs a{};
  a.cin = p.x.c;
  a.coutp = round_up(p.y.c, kt.lanes);
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
      transpose_to_lanes(dyT, dy.image(n, tmp), C_out, P, a.coutp, kt.channel_lanes.transpose,
                         kt.lanes);
      for (int64_t r = 0; r < a.oh; ++r)
        std::copy(dyT + r * a.ow * a.coutp, dyT + (r + 1) * a.ow * a.coutp,
                  dyp + (r * a.wq + a.left) * a.coutp);
      kt.channel_lanes.bwd_data_dy_lanes(dx + n * dxs, dyp, wf, a);
    }
  });
}

// Large-C_in bwd_weights without im2col (stride 1, dilation 1, groups 1): per image, x is padded
// and dy transposed to (pixels, C_out rounded up to the lanes) so output channels ride in the
// vector lanes and input pixels are broadcast straight from the padded rows. Threads take
// fixed ranges of samples (parallel_for_parts), each with its own (K x coutp) + C_out partial
// sums in the caller's workspace, summed in a fixed order: deterministic at a thread count.
// Workspace: parts * (C_in*KH*KW * coutp + C_out) floats; per thread one padded image +
// OH*OW * coutp floats.
// Parts' sums up to this many floats (all parts together, 64 KB) are added by the caller alone.
constexpr int64_t kSerialPartSumFloats = 16 * 1024;

void bwd_weights_channel_lanes(float* dw, float* db, const DySource& dy, const float* x,
                               const Conv2dParams& p, const KernelTable& kt) {
  const int lanes = kt.lanes;
  const DirectConvArgs a = direct_args(p);
  const int64_t xs = p.x.c * p.x.h * p.x.w;
  const int64_t K = p.reduction(), C_out = p.y.c, P = p.y.h * p.y.w;
  const int64_t coutp = round_up(C_out, lanes);
  const int64_t per_part = K * coutp + C_out;
  const PartSums sums = accumulate_parts(p.x.n, per_part, [&](float* acc, int64_t begin,
                                                               int64_t end) {
    float* dbp = acc + K * coutp;
    const int64_t xsize = xpad_size(a);
    // Unpadded inputs (lenet.conv2) are read in place: the tiles read only rows < hp and
    // columns < wp of each plane, so x's own planes serve, without a copy per image.
    const bool in_place = a.hp == p.x.h && a.wp == p.x.w;
    float* xpad = scratch(xsize + P * coutp + dy.scratch_floats());
    float* dyT = xpad + xsize;
    float* tmp = dyT + P * coutp;
    zero_lane_padding(dyT, P, C_out, coutp);
    if (!in_place) pad_planes_zero(xpad, a);
    for (int64_t n = begin; n < end; ++n) {
      if (n + 1 < end) {
        prefetch_floats(x + (n + 1) * xs, xs);
        dy.prefetch(n + 1);
      }
      if (!in_place) pad_image_rows(xpad, x + n * xs, p, a);
      const float* dy_n = dy.image(n, tmp);
      transpose_to_lanes(dyT, dy_n, C_out, P, coutp, kt.channel_lanes.transpose, kt.lanes);
      kt.channel_lanes.bwd_weights(acc, dyT, in_place ? x + n * xs : xpad, a);
      if (db != nullptr) sum_rows_into(dbp, dy_n, C_out, P);
    }
  });
  float* ws = sums.ws;
  const int parts = sums.parts;
  if (parts * K * coutp <= kSerialPartSumFloats) {
    // Small sums (lenet.conv2: 4 x 2,400) on the caller, as contiguous vector adds into part
    // 0's rows in part order (0 + p0 + p1 + ..., the same floats as the threaded loop below):
    // cheaper than a second parallel_for's hand-over.
    for (int64_t i = 0; i < K * coutp; ++i) ws[i] = 0.0f + ws[i];
    for (int part = 1; part < parts; ++part) {
      const float* src = ws + part * per_part;
      for (int64_t i = 0; i < K * coutp; ++i) ws[i] += src[i];
    }
    for (int64_t co = 0; co < C_out; ++co)
      for (int64_t r = 0; r < K; ++r) dw[co * K + r] = ws[r * coutp + co];
    if (db != nullptr) sums.sum_into(db, K * coutp, C_out);
    return;
  }
  parallel_for(C_out, [&](int64_t c0, int64_t c1, int) {  // threaded, each in part order
    for (int64_t co = c0; co < c1; ++co)
      for (int64_t r = 0; r < K; ++r) {
        float s = 0.0f;
        for (int part = 0; part < parts; ++part) s += ws[part * per_part + r * coutp + co];
        dw[co * K + r] = s;
      }
  });
  if (db != nullptr) sums.sum_into(db, K * coutp, C_out);
}

// bwd_weights with (kx, ci) in lanes (conv2d_bww_cl.inl), stride 1, dilation 1, groups 1: per
// image x is zero-padded into channels-last rows, so the KW*C_in inputs of one kernel row at one
// output pixel are contiguous; fixed ranges of samples (parallel_for_parts), each with its own
// (C_out x KH x lp) + C_out partial sums (flat lanes: C_out x lp; rows Winograd: kRowsPoints (row
// triples: kRows3Points) x C_out x lp), added in a fixed order and un-permuted into (co, ci, ky, kx) at the end.
// Workspace: parts * (those + C_out) floats; per thread one channels-last padded image
// (hp*wp*C_in + lanes floats) and for the rows Winograd its transformed image and dy.
namespace {
enum class TapLanes { per_row, flat, rows_winograd, rows3_winograd };

void run_bwd_weights_tap_lanes(float* dw, float* db, const DySource& dy, const float* x,
                               const Conv2dParams& p, const KernelTable& kt, TapLanes layout) {
  const int lanes = kt.lanes;
  const bool flat = layout == TapLanes::flat, rows3 = layout == TapLanes::rows3_winograd;
  const bool rows = layout == TapLanes::rows_winograd || rows3;
  const int points = rows3 ? kRows3Points : kRowsPoints;
  const DirectConvArgs a = direct_args(p);
  const int64_t xs = p.x.c * p.x.h * p.x.w;
  const int64_t C_out = p.y.c, C_in = p.x.c, P = p.y.h * p.y.w;
  const int64_t L = a.kw * C_in;
  // lanes: per row and rows Winograd (kx, ci), flat (ky, kx, ci)
  const int64_t lp = round_up(flat ? a.kh * L : L, lanes);
  // where (co, ky, 0, 0) sits in acc: per-row layout (co, ky, lp), flat layout (co, ky*L); the
  // rows Winograd's point j of channel co at (j*C_out + co)*lp
  const int64_t co_stride = flat || rows ? lp : a.kh * lp, ky_stride = flat ? L : lp;
  const int64_t sums = rows ? points * C_out * lp : C_out * co_stride;
  const int64_t per_part = sums + C_out;
  // The rows Winograd's images go in groups whose point sums run as one GEMM: at least ~128
  // pixel pairs between a tile's loads and stores of acc, at most 4 images (PERF_LOG round 18).
  const int64_t pairs = (rows3 ? (a.oh + 2) / 3 : a.oh / 2) * a.ow;  // GEMM rows of an image
  // Row triples: ~180 rows (cnn1.conv2: 3 images of 70; 2 of them: 1.01x CPU time, PERF_LOG round 25).
  const int64_t min_rows = rows3 ? 180 : 128;
  const int64_t group =
      rows ? std::min<int64_t>(4, std::max<int64_t>(1, (min_rows + pairs - 1) / pairs)) : 1;
  const int64_t work = rows3  ? rows3_winograd_work_floats(a, lanes, group)
                       : rows ? rows_winograd_work_floats(a, lanes, group)
                              : 0;
  const int64_t image_floats = xs + C_out * P;  // an image's x and dy
  const bool trickle = rows && (work + per_part + group * image_floats) * int64_t(sizeof(float)) <=
                                   kL2Bytes / 2;
  const PartSums parts_sums = accumulate_parts(p.x.n, per_part, [&](float* acc, int64_t begin,
                                                                    int64_t end) {
    float* dbp = acc + sums;
    const int64_t xsize = a.hp * a.wp * C_in + lanes;
    float* xcl = scratch(xsize + work + dy.scratch_floats());
    float* wk = xcl + xsize;
    float* tmp = wk + work;
    // Images come from L3 in training. Where a group's working set and the next group fit in
    // half of L2 (cnn1.conv2: ~320 KB), the rows Winograd prefetches the part's first group here
    // and each next group a few lines per tile behind the group's point GEMMs (the whole next
    // image at once before each image's transforms stalled the core on full miss buffers, and
    // left a group's later images a transform's time to arrive: 0.98x CPU time); otherwise
    // (keras.conv2: 1 MB of point sums alone; the group's prefetch there cost 2-5%) and for the
    // other layouts, the next image before each image.
    const auto next_images = [&](int64_t n0, int64_t n1) {
      PrefetchSpans s;
      n1 = std::min(n1, end);
      if (n0 >= n1) return s;
      s.p[0] = x + n0 * xs;
      s.floats[0] = (n1 - n0) * xs;
      s.p[1] = dy.span(n0, n1, &s.floats[1]);
      return s;
    };
    if (trickle) {
      const PrefetchSpans first = next_images(begin, begin + group);
      for (int r = 0; r < 2; ++r) prefetch_floats(first.p[r], first.floats[r]);
    }
    // The border (and the tail the last lanes read) zeroed once; per image the ISA's kernel
    // transposes the interior in (cnn1.conv2 ~2% faster than a fill per image).
    std::fill(xcl, xcl + xsize, 0.0f);
    for (int64_t n = begin; n < end; ++n) {
      if (!trickle && n + 1 < end) {  // the next image from L3 behind this one's tiles
        prefetch_floats(x + (n + 1) * xs, xs);
        dy.prefetch(n + 1);
      }
      kt.channel_lanes.pad_channels_last(xcl, x + n * xs, p.x.h, p.x.w, C_in, p.pad.top, p.pad.left, a.wp);
      const float* dy_n = dy.image(n, tmp);
      if (rows) {
        const int64_t g0 = begin + (n - begin) / group * group;  // this image's group
        const int64_t images = std::min(group, end - g0);
        const PrefetchSpans next =  // behind the GEMMs that the group's last image runs
            trickle && n + 1 == g0 + images ? next_images(g0 + images, g0 + images + group)
                                            : PrefetchSpans{};
        (rows3 ? kt.channel_lanes.bwd_weights_rows3 : kt.channel_lanes.bwd_weights_rows)(
            acc, dy_n, xcl, a, lp, wk, n - g0, images, next);
      } else {
        kt.channel_lanes.bwd_weights_taps(acc, dy_n, xcl, a, lp, flat);
      }
      if (db != nullptr) sum_rows_into(dbp, dy_n, C_out, P);
    }
  });
  const float* ws = parts_sums.ws;
  const int parts = parts_sums.parts;
  const auto part_sum = [&](int64_t i) {  // each sum added in part order
    float s = 0.0f;
    for (int part = 0; part < parts; ++part) s += ws[part * per_part + i];
    return s;
  };
  // Threaded over output channels, reading the parts' rows in order (a serial, ci-strided loop
  // here was ~8% of keras.conv2's call at 2 threads).
  parallel_for(C_out, [&](int64_t c0, int64_t c1, int) {
    float* m = rows ? scratch(points * L) : nullptr;  // one channel's point sums
    for (int64_t co = c0; co < c1; ++co) {
      if (rows) {
        // the channel's point sums over the parts, in part order, as contiguous vector adds
        for (int j = 0; j < points; ++j) {
          const float* src = ws + (j * C_out + co) * lp;
          float* mj = m + j * L;
          std::copy(src, src + L, mj);
          for (int part = 1; part < parts; ++part)
            for (int64_t i = 0; i < L; ++i) mj[i] += src[part * per_part + i];
        }
        if (rows3) {  // the output transforms of F(3, 3) (ky 0..2) and F(2, 3) (3..4), in double
          for (int64_t kx = 0; kx < a.kw; ++kx)
            for (int64_t ci = 0; ci < C_in; ++ci) {
              double mi[kRows3Points];
              for (int j = 0; j < kRows3Points; ++j) mi[j] = m[j * L + kx * C_in + ci];
              float* d = dw + (co * C_in + ci) * a.kh * a.kw + kx;
              d[0] = float((mi[0] + mi[1]) / 2 + (mi[2] + mi[3]) / 6);
              d[a.kw] = float(mi[1] / 2 - mi[2] / 6 + mi[3] / 3);
              d[2 * a.kw] = float(mi[1] / 2 + mi[2] / 6 + 2 * mi[3] / 3 + mi[4]);
              d[3 * a.kw] = float(mi[5] + (mi[6] + mi[7]) / 2);
              d[4 * a.kw] = float((mi[6] - mi[7]) / 2 + mi[8]);
            }
          continue;
        }
        // the output transforms (winograd.h AWT for ky 0..2; F(2, 2) for 3..4), in double
        for (int64_t kx = 0; kx < a.kw; ++kx)
          for (int64_t ci = 0; ci < C_in; ++ci) {
            double mi[kRowsPoints];
            for (int j = 0; j < kRowsPoints; ++j) mi[j] = m[j * L + kx * C_in + ci];
            float* d = dw + (co * C_in + ci) * a.kh * a.kw + kx;
            d[0] = float(mi[0] + mi[1] + mi[2]);
            d[a.kw] = float(mi[1] - mi[2]);
            d[2 * a.kw] = float(mi[1] + mi[2] - mi[3]);
            d[3 * a.kw] = float(mi[4] + mi[5]);
            d[4 * a.kw] = float(mi[5] + mi[6]);
          }
        continue;
      }
      for (int64_t ky = 0; ky < a.kh; ++ky) {
        for (int64_t kx = 0; kx < a.kw; ++kx) {
          const int64_t src = co * co_stride + ky * ky_stride + kx * C_in;
          float* d = dw + (co * C_in * a.kh + ky) * a.kw + kx;
          for (int64_t ci = 0; ci < C_in; ++ci) d[ci * a.kh * a.kw] = part_sum(src + ci);
        }
      }
    }
  });
  if (db != nullptr) parts_sums.sum_into(db, sums, C_out);
}
}  // namespace

void bwd_weights_tap_lanes(float* dw, float* db, const DySource& dy, const float* x,
                           const Conv2dParams& p, const KernelTable& kt) {
  run_bwd_weights_tap_lanes(dw, db, dy, x, p, kt, TapLanes::per_row);
}

void bwd_weights_tap_lanes_flat(float* dw, float* db, const DySource& dy, const float* x,
                                const Conv2dParams& p, const KernelTable& kt) {
  run_bwd_weights_tap_lanes(dw, db, dy, x, p, kt, TapLanes::flat);
}

void bwd_weights_winograd_rows(float* dw, float* db, const DySource& dy, const float* x,
                               const Conv2dParams& p, const KernelTable& kt) {
  run_bwd_weights_tap_lanes(dw, db, dy, x, p, kt, TapLanes::rows_winograd);
}

void bwd_weights_winograd_rows3(float* dw, float* db, const DySource& dy, const float* x,
                                const Conv2dParams& p, const KernelTable& kt) {
  run_bwd_weights_tap_lanes(dw, db, dy, x, p, kt, TapLanes::rows3_winograd);
}

}  // namespace cpu
}  // namespace fastconv
