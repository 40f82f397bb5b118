// parallel.h — a small persistent thread pool with static, deterministic partitioning.
//
// parallel_for(ntasks, fn) splits [0, ntasks) into one contiguous chunk per thread (chunk t gets
// [t*ntasks/T, (t+1)*ntasks/T)), so which thread computes what depends only on T: results are
// bit-identical run to run at a given thread count. No OpenMP: the pool is rebuilt lazily in a
// forked child (pthread_atfork), so a process that forks after using fastconv never hangs.
#pragma once

#include <cstdint>
#include <functional>

namespace fastconv {

int get_num_threads();
void set_num_threads(int n);  // n >= 1; throws ValueError otherwise

// fn(begin, end, part) for each non-empty chunk; part in [0, parts). Exceptions thrown by fn are
// rethrown in the caller (the first one). Calls from inside a worker run serially.
using ChunkFn = std::function<void(int64_t begin, int64_t end, int part)>;
void parallel_for(int64_t ntasks, const ChunkFn& fn);

// For tasks that write disjoint outputs (so the result cannot depend on which thread ran which
// task): the caller and the workers claim chunks of about ntasks / (4 * threads) tasks from a
// shared counter until none is left. A worker that is late (woken slowly, or sharing its core with
// another busy thread) then costs at most the chunk it holds, where the static split above makes
// the caller wait for a whole half. fn's part is the thread's index (scratch space only, never
// results).
void parallel_for_dynamic(int64_t ntasks, const ChunkFn& fn);

// For per-part reductions (weight gradients): [0, ntasks) is cut into `parts` fixed contiguous
// ranges, part p = [p*ntasks/parts, (p+1)*ntasks/parts), which the threads claim dynamically;
// fn(begin, end, part) gets the range's index, so each part's partial sum is the same whichever
// thread computed it. reduction_parts(ntasks): 1 on one thread, else min(ntasks, 2 * threads)
// (two ranges per thread, so a late worker delays the call by about a quarter, not a half).
void parallel_for_parts(int64_t ntasks, int parts, const ChunkFn& fn);
int reduction_parts(int64_t ntasks);

// Number of chunks parallel_for(ntasks, ...) will use: min(ntasks, threads), at least 1.
int parallel_parts(int64_t ntasks);

}  // namespace fastconv
