// cpu_dispatch.cpp — picks the CPU kernel table once (CPUID, overridable by FASTCONV_CPU_ISA) and
// lets tests and benchmarks switch it. Compiled for the baseline ISA.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "fastconv/config.h"
#include "fastconv/cpu_kernels.h"
#include "fastconv/error.h"

namespace fastconv {
namespace cpu {
namespace {

bool cpu_has_avx2_fma() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

const KernelTable* table_for(const std::string& isa) {
#ifdef FASTCONV_HAVE_AVX512
  if (isa == "avx512") return cpu_has_avx512() ? &kernel_table__avx512() : nullptr;
#endif
#ifdef FASTCONV_HAVE_AVX2
  if (isa == "avx2") return cpu_has_avx2_fma() ? &kernel_table__avx2() : nullptr;
#endif
  if (isa == "portable") return &kernel_table__scalar();
  return nullptr;
}

// FASTCONV_CPU_ISA (config.h), else the best path: a path this CPU or build lacks is a
// ValueError naming the variable, as in Python (never a silent fallback).
const KernelTable* initial_table() {
  if (const std::optional<std::string> isa = env_choice("FASTCONV_CPU_ISA")) {
    const KernelTable* t = table_for(*isa);
    FC_CHECK(t != nullptr, "FASTCONV_CPU_ISA must name a CPU path this CPU and build support (",
             "portable", cpu_has_avx2_fma() ? ", avx2" : "", cpu_has_avx512() ? ", avx512" : "",
             "), got '", *isa, "'");
    return t;
  }
  return table_for(best_isa());
}

std::atomic<const KernelTable*> g_table{nullptr};

}  // namespace

const char* best_isa() {
#ifdef FASTCONV_HAVE_AVX512
  if (cpu_has_avx512()) return "avx512";
#endif
#ifdef FASTCONV_HAVE_AVX2
  if (cpu_has_avx2_fma()) return "avx2";
#endif
  return "portable";
}

bool isa_supported(const char* isa) { return table_for(isa) != nullptr; }

const KernelTable& kernels() {
  const KernelTable* t = g_table.load(std::memory_order_acquire);
  if (t == nullptr) {
    t = initial_table();
    g_table.store(t, std::memory_order_release);
  }
  return *t;
}

void set_isa(const char* isa) {
  const KernelTable* t = table_for(isa);
  FC_CHECK(t != nullptr, "isa must be one of the paths this CPU and build support (",
           "portable", cpu_has_avx2_fma() ? ", avx2" : "", cpu_has_avx512() ? ", avx512" : "",
           "), got '", isa, "'");
  g_table.store(t, std::memory_order_release);
}

}  // namespace cpu
}  // namespace fastconv
