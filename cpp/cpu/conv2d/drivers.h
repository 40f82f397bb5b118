// drivers.h — every CPU conv algorithm's driver, one signature per pass, as the registry
// (registry.cpp) runs them. A driver prepares operands (packed weights, padded or transposed
// images), threads over images or pixel blocks, calls its kernels from the ISA's KernelTable and
// reduces; it makes no choice and reads no configuration: the registry has checked that its
// kernels exist and its geometry holds before it runs.
//
//   fwd:          out gets conv(x, w) [+ b] [ReLU] of the N images: plain y or pooled (fused op)
//   bwd_data:     dx (N, C_in, H, W) from dy (plain, or unpooled per image for the fused op)
//   bwd_weights:  dw (C_out, C_in/g, KH, KW), db (C_out; nullptr: skipped) from dy and x, N >= 1
#pragma once

#include "support.h"

namespace fastconv {
namespace cpu {

using FwdDriver = void (*)(const ImageSink& out, const float* x, const float* w, const float* b,
                           const Conv2dParams& p, bool relu, const KernelTable& kt);
using BwdDataDriver = void (*)(float* dx, const DySource& dy, const float* w,
                               const Conv2dParams& p, const KernelTable& kt);
using BwdWeightsDriver = void (*)(float* dw, float* db, const DySource& dy, const float* x,
                                  const Conv2dParams& p, const KernelTable& kt);

// gemm.cpp: im2col straight into packed GEMM operands (any geometry).
void fwd_gemm(const ImageSink& out, const float* x, const float* w, const float* b,
              const Conv2dParams& p, bool relu, const KernelTable& kt);
void bwd_data_gemm(float* dx, const DySource& dy, const float* w, const Conv2dParams& p,
                   const KernelTable& kt);
void bwd_weights_gemm(float* dw, float* db, const DySource& dy, const float* x,
                      const Conv2dParams& p, const KernelTable& kt);

// direct.cpp: pixels in the lanes, no im2col (conv2d_direct.inl).
void fwd_direct(const ImageSink& out, const float* x, const float* w, const float* b,
                const Conv2dParams& p, bool relu, const KernelTable& kt);
void fwd_direct_shifted(const ImageSink& out, const float* x, const float* w, const float* b,
                        const Conv2dParams& p, bool relu, const KernelTable& kt);
void bwd_data_direct(float* dx, const DySource& dy, const float* w, const Conv2dParams& p,
                     const KernelTable& kt);
void bwd_weights_direct(float* dw, float* db, const DySource& dy, const float* x,
                        const Conv2dParams& p, const KernelTable& kt);

// lanes.cpp: channels in the lanes (conv2d_fwd_cl.inl, conv2d_bwd_data_cl.inl,
// conv2d_bwd_data_dylanes.inl, conv2d_bww_cl.inl, conv2d_bww_rows.inl and the ISA's channel-lane
// weight gradient).
void fwd_channel_lanes(const ImageSink& out, const float* x, const float* w, const float* b,
                       const Conv2dParams& p, bool relu, const KernelTable& kt);
void bwd_data_channel_lanes(float* dx, const DySource& dy, const float* w, const Conv2dParams& p,
                            const KernelTable& kt);
// ... the forward with a 1-D Winograd F(2, r) down the columns (conv2d_winograd_rows.inl).
void fwd_winograd_rows(const ImageSink& out, const float* x, const float* w, const float* b,
                       const Conv2dParams& p, bool relu, const KernelTable& kt);
void bwd_data_scatter(float* dx, const DySource& dy, const float* w, const Conv2dParams& p,
                      const KernelTable& kt);
void bwd_data_dy_lanes(float* dx, const DySource& dy, const float* w, const Conv2dParams& p,
                       const KernelTable& kt);
void bwd_weights_channel_lanes(float* dw, float* db, const DySource& dy, const float* x,
                               const Conv2dParams& p, const KernelTable& kt);
void bwd_weights_tap_lanes(float* dw, float* db, const DySource& dy, const float* x,
                           const Conv2dParams& p, const KernelTable& kt);
void bwd_weights_tap_lanes_flat(float* dw, float* db, const DySource& dy, const float* x,
                                const Conv2dParams& p, const KernelTable& kt);
void bwd_weights_winograd_rows(float* dw, float* db, const DySource& dy, const float* x,
                               const Conv2dParams& p, const KernelTable& kt);
void bwd_weights_winograd_rows3(float* dw, float* db, const DySource& dy, const float* x,
                                const Conv2dParams& p, const KernelTable& kt);

// image_lanes.cpp: images in the lanes, a 1-D Winograd F(4, 5) along the rows
// (conv2d_bwd_data_image_lanes.inl).
void bwd_data_winograd_images(float* dx, const DySource& dy, const float* w, const Conv2dParams& p,
                              const KernelTable& kt);

// winograd.cpp: Winograd F(2x2, 3x3) / F(2x2, 5x5) and F(3x3, 2x2) (conv2d_winograd*.inl).
void fwd_winograd_channels(const ImageSink& out, const float* x, const float* w, const float* b,
                           const Conv2dParams& p, bool relu, const KernelTable& kt);
void fwd_winograd_tiles(const ImageSink& out, const float* x, const float* w, const float* b,
                        const Conv2dParams& p, bool relu, const KernelTable& kt);
void fwd_winograd_one_plane(const ImageSink& out, const float* x, const float* w, const float* b,
                            const Conv2dParams& p, bool relu, const KernelTable& kt);
void bwd_data_winograd_channels(float* dx, const DySource& dy, const float* w,
                                const Conv2dParams& p, const KernelTable& kt);
void bwd_data_winograd_tiles(float* dx, const DySource& dy, const float* w, const Conv2dParams& p,
                             const KernelTable& kt);
// The tiles in the lanes as F(4x2, 5x5): 4 output rows x 2 columns per tile.
void fwd_winograd_tiles_4x2(const ImageSink& out, const float* x, const float* w, const float* b,
                            const Conv2dParams& p, bool relu, const KernelTable& kt);
void bwd_data_winograd_tiles_4x2(float* dx, const DySource& dy, const float* w,
                                 const Conv2dParams& p, const KernelTable& kt);
void bwd_data_winograd_transposed(float* dx, const DySource& dy, const float* w,
                                  const Conv2dParams& p, const KernelTable& kt);
void bwd_weights_winograd_channels(float* dw, float* db, const DySource& dy, const float* x,
                                   const Conv2dParams& p, const KernelTable& kt);

}  // namespace cpu
}  // namespace fastconv
