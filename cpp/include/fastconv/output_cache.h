// output_cache.h — memory for the arrays fastconv returns, recycled instead of freed.
//
// Why: a fresh multi-megabyte result is new pages from the kernel, and faulting them in costs as
// much as the convolution itself on the MNIST-size layers (docs/KERNELS.md, workspace). Blocks of
// at least kMinCachedBytes go back to a cache when their NumPy array dies and are handed out again
// for the next result of the same size (a training loop or a benchmark asks for the same sizes
// over and over). The cache holds at most output_cache_limit() bytes of idle blocks; beyond that a
// block is freed at once. Thread-safe; fork-safe (a child starts with an empty, unlocked cache and
// leaks nothing it can reach).
#pragma once

#include <cstddef>

namespace fastconv {

constexpr std::size_t kMinCachedBytes = std::size_t(64) << 10;

// 64-byte aligned, at least `bytes` (> 0) long; throws std::bad_alloc.
void* output_alloc(std::size_t bytes);
// Return a block from output_alloc (nullptr is ignored).
void output_free(void* p);

std::size_t output_cache_limit();
void set_output_cache_limit(std::size_t bytes);  // 0 disables caching and frees the idle blocks
std::size_t output_cache_idle_bytes();

}  // namespace fastconv
