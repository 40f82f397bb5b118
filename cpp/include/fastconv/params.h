// params.h — the one definition of Conv2D / MaxPool2D geometry, shared by every backend.
//
// Shapes are NCHW. Conv2dParams and Pool2dParams carry everything a kernel needs; they are built
// (and validated) once by make_conv2d_params / make_pool2d_params on the host, then passed by value
// to CPU and CUDA kernels alike. The small helpers are FASTCONV_HD so device code can use them.
// Note: output size is not invertible — with stride > 1 several input sizes give the same output
// size, which is why backward entries take the input shape explicitly.
#pragma once

#include <cstdint>
#include <string>

#if defined(__CUDACC__)
#define FASTCONV_HD __host__ __device__ __forceinline__
#else
#define FASTCONV_HD inline
#endif

namespace fastconv {

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
};

// Validate and build. Throw ValueError (see error.h) with a message naming the offending argument.
Conv2dParams make_conv2d_params(Shape4 x, Shape4 w, Pair stride, PaddingSpec padding,
                                Pair dilation, int64_t groups);
Pool2dParams make_pool2d_params(Shape4 x, Pair kernel, Pair stride, PaddingSpec padding);

std::string to_string(const Conv2dParams& p);
std::string to_string(const Pool2dParams& p);

}  // namespace fastconv
