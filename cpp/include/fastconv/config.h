// config.h — every FASTCONV_* environment variable in one table (config.cpp): name, type,
// default, meaning, when it is read and how to change it at run time; and the one parser the C++
// readers and Python (fastconv/__init__.py, through _C.env_value) share. A bad value is a
// ValueError that names the variable, the value and what it accepts.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fastconv {

struct EnvSetting {
  const char* name;
  const char* type;     // "int", "choice", "flag" (0 or 1), "path", "text"
  const char* accepts;  // int: "lo..hi"; choice: "a|b|c"; flag: "0|1"; otherwise free text
  const char* default_value;
  const char* read_by;  // who reads it and when (the library, the build, the tests)
  const char* runtime;  // how to change it after start-up, or "no"
  const char* meaning;
  int64_t lo, hi;       // int range
};

const std::vector<EnvSetting>& env_settings();

// The variable parsed by its row of the table: nullopt when unset or empty; ValueError naming the
// variable for a bad value or for a name not in the table (a typo in the code).
std::optional<int64_t> env_int(const char* name);
std::optional<std::string> env_choice(const char* name);  // one of the row's choices
bool env_flag(const char* name);                            // unset: false

}  // namespace fastconv
