// ops.h — the native entry points, one per pass, named by what they produce. Outputs come first,
// then inputs, then parameters (already validated by make_conv2d_params / make_pool2d_params).
// Every pointer is a dense NCHW (or OIHW) float32 buffer; indices are int64 offsets h*W + w.
#pragma once

#include <cstdint>

#include "fastconv/params.h"

namespace fastconv {

// Debug mode for tests: kernels fill outputs and workspaces with NaN before computing, so any
// element a kernel forgets to write shows up.
bool debug_poison();
void set_debug_poison(bool on);

namespace cpu {

// y = conv(x, w) + b, optionally ReLU-clamped. y is (N, C_out, OH, OW); b may be nullptr.
void conv2d_fwd__cpu(float* y, const float* x, const float* w, const float* b,
                     const Conv2dParams& p, bool relu);
// dx = d(loss)/dx given dy = d(loss)/dy. dx is (N, C_in, H, W).
void conv2d_bwd_data__cpu(float* dx, const float* dy, const float* w, const Conv2dParams& p);
// dw = d(loss)/dw (C_out, C_in/groups, KH, KW) and db = sum of dy over N, OH, OW (nullptr: skip).
void conv2d_bwd_weights__cpu(float* dw, float* db, const float* dy, const float* x,
                             const Conv2dParams& p);

// y = window max, idx = flat h*W + w of the winner in its (n, c) plane (first max; NaN wins).
void maxpool2d_fwd__cpu(float* y, int64_t* idx, const float* x, const Pool2dParams& p);
// dx (x_shape) = scatter-add of dy (y_shape) into idx. Throws ValueError on an index out of range.
void maxpool2d_bwd__cpu(float* dx, const float* dy, const int64_t* idx, Shape4 x_shape,
                        Shape4 y_shape);
// Which kernel each pass takes on the current CPU path (the drivers ask these too): the ISA's
// 2x2/2 forward vector kernel; the backward's tile writer (tried per plane before the scatter).
bool maxpool2d_fwd_uses_simd(const Pool2dParams& p);
bool maxpool2d_bwd_uses_tiles(Shape4 x_shape, Shape4 y_shape);

// A conv layer with ReLU followed by a 2x2/2 max-pool (floor), in one pass: py (N, C_out, OH/2,
// OW/2) = the pooled ReLU outputs, codes (uint8, same shape) = winner cell (row*2 + column in the
// window, max_pool2d's winner rule) + 4 where the pooled value is not > 0. Each image is
// convolved into a per-thread buffer and pooled while it is in cache: the full-size activation
// never reaches memory. Needs OH, OW >= 2 (the three fused entries below take that as validated:
// bindings.cpp, pooled_shape).
void conv2d_relu_maxpool2d_fwd__cpu(float* py, uint8_t* codes, const float* x, const float* w,
                                    const float* b, const Conv2dParams& p);
// conv2d_bwd_weights__cpu for that fused layer, from the pooled gradient pdy and the codes: each
// image's full-size gradient is unpooled into a per-thread buffer, never into memory.
void conv2d_relu_maxpool2d_bwd_weights__cpu(float* dw, float* db, const float* pdy,
                                            const uint8_t* codes, const float* x,
                                            const Conv2dParams& p);
// conv2d_bwd_data__cpu for that fused layer, from pdy and the codes (per image, like bwd_weights).
void conv2d_relu_maxpool2d_bwd_data__cpu(float* dx, const float* pdy, const uint8_t* codes,
                                         const float* w, const Conv2dParams& p);
// The pooling alone, over x_shape's planes (N*C planes of H x W; H, W >= 2).
void relu_maxpool2d_fwd__cpu(float* y, uint8_t* codes, const float* x, Shape4 x_shape);
// `planes` consecutive planes, single-threaded (the fused forward's per-image step).
void relu_maxpool2d_codes_planes(float* y, uint8_t* codes, const float* x, int64_t H, int64_t W,
                                 int64_t planes);
// `planes` consecutive planes of relu_maxpool2d_bwd__cpu, single-threaded; ValueError on a code >= 8.
void relu_maxpool2d_unpool_planes(float* dx, const float* dy, const uint8_t* codes, int64_t H,
                                  int64_t W, int64_t planes);
// dx (x_shape: the conv output) = dy at each window's winner where its code is < 4, else 0 (the
// ReLU and pooling backward in one pass). Throws ValueError if a code is >= 8.
void relu_maxpool2d_bwd__cpu(float* dx, const float* dy, const uint8_t* codes, Shape4 x_shape);

}  // namespace cpu
}  // namespace fastconv
