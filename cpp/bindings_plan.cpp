// bindings_plan.cpp — validate once, then call often: submodule fastconv._C.plan.
//
// A ConvPlan / PoolPlan holds one call's geometry, validated by the same make_conv2d_params /
// make_pool2d_params as every other entry (ValueError naming the argument), and its methods run
// the CPU kernels on raw host pointers (Python ints) with no further check. fastconv.torch caches
// one plan per (shapes, geometry) and passes its tensors' data_ptr(): a layer's three passes cost
// one validation per shape instead of three per step, and no NumPy view is built per call.
// The caller's contract (python/fastconv/ops.py, "pre-validated entries"): every pointer is to a
// C-contiguous buffer of the dtype and shape the plan names (x_shape, w_shape, y_shape,
// pooled_shape), outputs are fresh (sharing no byte with an input), and 0 means "no bias".
// Kernels run with the GIL released, as in bindings.cpp.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>

#include "fastconv/error.h"
#include "fastconv/ops.h"
#include "fastconv/params.h"
#include "bindings_args.h"
#include "bindings_plan.h"

namespace py = pybind11;
using namespace fastconv;

namespace {

using Obj = const py::object&;
using bind::ConvPlan;
using bind::PoolPlan;
using Shape4T = std::tuple<int64_t, int64_t, int64_t, int64_t>;
Shape4T tuple_of(Shape4 s) { return {s.n, s.c, s.h, s.w}; }

template <class T>
T* ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

}  // namespace

void register_plan_bindings(py::module_& m) {
  py::module_ c = m.def_submodule(
      "plan", "CPU kernels on raw host pointers behind a once-validated geometry "
              "(fastconv.torch's hot path; use fastconv.ops' pre-validated entries)");

  py::class_<ConvPlan>(c, "ConvPlan", py::module_local())
      .def(py::init<Obj, Obj, Obj, Obj, const std::string&, Obj, Obj, Obj>(), py::arg("x_shape"),
           py::arg("w_shape"), py::arg("b_shape"), py::arg("stride"), py::arg("padding_mode"),
           py::arg("padding"), py::arg("dilation"), py::arg("groups"))
      .def_property_readonly("x_shape", [](const ConvPlan& s) { return tuple_of(s.p.x); })
      .def_property_readonly("w_shape", [](const ConvPlan& s) { return tuple_of(s.p.wt); })
      .def_property_readonly("y_shape", [](const ConvPlan& s) { return tuple_of(s.p.y); })
      .def_property_readonly("pooled_shape", &ConvPlan::pooled_shape,
                             "The fused pass's output shape; None when the conv output is < 2x2.")
      .def(
          "conv2d_fwd",
          [](const ConvPlan& s, uintptr_t y, uintptr_t x, uintptr_t w, uintptr_t b, bool relu) {
            py::gil_scoped_release nogil;
            if (s.p.x.n > 0)
              cpu::conv2d_fwd__cpu(ptr<float>(y), ptr<const float>(x), ptr<const float>(w),
                                   ptr<const float>(b), s.p, relu);
          },
          py::arg("y"), py::arg("x"), py::arg("w"), py::arg("b"), py::arg("relu"))
      .def(
          "conv2d_bwd_data",
          [](const ConvPlan& s, uintptr_t dx, uintptr_t dy, uintptr_t w) {
            py::gil_scoped_release nogil;
            if (s.p.x.n > 0)
              cpu::conv2d_bwd_data__cpu(ptr<float>(dx), ptr<const float>(dy), ptr<const float>(w),
                                        s.p);
          },
          py::arg("dx"), py::arg("dy"), py::arg("w"))
      .def(
          "conv2d_bwd_weights",
          [](const ConvPlan& s, uintptr_t dw, uintptr_t db, uintptr_t dy, uintptr_t x) {
            py::gil_scoped_release nogil;
            cpu::conv2d_bwd_weights__cpu(ptr<float>(dw), ptr<float>(db), ptr<const float>(dy),
                                         ptr<const float>(x), s.p);
          },
          py::arg("dw"), py::arg("db"), py::arg("dy"), py::arg("x"), "db = 0: no bias gradient.")
      .def(
          "conv2d_relu_maxpool2d",
          [](const ConvPlan& s, uintptr_t y, uintptr_t codes, uintptr_t x, uintptr_t w,
             uintptr_t b) {
            s.check_poolable();
            py::gil_scoped_release nogil;
            if (s.p.x.n > 0)
              cpu::conv2d_relu_maxpool2d_fwd__cpu(ptr<float>(y), ptr<uint8_t>(codes),
                                                  ptr<const float>(x), ptr<const float>(w),
                                                  ptr<const float>(b), s.p);
          },
          py::arg("y"), py::arg("codes"), py::arg("x"), py::arg("w"), py::arg("b"))
      .def(
          "conv2d_relu_maxpool2d_bwd_data",
          [](const ConvPlan& s, uintptr_t dx, uintptr_t dy, uintptr_t codes, uintptr_t w) {
            s.check_poolable();
            py::gil_scoped_release nogil;
            if (s.p.x.n > 0)
              cpu::conv2d_relu_maxpool2d_bwd_data__cpu(ptr<float>(dx), ptr<const float>(dy),
                                                       ptr<const uint8_t>(codes),
                                                       ptr<const float>(w), s.p);
          },
          py::arg("dx"), py::arg("dy"), py::arg("codes"), py::arg("w"))
      .def(
          "conv2d_relu_maxpool2d_bwd_weights",
          [](const ConvPlan& s, uintptr_t dw, uintptr_t db, uintptr_t dy, uintptr_t codes,
             uintptr_t x) {
            s.check_poolable();
            py::gil_scoped_release nogil;
            cpu::conv2d_relu_maxpool2d_bwd_weights__cpu(ptr<float>(dw), ptr<float>(db),
                                                        ptr<const float>(dy),
                                                        ptr<const uint8_t>(codes),
                                                        ptr<const float>(x), s.p);
          },
          py::arg("dw"), py::arg("db"), py::arg("dy"), py::arg("codes"), py::arg("x"),
          "db = 0: no bias gradient.");

  py::class_<PoolPlan>(c, "PoolPlan", py::module_local())
      .def(py::init<Obj, Obj, Obj, const std::string&, Obj, Obj, bool>(), py::arg("x_shape"),
           py::arg("kernel"), py::arg("stride"), py::arg("padding_mode"), py::arg("padding"),
           py::arg("dilation"), py::arg("ceil_mode"))
      .def_property_readonly("x_shape", [](const PoolPlan& s) { return tuple_of(s.p.x); })
      .def_property_readonly("y_shape", [](const PoolPlan& s) { return tuple_of(s.p.y); })
      .def(
          "maxpool2d_fwd",
          [](const PoolPlan& s, uintptr_t y, uintptr_t idx, uintptr_t x) {
            py::gil_scoped_release nogil;
            if (s.p.x.n > 0)
              cpu::maxpool2d_fwd__cpu(ptr<float>(y), ptr<int64_t>(idx), ptr<const float>(x), s.p);
          },
          py::arg("y"), py::arg("indices"), py::arg("x"))
      .def(
          "maxpool2d_bwd",
          [](const PoolPlan& s, uintptr_t dx, uintptr_t dy, uintptr_t idx) {
            py::gil_scoped_release nogil;  // indices are range-checked by the kernel
            cpu::maxpool2d_bwd__cpu(ptr<float>(dx), ptr<const float>(dy),
                                    ptr<const int64_t>(idx), s.p.x, s.p.y);
          },
          py::arg("dx"), py::arg("dy"), py::arg("indices"));
}
