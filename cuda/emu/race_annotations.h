// race_annotations.h — the emulator's ThreadSanitizer hooks, a CPU stand-in for compute-sanitizer's
// racecheck. Built with -fsanitize=thread, every emulated thread is a TSan fiber and switching
// fibers orders nothing; the only happens-before edges between the threads of a block are the ones
// CUDA defines — __syncthreads, __syncwarp, block start and end — so TSan reports any two accesses
// to one shared (or global) word, one a write, that no barrier orders, whatever order the
// scheduler ran them in. The scheduler's own bookkeeping is hidden from TSan. Built without TSan
// every hook is an empty inline function.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define FC_EMU_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FC_EMU_TSAN 1
#endif
#endif

#ifdef FC_EMU_TSAN
#include <sanitizer/tsan_interface.h>
extern "C" {
void AnnotateIgnoreReadsBegin(const char* file, int line);
void AnnotateIgnoreReadsEnd(const char* file, int line);
void AnnotateIgnoreWritesBegin(const char* file, int line);
void AnnotateIgnoreWritesEnd(const char* file, int line);
}
#endif

namespace emu {
namespace race {

#ifdef FC_EMU_TSAN
inline void* new_fiber() { return __tsan_create_fiber(0); }
inline void* current_fiber() { return __tsan_get_current_fiber(); }
inline void switch_to(void* fiber) { __tsan_switch_to_fiber(fiber, __tsan_switch_to_fiber_no_sync); }
inline void release(void* sync) { __tsan_release(sync); }
inline void acquire(void* sync) { __tsan_acquire(sync); }
// The calling fiber's reads and writes are not tracked until ignore_end (the scheduler's).
inline void ignore_begin() {
  AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
  AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
}
inline void ignore_end() {
  AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
  AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
}
#else
inline void* new_fiber() { return nullptr; }
inline void* current_fiber() { return nullptr; }
inline void switch_to(void*) {}
inline void release(void*) {}
inline void acquire(void*) {}
inline void ignore_begin() {}
inline void ignore_end() {}
#endif

}  // namespace race
}  // namespace emu
