// cpu_kernels.h — the CPU kernel table: one entry per ISA (portable, AVX2, AVX-512), picked at run
// time by cpu_dispatch.cpp. Each ISA lives in its own translation unit compiled with its own flags,
// with every internal symbol file-local, so an AVX2 copy of a helper can never be linked into the
// portable path. Drivers (im2col, threading, pooling loops) are compiled once, for the baseline.
#pragma once

#include <cstdint>

namespace fastconv {
namespace cpu {

// One single-threaded GEMM: C(M x N) = [C +] A(M x K) * B(K x N), then optionally + bias[i] per
// row and max(0, .). A's element (i, k) is a[i*rs_a + k*cs_a]; B's (k, j) is b[k*rs_b + j*cs_b];
// C is row-major with leading dimension ldc. Strided operands let callers pass transposes free.
struct GemmArgs {
  int64_t m, n, k;
  const float* a;
  int64_t rs_a, cs_a;
  const float* b;
  int64_t rs_b, cs_b;
  float* c;
  int64_t ldc;
  bool accumulate;     // C += A*B instead of C = A*B
  const float* bias;   // nullptr or M values added to each row (applied after the full sum)
  bool relu;           // clamp at 0 after bias
};

using SgemmFn = void (*)(const GemmArgs&);

// The same GEMM on operands the caller packed already (no copies inside): A as ceil(m/MR) slivers
// of k x MR floats (element (i, kk) at pa[(i/MR)*k*MR + kk*MR + i%MR], rows past m zero) and B as
// ceil(n/NR) slivers of k x NR (element (kk, j) at pb[(j/NR)*k*NR + kk*NR + j%NR], columns past n
// zero). The conv drivers pack the weights once per call and im2col straight into B's layout.
struct PackedGemmArgs {
  int64_t m, n, k;
  const float* pa;
  const float* pb;
  float* c;
  int64_t ldc;
  bool accumulate;
  const float* bias;
  bool relu;
};
using PackedSgemmFn = void (*)(const PackedGemmArgs&);

// Max-pool 2x2, stride 2, no padding, over `planes` consecutive (H, W) planes of x: y and idx are
// (planes, OH, OW) with OH = H/2, OW = W/2 (floor). Same rule as the generic loop: window order
// row-major, a later element wins if strictly greater or NaN over a number; idx = h*W + w.
using MaxPool2x2Fn = void (*)(float* y, int64_t* idx, const float* x, int64_t H, int64_t W,
                              int64_t OH, int64_t OW, int64_t planes);

// Max-pool 2x2/2 (floor) of ReLU outputs with one-byte window codes instead of indices, over
// `planes` planes: y as above; codes[o] = the winner's cell in its window (row*2 + column, same
// winner rule), + 4 where y[o] is not > 0, i.e. where the ReLU before passes no gradient.
using MaxPool2x2CodesFn = void (*)(float* y, uint8_t* codes, const float* x, int64_t H,
                                   int64_t W, int64_t OH, int64_t OW, int64_t planes);
// Its backward over `planes` planes: dx (H, W) <- dy[o] at the winner of each window whose code
// is < 4, +0 everywhere else (also the floor-mode remainder). Returns false if some code is >= 8
// (dx is then fully written but meaningless; the caller raises).
using Unpool2x2CodesFn = bool (*)(float* dx, const float* dy, const uint8_t* codes, int64_t H,
                                  int64_t W, int64_t OH, int64_t OW, int64_t planes);

// Max-pool backward over `planes` consecutive planes whose windows are the disjoint 2x2 tiles
// (H/OH == W/OW == 2, W < 2^30): dx (H, W) <- dy (OH, OW) written in one pass, the winner idx[o] of
// each tile gets dy[o], every other cell (also the floor-mode remainder row/column) +0. Returns
// false, with dx written but meaningless, if some idx[o] is not inside its own tile; the caller
// then runs the general (validating) scatter on those planes.
using MaxPool2x2BwdFn = bool (*)(float* dx, const float* dy, const int64_t* idx, int64_t H,
                                 int64_t W, int64_t OH, int64_t OW, int64_t planes);

// Direct (no im2col) convolution of ONE image, stride 1, dilation 1, groups 1, for small C_in.
// The input arrives zero-padded: C_in planes of `hp` rows x `wp` columns (wp = W + pad_l + pad_r),
// followed by kDirectSlackRows * wp + kDirectSlack readable floats (zeros) past the last plane.
struct DirectConvArgs {
  int64_t cin, cout, kh, kw;
  int64_t hp, wp;  // padded input plane (rows, row pitch)
  int64_t plane;   // floats between consecutive padded input planes (hp * wp)
  int64_t oh, ow;  // output plane (= hp - kh + 1, wp - kw + 1)
  int64_t cb;      // fwd only: output-channel block of the packed weights (1, 4, 5 or 6)
};
// y (cout, oh, ow) = conv(xpad, w) [+ bias] [ReLU], with the weights packed by the caller in
// blocks of cb output channels: wt[((co/cb)*cin*kh*kw + (ci*kh + ky)*kw + kx)*cb + co%cb]
// (channels past cout zero; the driver picks cb in {1, 4, 5, 6}, see conv2d/support.cpp). The driver
// uses the same kernel for bwd_data of a stride-1 conv (dy padded by k-1-pad, flipped and in/out
// transposed weights).
using DirectFwdFn = void (*)(float* y, const float* xpad, const float* w, const float* bias,
                             bool relu, const DirectConvArgs& a);
// acc (cout, cin*kh*kw, lanes) += per-lane partial sums of dy (cout, oh, ow) x patches of the
// padded input, given as xs: per (ci, kx) the padded plane shifted left by kx with row pitch ow,
// xs[((ci*kw + kx)*hp + r)*ow + ox] = xpad[ci][r][ox + kx]; dbacc (cout, lanes) += per-lane sums
// of dy (skipped when nullptr). The caller zeroes acc/dbacc once, feeds every image of its chunk,
// then sums the lanes in a fixed order.
using DirectBwdWeightsFn = void (*)(float* acc, float* dbacc, const float* dy, const float* xs,
                                    const DirectConvArgs& a);

// Large-C_in bwd_weights of ONE image, output channels in lanes: acc (cin*kh*kw, coutp) += dW^T,
// coutp = cout rounded up to direct_lanes; dyT is the image's dy transposed to (oh*ow, coutp)
// with zeros past cout. Full dot products per element: the caller sums the per-thread parts.
using DirectBwdWeightsTFn = void (*)(float* acc, const float* dyT, const float* xpad,
                                     const DirectConvArgs& a);

// bwd_weights of ONE image with (kx, ci) in lanes (conv2d_bww_cl.inl): xcl is the image padded
// and channels-last, xcl[(row*wp + col)*cin + ci], followed by at least direct_lanes readable
// floats; acc (cout, kh, lp) += dW with acc[(co*kh + ky)*lp + kx*cin + ci], lp = kw*cin rounded
// up to direct_lanes (lanes past kw*cin hold junk). flat (needs kw*cin >= direct_lanes): the lanes
// run over (ky, kx, ci) instead, acc (cout, lp) with acc[co*lp + ky*kw*cin + kx*cin + ci],
// lp = kh*kw*cin rounded up. The caller sums its threads' acc.
using DirectBwdWeightsClFn = void (*)(float* acc, const float* dy, const float* xcl,
                                      const DirectConvArgs& a, int64_t lp, bool flat);

// Memory a kernel should pull into the caches a few lines at a time between its tiles: the next
// images of a per-image driver, which come from L3 in training. Up to two ranges (x, dy); a
// burst of prefetches for whole images stalls the core once the miss buffers are full.
struct PrefetchSpans {
  const float* p[2] = {nullptr, nullptr};
  int64_t floats[2] = {0, 0};
};
// The kernels issue them through prefetch_trickle.inl.

// bwd_weights of a kernel 5 rows high with a 1-D Winograd transform over pairs of output rows
// (conv2d_bww_rows.inl: F(3, 2) for ky 0..2, F(2, 2) for ky 3..4, kRowsPoints points), (kx, ci) in
// the lanes; needs an even oh. Images go in groups: image `slot` (0 <= slot < images) of a group
// of `images` is transformed into work; the call for the group's last image adds the group's
// point sums into acc (kRowsPoints, cout, lp), acc[(j*cout + co)*lp + kx*cin + ci], lp = kw*cin
// rounded up to the lanes (lanes past kw*cin hold junk). xcl as for DirectBwdWeightsClFn; work:
// rows_winograd_work_floats(a, lanes, images) floats, kept between the group's calls. The caller
// sums its threads' acc and applies the output transforms. next: prefetched behind the group's
// point GEMMs (the driver's next group of images).
constexpr int kRowsPoints = 7, kRowsDyBlocks = 4;
inline int64_t rows_winograd_work_floats(const DirectConvArgs& a, int64_t lanes, int64_t images) {
  return images * (kRowsPoints * (a.oh / 2) * a.wp * a.cin + kRowsDyBlocks * a.cout * (a.oh / 2) * a.ow) +
         lanes;
}
// The same over groups of three output rows, any oh (conv2d_bww_rows3.inl: F(3, 3) for ky 0..2,
// F(2, 3) for ky 3..4, kRows3Points points; acc (kRows3Points, cout, lp)); work:
// rows3_winograd_work_floats(a, lanes, images).
constexpr int kRows3Points = 9, kRows3DyBlocks = 5;
inline int64_t rows3_winograd_work_floats(const DirectConvArgs& a, int64_t lanes, int64_t images) {
  const int64_t S = (a.oh + 2) / 3;
  return images * (kRows3Points * S * a.wp * a.cin + kRows3DyBlocks * a.cout * S * a.ow) + lanes +
         a.wp * a.cin + a.ow;
}
using BwdWeightsRowsFn = void (*)(float* acc, const float* dy, const float* xcl,
                                  const DirectConvArgs& a, int64_t lp, float* work, int64_t slot,
                                  int64_t images, const PrefetchSpans& next);

// Direct conv of ONE image with output channels in lanes (conv2d_fwd_cl.inl), stride 1,
// dilation 1: xpad holds cin zero-bordered planes of hp = oh + kh - 1 rows x wp = ow + kw - 1
// columns (pitch `plane` floats), nonzero only inside rows [top, top + h) and columns
// [left, left + w) (taps that meet only the border are skipped); wcl[((ky*cin + ci)*kw + kx)*coutp
// + co] are the packed weights, zero for co >= the real channel count. Writes ycl[(oy*ow + ox)*coutp
// + co] for every pixel and co < coutp (the caller transposes, adds bias, applies ReLU).
struct ClConvArgs {
  int64_t cin, coutp, kh, kw;
  int64_t wp, plane;          // padded input row pitch and plane pitch, in floats
  int64_t oh, ow;             // output plane
  int64_t top, left, h, w;    // the nonzero interior of xpad
  int64_t cov_max;            // 0: the kernel picks its tile; 1..4 forces the channel vectors
};
using DirectFwdClFn = void (*)(float* ycl, const float* xpad, const float* wcl,
                               const ClConvArgs& a);

// bwd_data of ONE image by scattering dy (conv2d_bwd_data_cl.inl), stride 1, dilation 1, kw 3
// or 5: dy (cout, oh, ow) NCHW as given; wb[((ky*cout + co)*kw + kx)*cinp + ci] = w[co][ci][ky][kx]
// (zero for ci past the real count); ycl (h x (ow + kw - 1) x cinp) must arrive zeroed and gets
// dx with padded columns: dx(ci, iy, ix) = ycl[(iy*(ow + kw - 1) + ix + pad_left)*cinp + ci].
struct ScatterArgs {
  int64_t cout, cinp, kh, kw;
  int64_t oh, ow;  // dy plane
  int64_t h;       // dx rows
  int64_t top;     // the layer's top padding
};
using BwdDataScatterFn = void (*)(float* ycl, const float* dy, const float* wb,
                                  const ScatterArgs& a);

// bwd_data of ONE image with dy's channels in the lanes (conv2d_bwd_data_dylanes.inl), stride 1,
// dilation 1: dyp (oh x wq x coutp) is dy channels-last with `left` zero columns before each row
// and wq - ow - left after (wq = w + kw - 1), zero past the real channels; wf[((ky*kw + kx)*cin
// + ci)*coutp + co] = w[co][ci][kh-1-ky][kw-1-kx] (zero past the real channels). Writes every
// dx(ci, y, x) = dx[(ci*h + y)*w + x]. top = kh-1-pad_top, left = kw-1-pad_left (both >= 0).
struct DyLanesArgs {
  int64_t cin, coutp, kh, kw;
  int64_t oh, ow;  // dy plane
  int64_t h, w;    // dx plane
  int64_t top, left, wq;
};
using BwdDataDyLanesFn = void (*)(float* dx, const float* dyp, const float* wf,
                                  const DyLanesArgs& a);

// bwd_data of up to image_lanes_group images at once, one per lane, kernel width 5, by a 1-D
// Winograd F(4, 5) along the rows (conv2d_bwd_data_image_lanes.inl), stride 1, dilation 1: dy[i]
// (cout planes of oh x ow) for i < the group (past `count`: a zero image), dx[i] (cin planes of
// h x w) for i < count;
// computes the dx columns of tiles [t0, t1), tile t = columns [4t, 4t + 4) (tiles = ceil(w / 4)).
// u[(((cb*8 + p)*kh + ky)*cout + co)*6 + c] = sum_kx G[p][kx] * w[co][6cb + c][kh-1-ky][4-kx]
// (fastconv/winograd_rows.h's F(4, 5); zero past cin); work: the kernel's work_floats(a).
// top = kh-1-pad_top, left = 4-pad_left (both >= 0).
struct ImageLanesArgs {
  int64_t cin, cout, kh;
  int64_t oh, ow;  // dy plane
  int64_t h, w;    // dx plane
  int64_t top, left, tiles;
};
using BwdDataImageLanesFn = void (*)(float* const* dx, const float* const* dy, int64_t count,
                                     const float* u, float* work, int64_t t0, int64_t t1,
                                     const ImageLanesArgs& a);
using ImageLanesWorkFn = int64_t (*)(const ImageLanesArgs& a);

// Winograd F(2x2, r x r) of ONE image (conv2d_winograd.inl), stride 1, dilation 1, kernel 3x3 or
// 5x5 (n = r + 1), even oh and ow: xpad and the args as for DirectFwdClFn (kh = kw = r, the border
// zero); u[(pt*cin + ci)*coutp + co] = (G g G^T)[pt] the transformed weights (fastconv/winograd.h,
// pt = n*i + j, zero past the real channels); work: winograd_work_floats(a) floats. Writes
// ycl[(oy*ow + ox)*coutp + co] for every pixel and co < coutp, like the channels-in-lanes kernel.
using WinogradFwdFn = void (*)(float* ycl, const float* xpad, const float* u, float* work,
                               const ClConvArgs& a);
// bwd_data of ONE image as the transpose of WinogradFwdFn (conv2d_winograd.inl, run_transposed):
// a is the forward's geometry with cin = the layer's output channels (dy's) and coutp = its input
// channels rounded up to the lanes; dy (cin, oh, ow) NCHW, even oh and ow; u[(pt*cin + co)*coutp
// + ci] = (G g G^T)[pt] of g = w[co][ci] (not flipped). dxcl ((oh + kh - 1) x wp x coutp) must
// arrive zeroed and gets dx of the zero-bordered image, channels-last. work:
// winograd_work_floats(a) floats.
using WinogradBwdDataFn = void (*)(float* dxcl, const float* dy, const float* u, float* work,
                                   const ClConvArgs& a);
// The channel-lane forward with a 1-D Winograd down the columns (conv2d_winograd_rows.inl): xpad
// and the args as for DirectFwdClFn (kh = kw = r, 3 or 5; even oh); u[((pt*cin + ci)*kw + kx)*coutp
// + co] = sum_ky G[pt][ky] * w[co][ci][ky][kx] (zero past the real channels) for the points of
// F(4, 5) and then of F(2, 5) (5x5), or of F(2, 3) (3x3) (fastconv/winograd_rows.h); work:
// winograd_rows_work_floats(a). Writes ycl like DirectFwdClFn. Reads no float outside the planes.
inline int64_t winograd_rows_work_floats(const ClConvArgs& a) {
  const int64_t n = a.kh + 3, vp = (a.wp + 15) / 16 * 16;
  return a.cin * n * vp + n * a.ow * a.coutp;
}

// Tile rows per block: at least 32 tiles, so each point's weights are reused across enough tiles;
// an even count when rows of <= 8 tiles are transformed two per vector.
inline int64_t winograd_block_rows(int64_t tiles_per_row) {
  const int64_t rows = tiles_per_row >= 32 ? 1 : (32 + tiles_per_row - 1) / tiles_per_row;
  return tiles_per_row <= 8 ? (rows + 1) / 2 * 2 : rows;
}
// (+ 16 floats per point: the transforms' whole-vector stores run past each point's tiles.)
inline int64_t winograd_work_floats(const ClConvArgs& a) {
  const int64_t tb = winograd_block_rows(a.ow / 2) * (a.ow / 2), n = a.kh + 1;
  return n * n * (tb * (a.cin + a.coutp) + 16);
}

// Winograd with the tiles in the lanes (conv2d_winograd_tiles.inl), for few channels: the same
// transforms and padded input as WinogradFwdFn, u with row pitch coutp >= cout + 6 (zeros past
// cout); writes y (cout, oh, ow) NCHW, + bias (nullptr: none), ReLU if relu. work:
// winograd_tiles_work_floats(a) floats.
struct WinogradTilesArgs {
  int64_t cin, cout, coutp, kh;
  int64_t cb;         // channels per point-GEMM tile, 4..6 (the direct kernels' channel block)
  int64_t wp, plane;  // padded input row pitch and plane pitch, in floats
  int64_t oh, ow;
};
using WinogradTilesFn = void (*)(float* y, const float* xpad, const float* u, const float* bias,
                                 bool relu, float* work, const WinogradTilesArgs& a);
inline int64_t winograd_tiles_work_floats(const WinogradTilesArgs& a) {
  const int64_t n = a.kh + 1;
  return n * n * 64 * (a.cin + a.cout);  // blocks of <= 4 units of 16 tiles
}
// The tiles of 4 output rows x 2 columns (F(4, 5) down the columns, F(2, 5) along the rows; kh =
// 5): 8 x 6 points. Their patches read winograd_tiles_4x2_rows(oh) rows of each padded plane (the
// layer's padding and zeros below it; a.plane = that x a.wp).
inline int64_t winograd_tiles_4x2_work_floats(const WinogradTilesArgs& a) {
  return 8 * 6 * 64 * (a.cin + a.cout);
}
inline int64_t winograd_tiles_4x2_rows(int64_t oh) {
  const int64_t tile_rows = (oh + 3) / 4;
  return 4 * ((tile_rows + 1) / 2 * 2) + 4;  // even: rows of few tiles go two to a vector
}

// Winograd F(2, 5) along the rows only (conv2d_winograd_one_plane.inl), for a 5x5 forward with
// one input channel and an even output width: a WinogradTilesFn with cin = 1 and kh = 5 whose u is
// u[(co*5 + ky)*6 + p] = (G g_ky)[p] of kernel row ky (zero for co in [cout, cout + 8)). work:
// winograd_one_plane_work_floats(a) floats.
inline int64_t winograd_one_plane_work_floats(const WinogradTilesArgs& a) {
  return 6 * ((a.plane / a.wp) * (a.ow / 2) + 64);  // per point: the tiles and a chunk's slack
}

// Weight gradient of ONE image by Winograd F(3x3, 2x2) (conv2d_winograd_bww.inl), kh = kw = 3,
// stride 1, dilation 1, even oh and ow (the dy size): xpad as for WinogradFwdFn (the
// image zero-bordered by the layer's padding), dyT the image's dy as (oh*ow, coutp), zero past the
// real channels. acc[(pt*cin + ci)*coutp + co] += the transformed-domain sums (the caller applies
// A_W^T . A_W of fastconv/winograd.h at the end). work: winograd_bww_work_floats(a) floats.
// next: prefetched a few lines per point tile (the driver's next image).
using WinogradBwwFn = void (*)(float* acc, const float* xpad, const float* dyT, float* work,
                               const ClConvArgs& a, const PrefetchSpans& next);
inline int64_t winograd_bww_work_floats(const ClConvArgs& a) {
  const int64_t tb = winograd_block_rows(a.ow / 2) * (a.ow / 2), n = a.kh + 1;
  return n * n * (tb * (a.cin + a.coutp) + 16);
}

// y[c*P + q] = ycl[q*lanes + c] (+ bias[c]) (ReLU: max(0, v), NaN kept) for c < C, q < P: a
// channels-last image of P pixels (lanes >= round_up(C, the ISA's lanes)) back to C planes.
using UnpackChannelsLastFn = void (*)(float* y, const float* ycl, int64_t C, int64_t P,
                                      int64_t lanes, const float* bias, bool relu);

// dyT[q*coutp + c] = dy[c*P + q] for c < C and q < P, zero for C <= c < round_up(C, lanes)
// (coutp >= that; lanes: the ISA's, 16 AVX-512, 8 AVX2): C planes of P pixels transposed so the
// channels ride in the lanes.
using TransposeToLanesFn = void (*)(float* dyT, const float* dy, int64_t C, int64_t P,
                                    int64_t coutp);

// The (cin, H, W) image x_n into the C_in < 4 kernels' shifted planes: per (ci, kx) the plane
// zero-padded by top/left (and a.hp/a.ow) shifted left by kx with row pitch ow,
// xs[((ci*kw + kx)*hp + r)*ow + ox] = xpad[ci][r][ox + kx]. Writes only the image's values: the
// caller zeroes the buffer once, and the zeros stay where they are for every image.
using ShiftPlanesFn = void (*)(float* xs, const float* x_n, int64_t H, int64_t W, int64_t top,
                               int64_t left, const DirectConvArgs& a);

// The (C, H, W) image x_n into a zero-bordered channels-last buffer of row pitch wp pixels:
// xcl[((iy + top)*wp + ix + left)*C + c] = x_n[(c*H + iy)*W + ix]; the border is the caller's.
using PadChannelsLastFn = void (*)(float* xcl, const float* x_n, int64_t H, int64_t W, int64_t C,
                                   int64_t top, int64_t left, int64_t wp);

// One ISA's kernels, by family; a nullptr kernel is one the ISA does not have, and the registry
// (cpu/conv2d/registry.cpp) or the pooling driver does not use it there. Filled by field name in
// cpu/<isa>/kernel_table__<isa>.cpp: a field added here stays nullptr in the tables that do not set it.
struct GemmKernels {
  SgemmFn run = nullptr;              // strided operands (matmul)
  PackedSgemmFn packed = nullptr;     // operands packed by the caller (the conv drivers)
  int mr = 0, nr = 0;                 // sliver widths of packed's A and B
};

struct PoolKernels {                  // nullptr: the generic loops
  MaxPool2x2Fn fwd_2x2s2 = nullptr;
  MaxPool2x2BwdFn bwd_2x2s2 = nullptr;             // the tile writer (else zero-fill + scatter)
  MaxPool2x2CodesFn relu_codes_2x2s2 = nullptr;    // ReLU + pool with window codes
  Unpool2x2CodesFn relu_unpool_2x2s2 = nullptr;    // its backward
  int64_t bwd_2x2s2_min_ow = 0;  // narrower rows: zero-fill + scatter (maxpool2d_bwd_uses_tiles)
};

struct DirectKernels {                // pixels in the lanes (conv2d_direct.inl)
  DirectFwdFn fwd = nullptr;                       // over zero-bordered planes
  DirectFwdFn fwd_shifted = nullptr;               // over shifted planes (few input channels)
  ShiftPlanesFn shift_planes = nullptr;            // an image into shifted planes
  DirectBwdWeightsFn bwd_weights = nullptr;        // per-lane partial sums over shifted planes
};

struct ChannelLaneKernels {           // channels in the lanes
  DirectFwdClFn fwd = nullptr;                     // output channels (conv2d_fwd_cl.inl)
  BwdDataScatterFn bwd_data_scatter = nullptr;     // dx channels, scatter (conv2d_bwd_data_cl.inl)
  BwdDataDyLanesFn bwd_data_dy_lanes = nullptr;    // dy channels (conv2d_bwd_data_dylanes.inl)
  DirectBwdWeightsTFn bwd_weights = nullptr;       // output channels
  DirectBwdWeightsClFn bwd_weights_taps = nullptr; // (kx, ci) taps (conv2d_bww_cl.inl)
  BwdWeightsRowsFn bwd_weights_rows = nullptr;    // 1-D Winograd over row pairs (conv2d_bww_rows.inl)
  BwdWeightsRowsFn bwd_weights_rows3 = nullptr;   // ... over row triples (conv2d_bww_rows3.inl)
  TransposeToLanesFn transpose = nullptr;          // dy to (pixels, channels); nullptr: a loop
  PadChannelsLastFn pad_channels_last = nullptr;   // with bwd_weights_taps
  UnpackChannelsLastFn unpack = nullptr;           // channels-last results to NCHW; nullptr: a loop
};

struct WinogradKernels {              // conv2d_winograd*.inl
  WinogradFwdFn fwd_channels = nullptr;            // F(2x2, r x r), output channels in the lanes
  WinogradTilesFn fwd_tiles = nullptr;             // the tiles in the lanes
  WinogradTilesFn fwd_tiles_4x2 = nullptr;         // the same, F(4x2, 5x5) tiles
  WinogradTilesFn fwd_one_plane = nullptr;              // F(2, 5) along the rows, C_in = 1
  WinogradBwdDataFn bwd_data_transposed = nullptr; // the forward's adjoint
  WinogradBwwFn bwd_weights = nullptr;             // F(3x3, 2x2)
  WinogradFwdFn fwd_rows = nullptr;                // 1-D F(m, r) down the columns, channel lanes
  BwdDataImageLanesFn bwd_data_image_lanes = nullptr;  // 1-D F(4, 5) along the rows, images in lanes
  ImageLanesWorkFn bwd_data_image_lanes_work = nullptr;  // its work floats
  int image_lanes_group = 0;                       // its images per call (its vector's floats)
};

struct KernelTable {
  const char* isa = nullptr;  // "portable", "avx2", "avx512"
  int lanes = 0;              // floats per vector of the direct and channel-lane kernels
  GemmKernels gemm;
  PoolKernels pool;
  DirectKernels direct;
  ChannelLaneKernels channel_lanes;
  WinogradKernels winograd;
};

// Readable zero slack the direct kernels may touch past the padded planes.
constexpr int64_t kDirectSlackRows = 4;   // extra zero rows below the last plane's rows
constexpr int64_t kDirectSlack = 64;      // extra floats past the end (also of the shifted planes)

// Defined in cpu/<isa>/kernel_table__<isa>.cpp.
const KernelTable& kernel_table__scalar();
const KernelTable& kernel_table__avx2();
const KernelTable& kernel_table__avx512();

// The GEMMs behind the tables (cpu/<isa>/sgemm__<isa>.cpp).
void sgemm__scalar(const GemmArgs& g);
void sgemm_packed__scalar(const PackedGemmArgs& g);
void sgemm__avx2(const GemmArgs& g);
void sgemm_packed__avx2(const PackedGemmArgs& g);
void sgemm__avx512(const GemmArgs& g);
void sgemm_packed__avx512(const PackedGemmArgs& g);

// The SIMD kernels behind the tables (cpu/<isa>/conv_pool__<isa>.cpp); see the typedefs above.
void conv2d_fwd_direct__avx2(float* y, const float* xpad, const float* w, const float* bias,
                             bool relu, const DirectConvArgs& a);
void conv2d_bwd_weights_direct__avx2(float* acc, float* dbacc, const float* dy,
                                     const float* xs, const DirectConvArgs& a);
void maxpool2d_fwd_2x2s2__avx2(float* y, int64_t* idx, const float* x, int64_t H, int64_t W,
                               int64_t OH, int64_t OW, int64_t planes);
void conv2d_fwd_direct__avx512(float* y, const float* xpad, const float* w, const float* bias,
                               bool relu, const DirectConvArgs& a);
void conv2d_bwd_weights_direct__avx512(float* acc, float* dbacc, const float* dy,
                                       const float* xs, const DirectConvArgs& a);
void shift_planes__avx2(float* xs, const float* x_n, int64_t H, int64_t W, int64_t top,
                        int64_t left, const DirectConvArgs& a);
void pad_channels_last__avx512(float* xcl, const float* x_n, int64_t H, int64_t W, int64_t C,
                               int64_t top, int64_t left, int64_t wp);
void shift_planes__avx512(float* xs, const float* x_n, int64_t H, int64_t W, int64_t top,
                          int64_t left, const DirectConvArgs& a);
void conv2d_fwd_direct_shifted__avx2(float* y, const float* xs, const float* w,
                                     const float* bias, bool relu, const DirectConvArgs& a);
void conv2d_fwd_direct_shifted__avx512(float* y, const float* xs, const float* w,
                                       const float* bias, bool relu, const DirectConvArgs& a);
void maxpool2d_fwd_2x2s2__avx512(float* y, int64_t* idx, const float* x, int64_t H, int64_t W,
                                 int64_t OH, int64_t OW, int64_t planes);
void conv2d_bwd_weights_direct_t__avx2(float* acc, const float* dyT, const float* xpad,
                                       const DirectConvArgs& a);
void conv2d_bwd_weights_direct_t__avx512(float* acc, const float* dyT, const float* xpad,
                                         const DirectConvArgs& a);
void conv2d_bwd_weights_direct_cl__avx512(float* acc, const float* dy, const float* xcl,
                                          const DirectConvArgs& a, int64_t lp, bool flat);
void conv2d_bwd_weights_rows__avx512(float* acc, const float* dy, const float* xcl,
                                     const DirectConvArgs& a, int64_t lp, float* work, int64_t slot,
                                     int64_t images, const PrefetchSpans& next);
void conv2d_bwd_weights_rows3__avx512(float* acc, const float* dy, const float* xcl,
                                      const DirectConvArgs& a, int64_t lp, float* work, int64_t slot,
                                      int64_t images, const PrefetchSpans& next);
void conv2d_fwd_cl__avx512(float* ycl, const float* xpad, const float* wcl,
                           const ClConvArgs& a);
void conv2d_fwd_winograd__avx512(float* ycl, const float* xpad, const float* u, float* work,
                                  const ClConvArgs& a);
void conv2d_fwd_winograd_tiles__avx512(float* y, const float* xpad, const float* u,
                                        const float* bias, bool relu, float* work,
                                        const WinogradTilesArgs& a);
void conv2d_fwd_winograd_tiles_4x2__avx512(float* y, const float* xpad, const float* u,
                                           const float* bias, bool relu, float* work,
                                           const WinogradTilesArgs& a);
void conv2d_fwd_winograd_one_plane__avx512(float* y, const float* xpad, const float* u,
                                      const float* bias, bool relu, float* work,
                                      const WinogradTilesArgs& a);
void conv2d_bwd_weights_winograd__avx512(float* acc, const float* xpad, const float* dyT,
                                          float* work, const ClConvArgs& a, const PrefetchSpans& next);
void conv2d_bwd_data_winograd__avx512(float* dxcl, const float* dy, const float* u, float* work,
                                      const ClConvArgs& a);
void conv2d_fwd_cl__avx2(float* ycl, const float* xpad, const float* wcl, const ClConvArgs& a);
void conv2d_fwd_winograd_rows__avx2(float* ycl, const float* xpad, const float* u, float* work,
                                    const ClConvArgs& a);
void conv2d_fwd_winograd_rows__avx512(float* ycl, const float* xpad, const float* u, float* work,
                                      const ClConvArgs& a);
void conv2d_bwd_data_scatter__avx2(float* ycl, const float* dy, const float* wb,
                                   const ScatterArgs& a);
void conv2d_bwd_data_dylanes__avx2(float* dx, const float* dyp, const float* wf,
                                   const DyLanesArgs& a);
void conv2d_bwd_data_image_lanes__avx2(float* const* dx, const float* const* dy, int64_t count,
                                       const float* u, float* work, int64_t t0, int64_t t1,
                                       const ImageLanesArgs& a);
int64_t conv2d_bwd_data_image_lanes_work__avx2(const ImageLanesArgs& a);
void conv2d_bwd_data_image_lanes__avx512(float* const* dx, const float* const* dy, int64_t count,
                                         const float* u, float* work, int64_t t0, int64_t t1,
                                         const ImageLanesArgs& a);
int64_t conv2d_bwd_data_image_lanes_work__avx512(const ImageLanesArgs& a);
void conv2d_bwd_weights_direct_cl__avx2(float* acc, const float* dy, const float* xcl,
                                        const DirectConvArgs& a, int64_t lp, bool flat);
void conv2d_bwd_weights_rows__avx2(float* acc, const float* dy, const float* xcl,
                                   const DirectConvArgs& a, int64_t lp, float* work, int64_t slot,
                                   int64_t images, const PrefetchSpans& next);
void conv2d_bwd_weights_rows3__avx2(float* acc, const float* dy, const float* xcl,
                                    const DirectConvArgs& a, int64_t lp, float* work, int64_t slot,
                                    int64_t images, const PrefetchSpans& next);
void pad_channels_last__avx2(float* xcl, const float* x_n, int64_t H, int64_t W, int64_t C,
                             int64_t top, int64_t left, int64_t wp);
void transpose_to_lanes__avx2(float* dyT, const float* dy, int64_t C, int64_t P, int64_t coutp);
void unpack_channels_last__avx2(float* y, const float* ycl, int64_t C, int64_t P, int64_t lanes,
                                const float* bias, bool relu);
void conv2d_fwd_winograd__avx2(float* ycl, const float* xpad, const float* u, float* work,
                               const ClConvArgs& a);
void conv2d_fwd_winograd_tiles__avx2(float* y, const float* xpad, const float* u,
                                     const float* bias, bool relu, float* work,
                                     const WinogradTilesArgs& a);
void conv2d_fwd_winograd_tiles_4x2__avx2(float* y, const float* xpad, const float* u,
                                         const float* bias, bool relu, float* work,
                                         const WinogradTilesArgs& a);
void conv2d_fwd_winograd_one_plane__avx2(float* y, const float* xpad, const float* u,
                                    const float* bias, bool relu, float* work,
                                    const WinogradTilesArgs& a);
void conv2d_bwd_weights_winograd__avx2(float* acc, const float* xpad, const float* dyT,
                                       float* work, const ClConvArgs& a, const PrefetchSpans& next);
void conv2d_bwd_data_winograd__avx2(float* dxcl, const float* dy, const float* u, float* work,
                                    const ClConvArgs& a);
void transpose_to_lanes__avx512(float* dyT, const float* dy, int64_t C, int64_t P, int64_t coutp);
void conv2d_bwd_data_dylanes__avx512(float* dx, const float* dyp, const float* wf,
                                     const DyLanesArgs& a);
void conv2d_bwd_data_scatter__avx512(float* ycl, const float* dy, const float* wb,
                                     const ScatterArgs& a);
void maxpool2d_codes_2x2s2__avx2(float* y, uint8_t* codes, const float* x, int64_t H,
                                 int64_t W, int64_t OH, int64_t OW, int64_t planes);
void maxpool2d_codes_2x2s2__avx512(float* y, uint8_t* codes, const float* x, int64_t H,
                                   int64_t W, int64_t OH, int64_t OW, int64_t planes);
bool unpool2d_codes_2x2s2__avx512(float* dx, const float* dy, const uint8_t* codes, int64_t H,
                                  int64_t W, int64_t OH, int64_t OW, int64_t planes);
bool maxpool2d_bwd_2x2s2__avx512(float* dx, const float* dy, const int64_t* idx, int64_t H,
                                 int64_t W, int64_t OH, int64_t OW, int64_t planes);
bool unpool2d_codes_2x2s2__avx2(float* dx, const float* dy, const uint8_t* codes, int64_t H,
                                int64_t W, int64_t OH, int64_t OW, int64_t planes);
bool maxpool2d_bwd_2x2s2__avx2(float* dx, const float* dy, const int64_t* idx, int64_t H,
                               int64_t W, int64_t OH, int64_t OW, int64_t planes);

// cpu_dispatch.cpp: the table in use (FASTCONV_CPU_ISA or the best the CPU supports).
const KernelTable& kernels();
bool isa_supported(const char* isa);
void set_isa(const char* isa);  // throws ValueError for unknown/unsupported names
const char* best_isa();

}  // namespace cpu
}  // namespace fastconv
