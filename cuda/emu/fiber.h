// fiber.h — the stack switch under the emulator's threads (simt.cpp): start a function on its own
// stack, switch between stacks. x86-64 uses a few instructions of assembly (callee-saved
// registers and the stack pointer: ~20 ns a switch); elsewhere ucontext, which also saves the
// signal mask with a system call per switch (~30x slower, same behaviour).
#pragma once

#include <cstddef>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace emu {

struct FiberContext {
#if defined(__x86_64__)
  void* sp = nullptr;  // the saved stack pointer; the registers are on that stack
#else
  ucontext_t uc;
#endif
  void* race_fiber = nullptr;  // its ThreadSanitizer fiber (race_annotations.h), if built with TSan
};

// Prepares `ctx` to run entry() on [stack, stack + size) at the first switch into it. entry must
// never return: it switches away for good when its work is done.
void fiber_start(FiberContext* ctx, char* stack, size_t size, void (*entry)());
// Saves the running context into *from and resumes *to.
void fiber_switch(FiberContext* from, FiberContext* to);
// Makes *ctx stand for the context running now (an OS thread's own stack, the scheduler's).
void fiber_adopt_current(FiberContext* ctx);

}  // namespace emu
