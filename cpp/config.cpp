// config.cpp — the FASTCONV_* environment variables (config.h): the table and its parser.
#include "fastconv/config.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "fastconv/error.h"

namespace fastconv {

const std::vector<EnvSetting>& env_settings() {
  static const std::vector<EnvSetting> table = {
      {"FASTCONV_CPU_ISA", "choice", "portable|avx2|avx512", "the best this CPU supports",
       "library, at import", "fastconv.set_cpu_isa",
       "CPU kernel path; one this CPU or build lacks is an error", 0, 0},
      {"FASTCONV_NUM_THREADS", "int", "1..4096", "all cores (mpiexec: cores / ranks on the node)",
       "library, at import", "fastconv.set_num_threads", "threads of the CPU kernels", 1, 4096},
      {"FASTCONV_SPIN_US", "int", "0..100000", "200", "library, first parallel call", "no",
       "microseconds a pool thread spins before it sleeps (0: block at once)", 0, 100000},
      {"FASTCONV_OUTPUT_CACHE_MB", "int", "0..1048576", "256", "library, at import",
       "fastconv.set_output_cache_mb", "MiB of freed result arrays kept for reuse (0: off)", 0,
       1048576},
      {"FASTCONV_CUDA_SYNC", "flag", "0|1", "0", "library, first CUDA launch", "no",
       "synchronise after every CUDA launch, so an error names its kernel", 0, 1},
      {"FASTCONV_DATA", "path", "a folder", "unset", "fastconv.datasets, each load",
       "the path argument", "folder holding the MNIST / Fashion-MNIST IDX files", 0, 0},
      {"FASTCONV_CACHE", "path", "a folder", "$XDG_CACHE_HOME/fastconv or ~/.cache/fastconv",
       "fastconv.datasets, each load", "no", "download cache of the data sets", 0, 0},
      {"FASTCONV_CUDA", "choice", "ON|OFF|AUTO", "AUTO", "the build (pip install)", "no",
       "build the CUDA kernels (AUTO: when nvcc is found)", 0, 0},
      {"FASTCONV_CI_CUDA_ARCHS", "text", "CMake CUDA architectures", "the release set",
       ".ci/cuda_build", "no", "GPU architectures of the CI's CUDA compile check", 0, 0},
      {"FASTCONV_FUZZ_EXAMPLES", "int", "1..100000000",
       "150 files, 100 entry points (2000 with HYPOTHESIS_PROFILE=explore)",
       "tests/test_fuzz_files.py, tests/test_fuzz_entry_points.py", "no",
       "Hypothesis examples per fuzzing target", 1, 100000000},
      {"FASTCONV_CI_FUZZ_SECONDS", "int", "1..100000000", "30", ".ci/run", "no",
       "seconds of the CI's libFuzzer run (fuzz/run.sh)", 1, 100000000},
      {"FASTCONV_BIG_TESTS", "flag", "0|1", "0", "tests/test_hostile_args.py", "no",
       "run the tests that need ~20 GB of memory (sizes past 2^31 elements)", 0, 1},
      {"FASTCONV_TEST_SEED", "int", "0..4294967295", "0", "the test suite", "no",
       "XORed into every test's random seed", 0, 4294967295LL},
  };
  return table;
}

namespace {

const EnvSetting& row(const char* name) {
  for (const EnvSetting& s : env_settings())
    if (std::strcmp(s.name, name) == 0) return s;
  throw ValueError(str_cat("no environment variable ", name, " in fastconv's table"));
}

// The value with surrounding blanks trimmed, or nullopt when unset or blank.
std::optional<std::string> raw(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) return std::nullopt;
  std::string s(v);
  const size_t b = s.find_first_not_of(" \t\n"), e = s.find_last_not_of(" \t\n");
  if (b == std::string::npos) return std::nullopt;
  return s.substr(b, e - b + 1);
}

[[noreturn]] void bad(const EnvSetting& s, const std::string& value) {
  throw ValueError(str_cat(s.name, " must be ", std::string(s.type) == "int" ? "an integer " : "",
                           std::string(s.type) == "int" ? "from " : "one of ",
                           std::string(s.type) == "int"
                               ? str_cat(s.lo, " to ", s.hi)
                               : std::string(s.accepts),
                           " (", s.meaning, "), got '", value, "'"));
}

}  // namespace

std::optional<int64_t> env_int(const char* name) {
  const EnvSetting& s = row(name);
  const std::optional<std::string> v = raw(name);
  if (!v) return std::nullopt;
  bool digits = !v->empty() && v->size() <= 18;
  for (char c : *v) digits = digits && c >= '0' && c <= '9';
  if (!digits) bad(s, *v);
  const int64_t x = std::strtoll(v->c_str(), nullptr, 10);
  if (x < s.lo || x > s.hi) bad(s, *v);
  return x;
}

std::optional<std::string> env_choice(const char* name) {
  const EnvSetting& s = row(name);
  const std::optional<std::string> v = raw(name);
  if (!v) return std::nullopt;
  const std::string choices = str_cat("|", s.accepts, "|");
  if (v->find('|') != std::string::npos || choices.find(str_cat("|", *v, "|")) == std::string::npos)
    bad(s, *v);
  return v;
}

bool env_flag(const char* name) {
  const EnvSetting& s = row(name);
  const std::optional<std::string> v = raw(name);
  if (!v) return false;
  if (*v != "0" && *v != "1") bad(s, *v);
  return *v == "1";
}

}  // namespace fastconv
