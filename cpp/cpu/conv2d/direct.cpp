// direct.cpp — the direct (no im2col) drivers with pixels in the lanes (conv2d_direct.inl), for
// groups 1, stride 1, dilation 1: the forward over zero-bordered planes or, for few input
// channels, over shifted planes; bwd_data as the forward of the padded dy; the weight gradient
// with per-lane partial sums over shifted planes.
#include <algorithm>
#include <cstring>

#include "drivers.h"
#include "fastconv/parallel.h"

namespace fastconv {
namespace cpu {
namespace {

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

// The forward over zero-bordered planes (fn) or, shifted, over the image's shifted planes.
void run_fwd_direct(const ImageSink& out, const float* x, const float* w, const float* b,
                    const Conv2dParams& p, bool relu, const KernelTable& kt, bool shifted) {
  const DirectConvArgs a = direct_args(p);
  const int64_t rows = a.cin * a.kh * a.kw;
  const float* wt =
      pack_direct_weights(a, [&](int64_t co, int64_t r) { return w[co * rows + r]; });
  const int64_t xs = p.x.c * p.x.h * p.x.w;
  const int64_t in_size = shifted ? shifted_planes_size(a) : xpad_size(a);
  parallel_for(p.x.n, [&](int64_t begin, int64_t end, int) {
    float* xin = scratch(in_size + out.scratch_floats());
    float* tmp = xin + in_size;
    if (shifted)
      shifted_planes_zero(xin, a);
    else
      pad_planes_zero(xin, a);
    for (int64_t n = begin; n < end; ++n) {
      float* dst = out.target(n, tmp);
      if (shifted) {
        shifted_planes(xin, x + n * xs, p, a, kt.direct.shift_planes);
        kt.direct.fwd_shifted(dst, xin, wt, b, relu, a);
      } else {
        pad_image_rows(xin, x + n * xs, p, a);
        kt.direct.fwd(dst, xin, wt, b, relu, a);
      }
      out.finish(n, dst);
    }
  });
}

}  // namespace

void fwd_direct(const ImageSink& out, const float* x, const float* w, const float* b,
                const Conv2dParams& p, bool relu, const KernelTable& kt) {
  run_fwd_direct(out, x, w, b, p, relu, kt, false);
}

void fwd_direct_shifted(const ImageSink& out, const float* x, const float* w, const float* b,
                        const Conv2dParams& p, bool relu, const KernelTable& kt) {
  run_fwd_direct(out, x, w, b, p, relu, kt, true);
}

// bwd_data of a stride-1, dilation-1 conv is a stride-1 conv of dy zero-padded by (k-1-pad) with
// the flipped, in/out-transposed weights: dx[ci][iy][ix] = sum_{co,ky,kx} dyp[co][iy+ky][ix+kx] *
// w[co][ci][KH-1-ky][KW-1-kx]. Same kernel, same threading (images), no col2im.
void bwd_data_direct(float* dx, const DySource& dy, const float* w, const Conv2dParams& p,
                     const KernelTable& kt) {
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
      kt.direct.fwd(dx + n * xs, dypad, wt, nullptr, false, a);
    }
  });
}

// Each part (accumulate_parts) holds per-lane partial sums of every weight and bias; the parts,
// then the lanes, are summed in a fixed order. Workspace: parts * C_out * (C_in*KH*KW + 1) * lanes
// floats.
void bwd_weights_direct(float* dw, float* db, const DySource& dy, const float* x,
                        const Conv2dParams& p, const KernelTable& kt) {
  const int lanes = kt.lanes;
  const DirectConvArgs a = direct_args(p);
  const int64_t xs = p.x.c * p.x.h * p.x.w;
  const int64_t K = p.reduction(), C_out = p.y.c;
  const int64_t per_part = C_out * (K + 1) * lanes;
  const PartSums sums = accumulate_parts(p.x.n, per_part, [&](float* acc, int64_t begin,
                                                               int64_t end) {
    float* dbacc = db != nullptr ? acc + C_out * K * lanes : nullptr;
    float* xsh = scratch(shifted_planes_size(a) + dy.scratch_floats());
    float* tmp = xsh + shifted_planes_size(a);
    shifted_planes_zero(xsh, a);
    for (int64_t n = begin; n < end; ++n) {
      shifted_planes(xsh, x + n * xs, p, a, kt.direct.shift_planes);
      kt.direct.bwd_weights(acc, dbacc, dy.image(n, tmp), xsh, a);
    }
  });
  const float* ws = sums.ws;
  const int parts = sums.parts;
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

}  // namespace cpu
}  // namespace fastconv
