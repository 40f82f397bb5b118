// params_fuzzer.cpp — libFuzzer target over the shared geometry and validation code (cpp/params.cpp):
// make_conv2d_params, make_pool2d_params, padding_spec, check_shape and checked_numel, the code
// every CPU and CUDA entry runs on user-supplied integers before any kernel sees them.
//
// Build and run with fuzz/run.sh (clang -fsanitize=fuzzer,address,undefined; UBSan aborts on any
// signed overflow, so "no UB" is checked on every input). Beyond "no crash", each input is checked
// against an independent oracle written in 128-bit arithmetic that cannot overflow:
//   - accepted  <=> every argument is in range and the geometry is valid (no valid problem
//     refused, no invalid one let through);
//   - for accepted problems: output sizes >= 1 and equal to the exact formula, the last window
//     inside the padded input, the output no larger than the padded input, and every element count
//     (input, weight, output, padded image) exactly representable and <= kMaxNumel;
//   - a refusal is a fastconv::ValueError with a message (never another exception).
//
// Input format (see fuzz/seeds.py, which writes the seed corpus): byte 0 picks the target, byte 1
// the padding mode, then integers, each a tag byte and its payload: small (1 byte, -8..247), a
// boundary value (1 byte, index into kEdges), raw (8 bytes little-endian), or 2^k + d (2 bytes).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fastconv/error.h"
#include "fastconv/params.h"

using namespace fastconv;
using i128 = __int128;

namespace {

constexpr int64_t kEdges[] = {0,
                              1,
                              2,
                              -1,
                              kMaxDim,
                              kMaxDim - 1,
                              kMaxDim + 1,
                              kMaxDim / 2,
                              kMaxDim / 2 + 1,
                              int64_t(1) << 24,
                              int64_t(1) << 32,
                              kMaxNumel,
                              kMaxNumel + 1,
                              int64_t(1) << 62,
                              INT64_MAX,
                              INT64_MAX - 1,
                              INT64_MIN,
                              INT64_MIN + 1,
                              int64_t(1) << 16,
                              int64_t(3) << 20};

struct Reader {
  const uint8_t* p;
  size_t n;
  uint8_t byte() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
  int64_t value() {
    if (n == 0) return 1;
    const uint8_t tag = byte();
    switch (tag % 4) {
      case 0: return int64_t(byte()) - 8;
      case 1: return kEdges[byte() % (sizeof(kEdges) / sizeof(kEdges[0]))];
      case 2: {
        uint64_t v = 0;
        for (int i = 0; i < 8; ++i) v |= uint64_t(byte()) << (8 * i);
        int64_t r;
        std::memcpy(&r, &v, sizeof r);
        return r;
      }
      default: {
        const int k = byte() % 63;
        const int8_t d = int8_t(byte());
        return int64_t((uint64_t(1) << k) + uint64_t(int64_t(d)));  // wraps only via unsigned
      }
    }
  }
};

[[noreturn]] void fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "params_fuzzer invariant broken: %s\n  %s\n", what, detail.c_str());
  std::abort();
}
#define CHECK(cond, detail) \
  do {                      \
    if (!(cond)) fail(#cond, detail); \
  } while (0)

bool in(i128 v, i128 lo, i128 hi) { return v >= lo && v <= hi; }

// The exact element count of a shape, or -1 when a size is negative.
i128 numel128(i128 a, i128 b, i128 c, i128 d) {
  if (a < 0 || b < 0 || c < 0 || d < 0) return -1;
  if (a == 0 || b == 0 || c == 0 || d == 0) return 0;
  // each factor <= 2^63: cap the product before it can exceed 128 bits
  i128 r = a * b;
  if (r > kMaxNumel) return i128(kMaxNumel) + 1;
  r *= c;
  if (r > kMaxNumel) return i128(kMaxNumel) + 1;
  return r * d;
}

bool shape_ok(Shape4 s, int64_t min_n, int64_t min_rest) {
  return in(s.n, min_n, kMaxDim) && in(s.c, min_rest, kMaxDim) && in(s.h, min_rest, kMaxDim) &&
         in(s.w, min_rest, kMaxDim) && numel128(s.n, s.c, s.h, s.w) <= kMaxNumel;
}

std::string describe(const char* what, std::initializer_list<int64_t> v) {
  std::string s = what;
  for (int64_t x : v) s += " " + std::to_string(x);
  return s;
}

// Output size along one axis by the exact formula, or 0 when the window does not fit.
i128 out128(i128 padded, i128 span, i128 stride) {
  return padded < span ? 0 : (padded - span) / stride + 1;
}

void fuzz_conv(Reader& r, PadMode mode) {
  const Shape4 x{r.value(), r.value(), r.value(), r.value()};
  const Shape4 w{r.value(), r.value(), r.value(), r.value()};
  const Pair stride{r.value(), r.value()}, dilation{r.value(), r.value()}, pad{r.value(), r.value()};
  const int64_t groups = r.value();
  const std::string d = describe("conv x w stride dilation pad groups mode",
                                 {x.n, x.c, x.h, x.w, w.n, w.c, w.h, w.w, stride.h, stride.w,
                                  dilation.h, dilation.w, pad.h, pad.w, groups, int64_t(mode)});
  PaddingSpec spec;
  spec.mode = mode;
  spec.pad = pad;

  // The oracle: valid <=> every check below holds (exact arithmetic).
  bool ok = shape_ok(x, 0, 1) && shape_ok(w, 1, 1) && in(groups, 1, kMaxDim) &&
            in(stride.h, 1, kMaxDim) && in(stride.w, 1, kMaxDim) && in(dilation.h, 1, kMaxDim) &&
            in(dilation.w, 1, kMaxDim) &&
            (mode != PadMode::Explicit || (in(pad.h, 0, kMaxDim) && in(pad.w, 0, kMaxDim)));
  i128 span_h = 0, span_w = 0, pt = 0, pb = 0, pl = 0, pr = 0;
  if (ok) {
    ok = x.c % groups == 0 && w.n % groups == 0 && i128(w.c) * groups == x.c;
    span_h = i128(dilation.h) * (w.h - 1) + 1;
    span_w = i128(dilation.w) * (w.w - 1) + 1;
    ok = ok && span_h <= kMaxDim && span_w <= kMaxDim;
  }
  if (ok && mode == PadMode::Same) {
    ok = stride.h == 1 && stride.w == 1;
    pt = (span_h - 1) / 2, pb = span_h - 1 - pt, pl = (span_w - 1) / 2, pr = span_w - 1 - pl;
  } else if (mode == PadMode::Explicit) {
    pt = pb = pad.h, pl = pr = pad.w;
  }
  const i128 ph = i128(x.h) + pt + pb, pw = i128(x.w) + pl + pr;
  const i128 channels = x.c > w.n ? x.c : w.n;
  ok = ok && ph <= kMaxDim && pw <= kMaxDim && numel128(channels, ph, pw, 1) <= kMaxNumel &&
       span_h <= ph && span_w <= pw;
  const i128 oh = ok ? out128(ph, span_h, stride.h) : 0, ow = ok ? out128(pw, span_w, stride.w) : 0;
  ok = ok && numel128(x.n, w.n, oh, ow) <= kMaxNumel;

  Conv2dParams p;
  try {
    p = make_conv2d_params(x, w, stride, spec, dilation, groups);
  } catch (const ValueError& e) {
    CHECK(!ok, d + "  refused a valid problem: " + e.what());
    CHECK(std::strlen(e.what()) > 0, d);
    return;
  }
  CHECK(ok, d + "  accepted an invalid problem");
  CHECK(p.y.n == x.n && p.y.c == w.n && p.y.h == oh && p.y.w == ow, d);
  CHECK(p.y.h >= 1 && p.y.w >= 1 && p.y.h <= ph && p.y.w <= pw, d);
  CHECK(i128(p.y.h - 1) * p.stride.h + span_h <= ph && i128(p.y.w - 1) * p.stride.w + span_w <= pw,
        d);
  CHECK(p.pad.top == pt && p.pad.bottom == pb && p.pad.left == pl && p.pad.right == pr, d);
  CHECK(i128(p.x.numel()) == numel128(x.n, x.c, x.h, x.w), d);
  CHECK(i128(p.wt.numel()) == numel128(w.n, w.c, w.h, w.w), d);
  CHECK(i128(p.y.numel()) == numel128(p.y.n, p.y.c, p.y.h, p.y.w), d);
  CHECK(p.y.numel() <= kMaxNumel && p.x.numel() <= kMaxNumel && p.wt.numel() <= kMaxNumel, d);
  CHECK(p.cin_per_group() * p.groups == p.x.c && p.cout_per_group() * p.groups == p.y.c, d);
  // The helper the kernels use agrees with the exact formula.
  CHECK(conv_out_size(x.h, p.pad.top, p.pad.bottom, w.h, stride.h, dilation.h) == oh, d);
}

void fuzz_pool(Reader& r, PadMode mode) {
  const Shape4 x{r.value(), r.value(), r.value(), r.value()};
  const Pair kernel{r.value(), r.value()}, stride{r.value(), r.value()}, pad{r.value(), r.value()};
  const std::string d = describe("pool x kernel stride pad mode",
                                 {x.n, x.c, x.h, x.w, kernel.h, kernel.w, stride.h, stride.w,
                                  pad.h, pad.w, int64_t(mode)});
  PaddingSpec spec;
  spec.mode = mode;
  spec.pad = pad;
  bool ok = shape_ok(x, 0, 1) && in(kernel.h, 1, kMaxDim) && in(kernel.w, 1, kMaxDim) &&
            in(stride.h, 1, kMaxDim) && in(stride.w, 1, kMaxDim);
  i128 pt = 0, pb = 0, pl = 0, pr = 0;
  if (ok && mode == PadMode::Explicit) {
    ok = in(pad.h, 0, kernel.h / 2) && in(pad.w, 0, kernel.w / 2);
    pt = pb = pad.h, pl = pr = pad.w;
  } else if (ok && mode == PadMode::Same) {
    const i128 oh = (i128(x.h) + stride.h - 1) / stride.h, ow = (i128(x.w) + stride.w - 1) / stride.w;
    i128 th = (oh - 1) * stride.h + kernel.h - x.h, tw = (ow - 1) * stride.w + kernel.w - x.w;
    th = th > 0 ? th : 0, tw = tw > 0 ? tw : 0;
    pt = th / 2, pb = th - pt, pl = tw / 2, pr = tw - pl;
  }
  const i128 ph = i128(x.h) + pt + pb, pw = i128(x.w) + pl + pr;
  ok = ok && ph <= kMaxDim && pw <= kMaxDim && numel128(x.c, ph, pw, 1) <= kMaxNumel &&
       kernel.h <= ph && kernel.w <= pw;
  const i128 oh = ok ? out128(ph, kernel.h, stride.h) : 0, ow = ok ? out128(pw, kernel.w, stride.w) : 0;
  ok = ok && numel128(x.n, x.c, oh, ow) <= kMaxNumel;

  Pool2dParams p;
  try {
    p = make_pool2d_params(x, kernel, stride, spec);
  } catch (const ValueError& e) {
    CHECK(!ok, d + "  refused a valid problem: " + e.what());
    return;
  }
  CHECK(ok, d + "  accepted an invalid problem");
  CHECK(p.y.n == x.n && p.y.c == x.c && p.y.h == oh && p.y.w == ow, d);
  CHECK(p.y.h >= 1 && p.y.w >= 1 && p.y.h <= ph && p.y.w <= pw, d);
  CHECK(i128(p.y.h - 1) * stride.h + kernel.h <= ph && i128(p.y.w - 1) * stride.w + kernel.w <= pw,
        d);
  if (mode == PadMode::Same)  // TensorFlow's rule
    CHECK(p.y.h == (i128(x.h) + stride.h - 1) / stride.h && p.y.w == (i128(x.w) + stride.w - 1) / stride.w, d);
  // padded cells never win: every window holds at least one real input cell
  CHECK(p.pad.top < kernel.h && p.pad.bottom < kernel.h && p.pad.left < kernel.w && p.pad.right < kernel.w, d);
  CHECK(i128(p.y.numel()) == numel128(p.y.n, p.y.c, p.y.h, p.y.w) && p.y.numel() <= kMaxNumel, d);
}

void fuzz_numel(Reader& r) {
  const int64_t a = r.value(), b = r.value(), c = r.value(), e = r.value();
  const int64_t got = checked_numel({a, b, c, e});
  const i128 want = numel128(a, b, c, e);
  const std::string d = describe("checked_numel", {a, b, c, e, got});
  if (want < 0 || want > kMaxNumel) CHECK(got == -1, d);
  else CHECK(i128(got) == want, d);
  const Shape4 s{a, b, c, e};
  try {
    check_shape(s, "shape");
    CHECK(shape_ok(s, 0, 0), d + "  check_shape accepted");
  } catch (const ValueError&) {
    CHECK(!shape_ok(s, 0, 0), d + "  check_shape refused");
  }
}

void fuzz_padding_spec(Reader& r) {
  std::string mode;
  const size_t len = r.byte() % 12;
  for (size_t i = 0; i < len; ++i) mode += char(r.byte());
  const Pair pad{r.value(), r.value()};
  const bool known = mode == "valid" || mode == "same" || mode == "explicit";
  try {
    const PaddingSpec s = padding_spec(mode, pad);
    CHECK(known, "padding_spec accepted '" + mode + "'");
    CHECK(s.pad.h == pad.h && s.pad.w == pad.w, mode);
  } catch (const ValueError&) {
    CHECK(!known, "padding_spec refused '" + mode + "'");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader r{data, size};
  const uint8_t target = r.byte(), mode_byte = r.byte();
  const PadMode mode = mode_byte % 3 == 0 ? PadMode::Explicit
                       : mode_byte % 3 == 1 ? PadMode::Valid
                                            : PadMode::Same;
  try {
    switch (target % 4) {
      case 0: fuzz_conv(r, mode); break;
      case 1: fuzz_pool(r, mode); break;
      case 2: fuzz_numel(r); break;
      default: fuzz_padding_spec(r); break;
    }
  } catch (const std::exception& e) {  // anything but ValueError (caught above) is a bug
    fail("unexpected exception", e.what());
  }
  return 0;
}
