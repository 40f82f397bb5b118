// simt.h — the SIMT execution model of the CPU emulator (cuda/emu; tests and development only,
// never part of the wheel): a grid runs as blocks, a block's threads as fibers on one OS thread.
//
// Why fibers: every emulated thread has its own stack and is suspended at __syncthreads (and at
// warp operations) until all the threads of its block (or warp) arrive, so barrier placement is
// exercised for real; switching fibers costs far less than switching OS threads, and the order in
// which threads run between two barriers is chosen by the scheduler (forward, reverse, seeded
// shuffle), so a missing barrier shows as a result that depends on the order.
// Why thread_local __shared__ (cuda_runtime.h): all fibers of a block run on one OS worker, so a
// function-local `static thread_local` array is one copy per block in flight; several workers run
// blocks of one launch at the same time. The runner fills that storage with NaN bytes (0xFF) at
// every block start, so a shared slot the kernel reads before writing poisons its result.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

// The built-in index variables, per OS worker (the scheduler sets threadIdx at every switch).
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
constexpr int warpSize = 32;

namespace emu {

// Thread order between barriers. Results of a race-free kernel do not depend on it.
enum class Schedule { Forward = 0, Reverse = 1, Shuffle = 2 };

struct Options {
  Schedule schedule = Schedule::Reverse;  // reverse exposes "read before the writer ran" races
  uint64_t shuffle_seed = 1;
  int workers = 1;  // OS threads running blocks of one launch concurrently
  bool poison_shared = true;
  // cp.async copies complete at the latest legal moment (their wait: exposes reads before the
  // wait) or at once (exposes a refill of a buffer that other threads still read).
  bool eager_async_copies = false;
};
Options& options();

// Counters since the last reset (tests use them to prove what ran).
struct Stats {
  uint64_t launches, blocks, threads, barriers, warp_ops;
  uint64_t poisoned_blocks;  // blocks whose __shared__ storage was filled with NaN first
};
Stats stats();
void reset_stats();

// Runs body() once per thread of the grid, each block with `shared_bytes` of dynamic shared memory
// (dynamic_shared()); false (and *error set) on a launch the hardware would refuse (zero or too
// many threads, grid limits, too much shared memory) or a barrier error (divergent __syncthreads,
// deadlock), after which the launch's outputs are undefined, as after a faulting kernel.
bool run_grid(dim3 grid, dim3 block, size_t shared_bytes, const std::function<void()>& body,
              std::string* error);

// The running block's dynamic shared memory (16-byte aligned; NaN bytes at every block start).
void* dynamic_shared();

// Barriers, called by __syncthreads / __syncwarp on an emulated thread.
void sync_block();
void sync_warp(unsigned mask);
// __trap(): fails the launch.
[[noreturn]] void trap();
// Warp exchange: every lane of `mask` deposits 8 bytes, meets the others, then reads lane `src`'s
// deposit (src < 0: no read). Returns the bits read; *all receives every lane's deposit if given.
uint64_t warp_exchange(unsigned mask, uint64_t value, int src, uint64_t* all = nullptr);
// The emulated thread's lane (threadIdx linearised, mod 32).
int lane_id();

// cp.async (cuda/async_copy.cuh): a copy of `bytes` (src_bytes of them read, the rest zero-filled)
// waits in the issuing thread's queue; commit closes a group; async_wait(n) completes every
// committed group but the n most recent — the latest moment PTX allows (or, with
// Options::eager_async_copies, the copy lands when issued).
void async_copy(void* dst, const void* src, int bytes, int src_bytes);
void async_commit();
void async_wait(int pending);

}  // namespace emu
