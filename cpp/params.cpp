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

// Every dimension of a tensor within kMaxDim and its element count within kMaxNumel.
void check_limits(Shape4 s, const char* name) {
  FC_CHECK(s.n <= kMaxDim && s.c <= kMaxDim && s.h <= kMaxDim && s.w <= kMaxDim, name,
           " sizes must each be at most ", kMaxDim, ", got ", shape_str(s));
  FC_CHECK(checked_numel({s.n, s.c, s.h, s.w}) >= 0, name, " ", shape_str(s), " has more than ",
           kMaxNumel, " (2^48) elements");
}

// A stride / dilation / kernel_size / padding pair within [lo, kMaxDim] on both axes.
void check_pair(Pair p, int64_t lo, const char* name) {
  FC_CHECK(p.h >= lo && p.h <= kMaxDim && p.w >= lo && p.w <= kMaxDim, name, " must be in [", lo,
           ", ", kMaxDim, "], got ", pair_str(p));
}

// The padded input (H + top + bottom, W + left + right) within kMaxDim, and one padded image of
// `channels` planes (the drivers' per-image workspaces) within kMaxNumel.
void check_padded(Shape4 x, const Padding4& pad, int64_t channels, const char* padding_name) {
  const int64_t ph = x.h + pad.top + pad.bottom, pw = x.w + pad.left + pad.right;
  FC_CHECK(ph <= kMaxDim && pw <= kMaxDim, padding_name, " (", pad.top, ", ", pad.left, ", ",
           pad.bottom, ", ", pad.right, ") on input ", shape_str(x), " gives a padded input ",
           pair_str({ph, pw}), " larger than ", kMaxDim, " on an axis");
  FC_CHECK(checked_numel({channels, ph, pw}) >= 0, padding_name, " (", pad.top, ", ", pad.left,
           ", ", pad.bottom, ", ", pad.right, ") on input ", shape_str(x), " gives padded images of ",
           channels, " x ", ph, " x ", pw, ", more than ", kMaxNumel, " (2^48) elements");
}

}  // namespace


int64_t checked_numel(std::initializer_list<int64_t> factors) {
  int64_t n = 1;
  for (int64_t f : factors) {
    if (f < 0) return -1;
    if (f == 0) n = 0;
  }
  if (n == 0) return 0;  // an empty tensor, whatever its other sizes
  for (int64_t f : factors) {
    if (f > kMaxNumel / n) return -1;  // n * f > kMaxNumel, tested without forming it
    n *= f;
  }
  return n;
}

void check_shape(Shape4 s, const char* name) {
  FC_CHECK(s.n >= 0 && s.c >= 0 && s.h >= 0 && s.w >= 0, name,
           " must not have negative sizes, got ", shape_str(s));
  check_limits(s, name);
}

PaddingSpec padding_spec(const std::string& mode, Pair pad) {
  PaddingSpec s;
  if (mode == "valid") s.mode = PadMode::Valid;
  else if (mode == "same") s.mode = PadMode::Same;
  else if (mode == "explicit") s.mode = PadMode::Explicit;
  else throw ValueError(str_cat("padding must be an int, an (h, w) pair, 'valid' or 'same', got '", mode, "'"));
  s.pad = pad;
  return s;
}

Conv2dParams make_conv2d_params(Shape4 x, Shape4 w, Pair stride, PaddingSpec padding,
                                Pair dilation, int64_t groups) {
  // Ranges first: every later sum or product of two checked values fits in int64.
  FC_CHECK(x.n >= 0 && x.c >= 1 && x.h >= 1 && x.w >= 1,
           "input must have shape (N, C_in, H, W) with C_in, H, W >= 1, got ", shape_str(x));
  check_limits(x, "input");
  FC_CHECK(w.n >= 1 && w.c >= 1 && w.h >= 1 && w.w >= 1,
           "weight must have shape (C_out, C_in/groups, KH, KW) with every size >= 1, got ",
           shape_str(w));
  check_limits(w, "weight");
  FC_CHECK(groups >= 1 && groups <= kMaxDim, "groups must be in [1, ", kMaxDim, "], got ", groups);
  check_pair(stride, 1, "stride");
  check_pair(dilation, 1, "dilation");
  if (padding.mode == PadMode::Explicit) check_pair(padding.pad, 0, "padding");

  FC_CHECK(x.c % groups == 0, "groups=", groups, " must divide the input channels C_in=", x.c);
  FC_CHECK(w.n % groups == 0, "groups=", groups, " must divide the output channels C_out=", w.n);
  FC_CHECK(w.c * groups == x.c, "weight has ", w.c, " input channels per group but input has C_in=",
           x.c, " with groups=", groups, " (expected weight.shape[1] == ", x.c / groups, ")");
  const int64_t span_h = dilation.h * (w.h - 1) + 1, span_w = dilation.w * (w.w - 1) + 1;
  FC_CHECK(span_h <= kMaxDim && span_w <= kMaxDim, "dilation ", pair_str(dilation),
           " with kernel ", pair_str({w.h, w.w}), " gives a dilated kernel ",
           pair_str({span_h, span_w}), " larger than ", kMaxDim, " on an axis");

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
      split(span_h - 1, &p.pad.top, &p.pad.bottom);
      split(span_w - 1, &p.pad.left, &p.pad.right);
      break;
    case PadMode::Explicit:
      p.pad = {padding.pad.h, padding.pad.w, padding.pad.h, padding.pad.w};
      break;
  }
  check_padded(x, p.pad, x.c > w.n ? x.c : w.n, "padding");
  const int64_t ph = x.h + p.pad.top + p.pad.bottom, pw = x.w + p.pad.left + p.pad.right;
  FC_CHECK(span_h <= ph && span_w <= pw, "kernel size (dilated) ", pair_str({span_h, span_w}),
           " is larger than the padded input ", pair_str({ph, pw}));
  p.y = {x.n, w.n, conv_out_size(x.h, p.pad.top, p.pad.bottom, w.h, stride.h, dilation.h),
         conv_out_size(x.w, p.pad.left, p.pad.right, w.w, stride.w, dilation.w)};
  check_limits(p.y, "output");
  return p;
}

Pool2dParams make_pool2d_params(Shape4 x, Pair kernel, Pair stride, PaddingSpec padding,
                                Pair dilation, bool ceil_mode) {
  FC_CHECK(x.n >= 0 && x.c >= 1 && x.h >= 1 && x.w >= 1,
           "input must have shape (N, C, H, W) with C, H, W >= 1, got ", shape_str(x));
  check_limits(x, "input");
  check_pair(kernel, 1, "kernel_size");
  check_pair(stride, 1, "stride");
  check_pair(dilation, 1, "dilation");
  const bool plain = dilation.h == 1 && dilation.w == 1 && !ceil_mode;
  FC_CHECK(plain || padding.mode != PadMode::Same,
           "dilation and ceil_mode need explicit or 'valid' padding, got padding='same'");
  Pool2dParams p{};
  p.x = x;
  p.kernel = kernel;
  p.stride = stride;
  p.dilation = dilation;
  p.ceil_mode = ceil_mode;
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
      check_pair(padding.pad, 0, "padding");
      FC_CHECK(padding.pad.h <= kernel.h / 2 && padding.pad.w <= kernel.w / 2,
               "padding must be at most half the kernel_size ", pair_str(kernel), ", got ",
               pair_str(padding.pad));
      p.pad = {padding.pad.h, padding.pad.w, padding.pad.h, padding.pad.w};
      break;
  }
  check_padded(x, p.pad, x.c, "padding");
  const int64_t ph = x.h + p.pad.top + p.pad.bottom, pw = x.w + p.pad.left + p.pad.right;
  const Pair span{dilation.h * (kernel.h - 1) + 1, dilation.w * (kernel.w - 1) + 1};
  // PyTorch's pooling_output_shape: with ceil_mode the size rounds up, but the last window must
  // start inside the input or its top/left padding.
  const auto out_size = [&](int64_t in, int64_t lo, int64_t total, int64_t span_k, int64_t s) {
    int64_t o = (total - span_k + (ceil_mode ? s - 1 : 0)) / s;  // may be -1: checked below
    o = (total - span_k + (ceil_mode ? s - 1 : 0) >= 0) ? o + 1 : 0;
    if (ceil_mode && o > 0 && (o - 1) * s >= in + lo) --o;
    return o;
  };
  p.y = {x.n, x.c, out_size(x.h, p.pad.top, ph, span.h, stride.h),
         out_size(x.w, p.pad.left, pw, span.w, stride.w)};
  FC_CHECK(p.y.h >= 1 && p.y.w >= 1, "kernel_size ", pair_str(kernel),
           plain ? std::string() : str_cat(" (dilated: ", pair_str(span), ")"),
           " is larger than the padded input ", pair_str({ph, pw}));
  // A dilated window that starts in the padding can step over every input cell (PyTorch then
  // returns -inf and an index outside the plane); refuse that geometry instead.
  const auto hits_input = [](int64_t in, int64_t lo, int64_t k, int64_t s, int64_t d, int64_t n) {
    for (int64_t o = 0; o < n && o * s - lo < 0; ++o) {
      const int64_t start = o * s - lo, first = (-start + d - 1) / d;
      if (first >= k || start + first * d >= in) return false;
    }
    return true;
  };
  FC_CHECK(hits_input(x.h, p.pad.top, kernel.h, stride.h, dilation.h, p.y.h) &&
               hits_input(x.w, p.pad.left, kernel.w, stride.w, dilation.w, p.y.w),
           "padding ", pair_str({p.pad.top, p.pad.left}), " with dilation ", pair_str(dilation),
           " leaves a pooling window without any input cell");
  check_limits(p.y, "output");
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
