// bindings_train.cpp — the training-step entries of fastconv._C: dropout (and the lane-order
// hook of the CUDA training step's mask), Adam's update and the sparse softmax cross-entropy
// (cpp/cpu/dropout_cpu.cpp, adam_cpu.cpp, softmax_xent), used by python/fastconv/nn.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <vector>

#include "bindings_args.h"
#include "bindings_arrays.h"
#include "fastconv/dropout_rng.h"
#include "fastconv/error.h"
#include "fastconv/train_ops.h"

namespace py = pybind11;
using namespace fastconv;

namespace {

using bind::cached_array;
using bind::FloatArray;
using bind::IndexArray;
using bind::OptArray;
using bind::out_data;
using bind::shape_str;

// An input read in place: float32 required (a silent cast would hide a wrong array), C order made
// by a copy when the caller's array is a view.
py::array float_input(const py::array& a, const char* name) {
  if (!(a.dtype().kind() == 'f' && a.itemsize() == 4 && a.dtype().byteorder() != '>'))
    throw py::type_error(
        str_cat(name, " must be a float32 array, got dtype ", std::string(py::str(a.dtype()))));
  return a.flags() & py::array::c_style ? a : py::array(FloatArray::ensure(a));
}

std::vector<py::ssize_t> shape_vec(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

uint64_t seed_of(const py::object& seed) {
  if (!PyIndex_Check(seed.ptr()) || PyBool_Check(seed.ptr()))
    throw py::type_error(str_cat("seed must be an int, got ", std::string(py::repr(seed))));
  const py::object s = py::reinterpret_steal<py::object>(PyNumber_Index(seed.ptr()));
  if (!s) throw py::error_already_set();
  const unsigned long long v = PyLong_AsUnsignedLongLong(s.ptr());
  if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
    PyErr_Clear();
    throw ValueError(str_cat("seed must be in [0, 2**64), got ", std::string(py::repr(seed))));
  }
  return v;
}

// A result shape given as a tuple (or list) of non-negative ints.
std::vector<py::ssize_t> shape_list(const py::object& shape_in) {
  if (!(PyTuple_Check(shape_in.ptr()) || PyList_Check(shape_in.ptr())))
    throw py::type_error(str_cat("shape must be a tuple of ints, got ", std::string(py::repr(shape_in))));
  std::vector<py::ssize_t> shape;
  for (py::handle d : shape_in) {
    shape.push_back(bind::int_arg(d, "shape"));
    FC_CHECK(shape.back() >= 0, "shape must not have negative sizes, got ", shape.back());
  }
  return shape;
}

void check_keep(double keep) {
  FC_CHECK(keep > 0.0 && keep <= 1.0, "keep must be in (0, 1], got ", keep);  // NaN fails too
}

py::array dropout(const py::array& x_in, double keep, const py::object& seed, const OptArray& out,
                  const OptArray& mask_out) {
  const py::array x = float_input(x_in, "x");
  const uint64_t s = seed_of(seed);
  check_keep(keep);
  const std::vector<py::ssize_t> shape = shape_vec(x);
  py::array y = out ? *out : py::array(cached_array<float>(shape));
  float* yp = out ? out_data<float>(y, "out", shape, {&x}) : static_cast<float*>(y.mutable_data());
  float* mp = mask_out ? out_data<float>(*mask_out, "mask_out", shape, {&x, &y}) : nullptr;
  {
    py::gil_scoped_release nogil;
    cpu::dropout_fwd__cpu(yp, mp, static_cast<const float*>(x.data()), x.size(), keep, s);
  }
  return y;
}

py::array dropout_keep(const py::object& shape_in, double keep, const py::object& seed) {
  const uint64_t s = seed_of(seed);
  check_keep(keep);
  const std::vector<py::ssize_t> shape = shape_list(shape_in);
  auto bits = cached_array<bool>(shape);
  {
    py::gil_scoped_release nogil;
    cpu::dropout_keep__cpu(reinterpret_cast<uint8_t*>(bits.mutable_data()), bits.size(), keep, s);
  }
  return std::move(bits);
}

// The CUDA training step's mask, computed on the CPU by the same per-(block, lane) function the
// GPU kernel runs (dropout_rng::fill_lane), serially: a test hook that proves the device path's
// indexing against dropout() without a GPU.
py::array dropout_mask_lanes(const py::object& shape_in, double keep, const py::object& seed) {
  const uint64_t s = seed_of(seed);
  check_keep(keep);
  const std::vector<py::ssize_t> shape = shape_list(shape_in);
  py::array_t<float> mask(shape);
  float* mp = mask.mutable_data();
  const int64_t n = mask.size();
  const uint64_t key = dropout_rng::key_of(s);
  const int32_t thresh = dropout_rng::threshold(keep);
  const float scale = 1.0f / float(keep);
  for (int64_t block = 0; block * dropout_rng::kBlock < n; ++block)
    for (int lane = 0; lane < dropout_rng::kLanes; ++lane)
      dropout_rng::fill_lane(mp, n, key, thresh, scale, block, lane);
  return std::move(mask);
}

void adam_update(const py::array& p, const py::array& g_in, const py::array& m,
                 const py::array& v, double lr_t, double beta_1, double beta_2, double epsilon) {
  const py::array g = float_input(g_in, "g");
  const std::vector<py::ssize_t> shape = shape_vec(p);
  // p, m, v are written in place: exact float32, C order, no byte shared (out_data's checks)
  float* pp = out_data<float>(p, "p", shape, {&g});
  const std::vector<py::ssize_t> gs = shape_vec(g);
  FC_CHECK(gs == shape, "g must have p's shape ", shape_str(shape), ", got ", shape_str(gs));
  float* mp = out_data<float>(m, "m", shape, {&g, &p});
  float* vp = out_data<float>(v, "v", shape, {&g, &p, &m});
  FC_CHECK(std::isfinite(lr_t) && std::isfinite(epsilon) && epsilon >= 0.0,
           "lr_t and epsilon must be finite (epsilon >= 0), got ", lr_t, " and ", epsilon);
  FC_CHECK(beta_1 >= 0.0 && beta_1 < 1.0 && beta_2 >= 0.0 && beta_2 < 1.0,
           "beta_1 and beta_2 must be in [0, 1), got ", beta_1, " and ", beta_2);
  py::gil_scoped_release nogil;
  cpu::adam_update__cpu(pp, mp, vp, static_cast<const float*>(g.data()), p.size(), lr_t, beta_1,
                        beta_2, epsilon);
}

// Sparse softmax cross-entropy with its gradient and the accuracy count (losses.py): z (n, c)
// float32 logits, labels (n,) integers in [0, c). Returns (mean loss, dz = (softmax - onehot) / n,
// correct predictions); out= takes dz.
py::tuple sparse_softmax_xent(const py::array& z_in, const IndexArray& labels,
                              const OptArray& out) {
  const py::array z = float_input(z_in, "z");
  FC_CHECK(z.ndim() == 2, "z must be 2-D (batch, classes), got ", z.ndim(), "-D");
  const int64_t n = z.shape(0), c = z.shape(1);
  FC_CHECK(c >= 1, "z must have at least one class, got shape (", n, ", ", c, ")");
  FC_CHECK(labels.ndim() == 1 && labels.shape(0) == n, "y must be 1-D with z's ", n,
           " rows, got shape ", shape_str(shape_vec(labels)));
  const int64_t* y = labels.data();
  for (int64_t r = 0; r < n; ++r)
    FC_CHECK(y[r] >= 0 && y[r] < c, "y labels must lie in [0, ", c, "), got ", y[r], " at row ", r);
  const std::vector<py::ssize_t> shape = {n, c};
  py::array dz = out ? *out : py::array(cached_array<float>(shape));
  float* dzp = out ? out_data<float>(dz, "out", shape, {&z, &labels})
                   : static_cast<float*>(dz.mutable_data());
  double loss_sum = 0.0;
  int64_t correct = 0;
  if (n > 0) {
    py::gil_scoped_release nogil;
    cpu::sparse_softmax_xent__cpu(static_cast<const float*>(z.data()), y, n, c, dzp, 1.0 / n,
                                  &loss_sum, &correct);
  }
  return py::make_tuple(n > 0 ? loss_sum / n : std::nan(""), dz, correct);
}

}  // namespace

void register_train_bindings(py::module_& m) {
  m.def("dropout", &dropout, py::arg("x"), py::arg("keep"), py::arg("seed"),
        py::arg("out") = py::none(), py::arg("mask_out") = py::none(),
        R"pbdoc(y = x * mask, mask = (u < keep) / keep, u uniform in [0, 1).

x: float32 array (any shape); keep in (0, 1]; seed an int in [0, 2**64). u is drawn from (seed,
element index) alone, so the mask never depends on the thread count. out / mask_out: float32 C-contiguous
arrays of x's shape (sharing no memory with x or each other) to write y / the mask into.)pbdoc");
  m.def("dropout_keep", &dropout_keep, py::arg("shape"), py::arg("keep"), py::arg("seed"),
        "Bool array of `shape`: True where dropout(x, keep, seed) keeps x's element.");
  m.def("_dropout_mask_lanes", &dropout_mask_lanes, py::arg("shape"), py::arg("keep"),
        py::arg("seed"),
        "Test hook: dropout's mask (float32) drawn lane by lane as the CUDA training step draws it.");
  m.def("adam_update", &adam_update, py::arg("p"), py::arg("g"), py::arg("m"), py::arg("v"),
        py::arg("lr_t"), py::arg("beta_1"), py::arg("beta_2"), py::arg("epsilon"),
        R"pbdoc(One Adam step in place on float32 C-contiguous arrays of one shape:
m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g; p -= lr_t*m / (sqrt(v) + epsilon), rounded as NumPy
rounds optimizers.Adam's float32 update.)pbdoc");
  m.def("sparse_softmax_xent", &sparse_softmax_xent, py::arg("z"), py::arg("y"),
        py::arg("out") = py::none(),
        R"pbdoc(Softmax cross-entropy of float32 logits z (N, C) on integer labels y (N,) in [0, C):
(mean loss, dz = (softmax(z) - onehot(y)) / N as float32, count of rows whose argmax is y).)pbdoc");
}
