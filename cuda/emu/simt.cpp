// simt.cpp — the fiber scheduler behind simt.h: runs a grid's blocks on a few OS workers, each
// block's threads as fibers (fiber.h) that meet at __syncthreads and at warp exchanges.
#include "simt.h"

#include "fiber.h"
#include "race_annotations.h"

#include <cxxabi.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

namespace emu {
namespace {

constexpr size_t kStackBytes = 128 * 1024;  // kernels keep small register arrays; -O0 frames fit
constexpr int kMaxThreads = 1024;            // the hardware's limit per block
constexpr size_t kMaxDynamicShared = 227 * 1024;  // sm_90's opt-in limit per block

enum class State { Ready, AtBarrier, AtWarp, Done, Failed };

struct PendingCopy {
  void* dst;
  const void* src;
  int bytes, src_bytes, group;
};

struct Fiber {
  FiberContext ctx;
  State state = State::Done;
  uint3 tid{};
  // Warp exchange in flight: what the lane gives, whose deposit it wants, where the answer goes.
  unsigned mask = 0;
  uint64_t deposit = 0, result = 0;
  int src = -1;
  uint64_t* all = nullptr;
  // cp.async copies not yet completed, oldest first, and the number of groups committed.
  std::vector<PendingCopy> copies;
  int committed = 0;
  // Barriers passed in this block, for the parity of race_annotations' sync objects.
  unsigned barriers = 0, warp_syncs = 0;
};

struct Worker {
  std::vector<Fiber> fibers;
  char* stacks = nullptr;
  size_t stack_stride = 0;
  FiberContext sched;
  int current = -1;
  const std::function<void()>* body = nullptr;
  std::string error;
  // Dynamic shared memory: one buffer per worker, like the static arrays' thread_local copies.
  std::unique_ptr<float[]> dynamic_shared;
  size_t dynamic_bytes = 0, dynamic_capacity = 0;
  // Addresses that stand for the happens-before edges CUDA defines (race_annotations.h): block
  // start and end, __syncthreads (two, alternating, so that a thread already releasing the next
  // barrier is not seen by one still leaving this one), __syncwarp per warp.
  char epoch_sync = 0, barrier_sync[2] = {}, warp_sync[kMaxThreads / 32][2] = {};

  Worker() = default;
  Worker(const Worker&) = delete;
  ~Worker() {
    if (stacks != nullptr) munmap(stacks, stack_stride * kMaxThreads);
  }
  // One stack per possible thread, each above a PROT_NONE page so an overflow faults.
  void ensure_stacks() {
    if (stacks != nullptr) return;
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    stack_stride = kStackBytes + page;
    void* mem = mmap(nullptr, stack_stride * kMaxThreads, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) throw std::bad_alloc();
    stacks = static_cast<char*>(mem);
    for (int i = 0; i < kMaxThreads; ++i) mprotect(stacks + i * stack_stride, page, PROT_NONE);
    fibers.resize(kMaxThreads);
  }
};

thread_local Worker* t_worker = nullptr;

std::mutex g_launch_mutex;  // one launch at a time (callers may be several Python threads)
Options g_options;
std::atomic<uint64_t> g_launches{0}, g_blocks{0}, g_threads{0}, g_barriers{0}, g_warp_ops{0},
    g_poisoned{0};

int linear(uint3 t, dim3 b) { return int(t.x + b.x * (t.y + b.y * t.z)); }

// Suspend the running fiber until the scheduler resumes it (never, once it is Done or Failed).
void yield(State s) {
  Worker* w = t_worker;
  Fiber& f = w->fibers[w->current];
  f.state = s;
  fiber_switch(&f.ctx, &w->sched);
}

void fiber_main() {
  // The block's start orders this thread after the launch's setup and the previous block on this
  // worker; the lookups before it are the scheduler's business (race_annotations.h).
  race::ignore_begin();
  Worker* w = t_worker;
  Fiber& f = w->fibers[w->current];
  race::ignore_end();
  race::acquire(&w->epoch_sync);
  f.copies.clear();  // a previous block's copies never waited for die with its shared memory
  f.committed = 0;
  f.barriers = f.warp_syncs = 0;
  (*w->body)();
  race::release(&w->epoch_sync);
  f.state = State::Done;  // as yield, without touching thread_local storage after the release
  fiber_switch(&f.ctx, &w->sched);
}

[[noreturn]] void fail_in_fiber(const std::string& why) {
  Worker* w = t_worker;
  w->error = why;
  yield(State::Failed);
  std::abort();  // never resumed
}

// This OS thread's copy of the module's thread_local storage: the __shared__ arrays live there.
struct TlsBlock {
  char* begin = nullptr;
  size_t size = 0;
};

int find_tls(dl_phdr_info* info, size_t, void* data) {
  auto* out = static_cast<TlsBlock*>(data);
  if (info->dlpi_tls_data == nullptr) return 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_TLS) continue;
    char* begin = static_cast<char*>(info->dlpi_tls_data);
    const char* probe = reinterpret_cast<const char*>(&threadIdx);
    if (probe >= begin && probe < begin + ph.p_memsz) {
      out->begin = begin;
      out->size = ph.p_memsz;
      return 1;
    }
  }
  return 0;
}

TlsBlock module_tls() {
  threadIdx = uint3{0, 0, 0};  // make sure this thread's block is allocated
  TlsBlock tls;
  dl_iterate_phdr(find_tls, &tls);
  // A C++ runtime linked into this library would keep its exception state here too: never fill it.
  const char* eh = reinterpret_cast<const char*>(abi::__cxa_get_globals());
  if (eh >= tls.begin && eh < tls.begin + tls.size) tls = TlsBlock{};
  return tls;
}

// 0xFF bytes: NaN in every float, -1 in every int. The runtime's own thread_locals share the block,
// so they are saved around the fill and written back through volatile pointers: the compiler knows
// memset's semantics and would otherwise drop a store of the value the variable "still" holds.
template <class T>
void restore(T& var, const T& value) {
  *static_cast<volatile T*>(&var) = value;
}

void poison_shared(const TlsBlock& tls) {
  if (tls.begin == nullptr) return;
  g_poisoned.fetch_add(1, std::memory_order_relaxed);
  Worker* const w = t_worker;
  const uint3 b = blockIdx;
  const dim3 bd = blockDim, gd = gridDim;
  std::memset(tls.begin, 0xFF, tls.size);
  restore(t_worker, w);
  restore(blockIdx.x, b.x), restore(blockIdx.y, b.y), restore(blockIdx.z, b.z);
  restore(blockDim.x, bd.x), restore(blockDim.y, bd.y), restore(blockDim.z, bd.z);
  restore(gridDim.x, gd.x), restore(gridDim.y, gd.y), restore(gridDim.z, gd.z);
}

void order_threads(std::vector<int>& order, int n, std::mt19937_64& rng) {
  order.resize(n);
  std::iota(order.begin(), order.end(), 0);
  switch (g_options.schedule) {
    case Schedule::Forward: break;
    case Schedule::Reverse: std::reverse(order.begin(), order.end()); break;
    case Schedule::Shuffle: std::shuffle(order.begin(), order.end(), rng); break;
  }
}

// Releases every warp whose named lanes all wait in a warp exchange; false if none could go.
bool release_warps(Worker& w, int n) {
  bool any = false;
  for (int base = 0; base < n; base += 32) {
    const int lanes = std::min(32, n - base);
    unsigned waiting = 0, mask = 0;
    bool agree = true;
    for (int l = 0; l < lanes; ++l) {
      const Fiber& f = w.fibers[base + l];
      if (f.state != State::AtWarp) continue;
      waiting |= 1u << l;
      if (mask == 0) mask = f.mask;
      agree = agree && f.mask == mask;
    }
    if (waiting == 0 || !agree || (waiting & mask) != mask) continue;
    uint64_t deposits[32] = {};
    for (int l = 0; l < lanes; ++l)
      if (mask >> l & 1u) deposits[l] = w.fibers[base + l].deposit;
    for (int l = 0; l < lanes; ++l) {
      if (!(mask >> l & 1u)) continue;
      Fiber& f = w.fibers[base + l];
      if (f.src >= 0) f.result = deposits[f.src];
      if (f.all != nullptr) std::memcpy(f.all, deposits, sizeof deposits);
      f.state = State::Ready;
    }
    g_warp_ops.fetch_add(1, std::memory_order_relaxed);
    any = true;
  }
  return any;
}

std::string describe_states(const Worker& w, int n) {
  int counts[5] = {};
  for (int i = 0; i < n; ++i) ++counts[int(w.fibers[i].state)];
  return "(" + std::to_string(counts[int(State::AtBarrier)]) + " at __syncthreads, " +
         std::to_string(counts[int(State::AtWarp)]) + " in a warp operation, " +
         std::to_string(counts[int(State::Done)]) + " exited)";
}

// Runs one block to completion; false with w.error set on a barrier error.
bool run_block(Worker& w, dim3 block, const TlsBlock& tls, uint64_t block_linear) {
  const int n = int(block.x * block.y * block.z);
  if (g_options.poison_shared) {
    poison_shared(tls);
    if (w.dynamic_bytes > 0) std::memset(w.dynamic_shared.get(), 0xFF, w.dynamic_bytes);
  }
  for (int i = 0; i < n; ++i) {
    Fiber& f = w.fibers[i];
    f.tid = uint3{unsigned(i) % block.x, unsigned(i) / block.x % block.y, unsigned(i) / (block.x * block.y)};
    f.state = State::Ready;
    fiber_start(&f.ctx, w.stacks + size_t(i) * w.stack_stride + (w.stack_stride - kStackBytes),
                kStackBytes, fiber_main);
  }
  std::mt19937_64 rng(g_options.shuffle_seed ^ (block_linear * 0x9E3779B97F4A7C15ull));
  std::vector<int> order;
  race::release(&w.epoch_sync);
  for (;;) {
    order_threads(order, n, rng);
    for (int i : order) {
      Fiber& f = w.fibers[i];
      if (f.state != State::Ready) continue;
      w.current = i;
      threadIdx = f.tid;
      fiber_switch(&w.sched, &f.ctx);
      if (f.state == State::Failed) return false;
    }
    if (release_warps(w, n)) continue;
    int done = 0, at_barrier = 0;
    for (int i = 0; i < n; ++i) {
      done += w.fibers[i].state == State::Done;
      at_barrier += w.fibers[i].state == State::AtBarrier;
    }
    if (done == n) {
      race::acquire(&w.epoch_sync);
      return true;
    }
    if (at_barrier + done == n && done == 0) {
      for (int i = 0; i < n; ++i) w.fibers[i].state = State::Ready;
      g_barriers.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    w.error = at_barrier + done == n
                  ? "__syncthreads reached by some threads of the block after others exited "
                    "(a barrier in divergent code) " + describe_states(w, n)
                  : "deadlock: threads wait at different barriers " + describe_states(w, n);
    return false;
  }
}

}  // namespace

Options& options() { return g_options; }

Stats stats() {
  return {g_launches.load(), g_blocks.load(), g_threads.load(), g_barriers.load(), g_warp_ops.load(),
          g_poisoned.load()};
}

void reset_stats() {
  for (auto* c : {&g_launches, &g_blocks, &g_threads, &g_barriers, &g_warp_ops, &g_poisoned}) c->store(0);
}

void sync_block() {
  Worker* w = t_worker;
  Fiber& f = w->fibers[w->current];
  char* sync = &w->barrier_sync[f.barriers++ & 1];
  race::release(sync);
  yield(State::AtBarrier);
  race::acquire(sync);
}

void sync_warp(unsigned mask) {
  Worker* w = t_worker;
  Fiber& f = w->fibers[w->current];
  char* sync = &w->warp_sync[linear(threadIdx, blockDim) / 32][f.warp_syncs++ & 1];
  race::release(sync);
  warp_exchange(mask, 0, -1);
  race::acquire(sync);
}

void trap() { fail_in_fiber("__trap() by thread " + std::to_string(linear(threadIdx, blockDim))); }

int lane_id() { return linear(threadIdx, blockDim) % 32; }

uint64_t warp_exchange(unsigned mask, uint64_t value, int src, uint64_t* all) {
  Worker* w = t_worker;
  const int lane = lane_id();
  if (!(mask >> lane & 1u)) fail_in_fiber("warp operation by lane " + std::to_string(lane) +
                                          ", which its own mask " + std::to_string(mask) + " leaves out");
  if (src >= 0 && !(mask >> src & 1u))
    fail_in_fiber("warp operation reads lane " + std::to_string(src) + ", outside the mask");
  Fiber& f = w->fibers[w->current];
  f.mask = mask;
  f.deposit = value;
  f.src = src;
  f.all = all;
  yield(State::AtWarp);
  return f.result;
}

void complete(const PendingCopy& c) {
  if (c.src_bytes > 0) std::memcpy(c.dst, c.src, size_t(c.src_bytes));
  std::memset(static_cast<char*>(c.dst) + c.src_bytes, 0, size_t(c.bytes - c.src_bytes));
}

void async_copy(void* dst, const void* src, int bytes, int src_bytes) {
  Worker* w = t_worker;
  Fiber& f = w->fibers[w->current];
  const PendingCopy c{dst, src, bytes, src_bytes, f.committed};
  if (g_options.eager_async_copies) complete(c);
  else f.copies.push_back(c);
}

void async_commit() {
  Worker* w = t_worker;
  ++w->fibers[w->current].committed;
}

void async_wait(int pending) {
  Worker* w = t_worker;
  Fiber& f = w->fibers[w->current];
  size_t done = 0;
  for (; done < f.copies.size() && f.copies[done].group < f.committed - pending; ++done)
    complete(f.copies[done]);
  f.copies.erase(f.copies.begin(), f.copies.begin() + long(done));
}

void* dynamic_shared() { return t_worker->dynamic_shared.get(); }

bool run_grid(dim3 grid, dim3 block, size_t shared_bytes, const std::function<void()>& body,
              std::string* error) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (threads == 0 || threads > kMaxThreads || block.z > 64 || grid.x == 0 || grid.y == 0 ||
      grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535 ||
      shared_bytes > kMaxDynamicShared) {
    *error = "invalid launch configuration: grid (" + std::to_string(grid.x) + ", " +
             std::to_string(grid.y) + ", " + std::to_string(grid.z) + "), block (" +
             std::to_string(block.x) + ", " + std::to_string(block.y) + ", " +
             std::to_string(block.z) + "), " + std::to_string(shared_bytes) +
             " bytes of dynamic shared memory";
    return false;
  }
  std::lock_guard<std::mutex> lock(g_launch_mutex);
  // Never destroyed: the workers live as long as the process (no exit-time teardown of stacks and
  // fibers, which ThreadSanitizer would see as unordered with the fibers' last writes).
  static auto& workers = *new std::vector<std::unique_ptr<Worker>>();
  const int nworkers = std::max(1, g_options.workers);
  while (int(workers.size()) < nworkers) workers.push_back(std::make_unique<Worker>());
  const uint64_t nblocks = uint64_t(grid.x) * grid.y * grid.z;
  std::atomic<uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;

  auto work = [&](Worker& w) {
    race::ignore_begin();  // the scheduler's bookkeeping is not the kernel's memory traffic
    fiber_adopt_current(&w.sched);
    w.ensure_stacks();
    w.body = &body;
    if (shared_bytes > w.dynamic_capacity) {
      w.dynamic_shared.reset(new float[(shared_bytes + 3) / 4]);
      w.dynamic_capacity = shared_bytes;
    }
    w.dynamic_bytes = shared_bytes;
    t_worker = &w;
    gridDim = grid;
    blockDim = block;
    const TlsBlock tls = module_tls();
    for (uint64_t b = next++; b < nblocks && !failed.load(); b = next++) {
      blockIdx = uint3{unsigned(b % grid.x), unsigned(b / grid.x % grid.y), unsigned(b / (uint64_t(grid.x) * grid.y))};
      if (!run_block(w, block, tls, b)) {
        std::lock_guard<std::mutex> elock(error_mutex);
        if (!failed.exchange(true)) {
          *error = "block (" + std::to_string(blockIdx.x) + ", " + std::to_string(blockIdx.y) + ", " +
                   std::to_string(blockIdx.z) + "): " + w.error;
        }
      }
      g_blocks.fetch_add(1, std::memory_order_relaxed);
      g_threads.fetch_add(threads, std::memory_order_relaxed);
    }
    t_worker = nullptr;
    race::ignore_end();
  };
  std::vector<std::thread> helpers;
  const int extra = int(std::min<uint64_t>(uint64_t(nworkers - 1), nblocks - 1));
  for (int i = 1; i <= extra; ++i) helpers.emplace_back(work, std::ref(*workers[i]));
  work(*workers[0]);
  for (auto& t : helpers) t.join();
  g_launches.fetch_add(1, std::memory_order_relaxed);
  return !failed.load();
}

}  // namespace emu
