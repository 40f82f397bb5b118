// debug.cpp — the test-only poison switch (see ops.h).
#include <atomic>

#include "fastconv/ops.h"

namespace fastconv {
namespace {
std::atomic<bool> g_poison{false};
}
bool debug_poison() { return g_poison.load(std::memory_order_relaxed); }
void set_debug_poison(bool on) { g_poison.store(on, std::memory_order_relaxed); }
}  // namespace fastconv
