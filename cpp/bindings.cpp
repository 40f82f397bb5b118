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
#include "fastconv/dropout_rng.h"
#include "fastconv/error.h"
#include "fastconv/ops.h"
#include "fastconv/output_cache.h"
#include "fastconv/params.h"
#include "bindings_args.h"
#include "fastconv/parallel.h"
#include "fastconv/train_ops.h"

namespace py = pybind11;
using namespace fastconv;

using FloatArray = py::array_t<float, py::array::c_style>;
using IndexArray = py::array_t<int64_t, py::array::c_style>;
using CodeArray = py::array_t<uint8_t, py::array::c_style>;

void register_plan_bindings(py::module_& m);  // bindings_plan.cpp
#ifdef FASTCONV_WITH_CUDA
void register_cuda_bindings(py::module_& m);  // bindings_cuda.cpp
#endif

namespace {

using bind::int_arg;
using bind::pair_arg;
using bind::padding_arg;
using bind::shape_arg;
using Obj = const py::object&;  // an integer argument, converted by bindings_args.h

Shape4 shape_of(const py::array& a, const char* name) {
  FC_CHECK(a.ndim() == 4, name, " must be 4-D (N, C, H, W), got ", a.ndim(), " dimensions");
  return {a.shape(0), a.shape(1), a.shape(2), a.shape(3)};
}
bool same(Shape4 a, Shape4 b) { return a.n == b.n && a.c == b.c && a.h == b.h && a.w == b.w; }
std::string str(Shape4 s) { return str_cat("(", s.n, ", ", s.c, ", ", s.h, ", ", s.w, ")"); }

std::string shape_str(const std::vector<py::ssize_t>& s) {
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

FloatArray new_array(Shape4 s) { return cached_array<float>({s.n, s.c, s.h, s.w}); }

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

// ---- training-step ops (cpp/cpu/dropout_cpu.cpp, adam_cpu.cpp) ------------------------------

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
  if (!(PyTuple_Check(shape_in.ptr()) || PyList_Check(shape_in.ptr())))
    throw py::type_error(str_cat("shape must be a tuple of ints, got ", std::string(py::repr(shape_in))));
  std::vector<py::ssize_t> shape;
  for (py::handle d : shape_in) {
    shape.push_back(int_arg(d, "shape"));
    FC_CHECK(shape.back() >= 0, "shape must not have negative sizes, got ", shape.back());
  }
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
  if (!(PyTuple_Check(shape_in.ptr()) || PyList_Check(shape_in.ptr())))
    throw py::type_error(str_cat("shape must be a tuple of ints, got ", std::string(py::repr(shape_in))));
  std::vector<py::ssize_t> shape;
  for (py::handle d : shape_in) {
    shape.push_back(int_arg(d, "shape"));
    FC_CHECK(shape.back() >= 0, "shape must not have negative sizes, got ", shape.back());
  }
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
