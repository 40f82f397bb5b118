// bindings_cuda.cpp — the pybind11 side of the CUDA kernels: submodule fastconv._C.cuda.
//
// Compiled into _C only when CMake built fastconv_cuda (FASTCONV_WITH_CUDA); bindings.cpp calls
// register_cuda_bindings(m). The entries are deliberately raw: device pointers arrive as Python
// ints, shapes as tuples, the stream as CuPy's stream handle (an int, 0 = legacy default stream).
// python/fastconv/_cuda_ops.py checks and converts the arrays, allocates outputs with CuPy and
// calls these. Geometry is validated here by the same make_conv2d_params / make_pool2d_params the
// CPU uses (ValueError with the same messages). The *_planned entries take that geometry already
// validated, as a fastconv._C.plan.ConvPlan / PoolPlan (bindings_plan.h), which _cuda_ops caches
// per shapes and arguments: a call then converts a handful of scalars instead of re-reading and
// re-checking every shape and pair (the per-call host cost of small layers). Kernels are queued
// with the GIL released; CUDA errors raise RuntimeError (gpu::CudaError is a std::runtime_error).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>

#include "fastconv/error.h"
#include "fastconv/ops_cuda.h"
#include "fastconv/params.h"
#include "bindings_args.h"
#include "bindings_plan.h"

namespace py = pybind11;
using namespace fastconv;

namespace {

using bind::int_arg;
using bind::pair_arg;
using bind::padding_arg;
using bind::shape_arg;
using bind::ConvPlan;
using bind::PoolPlan;
using Obj = const py::object&;  // an integer argument, converted by bindings_args.h

using Shape4T = std::tuple<int64_t, int64_t, int64_t, int64_t>;
Shape4T tuple_of(Shape4 s) { return {s.n, s.c, s.h, s.w}; }


Conv2dParams conv_params(Obj x, Obj w, Obj stride, const std::string& mode, Obj pad, Obj dilation,
                         Obj groups) {
  // converted one by one, in the Python signature's order (argument evaluation order is unspecified)
  const Shape4 xs = shape_arg(x, "x_shape"), ws = shape_arg(w, "w_shape");
  const Pair s = pair_arg(stride, "stride");
  const PaddingSpec ps = padding_arg(mode, pad);
  const Pair d = pair_arg(dilation, "dilation");
  return make_conv2d_params(xs, ws, s, ps, d, int_arg(groups, "groups"));
}

Pool2dParams pool_params(Obj x, Obj kernel, Obj stride, const std::string& mode, Obj pad,
                         Obj dilation, Obj ceil_mode) {
  const Shape4 xs = shape_arg(x, "x_shape");
  const Pair k = pair_arg(kernel, "kernel_size"), s = pair_arg(stride, "stride");
  const PaddingSpec ps = padding_arg(mode, pad);
  return make_pool2d_params(xs, k, s, ps, pair_arg(dilation, "dilation"),
                            bind::bool_arg(ceil_mode, "ceil_mode"));
}

template <class T>
T* ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}
cudaStream_t stream_of(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

// The CPU registry's vocabulary (conv_algos.h): passes "fwd", "bwd_data", "bwd_weights"; a forced
// algorithm by name, None for the automatic choice.
gpu::ConvPass pass_of(const std::string& pass) {
  if (pass == "fwd") return gpu::ConvPass::Fwd;
  if (pass == "bwd_data") return gpu::ConvPass::BwdData;
  FC_CHECK(pass == "bwd_weights", "pass must be 'fwd', 'bwd_data' or 'bwd_weights', got '", pass,
           "'");
  return gpu::ConvPass::BwdWeights;
}

gpu::ConvAlgo algo_of(const std::optional<std::string>& name) {
  if (!name) return gpu::ConvAlgo::Auto;
  if (*name == "direct") return gpu::ConvAlgo::Direct;
  if (*name == "tiled") return gpu::ConvAlgo::Tiled;
  if (*name == "tiled128") return gpu::ConvAlgo::Tiled128;
  if (*name == "tf32") return gpu::ConvAlgo::Tf32;
  throw ValueError(str_cat("conv algorithm must be 'direct', 'tiled', 'tiled128', 'tf32' or None, got '",
                           *name, "'"));
}

std::optional<std::string> algo_name(gpu::ConvAlgo a) {
  switch (a) {
    case gpu::ConvAlgo::Direct: return std::string("direct");
    case gpu::ConvAlgo::Tiled: return std::string("tiled");
    case gpu::ConvAlgo::Tiled128: return std::string("tiled128");
    case gpu::ConvAlgo::Tf32: return std::string("tf32");
    default: return std::nullopt;
  }
}

}  // namespace

void register_cuda_bindings(py::module_& m) {
  py::module_ c = m.def_submodule(
      "cuda", "fastconv CUDA kernels on raw device pointers (use fastconv._cuda_ops, which checks arrays)");

  c.def("device_count", &gpu::device_count, "CUDA devices visible (0 without a driver or device).");
  c.def("device_name", &gpu::device_name, py::arg("device") = 0,
        "Name, compute capability and SM count of a device; RuntimeError when unusable.");
  c.def("runtime_version", &gpu::runtime_version, "CUDA runtime version built in (static).");
  c.def(
      "set_conv_algo",
      [](const std::string& pass, const std::optional<std::string>& name) {
        gpu::set_conv_algo(pass_of(pass), algo_of(name));
      },
      py::arg("pass"), py::arg("name"),
      "Force a pass's conv kernel family: 'direct', 'tiled', 'tiled128', 'tf32' (TF32 tensor "
      "cores, reduced precision) or None (by shape); tests, benches, explicit opt-in.");
  c.def(
      "get_conv_algo",
      [](const std::string& pass) { return algo_name(gpu::conv_algo(pass_of(pass))); },
      py::arg("pass"));
  c.def(
      "conv2d_algo",
      [](const std::string& pass, Obj x, Obj w, Obj stride, const std::string& mode, Obj pad,
         Obj dilation, Obj groups) {
        const Conv2dParams p = conv_params(x, w, stride, mode, pad, dilation, groups);
        return *algo_name(gpu::chosen_conv_algo(pass_of(pass), p));
      },
      py::arg("pass"), py::arg("x_shape"), py::arg("w_shape"), py::arg("stride"),
      py::arg("padding_mode"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
      "The conv kernel family a call of the pass would run: 'direct', 'tiled' or the forced one.");
  c.def("synchronize",
        [](int device, uintptr_t stream) {
          py::gil_scoped_release nogil;
          gpu::set_device(device);
          gpu::synchronize(stream_of(stream));
        },
        py::arg("device"), py::arg("stream"));

  // Geometry only (no device work): validate and return the output shape.
  c.def("conv2d_out_shape",
        [](Obj x, Obj w, Obj stride, const std::string& mode, Obj pad, Obj dilation,
           Obj groups) { return tuple_of(conv_params(x, w, stride, mode, pad, dilation, groups).y); },
        py::arg("x_shape"), py::arg("w_shape"), py::arg("stride"), py::arg("padding_mode"),
        py::arg("padding"), py::arg("dilation"), py::arg("groups"));
  c.def("maxpool2d_out_shape",
        [](Obj x, Obj kernel, Obj stride, const std::string& mode, Obj pad, Obj dilation,
           Obj ceil_mode) {
          return tuple_of(pool_params(x, kernel, stride, mode, pad, dilation, ceil_mode).y);
        },
        py::arg("x_shape"), py::arg("kernel"), py::arg("stride"), py::arg("padding_mode"),
        py::arg("padding"), py::arg("dilation") = py::make_tuple(1, 1),
        py::arg("ceil_mode") = false);
  c.def("conv2d_bwd_weights_workspace_bytes",
        [](int device, Obj x, Obj w, Obj stride, const std::string& mode, Obj pad,
           Obj dilation, Obj groups) {
          const Conv2dParams p = conv_params(x, w, stride, mode, pad, dilation, groups);
          gpu::set_device(device);
          return gpu::conv2d_bwd_weights_workspace__cuda(p);
        },
        py::arg("device"), py::arg("x_shape"), py::arg("w_shape"), py::arg("stride"),
        py::arg("padding_mode"), py::arg("padding"), py::arg("dilation"), py::arg("groups"));

  c.def("conv2d_fwd",
        [](int device, uintptr_t stream, uintptr_t y, uintptr_t x, uintptr_t w, uintptr_t b,
           Obj xs, Obj ws, Obj stride, const std::string& mode, Obj pad,
           Obj dilation, Obj groups, bool relu) {
          const Conv2dParams p = conv_params(xs, ws, stride, mode, pad, dilation, groups);
          py::gil_scoped_release nogil;
          gpu::set_device(device);
          gpu::conv2d_fwd__cuda(ptr<float>(y), ptr<const float>(x), ptr<const float>(w),
                                ptr<const float>(b), p, relu, stream_of(stream));
        },
        py::arg("device"), py::arg("stream"), py::arg("y"), py::arg("x"), py::arg("w"),
        py::arg("b"), py::arg("x_shape"), py::arg("w_shape"), py::arg("stride"),
        py::arg("padding_mode"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        py::arg("relu"), "y = conv2d(x, w) + b on device pointers; b = 0 means no bias.");
  c.def("conv2d_bwd_data",
        [](int device, uintptr_t stream, uintptr_t dx, uintptr_t dy, uintptr_t w, Obj xs,
           Obj ws, Obj stride, const std::string& mode, Obj pad, Obj dilation,
           Obj groups) {
          const Conv2dParams p = conv_params(xs, ws, stride, mode, pad, dilation, groups);
          py::gil_scoped_release nogil;
          gpu::set_device(device);
          gpu::conv2d_bwd_data__cuda(ptr<float>(dx), ptr<const float>(dy), ptr<const float>(w), p,
                                     stream_of(stream));
        },
        py::arg("device"), py::arg("stream"), py::arg("dx"), py::arg("dy"), py::arg("w"),
        py::arg("x_shape"), py::arg("w_shape"), py::arg("stride"), py::arg("padding_mode"),
        py::arg("padding"), py::arg("dilation"), py::arg("groups"));
  c.def("conv2d_bwd_weights",
        [](int device, uintptr_t stream, uintptr_t dw, uintptr_t db, uintptr_t dy, uintptr_t x,
           uintptr_t workspace, size_t workspace_bytes, Obj xs, Obj ws, Obj stride,
           const std::string& mode, Obj pad, Obj dilation, Obj groups) {
          const Conv2dParams p = conv_params(xs, ws, stride, mode, pad, dilation, groups);
          py::gil_scoped_release nogil;
          gpu::set_device(device);
          gpu::conv2d_bwd_weights__cuda(ptr<float>(dw), ptr<float>(db), ptr<const float>(dy),
                                        ptr<const float>(x), p, ptr<float>(workspace),
                                        workspace_bytes, stream_of(stream));
        },
        py::arg("device"), py::arg("stream"), py::arg("dw"), py::arg("db"), py::arg("dy"),
        py::arg("x"), py::arg("workspace"), py::arg("workspace_bytes"), py::arg("x_shape"),
        py::arg("w_shape"), py::arg("stride"), py::arg("padding_mode"), py::arg("padding"),
        py::arg("dilation"), py::arg("groups"), "(dw, db) on device pointers; db = 0 skips it.");
  c.def("maxpool2d_fwd",
        [](int device, uintptr_t stream, uintptr_t y, uintptr_t idx, uintptr_t x, Obj xs,
           Obj kernel, Obj stride, const std::string& mode, Obj pad, Obj dilation,
           Obj ceil_mode) {
          const Pool2dParams p = pool_params(xs, kernel, stride, mode, pad, dilation, ceil_mode);
          py::gil_scoped_release nogil;
          gpu::set_device(device);
          gpu::maxpool2d_fwd__cuda(ptr<float>(y), ptr<int64_t>(idx), ptr<const float>(x), p,
                                   stream_of(stream));
        },
        py::arg("device"), py::arg("stream"), py::arg("y"), py::arg("indices"), py::arg("x"),
        py::arg("x_shape"), py::arg("kernel"), py::arg("stride"), py::arg("padding_mode"),
        py::arg("padding"), py::arg("dilation") = py::make_tuple(1, 1),
        py::arg("ceil_mode") = false);
  // The graph-captured training step (cuda/train_step.cu): per-step values by device pointer.
  c.def("dropout_mask",
        [](int device, uintptr_t stream, uintptr_t mask, int64_t n, double keep,
           uintptr_t seeds, uintptr_t step) {
          FC_CHECK(n >= 0, "n must be >= 0, got ", n);
          FC_CHECK(n == 0 || (mask != 0 && seeds != 0 && step != 0),
                   "dropout_mask: mask, seeds and step must be device pointers");
          py::gil_scoped_release nogil;
          gpu::set_device(device);
          gpu::dropout_mask__cuda(ptr<float>(mask), n, keep, ptr<const uint64_t>(seeds),
                                  ptr<const int32_t>(step), stream_of(stream));
        },
        py::arg("device"), py::arg("stream"), py::arg("mask"), py::arg("n"), py::arg("keep"),
        py::arg("seeds"), py::arg("step"),
        "mask (n float32) = dropout's mask for seed seeds[*step] (uint64 table, int32 counter), "
        "the CPU generator's decisions: (kept ? 1/keep : 0).");
  c.def("adam_update",
        [](int device, uintptr_t stream, uintptr_t p, uintptr_t m, uintptr_t v, uintptr_t g,
           int64_t n, uintptr_t lr_table, uintptr_t step, double beta_1, double beta_2,
           double epsilon) {
          FC_CHECK(n >= 0, "n must be >= 0, got ", n);
          FC_CHECK(n == 0 || (p && m && v && g && lr_table && step),
                   "adam_update: every array must be a device pointer");
          py::gil_scoped_release nogil;
          gpu::set_device(device);
          gpu::adam_update__cuda(ptr<float>(p), ptr<float>(m), ptr<float>(v), ptr<const float>(g),
                                 n, ptr<const float>(lr_table), ptr<const int32_t>(step), beta_1,
                                 beta_2, epsilon, stream_of(stream));
        },
        py::arg("device"), py::arg("stream"), py::arg("p"), py::arg("m"), py::arg("v"),
        py::arg("g"), py::arg("n"), py::arg("lr_table"), py::arg("step"), py::arg("beta_1"),
        py::arg("beta_2"), py::arg("epsilon"),
        "One Adam step in place (float32, n elements) with lr_t = lr_table[*step]; the CPU's "
        "formula and roundings (adam_step.h).");
  c.def("maxpool2d_bwd",
        [](int device, uintptr_t stream, uintptr_t dx, uintptr_t dy, uintptr_t idx, Obj xs,
           Obj ys, const py::object& geometry) {
          // geometry: None or (kernel, stride, padding_mode, padding[, dilation, ceil_mode])
          const Shape4 x_shape = shape_arg(xs, "x_shape"), y_shape = shape_arg(ys, "y_shape");
          check_shape(x_shape, "x_shape");
          check_shape(y_shape, "y_shape");
          std::optional<Pool2dParams> p;
          if (!geometry.is_none()) {
            const char* what =
                "None or (kernel, stride, padding_mode, padding[, dilation, ceil_mode])";
            const bool six = (PyTuple_Check(geometry.ptr()) || PyList_Check(geometry.ptr())) &&
                             py::len(geometry) == 6;
            const py::sequence g = bind::int_seq(geometry, six ? 6 : 4, "geometry", what);
            const py::object one_one = py::make_tuple(1, 1), no = py::bool_(false);
            p = pool_params(xs, g[0], g[1], g[2].cast<std::string>(), g[3],
                            six ? py::object(g[4]) : one_one, six ? py::object(g[5]) : no);
          }
          py::gil_scoped_release nogil;
          gpu::set_device(device);
          gpu::maxpool2d_bwd__cuda(ptr<float>(dx), ptr<const float>(dy), ptr<const int64_t>(idx),
                                   x_shape, y_shape, p ? &*p : nullptr, stream_of(stream));
        },
        py::arg("device"), py::arg("stream"), py::arg("dx"), py::arg("dy"), py::arg("indices"),
        py::arg("x_shape"), py::arg("y_shape"), py::arg("geometry") = py::none(),
        "dx of max pooling; geometry = (kernel, stride, padding_mode, padding[, dilation, "
        "ceil_mode]) selects the deterministic gather kernel, None the atomic scatter.");

  // Planned entries: the same kernels on a geometry validated once (a ConvPlan / PoolPlan); the
  // caller guarantees what the raw entries above assume (dense buffers of the plan's shapes on
  // `device`). No-ops on an empty output, as the raw entries' callers skip those.
  c.def(
      "conv2d_fwd_planned",
      [](const ConvPlan& s, int device, uintptr_t stream, uintptr_t y, uintptr_t x, uintptr_t w,
         uintptr_t b, bool relu) {
        if (s.p.y.numel() == 0) return;
        py::gil_scoped_release nogil;
        gpu::set_device(device);
        gpu::conv2d_fwd__cuda(ptr<float>(y), ptr<const float>(x), ptr<const float>(w),
                              ptr<const float>(b), s.p, relu, stream_of(stream));
      },
      py::arg("plan"), py::arg("device"), py::arg("stream"), py::arg("y"), py::arg("x"),
      py::arg("w"), py::arg("b"), py::arg("relu"), "conv2d_fwd on a ConvPlan; b = 0: no bias.");
  c.def(
      "conv2d_bwd_data_planned",
      [](const ConvPlan& s, int device, uintptr_t stream, uintptr_t dx, uintptr_t dy,
         uintptr_t w) {
        if (s.p.x.numel() == 0) return;
        py::gil_scoped_release nogil;
        gpu::set_device(device);
        gpu::conv2d_bwd_data__cuda(ptr<float>(dx), ptr<const float>(dy), ptr<const float>(w), s.p,
                                   stream_of(stream));
      },
      py::arg("plan"), py::arg("device"), py::arg("stream"), py::arg("dx"), py::arg("dy"),
      py::arg("w"));
  c.def(
      "conv2d_bwd_weights_workspace_planned",
      [](const ConvPlan& s, int device) {
        gpu::set_device(device);
        return gpu::conv2d_bwd_weights_workspace__cuda(s.p);
      },
      py::arg("plan"), py::arg("device"),
      "Workspace bytes of conv2d_bwd_weights_planned now (it follows set_conv_algo).");
  c.def(
      "conv2d_bwd_weights_planned",
      [](const ConvPlan& s, int device, uintptr_t stream, uintptr_t dw, uintptr_t db,
         uintptr_t dy, uintptr_t x, uintptr_t workspace, size_t workspace_bytes) {
        py::gil_scoped_release nogil;
        gpu::set_device(device);
        gpu::conv2d_bwd_weights__cuda(ptr<float>(dw), ptr<float>(db), ptr<const float>(dy),
                                      ptr<const float>(x), s.p, ptr<float>(workspace),
                                      workspace_bytes, stream_of(stream));
      },
      py::arg("plan"), py::arg("device"), py::arg("stream"), py::arg("dw"), py::arg("db"),
      py::arg("dy"), py::arg("x"), py::arg("workspace"), py::arg("workspace_bytes"),
      "conv2d_bwd_weights on a ConvPlan; db = 0 skips the bias gradient.");
  c.def(
      "maxpool2d_fwd_planned",
      [](const PoolPlan& s, int device, uintptr_t stream, uintptr_t y, uintptr_t idx,
         uintptr_t x) {
        if (s.p.y.numel() == 0) return;
        py::gil_scoped_release nogil;
        gpu::set_device(device);
        gpu::maxpool2d_fwd__cuda(ptr<float>(y), ptr<int64_t>(idx), ptr<const float>(x), s.p,
                                 stream_of(stream));
      },
      py::arg("plan"), py::arg("device"), py::arg("stream"), py::arg("y"), py::arg("indices"),
      py::arg("x"));
  c.def(
      "maxpool2d_bwd_planned",
      [](const PoolPlan& s, int device, uintptr_t stream, uintptr_t dx, uintptr_t dy,
         uintptr_t idx) {
        if (s.p.x.numel() == 0) return;
        py::gil_scoped_release nogil;
        gpu::set_device(device);
        gpu::maxpool2d_bwd__cuda(ptr<float>(dx), ptr<const float>(dy), ptr<const int64_t>(idx),
                                 s.p.x, s.p.y, &s.p, stream_of(stream));
      },
      py::arg("plan"), py::arg("device"), py::arg("stream"), py::arg("dx"), py::arg("dy"),
      py::arg("indices"),
      "dx of max pooling with the plan's geometry: the deterministic gather kernel.");
}
