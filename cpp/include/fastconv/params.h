// params.h — the one definition of Conv2D / MaxPool2D geometry, shared by every backend.
//
// Shapes are NCHW. Conv2dParams and Pool2dParams carry everything a kernel needs; they are built
// (and validated) once by make_conv2d_params / make_pool2d_params on the host, then passed by value
// to CPU and CUDA kernels alike. The small helpers are FASTCONV_HD so device code can use them.
// Note: output size is not invertible — with stride > 1 several input sizes give the same output
// size, which is why backward entries take the input shape explicitly.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#if defined(__CUDACC__)
#define FASTCONV_HD __host__ __device__ __forceinline__
#else
#define FASTCONV_HD inline
#endif

namespace fastconv {

// Limits on user-supplied geometry. make_conv2d_params / make_pool2d_params check every integer
// against them before any arithmetic on it, and throw ValueError (naming the argument, its value
// and the accepted range) past them:
//   kMaxDim   every size (N, C, H, W, C_out, KH, KW), stride, padding, dilation and groups, and
//             every derived extent (padded size H + pad_top + pad_bottom, dilated kernel span
//             dilation * (KH - 1) + 1, output size): <= 2^31 - 1. Sums of two such values fit
//             in int64 with room to spare, and CUDA's int32 geometry (conv_geom) holds them.
//   kMaxNumel the element count of every tensor (input, weight, output) and of one padded image
//             (max(C_in, C_out) * padded H * padded W, what the drivers' per-image workspaces are
//             built from): <= 2^48. Byte counts and the few-factor products the drivers form from
//             them then fit in int64 / size_t (2^48 floats = 1 PiB: memory runs out first).
constexpr int64_t kMaxDim = (int64_t(1) << 31) - 1;
constexpr int64_t kMaxNumel = int64_t(1) << 48;

struct Shape4 {
  int64_t n, c, h, w;
  FASTCONV_HD int64_t numel() const { return n * c * h * w; }
};

struct Pair {
  int64_t h, w;
};

// Explicit per-side padding; "same"/"valid" are resolved into this before kernels see it.
struct Padding4 {
  int64_t top, left, bottom, right;
};

enum class PadMode { Explicit, Valid, Same };

struct PaddingSpec {
  PadMode mode = PadMode::Explicit;
  Pair pad{0, 0};  // used when mode == Explicit (symmetric per axis)
};

// Number of output positions along one axis; <= 0 means the (dilated) kernel does not fit.
FASTCONV_HD int64_t conv_out_size(int64_t in, int64_t pad_lo, int64_t pad_hi, int64_t kernel,
                                  int64_t stride, int64_t dilation) {
  const int64_t span = dilation * (kernel - 1) + 1;
  const int64_t padded = in + pad_lo + pad_hi;
  return padded < span ? 0 : (padded - span) / stride + 1;
}

struct Conv2dParams {
  Shape4 x;     // input  (N, C_in, H, W)
  Shape4 wt;    // weight (C_out, C_in/groups, KH, KW)
  Shape4 y;     // output (N, C_out, OH, OW)
  Pair stride;
  Pair dilation;
  Padding4 pad;
  int64_t groups;

  FASTCONV_HD int64_t cin_per_group() const { return x.c / groups; }
  FASTCONV_HD int64_t cout_per_group() const { return y.c / groups; }
  FASTCONV_HD int64_t kh() const { return wt.h; }
  FASTCONV_HD int64_t kw() const { return wt.w; }
  // Length of one output element's reduction: C_in/groups * KH * KW.
  FASTCONV_HD int64_t reduction() const { return wt.c * wt.h * wt.w; }
  // 2 * N * C_out * OH * OW * C_in/groups * KH * KW, the FLOPs of one pass.
  FASTCONV_HD double flops() const { return 2.0 * double(y.numel()) * double(reduction()); }
};

struct Pool2dParams {
  Shape4 x;  // input  (N, C, H, W)
  Shape4 y;  // output (N, C, OH, OW)
  Pair kernel;
  Pair stride;
  Padding4 pad;
  Pair dilation;  // taps y0 + i * dilation (PyTorch's); {1, 1} unless asked for
  bool ceil_mode;  // output sizes rounded up (PyTorch's rule); windows past the end are clipped
};

// The product of `factors`, or -1 when a factor is negative or the product exceeds kMaxNumel
// (never overflows: checked factor by factor).
int64_t checked_numel(std::initializer_list<int64_t> factors);

// ValueError naming `name` unless every dimension of s is in [0, kMaxDim] and its element count
// is at most kMaxNumel (shapes that arrive as tuples: backward entries' input_shape/weight_shape).
void check_shape(Shape4 s, const char* name);

// (mode, pad) as ops.py passes padding: mode "explicit", "valid" or "same"; ValueError otherwise.
PaddingSpec padding_spec(const std::string& mode, Pair pad);

// Validate and build. Throw ValueError (see error.h) with a message naming the offending argument.
Conv2dParams make_conv2d_params(Shape4 x, Shape4 w, Pair stride, PaddingSpec padding,
                                Pair dilation, int64_t groups);
// dilation and ceil_mode as PyTorch's max_pool2d (CPU and CUDA kernels).
// They need explicit or 'valid' padding.
Pool2dParams make_pool2d_params(Shape4 x, Pair kernel, Pair stride, PaddingSpec padding,
                                Pair dilation = {1, 1}, bool ceil_mode = false);

std::string to_string(const Conv2dParams& p);
std::string to_string(const Pool2dParams& p);

}  // namespace fastconv
