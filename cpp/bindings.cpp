// bindings.cpp — the one pybind11 file: module fastconv._C.
//
// Arrays arrive as C-contiguous float32 (python/fastconv/ops.py converts and checks dtypes and
// dimensions first); geometry is validated by params.cpp, whose ValueError becomes Python's
// ValueError; std::bad_alloc becomes MemoryError. Kernels run with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <tuple>

#include "fastconv/cpu_kernels.h"
#include "fastconv/error.h"
#include "fastconv/ops.h"
#include "fastconv/params.h"
#include "bindings_args.h"
#include "fastconv/parallel.h"

namespace py = pybind11;
using namespace fastconv;

using FloatArray = py::array_t<float, py::array::c_style>;
using IndexArray = py::array_t<int64_t, py::array::c_style>;

#ifdef FASTCONV_WITH_CUDA
void register_cuda_bindings(py::module_& m);  // bindings_cuda.cpp
#endif

namespace {

using bind::Pair2;
using bind::Shape4T;
using bind::pair_of;
using bind::padding_of;
using bind::shape_of;

Shape4 shape_of(const py::array& a, const char* name) {
  FC_CHECK(a.ndim() == 4, name, " must be 4-D (N, C, H, W), got ", a.ndim(), " dimensions");
  return {a.shape(0), a.shape(1), a.shape(2), a.shape(3)};
}
bool same(Shape4 a, Shape4 b) { return a.n == b.n && a.c == b.c && a.h == b.h && a.w == b.w; }
std::string str(Shape4 s) { return str_cat("(", s.n, ", ", s.c, ", ", s.h, ", ", s.w, ")"); }


FloatArray new_array(Shape4 s) { return FloatArray({s.n, s.c, s.h, s.w}); }

Conv2dParams conv_params(Shape4 x, Shape4 w, const Pair2& stride, const std::string& mode,
                         const Pair2& pad, const Pair2& dilation, int64_t groups) {
  return make_conv2d_params(x, w, pair_of(stride), padding_of(mode, pad), pair_of(dilation), groups);
}

void check_grad_output(const py::array& dy, Shape4 expected) {
  const Shape4 s = shape_of(dy, "grad_output");
  FC_CHECK(same(s, expected), "grad_output must have the forward output's shape ", str(expected),
           ", got ", str(s));
}

FloatArray conv2d_fwd(const FloatArray& x, const FloatArray& w, const std::optional<FloatArray>& b,
                      Pair2 stride, const std::string& mode, Pair2 pad, Pair2 dilation,
                      int64_t groups, bool relu) {
  const Conv2dParams p = conv_params(shape_of(x, "input"), shape_of(w, "weight"), stride, mode,
                                     pad, dilation, groups);
  if (b) {
    FC_CHECK(b->ndim() == 1 && b->shape(0) == p.y.c, "bias must have shape (C_out,) = (", p.y.c,
             ",), got ", b->ndim(), "-D array with ", b->size(), " elements");
  }
  FloatArray y = new_array(p.y);
  const float* bp = b ? b->data() : nullptr;
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    if (p.x.n > 0) cpu::conv2d_fwd__cpu(yp, x.data(), w.data(), bp, p, relu);
  }
  return y;
}

FloatArray conv2d_bwd_data(const FloatArray& dy, const FloatArray& w, Shape4T x_shape,
                           Pair2 stride, const std::string& mode, Pair2 pad, Pair2 dilation,
                           int64_t groups) {
  const Conv2dParams p = conv_params(shape_of(x_shape), shape_of(w, "weight"), stride, mode, pad,
                                     dilation, groups);
  check_grad_output(dy, p.y);
  FloatArray dx = new_array(p.x);
  float* dxp = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    if (p.x.n > 0) cpu::conv2d_bwd_data__cpu(dxp, dy.data(), w.data(), p);
  }
  return dx;
}

py::tuple conv2d_bwd_weights(const FloatArray& dy, const FloatArray& x, Shape4T w_shape,
                             Pair2 stride, const std::string& mode, Pair2 pad, Pair2 dilation,
                             int64_t groups, bool with_bias) {
  const Conv2dParams p = conv_params(shape_of(x, "input"), shape_of(w_shape), stride, mode, pad,
                                     dilation, groups);
  check_grad_output(dy, p.y);
  FloatArray dw = new_array(p.wt);
  FloatArray db(std::vector<py::ssize_t>{with_bias ? p.y.c : 0});
  float* dwp = dw.mutable_data();
  float* dbp = with_bias ? db.mutable_data() : nullptr;
  {
    py::gil_scoped_release nogil;
    cpu::conv2d_bwd_weights__cpu(dwp, dbp, dy.data(), x.data(), p);
  }
  if (!with_bias) return py::make_tuple(dw, py::none());
  return py::make_tuple(dw, db);
}

py::tuple maxpool2d_fwd(const FloatArray& x, Pair2 kernel, Pair2 stride, const std::string& mode,
                        Pair2 pad) {
  const Pool2dParams p =
      make_pool2d_params(shape_of(x, "input"), pair_of(kernel), pair_of(stride), padding_of(mode, pad));
  FloatArray y = new_array(p.y);
  IndexArray idx(std::vector<py::ssize_t>{p.y.n, p.y.c, p.y.h, p.y.w});
  float* yp = y.mutable_data();
  int64_t* ip = idx.mutable_data();
  {
    py::gil_scoped_release nogil;
    if (p.x.n > 0) cpu::maxpool2d_fwd__cpu(yp, ip, x.data(), p);
  }
  return py::make_tuple(y, idx);
}

FloatArray maxpool2d_bwd(const FloatArray& dy, const IndexArray& idx, Shape4T x_shape_t) {
  const Shape4 ys = shape_of(dy, "grad_output");
  const Shape4 is = shape_of(idx, "indices");
  const Shape4 xs = shape_of(x_shape_t);
  FC_CHECK(same(ys, is), "indices must have grad_output's shape ", str(ys), ", got ", str(is));
  FC_CHECK(xs.n == ys.n && xs.c == ys.c && xs.h >= 1 && xs.w >= 1,
           "input_shape must be (N, C, H, W) with grad_output's N and C ", str(ys), ", got ", str(xs));
  FloatArray dx = new_array(xs);
  float* dxp = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::maxpool2d_bwd__cpu(dxp, dy.data(), idx.data(), xs, ys);
  }
  return dx;
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
        py::arg("relu") = false, "y = conv2d(x, w) + b (optionally ReLU), NCHW float32.");
  m.def("conv2d_bwd_data", &conv2d_bwd_data, py::arg("dy"), py::arg("w"), py::arg("x_shape"),
        py::arg("stride"), py::arg("padding_mode"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups"), "dx of conv2d given dy.");
  m.def("conv2d_bwd_weights", &conv2d_bwd_weights, py::arg("dy"), py::arg("x"),
        py::arg("w_shape"), py::arg("stride"), py::arg("padding_mode"), py::arg("padding"),
        py::arg("dilation"), py::arg("groups"), py::arg("with_bias") = true,
        "(dw, db) of conv2d given dy; db is None when with_bias is False.");
  m.def("maxpool2d_fwd", &maxpool2d_fwd, py::arg("x"), py::arg("kernel"), py::arg("stride"),
        py::arg("padding_mode"), py::arg("padding"), "(y, indices) of 2-D max pooling.");
  m.def("maxpool2d_bwd", &maxpool2d_bwd, py::arg("dy"), py::arg("indices"), py::arg("x_shape"),
        "dx of max pooling: dy scatter-added into the argmax indices.");

  m.def("set_isa", [](const std::string& isa) { cpu::set_isa(isa.c_str()); }, py::arg("isa"));
  m.def("get_isa", [] { return std::string(cpu::kernels().isa); });
  m.def("best_isa", [] { return std::string(cpu::best_isa()); });
  m.def("available_isas", [] {
    std::vector<std::string> out;
    for (const char* isa : {"portable", "avx2", "avx512"})
      if (cpu::isa_supported(isa)) out.emplace_back(isa);
    return out;
  });
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("get_num_threads", &get_num_threads);
  m.def("set_debug_poison", &set_debug_poison, py::arg("on"));
  m.def("get_debug_poison", &debug_poison);
#ifdef FASTCONV_WITH_CUDA
  m.attr("cuda_built") = true;
  register_cuda_bindings(m);
#else
  m.attr("cuda_built") = false;
#endif
}
