// bindings_arrays.h — NumPy result and out= arrays for the pybind11 entries (bindings.cpp,
// bindings_train.cpp): shape messages, results from the output cache, and the checks an out=
// buffer must pass.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>  // std::optional (OptArray)

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "fastconv/error.h"
#include "fastconv/output_cache.h"
#include "fastconv/params.h"

namespace fastconv {
namespace bind {

namespace py = pybind11;

using FloatArray = py::array_t<float, py::array::c_style>;
using IndexArray = py::array_t<int64_t, py::array::c_style>;
using CodeArray = py::array_t<uint8_t, py::array::c_style>;

inline std::string shape_str(const std::vector<py::ssize_t>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += str_cat(i ? ", " : "", s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

// A result array whose memory comes from the output cache (output_cache.h) and goes back to it
// when NumPy drops the array: a loop asking for the same shapes reuses warm pages.
// The shape's element count is checked (<= kMaxNumel), so the byte count cannot wrap around.
template <class T>
py::array_t<T, py::array::c_style> cached_array(const std::vector<py::ssize_t>& shape) {
  int64_t n = 1;
  for (py::ssize_t d : shape) {
    n = checked_numel({n, int64_t(d)});
    FC_CHECK(n >= 0, "result shape ", shape_str(shape), " has a negative size or more than ",
             kMaxNumel, " (2^48) elements");
  }
  void* p = output_alloc(std::size_t(n) * sizeof(T));
  py::capsule owner(p, [](void* q) { output_free(q); });
  return py::array_t<T, py::array::c_style>(shape, static_cast<T*>(p), owner);
}

using OptArray = std::optional<py::array>;

// An out= buffer: the caller's array is written in place, so it is checked, never converted (a
// converted copy would silently drop the result): exact dtype, shape, C order, writeable, and no
// byte shared with an input (the kernels read inputs while writing outputs).
template <class T>
T* out_data(py::array out, const char* name, const std::vector<py::ssize_t>& shape,
            std::initializer_list<const py::array*> inputs) {
  const py::dtype want = py::dtype::of<T>();
  FC_CHECK(out.dtype().kind() == want.kind() && out.itemsize() == want.itemsize() &&
               out.dtype().byteorder() != '>',
           name, " must be a ", want.kind() == 'f' ? "float32" : want.itemsize() == 1 ? "uint8" : "int64",
           " array, got dtype ",
           std::string(py::str(out.dtype())));
  bool same_shape = out.ndim() == py::ssize_t(shape.size());
  for (size_t i = 0; same_shape && i < shape.size(); ++i) same_shape = out.shape(i) == shape[i];
  if (!same_shape) {
    std::string want_s = "(", got_s = "(";
    for (size_t i = 0; i < shape.size(); ++i) want_s += str_cat(i ? ", " : "", shape[i]);
    for (py::ssize_t i = 0; i < out.ndim(); ++i) got_s += str_cat(i ? ", " : "", out.shape(i));
    throw ValueError(str_cat(name, " must have shape ", want_s, "), got ", got_s, ")"));
  }
  FC_CHECK(out.flags() & py::array::c_style, name, " must be C-contiguous");
  FC_CHECK(out.writeable(), name, " must be writeable");
  const char* lo = static_cast<const char*>(out.data());
  const char* hi = lo + out.nbytes();
  for (const py::array* in : inputs) {
    if (in == nullptr || in->nbytes() == 0) continue;
    const char* ilo = static_cast<const char*>(in->data());
    FC_CHECK(hi <= ilo || ilo + in->nbytes() <= lo, name, " must not share memory with an input");
  }
  return static_cast<T*>(out.mutable_data());
}

}  // namespace bind
}  // namespace fastconv
