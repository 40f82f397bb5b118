// dropout_cpu.cpp — dropout's keep decisions drawn per fixed block of elements, applied in one
// threaded pass.
//
// Why: the layer used to draw n floats from NumPy's generator per call, single-threaded (~5 ms per
// keras_cnn step). Here element i's uniform is a function of (seed, i) alone: i picks a block of
// kBlock elements, the block has its own generator seeded from (seed, block), and i's place in
// the block picks the lane and the step. Any block can be drawn on any thread, the result does not
// depend on the thread count, and backward can redraw the mask from the seed instead of storing it.
//
// The generator (cpp/include/fastconv/dropout_rng.h, shared with the CUDA training step): 16 lanes
// of xoshiro128+ (32-bit words; the top 24 bits of each output are the uniform, float32's
// resolution as in NumPy's float32 draws), each lane seeded with 128 bits from SplitMix64. Why
// not a pure hash of (seed, i) such as SplitMix64's output function: its two 64-bit multiplies
// have no baseline-x86-64 (SSE2) vector instruction, and it ran at 1.0 ns per element; xoshiro's
// shifts, xors and adds vectorise over the 16 lanes at 0.3 ns. Compiled for the baseline
// ISA; the compiler vectorises the lane loops (all integer math, so every ISA gives the same bits).
#include <algorithm>
#include <limits>

#include "fastconv/dropout_rng.h"
#include "fastconv/ops.h"
#include "fastconv/parallel.h"
#include "fastconv/train_ops.h"

namespace fastconv {
namespace cpu {
namespace {

using dropout_rng::kBlock;
using dropout_rng::kLanes;
using dropout_rng::key_of;
using dropout_rng::threshold;

// One block's 16 generators (dropout_rng.h), their words in per-lane arrays so the lane loops
// below vectorise.
struct Lanes {
  uint32_t s0[kLanes], s1[kLanes], s2[kLanes], s3[kLanes];

  Lanes(uint64_t key, int64_t block) {
    for (int l = 0; l < kLanes; ++l) {
      const dropout_rng::LaneState st = dropout_rng::lane_state(key, block, l);
      s0[l] = st.s0, s1[l] = st.s1, s2[l] = st.s2, s3[l] = st.s3;
    }
  }

  // Lane l's next uniform as a 24-bit integer k (u = k * 2^-24); advances lane l only.
  int32_t next(int l) { return dropout_rng::lane_next(s0[l], s1[l], s2[l], s3[l]); }
};

// Runs body(block, begin, len) over the blocks of [0, n), threaded.
template <class Body>
void for_blocks(int64_t n, const Body& body) {
  parallel_for((n + kBlock - 1) / kBlock, [&](int64_t b, int64_t e, int) {
    for (int64_t blk = b; blk < e; ++blk) {
      const int64_t begin = blk * kBlock;
      body(blk, begin, std::min(kBlock, n - begin));
    }
  });
}

// Element i of a block is lane i % 16 at step i / 16. Written for the vectoriser: everything by
// value and restrict-qualified (with captured references a store might change the threshold or
// a pointer, and GCC gave up), and the generator step and its use in one loop over the lanes with
// a constant trip count (a separate step into a k[16] array, or a variable trip count, stayed
// scalar).
template <bool kWithMask>
void apply_block(float* __restrict y, float* __restrict mask, const float* __restrict x,
                 int64_t len, Lanes g, int32_t thresh, float scale) {
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float s = g.next(l) < thresh ? scale : 0.0f;
      y[i + l] = x[i + l] * s;  // multiply, not select: NaN * 0 stays NaN, as in x * mask
      if (kWithMask) mask[i + l] = s;
    }
  }
  for (int l = 0; i + l < len; ++l) {  // the last block's partial step
    const float s = g.next(l) < thresh ? scale : 0.0f;
    y[i + l] = x[i + l] * s;
    if (kWithMask) mask[i + l] = s;
  }
}

void keep_block(uint8_t* __restrict bits, int64_t len, Lanes g, int32_t thresh) {
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) bits[i + l] = g.next(l) < thresh;
  }
  for (int l = 0; i + l < len; ++l) bits[i + l] = g.next(l) < thresh;
}

}  // namespace

void dropout_fwd__cpu(float* y, float* mask, const float* x, int64_t n, double keep,
                      uint64_t seed) {
  if (debug_poison()) std::fill(y, y + n, std::numeric_limits<float>::quiet_NaN());
  if (debug_poison() && mask) std::fill(mask, mask + n, std::numeric_limits<float>::quiet_NaN());
  const uint64_t key = key_of(seed);
  const int32_t thresh = threshold(keep);
  const float scale = 1.0f / float(keep);  // NumPy's np.float32(1) / np.float32(keep)
  for_blocks(n, [=](int64_t blk, int64_t b, int64_t len) {
    if (mask) apply_block<true>(y + b, mask + b, x + b, len, Lanes(key, blk), thresh, scale);
    else apply_block<false>(y + b, nullptr, x + b, len, Lanes(key, blk), thresh, scale);
  });
}

void dropout_keep__cpu(uint8_t* keep_bits, int64_t n, double keep, uint64_t seed) {
  const uint64_t key = key_of(seed);
  const int32_t thresh = threshold(keep);
  for_blocks(n, [=](int64_t blk, int64_t b, int64_t len) {
    keep_block(keep_bits + b, len, Lanes(key, blk), thresh);
  });
}

}  // namespace cpu
}  // namespace fastconv
