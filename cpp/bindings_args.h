// bindings_args.h — the Python-argument -> params conversions shared by bindings.cpp (CPU) and
// bindings_cuda.cpp (CUDA), so both read integers, shapes, pairs and padding modes the same way.
//
// The entries take their integer arguments as Python objects and convert them here rather than
// through pybind11's int64_t / std::tuple casters: a value those casters refuse (2**63, 1.5, None)
// would otherwise raise pybind11's "incompatible function arguments" TypeError, which lists the
// whole signature but not the argument. Here a non-integer is a TypeError and an integer outside
// int64 a ValueError, each naming the argument; the ranges (params.h's kMaxDim) are then checked
// by make_conv2d_params / make_pool2d_params / check_shape.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "fastconv/error.h"
#include "fastconv/params.h"

namespace fastconv {
namespace bind {

namespace py = pybind11;

// A Python int or NumPy integer (anything with __index__ except bool) -> int64.
inline int64_t int_arg(py::handle v, const char* name) {
  if (PyBool_Check(v.ptr()) || !PyIndex_Check(v.ptr()))
    throw py::type_error(str_cat(name, " must be an int, got ", std::string(py::repr(v))));
  const py::object i = py::reinterpret_steal<py::object>(PyNumber_Index(v.ptr()));
  if (!i) throw py::error_already_set();
  int overflow = 0;
  const long long r = PyLong_AsLongLongAndOverflow(i.ptr(), &overflow);
  if (overflow != 0)
    throw ValueError(str_cat(name, " is out of range: got ", std::string(py::repr(v)),
                             " (sizes, strides, paddings and dilations must be at most ", kMaxDim,
                             ")"));
  if (r == -1 && PyErr_Occurred()) throw py::error_already_set();
  return r;
}

// A bool (Python's or NumPy's); anything else, 0 and 1 included, is a TypeError.
inline bool bool_arg(py::handle v, const char* name) {
  if (PyBool_Check(v.ptr())) return v.ptr() == Py_True;
  if (std::string(Py_TYPE(v.ptr())->tp_name) == "numpy.bool" ||
      std::string(Py_TYPE(v.ptr())->tp_name) == "numpy.bool_")
    return PyObject_IsTrue(v.ptr()) == 1;
  throw py::type_error(str_cat(name, " must be True or False, got ", std::string(py::repr(v))));
}

// A tuple or list of exactly `n` ints (`what` names the expected form in messages).
inline py::sequence int_seq(py::handle v, size_t n, const char* name, const char* what) {
  if (!(PyTuple_Check(v.ptr()) || PyList_Check(v.ptr())) || py::len(v) != n)
    throw py::type_error(str_cat(name, " must be ", what, ", got ", std::string(py::repr(v))));
  return py::reinterpret_borrow<py::sequence>(v);
}

// An (h, w) pair of ints.
inline Pair pair_arg(py::handle v, const char* name) {
  const py::sequence s = int_seq(v, 2, name, "an (h, w) pair of ints");
  return {int_arg(s[0], name), int_arg(s[1], name)};
}

// An (N, C, H, W) shape; range-checked by make_*_params or check_shape.
inline Shape4 shape_arg(py::handle v, const char* name) {
  const py::sequence s = int_seq(v, 4, name, "a sequence of 4 ints (N, C, H, W)");
  return {int_arg(s[0], name), int_arg(s[1], name), int_arg(s[2], name), int_arg(s[3], name)};
}

// ops.py passes padding as (mode, (h, w)) with mode "explicit", "valid" or "same".
inline PaddingSpec padding_arg(const std::string& mode, py::handle pad) {
  return padding_spec(mode, pair_arg(pad, "padding"));
}

}  // namespace bind
}  // namespace fastconv
