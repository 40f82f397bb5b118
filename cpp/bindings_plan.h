// bindings_plan.h — the once-validated geometries behind fastconv._C.plan (bindings_plan.cpp runs
// the CPU kernels on them) and the planned CUDA entries of fastconv._C.cuda (bindings_cuda.cpp):
// one C++ type each, so a plan made by either submodule is accepted by both.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>

#include "fastconv/error.h"
#include "fastconv/params.h"
#include "bindings_args.h"

namespace fastconv {
namespace bind {

// One conv2d call's geometry, checked by make_conv2d_params (and the bias shape, when given).
struct ConvPlan {
  Conv2dParams p;
  bool poolable;  // the conv output is at least 2x2 (the fused conv + ReLU + pool needs that)

  ConvPlan(const py::object& x, const py::object& w, const py::object& b,
           const py::object& stride, const std::string& mode, const py::object& pad,
           const py::object& dilation, const py::object& groups) {
    const Shape4 xs = shape_arg(x, "x_shape"), ws = shape_arg(w, "w_shape");
    const Pair s = pair_arg(stride, "stride");
    const PaddingSpec ps = padding_arg(mode, pad);
    const Pair d = pair_arg(dilation, "dilation");
    p = make_conv2d_params(xs, ws, s, ps, d, int_arg(groups, "groups"));
    if (!b.is_none()) {  // the bias shape, when there is one: (C_out,)
      const py::sequence bs = int_seq(b, 1, "b_shape", "None or a 1-tuple (C_out,)");
      const int64_t c = int_arg(bs[0], "b_shape");
      FC_CHECK(c == p.y.c, "bias must have shape (C_out,) = (", p.y.c, ",), got (", c, ",)");
    }
    poolable = p.y.h >= 2 && p.y.w >= 2;
  }

  std::optional<std::tuple<int64_t, int64_t, int64_t, int64_t>> pooled_shape() const {
    if (!poolable) return std::nullopt;
    return std::make_tuple(p.y.n, p.y.c, p.y.h / 2, p.y.w / 2);
  }
  void check_poolable() const {
    FC_CHECK(poolable, "the convolution's output must be at least 2x2 to be pooled, got ", p.y.h,
             "x", p.y.w);
  }
};

// One max_pool2d call's geometry, checked by make_pool2d_params.
struct PoolPlan {
  Pool2dParams p;

  PoolPlan(const py::object& x, const py::object& kernel, const py::object& stride,
           const std::string& mode, const py::object& pad, const py::object& dilation,
           bool ceil_mode) {
    const Shape4 xs = shape_arg(x, "x_shape");
    const Pair k = pair_arg(kernel, "kernel_size"), s = pair_arg(stride, "stride");
    const PaddingSpec ps = padding_arg(mode, pad);
    p = make_pool2d_params(xs, k, s, ps, pair_arg(dilation, "dilation"), ceil_mode);
  }
};

}  // namespace bind
}  // namespace fastconv
