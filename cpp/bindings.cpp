// bindings.cpp — the main pybind11 file: module fastconv._C (CUDA entries: bindings_cuda.cpp; the
// pre-validated pointer entries fastconv.torch calls: bindings_plan.cpp).
//
// Arrays arrive as C-contiguous float32 (python/fastconv/ops.py converts and checks dtypes and
// dimensions first); geometry is validated by params.cpp, whose ValueError becomes Python's
// ValueError; std::bad_alloc becomes MemoryError. Kernels run with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "fastconv/config.h"
#include "fastconv/conv_algos.h"
#include "fastconv/cpu_kernels.h"
#include "fastconv/error.h"
#include "fastconv/ops.h"
#include "fastconv/output_cache.h"
#include "fastconv/params.h"
#include "bindings_args.h"
#include "bindings_arrays.h"
#include "fastconv/parallel.h"
#include "fastconv/train_ops.h"

namespace py = pybind11;
using namespace fastconv;

using bind::CodeArray;
using bind::FloatArray;
using bind::IndexArray;

void register_plan_bindings(py::module_& m);   // bindings_plan.cpp
void register_train_bindings(py::module_& m);  // bindings_train.cpp
#ifdef FASTCONV_WITH_CUDA
void register_cuda_bindings(py::module_& m);  // bindings_cuda.cpp
#endif

namespace {

using bind::int_arg;
using bind::pair_arg;
using bind::padding_arg;
using bind::shape_arg;
using Obj = const py::object&;  // an integer argument, converted by bindings_args.h
using bind::cached_array;
using bind::OptArray;
using bind::out_data;
using bind::shape_str;

Shape4 shape_of(const py::array& a, const char* name) {
  FC_CHECK(a.ndim() == 4, name, " must be 4-D (N, C, H, W), got ", a.ndim(), " dimensions");
  return {a.shape(0), a.shape(1), a.shape(2), a.shape(3)};
}
bool same(Shape4 a, Shape4 b) { return a.n == b.n && a.c == b.c && a.h == b.h && a.w == b.w; }
std::string str(Shape4 s) { return str_cat("(", s.n, ", ", s.c, ", ", s.h, ", ", s.w, ")"); }

FloatArray new_array(Shape4 s) { return cached_array<float>({s.n, s.c, s.h, s.w}); }

std::vector<py::ssize_t> dims(Shape4 s) { return {s.n, s.c, s.h, s.w}; }

Conv2dParams conv_params(Shape4 x, Shape4 w, Obj stride, const std::string& mode, Obj pad,
                         Obj dilation, Obj groups) {
  // converted one by one, in the Python signature's order (argument evaluation order is unspecified)
  const Pair s = pair_arg(stride, "stride");
  const PaddingSpec ps = padding_arg(mode, pad);
  const Pair d = pair_arg(dilation, "dilation");
  return make_conv2d_params(x, w, s, ps, d, int_arg(groups, "groups"));
}

// The algorithm registry's view of a call (conv_algos.h): shapes and conv arguments as conv2d takes
// them, validated the same way.
std::vector<std::string> conv2d_algos(const std::string& pass, Obj x, Obj w, Obj stride,
                                      const std::string& mode, Obj pad, Obj dilation, Obj groups) {
  const Shape4 xs = shape_arg(x, "x_shape"), ws = shape_arg(w, "w_shape");
  return cpu::usable_conv_algorithms(pass, conv_params(xs, ws, stride, mode, pad, dilation, groups));
}

std::string conv2d_algo(const std::string& pass, Obj x, Obj w, Obj stride, const std::string& mode,
                        Obj pad, Obj dilation, Obj groups) {
  const Shape4 xs = shape_arg(x, "x_shape"), ws = shape_arg(w, "w_shape");
  return cpu::chosen_conv_algorithm(pass, conv_params(xs, ws, stride, mode, pad, dilation, groups));
}

void check_grad_output(const py::array& dy, Shape4 expected) {
  const Shape4 s = shape_of(dy, "grad_output");
  FC_CHECK(same(s, expected), "grad_output must have the forward output's shape ", str(expected),
           ", got ", str(s));
}

py::array conv2d_fwd(const FloatArray& x, const FloatArray& w, const std::optional<FloatArray>& b,
                     Obj stride, const std::string& mode, Obj pad, Obj dilation,
                     Obj groups, Obj relu_arg, const OptArray& out) {
  const Conv2dParams p = conv_params(shape_of(x, "input"), shape_of(w, "weight"), stride, mode,
                                     pad, dilation, groups);
  const bool relu = bind::bool_arg(relu_arg, "relu");
  if (b) {
    FC_CHECK(b->ndim() == 1 && b->shape(0) == p.y.c, "bias must have shape (C_out,) = (", p.y.c,
             ",), got ", b->ndim(), "-D array with ", b->size(), " elements");
  }
  const float* bp = b ? b->data() : nullptr;
  py::array y = out ? *out : py::array(new_array(p.y));
  float* yp = out ? out_data<float>(y, "out", dims(p.y), {&x, &w, b ? &*b : nullptr})
                  : static_cast<float*>(y.mutable_data());
  {
    py::gil_scoped_release nogil;
    if (p.x.n > 0) cpu::conv2d_fwd__cpu(yp, x.data(), w.data(), bp, p, relu);
  }
  return y;
}

py::array conv2d_bwd_data(const FloatArray& dy, const FloatArray& w, Obj x_shape,
                          Obj stride, const std::string& mode, Obj pad, Obj dilation,
                          Obj groups, const OptArray& out) {
  const Conv2dParams p = conv_params(shape_arg(x_shape, "x_shape"), shape_of(w, "weight"), stride, mode, pad,
                                     dilation, groups);
  check_grad_output(dy, p.y);
  py::array dx = out ? *out : py::array(new_array(p.x));
  float* dxp = out ? out_data<float>(dx, "out", dims(p.x), {&dy, &w})
                   : static_cast<float*>(dx.mutable_data());
  {
    py::gil_scoped_release nogil;
    if (p.x.n > 0) cpu::conv2d_bwd_data__cpu(dxp, dy.data(), w.data(), p);
  }
  return dx;
}

// The (grad_weight, grad_bias) results of a weight-gradient entry: the caller's out= buffers
// (checked, never converted) or new arrays; grad_bias is None without a bias.
struct WeightGrads {
  py::array dw, db;
  float* dwp = nullptr;
  float* dbp = nullptr;

  WeightGrads(const Conv2dParams& p, bool with_bias, const OptArray& out_w, const OptArray& out_b,
              const py::array& a, const py::array& b, const py::array* c = nullptr) {
    FC_CHECK(with_bias || !out_b, "out has a grad_bias buffer but with_bias is False");
    dw = out_w ? *out_w : py::array(new_array(p.wt));
    db = out_b ? *out_b : py::array(FloatArray(std::vector<py::ssize_t>{with_bias ? p.y.c : 0}));
    dwp = out_w ? out_data<float>(dw, "out[0] (grad_weight)", dims(p.wt), {&a, &b, c})
                : static_cast<float*>(dw.mutable_data());
    dbp = !with_bias ? nullptr
          : out_b   ? out_data<float>(db, "out[1] (grad_bias)", {p.y.c}, {&a, &b, c, &dw})
                    : static_cast<float*>(db.mutable_data());
  }
  py::tuple result() const {
    if (dbp == nullptr) return py::make_tuple(dw, py::none());
    return py::make_tuple(dw, db);
  }
};

py::tuple conv2d_bwd_weights(const FloatArray& dy, const FloatArray& x, Obj w_shape,
                             Obj stride, const std::string& mode, Obj pad, Obj dilation,
                             Obj groups, Obj with_bias_arg, const OptArray& out_w,
                             const OptArray& out_b) {
  const Conv2dParams p = conv_params(shape_of(x, "input"), shape_arg(w_shape, "w_shape"), stride, mode, pad,
                                     dilation, groups);
  check_grad_output(dy, p.y);
  const bool with_bias = bind::bool_arg(with_bias_arg, "with_bias");
  const WeightGrads g(p, with_bias, out_w, out_b, dy, x);
  {
    py::gil_scoped_release nogil;
    cpu::conv2d_bwd_weights__cpu(g.dwp, g.dbp, dy.data(), x.data(), p);
  }
  return g.result();
}

py::tuple maxpool2d_fwd(const FloatArray& x, Obj kernel, Obj stride, const std::string& mode,
                        Obj pad, const OptArray& out_y, const OptArray& out_idx, Obj dilation,
                        bool ceil_mode) {
  const Pair k = pair_arg(kernel, "kernel_size"), s = pair_arg(stride, "stride");
  const Pool2dParams p = make_pool2d_params(shape_of(x, "input"), k, s, padding_arg(mode, pad),
                                            pair_arg(dilation, "dilation"), ceil_mode);
  py::array y = out_y ? *out_y : py::array(new_array(p.y));
  py::array idx = out_idx ? *out_idx : py::array(cached_array<int64_t>(dims(p.y)));
  float* yp = out_y ? out_data<float>(y, "out[0] (output)", dims(p.y), {&x})
                    : static_cast<float*>(y.mutable_data());
  int64_t* ip = out_idx ? out_data<int64_t>(idx, "out[1] (indices)", dims(p.y), {&x, &y})
                        : static_cast<int64_t*>(idx.mutable_data());
  {
    py::gil_scoped_release nogil;
    if (p.x.n > 0) cpu::maxpool2d_fwd__cpu(yp, ip, x.data(), p);
  }
  return py::make_tuple(y, idx);
}

py::array maxpool2d_bwd(const FloatArray& dy, const IndexArray& idx, Obj x_shape_t,
                        const OptArray& out) {
  const Shape4 ys = shape_of(dy, "grad_output");
  const Shape4 is = shape_of(idx, "indices");
  const Shape4 xs = shape_arg(x_shape_t, "input_shape");
  check_shape(xs, "input_shape");
  FC_CHECK(same(ys, is), "indices must have grad_output's shape ", str(ys), ", got ", str(is));
  FC_CHECK(xs.n == ys.n && xs.c == ys.c && xs.h >= 1 && xs.w >= 1,
           "input_shape must be (N, C, H, W) with grad_output's N and C ", str(ys), ", got ", str(xs));
  py::array dx = out ? *out : py::array(new_array(xs));
  float* dxp = out ? out_data<float>(dx, "out", dims(xs), {&dy, &idx})
                   : static_cast<float*>(dx.mutable_data());
  {
    py::gil_scoped_release nogil;
    cpu::maxpool2d_bwd__cpu(dxp, dy.data(), idx.data(), xs, ys);
  }
  return dx;
}

// The fused conv + ReLU + pool's pooled shape (N, C_out, OH/2, OW/2); the conv output must be 2x2+.
Shape4 pooled_shape(const Conv2dParams& p) {
  FC_CHECK(p.y.h >= 2 && p.y.w >= 2, "the convolution's output must be at least 2x2 to be pooled, "
           "got ", p.y.h, "x", p.y.w);
  return {p.y.n, p.y.c, p.y.h / 2, p.y.w / 2};
}

void check_pooled_grad(const py::array& pdy, const py::array& codes, Shape4 ps) {
  const Shape4 gs = shape_of(pdy, "grad_output");
  FC_CHECK(same(gs, ps), "grad_output must have the pooled output's shape ", str(ps), ", got ",
           str(gs));
  const Shape4 cs = shape_of(codes, "codes");
  FC_CHECK(same(cs, ps), "codes must have the pooled output's shape ", str(ps), ", got ", str(cs));
}

// Conv + ReLU + 2x2/2 max-pool in one pass: (pooled, codes), see ops.h.
py::tuple conv2d_relu_maxpool2d(const FloatArray& x, const FloatArray& w,
                                const std::optional<FloatArray>& b, Obj stride,
                                const std::string& mode, Obj pad, Obj dilation, Obj groups,
                                const OptArray& out_y, const OptArray& out_codes) {
  const Conv2dParams p = conv_params(shape_of(x, "input"), shape_of(w, "weight"), stride, mode,
                                     pad, dilation, groups);
  if (b) {
    FC_CHECK(b->ndim() == 1 && b->shape(0) == p.y.c, "bias must have shape (C_out,) = (", p.y.c,
             ",), got ", b->ndim(), "-D array with ", b->size(), " elements");
  }
  const Shape4 ps = pooled_shape(p);
  py::array y = out_y ? *out_y : py::array(new_array(ps));
  py::array codes = out_codes ? *out_codes : py::array(cached_array<uint8_t>(dims(ps)));
  const py::array* bin = b ? &*b : nullptr;
  float* yp = out_y ? out_data<float>(y, "out[0] (output)", dims(ps), {&x, &w, bin})
                    : static_cast<float*>(y.mutable_data());
  uint8_t* cp = out_codes ? out_data<uint8_t>(codes, "out[1] (codes)", dims(ps), {&x, &w, bin, &y})
                          : static_cast<uint8_t*>(codes.mutable_data());
  {
    py::gil_scoped_release nogil;
    if (p.x.n > 0)
      cpu::conv2d_relu_maxpool2d_fwd__cpu(yp, cp, x.data(), w.data(), b ? b->data() : nullptr, p);
  }
  return py::make_tuple(y, codes);
}

// conv2d_bwd_weights of the fused layer, from the pooled gradient and the codes.
py::tuple conv2d_relu_maxpool2d_bwd_weights(const FloatArray& pdy, const CodeArray& codes,
                                            const FloatArray& x, Obj w_shape, Obj stride,
                                            const std::string& mode, Obj pad, Obj dilation,
                                            Obj groups, Obj with_bias_arg, const OptArray& out_w,
                                            const OptArray& out_b) {
  const Conv2dParams p = conv_params(shape_of(x, "input"), shape_arg(w_shape, "w_shape"), stride, mode, pad,
                                     dilation, groups);
  const Shape4 ps = pooled_shape(p);
  check_pooled_grad(pdy, codes, ps);
  const bool with_bias = bind::bool_arg(with_bias_arg, "with_bias");
  const WeightGrads g(p, with_bias, out_w, out_b, pdy, x, &codes);
  {
    py::gil_scoped_release nogil;
    cpu::conv2d_relu_maxpool2d_bwd_weights__cpu(g.dwp, g.dbp, pdy.data(), codes.data(), x.data(), p);
  }
  return g.result();
}

// conv2d_bwd_data of the fused layer, from the pooled gradient and the codes.
py::array conv2d_relu_maxpool2d_bwd_data(const FloatArray& pdy, const CodeArray& codes,
                                         const FloatArray& w, Obj x_shape, Obj stride,
                                         const std::string& mode, Obj pad, Obj dilation,
                                         Obj groups, const OptArray& out) {
  const Conv2dParams p = conv_params(shape_arg(x_shape, "x_shape"), shape_of(w, "weight"), stride, mode, pad,
                                     dilation, groups);
  const Shape4 ps = pooled_shape(p);
  check_pooled_grad(pdy, codes, ps);
  py::array dx = out ? *out : py::array(new_array(p.x));
  float* dxp = out ? out_data<float>(dx, "out", dims(p.x), {&pdy, &codes, &w})
                   : static_cast<float*>(dx.mutable_data());
  {
    py::gil_scoped_release nogil;
    if (p.x.n > 0)
      cpu::conv2d_relu_maxpool2d_bwd_data__cpu(dxp, pdy.data(), codes.data(), w.data(), p);
  }
  return dx;
}

py::array relu_maxpool2d_bwd(const FloatArray& dy, const CodeArray& codes, Obj x_shape_t,
                             const OptArray& out) {
  const Shape4 ys = shape_of(dy, "grad_output");
  const Shape4 cs = shape_of(codes, "codes");
  const Shape4 xs = shape_arg(x_shape_t, "input_shape");
  check_shape(xs, "input_shape");
  FC_CHECK(same(ys, cs), "codes must have grad_output's shape ", str(ys), ", got ", str(cs));
  FC_CHECK(xs.n == ys.n && xs.c == ys.c && xs.h / 2 == ys.h && xs.w / 2 == ys.w && xs.h >= 2 &&
               xs.w >= 2,
           "input_shape must be the pooled layer's input (N, C, H, W) with (N, C, H // 2, W // 2) "
           "= grad_output's shape ", str(ys), ", got ", str(xs));
  py::array dx = out ? *out : py::array(new_array(xs));
  float* dxp = out ? out_data<float>(dx, "out", dims(xs), {&dy, &codes})
                   : static_cast<float*>(dx.mutable_data());
  {
    py::gil_scoped_release nogil;
    if (xs.n > 0 && xs.c > 0) cpu::relu_maxpool2d_bwd__cpu(dxp, dy.data(), codes.data(), xs);
  }
  return dx;
}

// C (m, n) = op(A) @ op(B) for the layer API's Dense layers (op = optional transpose, read in place
// through strides), threaded by cpu::matmul__cpu (matmul_cpu.cpp).
py::array matmul(const FloatArray& a, const FloatArray& b, bool trans_a, bool trans_b,
                 const OptArray& out) {
  FC_CHECK(a.ndim() == 2 && b.ndim() == 2, "matmul operands must be 2-D, got ", a.ndim(), "-D and ",
           b.ndim(), "-D");
  const int64_t m = trans_a ? a.shape(1) : a.shape(0), k = trans_a ? a.shape(0) : a.shape(1);
  const int64_t kb = trans_b ? b.shape(1) : b.shape(0), n = trans_b ? b.shape(0) : b.shape(1);
  FC_CHECK(k == kb, "matmul inner dimensions differ: ", k, " and ", kb);
  py::array c = out ? *out : py::array(cached_array<float>({m, n}));
  float* cp = out ? out_data<float>(c, "out", {m, n}, {&a, &b}) : static_cast<float*>(c.mutable_data());
  cpu::GemmArgs g{};
  g.m = m, g.n = n, g.k = k;
  g.a = a.data(), g.rs_a = trans_a ? 1 : k, g.cs_a = trans_a ? m : 1;
  g.b = b.data(), g.rs_b = trans_b ? 1 : n, g.cs_b = trans_b ? k : 1;
  g.c = cp, g.ldc = n;
  {
    py::gil_scoped_release nogil;
    cpu::matmul__cpu(g);
  }
  return c;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastconv native kernels (use the wrappers in fastconv, which check and convert arrays)";
  py::register_exception_translator([](std::exception_ptr e) {
    try {
      if (e) std::rethrow_exception(e);
    } catch (const ValueError& err) {
      PyErr_SetString(PyExc_ValueError, err.what());
    }
  });

  m.def("conv2d_fwd", &conv2d_fwd, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride"),
        py::arg("padding_mode"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        py::arg("relu") = false, py::arg("out") = py::none(),
        "y = conv2d(x, w) + b (optionally ReLU), NCHW float32; out: an array to write y into.");
  m.def("conv2d_bwd_data", &conv2d_bwd_data, py::arg("dy"), py::arg("w"), py::arg("x_shape"),
        py::arg("stride"), py::arg("padding_mode"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups"), py::arg("out") = py::none(), "dx of conv2d given dy.");
  m.def("conv2d_bwd_weights", &conv2d_bwd_weights, py::arg("dy"), py::arg("x"),
        py::arg("w_shape"), py::arg("stride"), py::arg("padding_mode"), py::arg("padding"),
        py::arg("dilation"), py::arg("groups"), py::arg("with_bias") = true,
        py::arg("out_w") = py::none(), py::arg("out_b") = py::none(), "(dw, db) of conv2d given dy; db is None when with_bias is False.");
  m.def("maxpool2d_fwd", &maxpool2d_fwd, py::arg("x"), py::arg("kernel"), py::arg("stride"),
        py::arg("padding_mode"), py::arg("padding"), py::arg("out_y") = py::none(),
        py::arg("out_indices") = py::none(), py::arg("dilation") = py::make_tuple(1, 1),
        py::arg("ceil_mode") = false, "(y, indices) of 2-D max pooling.");
  m.def("maxpool2d_bwd", &maxpool2d_bwd, py::arg("dy"), py::arg("indices"), py::arg("x_shape"),
        py::arg("out") = py::none(), "dx of max pooling: dy scatter-added into the argmax indices.");

  m.def("conv2d_relu_maxpool2d", &conv2d_relu_maxpool2d, py::arg("x"), py::arg("w"), py::arg("b"),
        py::arg("stride"), py::arg("padding_mode"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups"), py::arg("out_y") = py::none(), py::arg("out_codes") = py::none(),
        "(pooled, codes): 2x2/2 max-pool of relu(conv2d(x, w) + b) with uint8 window codes.");
  m.def("conv2d_relu_maxpool2d_bwd_weights", &conv2d_relu_maxpool2d_bwd_weights, py::arg("dy"),
        py::arg("codes"), py::arg("x"), py::arg("w_shape"), py::arg("stride"),
        py::arg("padding_mode"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        py::arg("with_bias") = true, py::arg("out_w") = py::none(), py::arg("out_b") = py::none(),
        "(dw, db) of the fused conv + ReLU + 2x2 max-pool from the pooled gradient and codes.");
  m.def("conv2d_relu_maxpool2d_bwd_data", &conv2d_relu_maxpool2d_bwd_data, py::arg("dy"),
        py::arg("codes"), py::arg("w"), py::arg("x_shape"), py::arg("stride"),
        py::arg("padding_mode"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        py::arg("out") = py::none(),
        "dx of the fused conv + ReLU + 2x2 max-pool from the pooled gradient and codes.");
  m.def("relu_maxpool2d_bwd", &relu_maxpool2d_bwd, py::arg("dy"), py::arg("codes"),
        py::arg("x_shape"), py::arg("out") = py::none(),
        "Gradient of the pooled ReLU outputs w.r.t. the conv output, from the window codes.");
  m.def("matmul", &matmul, py::arg("a"), py::arg("b"), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("out") = py::none(),
        "C = op(A) @ op(B), float32, op an optional transpose (the layer API's Dense layers).");
  register_train_bindings(m);
  m.def("set_isa", [](const std::string& isa) { cpu::set_isa(isa.c_str()); }, py::arg("isa"));
  m.def("get_isa", [] { return std::string(cpu::kernels().isa); });
  m.def("best_isa", [] { return std::string(cpu::best_isa()); });
  m.def("available_isas", [] {
    std::vector<std::string> out;
    for (const char* isa : {"portable", "avx2", "avx512"})
      if (cpu::isa_supported(isa)) out.emplace_back(isa);
    return out;
  });
  m.def("set_output_cache_limit", [](Obj bytes) {
    const int64_t b = int_arg(bytes, "bytes");
    FC_CHECK(b >= 0, "bytes must be >= 0, got ", b);
    set_output_cache_limit(std::size_t(b));
  }, py::arg("bytes"));
  m.def("output_cache_limit", &output_cache_limit);
  m.def("output_cache_idle_bytes", &output_cache_idle_bytes);
  m.def("set_num_threads", [](Obj n) {
    const int64_t v = int_arg(n, "n");
    FC_CHECK(v >= 1 && v <= 4096, "num_threads must be between 1 and 4096, got ", v);
    set_num_threads(int(v));
  }, py::arg("n"));
  m.def("get_num_threads", &get_num_threads);
  m.def(
      "set_team_parallel",
      [](uintptr_t address) { set_team_parallel(reinterpret_cast<TeamParallelFn>(address)); },
      py::arg("address"),
      "Run parallel work on an OpenMP runtime's team: the address of its GOMP_parallel (0: "
      "fastconv's own pool again). See parallel.h.");
  m.def("team_parallel_set", &team_parallel_set);
  m.def("set_debug_poison", [](Obj on) { set_debug_poison(bind::bool_arg(on, "on")); }, py::arg("on"));
  m.def("get_debug_poison", &debug_poison);
  m.def(
      "maxpool2d_out_shape",
      [](Obj x, Obj kernel, Obj stride, const std::string& mode, Obj pad) {
        const Shape4 xs = shape_arg(x, "input_shape");
        const Pair k = pair_arg(kernel, "kernel_size"), s = pair_arg(stride, "stride");
        const Pool2dParams p = make_pool2d_params(xs, k, s, padding_arg(mode, pad));
        return py::make_tuple(p.y.n, p.y.c, p.y.h, p.y.w);
      },
      py::arg("x_shape"), py::arg("kernel"), py::arg("stride"), py::arg("padding_mode"),
      py::arg("padding"), "max_pool2d's output shape (params.cpp's rule, validated).");
  m.def(
      "maxpool2d_algo",
      [](const std::string& pass, Obj x, Obj kernel, Obj stride, const std::string& mode,
         Obj pad) {
        const Shape4 xs = shape_arg(x, "input_shape");
        const Pair k = pair_arg(kernel, "kernel_size"), s = pair_arg(stride, "stride");
        const Pool2dParams p = make_pool2d_params(xs, k, s, padding_arg(mode, pad));
        if (pass == "fwd") return std::string(cpu::maxpool2d_fwd_uses_simd(p) ? "simd_2x2s2" : "generic");
        FC_CHECK(pass == "bwd", "pass must be 'fwd' or 'bwd', got '", pass, "'");
        return std::string(cpu::maxpool2d_bwd_uses_tiles(p.x, p.y) ? "tiles" : "scatter");
      },
      py::arg("pass"), py::arg("x_shape"), py::arg("kernel"), py::arg("stride"),
      py::arg("padding_mode"), py::arg("padding"),
      "The max-pool kernel `pass` takes on the current CPU path: fwd 'simd_2x2s2' or 'generic', "
      "bwd 'tiles' (the tile writer, per plane, before the scatter) or 'scatter'.");
  m.def(
      "conv2d_out_shape",
      [](Obj x, Obj w, Obj stride, const std::string& mode, Obj pad, Obj dilation, Obj groups) {
        const Shape4 xs = shape_arg(x, "x_shape"), ws = shape_arg(w, "w_shape");
        const Conv2dParams p = conv_params(xs, ws, stride, mode, pad, dilation, groups);
        return py::make_tuple(p.y.n, p.y.c, p.y.h, p.y.w);
      },
      py::arg("x_shape"), py::arg("w_shape"), py::arg("stride"), py::arg("padding_mode"),
      py::arg("padding"), py::arg("dilation"), py::arg("groups"),
      "conv2d's output shape (params.cpp's rule, validated).");
  m.def("conv_algos", &cpu::conv_algorithms, py::arg("pass"));
  m.def("conv2d_algos", &conv2d_algos, py::arg("pass"), py::arg("x_shape"), py::arg("w_shape"),
        py::arg("stride"), py::arg("padding_mode"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups"));
  m.def("conv2d_algo", &conv2d_algo, py::arg("pass"), py::arg("x_shape"), py::arg("w_shape"),
        py::arg("stride"), py::arg("padding_mode"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups"));
  m.def(
      "set_conv_algo",
      [](const std::string& pass, const std::optional<std::string>& name) {
        cpu::set_conv_algorithm(pass, name ? *name : std::string());
      },
      py::arg("pass"), py::arg("name"));
  m.def(
      "get_conv_algo",
      [](const std::string& pass) -> std::optional<std::string> {
        std::string name = cpu::forced_conv_algorithm(pass);
        if (name.empty()) return std::nullopt;
        return name;
      },
      py::arg("pass"));
  m.def("env_settings", [] {
    py::list out;
    for (const EnvSetting& e : env_settings()) {
      py::dict d;
      d["name"] = e.name;
      d["type"] = e.type;
      d["accepts"] = e.accepts;
      d["default"] = e.default_value;
      d["read_by"] = e.read_by;
      d["runtime"] = e.runtime;
      d["meaning"] = e.meaning;
      out.append(d);
    }
    return out;
  });
  m.def(
      "env_value",
      [](const std::string& name) -> py::object {
        for (const EnvSetting& e : env_settings()) {
          if (name != e.name) continue;
          const std::string type = e.type;
          if (type == "int") {
            const std::optional<int64_t> v = env_int(e.name);
            return v ? py::object(py::int_(*v)) : py::object(py::none());
          }
          if (type == "choice") {
            const std::optional<std::string> v = env_choice(e.name);
            return v ? py::object(py::str(*v)) : py::object(py::none());
          }
          if (type == "flag") return py::bool_(env_flag(e.name));
          const char* v = std::getenv(e.name);
          return v != nullptr && *v != '\0' ? py::object(py::str(v)) : py::object(py::none());
        }
        throw ValueError(str_cat("no environment variable ", name, " in fastconv's table"));
      },
      py::arg("name"), "The variable parsed by fastconv's table (ValueError naming it if bad).");
  m.def("set_winograd", &cpu::set_winograd_allowed, py::arg("on"));
  m.def("get_winograd", &cpu::winograd_allowed);
  // params.h's limits on every size / stride / padding / dilation and on element counts.
  m.attr("MAX_DIM") = kMaxDim;
  m.attr("MAX_NUMEL") = kMaxNumel;
  register_plan_bindings(m);
#ifdef FASTCONV_WITH_CUDA
  m.attr("cuda_built") = true;
  register_cuda_bindings(m);
#else
  m.attr("cuda_built") = false;
#endif
}
