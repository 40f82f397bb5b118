// bindings_args.h — the Python-argument -> params conversions shared by bindings.cpp (CPU) and
// bindings_cuda.cpp (CUDA), so both read shapes, pairs and padding modes the same way.
#pragma once

#include <cstdint>
#include <string>
#include <tuple>

#include "fastconv/error.h"
#include "fastconv/params.h"

namespace fastconv {
namespace bind {

using Pair2 = std::tuple<int64_t, int64_t>;
using Shape4T = std::tuple<int64_t, int64_t, int64_t, int64_t>;

inline Shape4 shape_of(const Shape4T& s) {
  return {std::get<0>(s), std::get<1>(s), std::get<2>(s), std::get<3>(s)};
}

inline Pair pair_of(const Pair2& p) { return {std::get<0>(p), std::get<1>(p)}; }

// ops.py passes padding as (mode, (h, w)) with mode "explicit", "valid" or "same".
inline PaddingSpec padding_of(const std::string& mode, const Pair2& pad) {
  PaddingSpec s;
  if (mode == "valid") s.mode = PadMode::Valid;
  else if (mode == "same") s.mode = PadMode::Same;
  else if (mode == "explicit") s.mode = PadMode::Explicit;
  else throw ValueError(str_cat("padding must be an int, an (h, w) pair, 'valid' or 'same', got '", mode, "'"));
  s.pad = pair_of(pad);
  return s;
}

}  // namespace bind
}  // namespace fastconv
