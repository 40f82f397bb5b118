// error.h — exceptions the native code throws. The binding maps ValueError to Python's ValueError
// (pybind11 does this for std::invalid_argument) and std::bad_alloc to MemoryError.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace fastconv {

struct ValueError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  return os.str();
}

}  // namespace fastconv

// FC_CHECK(cond, "stride must be >= 1, got ", s): throws ValueError with the offending values.
#define FC_CHECK(cond, ...)                                              \
  do {                                                                   \
    if (!(cond)) throw ::fastconv::ValueError(::fastconv::str_cat(__VA_ARGS__)); \
  } while (0)
