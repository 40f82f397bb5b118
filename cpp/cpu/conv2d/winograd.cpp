// winograd.cpp — the Winograd drivers (groups 1, stride 1, dilation 1, AVX-512 kernels):
// F(2x2, 3x3) and F(2x2, 5x5) forward and bwd_data with the output channels in the lanes
// (conv2d_winograd.inl: many channels) or the tiles in the lanes (conv2d_winograd_tiles.inl: few
// channels), n^2 products per 2x2 output tile and channel pair instead of 4 r^2 (3x3: 16 vs 36,
// 5x5: 36 vs 100); bwd_data also as the forward's transpose (run_transposed); the 3x3 weight
// gradient by F(3x3, 2x2) (conv2d_winograd_bww.inl). The weight transforms run in double and
// round once (fastconv/winograd.h).
#include <algorithm>
#include <vector>

#include "drivers.h"
#include "fastconv/parallel.h"
#include "fastconv/winograd.h"
#include "fastconv/winograd_rows.h"

namespace fastconv {
namespace cpu {
namespace {

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
// Wy: the transform down the columns (ky, point row i; n_y points): Winograd<K>'s, or
// WinogradRows<4, 5>'s for the 4x2 tiles (u[((n*i + j)*R + r)*lanes_p + l], i < n_y).
template <int K, class Wy = Winograd<K>, class Weight>
float* pack_winograd_weights(int64_t R, int64_t lanes_p, int64_t L, Weight&& weight) {
  using Wm = Winograd<K>;
  constexpr int n = Wm::n, ny = Wy::n;
  float* u = caller_workspace(ny * n * R * lanes_p);
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
      for (int i = 0; i < ny; ++i)  // G t
        for (int j = 0; j < n; ++j) {
          std::fill(row, row + L, 0.0);
          for (int ky = 0; ky < K; ++ky)
            add_scaled_row(row, Wy::G[i][ky], t + (ky * n + j) * L, L);
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
enum class WinogradLayout { channels, tiles, tiles_4x2 };

template <class Weight>
void run_winograd(WinogradLayout layout, const ImageSink& out, const DySource& src,
                  const float* bias, bool relu, int64_t n_images, int64_t L, ClConvArgs a,
                  Weight&& weight, const KernelTable& kt) {
  if (layout == WinogradLayout::channels) {
    const float* u = pack_winograd_weights(a.kh, a.cin, a.coutp, L, weight);
    run_cl_images(out, src, bias, relu, n_images, L, a, winograd_work_floats(a),
                  kt.channel_lanes.unpack, [&](float* ycl, const float* xpad, float* work) {
                    kt.winograd.fwd_channels(ycl, xpad, u, work, a);
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
  if (layout == WinogradLayout::tiles_4x2) {  // kh = 5; planes with zero rows below
    a.plane = t.plane = winograd_tiles_4x2_rows(a.oh) * a.wp;
    const float* u = pack_winograd_weights<5, WinogradRows<4, 5>>(a.cin, t.coutp, L, weight);
    run_padded_images(out, src, n_images, a, winograd_tiles_4x2_work_floats(t),
                      [&](float* dst, const float* xpad, float* work) {
                        kt.winograd.fwd_tiles_4x2(dst, xpad, u, bias, relu, work, t);
                      },
                      /*reads_in_bounds=*/false, /*prefetch_next=*/true);
    return;
  }
  const float* u = pack_winograd_weights(a.kh, a.cin, t.coutp, L, weight);
  run_padded_images(out, src, n_images, a, winograd_tiles_work_floats(t),
                    [&](float* dst, const float* xpad, float* work) {
                      kt.winograd.fwd_tiles(dst, xpad, u, bias, relu, work, t);
                    },
                    /*reads_in_bounds=*/false, /*prefetch_next=*/true);
}

void run_fwd_winograd(WinogradLayout layout, const ImageSink& out, const float* x, const float* w,
                      const float* b, const Conv2dParams& p, bool relu, const KernelTable& kt) {
  const ClConvArgs a = fwd_cl_args(p, kt);
  run_winograd(layout, out, DySource::plain(x, a.cin, a.h, a.w), b, relu, p.x.n, p.y.c, a,
               fwd_weight(w, a), kt);
}

void run_bwd_data_winograd(WinogradLayout layout, float* dx, const DySource& dy, const float* w,
                           const Conv2dParams& p, const KernelTable& kt) {
  const ClConvArgs a = bwd_data_cl_args(p, kt);
  run_winograd(layout, ImageSink::plain(dx, p.x.c, p.x.h, p.x.w), dy, nullptr, false, p.x.n,
               p.x.c, a, bwd_data_weight(w, a, p.x.c), kt);
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

}  // namespace

void fwd_winograd_channels(const ImageSink& out, const float* x, const float* w, const float* b,
                           const Conv2dParams& p, bool relu, const KernelTable& kt) {
  run_fwd_winograd(WinogradLayout::channels, out, x, w, b, p, relu, kt);
}

void fwd_winograd_tiles(const ImageSink& out, const float* x, const float* w, const float* b,
                        const Conv2dParams& p, bool relu, const KernelTable& kt) {
  run_fwd_winograd(WinogradLayout::tiles, out, x, w, b, p, relu, kt);
}

void fwd_winograd_tiles_4x2(const ImageSink& out, const float* x, const float* w, const float* b,
                            const Conv2dParams& p, bool relu, const KernelTable& kt) {
  run_fwd_winograd(WinogradLayout::tiles_4x2, out, x, w, b, p, relu, kt);
}

// F(2, 5) along the rows for one input channel (conv2d_winograd_one_plane.inl):
// u[(co*5 + ky)*6 + p] = (G g_ky)[p], in double and rounded once, zero for the 8 channels past cout (the kernel's
// channel blocks read them).
void fwd_winograd_one_plane(const ImageSink& out, const float* x, const float* w, const float* b,
                       const Conv2dParams& p, bool relu, const KernelTable& kt) {
  const ClConvArgs a = fwd_cl_args(p, kt);
  using Wm = Winograd<5>;
  const int64_t cout = p.y.c, coutp = cout + 8;
  float* u = caller_workspace(coutp * 5 * 6);
  std::fill(u, u + coutp * 5 * 6, 0.0f);
  for (int64_t co = 0; co < cout; ++co)
    for (int ky = 0; ky < 5; ++ky)
      for (int pt = 0; pt < 6; ++pt) {
        double s = 0.0;
        for (int kx = 0; kx < 5; ++kx) s += Wm::G[pt][kx] * double(w[(co * 5 + ky) * 5 + kx]);
        u[(co * 5 + ky) * 6 + pt] = float(s);
      }
  WinogradTilesArgs t{};
  t.cin = 1;
  t.cout = cout;
  t.coutp = coutp;
  t.kh = 5;
  t.wp = a.wp;
  t.plane = a.plane;
  t.oh = a.oh;
  t.ow = a.ow;
  const auto kernel = [&](float* dst, const float* xpad, float* work) {
    kt.winograd.fwd_one_plane(dst, xpad, u, b, relu, work, t);
  };
  run_padded_images(out, DySource::plain(x, 1, a.h, a.w), p.x.n, a,
                    winograd_one_plane_work_floats(t), kernel);
}

// bwd_data as the forward of dy padded by k-1-pad with flipped weights (either layout).
void bwd_data_winograd_channels(float* dx, const DySource& dy, const float* w,
                                const Conv2dParams& p, const KernelTable& kt) {
  run_bwd_data_winograd(WinogradLayout::channels, dx, dy, w, p, kt);
}

void bwd_data_winograd_tiles(float* dx, const DySource& dy, const float* w, const Conv2dParams& p,
                             const KernelTable& kt) {
  run_bwd_data_winograd(WinogradLayout::tiles, dx, dy, w, p, kt);
}

void bwd_data_winograd_tiles_4x2(float* dx, const DySource& dy, const float* w,
                                 const Conv2dParams& p, const KernelTable& kt) {
  run_bwd_data_winograd(WinogradLayout::tiles_4x2, dx, dy, w, p, kt);
}

// bwd_data by the forward's adjoint (WinogradBwdDataFn): per image the kernel adds the dx of the
// layer-padded image into channels-last scratch, whose interior is unpacked into dx's planes.
void bwd_data_winograd_transposed(float* dx, const DySource& dy, const float* w,
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
      kt.winograd.bwd_data_transposed(dxcl, dy.image(n, dy_tmp), u, work, a);
      unpack_channels_last(dx + n * xs, dxcl + a.top * a.wp * a.coutp, p.x.c, p.x.h, p.x.w, a.wp,
                           a.left, a.coutp, nullptr, false);
    }
  });
}

// --- 3x3 weight gradient by Winograd F(3x3, 2x2) (conv2d_winograd_bww.inl) -----------------------
// The 3x3 layers the channels-in-lanes Winograd forward takes (>= 16 input channels, output
// channels filling >= 85% of the lanes): vgg.*, fashion.conv2 (1 thread: vgg.a 9.5 -> 6.6 ms,
// vgg.b 9.5 -> 5.5, fashion.conv2 1.12 -> 0.98). Fixed ranges of samples
// (parallel_for_parts) accumulate n^2 x C_in x coutp transformed-domain sums (+ C_out bias sums),
// added in a fixed order, then dW = A_W^T (.) A_W in double. Workspace: parts * (n^2 * C_in *
// coutp + C_out) floats; per thread the padded image, dy as (pixels, coutp) and the block's
// transforms (winograd_bww_work_floats).
void bwd_weights_winograd_channels(float* dw, float* db, const DySource& dy, const float* x,
                                   const Conv2dParams& p, const KernelTable& kt) {
  const ClConvArgs a = fwd_cl_args(p, kt);
  const DirectConvArgs d = direct_args(p);
  const int64_t xs = p.x.c * p.x.h * p.x.w;
  const int64_t C_out = p.y.c, C_in = p.x.c, P = p.y.h * p.y.w, n = a.kh + 1;
  const int64_t sums = n * n * C_in * a.coutp, per_part = sums + C_out;
  const bool next_fits = (xs + C_out * P) * int64_t(sizeof(float)) <= kL2Bytes / 4;
  const PartSums parts = accumulate_parts(p.x.n, per_part, [&](float* acc, int64_t begin,
                                                                int64_t end) {
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
      transpose_to_lanes(dyT, dy_n, C_out, P, a.coutp, kt.channel_lanes.transpose, kt.lanes);
      // The next image from L3 a few lines per point tile where it is small beside L2
      // (fashion.conv2: 75 KB; 0.91x CPU time on inputs from L3; one prefetch burst for the
      // whole image before its transforms gained nothing); vgg's 1.6 MB images are not.
      PrefetchSpans next;
      if (n_ + 1 < end && next_fits) {
        next.p[0] = x + (n_ + 1) * xs;
        next.floats[0] = xs;
        next.p[1] = dy.span(n_ + 1, n_ + 2, &next.floats[1]);
      }
      kt.winograd.bwd_weights(acc, xpad, dyT, work, a, next);
      if (db != nullptr) sum_rows_into(dbp, dy_n, C_out, P);
    }
  });
  winograd_weights_from_sums<3>(dw, parts.ws, per_part, parts.parts, C_out, C_in, a.coutp);
  if (db != nullptr) parts.sum_into(db, sums, C_out);
}

}  // namespace cpu
}  // namespace fastconv
