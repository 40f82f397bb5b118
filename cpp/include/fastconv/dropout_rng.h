// dropout_rng.h — dropout's counter-based generator: element i's keep decision is a function of
// (seed, i) alone. One definition for the CPU kernel (cpp/cpu/dropout_cpu.cpp) and the CUDA
// kernel of the graph-captured training step (cuda/train_step.cu), so both draw the same masks.
//
// Element i lies in block i / kBlock; each block has kLanes xoshiro128+ generators (32-bit words,
// seeded from SplitMix64 at counters derived from (key, block, lane)); element i is lane
// i % kLanes at step (i % kBlock) / kLanes of its block. The top 24 bits of an output are the
// uniform u = k * 2^-24 (float32's resolution, as NumPy's float32 draws), kept when k < thresh.
// Everything is integer arithmetic, so every ISA and the GPU give the same bits.
#pragma once

#include <cstdint>

#include "fastconv/params.h"  // FASTCONV_HD (host-and-device when compiled by nvcc)

namespace fastconv {
namespace dropout_rng {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;
constexpr int kLanes = 16;         // GCC vectorises 16 lanes on the CPU; 4 and 8 stayed scalar
constexpr int64_t kBlock = 16384;  // elements per generator block (a multiple of kLanes)

FASTCONV_HD uint64_t splitmix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The stream key of a user seed.
FASTCONV_HD uint64_t key_of(uint64_t seed) { return splitmix64(seed + kGolden); }

// u < keep  <=>  k < ceil(keep * 2^24) (exact in double): in [1, 2^24] for keep in (0, 1], so
// keep = 1 keeps every element. The ceiling by hand: no libm call in device code.
FASTCONV_HD int32_t threshold(double keep) {
  const double x = keep * 16777216.0;
  int32_t t = int32_t(x);
  if (double(t) < x) ++t;
  return t;
}

// The four state words of one lane: SplitMix64 at counters 2*(block*16 + lane) and that + 1 of
// the key's stream (s3 |= 1: never the all-zero state).
struct LaneState {
  uint32_t s0, s1, s2, s3;
};

FASTCONV_HD LaneState lane_state(uint64_t key, int64_t block, int lane) {
  const uint64_t c = key + 2 * uint64_t(block * kLanes + lane) * kGolden;
  const uint64_t a = splitmix64(c), b = splitmix64(c + kGolden);
  return {uint32_t(a), uint32_t(a >> 32), uint32_t(b), uint32_t(b >> 32) | 1u};
}

// The lane's next 24-bit uniform k (u = k * 2^-24); advances the state by one step. Taking the
// words by reference lets the CPU keep them in per-lane arrays that the vectoriser turns into
// registers across the 16 lanes.
FASTCONV_HD int32_t lane_next(uint32_t& s0, uint32_t& s1, uint32_t& s2, uint32_t& s3) {
  const int32_t k = int32_t((s0 + s3) >> 8);
  const uint32_t t = s1 << 9;
  s2 ^= s0, s3 ^= s1, s1 ^= s2, s0 ^= s3, s2 ^= t;
  s3 = (s3 << 11) | (s3 >> 21);
  return k;
}

// One lane's share of a mask of n elements: every element i of `block` with i % kLanes == lane,
// mask[i] = (kept ? scale : 0). The CUDA kernel runs one thread per (block, lane); the CPU's
// test hook (_C._dropout_mask_lanes) loops over the same pairs, so this index arithmetic is
// checked against the CPU kernel without a GPU.
FASTCONV_HD void fill_lane(float* mask, int64_t n, uint64_t key, int32_t thresh, float scale,
                           int64_t block, int lane) {
  LaneState g = lane_state(key, block, lane);
  const int64_t end = (block + 1) * kBlock < n ? (block + 1) * kBlock : n;
  for (int64_t i = block * kBlock + lane; i < end; i += kLanes) {
    mask[i] = lane_next(g.s0, g.s1, g.s2, g.s3) < thresh ? scale : 0.0f;
  }
}

}  // namespace dropout_rng
}  // namespace fastconv
