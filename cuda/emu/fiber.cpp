// fiber.cpp — fiber_start / fiber_switch (fiber.h).
#include "fiber.h"

#include <cstdint>

#include "race_annotations.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define FC_EMU_ASAN_CLEAR(addr, size) ASAN_UNPOISON_MEMORY_REGION(addr, size)
#else
#define FC_EMU_ASAN_CLEAR(addr, size) ((void)(addr), (void)(size))
#endif

namespace emu {

#if defined(__x86_64__)

// fc_emu_swap(void** save_sp, void* load_sp): push the System V callee-saved registers, save the
// stack pointer, load the other one, pop its registers and return into it. Caller-saved registers
// are dead across a call anyway; MXCSR / x87 control words are not touched by kernels.
asm(R"(
  .text
  .p2align 4
  .type fc_emu_swap, @function
fc_emu_swap:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size fc_emu_swap, .-fc_emu_swap
)");
extern "C" void fc_emu_swap(void** save_sp, void* load_sp);

void fiber_start(FiberContext* ctx, char* stack, size_t size, void (*entry)()) {
  if (ctx->race_fiber == nullptr) ctx->race_fiber = race::new_fiber();  // one per stack, kept
  // An abandoned fiber (a failed block) may leave AddressSanitizer's frame redzones behind.
  FC_EMU_ASAN_CLEAR(stack, size);
  // A frame as fc_emu_swap leaves it: six zeroed registers, then the return address (entry),
  // above it a fake return address of entry's own, so that entry starts with the stack aligned
  // as after a call (rsp = 8 mod 16).
  auto top = reinterpret_cast<uintptr_t>(stack + size) & ~uintptr_t(15);
  auto* sp = reinterpret_cast<void**>(top) - 8;
  for (int i = 0; i < 6; ++i) sp[i] = nullptr;
  sp[6] = reinterpret_cast<void*>(entry);
  sp[7] = nullptr;
  ctx->sp = sp;
}

void fiber_switch(FiberContext* from, FiberContext* to) {
  race::switch_to(to->race_fiber);
  fc_emu_swap(&from->sp, to->sp);
}

#else

void fiber_start(FiberContext* ctx, char* stack, size_t size, void (*entry)()) {
  if (ctx->race_fiber == nullptr) ctx->race_fiber = race::new_fiber();
  getcontext(&ctx->uc);
  ctx->uc.uc_stack.ss_sp = stack;
  ctx->uc.uc_stack.ss_size = size;
  ctx->uc.uc_link = nullptr;
  makecontext(&ctx->uc, entry, 0);
}

void fiber_switch(FiberContext* from, FiberContext* to) {
  race::switch_to(to->race_fiber);
  swapcontext(&from->uc, &to->uc);
}

#endif

void fiber_adopt_current(FiberContext* ctx) { ctx->race_fiber = race::current_fiber(); }

}  // namespace emu
