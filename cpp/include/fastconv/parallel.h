// parallel.h — a small persistent thread pool with deterministic results.
//
// parallel_for(ntasks, fn): the caller and the workers claim chunks of about ntasks / (4 * threads)
// tasks from a shared counter until none is left, so a worker that starts late (slow wake-up, or
// a core shared with another busy thread) costs at most the chunk it holds. Only for tasks that
// write disjoint outputs: what a task computes must not depend on which thread runs it.
// Reductions use parallel_for_parts, whose per-part partial sums are fixed by the part count.
// No OpenMP: the pool is rebuilt lazily in a forked child (pthread_atfork), so a process that forks
// after using fastconv never hangs.
#pragma once

#include <cstdint>
#include <functional>

namespace fastconv {

int get_num_threads();
void set_num_threads(int n);  // n >= 1; throws ValueError otherwise

// fn(begin, end, thread): thread is the running thread's index (for scratch space only, never for
// results). Exceptions thrown by fn are rethrown in the caller (the first one). Calls from inside
// a worker run serially.
using ChunkFn = std::function<void(int64_t begin, int64_t end, int part)>;
void parallel_for(int64_t ntasks, const ChunkFn& fn);

// For per-part reductions (weight gradients): [0, ntasks) is cut into `parts` fixed contiguous
// ranges, part p = [p*ntasks/parts, (p+1)*ntasks/parts), which the threads claim dynamically;
// fn(begin, end, part) gets the range's index, so each part's partial sum is the same whichever
// thread computed it. reduction_parts(ntasks): 1 on one thread, else min(ntasks, 2 * threads)
// (two ranges per thread, so a late worker delays the call by about a quarter, not a half).
void parallel_for_parts(int64_t ntasks, int parts, const ChunkFn& fn);
int reduction_parts(int64_t ntasks);

// An OpenMP runtime's GOMP_parallel(fn, data, num_threads, flags) (libgomp's ABI; LLVM's and
// Intel's runtimes export it too). When set, parallel_for runs its jobs on that runtime's team
// (the caller plus the runtime's workers) instead of fastconv's pool, which is then never started:
// fastconv.torch sets PyTorch's libgomp here, so fastconv's kernels and PyTorch's ops share one
// set of threads instead of two sets taking cores from each other (libgomp's workers spin for
// milliseconds after each of PyTorch's ops). Same chunks, same results. nullptr: fastconv's pool.
// A forked child goes back to fastconv's pool.
using TeamParallelFn = void (*)(void (*)(void*), void*, unsigned, unsigned);
void set_team_parallel(TeamParallelFn fn);
bool team_parallel_set();

}  // namespace fastconv
