// params.cpp — validation and output-size resolution for every backend (see params.h).
#include "fastconv/params.h"

#include "fastconv/error.h"

namespace fastconv {
namespace {

std::string shape_str(Shape4 s) { return str_cat("(", s.n, ", ", s.c, ", ", s.h, ", ", s.w, ")"); }
std::string pair_str(Pair p) { return str_cat("(", p.h, ", ", p.w, ")"); }

// Split a total padding so the extra element goes to the bottom/right (TensorFlow/PyTorch "same").
void split(int64_t total, int64_t* lo, int64_t* hi) {
  *lo = total / 2;
  *hi = total - *lo;
}

}  // namespace

Conv2dParams make_conv2d_params(Shape4 x, Shape4 w, Pair stride, PaddingSpec padding,
                                Pair dilation, int64_t groups) {
  FC_CHECK(x.n >= 0 && x.c >= 1 && x.h >= 1 && x.w >= 1,
           "input must have shape (N, C_in, H, W) with C_in, H, W >= 1, got ", shape_str(x));
  FC_CHECK(w.n >= 1 && w.c >= 1 && w.h >= 1 && w.w >= 1,
           "weight must have shape (C_out, C_in/groups, KH, KW) with every size >= 1, got ",
           shape_str(w));
  FC_CHECK(groups >= 1, "groups must be >= 1, got ", groups);
  FC_CHECK(x.c % groups == 0, "groups=", groups, " must divide the input channels C_in=", x.c);
  FC_CHECK(w.n % groups == 0, "groups=", groups, " must divide the output channels C_out=", w.n);
  FC_CHECK(w.c * groups == x.c, "weight has ", w.c, " input channels per group but input has C_in=",
           x.c, " with groups=", groups, " (expected weight.shape[1] == ", x.c / groups, ")");
  FC_CHECK(stride.h >= 1 && stride.w >= 1, "stride must be >= 1, got ", pair_str(stride));
  FC_CHECK(dilation.h >= 1 && dilation.w >= 1, "dilation must be >= 1, got ", pair_str(dilation));

  Conv2dParams p{};
  p.x = x;
  p.wt = w;
  p.stride = stride;
  p.dilation = dilation;
  p.groups = groups;
  switch (padding.mode) {
    case PadMode::Valid:
      p.pad = {0, 0, 0, 0};
      break;
    case PadMode::Same:
      FC_CHECK(stride.h == 1 && stride.w == 1,
               "padding='same' requires stride 1, got stride=", pair_str(stride));
      split(dilation.h * (w.h - 1), &p.pad.top, &p.pad.bottom);
      split(dilation.w * (w.w - 1), &p.pad.left, &p.pad.right);
      break;
    case PadMode::Explicit:
      FC_CHECK(padding.pad.h >= 0 && padding.pad.w >= 0, "padding must be >= 0, got ",
               pair_str(padding.pad));
      p.pad = {padding.pad.h, padding.pad.w, padding.pad.h, padding.pad.w};
      break;
  }
  const int64_t span_h = dilation.h * (w.h - 1) + 1, span_w = dilation.w * (w.w - 1) + 1;
  const int64_t ph = x.h + p.pad.top + p.pad.bottom, pw = x.w + p.pad.left + p.pad.right;
  FC_CHECK(span_h <= ph && span_w <= pw, "kernel size (dilated) ", pair_str({span_h, span_w}),
           " is larger than the padded input ", pair_str({ph, pw}));
  p.y = {x.n, w.n, conv_out_size(x.h, p.pad.top, p.pad.bottom, w.h, stride.h, dilation.h),
         conv_out_size(x.w, p.pad.left, p.pad.right, w.w, stride.w, dilation.w)};
  return p;
}

Pool2dParams make_pool2d_params(Shape4 x, Pair kernel, Pair stride, PaddingSpec padding) {
  FC_CHECK(x.n >= 0 && x.c >= 1 && x.h >= 1 && x.w >= 1,
           "input must have shape (N, C, H, W) with C, H, W >= 1, got ", shape_str(x));
  FC_CHECK(kernel.h >= 1 && kernel.w >= 1, "kernel_size must be >= 1, got ", pair_str(kernel));
  FC_CHECK(stride.h >= 1 && stride.w >= 1, "stride must be >= 1, got ", pair_str(stride));
  Pool2dParams p{};
  p.x = x;
  p.kernel = kernel;
  p.stride = stride;
  switch (padding.mode) {
    case PadMode::Valid:
      p.pad = {0, 0, 0, 0};
      break;
    case PadMode::Same: {
      // TensorFlow's rule: out = ceil(in / stride), extra padding at the bottom/right.
      const int64_t oh = (x.h + stride.h - 1) / stride.h, ow = (x.w + stride.w - 1) / stride.w;
      const int64_t th = (oh - 1) * stride.h + kernel.h - x.h;
      const int64_t tw = (ow - 1) * stride.w + kernel.w - x.w;
      split(th > 0 ? th : 0, &p.pad.top, &p.pad.bottom);
      split(tw > 0 ? tw : 0, &p.pad.left, &p.pad.right);
      break;
    }
    case PadMode::Explicit:
      FC_CHECK(padding.pad.h >= 0 && padding.pad.w >= 0, "padding must be >= 0, got ",
               pair_str(padding.pad));
      FC_CHECK(padding.pad.h <= kernel.h / 2 && padding.pad.w <= kernel.w / 2,
               "padding must be at most half the kernel_size ", pair_str(kernel), ", got ",
               pair_str(padding.pad));
      p.pad = {padding.pad.h, padding.pad.w, padding.pad.h, padding.pad.w};
      break;
  }
  const int64_t ph = x.h + p.pad.top + p.pad.bottom, pw = x.w + p.pad.left + p.pad.right;
  FC_CHECK(kernel.h <= ph && kernel.w <= pw, "kernel_size ", pair_str(kernel),
           " is larger than the padded input ", pair_str({ph, pw}));
  p.y = {x.n, x.c, conv_out_size(x.h, p.pad.top, p.pad.bottom, kernel.h, stride.h, 1),
         conv_out_size(x.w, p.pad.left, p.pad.right, kernel.w, stride.w, 1)};
  return p;
}

std::string to_string(const Conv2dParams& p) {
  return str_cat("conv2d x=", shape_str(p.x), " w=", shape_str(p.wt), " y=", shape_str(p.y),
                 " stride=", pair_str(p.stride), " dilation=", pair_str(p.dilation), " pad=(",
                 p.pad.top, ",", p.pad.left, ",", p.pad.bottom, ",", p.pad.right, ") groups=",
                 p.groups);
}

std::string to_string(const Pool2dParams& p) {
  return str_cat("maxpool2d x=", shape_str(p.x), " y=", shape_str(p.y), " kernel=",
                 pair_str(p.kernel), " stride=", pair_str(p.stride), " pad=(", p.pad.top, ",",
                 p.pad.left, ",", p.pad.bottom, ",", p.pad.right, ")");
}

}  // namespace fastconv
