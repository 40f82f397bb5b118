// output_cache.cpp — see output_cache.h. Each block carries a 64-byte header with its size, so a
// free needs only the pointer (NumPy's capsule destructor has nothing else).
#include "fastconv/output_cache.h"

#include <pthread.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>

namespace fastconv {
namespace {

constexpr std::size_t kHeader = 64;
constexpr std::size_t kPage = 4096;

struct Cache {
  std::mutex mu;
  std::multimap<std::size_t, void*> idle;  // block size -> raw block (header included)
  std::size_t idle_bytes = 0;
  std::size_t limit = std::size_t(256) << 20;
};

Cache* g_cache = new Cache;  // never destroyed: arrays may die during interpreter shutdown

void reset_after_fork() { g_cache = new Cache; }  // the parent's lock may be held mid-fork

const bool g_atfork = [] {
  pthread_atfork(nullptr, nullptr, reset_after_fork);
  return true;
}();

// Rounded to 64 bytes (aligned_alloc wants a multiple of the alignment), cached sizes to pages.
std::size_t block_size(std::size_t bytes) {
  const std::size_t total = (bytes + kHeader + 63) / 64 * 64;
  return total < kMinCachedBytes ? total : (total + kPage - 1) / kPage * kPage;
}

}  // namespace

void* output_alloc(std::size_t bytes) {
  const std::size_t size = block_size(bytes == 0 ? 1 : bytes);
  void* raw = nullptr;
  if (size >= kMinCachedBytes) {
    Cache& c = *g_cache;
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.idle.find(size);
    if (it != c.idle.end()) {
      raw = it->second;
      c.idle.erase(it);
      c.idle_bytes -= size;
    }
  }
  if (raw == nullptr) {
    raw = std::aligned_alloc(64, size);
    if (raw == nullptr) throw std::bad_alloc();
  }
  *static_cast<std::size_t*>(raw) = size;
  return static_cast<char*>(raw) + kHeader;
}

void output_free(void* p) {
  if (p == nullptr) return;
  void* raw = static_cast<char*>(p) - kHeader;
  const std::size_t size = *static_cast<std::size_t*>(raw);
  if (size >= kMinCachedBytes) {
    Cache& c = *g_cache;
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.idle_bytes + size <= c.limit) {
      c.idle.emplace(size, raw);
      c.idle_bytes += size;
      return;
    }
  }
  std::free(raw);
}

std::size_t output_cache_limit() {
  std::lock_guard<std::mutex> lock(g_cache->mu);
  return g_cache->limit;
}

void set_output_cache_limit(std::size_t bytes) {
  Cache& c = *g_cache;
  std::lock_guard<std::mutex> lock(c.mu);
  c.limit = bytes;
  // drop idle blocks, largest first, until they fit the new limit
  while (c.idle_bytes > c.limit && !c.idle.empty()) {
    auto it = std::prev(c.idle.end());
    c.idle_bytes -= it->first;
    std::free(it->second);
    c.idle.erase(it);
  }
}

std::size_t output_cache_idle_bytes() {
  std::lock_guard<std::mutex> lock(g_cache->mu);
  return g_cache->idle_bytes;
}

}  // namespace fastconv
