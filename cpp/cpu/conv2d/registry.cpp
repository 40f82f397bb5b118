// registry.cpp — the ordered algorithm list of each conv pass, and the only code that chooses.
//
// An entry is {name, needs, usable, preferred, driver}. usable: the ISA's table has the kernels
// and the geometry is one they compute (a forced algorithm must pass it); preferred: the measured
// rule that makes it the automatic choice, tried in list order, the GEMM entry last (it takes
// every geometry). Timings quoted are ms at 1 thread on the AVX-512 machine of docs/BENCHMARKS.md
// unless said otherwise; "waste" is H*W / (OH*OW), the share of a full correlation of the padded
// dy that multiplies its zero border.
#include "registry.h"

#include <algorithm>
#include <atomic>

#include "fastconv/conv_algos.h"
#include "fastconv/error.h"

namespace fastconv {
namespace cpu {
namespace {

using Fwd = ConvAlgorithm<FwdDriver>;
using BwdData = ConvAlgorithm<BwdDataDriver>;
using BwdWeights = ConvAlgorithm<BwdWeightsDriver>;

// --- shared geometry tests ---------------------------------------------------------------------

// Every direct, channel-lane and Winograd kernel computes groups 1, stride 1, dilation 1.
bool unit_stride(const Conv2dParams& p) {
  return p.groups == 1 && p.stride.h == 1 && p.stride.w == 1 && p.dilation.h == 1 &&
         p.dilation.w == 1;
}

// bwd_data as a forward over dy bordered by k-1-pad needs that border >= 0 on every side.
bool pads_within_kernel(const Conv2dParams& p) {
  return p.pad.top <= p.wt.h - 1 && p.pad.bottom <= p.wt.h - 1 && p.pad.left <= p.wt.w - 1 &&
         p.pad.right <= p.wt.w - 1;
}

double border_waste(const Conv2dParams& p) {
  return double(p.x.h * p.x.w) / double(p.y.h * p.y.w);
}

double lane_fill(int64_t channels, int lanes) {
  return double(channels) / double(round_up(channels, lanes));
}

// Channels that fill >= 85% of the vector lanes (the channel-lane kernels' rule).
bool lanes_full(int64_t channels, const KernelTable& kt) {
  return lane_fill(channels, kt.lanes) >= 0.85;
}

// 3x3 or 5x5 at unit stride over whole 2x2 output tiles (oh, ow: the tiled plane).
bool winograd_shape(const Conv2dParams& p, int64_t oh, int64_t ow) {
  return unit_stride(p) && p.wt.h == p.wt.w && (p.wt.h == 3 || p.wt.h == 5) && oh % 2 == 0 &&
         ow % 2 == 0;
}

// Useful-lane fraction of the pixels-in-lanes kernel (its better of row and flat tiles, roughly)
// against the channels-in-lanes kernel's (output channels over their rounding to the lanes); the
// CL kernel needs a few input channels to amortise its per-tap weight loads (C_in = 1 layers
// measured 1.5x slower on it). PERF_LOG round 5: CL/pixel time 0.84 keras.conv2 fwd, 0.83
// lenet.conv2 fwd, 0.83-0.93 fashion.conv2, 0.95-1.01 vgg.b; the rule's losers 1.05-1.07 vgg.a,
// 1.25-1.30 cnn1.conv2 (20 channels in 32 lanes).
bool cl_wins(int64_t in_channels, int64_t out_channels, int64_t ow, int64_t oh, int64_t wp,
             int lanes) {
  if (in_channels < 4) return false;
  const double cl = lane_fill(out_channels, lanes);
  const double row = double(ow) / double(round_up(ow, lanes));
  const double flat = double(oh * ow) / double(round_up(oh * wp, lanes));
  return cl >= 1.05 * std::max(row, flat);
}

bool always(const Conv2dParams&, const KernelTable&) { return true; }
bool always_preferred(const Conv2dParams&, const KernelTable&, const AlgoConfig&) { return true; }

// The per-lane direct weight gradient keeps partial sums of every weight in every lane, so it only
// wins for few input channels; bwd_data's direct kernel on a valid layer's wide dy border, for
// few dy channels (the DESIGN table's C_in <= 24 rows).
constexpr int64_t kDirectMaxChannels = 24;
// The channel-lane and (kx, ci)-lane weight gradients take layers from 4 input channels (the
// C_in = 1 layers stay on the per-lane kernel over shifted planes).
constexpr int64_t kLaneWeightGradMinCin = 4;
// A padded dy with H*W <= 1.3 OH*OW ("same"-like padding) costs a forward-of-padded-dy kernel at
// most 30% extra products; beyond, kernels that skip the zero border win (keras.conv2, 2.25).
constexpr double kCheapWaste = 1.3;

// --- fwd -------------------------------------------------------------------------------------

bool fwd_winograd_usable(const Conv2dParams& p, const KernelTable& kt) {
  return kt.winograd.fwd_channels != nullptr && kt.winograd.fwd_tiles != nullptr &&
         winograd_shape(p, p.y.h, p.y.w);
}

const Fwd kFwd[] = {
    // Output channels filling >= 85% of the lanes and >= 16 input channels (the input transform
    // is paid per input channel and tile, the point GEMM per channel pair): vgg.*, fashion.conv2,
    // keras.conv2 (PERF_LOG round 7). AVX2 (8 lanes; ms at 2 threads, machine loaded, min of 7,
    // against the direct kernel): fashion.conv2 2.5 vs 5.5, vgg.a 43 vs 52, vgg.b 38 vs 71,
    // keras.conv2 133 vs 187.
    {"winograd_channels", "AVX2 or AVX-512, groups 1, stride 1, dilation 1, 3x3 or 5x5, even output",
     fwd_winograd_usable,
     [](const Conv2dParams& p, const KernelTable& kt, const AlgoConfig& cfg) {
       return cfg.winograd && p.x.c >= 16 && lanes_full(p.y.c, kt);
     },
     fwd_winograd_channels},
    // The tiles below as F(4x2, 5x5), 5x5 only: 48 points per 8 outputs instead of 36 per
    // 4, from 4 output rows on (2 rows: 48 points against 36). cnn1.conv2 (0.76x the point
    // GEMM's FMAs, its 14 rows as 4 x 4, 2 junk), CPU time against winograd_tiles, 1 / 2
    // threads: AVX2 fwd 0.80 / 0.82, bwd_data 0.74 / 0.82; AVX-512 0.72-0.75 (PERF_LOG round 23).
    {"winograd_tiles_4x2", "AVX2 or AVX-512, groups 1, stride 1, dilation 1, 5x5, even output",
     [](const Conv2dParams& p, const KernelTable& kt) {
       return kt.winograd.fwd_tiles_4x2 != nullptr && p.wt.h == 5 && fwd_winograd_usable(p, kt);
     },
     [](const Conv2dParams& p, const KernelTable& kt, const AlgoConfig& cfg) {
       return cfg.winograd && p.x.c >= 8 && p.y.c >= 4 && !lanes_full(p.y.c, kt) && p.y.h >= 4;
     },
     fwd_winograd_tiles_4x2},
    // The other layers with >= 8 input and >= 4 output channels (its channel blocks are 4-6):
    // cnn1.conv2 (PERF_LOG round 7; AVX2 10.1 vs direct 11.1 ms, as above).
    {"winograd_tiles", "AVX2 or AVX-512, groups 1, stride 1, dilation 1, 3x3 or 5x5, even output",
     fwd_winograd_usable,
     [](const Conv2dParams& p, const KernelTable& kt, const AlgoConfig& cfg) {
       return cfg.winograd && p.x.c >= 8 && p.y.c >= 4 && !lanes_full(p.y.c, kt);
     },
     fwd_winograd_tiles},
    // The channel-lane tile on a 1-D Winograd down the columns (F(4, 5) tiles of 4 rows, an F(2, 5)
    // tile for the last 2: lenet.conv2's 10 rows take 0.44x the FMAs, the transforms whole-row
    // vector sums), 5x5 only, where the channel-lane forward below would run: lenet.conv2 0.93 ->
    // 0.60 ms on AVX2, 0.48 -> 0.28 on AVX-512 (1 thread, CPU time, alternating, medians, load ~3;
    // PERF_LOG round 17). 3x3 (F(2, 3): 0.67x) is usable, not measured on a layer that wants it.
    {"winograd_rows", "AVX2 or AVX-512, groups 1, stride 1, dilation 1, 3x3 or 5x5, even output height",
     [](const Conv2dParams& p, const KernelTable& kt) {
       return kt.winograd.fwd_rows != nullptr && unit_stride(p) && p.wt.h == p.wt.w &&
              (p.wt.h == 3 || p.wt.h == 5) && p.y.h % 2 == 0;
     },
     [](const Conv2dParams& p, const KernelTable& kt, const AlgoConfig& cfg) {
       return cfg.winograd && p.wt.h == 5 &&
              cl_wins(p.x.c, p.y.c, p.y.w, p.y.h, p.x.w + p.pad.left + p.pad.right, kt.lanes);
     },
     fwd_winograd_rows},
    // Where its output channels use the lanes better than the pixel tiles' rows do (cl_wins):
    // lenet.conv2 (AVX2: 0.50 vs direct 0.82 ms at 2 threads, machine loaded, min of 7).
    {"channel_lanes", "AVX2 or AVX-512, groups 1, stride 1, dilation 1",
     [](const Conv2dParams& p, const KernelTable& kt) {
       return kt.channel_lanes.fwd != nullptr && unit_stride(p);
     },
     [](const Conv2dParams& p, const KernelTable& kt, const AlgoConfig&) {
       return cl_wins(p.x.c, p.y.c, p.y.w, p.y.h, p.x.w + p.pad.left + p.pad.right,
                      kt.lanes);
     },
     fwd_channel_lanes},
    // One input channel, 5x5: F(2, 5) along the rows (30 FMAs + a 10-operation output transform
    // per output pair and channel instead of 50 FMAs; the input transform shared by every output
    // channel and kernel row), on AVX2 where the channels fill its 4-channel blocks and the
    // output stays in cache: cnn1.conv1 0.75 -> 0.64 ms at 1 thread against direct_shifted (CPU
    // time, alternating, min; PERF_LOG round 19). Measured slower: lenet.conv1 (6 channels,
    // 1.10x), keras.conv1 (75 channels, 35 MB of output, 1.07x), AVX-512 cnn1.conv1 (1.12x).
    {"winograd_one_plane",
     "AVX2 or AVX-512, groups 1, stride 1, dilation 1, one input channel, 5x5, even output width",
     [](const Conv2dParams& p, const KernelTable& kt) {
       return kt.winograd.fwd_one_plane != nullptr && unit_stride(p) && p.x.c == 1 &&
              p.wt.h == 5 && p.wt.w == 5 && p.y.w % 2 == 0;
     },
     [](const Conv2dParams& p, const KernelTable& kt, const AlgoConfig& cfg) {
       return cfg.winograd && kt.lanes == 8 && p.y.c % 4 == 0 && p.y.c <= 32;
     },
     fwd_winograd_one_plane},
    // C_in < 4: flat tiles of whole vectors over shifted planes, no row ends or junk lanes (the
    // C_in = 1 layers, PERF_LOG round 9); the planes are KW times the input, so few channels only.
    {"direct_shifted", "AVX2 or AVX-512, groups 1, stride 1, dilation 1",
     [](const Conv2dParams& p, const KernelTable& kt) {
       return kt.direct.fwd_shifted != nullptr && kt.direct.shift_planes != nullptr &&
              unit_stride(p);
     },
     [](const Conv2dParams& p, const KernelTable&, const AlgoConfig&) { return p.x.c < 4; },
     fwd_direct_shifted},
    // Weight-stationary tiles read the zero-bordered input from L1/L2 with no im2col copy:
    // measured >= the packed GEMM on every NETWORKS.md layer (PERF_LOG round 2).
    {"direct", "AVX2 or AVX-512, groups 1, stride 1, dilation 1",
     [](const Conv2dParams& p, const KernelTable& kt) {
       return kt.direct.fwd != nullptr && unit_stride(p);
     },
     always_preferred, fwd_direct},
    {"gemm", "nothing", always, always_preferred, fwd_gemm},
};

// --- bwd_data --------------------------------------------------------------------------------

bool bwd_data_winograd_usable(const Conv2dParams& p, const KernelTable& kt) {
  return kt.winograd.fwd_channels != nullptr && kt.winograd.fwd_tiles != nullptr &&
         winograd_shape(p, p.x.h, p.x.w) && pads_within_kernel(p);
}

// dy_lanes' rule (below): valid-like padding, dy channels filling the lanes, 4-8 dx channels.
bool dy_lanes_rule(const Conv2dParams& p, const KernelTable& kt) {
  return border_waste(p) > kCheapWaste && lane_fill(p.y.c, kt.lanes) >= 0.85 && p.x.c >= 4 &&
         p.x.c <= 8;
}

const BwdData kBwdData[] = {
    // The forward's adjoint, from dy unbordered, dx channels in the lanes: for the channel-lane
    // layers whose dy is much smaller than x (valid: keras.conv2 25.2 -> 12.9 ms) or whose
    // channels-last dx stays within 128 KB (fashion.conv2 0.93 -> 0.78 ms; vgg.b's 460 KB ran
    // 3-12% slower, its patches' read-modify-writes going to L2) (PERF_LOG round 8). AVX2, as for
    // the forward: fashion.conv2 4.1 vs direct 5.7, keras.conv2 106 vs GEMM 139.
    {"winograd_transposed", "AVX2 or AVX-512, groups 1, stride 1, dilation 1, 3x3 or 5x5, even dy",
     [](const Conv2dParams& p, const KernelTable& kt) {
       return kt.winograd.bwd_data_transposed != nullptr && winograd_shape(p, p.y.h, p.y.w);
     },
     [](const Conv2dParams& p, const KernelTable& kt, const AlgoConfig& cfg) {
       const double dx_bytes = 4.0 * double(round_up(p.x.c, kt.lanes) *
                                            (p.y.h + p.wt.h - 1) * (p.y.w + p.wt.w - 1));
       return cfg.winograd && p.y.c >= 16 && lanes_full(p.x.c, kt) &&
              (border_waste(p) > kCheapWaste || dx_bytes <= 128 * 1024);
     },
     bwd_data_winograd_transposed},
    // The forward's channel rule with the roles swapped, on dy padded by k-1-pad; a valid conv
    // too where its product share n^2/(4 r^2) times the waste stays under 0.85 (keras.conv2:
    // 36/100 x 2.25 = 0.81; 26.5 -> 25.4 ms against scatter) (PERF_LOG round 7): vgg.* (AVX2, as
    // for the forward: vgg.a 38 vs direct 58, vgg.b 47 vs 71).
    {"winograd_channels",
     "AVX2 or AVX-512, groups 1, stride 1, dilation 1, 3x3 or 5x5, even input, every pad <= k-1",
     bwd_data_winograd_usable,
     [](const Conv2dParams& p, const KernelTable& kt, const AlgoConfig& cfg) {
       const double n = double(p.wt.h + 1), products = n * n / (4.0 * double(p.wt.h * p.wt.h));
       const double waste = border_waste(p);
       return cfg.winograd && p.y.c >= 16 && lanes_full(p.x.c, kt) &&
              (waste <= kCheapWaste || products * waste <= 0.85);
     },
     bwd_data_winograd_channels},
    // The 4x2 tiles (see the forward), under the tiles' rule below, from 4 dx rows on.
    {"winograd_tiles_4x2",
     "AVX2 or AVX-512, groups 1, stride 1, dilation 1, 5x5, even input, every pad <= k-1",
     [](const Conv2dParams& p, const KernelTable& kt) {
       return kt.winograd.fwd_tiles_4x2 != nullptr && p.wt.h == 5 &&
              bwd_data_winograd_usable(p, kt);
     },
     [](const Conv2dParams& p, const KernelTable& kt, const AlgoConfig& cfg) {
       return cfg.winograd && p.y.c >= 8 && p.x.c >= 4 && !lanes_full(p.x.c, kt) &&
              border_waste(p) <= kCheapWaste && p.x.h >= 4;
     },
     bwd_data_winograd_tiles_4x2},
    // The forward's tiles rule with the roles swapped, "same"-like sizes only (lenet.conv2, valid,
    // ran 2x slower): cnn1.conv2 (PERF_LOG round 7; AVX2 13.9 vs direct 15.9 ms, as above).
    {"winograd_tiles",
     "AVX2 or AVX-512, groups 1, stride 1, dilation 1, 3x3 or 5x5, even input, every pad <= k-1",
     bwd_data_winograd_usable,
     [](const Conv2dParams& p, const KernelTable& kt, const AlgoConfig& cfg) {
       return cfg.winograd && p.y.c >= 8 && p.x.c >= 4 && !lanes_full(p.x.c, kt) &&
              border_waste(p) <= kCheapWaste;
     },
     bwd_data_winograd_tiles},
    // Every multiply-add useful, dx channels in the lanes, against the next choice (PERF_LOG round
    // 5): keras.conv2 27.4 vs 34.7 ms (GEMM), fashion.conv2 1.03 vs 1.24 (channel lanes); wide
    // rows lose on the tiles' overlapping columns (vgg.a 11.9 vs 9.1, vgg.b even), 20 channels in
    // 32 lanes too.
    {"scatter", "AVX2 or AVX-512, groups 1, stride 1, dilation 1, kernel width 3 or 5",
     [](const Conv2dParams& p, const KernelTable& kt) {
       return kt.channel_lanes.bwd_data_scatter != nullptr && unit_stride(p) &&
              (p.wt.w == 3 || p.wt.w == 5);
     },
     [](const Conv2dParams& p, const KernelTable& kt, const AlgoConfig&) {
       return p.y.c >= 4 && lane_fill(p.x.c, kt.lanes) >= 0.85 &&
              (border_waste(p) > kCheapWaste || p.y.w <= 16);
     },
     bwd_data_scatter},
    // The forward's lane rule with the roles swapped, on dy padded by k-1-pad, "same"-like sizes
    // (a full-row tile still multiplies the zero columns: keras.conv2, 1.5x the useful work,
    // stays on GEMM + col2im, 34 vs 39 ms): vgg.b.
    {"channel_lanes", "AVX2 or AVX-512, groups 1, stride 1, dilation 1, every pad <= k-1",
     [](const Conv2dParams& p, const KernelTable& kt) {
       return kt.channel_lanes.fwd != nullptr && unit_stride(p) && pads_within_kernel(p);
     },
     [](const Conv2dParams& p, const KernelTable& kt, const AlgoConfig&) {
       const int64_t wp = p.y.w + 2 * (p.wt.w - 1) - p.pad.left - p.pad.right;
       return border_waste(p) <= kCheapWaste &&
              cl_wins(p.y.c, p.x.c, p.x.w, p.x.h, wp, kt.lanes);
     },
     bwd_data_channel_lanes},
    // The images in the lanes (one group of `lanes` images per call of the kernel) and a 1-D
    // Winograd F(4, 5) along the rows, kernel rows exact: no lane sums, no border products along
    // the rows' kernel rows (conv2d_bwd_data_image_lanes.inl); 8-image groups on AVX-512 too (16
    // would leave lenet.conv2's 100 images 11% empty lanes). Where dy_lanes below would run, with
    // 5-wide kernels and >= 8 images filling >= 75% of their groups: lenet.conv2 against dy_lanes
    // (1 thread, CPU time, cold dy, medians; PERF_LOG round 22): AVX2 100 images 0.68x, 8 0.82x,
    // 12 0.93x, below the rule 7 images 0.99x, 6 1.11x, 4 1.41x; AVX-512 100 images 0.63x (2
    // threads 0.62x), 8 0.81x, 12 0.94x, 7 0.92x.
    {"winograd_images",
     "AVX2 or AVX-512, groups 1, stride 1, dilation 1, kernel width 5, every pad <= k-1",
     [](const Conv2dParams& p, const KernelTable& kt) {
       return kt.winograd.bwd_data_image_lanes != nullptr && unit_stride(p) && p.wt.w == 5 &&
              pads_within_kernel(p);
     },
     [](const Conv2dParams& p, const KernelTable& kt, const AlgoConfig& cfg) {
       const int group = kt.winograd.image_lanes_group;
       return cfg.winograd && p.x.n >= group && lane_fill(p.x.n, group) >= 0.75 &&
              dy_lanes_rule(p, kt);
     },
     bwd_data_winograd_images},
    // Valid padding with 4-8 dx channels (a full tile is 4 pixels x up to 6 of them; with 1-3 it
    // is load-bound) and dy channels filling the lanes: lenet.conv2 (1.96x waste; PERF_LOG round 10;
    // AVX2, 2 x 6 tiles, weights pinned in registers: 0.93 vs direct 1.06 ms at 1 thread, load ~7,
    // alternating, medians; 0.63 with the paired stores).
    {"dy_lanes", "AVX2 or AVX-512, groups 1, stride 1, dilation 1, every pad <= k-1",
     [](const Conv2dParams& p, const KernelTable& kt) {
       return kt.channel_lanes.bwd_data_dy_lanes != nullptr && unit_stride(p) && pads_within_kernel(p);
     },
     [](const Conv2dParams& p, const KernelTable& kt, const AlgoConfig&) {
       return dy_lanes_rule(p, kt);
     },
     bwd_data_dy_lanes},
    // The direct forward kernel on dy padded by k-1-pad (flipped, in/out-transposed weights, no
    // col2im): enough dx channels to fill a channel block, or exactly one (fashion.conv1 1.32 ->
    // 0.34 ms, cnn1.conv1 2.86 -> 1.25 against GEMM + col2im; C_in = 2, 3 stay on GEMM), and
    // "same"-like padding or few dy channels (keras.conv2, 2.25x waste: GEMM + col2im 2.5x faster;
    // lenet.conv2, 16 channels, 1.96x, still wins with direct). On AVX2 every one-plane dx of a
    // 3x3 / 5x5 kernel (the one-plane tile, conv2d_direct_fwd.inl fwd_one_tile): keras.conv1 (1.36x
    // waste, 75 dy channels) against GEMM with 95c2d97's banded dY: 1 thread 9.28 vs 9.99 ms (CPU
    // time), 2 threads 18.5 vs 18.4 (minimums 10.2 vs 12.9; load ~8, alternating, medians);
    // AVX-512 keeps GEMM there (36.2 vs 33.6 at 2 threads before 95c2d97).
    {"direct", "AVX2 or AVX-512, groups 1, stride 1, dilation 1, every pad <= k-1",
     [](const Conv2dParams& p, const KernelTable& kt) {
       return kt.direct.fwd != nullptr && unit_stride(p) && pads_within_kernel(p);
     },
     [](const Conv2dParams& p, const KernelTable& kt, const AlgoConfig&) {
       const bool one_plane_tile = p.x.c == 1 && kt.lanes == 8 && p.x.w > kt.lanes &&
                                   p.wt.h == p.wt.w && (p.wt.h == 3 || p.wt.h == 5);
       return (p.x.c >= 4 || p.x.c == 1) &&
              (border_waste(p) <= kCheapWaste || p.y.c <= kDirectMaxChannels || one_plane_tile);
     },
     bwd_data_direct},
    {"gemm", "nothing", always, always_preferred, bwd_data_gemm},
};

// --- bwd_weights -----------------------------------------------------------------------------

bool tap_lanes_usable(const Conv2dParams& p, const KernelTable& kt) {
  return kt.channel_lanes.bwd_weights_taps != nullptr && kt.channel_lanes.pad_channels_last != nullptr &&
         unit_stride(p);
}

// AVX2: output channels that fill one channel-lane tile (<= 2 vectors, >= 85% full) make every
// tap's broadcast serve all of them, and the output-channel-lane weight gradient beats the tap
// lanes: lenet.conv2 (16 channels) 0.50 vs 0.58 ms (tap_lanes_flat) at 1 thread, CPU time, load ~5,
// alternating, medians; 0.258 vs 0.346 ms at 2 threads with the training runs paused (PERF_LOG
// round 15). AVX-512 measured a tie there (0.553 vs 0.544 for tap_lanes) and keeps the tap lanes.
bool bwd_weights_cl_on_avx2(const Conv2dParams& p, const KernelTable& kt) {
  return kt.lanes == 8 && lanes_full(p.y.c, kt) && round_up(p.y.c, kt.lanes) <= 2 * kt.lanes;
}

const BwdWeights kBwdWeights[] = {
    // F(3x3, 2x2) for the 3x3 layers the channel-lane Winograd forward takes: vgg.a 9.5 -> 6.6
    // ms, vgg.b 9.5 -> 5.5, fashion.conv2 1.12 -> 0.98 (PERF_LOG round 7). AVX2 against the
    // channel-lane kernel (as for the forward): vgg.a 82 vs 108, vgg.b 39 vs 94, fashion 3.6 vs 7.7.
    {"winograd_channels", "AVX2 or AVX-512, groups 1, stride 1, dilation 1, 3x3, even output",
     [](const Conv2dParams& p, const KernelTable& kt) {
       return kt.winograd.bwd_weights != nullptr && unit_stride(p) && p.wt.h == 3 &&
              p.wt.w == 3 && p.y.h % 2 == 0 && p.y.w % 2 == 0;
     },
     [](const Conv2dParams& p, const KernelTable& kt, const AlgoConfig& cfg) {
       return cfg.winograd && p.x.c >= 16 && lanes_full(p.y.c, kt);
     },
     bwd_weights_winograd_channels},
    // The same over groups of three output rows (F(3, 3) + F(2, 3): 9 products per 3 rows instead
    // of 10.5, any output height; PERF_LOG round 25).
    {"winograd_rows3", "AVX2 or AVX-512, groups 1, stride 1, dilation 1, 5 high",
     [](const Conv2dParams& p, const KernelTable& kt) {
       return kt.channel_lanes.bwd_weights_rows3 != nullptr && tap_lanes_usable(p, kt) &&
              p.wt.h == 5;
     },
     // Taken from 16 input channels (as winograd_rows) where its point GEMMs run <= 95% of the
     // pairs' rows (7 ceil(oh/3) + 2 floor(oh/3), the last triple's zero g2 skipped, against
     // 3.5 oh: oh = 4 and 10 stay with the pairs) or oh is odd and >= 3 (vs 5 oh direct). AVX2,
     // same process, alternating, CPU time medians against winograd_rows: cnn1.conv2 0.885x
     // (1 and 2 threads), keras.conv2 0.92x / 0.87x, inception.5x5 0.95x; AVX-512 cnn1.conv2
     // 0.875x / 0.857x, keras.conv2 0.91x; (100, 20, 13, 13) -> 20 (oh 13) 0.72x tap_lanes_flat.
     [](const Conv2dParams& p, const KernelTable&, const AlgoConfig& cfg) {
       const int64_t oh = p.y.h, rows3 = 7 * ((oh + 2) / 3) + 2 * (oh / 3);
       return cfg.winograd && p.x.c >= 16 && (oh % 2 == 0 ? 20 * rows3 <= 19 * (7 * oh / 2) : oh >= 3);
     },
     bwd_weights_winograd_rows3},
    // A 1-D Winograd over pairs of output rows for kernels 5 high (F(3, 2) + F(2, 2): 7 products
    // per pair instead of 10, transforms of +-1 and 1/2 only), its point GEMMs on the per-row
    // tap-lane tiles (PERF_LOG round 18; the forward's winograd_rows is the same idea).
    {"winograd_rows", "AVX2 or AVX-512, groups 1, stride 1, dilation 1, 5 high, even output height",
     [](const Conv2dParams& p, const KernelTable& kt) {
       return kt.channel_lanes.bwd_weights_rows != nullptr && tap_lanes_usable(p, kt) &&
              p.wt.h == 5 && p.y.h % 2 == 0;
     },
     // Taken from 16 input channels (transforms per product grow as C_in falls): AVX2, 1 thread,
     // CPU time, same process, alternating, medians: cnn1.conv2 3.84 vs 4.93 ms (tap_lanes_flat),
     // keras.conv2 55.2 vs 67.0 (tap_lanes), inception.5x5 1.76 vs 2.15; AVX-512 4.15 vs 4.74,
     // 45.7 vs 57.3, 1.34 vs 1.61; lenet.conv2 (6 channels) 0.85 vs 0.68 (AVX2 channel_lanes),
     // 0.64 vs 0.61 (AVX-512 tap_lanes).
     [](const Conv2dParams& p, const KernelTable&, const AlgoConfig& cfg) {
       return cfg.winograd && p.x.c >= 16;
     },
     bwd_weights_winograd_rows},
    // Lanes over the whole (ky, kx, ci) where they take >= 3% fewer vectors than per kernel row
    // and the padded image fits 40 KB of L1 (the flat kernel has no row blocks): cnn1.conv2, 32
    // vectors instead of 35 (PERF_LOG round 10); on AVX2 63 instead of 65, 4.40 vs 4.48 ms at 1
    // thread (CPU time, alternating, medians, load ~5), 2.08 vs 2.15 at 2 threads (training runs
    // paused) (PERF_LOG round 15).
    {"tap_lanes_flat", "AVX2 or AVX-512, groups 1, stride 1, dilation 1, KW*C_in >= the vector lanes",
     [](const Conv2dParams& p, const KernelTable& kt) {
       return tap_lanes_usable(p, kt) && p.wt.w * p.x.c >= kt.lanes;
     },
     [](const Conv2dParams& p, const KernelTable& kt, const AlgoConfig&) {
       const int64_t lanes = kt.lanes, L = p.wt.w * p.x.c;
       const int64_t flat = round_up(p.wt.h * L, lanes) / lanes;
       const int64_t per_row = p.wt.h * (round_up(L, lanes) / lanes);
       const int64_t padded_bytes = (p.x.h + p.pad.top + p.pad.bottom) *
                                    (p.x.w + p.pad.left + p.pad.right) * p.x.c *
                                    int64_t(sizeof(float));
       return p.x.c >= kLaneWeightGradMinCin && flat * 100 <= per_row * 97 &&
              padded_bytes <= 40 * 1024 && !bwd_weights_cl_on_avx2(p, kt);
     },
     bwd_weights_tap_lanes_flat},
    // (kx, ci) in the lanes over a channels-last padded image, dy broadcast: all lanes useful,
    // against the channel-lane kernel cnn1.conv2 3.79 -> 2.47 ms, fashion.conv2 2.29 -> 1.44,
    // keras.conv2 27.9 -> 27.5 (PERF_LOG round 4). AVX2 (as above): cnn1.conv2 9.7 vs 13.8,
    // keras.conv2 124 vs 119 (even), lenet.conv2 flat 0.47 vs 0.75.
    {"tap_lanes", "AVX2 or AVX-512, groups 1, stride 1, dilation 1", tap_lanes_usable,
     [](const Conv2dParams& p, const KernelTable& kt, const AlgoConfig&) {
       return p.x.c >= kLaneWeightGradMinCin && !bwd_weights_cl_on_avx2(p, kt);
     },
     bwd_weights_tap_lanes},
    // Output channels in the lanes, taps broadcast from the padded input (no im2col): the
    // C_in >= 4 layers of ISAs without the tap-lane kernel, and on AVX2 those whose output
    // channels fill one tile (bwd_weights_cl_on_avx2): lenet.conv2.
    {"channel_lanes", "AVX2 or AVX-512, groups 1, stride 1, dilation 1",
     [](const Conv2dParams& p, const KernelTable& kt) {
       return kt.channel_lanes.bwd_weights != nullptr && unit_stride(p);
     },
     [](const Conv2dParams& p, const KernelTable&, const AlgoConfig&) {
       return p.x.c >= kLaneWeightGradMinCin;
     },
     bwd_weights_channel_lanes},
    // Per-lane partial sums of every weight over shifted planes: the C_in < 4 layers.
    {"direct", "AVX2 or AVX-512, groups 1, stride 1, dilation 1",
     [](const Conv2dParams& p, const KernelTable& kt) {
       return kt.direct.bwd_weights != nullptr && kt.direct.shift_planes != nullptr &&
              unit_stride(p);
     },
     [](const Conv2dParams& p, const KernelTable&, const AlgoConfig&) {
       return p.x.c <= kDirectMaxChannels;
     },
     bwd_weights_direct},
    {"gemm", "nothing", always, always_preferred, bwd_weights_gemm},
};

// --- the choice ------------------------------------------------------------------------------

constexpr int kAuto = -1;
std::atomic<int> g_forced[3] = {{kAuto}, {kAuto}, {kAuto}};
std::atomic<bool> g_winograd{true};

const char* pass_name(ConvPass pass) {
  switch (pass) {
    case ConvPass::fwd: return "fwd";
    case ConvPass::bwd_data: return "bwd_data";
    default: return "bwd_weights";
  }
}

ConvPass pass_of(const std::string& pass) {
  if (pass == "fwd") return ConvPass::fwd;
  if (pass == "bwd_data") return ConvPass::bwd_data;
  FC_CHECK(pass == "bwd_weights", "pass must be 'fwd', 'bwd_data' or 'bwd_weights', got '", pass,
           "'");
  return ConvPass::bwd_weights;
}

template <class A, size_t N>
std::vector<std::string> usable_names(const A (&list)[N], const Conv2dParams& p,
                                      const KernelTable& kt) {
  std::vector<std::string> out;
  for (const A& a : list)
    if (a.usable(p, kt)) out.push_back(a.name);
  return out;
}

template <class A, size_t N>
const A& choose(const A (&list)[N], ConvPass pass, const Conv2dParams& p, const KernelTable& kt) {
  const int forced = g_forced[int(pass)].load(std::memory_order_relaxed);
  if (forced != kAuto) {
    const A& a = list[forced];
    if (!a.usable(p, kt)) {
      std::string names;
      for (const std::string& n : usable_names(list, p, kt)) names += (names.empty() ? "" : ", ") + n;
      throw ValueError(str_cat("conv2d ", pass_name(pass), " algorithm '", a.name,
                               "' (forced by set_conv_algo) cannot run ", to_string(p), " on the ",
                               kt.isa, " path: it needs ", a.needs, "; usable here: ", names));
    }
    return a;
  }
  AlgoConfig cfg;
  cfg.winograd = g_winograd.load(std::memory_order_relaxed);
  for (const A& a : list)
    if (a.usable(p, kt) && a.preferred(p, kt, cfg)) return a;
  return list[N - 1];  // not reached: the GEMM entry takes everything
}

template <class A, size_t N>
void set_forced(const A (&list)[N], ConvPass pass, const std::string& name) {
  if (name.empty()) {
    g_forced[int(pass)].store(kAuto);
    return;
  }
  std::string names;
  for (size_t i = 0; i < N; ++i) {
    if (name == list[i].name) {
      g_forced[int(pass)].store(int(i));
      return;
    }
    names += str_cat(i ? ", " : "", "'", list[i].name, "'");
  }
  throw ValueError(str_cat("conv2d ", pass_name(pass), " algorithm must be one of ", names,
                           " or None, got '", name, "'"));
}

template <class A, size_t N>
std::vector<std::string> all_names(const A (&list)[N]) {
  std::vector<std::string> out;
  for (const A& a : list) out.push_back(a.name);
  return out;
}

}  // namespace

const Fwd& choose_fwd(const Conv2dParams& p, const KernelTable& kt) {
  return choose(kFwd, ConvPass::fwd, p, kt);
}
const BwdData& choose_bwd_data(const Conv2dParams& p, const KernelTable& kt) {
  return choose(kBwdData, ConvPass::bwd_data, p, kt);
}
const BwdWeights& choose_bwd_weights(const Conv2dParams& p, const KernelTable& kt) {
  return choose(kBwdWeights, ConvPass::bwd_weights, p, kt);
}

std::vector<std::string> conv_algorithms(const std::string& pass) {
  switch (pass_of(pass)) {
    case ConvPass::fwd: return all_names(kFwd);
    case ConvPass::bwd_data: return all_names(kBwdData);
    default: return all_names(kBwdWeights);
  }
}

std::vector<std::string> usable_conv_algorithms(const std::string& pass, const Conv2dParams& p) {
  const KernelTable& kt = kernels();
  switch (pass_of(pass)) {
    case ConvPass::fwd: return usable_names(kFwd, p, kt);
    case ConvPass::bwd_data: return usable_names(kBwdData, p, kt);
    default: return usable_names(kBwdWeights, p, kt);
  }
}

std::string chosen_conv_algorithm(const std::string& pass, const Conv2dParams& p) {
  const KernelTable& kt = kernels();
  switch (pass_of(pass)) {
    case ConvPass::fwd: return choose_fwd(p, kt).name;
    case ConvPass::bwd_data: return choose_bwd_data(p, kt).name;
    default: return choose_bwd_weights(p, kt).name;
  }
}

void set_conv_algorithm(const std::string& pass, const std::string& name) {
  switch (pass_of(pass)) {
    case ConvPass::fwd: return set_forced(kFwd, ConvPass::fwd, name);
    case ConvPass::bwd_data: return set_forced(kBwdData, ConvPass::bwd_data, name);
    default: return set_forced(kBwdWeights, ConvPass::bwd_weights, name);
  }
}

std::string forced_conv_algorithm(const std::string& pass) {
  const ConvPass ps = pass_of(pass);
  const int i = g_forced[int(ps)].load();
  if (i == kAuto) return "";
  switch (ps) {
    case ConvPass::fwd: return kFwd[i].name;
    case ConvPass::bwd_data: return kBwdData[i].name;
    default: return kBwdWeights[i].name;
  }
}

void set_winograd_allowed(bool on) { g_winograd.store(on); }
bool winograd_allowed() { return g_winograd.load(); }

}  // namespace cpu
}  // namespace fastconv
