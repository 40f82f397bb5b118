// prefetch_trickle.inl — a PrefetchSpans (fastconv/cpu_kernels.h) issued a few lines at a time
// between a kernel's tiles. Include INSIDE the anonymous namespace of an ISA translation unit
// (by the kernels that use it; #pragma once, so several may): compiled per ISA like the kernels.
//
// Why: a driver's prefetch of a whole next image (cnn1.conv2: 490 lines, fashion.conv2: 1170)
// in one burst stalls the core once the L1 miss buffers are full: on inputs from L3 it gained
// 0-2% over no prefetch (PERF_LOG round 21); a few lines per tile overlap the tiles' FMAs.
#pragma once

// `steps` calls of step() issue all of the spans' 64-byte lines, in order (later calls nothing).
class PrefetchTrickle {
 public:
  PrefetchTrickle(const fastconv::cpu::PrefetchSpans& s, int64_t steps) {
    for (int r = 0; r < 2; ++r) p_[r] = s.p[r], left_[r] = (s.floats[r] + kLine - 1) / kLine;
    per_step_ = (left_[0] + left_[1] + steps - 1) / (steps > 0 ? steps : 1);
  }
  void step() {
    int64_t k = per_step_;
    for (int r = 0; r < 2; ++r)
      for (; k > 0 && left_[r] > 0; --k, --left_[r], p_[r] += kLine) __builtin_prefetch(p_[r], 0, 2);
  }

 private:
  static constexpr int64_t kLine = 64 / sizeof(float);
  const float* p_[2];
  int64_t left_[2], per_step_;
};
